// uturn dashboard: one page over the admin API (docs/openapi.yaml). No framework, no build step,
// nothing from another origin (the page is served under a strict Content-Security-Policy).
// Every value from the server reaches the DOM through textContent, never as HTML.
"use strict";

const KEY = "uturn-admin-token";
const POLL_MS = 2000;
const SLOW_EVERY = 5; // users and secrets every 5th poll
const USER_PAGES = 20; // at most this many pages of 1000 names

const state = {
  token: sessionStorage.getItem(KEY) || "",
  write: false,
  realm: "",
  stats: null,
  allocs: [],
  history: [],
  fields: [],
  capacity: 3600,
  sortKey: "created_unix",
  sortDir: -1,
  polls: 0,
  timer: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + state.token }, cache: "no-store" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  let doc = null;
  try {
    doc = await resp.json();
  } catch (e) {
    doc = null;
  }
  if (!resp.ok) {
    const err = doc && doc.error ? doc.error : { code: "http_" + resp.status, message: resp.statusText };
    if (resp.status === 401) logout("the token was refused");
    throw new ApiError(resp.status, err.code, err.message);
  }
  return doc;
}

// ---- formatting ----

function si(v, unit) {
  const steps = ["", "k", "M", "G", "T"];
  let i = 0;
  while (Math.abs(v) >= 1000 && i < steps.length - 1) {
    v /= 1000;
    i++;
  }
  const n = i ? parseFloat(v.toFixed(v < 10 ? 2 : 1)) : Number.isInteger(v) ? v : parseFloat(v.toFixed(1));
  return n + " " + steps[i] + unit;
}

function duration(s) {
  s = Math.max(0, Math.round(s));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function status(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.className = bad ? "error" : "muted";
}

// ---- login ----

function showLogin(msg) {
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("token").focus();
}

function logout(msg) {
  sessionStorage.removeItem(KEY);
  state.token = "";
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
  showLogin(msg);
}

async function start() {
  if (!state.token) return showLogin();
  let who;
  try {
    who = await api("GET", "/api/v1/whoami");
  } catch (e) {
    return showLogin(e.message);
  }
  state.write = who.write === true;
  document.body.classList.toggle("readonly", !state.write);
  $("access").textContent = state.write ? "full access" : "read-only";
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  buildActions();
  poll();
}

// ---- polling ----

async function poll() {
  state.timer = null;
  try {
    await loadStats(); // first: it names the realm the user and secret lists are of
    const jobs = [loadAllocs(), loadHistory()];
    if (state.polls % SLOW_EVERY === 0) jobs.push(loadUsers(), loadSecrets());
    await Promise.all(jobs);
    status("updated " + new Date().toLocaleTimeString());
  } catch (e) {
    if (!state.token) return;
    status(e.message, true);
  }
  state.polls++;
  document.body.dataset.polls = String(state.polls);
  if (state.token) state.timer = setTimeout(poll, POLL_MS);
}

async function loadStats() {
  const st = await api("GET", "/api/v1/stats");
  state.stats = st;
  state.realm = st.realm;
  $("version").textContent = "v" + st.version + " \u00b7 realm " + st.realm;
  $("draining").hidden = !st.draining;
  $("n-allocs").textContent = st.allocations.current;
  $("n-workers").textContent = st.workers;
  $("n-uptime").textContent = duration(st.uptime_seconds);
  const errs = $("errors").tBodies[0];
  errs.replaceChildren();
  for (const [code, n] of Object.entries(st.errors_by_code || {})) {
    if (!n) continue;
    const tr = el("tr");
    tr.append(el("td", code), el("td", n, "num"));
    errs.append(tr);
  }
  if (!errs.rows.length) {
    const tr = el("tr");
    tr.append(el("td", "none sent", "muted"), el("td"));
    errs.append(tr);
  }
  const ws = $("workers").tBodies[0];
  ws.replaceChildren();
  for (const w of st.per_worker) {
    const tr = el("tr");
    tr.append(el("td", w.worker), el("td", w.allocations, "num"), el("td", w.udp_rx_packets, "num"),
      el("td", w.relay_packets, "num"));
    ws.append(tr);
  }
}

async function loadAllocs() {
  // Every page (1000 per page), bounded so a huge node cannot hang the tab.
  const all = [];
  let cursor = null;
  for (let i = 0; i < 20; i++) {
    const page = cursor ? "&cursor=" + encodeURIComponent(cursor) : "";
    const doc = await api("GET", "/api/v1/allocations?limit=1000" + page);
    all.push(...doc.allocations);
    cursor = doc.next_cursor;
    if (!cursor) break;
  }
  state.allocs = all;
  $("n-active-users").textContent = new Set(all.map((a) => a.username)).size;
  renderAllocs();
}

async function loadHistory() {
  const last = state.history.length ? state.history[state.history.length - 1][0] : 0;
  const doc = await api("GET", "/api/v1/history" + (last ? "?since=" + last : ""));
  state.fields = doc.fields;
  state.capacity = doc.capacity;
  state.history.push(...doc.samples);
  const cut = doc.now - doc.capacity * doc.interval_seconds * 1000;
  while (state.history.length && state.history[0][0] <= cut) state.history.shift();
  drawCharts();
}

async function loadUsers() {
  const list = $("users");
  $("users-realm").textContent = state.realm ? "(" + state.realm + ")" : "";
  const names = [];
  let cursor = null;
  try {
    for (let i = 0; i < USER_PAGES; i++) {
      const doc = await api("GET", "/api/v1/realms/" + encodeURIComponent(state.realm) + "/users?limit=1000" +
        (cursor ? "&cursor=" + cursor : ""));
      names.push(...doc.users);
      cursor = doc.next_cursor;
      if (!cursor) break;
    }
  } catch (e) {
    if (e.status !== 503) throw e;
    list.replaceChildren();
    $("users-note").textContent = e.message;
    list.dataset.count = "";
    return;
  }
  names.sort();
  $("users-note").textContent = names.length + " users" + (cursor ? " (first pages only)" : "");
  list.dataset.count = String(names.length);
  list.replaceChildren(...names.map((n) => {
    const li = el("li");
    li.append(el("span", n, "user-name"));
    if (state.write) {
      const b = el("button", "Delete", "user-delete danger small");
      b.type = "button";
      b.dataset.user = n;
      b.addEventListener("click", () => confirmThen(
        "Delete user " + n + " from realm " + state.realm + "? Its allocations on this node end now.",
        async () => {
          const d = await api("DELETE", userPath(n));
          status("deleted " + n + "; " + d.allocations_terminated + " allocations ended");
          await Promise.all([loadUsers(), loadAllocs()]);
        }));
      li.append(" ", b);
    }
    return li;
  }));
}

function userPath(name) {
  return "/api/v1/realms/" + encodeURIComponent(state.realm) + "/users/" + encodeURIComponent(name);
}

async function loadSecrets() {
  const tb = $("secrets").tBodies[0];
  let doc;
  try {
    doc = await api("GET", "/api/v1/realms/" + encodeURIComponent(state.realm) + "/secrets");
  } catch (e) {
    if (e.status !== 503) throw e;
    $("secrets-note").textContent = e.message;
    tb.replaceChildren();
    return;
  }
  $("secrets-note").textContent = doc.secrets.length ? "" : "no REST secret";
  tb.replaceChildren(...doc.secrets.map((s) => {
    const tr = el("tr");
    tr.dataset.id = s.id;
    tr.append(el("td", s.id, "mono"), el("td", s.fingerprint, "mono"), el("td", s.source));
    const td = el("td");
    if (state.write && s.source === "redis") { // the config file's secrets are edited there
      const b = el("button", "Remove", "secret-delete danger small");
      b.type = "button";
      b.dataset.id = s.id;
      b.addEventListener("click", () => confirmThen(
        "Remove REST secret " + s.id + "? Credentials signed with it stop working now.",
        async () => {
          await api("DELETE", "/api/v1/realms/" + encodeURIComponent(state.realm) + "/secrets/" + s.id);
          status("secret " + s.id + " removed");
          await loadSecrets();
        }));
      td.append(b);
    }
    tr.append(td);
    return tr;
  }));
}

// ---- allocations table ----

function sortValue(a, key) {
  switch (key) {
    case "relayed": return (a.relayed || []).map((r) => r.address).join(" ");
    case "c2p": return a.client_to_peer.bytes;
    case "p2c": return a.peer_to_client.bytes;
    default: return a[key];
  }
}

function renderAllocs() {
  const f = $("filter").value.trim().toLowerCase();
  const now = Date.now() / 1000;
  let rows = state.allocs;
  if (f) {
    rows = rows.filter((a) => [a.id, a.username, a.transport, a.client, a.server,
      ...(a.relayed || []).map((r) => r.address)].some((v) => String(v).toLowerCase().includes(f)));
  }
  const k = state.sortKey, d = state.sortDir;
  rows = rows.slice().sort((x, y) => {
    const a = sortValue(x, k), b = sortValue(y, k);
    return (a < b ? -1 : a > b ? 1 : 0) * d;
  });
  for (const th of $("allocs").tHead.rows[0].cells) {
    th.classList.toggle("asc", th.dataset.key === k && d > 0);
    th.classList.toggle("desc", th.dataset.key === k && d < 0);
  }
  $("allocs-shown").textContent = rows.length === state.allocs.length ? "(" + rows.length + ")"
    : "(" + rows.length + " of " + state.allocs.length + ")";
  const tb = $("allocs").tBodies[0];
  tb.replaceChildren(...rows.map((a) => {
    const tr = el("tr");
    tr.dataset.id = a.id;
    tr.append(el("td", a.id, "mono"), el("td", a.username), el("td", a.transport), el("td", a.client, "mono"),
      el("td", (a.relayed || []).map((r) => r.address).join(" "), "mono"),
      el("td", duration(now - a.created_unix), "num"), el("td", duration(a.expires_unix - now), "num"),
      el("td", a.permissions, "num"), el("td", a.channels, "num"),
      el("td", a.client_to_peer.bytes, "num"), el("td", a.peer_to_client.bytes, "num"));
    const td = el("td");
    if (state.write) {
      const b = el("button", "Kill", "kill danger");
      b.type = "button";
      b.dataset.id = a.id;
      b.addEventListener("click", () => confirmThen(
        "End allocation " + a.id + " of " + a.username + " (" + a.client + ")? " +
          "Its client gets 437 on its next Refresh.",
        async () => {
          await api("DELETE", "/api/v1/allocations/" + encodeURIComponent(a.id));
          status("allocation " + a.id + " ended");
          await loadAllocs();
        }));
      td.append(b);
    }
    tr.append(td);
    return tr;
  }));
}

// ---- charts (canvas) ----

function drawChart(canvas, series) {
  const dpr = window.devicePixelRatio || 1;
  const cw = canvas.clientWidth || canvas.width, ch = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(cw * dpr)) {
    canvas.width = Math.round(cw * dpr);
    canvas.height = Math.round(ch * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, cw, ch);
  const css = getComputedStyle(document.body);
  const fg = css.getPropertyValue("--muted").trim() || "#888";
  const left = 78, right = 8, top = 8, bottom = 18;
  const w = cw - left - right, h = ch - top - bottom;
  const hist = state.history;
  const tmax = hist.length ? hist[hist.length - 1][0] : Date.now();
  // The whole history kept (an hour by default), but at least 5 minutes wide: a node that just
  // started does not draw its first seconds as a sliver at the right edge.
  const have = hist.length ? tmax - hist[0][0] : 0;
  const span = Math.min(state.capacity * 1000, Math.max(300000, have));
  const tmin = tmax - span;
  let vmax = 1;
  for (const s of series) for (const row of hist) vmax = Math.max(vmax, row[s.col]);
  const mag = Math.pow(10, Math.floor(Math.log10(vmax)));
  vmax = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= vmax);
  g.font = "11px sans-serif";
  g.fillStyle = fg;
  g.strokeStyle = fg;
  g.globalAlpha = 0.3;
  g.beginPath();
  for (let i = 0; i <= 2; i++) {
    const y = top + h - (h * i) / 2;
    g.moveTo(left, y);
    g.lineTo(left + w, y);
  }
  g.stroke();
  g.globalAlpha = 1;
  g.textAlign = "right";
  for (let i = 0; i <= 2; i++) {
    g.fillText(si((vmax * i) / 2, series[0].unit).trim(), left - 4, top + h - (h * i) / 2 + 4);
  }
  g.textAlign = "left";
  g.fillText("-" + duration(span / 1000), left, ch - 4);
  g.textAlign = "right";
  g.fillText("now", left + w, ch - 4);
  for (const s of series) {
    g.strokeStyle = s.color;
    g.lineWidth = 1.5;
    g.beginPath();
    let first = true;
    for (const row of hist) {
      const x = left + ((row[0] - tmin) / span) * w;
      const y = top + h - (row[s.col] / vmax) * h;
      if (first) g.moveTo(x, y);
      else g.lineTo(x, y);
      first = false;
    }
    g.stroke();
  }
}

function drawCharts() {
  const col = (name) => state.fields.indexOf(name);
  const last = state.history.length ? state.history[state.history.length - 1] : null;
  if (last) {
    $("n-bps").textContent = si(last[col("relay_bits_per_second")], "bit/s");
    $("n-pps").textContent = si(last[col("relay_packets_per_second")], "");
    $("n-eps").textContent = si(last[col("errors_per_second")], "");
  }
  drawChart($("c-allocs"), [{ col: col("allocations"), color: "#2a7ae2", unit: "" }]);
  drawChart($("c-bps"), [{ col: col("relay_bits_per_second"), color: "#1a9e55", unit: "bit/s" }]);
  drawChart($("c-pps"), [{ col: col("relay_packets_per_second"), color: "#8a4fd1", unit: "" }]);
  drawChart($("c-eps"), [{ col: col("requests_per_second"), color: "#2a7ae2", unit: "" },
    { col: col("errors_per_second"), color: "#d1453b", unit: "" }]);
}

// ---- write actions (built only for a full token) ----

function confirmThen(text, action) {
  $("modal-text").textContent = text;
  $("modal").hidden = false;
  const ok = $("modal-ok"), cancel = $("modal-cancel");
  const close = () => {
    $("modal").hidden = true;
    ok.onclick = null;
    cancel.onclick = null;
  };
  cancel.onclick = close;
  ok.onclick = async () => {
    close();
    try {
      await action();
    } catch (e) {
      status(e.message, true);
    }
  };
  ok.focus();
}

function button(id, text, cls, onclick) {
  const b = el("button", text, cls);
  b.type = "button";
  b.id = id;
  b.addEventListener("click", onclick);
  return b;
}

function buildUserSecretWrites() {
  $("users-write").replaceChildren();
  $("secrets-write").replaceChildren();
  if (!state.write) return;
  const name = el("input");
  name.id = "user-name";
  name.placeholder = "user";
  name.autocomplete = "off";
  const pw = el("input");
  pw.id = "user-password";
  pw.type = "password";
  pw.placeholder = "password";
  pw.autocomplete = "new-password";
  const add = button("user-add", "Add or set password", "", async () => {
    if (!name.value || !pw.value) return status("a user needs a name and a password", true);
    try {
      const d = await api("PUT", userPath(name.value), { password: pw.value });
      status((d.created ? "added " : "password changed for ") + d.user);
      name.value = "";
      pw.value = "";
      await loadUsers();
    } catch (e) {
      status(e.message, true);
    }
  });
  $("users-write").append(name, pw, add);
  const shown = el("pre", "", "snippet");
  shown.id = "secret-new";
  const gen = button("secret-add", "Add a random secret", "", async () => {
    try {
      const d = await api("POST", "/api/v1/realms/" + encodeURIComponent(state.realm) + "/secrets");
      shown.textContent = d.secret; // shown this once: the API never returns it again
      status("secret " + d.id + " added: copy it now, it is not shown again");
      await loadSecrets();
    } catch (e) {
      status(e.message, true);
    }
  });
  $("secrets-write").append(gen, shown);
}

function buildActions() {
  buildUserSecretWrites();
  const box = $("actions");
  box.replaceChildren();
  if (!state.write) return;
  box.append(el("h2", "Ephemeral credentials"));
  const user = el("input");
  user.id = "mint-user";
  user.placeholder = "name (optional)";
  const ttl = el("input");
  ttl.id = "mint-ttl";
  ttl.type = "number";
  ttl.min = "60";
  ttl.max = "604800";
  ttl.value = "86400";
  const out = el("pre", "", "snippet");
  out.id = "mint-out";
  const copy = button("mint-copy", "Copy", "", async () => {
    try {
      await navigator.clipboard.writeText(out.textContent);
      status("copied");
    } catch (e) {
      const r = document.createRange();
      r.selectNodeContents(out);
      getSelection().removeAllRanges();
      getSelection().addRange(r);
      status("selected: press Ctrl+C to copy");
    }
  });
  copy.hidden = true;
  const mint = button("mint", "Mint", "", async () => {
    const body = { ttl: parseInt(ttl.value, 10) || 86400 };
    if (user.value) body.username = user.value;
    try {
      const doc = await api("POST", "/api/v1/credentials", body);
      out.textContent = JSON.stringify({ iceServers: doc.iceServers }, null, 2);
      copy.hidden = false;
      status("credentials valid until " + doc.expires);
    } catch (e) {
      out.textContent = "";
      copy.hidden = true;
      status(e.message, true);
    }
  });
  const form = el("div", null, "inline");
  form.append(user, ttl, el("span", "s", "muted"), mint, copy);
  box.append(form, out);

  box.append(el("h2", "Server"));
  const ctl = el("div", null, "inline");
  ctl.append(
    button("drain", "Drain", "danger", () => confirmThen(
      "Drain this node? New allocations are refused (300 Try Alternate or 508) until it restarts.",
      async () => {
        const d = await api("POST", "/api/v1/drain");
        status("draining; " + d.allocations + " allocations left");
        await loadStats();
      })),
    button("reload", "Reload config", "", () => confirmThen(
      "Re-read the config file and apply the reloadable keys?",
      async () => {
        const d = await api("POST", "/api/v1/reload");
        status(d.changes.length ? "reloaded: " + d.changes.join("; ") : "reloaded: nothing changed");
      })));
  box.append(ctl);
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("token-use").addEventListener("click", () => {
    const t = $("token").value.trim();
    if (!t) return;
    state.token = t;
    sessionStorage.setItem(KEY, t);
    $("token").value = "";
    start();
  });
  $("token").addEventListener("keydown", (e) => {
    if (e.key === "Enter") $("token-use").click();
  });
  $("logout").addEventListener("click", () => logout());
  $("filter").addEventListener("input", renderAllocs);
  for (const th of $("allocs").tHead.rows[0].cells) {
    if (!th.dataset.key) continue;
    th.addEventListener("click", () => {
      state.sortDir = state.sortKey === th.dataset.key ? -state.sortDir : 1;
      state.sortKey = th.dataset.key;
      renderAllocs();
    });
  }
  window.addEventListener("resize", drawCharts);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("modal").hidden) $("modal-cancel").click();
  });
  start();
});

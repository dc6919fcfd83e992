"""Reading ONE uturnd's kernel path from a test (docs/KERNEL.md, server/kpath/kpath_abi.h).

Several uturnds may have their TC program on lo at the same time (other tests, benchmarks): each
attaches at tc priority KPATH_TC_PRIO with handle = its pid. So a test finds its own program by
its uturnd's pid in `tc -j filter show dev lo ingress`, and that program's maps through
`bpftool -j prog show id N` (map_ids, and the object's btf_id: a map the program does not use yet
is not in map_ids but shares the object's BTF). Per-CPU values are summed, as uturnd does. The
kp_global slot names are read from kpath_abi.h's enum, so they follow the header.

kernel_skip_reason() says why a kernel-path test cannot run here (not root, a build without the
kernel path, no bpftool/tc, a kernel or sandbox that refuses bpf()), or None.
"""
import json
import os
import re
import shutil
import subprocess

from uturn import BUILDDIR, SRCDIR

PROG = "uturn_ingress"
ABI = os.path.join(SRCDIR, "server", "kpath", "kpath_abi.h")


def built_with_kpath():
    try:
        with open(os.path.join(BUILDDIR, "config.h")) as f:
            return "#define HAVE_KPATH 1" in f.read()
    except OSError:
        return False


def kernel_skip_reason():
    """Why kernel-offload = on cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (kernel-offload needs CAP_BPF and CAP_NET_ADMIN; CI is root)"
    if not built_with_kpath():
        return ("uturnd built without the kernel path (config.h has no HAVE_KPATH; "
                "scripts/deps.sh build installs libbpf-dev, bpftool and clang)")
    for tool in ("bpftool", "tc"):
        if not shutil.which(tool):
            return "%s not installed (scripts/deps.sh build)" % tool
    out = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True)
    if out.returncode != 0:
        return "the kernel refuses bpf(): bpftool prog show: %s" % out.stderr.strip()
    return None


def _json(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(cmd), out.returncode,
                                                  out.stderr.strip()))
    return json.loads(out.stdout or "null")


def global_slots():
    """kp_global's slot names in index order (KPATH_G_* of kpath_abi.h, without the prefix,
    lower case), KPATH_G_N excluded."""
    with open(ABI) as f:
        text = f.read()
    m = re.search(r"enum\s*\{\s*(KPATH_G_\w+\s*=\s*0\s*,.*?)\}", text, re.S)
    if not m:
        raise AssertionError("no KPATH_G_ enum in %s" % ABI)
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    names = [n.split("=")[0].strip() for n in body.split(",")]
    names = [n for n in names if n]
    if not names or names.pop() != "KPATH_G_N":
        raise AssertionError("KPATH_G_N is not the last KPATH_G_ enum value in %s" % ABI)
    return [n[len("KPATH_G_"):].lower() for n in names]


def prog_id(pid, dev="lo"):
    """The id of uturnd `pid`'s program on dev's clsact ingress (handle = pid), or None."""
    filters = _json(["tc", "-j", "filter", "show", "dev", dev, "ingress"]) or []
    for f in filters:
        opts = f.get("options") or {}
        handle = opts.get("handle")
        if handle is None or int(str(handle), 16) != pid:
            continue
        prog = opts.get("prog") or {}
        if prog.get("name") == PROG or str(opts.get("bpf_name", "")).startswith(PROG):
            if "id" in prog:
                return int(prog["id"])
            m = re.search(r":\[(\d+)\]", str(opts.get("bpf_name", "")))
            if m:
                return int(m.group(1))
    return None


def maps_of(pid, dev="lo"):
    """{map name: map id} of uturnd `pid`'s program on dev."""
    pid_prog = prog_id(pid, dev)
    if pid_prog is None:
        raise AssertionError("no %s filter with handle %#x on %s ingress (is uturnd %d running "
                             "with kernel-offload = on?)" % (PROG, pid, dev, pid))
    info = _json(["bpftool", "-j", "prog", "show", "id", str(pid_prog)])
    ids = set(info.get("map_ids") or [])
    btf = info.get("btf_id")
    out = {}
    for m in _json(["bpftool", "-j", "map", "show"]) or []:
        if m["id"] in ids or (btf and m.get("btf_id") == btf):
            out[m.get("name", "")] = m["id"]
    return out


def _u64s(raw):
    """A value as bpftool prints it without BTF formatting (["0x01", ...]): little-endian u64s."""
    b = bytes(int(x, 16) for x in raw)
    return [int.from_bytes(b[i:i + 8], "little") for i in range(0, len(b) - len(b) % 8, 8)]


def dump_percpu(map_id):
    """{key (int): [u64 fields summed over CPUs]} of a per-CPU array map."""
    out = {}
    for e in _json(["bpftool", "-j", "map", "dump", "id", str(map_id)]) or []:
        key = int.from_bytes(bytes(int(x, 16) for x in e["key"]), "little")
        total = None
        for v in e.get("values", []):
            fields = _u64s(v["value"])
            total = fields if total is None else [a + b for a, b in zip(total, fields)]
        out[key] = total or []
    return out


def kp_global(pid, dev="lo"):
    """kp_global of uturnd `pid`: {slot name: sum over CPUs}. Raises if the map is not there."""
    maps = maps_of(pid, dev)
    if "kp_global" not in maps:
        raise AssertionError("uturnd %d's program has no kp_global map (its maps: %s)"
                             % (pid, sorted(maps)))
    vals = dump_percpu(maps["kp_global"])
    names = global_slots()
    return {name: (vals.get(i) or [0])[0] for i, name in enumerate(names)}


def to_peer(g):
    """Datagrams the kernel relayed client -> peer (ChannelData and Send)."""
    return g["channeldata_in"] + g["send_in"]


def from_peer(g):
    """Datagrams the kernel relayed peer -> client (as ChannelData or Data indications)."""
    return g["channeldata_out"] + g["data_out"]


def diff(after, before):
    return {k: after[k] - before.get(k, 0) for k in after}


def metrics_kernel(text):
    """Sums of the /metrics samples labelled path="kernel", by metric name and direction:
    {(name, direction or ""): value}. Empty when uturnd has no such lines."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or 'path="kernel"' not in line:
            continue
        m = re.match(r'([a-zA-Z_:][\w:]*)\{([^}]*)\}\s+(\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        key = (m.group(1), labels.get("direction", ""))
        out[key] = out.get(key, 0) + int(float(m.group(3)))
    return out

#!/usr/bin/python3
"""kernel-offload (docs/KERNEL.md, issue 14's first slice): the lifecycle of the TC program.

With kernel-offload = on, the real uturnd loads the embedded program, attaches it on clsact ingress
of lo (the interface of 127.0.0.1) with tc handle = its pid, and logs that; off attaches nothing.
After SIGTERM no filter, program or map of ours is left; after SIGKILL the next start removes the
dead one's filter (and with it the program and maps). Without CAP_BPF/CAP_NET_ADMIN/CAP_SYS_ADMIN
(setpriv drops them from the bounding set), auto relays in user space after one log line and on
refuses to start with the reason and the config line. Needs root (CI is root); a kernel or sandbox
that refuses bpf() to root makes the tests print SKIP with its reason.
"""
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from uturn import BUILDDIR, SRCDIR, UTURND, Uturnd, TurnClient, check, run, wait_for  # noqa: E402
import uturn  # noqa: E402
from kpath_util import kp_global  # noqa: E402
import socket  # noqa: E402

PROG = "uturn_ingress"
BASE = ["user = alice:alice-pass", "realm = uturn.test", "allow-loopback-peers"]
DROP = ["setpriv", "--bounding-set=-bpf,-net_admin,-sys_admin", "--"]


def built_with_kpath():
    with open(os.path.join(BUILDDIR, "config.h")) as f:
        return "#define HAVE_KPATH 1" in f.read()


def kernel_refuses():
    """Why this kernel/sandbox will not run BPF for us, or None. Only a refusal skips: a build
    without libbpf fails the tests (scripts/deps.sh build installs it)."""
    if os.geteuid() != 0:
        return "not root (CI is root)"
    out = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True)
    if out.returncode != 0:
        return "bpftool prog show: %s" % out.stderr.strip()
    return None


def skip_reason():
    check(built_with_kpath(), "uturnd built without the kernel path (config.h has no HAVE_KPATH): "
          "scripts/deps.sh build installs libbpf-dev, bpftool and clang")
    check(shutil.which("bpftool") and shutil.which("tc"), "bpftool and tc (iproute2) needed")
    return kernel_refuses()


def lo_filters():
    """tc handles (ints) of our filters on lo's ingress."""
    out = subprocess.run(["tc", "filter", "show", "dev", "lo", "ingress"], capture_output=True,
                         text=True).stdout
    handles = []
    for line in out.splitlines():
        if PROG in line and " handle " in line:
            handles.append(int(line.split(" handle ")[1].split()[0], 16))
    return handles


def prog_ids():
    """Ids of every loaded program named uturn_ingress (any uturnd's)."""
    out = subprocess.run(["bpftool", "prog", "show", "name", PROG], capture_output=True,
                         text=True).stdout
    return [int(line.split(":")[0]) for line in out.splitlines() if line[:1].isdigit()]


def prog_maps(u):
    """The program id and map ids uturnd `u` logged / bpftool lists for it."""
    log = u.log()
    # The attach line's "(program id N, tc prio ...)": a sweep line before it names other ids.
    pid = int(log.split("attached on clsact ingress of")[1].split("(program id ")[1].split(",")[0])
    out = subprocess.run(["bpftool", "prog", "show", "id", str(pid)], capture_output=True,
                         text=True).stdout
    maps = []
    if "map_ids " in out:
        maps = [int(x) for x in out.split("map_ids ")[1].split()[0].split(",")]
    return pid, maps


def relay_once(u):
    """Allocate, bind channel 0x4000 to a loopback peer, send ChannelData: the peer gets it from
    the relayed address (the user-space path, with or without the program attached)."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(3)
    c = TurnClient(u, "alice", "alice-pass")
    try:
        code, _ = c.allocate()
        check(code == 0, "Allocate: error %s" % code)
        code, _ = c.channel_bind(0x4000, "127.0.0.1", peer.getsockname()[1])
        check(code == 0, "ChannelBind: error %s" % code)
        c.channel_data(0x4000, b"kernel-offload first slice")
        data, src = peer.recvfrom(2048)
        check(data == b"kernel-offload first slice", "peer got %r from %s" % (data, src))
    finally:
        c.close()
        peer.close()


def exists(kind, ident):
    return subprocess.run(["bpftool", kind, "show", "id", str(ident)], capture_output=True).returncode == 0


def test_on_attaches_and_sigterm_removes_everything():
    why = skip_reason()
    if why:
        print("SKIP test_on_attaches_and_sigterm_removes_everything: %s" % why)
        return
    u = Uturnd(conf=BASE + ["kernel-offload = on"])
    with u:
        pid = u.proc.pid
        check("TC program %s attached on clsact ingress of lo" % PROG in u.log(),
              "attach log line:\n%s" % u.log())
        check(pid in lo_filters(), "tc filter with handle %#x on lo: %s" % (pid, lo_filters()))
        prog, maps = prog_maps(u)
        check(exists("prog", prog) and maps and all(exists("map", m) for m in maps),
              "program %d and maps %s loaded" % (prog, maps))
        # The program passes everything: the user-space path still answers.
        relay_once(u)
    check("detached from 1 interface(s)" in u.log(), "detach log line:\n%s" % u.log()[-2000:])
    check(pid not in lo_filters(), "filter %#x left on lo after SIGTERM" % pid)
    # The kernel frees a program and its maps once the last reference is gone (RCU: soon, not at
    # once).
    wait_for(lambda: not exists("prog", prog) and not any(exists("map", m) for m in maps), 5,
             "program %d and maps %s freed after SIGTERM" % (prog, maps))


def test_off_attaches_nothing_default_auto_attaches():
    why = skip_reason()
    if why:
        print("SKIP test_off_attaches_nothing_default_auto_attaches: %s" % why)
        return
    before = set(prog_ids())
    with Uturnd(conf=BASE + ["kernel-offload = off"]) as u:
        check(u.proc.pid not in lo_filters(), "off: a filter of ours on lo")
        check(set(prog_ids()) <= before, "off: a new %s program: %s" % (PROG, prog_ids()))
        check("kpath" not in u.log(), "off: the kernel path logged:\n%s" % u.log())
    # The default is auto: with the capabilities (root here), the program is attached.
    with Uturnd(conf=BASE) as u:
        check(u.proc.pid in lo_filters(), "default (auto): no filter of ours on lo: %s\n%s"
              % (lo_filters(), u.log()[-2000:]))
        check("kernel-offload = auto: TC program" in u.log(),
              "default (auto): no attach line:\n%s" % u.log()[-2000:])


def test_sigkill_leftover_cleaned_at_next_start():
    why = skip_reason()
    if why:
        print("SKIP test_sigkill_leftover_cleaned_at_next_start: %s" % why)
        return
    dead = Uturnd(conf=BASE + ["kernel-offload = on"])
    dead_pid = dead.proc.pid
    try:
        prog, maps = prog_maps(dead)
    finally:
        dead.stop(signal.SIGKILL)  # also when reading its ids fails: never left running
    check(dead_pid in lo_filters(), "the SIGKILLed uturnd's filter %#x should still be on lo: %s"
          % (dead_pid, lo_filters()))
    check(exists("prog", prog), "the SIGKILLed uturnd's program %d should still be loaded" % prog)
    with Uturnd(conf=BASE + ["kernel-offload = on"]) as u:
        check("removed 1 tc filter(s) left by uturnd pid %d" % dead_pid in u.log(),
              "sweep log line:\n%s" % u.log())
        check(dead_pid not in lo_filters(), "leftover filter %#x still on lo" % dead_pid)
        check(u.proc.pid in lo_filters(), "the new uturnd's own filter is attached")
        wait_for(lambda: not exists("prog", prog) and not any(exists("map", m) for m in maps), 5,
                 "the dead uturnd's program %d and maps %s freed" % (prog, maps))
    check(u.proc.pid not in lo_filters(), "filter left after SIGTERM")


def without_caps(fn, prefix=DROP):
    """Run fn with uturnd started under setpriv, without CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN (or
    under another `prefix`)."""
    wrapper = os.path.join(BUILDDIR, "tests", "uturnd-nocaps.sh")
    os.makedirs(os.path.dirname(wrapper), exist_ok=True)
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (" ".join(prefix), UTURND))
    os.chmod(wrapper, 0o755)
    saved = uturn.UTURND
    uturn.UTURND = wrapper
    try:
        fn()
    finally:
        uturn.UTURND = saved
        os.unlink(wrapper)


def test_without_capabilities_auto_falls_back_on_refuses():
    why = skip_reason()
    if why:
        print("SKIP test_without_capabilities_auto_falls_back_on_refuses: %s" % why)
        return
    check(shutil.which("setpriv"), "setpriv (util-linux) needed")

    def body():
        with Uturnd(conf=BASE + ["kernel-offload = auto"]) as u:
            lines = [l for l in u.log().splitlines() if "kpath" in l]
            check(len(lines) == 1 and "kernel-offload = auto: relaying in user space only: no "
                  "CAP_BPF (or CAP_SYS_ADMIN) and no CAP_NET_ADMIN" in lines[0],
                  "auto without capabilities: one line with the reason, got %s" % lines)
            check(u.proc.pid not in lo_filters(), "auto without capabilities attached a filter")
            # The user-space path relays: an allocation and a permission work.
            relay_once(u)
        u = Uturnd(conf=BASE + ["kernel-offload = on"], expect_start=False)
        try:
            wait_for(lambda: u.proc.poll() is not None, 10, "uturnd to refuse kernel-offload = on")
            log = u.log()
            check(u.proc.returncode == 1 and "%s:" % u.conf_path in log and "'kernel-offload': on, "
                  "but the kernel path cannot start: no CAP_BPF" in log,
                  "on without capabilities: rc %s\n%s" % (u.proc.returncode, log))
        finally:
            u.stop()
    without_caps(body)



def test_sweep_action_removes_what_a_crashed_uturnd_left():
    """`uturnd --kernel-offload-sweep` (the systemd drop-in's ExecStopPost=+): the filter, program
    and maps of a SIGKILLed uturnd go, a live uturnd's stay; without CAP_SYS_ADMIN it says why."""
    why = skip_reason()
    if why:
        print("SKIP test_sweep_action_removes_what_a_crashed_uturnd_left: %s" % why)
        return
    with Uturnd(conf=BASE + ["kernel-offload = on"]) as live:
        dead = Uturnd(conf=BASE + ["kernel-offload = on"])
        dead_pid = dead.proc.pid
        try:
            prog, maps = prog_maps(dead)
        finally:
            dead.stop(signal.SIGKILL)
        check(dead_pid in lo_filters(), "the SIGKILLed uturnd's filter %#x should still be on lo"
              % dead_pid)
        r = subprocess.run([UTURND, "--kernel-offload-sweep"], capture_output=True, text=True,
                           timeout=60)
        out = r.stdout + r.stderr
        check(r.returncode == 0 and "removed 1 tc filter(s) left by uturnd pid %d" % dead_pid in out,
              "sweep: rc %d\n%s" % (r.returncode, out))
        n = int(r.stdout.split("--kernel-offload-sweep: ")[1].split()[0])
        check(n >= 1, "sweep counted %d filters" % n)
        check(dead_pid not in lo_filters(), "leftover filter %#x still on lo" % dead_pid)
        check(live.proc.pid in lo_filters(), "the sweep removed a live uturnd's filter")
        wait_for(lambda: not exists("prog", prog) and not any(exists("map", m) for m in maps), 5,
                 "the dead uturnd's program %d and maps %s freed" % (prog, maps))
        relay_once(live)
    r = subprocess.run(["setpriv", "--bounding-set=-sys_admin", "--", UTURND,
                        "--kernel-offload-sweep"], capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "listing BPF programs: Operation not permitted (needs "
          "CAP_SYS_ADMIN" in r.stderr, "sweep without CAP_SYS_ADMIN: rc %d\n%s"
          % (r.returncode, r.stderr))


def dropin_caps():
    """AmbientCapabilities= of etc/uturnd-kernel-offload.conf, for setpriv: ["bpf", ...]."""
    caps = set()
    with open(os.path.join(SRCDIR, "etc", "uturnd-kernel-offload.conf")) as f:
        for line in f:
            if line.startswith("AmbientCapabilities="):
                caps |= {c.lower()[len("cap_"):] for c in line.split("=", 1)[1].split()}
    return sorted(caps)


def test_dropin_capabilities_are_enough_and_each_is_needed():
    """The systemd drop-in's capabilities (etc/uturnd-kernel-offload.conf) are all uturnd needs for
    the kernel path (on starts, attaches and relays in the kernel), and each of CAP_BPF,
    CAP_PERFMON and CAP_NET_ADMIN is needed (without it, on refuses to start). scripts/package-test
    runs the installed uturnd the drop-in's way too, as user uturn under its system call filter."""
    why = skip_reason()
    if why:
        print("SKIP test_dropin_capabilities_are_enough_and_each_is_needed: %s" % why)
        return
    check(shutil.which("setpriv"), "setpriv (util-linux) needed")
    caps = dropin_caps()
    check({"bpf", "perfmon", "net_admin"} <= set(caps), "drop-in capabilities: %s" % caps)
    for missing in [None, "bpf", "perfmon", "net_admin"]:
        keep = ",".join("+" + c for c in caps if c != missing)
        prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-all," + keep, "--"]

        def body():
            if missing is None:
                with Uturnd(conf=BASE + ["kernel-offload = on"]) as u:
                    check(u.proc.pid in lo_filters(), "with the drop-in's capabilities (%s) the "
                          "filter is attached:\n%s" % (keep, u.log()))
                    relay_once(u)
                    wait_for(lambda: kp_global(u.proc.pid)["channeldata_in"] >= 1, 5,
                             "the ChannelData relayed in the kernel")
                return
            u = Uturnd(conf=BASE + ["kernel-offload = on"], expect_start=False)
            try:
                wait_for(lambda: u.proc.poll() is not None, 10,
                         "uturnd without CAP_%s to refuse kernel-offload = on" % missing.upper())
                check(u.proc.returncode == 1 and "'kernel-offload': on, but the kernel path "
                      "cannot start" in u.log(), "without CAP_%s: rc %s\n%s"
                      % (missing.upper(), u.proc.returncode, u.log()))
            finally:
                u.stop()
        without_caps(body, prefix)

run()

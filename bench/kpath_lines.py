#!/usr/bin/python3
"""bench/kpath_lines.py OUT: where the kernel program's time goes, from bench/kflow --perf OUT.

Takes the samples of OUT.script (perf script -F ip,sym, call chains) that ran under tc_run (the
clsact ingress hook) and, of those, the ones in the program bench/kflow attached (its functions in
OUT.map: other programs' samples are left out). Prints the innermost symbol of each (the program's
functions, the helpers and the kernel code they call, tc's own), then the program's source lines:
a sample in a helper counts for the line that called it. Percentages are of the tc_run samples; at
perf's 20 kHz on one core, a sample is 50 us of CPU, so per packet: samples x 50 us / packets."""
import bisect
import collections
import sys


def main(out):
    lines, funcs = [], []
    with open(out + ".map") as f:
        for row in f:
            p = row.rstrip("\n").split(" ", 3)
            if p[0] == "L":
                lines.append((int(p[1], 16), p[2], p[3].strip() if len(p) > 3 else ""))
            elif p[0] == "K":
                funcs.append((int(p[1], 16), int(p[2])))
    lines.sort()
    addrs = [a for a, _, _ in lines]

    def ours(ip):
        return any(a <= ip < a + n for a, n in funcs)

    with open(out + ".script") as f:
        blocks = f.read().split("\n\n")
    n = other = 0
    top, by_line = collections.Counter(), collections.Counter()
    for b in blocks:
        frames = []
        for row in b.strip().split("\n"):
            p = row.split(None, 1)
            if len(p) == 2:
                frames.append((int(p[0], 16), p[1]))
        if not any(s.startswith("tc_run") for _, s in frames):
            continue
        bpf = [(ip, s) for ip, s in frames if s.startswith("bpf_prog_")]
        if bpf and not ours(bpf[0][0]):
            other += 1
            continue
        n += 1
        top[frames[0][1].split("+")[0]] += 1
        if bpf:
            i = bisect.bisect_right(addrs, bpf[0][0]) - 1
            if i >= 0:
                by_line[(lines[i][1], lines[i][2][:90])] += 1
    if not n:
        sys.exit("no samples of the program under tc_run in %s.script" % out)
    print("tc_run samples of the program's runs: %d (other programs': %d)" % (n, other))
    for sym, c in top.most_common(20):
        print("%6d %5.1f%%  %s" % (c, 100.0 * c / n, sym))
    print("--- the program's source lines (helpers counted at their call)")
    for (line, src), c in by_line.most_common(30):
        print("%6d %5.1f%%  %-28s %s" % (c, 100.0 * c / n, line, src))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench/kpath_lines.py OUT (from bench/kflow --perf OUT)")
    main(sys.argv[1])

/* kpath_abi.h - what the kernel program (kpath.bpf.c) and its loader (kpath.c) agree on: the
 * program's name, the tc filter priority every uturnd attaches at (the handle is the owner's pid,
 * so a crashed uturnd's filter can be found and removed at the next start), and the slots of the
 * per-CPU counter map. Plain C with fixed-width types: compiled by clang -target bpf and by the
 * host compiler. */
#ifndef UTURN_KPATH_ABI_H
#define UTURN_KPATH_ABI_H

/* The program's name as the kernel lists it (bpftool prog show, tc filter show): at most 15
 * characters. */
#define KPATH_PROG_NAME "uturn_ingress"
/* tc priority of our clsact ingress filters; each uturnd's filter has handle = its pid. */
#define KPATH_TC_PRIO 0x7574u

/* Slots of the per-CPU counter map kpath_seen: packets and bytes the program saw on ingress. */
enum { KPATH_SEEN_PKTS = 0, KPATH_SEEN_BYTES = 1, KPATH_SEEN_N = 2 };

#endif

/* kpath_xdp.h - the XDP half of the kernel path's attach (kpath_xdp.c), for kpath.c only: which
 * interfaces get the XDP program (kernel-offload-xdp), attaching it in native mode, detaching it,
 * and removing a crashed uturnd's. Main thread, with libbpf (HAVE_KPATH) only. */
#ifndef UTURN_KPATH_XDP_H
#define UTURN_KPATH_XDP_H

#include <stddef.h>

#include "cfg.h"

/* Attach the XDP program `prog_fd` in native (driver) mode on those of the n interfaces `ifs`
 * (where TC is attached) that kernel-offload-xdp allows: never loopback; veth only with `on`.
 * Attached ones go to xdp_if (room for n), their count to *n_xdp, and into the program's
 * kp_xdp_if map `map_fd` (the interfaces it may redirect to). auto: an interface left off
 * (veth, no native XDP, another XDP program there) is logged, one line each, and 0 is returned.
 * on: the first failure detaches what was attached and returns -1 with `err` naming the config
 * file, line and key, the interface and the reason. off: nothing, 0. */
int kpath_xdp_attach(const cfg_t *cfg, int prog_fd, int map_fd, const int *ifs, size_t n,
                     int *xdp_if, size_t *n_xdp, char *err, size_t errlen);

/* Detach `prog_fd` from the n interfaces of xdp_if, where it is still the one attached. */
void kpath_xdp_detach(int prog_fd, const int *xdp_if, size_t n);

/* A crashed uturnd's XDP program `prog_fd` (found by name and owner pid, as its tc filters):
 * detach it from every interface it is attached to. Returns how many. */
int kpath_xdp_sweep(int prog_fd, unsigned prog_id);

#endif

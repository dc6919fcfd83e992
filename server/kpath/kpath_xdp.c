/* kpath_xdp.c - where the kernel path's XDP program (kpath_xdp.bpf.h) is attached, per
 * kernel-offload-xdp (docs/KERNEL.md). Native (driver) mode only, never generic: a generic XDP
 * program runs on an skb after it is built, which TC already does better. Loopback never (its XDP
 * is generic). A veth only with `on`: a frame that XDP sends out of a veth reaches the far end
 * only through that end's NAPI, which exists only when the far end runs an XDP program or has GRO
 * switched on, and which the kernel schedules after an XDP_TX only when the far end has an XDP
 * program (otherwise the frames wait in its ring until other traffic comes, or are dropped): a
 * condition on the other side of the link that uturnd cannot check; the operator asserts it with
 * `on`. Attached with XDP_FLAGS_UPDATE_IF_NOEXIST (another uturnd's or another tool's program is
 * never replaced) and detached with XDP_FLAGS_REPLACE against our own program (one attached since
 * by someone else is never removed). */
#include "config.h"

#ifdef HAVE_KPATH
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "kpath_abi.h"
#include "kpath_xdp.h"
#include "log.h"

/* The interface's driver name (ethtool), or "" when it has none to tell. */
static void driver_of(const char *ifname, char *out, size_t cap)
{
    out[0] = '\0';
    struct ethtool_drvinfo di;
    memset(&di, 0, sizeof(di));
    di.cmd = ETHTOOL_GDRVINFO;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    ifr.ifr_data = (char *)&di;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (ioctl(fd, SIOCETHTOOL, &ifr) == 0)
        snprintf(out, cap, "%.*s", (int)sizeof(di.driver), di.driver);
    close(fd);
}

static int attach_one(int ifindex, int prog_fd)
{
    return bpf_xdp_attach(ifindex, prog_fd, XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
}

static const char *attach_error(int rc)
{
    switch (rc) {
    case -EOPNOTSUPP:
        return "the driver has no native XDP";
    case -EBUSY:
    case -EEXIST:
        return "another XDP program is attached there";
    default:
        return strerror(-rc);
    }
}

void kpath_xdp_detach(int prog_fd, const int *xdp_if, size_t n)
{
    DECLARE_LIBBPF_OPTS(bpf_xdp_attach_opts, o, .old_prog_fd = prog_fd);
    for (size_t i = 0; i < n; i++)
        bpf_xdp_detach(xdp_if[i], XDP_FLAGS_DRV_MODE | XDP_FLAGS_REPLACE, &o);
}

int kpath_xdp_attach(const cfg_t *cfg, int prog_fd, int map_fd, const int *ifs, size_t n,
                     int *xdp_if, size_t *n_xdp, char *err, size_t errlen)
{
    *n_xdp = 0;
    if (cfg->kernel_offload_xdp == CFG_KOFFLOAD_OFF)
        return 0;
    bool on = cfg->kernel_offload_xdp == CFG_KOFFLOAD_ON;
    const char *mode = on ? "on" : "auto";
    for (size_t i = 0; i < n; i++) {
        char name[IF_NAMESIZE] = "?", drv[64];
        if_indextoname((unsigned)ifs[i], name);
        driver_of(name, drv, sizeof(drv));
        /* Loopback's XDP is generic (an skb first): TC does that part. */
        if (strcmp(name, "lo") == 0)
            continue;
        if (strcmp(drv, "veth") == 0 && !on) {
            LOGI("kpath",
                 "kernel-offload-xdp = auto: XDP left off on %s (veth): what XDP sends out of a "
                 "veth is delivered only when its far end runs an XDP program, which uturnd "
                 "cannot check; kernel-offload-xdp = on asserts it (docs/KERNEL.md). TC relays "
                 "there",
                 name);
            continue;
        }
        /* In the map first: the program may redirect to it as soon as it runs anywhere. */
        __u32 key = (__u32)ifs[i], one = 1;
        int rc = bpf_map_update_elem(map_fd, &key, &one, BPF_ANY) == 0 ? 0 : -errno;
        if (rc == 0)
            rc = attach_one(ifs[i], prog_fd);
        if (rc != 0) {
            bpf_map_delete_elem(map_fd, &key);
            if (on) {
                kpath_xdp_detach(prog_fd, xdp_if, *n_xdp);
                *n_xdp = 0;
                return cfg_fail(cfg, "kernel-offload-xdp", 0, err, errlen,
                                "on, but the XDP program cannot be attached in native mode on %s "
                                "(driver %s): %s",
                                name, drv[0] ? drv : "?", attach_error(rc));
            }
            LOGI("kpath",
                 "kernel-offload-xdp = auto: XDP left off on %s (driver %s): %s; TC relays "
                 "there",
                 name, drv[0] ? drv : "?", attach_error(rc));
            continue;
        }
        xdp_if[(*n_xdp)++] = ifs[i];
        LOGI("kpath",
             "kernel-offload-xdp = %s: XDP program %s attached in native mode on %s "
             "(driver %s)",
             mode, KPATH_XDP_NAME, name, drv[0] ? drv : "?");
    }
    return 0;
}

int kpath_xdp_sweep(int prog_fd, unsigned prog_id)
{
    struct if_nameindex *ni = if_nameindex();
    int n = 0;
    DECLARE_LIBBPF_OPTS(bpf_xdp_attach_opts, o, .old_prog_fd = prog_fd);
    for (struct if_nameindex *p = ni; p && p->if_index != 0; p++) {
        __u32 id = 0;
        if (bpf_xdp_query_id((int)p->if_index, XDP_FLAGS_DRV_MODE, &id) == 0 && id == prog_id &&
            bpf_xdp_detach((int)p->if_index, XDP_FLAGS_DRV_MODE | XDP_FLAGS_REPLACE, &o) == 0)
            n++;
    }
    if (ni)
        if_freenameindex(ni);
    return n;
}
#else
/* Built without libbpf: kpath.c never calls in. */
typedef int kpath_xdp_unused_t;
#endif

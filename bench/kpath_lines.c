/* kpath_lines.c - the JIT line table of a loaded BPF program, for bench/kpath_lines.py (which maps
 * perf samples in the program to its source lines; bench/kflow --perf runs both). bpftool cannot
 * here: Debian's is built without libbfd, and perf without libopcodes cannot annotate BPF.
 *
 *   kpath_lines PROG_ID
 *
 * Prints "K <address> <length>" per function of the program (its subprograms included), then
 * "L <address> <file>:<line> <source line>" per line-info record: the JIT-ed address where that
 * source line's code starts. Needs root (CAP_SYS_ADMIN for BPF_PROG_GET_FD_BY_ID). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/bpf.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: kpath_lines PROG_ID\n");
        return 2;
    }
    int fd = bpf_prog_get_fd_by_id((__u32)strtoul(argv[1], NULL, 10));
    if (fd < 0) {
        fprintf(stderr, "kpath_lines: program %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    struct bpf_prog_info info;
    __u32 len = sizeof(info);
    memset(&info, 0, sizeof(info));
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
        fprintf(stderr, "kpath_lines: program info: %s\n", strerror(errno));
        return 1;
    }
    __u32 nk = info.nr_jited_ksyms, nf = info.nr_jited_func_lens, nli = info.nr_line_info,
          njli = info.nr_jited_line_info, lirs = info.line_info_rec_size, btf_id = info.btf_id;
    __u64 *ks = calloc(nk + 1, sizeof(*ks)), *jli = calloc(njli + 1, sizeof(*jli));
    __u32 *fl = calloc(nf + 1, sizeof(*fl));
    char *li = calloc(nli + 1, lirs ? lirs : 1);
    if (!ks || !jli || !fl || !li)
        return 1;
    memset(&info, 0, sizeof(info));
    info.nr_jited_ksyms = nk;
    info.jited_ksyms = (__u64)(unsigned long)ks;
    info.nr_jited_func_lens = nf;
    info.jited_func_lens = (__u64)(unsigned long)fl;
    info.nr_line_info = nli;
    info.line_info_rec_size = lirs;
    info.line_info = (__u64)(unsigned long)li;
    info.nr_jited_line_info = njli;
    info.jited_line_info_rec_size = sizeof(__u64);
    info.jited_line_info = (__u64)(unsigned long)jli;
    len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
        fprintf(stderr, "kpath_lines: program info: %s\n", strerror(errno));
        return 1;
    }
    struct btf *btf = btf__load_from_kernel_by_id(btf_id);
    for (__u32 i = 0; i < nk && i < nf; i++)
        printf("K %llx %u\n", (unsigned long long)ks[i], fl[i]);
    for (__u32 i = 0; i < nli && i < njli; i++) {
        const struct bpf_line_info *l = (const void *)(li + (size_t)i * lirs);
        const char *src = btf ? btf__name_by_offset(btf, l->line_off) : NULL;
        const char *file = btf ? btf__name_by_offset(btf, l->file_name_off) : NULL;
        const char *base = file ? strrchr(file, '/') : NULL;
        printf("L %llx %s:%u %s\n", (unsigned long long)jli[i],
               base ? base + 1 : (file && *file ? file : "?"), BPF_LINE_INFO_LINE_NUM(l->line_col),
               src ? src : "");
    }
    btf__free(btf);
    return 0;
}

#!/usr/bin/env python3
"""check-includes.py - the folder dependency table of server/ and admin/, checked on the sources.

Every quoted #include is resolved as the compiler would (the including file's folder, then the
folders on its library's include list, then the top of the tree, which automake's DEFAULT_INCLUDES
adds), so "../net/tls.h" and "server/core/worker.h" are caught as well as "worker.h". It fails
when a file includes a header from a folder its own may not include, when base/ or turn/ include a
poisoned system header (<uv.h>, <openssl/ssl.h>, hiredis, microhttpd, jansson: server/poison/),
when admin/ includes the engine's or the worker's internals, or when the include graph between
folders has a cycle. Makefile.am's per-library include lists enforce the same table at build
time; this check also covers what a permissive -I would let through.

Run by `make check` (TABLE_TESTS); exit status 0 when the tree follows the table.
"""
import os
import re
import sys

TOP = os.environ.get("UTURN_SRCDIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# folder -> the folders it may include from (itself included). Lower layers first.
ALLOWED = {
    "common": ["common"],
    "server/base": ["common", "server/base"],
    "server/turn": ["common", "server/base", "server/turn"],
    "server/auth": ["common", "server/base", "server/turn", "server/auth"],
    # kpath/: the kernel fast path (libbpf); started by main.c, its maps written by core/offload.c,
    # never seen by the engine.
    "server/kpath": ["common", "server/base", "server/kpath"],
    # net/ still includes core/worker.h (the worker's listener and relay declarations live
    # there): net and core are built as one library and form one node of the graph below.
    "server/net": ["common", "server/base", "server/turn", "server/auth", "server/net", "server/core"],
    # core/offload.c writes the kernel path's maps (kpath.h, kpath_abi.h) for the workers.
    "server/core": ["common", "server/base", "server/turn", "server/auth", "server/net", "server/core",
                    "server/kpath"],
    # fleet/: the registry, cluster view and revocation over Redis, on the server's public API.
    "server/fleet": ["common", "server/base", "server/turn", "server/auth", "server/net",
                     "server/core", "server/fleet"],
    "server": ["common", "server/base", "server/turn", "server/auth", "server/net", "server/core",
               "server/fleet", "server/kpath", "admin"],  # main.c, the composition root
    "admin": ["common", "server/base", "server/turn", "server/auth", "server/net", "server/core",
              "server/fleet", "admin"],
}
# Graph nodes: folders built into one library count as one.
NODE = {"server/net": "server/net+core", "server/core": "server/net+core"}
# Headers admin/ must not include: it sees allocations only through alloc_view.h / alloc_query.h.
ADMIN_FORBIDDEN = {"server/core/worker.h", "server/turn/alloc.h", "server/turn/dispatch.h",
                   "server/turn/dispatch_int.h", "server/auth/creds_int.h"}
POISONED = re.compile(r"^(uv\.h|uv/.*|openssl/ssl\.h|hiredis/.*|microhttpd\.h|jansson\.h|curl/.*)$")
ENGINE = ("server/base", "server/turn")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def folder_of(rel):
    d = os.path.dirname(rel)
    return d if d in ALLOWED else None


def resolve(rel, name):
    """The tree-relative path the compiler would open for #include "name" in `rel`, or None."""
    here = os.path.dirname(rel)
    for base in [here] + ALLOWED[folder_of(rel)] + [""]:
        cand = os.path.normpath(os.path.join(base, name))
        if not cand.startswith("..") and os.path.isfile(os.path.join(TOP, cand)):
            return cand
    # Not reachable through the allowed folders: name the forbidden header it would have been.
    for d in ALLOWED:
        cand = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(os.path.join(TOP, cand)):
            return cand
    return None  # a generated or system header (config.h)


def sources():
    for root in ("common", "server", "admin"):
        for dirpath, _, files in os.walk(os.path.join(TOP, root)):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    rel = os.path.relpath(os.path.join(dirpath, f), TOP)
                    if folder_of(rel):
                        yield rel


def find_cycle(edges):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def main():
    errors = []
    edges = {}
    nfiles = 0
    for rel in sources():
        nfiles += 1
        src_folder = folder_of(rel)
        with open(os.path.join(TOP, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        for kind, name in INCLUDE.findall(text):
            if kind == "<":
                if src_folder in ENGINE and POISONED.match(name):
                    errors.append("%s: includes <%s> (poisoned for %s)" % (rel, name, src_folder))
                continue
            target = resolve(rel, name)
            if not target:
                continue
            dst_folder = os.path.dirname(target)
            if dst_folder not in ALLOWED:
                errors.append("%s: includes \"%s\" (%s), outside the folders of the table" %
                              (rel, name, target))
                continue
            if dst_folder not in ALLOWED[src_folder]:
                errors.append("%s: includes \"%s\" (%s): %s may not include from %s" %
                              (rel, name, target, src_folder, dst_folder))
            if src_folder == "admin" and target in ADMIN_FORBIDDEN:
                errors.append("%s: includes \"%s\" (%s): admin/ sees allocations only through "
                              "alloc_view.h and alloc_query.h" % (rel, name, target))
            a, b = NODE.get(src_folder, src_folder), NODE.get(dst_folder, dst_folder)
            if a != b:
                edges.setdefault(a, set()).add(b)
    cycle = find_cycle(edges)
    if cycle:
        errors.append("include cycle between folders: " + " -> ".join(cycle))
    for e in errors:
        print("FAIL " + e)
    print("%d files, %d folder edges: %s" % (nfiles, sum(len(v) for v in edges.values()), "; ".join(
        "%s -> %s" % (k, ", ".join(sorted(v))) for k, v in sorted(edges.items()))))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

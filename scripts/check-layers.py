#!/usr/bin/env python3
"""check-layers - keeps src/ layered: no upward arrow, no circle.

Every src/*.c names its layer in its opening comment with a line

     * Layer: <name>

where <name> is one of LAYERS below, lowest first.  A header X.h (src/ or
include/coap2mqtt/) belongs to the module src/X.c; a header without a
same-named .c is a module of its own and names its layer the same way.
A room too big for one file shares its state through src/R_internal.h:
then src/R.c, every src/R_*.c, src/R_internal.h and include/coap2mqtt/R.h
are one module (R), and every one of its files names the same layer.  The
arrows between its own files are its own business (libcoap's files and
their *_internal.h are the model); arrows to and from other modules count.

Arrows between modules, from two sources:
  include  A.c or A.h has #include "B.h" / "coap2mqtt/B.h"      A -> B
  call     a symbol undefined in A.o (nm) is defined in B.o     A -> B
           (functions and data alike)

It fails (exit 1) when an arrow goes to a higher layer, when the arrows
(same-layer ones included) form a circle, or when a file has no layer or
an unknown one; every problem is one line naming the pair and the evidence.

Usage:
  scripts/check-layers.py [--objs DIR]        check; exit 0 ok, 1 violations
  scripts/check-layers.py --report [...]      every arrow, grouped by layer,
                                              then the problems; exit 0
  scripts/check-layers.py --count [...]       the summary line only; exit 0
Options:
  --objs DIR      the objects of src/*.c (DIR/X.o for src/X.c), e.g.
                  build/san/obj/src after "make SAN=1 all".  Without it the
                  sources are compiled into a temporary directory.
  --assign FILE   layers from FILE ("path layer" lines; path as src/x.c,
                  include/coap2mqtt/x.h, or a bare module name x for
                  src/x.c; '#' starts a comment) instead of Layer: lines.
  --root DIR      the tree holding src/ and include/ (default: this
                  script's repository).
  --cflags FLAGS  extra compiler flags when compiling (default: pkg-config
                  --cflags of the Makefile's PKGS).
Exit 2: cannot run (no object, compile error, unreadable file, bad usage).
"""

import argparse
import concurrent.futures
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections import defaultdict, deque

# The layers, lowest first.  An arrow may go to its own layer or lower.
LAYERS = ["base", "transport", "devices", "services", "status", "wiring"]
RANK = {name: i for i, name in enumerate(LAYERS)}

PROG = "layers"
LAYER_RE = re.compile(r"^\s*\*?\s*Layer:\s*(\S*)(?:\s.*)?$")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def say(msg):
    print(f"{PROG}: {msg}")


def die(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(2)


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}")


def layer_lines(text):
    """The Layer: names in the opening comment, and the line number of a
    Layer: line found elsewhere (a hint for the error message)."""
    names, stray = [], None
    body = text.lstrip()
    skipped = text[: len(text) - len(body)].count("\n")
    end = body.find("*/") if body.startswith("/*") else -1
    opening = body[2:end] if end >= 0 else ""
    for line in opening.split("\n"):
        m = LAYER_RE.match(line)
        if m:
            names.append(m.group(1))
    if not names:
        for n, line in enumerate(text.split("\n"), 1):
            if n > skipped + opening.count("\n") + 1 and "Layer:" in line:
                stray = n
                break
    return names, stray


class Tree:
    def __init__(self, root):
        self.root = root
        src = os.path.join(root, "src")
        inc = os.path.join(root, "include")
        if not os.path.isdir(src):
            die(f"no src/ directory in {root}")
        self.sources = sorted(f"src/{n}" for n in os.listdir(src) if n.endswith(".c"))
        headers = [f"src/{n}" for n in os.listdir(src) if n.endswith(".h")]
        for d, _, files in os.walk(inc):
            rel = os.path.relpath(d, root)
            headers += [f"{rel}/{n}" for n in files if n.endswith(".h")]
        self.headers = sorted(headers)
        by_base = {os.path.basename(c)[:-2]: c for c in self.sources}
        # module of each file: the .c of the same basename, else itself
        self.module = {c: c for c in self.sources}
        for h in self.headers:
            self.module[h] = by_base.get(os.path.basename(h)[:-2], h)
        # rooms over several files: R.c, R_*.c, R_internal.h, R.h
        for h in self.headers:
            name = os.path.basename(h)[:-2]
            room = by_base.get(name[: -len("_internal")]) if name.endswith("_internal") else None
            if not room or not h.startswith("src/"):
                continue
            prefix = room[:-2] + "_"
            for f in self.sources + self.headers:
                if f.startswith(prefix) and f.startswith("src/"):
                    self.module[f] = room
        self.modules = sorted(set(self.module.values()))
        self.text = {f: read(os.path.join(root, f)) for f in self.module}

    def resolve(self, includer, quote, name):
        """The project file an #include names, or None (system header)."""
        cands = []
        if quote == '"':
            cands.append(os.path.normpath(os.path.join(os.path.dirname(includer), name)))
        cands.append(os.path.normpath(os.path.join("include", name)))
        for c in cands:
            if c in self.module:
                return c
        return None


def layers_from_comments(tree, problems, hints):
    declared = {}
    for f in tree.sources + tree.headers:
        names, stray = layer_lines(tree.text[f])
        if len(set(names)) > 1:
            problems.append(f"two layers: {f}: {', '.join(names)}")
        if names:
            declared[f] = names[0]
        elif stray:
            hints[f] = f"the Layer: line {stray} is not in the opening comment"
    return declared


def layers_from_file(tree, path):
    declared = {}
    for n, line in enumerate(read(path).split("\n"), 1):
        line = line.split("#", 1)[0].split()
        if not line:
            continue
        if len(line) != 2:
            die(f"{path}:{n}: expected \"path layer\"")
        f, layer = line
        if "/" not in f and not f.endswith((".c", ".h")):
            f = f"src/{f}.c"
        if f not in tree.module:
            die(f"{path}:{n}: {f}: no such file in {tree.root}")
        declared[f] = layer
    return declared


def assign_layers(tree, declared, problems, hints):
    """Layer of each module; problems for missing, unknown, conflicting."""
    layer = {}
    for m in tree.modules:
        name = declared.get(m)
        if name is None:
            if m in hints:
                problems.append(f"no layer: {m}: {hints[m]}")
            elif m.endswith(".c"):
                problems.append(f'no layer: {m}: no " * Layer: <name>" line in its opening comment')
            else:
                problems.append(f'no layer: {m}: no same-named .c file and no " * Layer: <name>" line')
            continue
        if name not in RANK:
            problems.append(f"unknown layer: {m}: '{name}' (layers: {', '.join(LAYERS)})")
            continue
        layer[m] = name
    for f in tree.sources + tree.headers:
        m = tree.module[f]
        if m == f:
            continue
        if f in declared and m in layer and declared[f] != layer[m]:
            problems.append(f"layer conflict: {f} says '{declared[f]}', {m} says '{layer[m]}'")
        elif f.endswith(".c") and f not in declared and m in layer:
            problems.append(f'no layer: {f}: no " * Layer: <name>" line (its room {m} is {layer[m]})')
    return layer


def pkg_cflags(root):
    mk = os.path.join(root, "Makefile")
    if not os.path.exists(mk):
        return []
    m = re.search(r"^PKGS\s*:?=\s*(.*)$", read(mk), re.M)
    if not m:
        return []
    try:
        out = subprocess.run(["pkg-config", "--cflags"] + m.group(1).split(),
                             capture_output=True, text=True)
    except OSError:
        die("pkg-config not found (make deps)")
    if out.returncode != 0:
        die(f"pkg-config --cflags {m.group(1)} failed (make deps):\n{out.stderr.strip()}")
    return shlex.split(out.stdout)


def compile_all(tree, cflags, outdir):
    cc = shlex.split(os.environ.get("CC", "cc"))
    flags = ["-std=c11", "-D_GNU_SOURCE", "-I" + os.path.join(tree.root, "include")] + cflags

    def one(c):
        obj = os.path.join(outdir, os.path.basename(c)[:-2] + ".o")
        r = subprocess.run(cc + flags + ["-c", "-o", obj, os.path.join(tree.root, c)],
                           capture_output=True, text=True)
        return c, obj, r

    objs = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        for c, obj, r in ex.map(one, tree.sources):
            if r.returncode != 0:
                sys.stderr.write(r.stderr)
                die(f"cannot compile {c}")
            objs[c] = obj
    return objs


def find_objs(tree, objdir):
    objs = {}
    for c in tree.sources:
        obj = os.path.join(objdir, os.path.basename(c)[:-2] + ".o")
        if not os.path.exists(obj):
            die(f"no object {obj} for {c} (build first, e.g. make SAN=1 all)")
        if os.path.getmtime(obj) < os.path.getmtime(os.path.join(tree.root, c)):
            print(f"{PROG}: warning: {obj} is older than {c}", file=sys.stderr)
        objs[c] = obj
    return objs


def symbols(objs):
    """(defined, undefined): module -> set of external symbol names."""
    defined, undefined = defaultdict(set), defaultdict(set)
    by_obj = {os.path.normpath(o): c for c, o in objs.items()}
    try:
        r = subprocess.run(["nm", "-A", "-P", "-g"] + list(objs.values()),
                           capture_output=True, text=True)
    except OSError:
        die("nm not found (binutils)")
    if r.returncode != 0:
        die(f"nm failed:\n{r.stderr.strip()}")
    for line in r.stdout.split("\n"):
        obj, sep, rest = line.partition(": ")
        fields = rest.split()
        if not sep or len(fields) < 2:
            continue
        c = by_obj.get(os.path.normpath(obj))
        if c is None:
            continue
        name, kind = fields[0], fields[1]
        if kind in ("U", "w", "v"):
            undefined[c].add(name)
        elif kind.isupper():
            defined[c].add(name)
    return defined, undefined


class Arrow:
    def __init__(self, source):
        self.source = source    # the module the arrow leaves
        self.includes = set()   # (including file, included file)
        self.calls = set()      # symbol names

    def evidence(self, limit=None):
        incs = [f"#include {h}" if f == self.source else f"{f} #include {h}"
                for f, h in sorted(self.includes)]
        calls = sorted(self.calls)
        if limit is not None and len(calls) > limit:
            calls = calls[:limit] + [f"+{len(self.calls) - limit} more"]
        return ", ".join(incs + calls)


def build_graph(tree, objs):
    arrows = {}

    def arrow(a, b):
        if (a, b) not in arrows:
            arrows[a, b] = Arrow(a)
        return arrows[a, b]

    for f in tree.sources + tree.headers:
        for line in tree.text[f].split("\n"):
            m = INCLUDE_RE.match(line)
            if not m:
                continue
            target = tree.resolve(f, m.group(1), m.group(2))
            if target and tree.module[target] != tree.module[f]:
                arrow(tree.module[f], tree.module[target]).includes.add((f, target))
    defined, undefined = symbols(objs)
    definer = defaultdict(set)
    for c, names in defined.items():
        for n in names:
            definer[n].add(c)
    for c, names in undefined.items():
        for n in names:
            for d in definer.get(n, ()):
                if tree.module[d] != tree.module[c]:
                    arrow(tree.module[c], tree.module[d]).calls.add(n)
    return arrows


def sccs(nodes, succ):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(succ[w])))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(sorted(comp))
    return out


def circles(comp, succ):
    """Shortest cycles through every arrow inside one component: each arrow
    u -> v not yet shown is closed by a shortest path v ... u."""
    inside = set(comp)
    shown, cycles = set(), []
    for u in comp:
        for v in succ[u]:
            if v not in inside or (u, v) in shown:
                continue
            prev, queue = {v: None}, deque([v])
            while queue and u not in prev:
                x = queue.popleft()
                for y in succ[x]:
                    if y in inside and y not in prev:
                        prev[y] = x
                        queue.append(y)
            path, x = [], u
            while x is not None:
                path.append(x)
                x = prev[x]
            cycle = [u] + path[::-1]     # u -> v -> ... -> u
            for a, b in zip(cycle, cycle[1:]):
                shown.add((a, b))
            cycles.append(cycle)
    return cycles


def main():
    ap = argparse.ArgumentParser(prog="check-layers.py", add_help=True,
                                 description="keeps src/ layered (see the top of this file)")
    ap.add_argument("--objs")
    ap.add_argument("--assign")
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--cflags")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--report", action="store_true")
    mode.add_argument("--count", action="store_true")
    args = ap.parse_args()

    tree = Tree(args.root)
    problems, hints = [], {}
    if args.assign:
        declared = layers_from_file(tree, args.assign)
    else:
        declared = layers_from_comments(tree, problems, hints)
    layer = assign_layers(tree, declared, problems, hints)

    if args.objs:
        objs = find_objs(tree, args.objs)
        arrows = build_graph(tree, objs)
    else:
        cflags = shlex.split(args.cflags) if args.cflags is not None else pkg_cflags(tree.root)
        with tempfile.TemporaryDirectory(prefix="check-layers.") as tmp:
            objs = compile_all(tree, cflags, tmp)
            arrows = build_graph(tree, objs)

    def tag(f):
        m = tree.module[f]
        return f"{f} ({layer.get(m, '?')})"

    # upward arrows
    upward = set()
    for (a, b), arrow in sorted(arrows.items()):
        if a in layer and b in layer and RANK[layer[b]] > RANK[layer[a]]:
            upward.add((a, b))
            for f, h in sorted(arrow.includes):
                problems.append(f"upward include: {tag(f)} -> {tag(h)}")
            if arrow.calls:
                problems.append(f"upward call: {tag(a)} -> {tag(b)}: {', '.join(sorted(arrow.calls))}")

    # circles
    succ = defaultdict(list)
    for a, b in sorted(arrows):
        succ[a].append(b)
    circle_of = {}                      # module -> its component's number
    for comp in sccs(tree.modules, succ):
        if len(comp) < 2:
            continue
        for m in comp:
            circle_of[m] = comp[0]
        for cycle in circles(comp, succ):
            why = "; ".join(f"{a} -> {b}: {arrows[a, b].evidence(limit=3)}"
                            for a, b in zip(cycle, cycle[1:]))
            problems.append(f"circle: {' -> '.join(cycle)} [{why}]")

    if args.report:
        for name in LAYERS + [None]:
            mods = [m for m in tree.modules if layer.get(m) == name]
            if not mods:
                continue
            print(f"== {name or 'no layer'} ({len(mods)})")
            for m in mods:
                outs = [(b, arrows[m, b]) for b in succ[m]]
                print(f"  {m}" + ("" if outs else "  (no arrows out)"))
                for b, arrow in outs:
                    marks = []
                    if (m, b) in upward:
                        marks.append("UPWARD")
                    if m in circle_of and circle_of[m] == circle_of.get(b):
                        marks.append("circle")
                    print(f"    -> {b} ({layer.get(b, '?')}){' ' + ' '.join(marks) if marks else ''}: "
                          f"{arrow.evidence()}")
        comps = defaultdict(list)
        for m, c in circle_of.items():
            comps[c].append(m)
        for c in sorted(comps):
            print(f"== circle of {len(comps[c])} files: {', '.join(sorted(comps[c]))}")
        print()

    if not args.count:
        for p in problems:
            say(p)

    per_layer = ", ".join(f"{n} {sum(1 for m in tree.modules if layer.get(m) == n)}" for n in LAYERS)
    unlabelled = sum(1 for m in tree.modules if m not in layer)
    summary = (f"{len(tree.modules)} files, {len(arrows)} arrows, {len(upward)} upward, "
               f"{len(circle_of)} in circles"
               + (f", {unlabelled} without a layer" if unlabelled else "")
               + f" ({per_layer})")
    if problems:
        say(f"{'FAILED' if not (args.report or args.count) else 'violations'}: {summary}")
        return 0 if args.report or args.count else 1
    say(f"ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Self-test of scripts/check-layers.py: runs it on the small trees in
tests/layers/fixtures/*/ and compares with each tree's "expect" file, so
that the check is seen to fail where it must (upward arrows, circles,
missing or unknown layers) and to pass where it must.

expect holds blocks separated by blank lines:
  args: ARGS     the check's arguments after "--root <tree>"; {dir} is the
                 tree, {objs} a directory with its objects (compiled here)
  exit: N        the exit status wanted
  out: TEXT      a line the output must contain (stdout and stderr)
  not: TEXT      text the output must not contain
"""
import glob
import os
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "..", "..", "scripts", "check-layers.py")


def blocks(path):
    block = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                continue
            if not line.strip():
                if block:
                    yield block
                block = []
                continue
            key, _, value = line.partition(":")
            block.append((key, value[1:] if value.startswith(" ") else value))
    if block:
        yield block


def compile_tree(tree, out):
    cc = shlex.split(os.environ.get("CC", "cc"))
    for c in sorted(glob.glob(os.path.join(tree, "src", "*.c"))):
        obj = os.path.join(out, os.path.basename(c)[:-2] + ".o")
        subprocess.run(cc + ["-std=c11", "-I" + os.path.join(tree, "include"),
                             "-c", "-o", obj, c], check=True)


def main():
    runs, failed = 0, 0
    with tempfile.TemporaryDirectory(prefix="layers-selftest.") as tmp:
        for expect in sorted(glob.glob(os.path.join(HERE, "fixtures", "*", "expect"))):
            tree = os.path.dirname(expect)
            name = os.path.basename(tree)
            objs = None
            for block in blocks(expect):
                args, want, outs, nots = "", None, [], []
                for key, value in block:
                    if key == "args":
                        args = value
                    elif key == "exit":
                        want = int(value)
                    elif key == "out":
                        outs.append(value)
                    elif key == "not":
                        nots.append(value)
                    else:
                        sys.exit(f"{expect}: unknown key {key!r}")
                if "{objs}" in args and objs is None:
                    objs = os.path.join(tmp, name)
                    os.mkdir(objs)
                    compile_tree(tree, objs)
                argv = [a.replace("{dir}", tree).replace("{objs}", objs or "")
                        for a in shlex.split(args)]
                r = subprocess.run([sys.executable, CHECK, "--root", tree] + argv,
                                   capture_output=True, text=True)
                out = r.stdout + r.stderr
                wrong = []
                if want is not None and r.returncode != want:
                    wrong.append(f"exit {r.returncode}, wanted {want}")
                wrong += [f"missing: {o.replace('{dir}', tree)}" for o in outs
                          if o.replace("{dir}", tree) not in out]
                wrong += [f"unwanted: {n}" for n in nots if n in out]
                runs += 1
                if wrong:
                    failed += 1
                    print(f"layers-selftest: FAIL {name}: check-layers.py {args}")
                    for w in wrong:
                        print(f"    {w}")
                    print("  output:\n" + "".join(f"    {l}\n" for l in out.splitlines()))
    if failed:
        print(f"layers-selftest: {failed} of {runs} runs failed")
        return 1
    print(f"layers-selftest: ok: {runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

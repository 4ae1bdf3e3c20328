#!/usr/bin/env python3
"""
restore.py SHADOW DIR - after a simulated power cut (pcut.c), rebuilds DIR
from what was on "stable storage": each directory's last fsync'ed listing,
each file's last synced image.  Everything else in DIR goes.
"""
import os
import shutil
import sys


def _build(shadow, path, key):
    listing = os.path.join(shadow, "dir-%s" % key)
    if not os.path.exists(listing):
        return                      # never synced: an empty directory
    with open(listing) as f:
        for line in f:
            kind, k, name = line.rstrip("\n").split(" ", 2)
            target = os.path.join(path, name)
            if kind == "d":
                os.mkdir(target, 0o700)
                _build(shadow, target, k)
            else:
                img = os.path.join(shadow, "img-%s" % k)
                if os.path.exists(img):
                    shutil.copyfile(img, target)
                else:
                    open(target, "wb").close()
                os.chmod(target, 0o600)


def restore(shadow, path):
    with open(os.path.join(shadow, "root")) as f:
        root = f.read().strip()
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
    _build(shadow, path, root)


if __name__ == "__main__":
    restore(sys.argv[1], sys.argv[2])

#!/usr/bin/env python3
"""Every setting of docs/CONFIG.md is in coap2mqtt.conf(5), and the man page
names no setting that docs/CONFIG.md lacks: the two stay in step.

docs/CONFIG.md: a "## `group` ..." heading, then a table whose rows start
"| `name` |": the setting group.name (a heading naming the setting itself,
like "## `state_dir`", is a top-level setting).  The man page: every
setting is a ".TP" item whose tag line is ".B group.name".

Usage: check_settings.py [CONFIG.md] [coap2mqtt.conf.5]; exit 1 on a difference.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def doc_settings(text):
    names, group = [], None
    for line in text.splitlines():
        m = re.match(r"^##\s+`([a-z_][a-z0-9_]*)`", line)
        if m:
            group = m.group(1)
            continue
        if line.startswith("## "):
            group = None
            continue
        m = re.match(r"^\|\s*`([a-z_][a-z0-9_]*)`\s*\|", line)
        if m and group:
            name = m.group(1)
            names.append(name if name == group else f"{group}.{name}")
    return names


def man_settings(text):
    return re.findall(r"^\.TP\n\.B ([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)$",
                      text, re.M)


def main(argv):
    doc = Path(argv[1]) if len(argv) > 1 else ROOT / "docs/CONFIG.md"
    man = Path(argv[2]) if len(argv) > 2 else ROOT / "man/coap2mqtt.conf.5"
    documented = doc_settings(doc.read_text())
    in_man = man_settings(man.read_text())
    if not documented:
        print(f"FAIL: no settings found in {doc} (has its layout changed?)")
        return 1
    missing = [n for n in documented if n not in in_man]
    extra = [n for n in in_man if n not in documented]
    for n in missing:
        print(f"FAIL: {man.name}: setting {n} (in {doc.name}) is not described"
              f" (add a '.TP' / '.B {n}' item)")
    for n in extra:
        print(f"FAIL: {man.name}: setting {n} is not in {doc.name}")
    if missing or extra:
        return 1
    print(f"ok: the {len(documented)} settings of {doc.name} are all in {man.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

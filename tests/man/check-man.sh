#!/bin/sh
# The man pages (issue 17, item 3), run by "make test" (make man-check).
#
# Each page in man/ must format without a single warning under
# "groff -ww -man -Tutf8" (-ww: every warning category), and "man ./page"
# (man-db, as an operator would read an uninstalled page) must render it
# with nothing on stderr.  Then check_settings.py: every setting of
# docs/CONFIG.md is described in coap2mqtt.conf(5) and vice versa.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
fails=0
bad() { printf 'FAIL: man pages: %s\n' "$*"; fails=$((fails + 1)); }

for tool in groff man; do
    command -v "$tool" >/dev/null 2>&1 || { bad "$tool is missing ('make deps' installs groff-base and man-db)"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pages=$(ls "$root"/man/*.[1-8] 2>/dev/null)
[ -n "$pages" ] || { bad "no pages in $root/man"; exit 1; }
for page in $pages; do
    name=$(basename "$page")
    if ! groff -ww -man -Tutf8 -z "$page" 2> "$tmp/groff.err" || [ -s "$tmp/groff.err" ]; then
        bad "$name: groff -ww -man:"; sed 's/^/    /' "$tmp/groff.err"
    fi
    # man-db reads a name with a slash as a file; MANWIDTH fixes the line
    # length, --warnings=w passes -ww on to groff.
    (cd "$root" && MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings=w "./man/$name") \
        > "$tmp/man.out" 2> "$tmp/man.err"
    rc=$?
    if [ $rc -ne 0 ] || [ -s "$tmp/man.err" ]; then
        bad "$name: man ./man/$name exited $rc:"; sed 's/^/    /' "$tmp/man.err"
    fi
    head -n 1 "$tmp/man.out" | grep -q '^COAP2MQTT' || bad "$name: man rendered no title line"
    [ $fails -eq 0 ] && echo "ok: $name: groff -ww and man render it without warnings ($(wc -l < "$tmp/man.out") lines)"
done
/usr/bin/python3 "$here/check_settings.py" || fails=$((fails + 1))
[ $fails -eq 0 ]

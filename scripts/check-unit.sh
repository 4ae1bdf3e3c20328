#!/bin/sh
# Checks systemd/coap2mqtt.service without a running systemd (PID 1 is not
# needed): "systemd-analyze verify" for syntax and unknown settings, and
# "systemd-analyze security --offline=true" for the sandbox.  Fails if the
# overall exposure is above MAX_EXPOSURE (default 1.5 on systemd's 0-10 scale).
#
#   scripts/check-unit.sh [UNIT_FILE]      exit 0 = good, 1 = too exposed or invalid
#
# @BINDIR@ (substituted by "make install") is pointed at a scratch directory
# holding a stub executable, because verify insists that ExecStart= exists.
# Works on the source unit and on an installed one.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
unit=${1:-$here/systemd/coap2mqtt.service}
max=${MAX_EXPOSURE:-1.5}

command -v systemd-analyze >/dev/null 2>&1 || {
    echo "check-unit: systemd-analyze not found (apt-get install systemd)" >&2; exit 2; }
[ -r "$unit" ] || { echo "check-unit: cannot read $unit" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/bin"
printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/coap2mqtt"
chmod 0755 "$tmp/bin/coap2mqtt"
# The file name matters: security/verify name the unit after it.  An
# installed unit (@BINDIR@ already replaced) gets the stub too, so that it
# can be checked on a box where the binary is not installed.
sed -e "s|@BINDIR@|$tmp/bin|g" \
    -e "s|^\(Exec[A-Za-z]*=[-+!@:]*\)/[^ ]*/coap2mqtt |\1$tmp/bin/coap2mqtt |" \
    "$unit" > "$tmp/coap2mqtt.service"

status=0
if ! systemd-analyze verify "$tmp/coap2mqtt.service" > "$tmp/verify.out" 2>&1; then
    echo "check-unit: systemd-analyze verify failed:" >&2
    cat "$tmp/verify.out" >&2
    status=1
elif [ -s "$tmp/verify.out" ]; then
    # verify exits 0 on some warnings (unknown settings are only logged).
    echo "check-unit: systemd-analyze verify warnings:" >&2
    cat "$tmp/verify.out" >&2
    status=1
fi

systemd-analyze security --offline=true --no-pager "$tmp/coap2mqtt.service" \
    > "$tmp/security.out" 2>&1 || true
line=$(grep 'Overall exposure level' "$tmp/security.out" || true)
level=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9][0-9.]*\) .*/\1/p')
if [ -z "$level" ]; then
    echo "check-unit: no exposure level in systemd-analyze output:" >&2
    cat "$tmp/security.out" >&2
    exit 1
fi
# Lines marked with a cross are what adds to the exposure; show them.
grep '✗' "$tmp/security.out" || true
if awk -v l="$level" -v m="$max" 'BEGIN { exit !(l + 0 > m + 0) }'; then
    echo "check-unit: exposure $level > $max" >&2
    status=1
else
    echo "check-unit: exposure $level <= $max, verify ok"
fi
exit $status

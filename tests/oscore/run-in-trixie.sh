#!/bin/bash
# OSCORE in a Debian 13 (trixie) container: its libcoap 4.3.4 has OSCORE,
# Debian 12's 4.3.1 has none.  Builds an image with the project's build and
# test packages from the Debian mirror (tests/oscore/Containerfile, on the
# local debian:trixie-slim that tests/fresh/podman-base-image.sh makes; kept
# and reused), copies the working tree (tracked and untracked files, not
# build/) into a container, builds the gateway there with ASan+UBSan
# (make SAN=1 all; the probe finds OSCORE) and runs
# tests/integration/test_oscore.py against a real mosquitto and libcoap's
# coap-client-openssl -E / coap-server-openssl -E.
#
# Exit 0 when the tests pass; "SKIP: ..." and exit 0 only where podman
# cannot run at all (not root, podman not installable, containers cannot
# start here); any other failure exits 1 with the tail of the log
# (build/oscore-trixie/run.log keeps all of it).
#
# Environment:
#   OSCORE_TESTS     test files to run (default tests/integration/test_oscore.py)
#   OSCORE_TIMEOUT   bound on the container's run, seconds (default 900)
#   PYTEST_ARGS      more pytest arguments (e.g. -k dialout)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CHECK_NAME=oscore CHECK_TITLE="OSCORE check (Debian 13 container)"
. "$here/../fresh/common.sh"
suite=trixie
image=docker.io/library/debian:$suite-slim
tests=${OSCORE_TESTS:-tests/integration/test_oscore.py}
run_timeout=${OSCORE_TIMEOUT:-900}

[ "$(id -u)" -eq 0 ] || skip "needs root (rootful podman; the base image comes from debootstrap)"
command -v git >/dev/null 2>&1 || fail "git is needed to list the working tree's files"
root=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null) \
    || fail "$here is not in a git checkout"
mkdir -p "$root/build/oscore-trixie"
log=$root/build/oscore-trixie/run.log
: > "$log"

t0=$(now_ms)
ensure_base_image
if ! err=$(timeout -k 10 120 podman run --rm --network=host "$image" true 2>&1); then
    skip "podman cannot start a container from $image here: $(printf '%s\n' "$err" | tail -n 1)"
fi

# The image with the packages, named after its Containerfile's content, so
# a changed list makes a new one and an unchanged one is reused.
tag=localhost/coap2mqtt-oscore-trixie:$(sha256sum "$here/Containerfile" | cut -c1-12)
if ! podman image exists "$tag"; then
    say "building $tag (the build and test packages from the Debian mirror; a few minutes, once)"
    if ! timeout -k 10 1200 podman build --network=host -t "$tag" -f "$here/Containerfile" \
            "$here" >> "$log" 2>&1; then
        show_tail
        fail "could not build $tag (see $log)"
    fi
fi

scratch_and_container coap2mqtt-oscore

# The working tree as it is (committed or not), without build/.
(cd "$root" && git ls-files -z -co --exclude-standard | grep -zv '^build/' |
    tar --null -T - -cf - 2>/dev/null) | tar -C "$work" -xf - \
    || fail "could not copy the working tree"

inner='
set -u
cd /src
echo "@@oscore libcoap $(pkg-config --modversion libcoap-3-openssl): $(scripts/probe-oscore.sh cc)"
make -j2 SAN=1 all > /tmp/build.log 2>&1 || { grep -E "error:|warning:" /tmp/build.log | head -40; tail -20 /tmp/build.log; echo "@@oscore build-failed"; exit 3; }
grep -E "warning:" /tmp/build.log && { echo "@@oscore build-warnings"; exit 3; }
echo "@@oscore built"
export C2M_BIN=/src/build/san/coap2mqtt C2M_SIM=/src/build/san/coap2mqtt-sim C2M_TOOLS=/src/build/san
exec python3 -m pytest -p no:cacheprovider -q -rs -W ignore::DeprecationWarning -m "not soak" '"$tests ${PYTEST_ARGS:-}"'
'

say "building and testing in $tag ($tests)"
timeout -k 10 "$run_timeout" podman run --rm --name "$name" --network=host \
    -v "$work:/src" "$tag" bash -c "$inner" >> "$log" 2>&1
rc=$?
grep -E '^@@oscore libcoap' "$log" | sed 's/^@@oscore /  /'
summary=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$log" | tail -n 1)
secs_taken=$(secs $(( $(now_ms) - t0 )))
case $rc in
    0) say "passed in ${secs_taken} s: ${summary:-?}"; exit 0 ;;
    124|137) show_tail 60; fail "the container took more than $run_timeout s" ;;
    *) show_tail 60; fail "exit $rc after ${secs_taken} s: ${summary:-no pytest summary} (see $log)" ;;
esac

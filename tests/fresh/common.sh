# Shared by the container checks (fresh-box, package, compose): the base
# image they start from, podman's configuration, and how they report.
# Source it with CHECK_NAME (the prefix of every line, e.g. "fresh-box")
# and CHECK_TITLE (e.g. "fresh-box check") set; bash only.

suite=bookworm
image=docker.io/library/debian:$suite-slim
: "${CONTAINERS_CONF:=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf}"
export CONTAINERS_CONF

say()  { printf '%s: %s\n' "$CHECK_NAME" "$*"; }
# SKIP only where podman cannot run at all; any other failure is a FAIL.
skip() { printf 'SKIP: %s: %s\n' "$CHECK_TITLE" "$*"; exit 0; }
fail() { printf 'FAIL: %s: %s\n' "$CHECK_TITLE" "$*"; exit 1; }
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
secs() { awk -v ms="$1" 'BEGIN { printf "%.0f", ms / 1000 }'; }   # ms -> "12"

# The last N (default 30) lines of the check's $log, for a failure report.
show_tail() {
    echo "---- last ${1:-30} lines of $log ----"
    tail -n "${1:-30}" "$log"
    echo "----"
}

# Makes (or reuses) the local $image with podman-base-image.sh, with its
# output indented and kept in $base_out.  SKIP where podman cannot run at
# all; FAIL otherwise.
ensure_base_image() {
    local rc err
    base_out=$(timeout -k 10 1800 "$(dirname "${BASH_SOURCE[0]}")/podman-base-image.sh" "$suite" 2>&1)
    rc=$?
    printf '%s\n' "$base_out" | sed 's/^/  /'
    case $rc in
        0) ;;
        2) skip "podman is not available and apt-get could not install it (see above)" ;;
        3) skip "$(printf '%s\n' "$base_out" | sed -n 's/^podman-base-image: //p' | grep -m 1 'cannot start') (in a container, this check needs --privileged)" ;;
        124|137) fail "podman-base-image.sh took more than 30 min" ;;
        *)
            # debootstrap or podman import failed: can podman do anything here?
            if ! err=$(timeout 60 podman info 2>&1 >/dev/null); then
                skip "podman cannot run here: $(printf '%s' "$err" | tail -n 1)"
            fi
            fail "could not build the $image base image (see above)" ;;
    esac
}

# A scratch directory ($work) and a container name ($name) for this check,
# both removed when the script exits, however it exits.
scratch_and_container() {   # prefix, e.g. coap2mqtt-fresh
    work=$(mktemp -d "/var/tmp/$1.XXXXXX")
    name=$1-$$
    trap 'podman rm -f -t 5 "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
    trap 'exit 130' INT; trap 'exit 143' TERM
}

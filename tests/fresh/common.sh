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

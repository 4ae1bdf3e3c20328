#!/bin/bash
# The fresh-box check (issue 10), run by "make test".
#
# Does what the README asks of a newcomer, on a clean Debian 12: in a new
# debian:bookworm-slim container it installs only git and make, clones this
# working tree (HEAD plus the uncommitted changes to tracked files), and runs
# "make run" bounded by DEMO_DURATION.  "make run" must install the project's
# packages itself, build, and run the demo; the check passes only if the
# demo's own summary shows readings from every simulated sensor and "demo: ok".
# It would have caught issue 10 (pkg-config read before "make deps").
#
# Installs podman (apt-get) and builds the base image from the Debian mirror
# if they are missing (tests/fresh/podman-base-image.sh); later runs reuse them.
# Prints "SKIP: ..." and exits 0 only where podman cannot run at all (not
# root, apt-get cannot install it, or containers cannot start here, e.g.
# inside an unprivileged container).  Any other failure exits 1 and shows
# the tail of the log.  The whole log is kept in build/fresh-box/run.log.
#
# Environment:
#   FRESH_DEMO_DURATION   seconds of demo (default 20)
#   FRESH_TIMEOUT         bound on the container's run, seconds (default 2400)
#   FRESH_SENSORS         sensors that must show readings
#                         (default "meter-1 hvac-1 industrial-1")
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
demo_duration=${FRESH_DEMO_DURATION:-20}
run_timeout=${FRESH_TIMEOUT:-2400}
sensors=${FRESH_SENSORS:-meter-1 hvac-1 industrial-1}
CHECK_NAME=fresh-box CHECK_TITLE="fresh-box check"
. "$here/common.sh"

root=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null) \
    || fail "$here is not in a git checkout: the check clones the working tree"
mkdir -p "$root/build/fresh-box"
log=$root/build/fresh-box/run.log
: > "$log"

[ "$(id -u)" -eq 0 ] \
    || skip "needs root (installs podman with apt-get and runs a rootful container); CI runs 'make test' as root"

t_start=$(now_ms)
say "a clean debian:$suite-slim container: git clone, then 'make run' with DEMO_DURATION=$demo_duration"
say "(a few minutes: the container installs the project's packages; log: build/fresh-box/run.log)"

# --- 1. podman and the base image ------------------------------------------

t0=$(now_ms)
ensure_base_image
t_base=$(( $(now_ms) - t0 ))

# Can this box start a container at all?  Not inside an unprivileged
# container, say: then there is nothing to check, which is not a failure.
if ! err=$(timeout -k 10 120 podman run --rm --network=host "$image" true 2>&1); then
    skip "podman cannot start a container from $image here: $(printf '%s\n' "$err" | grep -m 1 'Error' || printf '%s\n' "$err" | tail -n 1)"
fi

# --- 2. what the developer has: HEAD plus the uncommitted changes -----------

scratch_and_container coap2mqtt-fresh

src=$work/coap2mqtt
{
    git init -q "$src" &&
    git -C "$src" fetch -q "$root" HEAD &&
    git -C "$src" checkout -q -b fresh-box FETCH_HEAD &&
    git -C "$root" diff HEAD --binary > "$work/uncommitted.patch"
} >> "$log" 2>&1 || fail "could not clone $root (see $log)"
if [ -s "$work/uncommitted.patch" ]; then
    if ! { git -C "$src" apply --index "$work/uncommitted.patch" &&
           git -C "$src" -c user.name=fresh-box -c user.email=fresh-box@localhost \
               commit -q -m "uncommitted changes of the working tree"; } >> "$log" 2>&1; then
        fail "could not apply the working tree's uncommitted changes (see $log)"
    fi
    say "testing HEAD $(git -C "$root" rev-parse --short HEAD) plus uncommitted changes to $(git -C "$root" diff HEAD --name-only | wc -l) tracked files"
else
    say "testing HEAD $(git -C "$root" rev-parse --short HEAD)"
fi
untracked=$(git -C "$root" ls-files --others --exclude-standard | wc -l)
[ "$untracked" -eq 0 ] || say "note: $untracked untracked files are not included ('git add' them to test them)"

# --- 3. the container: git and make, clone, make run -----------------------

# What a newcomer types on a fresh Debian 12.  git, make and ca-certificates
# (to clone over https) only, without "recommends": everything else is
# "make run"'s job.
inner='
set -u
export DEBIAN_FRONTEND=noninteractive
echo "@@fresh prereqs"
apt-get update -q && apt-get install -y -q --no-install-recommends git make ca-certificates \
    || { echo "@@fresh prereqs-failed"; exit 3; }
echo "@@fresh clone"
git clone -q file:///src /root/coap2mqtt || { echo "@@fresh clone-failed"; exit 4; }
cd /root/coap2mqtt
echo "@@fresh make-run"
make run          # DEMO_DURATION comes from podman run -e
rc=$?
echo "@@fresh make-run-exit $rc"
exit $rc
'

# Each line of the container's output is logged with its arrival time (ms
# since the container was started); the step markers are shown as they come.
declare -A at=()
stamp() {
    local line t
    while IFS= read -r line; do
        t=$(( $(now_ms) - t_run ))
        printf '%5d.%d %s\n' $((t / 1000)) $((t % 1000 / 100)) "$line" >> "$log"
        case $line in
            "@@fresh "*) echo "${line#@@fresh } $t" ;;
            "coap2mqtt: packages installed"*) echo "deps-done $t" ;;
            "coap2mqtt: building"*) echo "build $t" ;;
            "coap2mqtt: built"*) echo "demo $t" ;;
            "demo: ok"*) echo "demo-ok $t" ;;
        esac
    done
}
progress() {
    local step t
    while read -r step t; do
        echo "$step $t" >> "$work/marks"
        case $step in
            prereqs)   say "[container] apt-get install git make ca-certificates" ;;
            clone)     say "[container] git clone (at $(secs "$t") s)" ;;
            make-run)  say "[container] make run: installing the project's packages" ;;
            build)     say "[container] make run: building (at $(secs "$t") s)" ;;
            demo)      say "[container] make run: demo, $demo_duration s (at $(secs "$t") s)" ;;
        esac
    done
}

t_run=$(now_ms)
: > "$work/marks"
timeout -k 30 "$run_timeout" podman run --rm --name "$name" --network=host \
    -e DEMO_DURATION="$demo_duration" -v "$src:/src:ro" "$image" bash -c "$inner" 2>&1 < /dev/null | stamp | progress
rc=${PIPESTATUS[0]}
t_total_run=$(( $(now_ms) - t_run ))
while read -r step t; do at[$step]=$t; done < "$work/marks"

# --- 4. judge from the output, not only the exit status ---------------------

show_tail() {
    echo "---- last 40 lines of $log (seconds since the container started) ----"
    tail -n 40 "$log"
    echo "----"
}
last_step=prereqs
for s in prereqs clone make-run build demo; do [ -n "${at[$s]:-}" ] || continue; last_step=$s; done
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    show_tail
    fail "the container ran longer than FRESH_TIMEOUT=$run_timeout s (last step: $last_step)"
fi
if [ -n "${at[prereqs-failed]:-}" ]; then
    show_tail; fail "apt-get install git make in the container failed (exit $rc)"
fi
if [ -n "${at[clone-failed]:-}" ]; then
    show_tail; fail "git clone in the container failed (exit $rc)"
fi
if [ -z "${at[make-run]:-}" ]; then
    show_tail; fail "the container stopped before 'make run' (exit $rc)"
fi

problems=()
[ "$rc" = 0 ] || problems+=("'make run' exited $rc")
# make's own word on what failed, and the classic of issue 10.
make_err=$(sed -n 's/^ *[0-9.]* \(make\(\[[0-9]*\]\)\{0,1\}: \*\*\* .*\)/\1/p' "$log" | head -n 1)
[ -z "$make_err" ] || problems+=("$make_err")
undef=$(grep -c 'undefined reference to' "$log")
[ "$undef" -eq 0 ] || problems+=("the link failed with $undef undefined references")
counts=""
for id in $sensors; do
    n=$(sed -n "s/^ *[0-9.]* demo: $id: \([0-9][0-9]*\) readings.*/\1/p" "$log" | tail -n 1)
    counts="$counts${counts:+, }$id ${n:-none}"
    if [ -z "$n" ]; then
        problems+=("no 'demo: $id: N readings' line")
    elif [ "$n" -eq 0 ]; then
        problems+=("no readings from $id reached MQTT")
    fi
done
[ -n "${at[demo-ok]:-}" ] || problems+=("no 'demo: ok' line")

ms_between() { # from to: ms, or "" if either mark is missing
    [ -n "${at[$1]:-}" ] && [ -n "${at[$2]:-}" ] && echo $(( at[$2] - at[$1] ))
}
fmt() { if [ -n "$1" ]; then echo "$(secs "$1") s"; else echo "n/a"; fi; }
deps_end=deps-done; [ -n "${at[deps-done]:-}" ] || deps_end=build
at[end]=$t_total_run
reused=""; case $base_out in *"already present"*) reused=" (reused)" ;; esac
timings="podman + base image $(fmt "$t_base")$reused, git+make $(fmt "$(ms_between prereqs clone)"), clone $(fmt "$(ms_between clone make-run)"), make run: packages $(fmt "$(ms_between make-run "$deps_end")"), build $(fmt "$(ms_between build demo)"), demo $(fmt "$(ms_between demo end)"); total $(fmt $(( $(now_ms) - t_start )))"

if [ ${#problems[@]} -gt 0 ]; then
    show_tail
    say "readings: $counts"
    say "timings: $timings"
    msg=$(printf '%s; ' "${problems[@]}")
    fail "'make run' on a fresh debian:$suite-slim did not work: ${msg%; }"
fi
say "ok: readings $counts"
say "timings: $timings"

#!/bin/sh
# tests/fuzz/run.sh - build every libFuzzer target and run each one.
#
#   tests/fuzz/run.sh SECONDS [TARGET...]   each target SECONDS (make fuzz)
#   tests/fuzz/run.sh --brief [TARGET...]   each target briefly (make test)
#
# TARGET is a name such as "handlers" (from tests/fuzz/fuzz_handlers.c);
# default: every tests/fuzz/fuzz_*.c.  Binaries go to build/fuzz/.  Each
# target starts from its seeds (tests/fuzz/corpus/<target>/) copied into
# build/fuzz/corpus-<target>/, which is where the corpus grows, so the repo
# never changes and later runs continue where earlier ones stopped.
# tests/fuzz/dict/<target>.dict, when present, is passed as -dict.
# A crash, leak, UB report or timeout leaves build/fuzz/<target>-crash-*
# (the input that did it), prints the report, and makes the exit status 1
# after all targets ran.  Per target it prints executions, exec/s and the
# coverage (cov: edges, ft: features) from libFuzzer's final statistics.
set -eu

BRIEF_SECONDS=10        # per target in --brief: 6 targets, under 100 s with the build

usage() {
    echo "usage: $0 SECONDS|--brief [TARGET...]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
case "$1" in
--brief) secs=$BRIEF_SECONDS ;;
''|*[!0-9]*) usage ;;
*) secs=$1 ;;
esac
shift
[ "$secs" -gt 0 ] || usage

cd "$(dirname "$0")/../.."
if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: clang is missing (Debian: clang libclang-rt-14-dev; scripts/install-deps.sh)" >&2
    exit 1
fi

if [ $# -eq 0 ]; then
    set -- $(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done)
fi
targets=""
for t in "$@"; do
    [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "fuzz: no tests/fuzz/fuzz_$t.c" >&2; exit 2; }
    targets="$targets build/fuzz/fuzz_$t"
done

echo "fuzz: building$targets"
make -s -f tests/fuzz/fuzz.mk -j"$(nproc)" $targets

# Prints "name: N execs, N exec/s, cov N, ft N, corpus N" from a log.
summary() {
    awk -v name="$1" '
        /stat::number_of_executed_units:/ { execs = $2 }
        /stat::average_exec_per_sec:/     { rate = $2 }
        / cov: [0-9]+ ft: [0-9]+/ {
            for (i = 1; i <= NF; i++) {
                if ($i == "cov:") cov = $(i + 1)
                if ($i == "ft:") ft = $(i + 1)
                if ($i == "corp:") { corp = $(i + 1); sub(/\/.*/, "", corp) }
            }
        }
        END { printf "%-12s %10s execs %8s exec/s  cov %5s  ft %6s  corpus %s\n",
                     name, execs, rate, cov, ft, corp }' "$2"
}

failed=""
for bin in $targets; do
    name=${bin#build/fuzz/fuzz_}
    work=build/fuzz/corpus-$name
    log=build/fuzz/$name.log
    mkdir -p "$work"
    if [ -d "tests/fuzz/corpus/$name" ]; then
        # -n: never overwrite what earlier runs found.
        cp -n "tests/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
    fi
    dict=""
    [ -f "tests/fuzz/dict/$name.dict" ] && dict="-dict=tests/fuzz/dict/$name.dict"
    rc=0
    # The outer timeout only catches a hung harness: libFuzzer stops itself.
    timeout -k 10 $((secs + 120)) "$bin" -max_total_time="$secs" \
        -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 $dict \
        -artifact_prefix="build/fuzz/$name-" "$work" >"$log" 2>&1 || rc=$?
    summary "$name" "$log"
    if [ "$rc" -ne 0 ]; then
        echo "fuzz: $name FAILED (exit $rc); report in $log:" >&2
        grep -E "^==[0-9]+==|ERROR|SUMMARY|runtime error|^    #[0-9]|Test unit written" "$log" | head -40 >&2
        failed="$failed $name"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed" >&2
    exit 1
fi
echo "fuzz: all targets clean"

#!/usr/bin/env bash
# Benchmark of `lsbaws audit --pid` against ps (issue: audit). Not a test.
#
# A tiny C helper forks K children that exit at once and are never reaped, so
# it holds K zombies. For K in $KS, each of three commands is timed RUNS times,
# alternating, wall clock from spawn to exit (process start included, as a CI
# job pays it; the timer is a small C program, so no shell fork is counted):
#   lsbaws audit --pid P   |   ps --ppid P -o pid,stat   |   ps -eo pid,ppid,stat,comm
# and the medians and ratios are printed. `audit --json` is timed as well, to show
# what rendering the table costs. Raw times go to bench/results/.
#
# Usage: bench/audit.sh            (KS="10 1000 5000" RUNS=21 by default)
#        BASE=/path/to/older/lsbaws bench/audit.sh
#   also times `BASE audit --pid P` in the same alternation (before/after).
# Targets: audit <= 0.4 x ps --ppid at K=5000, <= 0.3 x at K=10 (~100 processes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

KS=${KS:-"10 1000 5000"}
RUNS=${RUNS:-21}
[ "$RUNS" -ge 15 ] || { echo "RUNS must be at least 15" >&2; exit 2; }
command -v ps >/dev/null || bench_need procps
command -v cc >/dev/null || bench_need gcc

work=$(mktemp -d)
HELPER_PID=
cleanup() {
  # The helper's zombies go away with it: kill it by pid, never by name.
  if [ -n "$HELPER_PID" ]; then kill -9 "$HELPER_PID" 2>/dev/null || true; wait "$HELPER_PID" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/zombies.c" <<'C'
/* Forks K children that exit at once; never reaps them; sleeps until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long k = argc > 1 ? strtol(argv[1], 0, 10) : 10;
  for (long i = 0; i < k; i++) {
    pid_t p = fork();
    if (p < 0) { perror("fork"); return 1; }
    if (p == 0) _exit(0);
  }
  for (;;) pause();
}
C
cc -O2 -o "$work/zombies" "$work/zombies.c"

bench_timeit "$work"

(cd "$top" && cargo build --release --quiet)
lsbaws="$top/target/release/lsbaws"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$top/bench/results/audit-$stamp-$(hostname).txt"
{
  echo "# bench/audit.sh $stamp on $(hostname): $(nproc) cores, $(uname -r), $(ps -e --no-headers | wc -l) processes before the helper"
  echo "# load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
  echo "# lsbaws $(git -C "$top" rev-parse --short HEAD), $(ps --version)"
  if [ -n "${BASE:-}" ]; then echo "# base: $BASE"; fi
} >"$out"

# Wall time of one run in microseconds.
time_us() { local t; t=$("$work/timeit" "$@" || true); echo "${t%% *}"; }

printf '%6s %6s %9s %9s %10s %8s %7s %7s %8s\n' K procs audit_ms json_ms ps_ppid_ms ps_e_ms a/ppid a/ps_e json/ppid | tee -a "$out"
for k in $KS; do
  "$work/zombies" "$k" &
  HELPER_PID=$!
  for _ in $(seq 1 200); do
    [ "$(ps --ppid "$HELPER_PID" -o stat= | grep -c Z || true)" -eq "$k" ] && break
    sleep 0.05
  done
  procs=$(ps -e --no-headers | wc -l)
  : >"$work/a"; : >"$work/j"; : >"$work/p"; : >"$work/e"; : >"$work/b"
  for _ in $(seq 1 "$RUNS"); do
    if [ -n "${BASE:-}" ]; then time_us "$BASE" audit --pid "$HELPER_PID" >>"$work/b"; fi
    time_us "$lsbaws" audit --pid "$HELPER_PID" >>"$work/a"
    time_us "$lsbaws" audit --pid "$HELPER_PID" --json >>"$work/j"
    time_us ps --ppid "$HELPER_PID" -o pid,stat >>"$work/p"
    time_us ps -eo pid,ppid,stat,comm >>"$work/e"
  done
  {
    echo "# K=$k raw us: audit $(tr '\n' ' ' <"$work/a")"
    echo "# K=$k raw us: audit_json $(tr '\n' ' ' <"$work/j")"
    echo "# K=$k raw us: ps_ppid $(tr '\n' ' ' <"$work/p")"
    echo "# K=$k raw us: ps_e $(tr '\n' ' ' <"$work/e")"
    if [ -n "${BASE:-}" ]; then echo "# K=$k raw us: base_audit $(tr '\n' ' ' <"$work/b")"; fi
  } >>"$out"
  a=$(bench_median <"$work/a"); j=$(bench_median <"$work/j")
  p=$(bench_median <"$work/p"); e=$(bench_median <"$work/e")
  awk -v k="$k" -v n="$procs" -v a="$a" -v j="$j" -v p="$p" -v e="$e" 'BEGIN {
    printf "%6d %6d %9.2f %9.2f %10.2f %8.2f %7.2f %7.2f %8.2f\n", k, n, a/1000, j/1000, p/1000, e/1000, a/p, a/e, j/p }' | tee -a "$out"
  if [ -n "${BASE:-}" ]; then
    b=$(bench_median <"$work/b")
    awk -v k="$k" -v a="$a" -v b="$b" -v p="$p" 'BEGIN {
      printf "  base K=%d: base audit %.2f ms (%.2f x ps --ppid), this tree %.2f ms (%.2f x)\n", k, b/1000, b/p, a/1000, a/p }' | tee -a "$out"
  fi
  kill -9 "$HELPER_PID"; wait "$HELPER_PID" 2>/dev/null || true
  HELPER_PID=
done
# Process-start floors, for reading the K=10 row: what any exec costs here, and
# what lsbaws costs before it touches /proc (dynamic loading, Rust runtime, clap).
: >"$work/t"; : >"$work/v"
for _ in $(seq 1 "$RUNS"); do
  time_us /bin/true >>"$work/t"
  time_us "$lsbaws" --version >>"$work/v"
done
awk -v t="$(bench_median <"$work/t")" -v v="$(bench_median <"$work/v")" 'BEGIN {
  printf "floors: /bin/true %.2f ms, lsbaws --version %.2f ms\n", t/1000, v/1000 }' | tee -a "$out"
echo "raw results: ${out#"$top"/}"

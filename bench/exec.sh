#!/usr/bin/env bash
# Benchmark of `lsbaws audit -- COMMAND`: what sampling the tree costs a command
# that forks a lot (issue 13). Not a test.
#
# The command is a shell loop that runs /bin/true FORKS times (a fork and an
# exec each; `true` alone would be the shell's builtin). Each round runs, in
# alternation, wall clock from spawn to exit and CPU time of the whole tree
# (the timer's wait4 rusage: the command, everything it reaped, and lsbaws):
#   the bare loop  |  lsbaws audit -- loop (default --interval 100ms)
#   lsbaws audit --interval 10ms -- loop  |  tini -s -- loop (a subreaper that
#   only reaps: the peer without sampling)
# then medians and ratios against the bare loop. One more run with --json gives
# lsbaws's own account of its sampling (samples, seconds spent scanning /proc).
# Raw figures go to bench/results/.
#
# Usage: bench/exec.sh          (FORKS=2000 RUNS=11 by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

FORKS=${FORKS:-2000}
RUNS=${RUNS:-11}
[ "$RUNS" -ge 5 ] || { echo "RUNS must be at least 5" >&2; exit 2; }
command -v cc >/dev/null || bench_need gcc
command -v tini >/dev/null || bench_need tini

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bench_timeit "$work"

(cd "$top" && cargo build --release --quiet)
lsbaws="$top/target/release/lsbaws"
loop="i=0; while [ \$i -lt $FORKS ]; do /bin/true; i=\$((i+1)); done"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$top/bench/results/exec-$stamp-$(hostname).txt"
{
  echo "# bench/exec.sh $stamp on $(hostname): $(nproc) cores, $(uname -r), $(ls /proc | grep -c '^[0-9]') processes"
  echo "# load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
  echo "# lsbaws $(git -C "$top" rev-parse --short HEAD), $(tini --version 2>&1 | head -1)"
  echo "# command: sh -c '$loop'"
} >"$out"

: >"$work/bare"; : >"$work/audit"; : >"$work/audit10"; : >"$work/tini"
for _ in $(seq 1 "$RUNS"); do
  "$work/timeit" sh -c "$loop" >>"$work/bare"
  "$work/timeit" "$lsbaws" audit -- sh -c "$loop" >>"$work/audit"
  "$work/timeit" "$lsbaws" audit --interval 10ms -- sh -c "$loop" >>"$work/audit10"
  "$work/timeit" tini -s -- sh -c "$loop" >>"$work/tini"
done
for v in bare audit audit10 tini; do
  echo "# raw wall_us cpu_us $v: $(tr '\n' ' ' <"$work/$v")" >>"$out"
done

med() { cut -d" " -f"$2" <"$work/$1" | bench_median; }
bw=$(med bare 1); bc=$(med bare 2)
printf '%-32s %9s %9s %7s %7s\n' variant wall_ms cpu_ms wall/x cpu/x | tee -a "$out"
for v in bare audit audit10 tini; do
  case $v in
    bare) name="sh loop alone" ;;
    audit) name="lsbaws audit (100ms)" ;;
    audit10) name="lsbaws audit --interval 10ms" ;;
    tini) name="tini -s (peer: reaps only)" ;;
  esac
  awk -v n="$name" -v w="$(med $v 1)" -v c="$(med $v 2)" -v bw="$bw" -v bc="$bc" 'BEGIN {
    printf "%-32s %9.1f %9.1f %7.3f %7.3f\n", n, w/1000, c/1000, w/bw, c/bc }' | tee -a "$out"
done

# lsbaws's own account of one run at each interval.
for interval in 100ms 10ms; do
  "$lsbaws" audit --json --interval "$interval" --report "$work/r.json" -- sh -c "$loop" >/dev/null
  python3 - "$work/r.json" "$interval" <<'PY' | tee -a "$out"
import json, sys
r = json.load(open(sys.argv[1]))
n, s, e = r["samples"], r["sampling_s"], r["elapsed_s"]
print(f"--interval {sys.argv[2]}: {n} samples in {e:.2f} s, {s*1000:.0f} ms scanning /proc "
      f"({s/max(n,1)*1000:.2f} ms a sample, {s/e*100:.1f} % of the run)")
PY
done
echo "raw results: ${out#"$top"/}"

#!/usr/bin/env bash
# Benchmark of `lsbaws blast` against wrk and ab: a new connection per request
# at 128 concurrency, all against the same nginx on 127.0.0.1 (bench/nginx.conf.in:
# one worker on CPU 1, keepalive_timeout 0). Each load generator runs on CPU 0
# with one thread, in ROUNDS alternating rounds; prints each tool's median
# connections/s, CPU seconds (user+system), peak RSS and the ratio to wrk.
# Then (MEMFLAT=1) peak RSS of a 1 s and a 10 s run (it must not grow with the
# request count), (STRACE=1) syscalls per connection of blast and wrk, and
# (SERVE10K=1) 10 000 simultaneous clients against `lsbaws serve --quiet`.
#
# Raw results: bench/results/blast-<date>-<host>.txt.
# Usage: bench/blast.sh   (env: ROUNDS=3 SECS=5 CONC=128 MEMFLAT=1 STRACE=1 SERVE10K=1,
#   LSBAWS=path/to/lsbaws to measure that binary instead of building this tree,
#   LSBAWS_LABEL=what it is, for the raw file: a before/after pair in one sitting)
# Needs root for apt-get when wrk, ab, nginx, time or strace are missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
CONC=${CONC:-128}
SERVE10K=${SERVE10K:-1}
STRACE=${STRACE:-1}
MEMFLAT=${MEMFLAT:-1}

bench_need wrk apache2-utils nginx time strace
if [ -n "${LSBAWS:-}" ]; then
  lsbaws=$LSBAWS
  label=${LSBAWS_LABEL:-$LSBAWS}
else
  (cd "$root" && cargo build --release --quiet)
  lsbaws="$root/target/release/lsbaws"
  label="commit $(git -C "$root" rev-parse --short HEAD)"
fi

NGINX_PID=
NGINX_PREFIX=
SERVE_PID=
work=$(mktemp -d)
cleanup() {
  # Stop by pid only: other people's servers may run on this machine.
  for pid in $SERVE_PID $NGINX_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ -n "$NGINX_PREFIX" ] && rm -rf "$NGINX_PREFIX"
  rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port, chosen by the kernel.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

mkdir -p "$here/results"
raw="$here/results/blast-$(date -u +%Y%m%d-%H%M%S)-$(hostname -s).txt"
{
  echo "# bench/blast.sh $(date -u +%FT%TZ) on $(hostname -s)"
  echo "# $(uname -srm); $(nproc) cpus; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(wrk --version 2>&1 | head -1); $(ab -V | head -1); $(nginx -v 2>&1); $("$lsbaws" --version)"
  echo "# lsbaws: $label"
  echo "# ROUNDS=$ROUNDS SECS=$SECS CONC=$CONC"
  echo "# round tool conns_per_s cpu_s peak_rss_kb errors load1 (the 1-minute load average"
  echo "# before the sample: other work on this machine shows up there and in the figures)"
} >"$raw"

if awk '{exit !($1 > 1.0)}' /proc/loadavg; then
  echo "warning: load average $(cut -d' ' -f1 /proc/loadavg) before starting: other work will skew the figures" | tee -a "$raw" >&2
fi

port=$(free_port)
bench_start_nginx "$port"
url="http://127.0.0.1:$port/"

# From `/usr/bin/time -v` output: user+system seconds, then peak RSS in kB.
time_fields() {
  awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {m=$2}
    END {printf "%.2f %d\n", u+s, m}' "$1"
}

# Runs a blast command line. blast exits 1 when any connection failed: with
# `set -e` that would end the whole script silently, yet the failures are data
# (the errors column shows them). Only exit 2 and up (the run itself failed,
# or time/strace did) stops the script.
blast_run() {
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -gt 1 ]; then
    echo "bench: blast run failed (exit $rc): $*" >&2
    return "$rc"
  fi
}

run_blast() {
  blast_run /usr/bin/time -v -o "$work/time" taskset -c 0 "$lsbaws" blast "$url" --threads 1 \
    --max-clients "$CONC" --duration "${SECS}s" --json >"$work/out"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["conns_per_s"]), sum(r["errors"].values()))' "$work/out"
}
run_wrk() {
  /usr/bin/time -v -o "$work/time" taskset -c 0 wrk -t1 -c"$CONC" -d"${SECS}s" \
    -H 'Connection: close' "$url" >"$work/out"
  local rps errs
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' "$work/out")
  # Socket errors and non-2xx lines, when wrk prints them.
  errs=$(awk '/Socket errors/ {gsub(",",""); n+=$4+$6+$8+$10} /Non-2xx/ {n+=$NF} END {print n+0}' "$work/out")
  echo "$rps $errs"
}
run_ab() {
  # -t bounds the time; -n after it lifts ab's implied 50 000 request cap.
  /usr/bin/time -v -o "$work/time" taskset -c 0 ab -q -r -c "$CONC" -t "$SECS" -n 100000000 \
    "$url" >"$work/out" 2>&1
  local rps errs
  rps=$(awk '/Requests per second/ {printf "%d", $4}' "$work/out")
  errs=$(awk '/Failed requests/ {print $3}' "$work/out")
  echo "$rps ${errs:-0}"
}

tools=(blast wrk ab)
for round in $(seq 1 "$ROUNDS"); do
  # Alternate the order so no tool always inherits the previous one's TIME_WAIT.
  order=("${tools[@]:$(((round - 1) % 3))}" "${tools[@]:0:$(((round - 1) % 3))}")
  for tool in "${order[@]}"; do
    sleep 2
    load=$(cut -d' ' -f1 /proc/loadavg)
    read -r rps errs < <("run_$tool")
    read -r cpu rss < <(time_fields "$work/time")
    echo "$round $tool $rps $cpu $rss $errs $load" | tee -a "$raw"
  done
done

median_of() { awk -v t="$1" -v c="$2" '$1 !~ /^#/ && $2 == t {print $c}' "$raw" | bench_median; }
wrk_rps=$(median_of wrk 3)
{
  echo
  echo "| tool  | conns/s (median) | CPU s | CPU µs/conn (median) | peak RSS MB | vs wrk |"
  echo "|-------|------------------|-------|----------------------|-------------|--------|"
  for tool in "${tools[@]}"; do
    rps=$(median_of "$tool" 3)
    cpu=$(median_of "$tool" 4)
    rss=$(median_of "$tool" 5)
    # CPU per connection, round by round: the figure a busy machine (a
    # starved server, fewer connections) moves least.
    per=$(awk -v t="$tool" -v s="$SECS" '$1 !~ /^#/ && $2 == t && $3 > 0 {print $4 * 1e6 / ($3 * s)}' "$raw" | bench_median)
    awk -v t="$tool" -v r="$rps" -v c="$cpu" -v p="$per" -v m="$rss" -v w="$wrk_rps" \
      'BEGIN {printf "| %-5s | %16d | %5.2f | %20.1f | %11.1f | %6.2f |\n", t, r, c, p, m/1024, r/w}'
  done
} | tee -a "$raw"

if [ "$MEMFLAT" = 1 ]; then
  # Memory must not grow with the request count: no record per request.
  echo | tee -a "$raw"
  for secs in 1 10; do
    blast_run /usr/bin/time -v -o "$work/time" taskset -c 0 "$lsbaws" blast "$url" --threads 1 \
      --max-clients "$CONC" --duration "${secs}s" --json >"$work/out"
    read -r cpu rss < <(time_fields "$work/time")
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("blast --duration %ss: %d requests, peak RSS %.1f MB" % (sys.argv[2], r["connections"], int(sys.argv[3])/1024))' \
      "$work/out" "$secs" "$rss" | tee -a "$raw"
  done
fi

if [ "$STRACE" = 1 ]; then
  echo | tee -a "$raw"
  blast_run strace -f -c -o "$work/strace" "$lsbaws" blast "$url" --threads 1 --max-clients "$CONC" \
    --max-conns 50 --json >"$work/out"
  conns=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["connections"])' "$work/out")
  calls=$(awk '$NF == "total" {print $4}' "$work/strace")
  awk -v c="$calls" -v n="$conns" 'BEGIN {printf "syscalls per connection: blast %.1f", c/n}' | tee -a "$raw"
  strace -f -c -o "$work/strace" wrk -t1 -c"$CONC" -d2s -H 'Connection: close' "$url" >"$work/out"
  conns=$(awk '/requests in/ {print $1}' "$work/out")
  calls=$(awk '$NF == "total" {print $4}' "$work/strace")
  awk -v c="$calls" -v n="$conns" 'BEGIN {printf ", wrk %.1f (under strace)\n", c/n}' | tee -a "$raw"
fi

if [ "$SERVE10K" = 1 ]; then
  echo | tee -a "$raw"
  "$lsbaws" serve --quiet --bind 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
  SERVE_PID=$!
  for _ in $(seq 1 100); do
    grep -q '^Serving HTTP on' "$work/serve.out" && break
    sleep 0.1
  done
  saddr=$(awk '/^Serving HTTP on/ {print $4; exit}' "$work/serve.out")
  blast_run /usr/bin/time -v -o "$work/time" "$lsbaws" blast "http://$saddr/hello" --max-clients 10000 \
    --timeout 60s --json >"$work/out"
  read -r cpu rss < <(time_fields "$work/time")
  python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
e={k:v for k,v in r["errors"].items() if v}
print("10000 clients vs lsbaws serve: %d/%d ok, errors %s, %.2f s, %.0f conns/s, slow connects %d, connect p99 %.0f ms, total max %.0f ms, blast cpu %s s, peak RSS %.1f MB"
  % (r["ok"], r["connections"], e or "none", r["elapsed_s"], r["conns_per_s"], r["slow_connects"], r["connect_ms"]["p99"], r["latency_ms"]["max"], sys.argv[2], int(sys.argv[3])/1024))' \
    "$work/out" "$cpu" "$rss" | tee -a "$raw"
  kill -TERM "$SERVE_PID"
  wait "$SERVE_PID" || true
  SERVE_PID=
  tail -1 "$work/serve.out" | tee -a "$raw"
fi

echo "raw results: $raw"

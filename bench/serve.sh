#!/usr/bin/env bash
# Fork-per-connection benchmark: `lsbaws serve --quiet` against its floor (a
# minimal forking C server, bench/forkserver.c) and a non-forking peer (nginx,
# one worker), all pinned to one CPU, loaded by wrk pinned to another.
#
#   bench/serve.sh                       3 rounds x 4 s per server
#   ROUNDS=5 DURATION=8s bench/serve.sh
#
# Settings (environment): ROUNDS (3), DURATION (4s), CONNS (128), WARMUP (1s,
# per server, not counted; 0 skips), WRK_CPU (0), SERVER_CPU (1; nginx's CPU is
# fixed in bench/nginx.conf.in), PORT (18600: first of three free ports tried).
#
# Each round runs the same wrk against each server in turn (the order rotates
# from round to round so that drift on a shared machine hits all alike), then
# the script prints the median requests/s per server, the ratios of lsbaws to
# the C floor and to nginx, wrk's socket error counts, and the RSS of the
# lsbaws parent after the run (its page tables are copied at every fork).
# Raw wrk output and the table go to bench/results/serve-<date>-<host>.txt.
# Servers listen on 127.0.0.1 only and are stopped by pid on exit.
set -Eeuo pipefail
trap 'echo "serve.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-128}
WARMUP=${WARMUP:-1s}
WRK_CPU=${WRK_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
PORT=${PORT:-18600}
C_CFLAGS=${C_CFLAGS:--O2}
QUIET_MAX=${QUIET_MAX:-10}
QUIET_WAIT=${QUIET_WAIT:-20}

if ! [ "$ROUNDS" -ge 1 ] 2>/dev/null; then
  echo "serve.sh: ROUNDS must be a whole number >= 1, not '$ROUNDS'" >&2
  exit 2
fi
if [ "$(nproc --all)" -lt 2 ]; then
  echo "serve.sh: needs two CPUs (wrk on CPU $WRK_CPU, servers on CPU $SERVER_CPU)" >&2
  exit 2
fi

bench_need wrk nginx gcc

work=$(mktemp -d)
LSBAWS_PID='' C_PID='' NGINX_PID='' NGINX_PREFIX='' WRK_PID=''
cleanup() {
  local pid
  for pid in $WRK_PID $LSBAWS_PID $C_PID $NGINX_PID; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $WRK_PID $LSBAWS_PID $C_PID $NGINX_PID; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work" ${NGINX_PREFIX:+"$NGINX_PREFIX"}
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -------------------------------------------------------------------
# shellcheck disable=SC2086 # C_CFLAGS is a list of flags
gcc $C_CFLAGS -Wall -o "$work/forkserver" "$here/forkserver.c"
if [ -n "${LSBAWS:-}" ]; then
  lsbaws=$LSBAWS
else
  (cd "$root" && cargo build --release --quiet)
  lsbaws="${CARGO_TARGET_DIR:-$root/target}/release/lsbaws"
fi

# --- ports -------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Sets the variable named $1 to the next free port from $PORT on.
free_port() {
  while port_busy "$PORT"; do PORT=$((PORT + 1)); done
  printf -v "$1" '%s' "$PORT"
  PORT=$((PORT + 1))
}
lsbaws_port='' c_port='' nginx_port=''
free_port lsbaws_port
free_port c_port
free_port nginx_port

# --- servers -----------------------------------------------------------------
taskset -c "$SERVER_CPU" "$lsbaws" serve --quiet --bind "127.0.0.1:$lsbaws_port" >"$work/lsbaws.out" 2>&1 &
LSBAWS_PID=$!
taskset -c "$SERVER_CPU" "$work/forkserver" "$c_port" &
C_PID=$!
bench_start_nginx "$nginx_port"
bench_wait_port "$lsbaws_port"
bench_wait_port "$c_port"
# A server that failed to bind has exited; whoever answers its port is not it.
for pid in "$LSBAWS_PID" "$C_PID" "$NGINX_PID"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "serve.sh: a server exited at start (pid $pid); see the messages above" >&2
    exit 1
  fi
done

# One request by hand: every peer must give the same 200 before it is timed.
# A try can meet a reset just after start-up (EPIPE): up to three tries.
check_200() {
  local status=''
  for _ in 1 2 3; do
    status=$( (exec 3<>"/dev/tcp/127.0.0.1/$1"
      printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
      head -c 15 <&3) 2>/dev/null || true)
    [ "$status" = "HTTP/1.1 200 OK" ] && return 0
    sleep 0.2
  done
  echo "serve.sh: $2 on port $1 answered '$status', not HTTP/1.1 200 OK" >&2
  exit 1
}
check_200 "$lsbaws_port" lsbaws
check_200 "$c_port" "C reference"
check_200 "$nginx_port" nginx

names=(lsbaws c-fork nginx)
ports=("$lsbaws_port" "$c_port" "$nginx_port")

mkdir -p "$here/results"
results="$here/results/serve-$(date -u +%Y%m%dT%H%M%SZ)-$(hostname -s).txt"
wrk_cmd=(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -H 'Connection: close')
{
  echo "# bench/serve.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname -s)"
  echo "# commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD -- server src 2>/dev/null || echo ' (server/ or src/ modified)')"
  if [ -n "${LSBAWS:-}" ]; then echo "# lsbaws: prebuilt $LSBAWS (LSBAWS), not built from this tree"; fi
  echo "# kernel $(uname -r), $(nproc --all) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# wrk: $(printf "%q " "${wrk_cmd[@]}")-d$DURATION http://127.0.0.1:PORT/"
  echo "# servers on CPU $SERVER_CPU: $lsbaws serve --quiet --bind 127.0.0.1:$lsbaws_port;" \
    "forkserver $c_port (gcc $C_CFLAGS bench/forkserver.c); nginx $(nginx -v 2>&1 | cut -d/ -f2) (bench/nginx.conf.in)"
} >"$results"

# Runs wrk against $1 (port) for $2 (duration), raw output to stdout.
run_wrk() {
  "${wrk_cmd[@]}" -d"$2" "http://127.0.0.1:$1/" &
  WRK_PID=$!
  wait "$WRK_PID"
  WRK_PID=''
}

# CPU time (clock ticks) of process $1, plus that of its children it has reaped:
# for a forking server, the parent and every finished child.
ticks_of() {
  awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# CPU time of server $1 (an index into names): nginx's master and worker.
server_ticks() {
  local pids=${pids_of[$1]} pid sum=0
  for pid in $pids; do sum=$((sum + $(ticks_of "$pid"))); done
  echo "$sum"
}
# Busy and total ticks of the whole machine, from /proc/stat.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

# Other jobs' builds and tests on the same two CPUs make requests/s swing by
# 2-5x. Before each run, wait (at most QUIET_WAIT s) until the machine is at
# most QUIET_MAX % busy; prints the last busy share seen.
wait_quiet() {
  local end=$((SECONDS + QUIET_WAIT)) b0 t0 b1 t1 busy
  while :; do
    read -r b0 t0 < <(machine_ticks)
    sleep 0.5
    read -r b1 t1 < <(machine_ticks)
    busy=$(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
    if [ "$busy" -le "$QUIET_MAX" ] || [ "$SECONDS" -ge "$end" ]; then
      echo "$busy"
      return
    fi
  done
}

nginx_worker=$(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null || true)
declare -A pids_of=([0]="$LSBAWS_PID" [1]="$C_PID" [2]="$NGINX_PID $nginx_worker")
tck=$(getconf CLK_TCK)

if [ "$WARMUP" != 0 ]; then
  for i in "${!names[@]}"; do
    run_wrk "${ports[$i]}" "$WARMUP" >/dev/null
  done
fi

# --- rounds ------------------------------------------------------------------
declare -A rps cost foreign errs non2xx
for ((r = 1; r <= ROUNDS; r++)); do
  for ((k = 0; k < ${#names[@]}; k++)); do
    i=$(((k + r - 1) % ${#names[@]}))
    name=${names[$i]}
    quiet=$(wait_quiet)
    s0=$(server_ticks "$i")
    w0=$(ticks_of $$)
    read -r b0 t0 < <(machine_ticks)
    out=$(run_wrk "${ports[$i]}" "$DURATION")
    read -r b1 t1 < <(machine_ticks)
    w1=$(ticks_of $$)
    sleep 0.3 # the last children finish and are reaped, so their time counts
    s1=$(server_ticks "$i")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    req=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    # Server CPU per request (µs) and the machine's CPU share used by others (%).
    us=$(awk -v d="$((s1 - s0))" -v n="${n:-0}" -v t="$tck" 'BEGIN { printf "%.0f", (n > 0 ? d * 1e6 / t / n : 0) }')
    fg=$(awk -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v w="$((w1 - w0))" -v t="$((t1 - t0))" \
      'BEGIN { f = t > 0 ? (b - s - w) * 100 / t : 0; printf "%.0f", (f < 0 ? 0 : f) }')
    printf '\n## round %d: %s (machine %s%% busy before; server %s us/request; foreign CPU %s%%)\n%s\n' \
      "$r" "$name" "$quiet" "$us" "$fg" "$out" >>"$results"
    rps[$name]+="${req:-0} "
    cost[$name]+="$us "
    foreign[$name]+="$fg "
    # "Socket errors: connect 0, read 12, write 0, timeout 0" (absent when none)
    e=$(awk -F'[ ,]+' '/Socket errors:/ {print $4+$6+$8+$10}' <<<"$out")
    errs[$name]=$((${errs[$name]:-0} + ${e:-0}))
    e=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    non2xx[$name]=$((${non2xx[$name]:-0} + ${e:-0}))
    printf 'round %d/%d  %-7s %9s req/s  %4s us/req  foreign CPU %3s%%\n' "$r" "$ROUNDS" "$name" "${req:-?}" "$us" "$fg" >&2
  done
done

# --- the lsbaws parent after the run ------------------------------------------
rss=$(awk '/^VmRSS:/ {print $2, $3}' "/proc/$LSBAWS_PID/status")
pte=$(awk '/^VmPTE:/ {print $2, $3}' "/proc/$LSBAWS_PID/status")
kill -TERM "$LSBAWS_PID"
wait "$LSBAWS_PID" || true
LSBAWS_PID=''
summary=$(grep '^Shutdown:' "$work/lsbaws.out" || echo "(no shutdown summary)")

# --- table -------------------------------------------------------------------
median() { tr ' ' '\n' <<<"$1" | awk NF | bench_median; }
declare -A med medcost
for name in "${names[@]}"; do
  med[$name]=$(median "${rps[$name]}")
  medcost[$name]=$(median "${cost[$name]}")
done
table=$(
  printf '%-7s %8s %9s  %-34s %-16s %7s %7s\n' server 'req/s' 'CPU us' "req/s per round" 'foreign CPU %' 'socket' 'non-2xx'
  printf '%-7s %8s %9s  %-34s %-16s %7s %7s\n' '' median '/req med' "(${ROUNDS} x ${DURATION})" 'per round' errors ''
  for name in "${names[@]}"; do
    printf '%-7s %8.0f %9.0f  %-34s %-16s %7s %7s\n' "$name" "${med[$name]}" "${medcost[$name]}" \
      "$(awk '{ for (i = 1; i <= NF; i++) printf "%.0f ", $i }' <<<"${rps[$name]}")" "${foreign[$name]% }" "${errs[$name]}" "${non2xx[$name]}"
  done
  echo
  awk -v l="${med[lsbaws]}" -v c="${med[c-fork]}" -v n="${med[nginx]}" \
    -v lc="${medcost[lsbaws]}" -v cc="${medcost[c-fork]}" 'BEGIN {
    printf "lsbaws / C fork floor: %.2f req/s (target >= 0.90); C / lsbaws CPU per request: %.2f\n", (c > 0 ? l / c : 0), (lc > 0 ? cc / lc : 0)
    printf "lsbaws / nginx:        %.2f req/s\n", (n > 0 ? l / n : 0)
  }'
  echo "lsbaws parent after the run: VmRSS $rss, VmPTE $pte"
  echo "lsbaws $summary"
)
printf '\n## table\n%s\n' "$table" >>"$results"
echo "$table"
echo "raw results: ${results#"$root"/}" >&2

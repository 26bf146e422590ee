#!/usr/bin/env bash
# CGI cost: `lsbaws serve --cgi` running a Python WSGI app (tests/cgi/wsgi_echo.py
# under wsgiref's CGIHandler, one interpreter start per request) against the
# plain canned reply, same wrk load.
#
#   bench/cgi.sh                  3 alternating rounds x 4 s, 32 connections
#   ROUNDS=5 CONNS=64 bench/cgi.sh
#
# Prints the median requests/s of each and their ratio; raw output goes to
# bench/results/cgi-<date>-<host>.txt. Servers listen on 127.0.0.1 only and are
# stopped by pid on exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-32}

bench_need wrk
(cd "$root" && cargo build --release -q)
bin="$root/target/release/lsbaws"
app="$root/tests/cgi/wsgi_echo.py"
mkdir -p "$here/results"
out="$here/results/cgi-$(date -u +%Y%m%dT%H%M%SZ)-$(hostname -s).txt"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Starts `lsbaws serve --quiet ARGS` on a free port and sets $port. Not run in a
# command substitution: that subshell would keep the pid from the EXIT trap.
start() {
  local ready
  ready=$(mktemp)
  "$bin" serve --quiet --bind 127.0.0.1:0 "$@" >"$ready" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 1 100); do
    [ -s "$ready" ] && break
    sleep 0.05
  done
  port=$(sed -nE 's/^Serving HTTP on 127\.0\.0\.1:([0-9]+) .*/\1/p' "$ready")
  rm -f "$ready"
  [ -n "$port" ] || { echo "cgi.sh: lsbaws serve $* did not start" >&2; exit 1; }
}

start
plain_port=$port
# The interpreter itself, not a version-manager shim (pyenv's costs ~100 ms a run).
python=$(python3 -c 'import sys; print(sys.executable)')
start --cgi "$python" --cgi-arg "$app"
cgi_port=$port
declare -A rates
for round in $(seq 1 "$ROUNDS"); do
  for name in plain cgi; do
    port=$([ "$name" = plain ] && echo "$plain_port" || echo "$cgi_port")
    result=$(wrk -t1 -c"$CONNS" -d"$DURATION" -H 'Connection: close' "http://127.0.0.1:$port/hello?x=1")
    { echo "## round $round: $name"; echo "$result"; } >>"$out"
    rate=$(awk '/Requests\/sec/ {print $2}' <<<"$result")
    errors=$(awk '/Socket errors|Non-2xx/ {print}' <<<"$result" | tr '\n' ' ')
    rates[$name]+="$rate "
    echo "round $round  $name  $rate req/s  $errors"
  done
done
plain=$(tr ' ' '\n' <<<"${rates[plain]}" | grep . | bench_median)
cgi=$(tr ' ' '\n' <<<"${rates[cgi]}" | grep . | bench_median)
{
  echo
  printf '%-28s %10s\n' "server" "req/s (median of $ROUNDS)"
  printf '%-28s %10.0f\n' "lsbaws serve (canned reply)" "$plain"
  printf '%-28s %10.0f\n' "lsbaws serve --cgi wsgi app" "$cgi"
  printf 'cgi / plain: %.3f\n' "$(echo "$cgi / $plain" | bc -l)"
} | tee -a "$out"
echo "raw results: ${out#"$root"/}"

#!/usr/bin/env bash
# Beyond one address and one process: three `lsbaws blast` processes released
# together by one --start-at, each from its own --source (127.0.0.2, .3, .4),
# each with CLIENTS keep-alive clients for SECS against nginx (4 workers,
# keep-alive, bench/nginx-scale.conf.in) on 127.0.0.1. Prints the peak count
# of ESTABLISHED client connections (sampled from /proc/net/tcp), each
# process's release skew, and the merged figures. Then the same three from
# one source address, where 3 × 12 000 > the ~28 000 ephemeral ports: the
# port-exhaustion kind (addr_not_available), and, from one process asking for
# all 36 000 at once, the warning predicted before the run.
#
# The results are merged here with python (counts and errors summed, elapsed
# from the first release to the last end); `lsbaws merge` (issue 12) will
# also add the latency histograms exactly.
#
# Raw results: bench/results/scale-<date>-<host>.txt.
# Usage: bench/scale.sh   (env: CLIENTS=12000 SECS=10 LEAD=8 ONE_SOURCE_SECS=30)
# Needs root: apt-get for nginx when missing, and a raised open-file limit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

CLIENTS=${CLIENTS:-12000}
SECS=${SECS:-10}
# Seconds between starting the processes and the release: enough to make
# 3 × CLIENTS sockets on a busy machine.
LEAD=${LEAD:-8}
ONE_SOURCE_SECS=${ONE_SOURCE_SECS:-30}

bench_need nginx time iproute2
(cd "$root" && cargo build --release --quiet)
lsbaws="$root/target/release/lsbaws"
# Room for the clients' sockets (and nginx's, which it raises itself).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

NGINX_PID=
NGINX_PREFIX=$(mktemp -d)
SAMPLER_PID=
BLAST_PIDS=()
work=$(mktemp -d)
cleanup() {
  # Stop by pid only: other people's servers may run on this machine.
  for pid in "${BLAST_PIDS[@]}" $SAMPLER_PID $NGINX_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$NGINX_PREFIX" "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s#@PREFIX@#$NGINX_PREFIX#g" -e "s#@PORT@#$port#g" "$here/nginx-scale.conf.in" >"$NGINX_PREFIX/nginx.conf"
nginx -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf" &
NGINX_PID=$!
bench_wait_port "$port"
url="http://127.0.0.1:$port/"
port_hex=$(printf '%04X' "$port")

mkdir -p "$here/results"
raw="$here/results/scale-$(date -u +%Y%m%d-%H%M%S)-$(hostname -s).txt"
{
  echo "# bench/scale.sh $(date -u +%FT%TZ) on $(hostname -s)"
  echo "# $(uname -srm); $(nproc) cpus; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(nginx -v 2>&1); $("$lsbaws" --version); lsbaws commit $(git -C "$root" rev-parse --short HEAD)"
  echo "# CLIENTS=$CLIENTS SECS=$SECS; ip_local_port_range: $(cat /proc/sys/net/ipv4/ip_local_port_range | tr '\t' ' ')"
} | tee "$raw"

# Prints, every 0.5 s until killed, the number of client sockets ESTABLISHED
# to nginx's port (remote address 127.0.0.1:port, state 01) from
# /proc/net/tcp, each counted once by its local address (a table that changes
# while it is read can list an entry twice), then the same count from
# netlink (`ss`) as a cross-check: with 70 000 sockets one read of the table
# takes seconds on a busy machine, and spans the ramp.
sample_established() {
  while :; do
    local proc nl
    proc=$(dd if=/proc/net/tcp bs=16M status=none |
      awk -v rem="0100007F:$port_hex" '$3 == rem && $4 == "01" {seen[$2] = 1} END {print length(seen)}')
    nl=$(ss -Htn state established dst "127.0.0.1:$port" 2>/dev/null | wc -l)
    echo "$proc $nl"
    sleep 0.5
  done
}

# Runs three blasts released together; $1 names the scenario, $2 is how
# long they run (s), then one --source argument list per process.
three_blasts() {
  local name=$1 secs=$2
  shift 2
  local at i=0 src
  at=$(python3 -c "import time; print(f'{time.time() + $LEAD:.3f}')")
  BLAST_PIDS=()
  sample_established >"$work/established" &
  SAMPLER_PID=$!
  for src in "$@"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    "$lsbaws" blast "$url" --keep-alive --max-clients "$CLIENTS" --duration "${secs}s" \
      --timeout 30s --start-at "$at" --json $src >"$work/$name-$i.json" 2>"$work/$name-$i.err" &
    BLAST_PIDS+=($!)
  done
  for pid in "${BLAST_PIDS[@]}"; do
    wait "$pid" || true
  done
  BLAST_PIDS=()
  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=
  echo "## $name: 3 × $CLIENTS keep-alive clients for ${secs}s, released at $at"
  echo "peak ESTABLISHED client connections: $(sort -n -k1 "$work/established" | tail -1 | cut -d' ' -f1) (/proc/net/tcp), $(sort -n -k2 "$work/established" | tail -1 | cut -d' ' -f2) (netlink, ss)"
  for i in 1 2 3; do
    if [ -s "$work/$name-$i.err" ]; then
      sed "s/^/process $i stderr: /" "$work/$name-$i.err"
    fi
  done
  python3 - "$work/$name-1.json" "$work/$name-2.json" "$work/$name-3.json" <<'PY'
import json, sys
from datetime import datetime
rs = []
for path in sys.argv[1:]:
    try:
        rs.append(json.load(open(path)))
    except Exception as e:
        print(f"{path}: no report ({e})")
def t(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
for i, r in enumerate(rs, 1):
    e = {k: v for k, v in r["errors"].items() if v}
    print(f"process {i}: sources {r['sources']}, skew {r['release_skew_ms']:+.3f} ms, "
          f"{r['sockets_opened']} sockets, {r['connections']} requests, {r['ok']} ok, "
          f"errors {e or 'none'}, unfinished {r['unfinished']}")
if rs:
    ok = sum(r["ok"] for r in rs)
    conns = sum(r["connections"] for r in rs)
    sockets = sum(r["sockets_opened"] for r in rs)
    errors = {}
    for r in rs:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    first = min(t(r["started_at"]) for r in rs)
    last = max(t(r["started_at"]) + r["elapsed_s"] for r in rs)
    skews = [abs(r["release_skew_ms"]) for r in rs]
    print(f"merged: {len(rs)} processes, {sum(r['clients'] for r in rs)} clients, "
          f"{sockets} sockets opened, {conns} requests, {ok} ok, "
          f"errors {({k: v for k, v in errors.items() if v}) or 'none'}, "
          f"{conns / (last - first):.0f} requests/s over {last - first:.3f} s "
          f"(first release to last end), max |skew| {max(skews):.3f} ms")
PY
}

three_blasts sources "$SECS" "--source=127.0.0.2" "--source=127.0.0.3" "--source=127.0.0.4" | tee -a "$raw"
# From one address (a fresh one: the first scenario's closes left its ports
# in TIME_WAIT): 36 000 > the ephemeral ports. Linux's connect scans the
# port range for a free one, so as the range fills each connect() costs
# milliseconds of kernel time (blocking its runtime thread) long before the
# range is full and connects fail with EADDRNOTAVAIL (addr_not_available):
# the socket count stalls below the range, and the clients whose turn never
# came are `unfinished`. The run is longer so that it gets as far as it can.
three_blasts one-source "$ONE_SOURCE_SECS" "--source=127.0.0.5" "--source=127.0.0.5" "--source=127.0.0.5" | tee -a "$raw"

# One process asking for all 36 000 from one address: the warning comes
# before the run (the ephemeral ports are fewer), then the kind. (Where the
# hard open-file limit is below 36 000, as here, the fd warning comes too.)
echo "## one process, $((3 * CLIENTS)) clients from one source" | tee -a "$raw"
"$lsbaws" blast "$url" --keep-alive --max-clients "$((3 * CLIENTS))" --duration 3s --timeout 30s \
  --source 127.0.0.6 --json >"$work/one.json" 2>"$work/one.err" || true
sed 's/^/stderr: /' "$work/one.err" | tee -a "$raw"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("errors:", {k: v for k, v in r["errors"].items() if v}, "ok:", r["ok"], "sockets:", r["sockets_opened"])' \
  "$work/one.json" | tee -a "$raw"
echo "raw results: $raw"

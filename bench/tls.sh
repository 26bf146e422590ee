#!/usr/bin/env bash
# Benchmark of `lsbaws blast https://` against wrk (OpenSSL): a new TLS
# connection per request (a full handshake each: nginx keeps no session cache
# and sends no tickets) at 64 concurrency, against one nginx worker on CPU 1
# with an ECDSA P-256 certificate (bench/nginx-tls.conf.in). Each client runs
# on CPU 0 with one thread, in ROUNDS alternating rounds; prints each one's
# median connections/s, CPU seconds (user+system), CPU µs per connection,
# peak RSS and the ratio to wrk. blast runs with --insecure (wrk verifies no
# certificate either) and, for the cost of verification, with --cacert.
#
# Raw results: bench/results/tls-<date>-<host>.txt.
# Usage: bench/tls.sh   (env: ROUNDS=3 SECS=4 CONC=64)
# Needs root for apt-get when wrk, nginx, openssl or time are missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-4}
CONC=${CONC:-64}

bench_need wrk nginx openssl time
(cd "$root" && cargo build --release --quiet)
lsbaws="$root/target/release/lsbaws"

NGINX_PID=
NGINX_PREFIX=$(mktemp -d)
work=$(mktemp -d)
cleanup() {
  # Stop by pid only: other people's servers may run on this machine.
  if [ -n "$NGINX_PID" ]; then
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  rm -rf "$NGINX_PREFIX" "$work"
}
trap cleanup EXIT

# A CA and a P-256 server certificate it signed for 127.0.0.1.
(
  cd "$NGINX_PREFIX"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key
  openssl req -x509 -new -key ca.key -subj /CN=lsbaws-bench-ca -days 2 -out ca.pem
  openssl ecparam -name prime256v1 -genkey -noout -out leaf.key
  openssl req -new -key leaf.key -subj /CN=localhost -out leaf.csr
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile leaf.ext -out leaf.pem
) 2>/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s#@PREFIX@#$NGINX_PREFIX#g" -e "s#@PORT@#$port#g" "$here/nginx-tls.conf.in" >"$NGINX_PREFIX/nginx.conf"
nginx -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf" &
NGINX_PID=$!
bench_wait_port "$port"
url="https://127.0.0.1:$port/"

mkdir -p "$here/results"
raw="$here/results/tls-$(date -u +%Y%m%d-%H%M%S)-$(hostname -s).txt"
{
  echo "# bench/tls.sh $(date -u +%FT%TZ) on $(hostname -s)"
  echo "# $(uname -srm); $(nproc) cpus; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(wrk --version 2>&1 | head -1); $(openssl version); $(nginx -v 2>&1); $("$lsbaws" --version)"
  echo "# lsbaws commit $(git -C "$root" rev-parse --short HEAD)"
  echo "# ROUNDS=$ROUNDS SECS=$SECS CONC=$CONC; ECDSA P-256, full handshake per connection"
  echo "# round tool conns_per_s cpu_s peak_rss_kb errors load1"
} >"$raw"

if awk '{exit !($1 > 1.0)}' /proc/loadavg; then
  echo "warning: load average $(cut -d' ' -f1 /proc/loadavg) before starting: other work will skew the figures" | tee -a "$raw" >&2
fi

time_fields() {
  awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {m=$2}
    END {printf "%.2f %d\n", u+s, m}' "$1"
}

# blast exits 1 when a connection failed: that is data (the errors column).
blast_run() {
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -gt 1 ]; then
    echo "bench: blast run failed (exit $rc): $*" >&2
    return "$rc"
  fi
}

blast_common() {
  blast_run /usr/bin/time -v -o "$work/time" taskset -c 0 "$lsbaws" blast "$url" --threads 1 \
    --max-clients "$CONC" --duration "${SECS}s" --json "$@" >"$work/out" 2>/dev/null
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["conns_per_s"]), sum(r["errors"].values()))' "$work/out"
}
run_blast() { blast_common --insecure; }
run_blast_verify() { blast_common --cacert "$NGINX_PREFIX/ca.pem"; }
run_wrk() {
  /usr/bin/time -v -o "$work/time" taskset -c 0 wrk -t1 -c"$CONC" -d"${SECS}s" \
    -H 'Connection: close' "$url" >"$work/out"
  local rps errs
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' "$work/out")
  errs=$(awk '/Socket errors/ {gsub(",",""); n+=$4+$6+$8+$10} /Non-2xx/ {n+=$NF} END {print n+0}' "$work/out")
  echo "$rps $errs"
}

tools=(blast wrk blast_verify)
for round in $(seq 1 "$ROUNDS"); do
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
  echo "| client        | conns/s (median) | CPU s | CPU µs/conn (median) | peak RSS MB | vs wrk |"
  echo "|---------------|------------------|-------|----------------------|-------------|--------|"
  for tool in "${tools[@]}"; do
    rps=$(median_of "$tool" 3)
    cpu=$(median_of "$tool" 4)
    rss=$(median_of "$tool" 5)
    # CPU per connection, round by round: the figure a busy machine moves least.
    per=$(awk -v t="$tool" -v s="$SECS" '$1 !~ /^#/ && $2 == t && $3 > 0 {print $4 * 1e6 / ($3 * s)}' "$raw" | bench_median)
    awk -v t="$tool" -v r="$rps" -v c="$cpu" -v p="$per" -v m="$rss" -v w="$wrk_rps" \
      'BEGIN {printf "| %-13s | %16d | %5.2f | %20.0f | %11.1f | %6.2f |\n", t, r, c, p, m/1024, r/w}'
  done
} | tee -a "$raw"
echo "raw results: $raw"

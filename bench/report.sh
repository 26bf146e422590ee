#!/usr/bin/env bash
# What the `histograms` of `blast --json` cost (issue 12): the encoding of the
# three HDR histograms (once per run) and decoding (once per report in `merge`),
# from benches/report_cost.rs; then the JSON of a typical run against
# `lsbaws serve` on 127.0.0.1: its size, the histograms' share, and the encode
# cost against that run's own elapsed time.
#
#   bench/report.sh                CLIENTS=128 CONNS=10
#
# Raw output goes to bench/results/report-<date>-<host>.txt. The server listens
# on 127.0.0.1 only and is stopped by pid on exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

CLIENTS=${CLIENTS:-128}
CONNS=${CONNS:-10}

mkdir -p "$here/results"
out="$here/results/report-$(date -u +%Y%m%dT%H%M%SZ)-$(hostname -s).txt"
(cd "$root" && cargo build --release -q)
bin="$root/target/release/lsbaws"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "## cargo bench --bench report_cost" | tee -a "$out"
(cd "$root" && cargo bench -q --bench report_cost 2>/dev/null) | tee -a "$out"

ready=$(mktemp)
"$bin" serve --quiet --bind 127.0.0.1:0 >"$ready" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$ready" ] && break; sleep 0.05; done
port=$(sed -nE 's/^Serving HTTP on 127\.0\.0\.1:([0-9]+) .*/\1/p' "$ready")
rm -f "$ready"
[ -n "$port" ] || { echo "report.sh: lsbaws serve did not start" >&2; exit 1; }

json=$(mktemp)
"$bin" blast "http://127.0.0.1:$port/hello" --max-clients "$CLIENTS" --max-conns "$CONNS" \
  --threads 1 --json >"$json"
{
  echo
  echo "## a typical run: blast --max-clients $CLIENTS --max-conns $CONNS --threads 1 --json"
  python3 - "$json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
r = json.loads(text)
hist = sum(len(v) for v in r["histograms"].values())
print(f"connections {r['connections']}, elapsed {r['elapsed_s']:.3f} s")
print(f"JSON {len(text)} bytes, of which histograms {hist} bytes "
      f"({', '.join(f'{k} {len(v)}' for k, v in r['histograms'].items())})")
PY
} | tee -a "$out"
rm -f "$json"
echo "raw results: ${out#"$root"/}"

#!/usr/bin/env bash
# What `lsbaws merge` costs as the number of reports grows (attack 3, F3):
# peak RSS and wall time of `merge --json` over N copies of one real report
# (a 50 × 3 blast against `lsbaws serve` on 127.0.0.1, each copy its own tag),
# for this build and, when PEER is set, another lsbaws binary measured in the
# same run (e.g. the build before the fix).
#
#   bench/merge.sh                        NS="2000 10000" ROUNDS=3
#   PEER=/path/to/old/lsbaws bench/merge.sh
#
# Each merge runs under an address-space limit (CAP_MB, default 4000), so a
# build whose memory grows with N fails there instead of exhausting the
# machine; a run that fails is printed as such. Raw output goes to
# bench/results/merge-<date>-<host>.txt. The server is stopped by pid on exit.
# Needs root for apt-get when GNU time is missing (its own fork is small, so
# the peak RSS it reports is the merge's).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_need time

NS=${NS:-"2000 10000"}
ROUNDS=${ROUNDS:-3}
CAP_MB=${CAP_MB:-4000}
PEER=${PEER:-}

mkdir -p "$here/results"
out="$here/results/merge-$(date -u +%Y%m%dT%H%M%SZ)-$(hostname -s).txt"
(cd "$root" && cargo build --release -q)
bin="$root/target/release/lsbaws"
work=$(mktemp -d)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --quiet --bind 127.0.0.1:0 >"$work/ready" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.05; done
port=$(sed -nE 's/^Serving HTTP on 127\.0\.0\.1:([0-9]+) .*/\1/p' "$work/ready")
[ -n "$port" ] || { echo "merge.sh: lsbaws serve did not start" >&2; exit 1; }
"$bin" blast "http://127.0.0.1:$port/hello" --max-clients 50 --max-conns 3 --json >"$work/one.json"

{
  echo "## merge --json of N copies of one 50 x 3 report; $ROUNDS rounds, median; cap ${CAP_MB} MB"
  echo "## this build: $bin${PEER:+; peer: $PEER}"
} | tee -a "$out"
python3 - "$work" "$ROUNDS" "$CAP_MB" "$bin" "$PEER" $NS <<'PY' | tee -a "$out"
import json, os, resource, statistics, subprocess, sys

work, rounds, cap_mb, this, peer = sys.argv[1:6]
ns = [int(n) for n in sys.argv[6:]]
rounds, cap = int(rounds), int(cap_mb) << 20
one = json.load(open(os.path.join(work, "one.json")))

def limit():
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

def once(binary, path):
    """(seconds, peak RSS in MB, exit status) of one merge, by GNU time."""
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M %x", binary, "merge", "--json", path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       preexec_fn=limit)
    # Its last line; "Command terminated by signal N" comes before it when
    # killed, and time then exits 128 + N.
    last = r.stderr.strip().splitlines()[-1].split()
    return float(last[0]), int(last[1]) / 1024, r.returncode

for n in ns:
    path = os.path.join(work, f"many{n}.json")
    with open(path, "w") as f:
        for i in range(n):
            one["tag"] = f"pod-{i}"
            f.write(json.dumps(one) + "\n")
    size = os.path.getsize(path) / 1e6
    rows = {}
    # Alternating rounds: this build, then the peer.
    for _ in range(rounds):
        for name, binary in (("this", this), ("peer", peer)):
            if binary:
                rows.setdefault(name, []).append(once(binary, path))
    for name, runs in rows.items():
        ok = [r for r in runs if r[2] == 0]
        fails = sorted({r[2] for r in runs if r[2] != 0})
        if ok:
            t = statistics.median(r[0] for r in ok)
            m = statistics.median(r[1] for r in ok)
            print(f"{n} reports ({size:.1f} MB): {name} {t:.2f} s, peak RSS {m:.1f} MB"
                  + (f" (and {len(runs) - len(ok)} runs failed: exit {fails})" if fails else ""))
        else:
            m = max(r[1] for r in runs)
            print(f"{n} reports ({size:.1f} MB): {name} failed every run (exit {fails}, "
                  f"134 = SIGABRT) at peak RSS {m:.1f} MB under the {cap >> 20} MB cap")
    if len(rows) == 2 and all(r[2] == 0 for runs in rows.values() for r in runs):
        ratio = statistics.median(r[1] for r in rows["peer"]) / statistics.median(
            r[1] for r in rows["this"])
        print(f"{n} reports: peer's peak RSS / this build's = {ratio:.0f}")
PY
echo "raw results: ${out#"$root"/}"

#!/usr/bin/env bash
# Benchmark of the clean-up of `lsbaws audit -- COMMAND` (attack 3, F7): the
# time from COMMAND's exit to lsbaws's (the report, then stopping what COMMAND
# left behind), and how many processes were left when lsbaws exited, for this
# build and a peer build (PEER=path, e.g. the build before the change), in
# alternation. Not a test.
#
# Scenarios, each leaving processes that ignore SIGTERM (so the clean-up's
# SIGKILL rounds do the work; --settle 0):
#   sleepers  1000 `sleep 300` started by one shell (a wide, flat leak)
#   chain     a chain of 300 processes, each in a session of its own (setsid)
#   bomb      tests/shims/setsid_bomb.c under prlimit --nproc 120 as uid
#             61031 (root only): children call setsid and fork on
# Prints the median clean-up time and leftovers per scenario and build, and the
# ratio of the medians (this build / peer). Raw figures go to bench/results/.
#
# Usage: PEER=/path/to/old/lsbaws bench/cleanup.sh   (RUNS=5 by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

RUNS=${RUNS:-5}
[ "$RUNS" -ge 3 ] || { echo "RUNS must be at least 3" >&2; exit 2; }
[ -n "${PEER:-}" ] && [ -x "$PEER" ] || { echo "PEER=path to the lsbaws build to compare with" >&2; exit 2; }
command -v cc >/dev/null || bench_need gcc
command -v pgrep >/dev/null || bench_need procps
BOMB_UID=61031

work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  stop_uid
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$top" && cargo build --release --quiet)
SELF="$top/target/release/lsbaws"

cat >"$work/chain.c" <<'C'
/* argv: DEPTH STAMP. Builds a chain of DEPTH processes, each ignoring SIGTERM
 * in a session of its own; when the last is up, the first writes the time to
 * STAMP and exits. Every process ends by itself after 60 s (alarm). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int depth = atoi(argv[1]), fds[2];
  char c;
  if (pipe(fds) != 0) return 2;
  if (fork() != 0) {
    close(fds[1]);
    if (read(fds[0], &c, 1) != 1) return 2;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    FILE *f = fopen(argv[2], "w");
    fprintf(f, "%ld.%09ld\n", (long)t.tv_sec, t.tv_nsec);
    fclose(f);
    _exit(0);
  }
  close(fds[0]);
  for (int i = 0; i < depth; i++) {
    signal(SIGTERM, SIG_IGN);
    setsid();
    alarm(60);
    pid_t p = fork();
    if (p < 0) break;
    if (p != 0) for (;;) pause();
  }
  if (write(fds[1], "x", 1) != 1) return 2;
  for (;;) pause();
}
C
cc -O1 -o "$work/chain" "$work/chain.c"
cc -O1 -o "$work/bomb" "$top/tests/shims/setsid_bomb.c"
chmod 755 "$work/bomb"

# Stops, then kills by pid, every process of the bomb's uid (ours alone).
stop_uid() {
  local i pids
  for i in $(seq 1 200); do
    pids=$(ps -u "$BOMB_UID" -o pid= 2>/dev/null | tr -d ' ' || true)
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -STOP $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.05
  done
}

now() { date +%s.%N; }

# run BINARY SCENARIO: prints "cleanup_s left unstopped".
run() {
  local bin=$1 scenario=$2 stamp="$work/stamp" json="$work/out.json" end left marker
  rm -f "$stamp"
  # Digits, so that `sleep 300.MARKER` is a valid duration.
  marker="9$$$RANDOM"
  case $scenario in
    sleepers)
      "$bin" audit --json --settle 0 -- sh -c \
        "trap '' TERM; i=0; while [ \$i -lt 1000 ]; do sleep 300.$marker >/dev/null 2>&1 & i=\$((i+1)); done; date +%s.%N > $stamp" >"$json" || true
      ;;
    chain)
      "$bin" audit --json --settle 0 -- "$work/chain" 300 "$stamp" "$marker" >"$json" || true
      ;;
    bomb)
      "$bin" audit --json --settle 0 -- sh -c \
        "setpriv --reuid=$BOMB_UID --regid=$BOMB_UID --clear-groups -- prlimit --nproc=120:120 $work/bomb $(( $(date +%s) + 30 )) $marker; date +%s.%N > $stamp" >"$json" || true
      ;;
  esac
  end=$(now)
  left=$(pgrep -c -f "$marker" || true)
  local unstopped
  unstopped=$(tail -1 "$json" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["unstopped"]))' 2>/dev/null || echo "?")
  echo "$(echo "$end - $(cat "$stamp")" | bc) $left $unstopped"
  # What a build left is ended here, so that the next run starts clean.
  if [ "$scenario" = bomb ]; then stop_uid; fi
  local pids
  pids=$(pgrep -f "$marker" || true)
  # shellcheck disable=SC2086
  if [ -n "$pids" ]; then kill -KILL $pids 2>/dev/null || true; fi
}

scenarios="sleepers chain"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && command -v prlimit >/dev/null; then
  scenarios="$scenarios bomb"
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw="$here/results/cleanup-$stamp-$(hostname -s).txt"
{
  echo "# bench/cleanup.sh $(date -u +%FT%TZ) host $(hostname -s), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# self $SELF ($(cd "$top" && git rev-parse --short HEAD)); peer $PEER"
  echo "# scenario build run cleanup_s left_after_exit unstopped_in_report"
} >"$raw"
for scenario in $scenarios; do
  for r in $(seq 1 "$RUNS"); do
    for build in self peer; do
      bin=$SELF
      [ "$build" = peer ] && bin=$PEER
      echo "$scenario $build $r $(run "$bin" "$scenario")" >>"$raw"
    done
  done
done

echo "clean-up after COMMAND's exit, median of $RUNS runs (raw: ${raw#"$top"/})"
printf '%-9s %12s %12s %8s %14s %14s\n' scenario self_s peer_s ratio self_left peer_left
for scenario in $scenarios; do
  med() { awk -v s="$scenario" -v b="$1" -v c="$2" '$1==s && $2==b {print $c}' "$raw" | bench_median; }
  s=$(med self 4); p=$(med peer 4)
  printf '%-9s %12.3f %12.3f %8.2f %14s %14s\n' "$scenario" "$s" "$p" "$(echo "$s / $p" | bc -l)" "$(med self 5)" "$(med peer 5)"
done

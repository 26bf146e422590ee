#!/usr/bin/env python3
"""Makes zombies on purpose, for the verdict tests (tests/verdicts.rs).

    zombies.py [--parent HEX] [--count N] [HEX...]

Forks N children that exit at once, plus one child per HEX argument that first
sets its own command name (comm) to those bytes (the kernel keeps the first 15);
--parent HEX renames this process too. It never waits for a child: once all are
defunct it prints "ready" and sleeps until killed (60 s at most).
"""
import argparse
import os
import time


def set_comm(name):
    with open("/proc/self/comm", "wb") as f:
        f.write(name)


def defunct(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return False


args = argparse.ArgumentParser()
args.add_argument("--parent")
args.add_argument("--count", type=int, default=0)
args.add_argument("names", nargs="*")
opts = args.parse_args()

if opts.parent:
    set_comm(bytes.fromhex(opts.parent))
names = [None] * opts.count + [bytes.fromhex(n) for n in opts.names]
kids = []
for name in names:
    pid = os.fork()
    if pid == 0:
        try:
            if name is not None:
                set_comm(name)
        finally:
            os._exit(0)
    kids.append(pid)

deadline = time.time() + 30
while time.time() < deadline and not all(defunct(p) for p in kids):
    time.sleep(0.01)
print("ready", flush=True)
time.sleep(60)

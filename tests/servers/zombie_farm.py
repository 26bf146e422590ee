#!/usr/bin/env python3
"""Makes batches of zombies whose parent can be killed mid-audit.

This process is a child subreaper (PR_SET_CHILD_SUBREAPER), the stable target of
`lsbaws audit --tree`. For each line "spawn N" on stdin it forks a middle process
that forks N children which exit at once and are never reaped by it, then prints
"ready <middle pid>". When the test kills the middle process, its zombies are
re-parented here and reaped: they vanish in the middle of the audit's scan.
EOF at stdin: exit (the test also kills this process by pid).
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap(*_):
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


signal.signal(signal.SIGCHLD, reap)

for line in sys.stdin:
    words = line.split()
    if not words or words[0] != "spawn":
        continue
    count = int(words[1])
    ready_r, ready_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(ready_r)
        for _ in range(count):
            if os.fork() == 0:
                os._exit(0)
        # Wait until all of them are zombies, then say so and sleep unreaped.
        deadline = time.time() + 30
        while time.time() < deadline:
            states = []
            for tid in os.listdir("/proc/self/task"):
                with open("/proc/self/task/%s/children" % tid) as f:
                    states.extend(f.read().split())
            zombies = 0
            for pid in states:
                try:
                    with open("/proc/%s/stat" % pid) as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                            zombies += 1
                except OSError:
                    pass
            if zombies >= count:
                break
            time.sleep(0.01)
        os.write(ready_w, b"x")
        time.sleep(60)
        os._exit(0)
    os.close(ready_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    print("ready %d" % middle, flush=True)

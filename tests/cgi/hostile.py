#!/usr/bin/env python3
"""CGI programs that try to escape their bounds or break the response (attack
report on serve, /work/notes/attack-serve.md). The path names the behaviour,
the query string is a marker that every process left running carries in its
command line (`sleep` run as argv[0] MARKER), so the tests can find it by its marker."""
import ctypes
import os
import signal
import sys

mode = os.environ.get("PATH_INFO", "/").lstrip("/")
mark = os.environ.get("QUERY_STRING", "nomark")
HEAD = b"Content-Type: text/plain\r\n\r\n"


def linger():
    """Becomes a long sleep that carries the marker (fds are kept)."""
    os.execvp("sleep", [mark, "1000"])


def detach_output():
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)


def no_parent_death_signal():
    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG = 0


if mode == "big-linger":
    # S1a: a whole 8 MB response (buffered, under 16 MiB), stdout closed, lingers.
    os.write(1, HEAD)
    data = memoryview(b"y" * (8 * 1024 * 1024))
    while data:
        data = data[os.write(1, data):]
    os.close(1)
    linger()
elif mode == "join-server-group":
    # S1b: leaves its own group for the server's, clears PDEATHSIG, never answers.
    os.setpgid(0, os.getpgid(os.getppid()))
    no_parent_death_signal()
    linger()
elif mode == "job-left":
    # S1c: answers and exits 0, leaving a job in its group (output detached).
    os.write(1, HEAD + b"hi\n")
    if os.fork() == 0:
        detach_output()
        linger()
    os._exit(0)
elif mode == "job-holds-stdout":
    # S11: answers and exits 0; a job it left keeps stdout open.
    os.write(1, HEAD + b"hi\n")
    if os.fork() == 0:
        linger()
    os._exit(0)
elif mode == "worker-own-group":
    # S1d: a worker in a process group of its own; the program never answers.
    if os.fork() == 0:
        os.setpgid(0, 0)
        no_parent_death_signal()
        detach_output()
        linger()
    linger()
elif mode == "daemon":
    # A double-forked, setsid'd daemon; then the answer.
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            detach_output()
            linger()
        os._exit(0)
    os.wait()
    os.write(1, HEAD + b"daemonized\n")
elif mode == "group-sleeper":
    # S1e: a job in its group and the program itself, both sleeping.
    if os.fork() == 0:
        detach_output()
        linger()
    linger()
elif mode == "stderr-spam":
    # S3: 200 kB of stderr before a valid answer.
    os.write(2, b"E" * 200000)
    os.write(1, HEAD + b"ok\n")
elif mode == "stderr-escapes":
    # S3: terminal control sequences, a bidi override, U+009B, on stderr.
    os.write(2, "\x1b[31mRED\x1b]0;pwned-title\x07 \u202eevil \u009b2J\n".encode())
    os.write(1, HEAD + b"ok\n")
elif mode == "transfer-encoding":
    # S10: a hop-by-hop field of its own next to a plain body.
    os.write(1, b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nhello world\n")
elif mode == "status-204":
    os.write(1, b"Status: 204 No Content\r\n\r\nbody-after-204\n")
elif mode == "crash":
    # S10: dies of a signal after part of its output.
    os.write(1, HEAD + b"partial")
    os.kill(os.getpid(), signal.SIGSEGV)
elif mode == "crash-streamed":
    # S10: dies of a signal after more output than the server buffers.
    os.write(1, HEAD)
    data = memoryview(b"z" * (20 * 1024 * 1024))
    while data:
        data = data[os.write(1, data):]
    os.kill(os.getpid(), signal.SIGSEGV)
else:
    os.write(1, HEAD + ("mode %s\n" % mode).encode())

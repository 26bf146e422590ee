#!/usr/bin/env python3
"""A forking HTTP server that never reaps, and whose children rename themselves
(comm, from the hex name in argv[2]) before they exit: zombies with hostile
names, for the escaping tests of `lsbaws smoke` (tests/verdicts_smoke.rs)."""
import os
import socket
import sys

port = int(sys.argv[1])
name = bytes.fromhex(sys.argv[2])
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(1024)
while True:
    conn, _ = listener.accept()
    if os.fork() == 0:
        listener.close()
        with open("/proc/self/comm", "wb") as f:
            f.write(name)
        conn.recv(8192)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        conn.close()
        os._exit(0)
    conn.close()  # and no wait(), ever

"""Servers and launchers for tests/attack*.rs, one mode per argv[1].

Every process this script becomes or starts keeps MARKER in its command line,
so a test can prove that none of them outlived the run.

  serve PORT HOST MARKER [DELAY]     one process answering 200 "ok\\n" on HOST:PORT
                                     (after DELAY seconds)
  listen-when FILE PORT HOST MARKER  says "waiting", serves once FILE exists
  daemon PORT MARKER WHEN            a launcher: a daemon in its own session serves
                                     127.0.0.1:PORT; the launcher exits 0 when the
                                     daemon listens (WHEN=listening) or before it
                                     binds (WHEN=forked)
  linger PORT MARKER THEN            leaves a sleeper in its own session (setsid done
                                     before going on), then THEN: `exit N` (three
                                     stderr lines, exit N), `idle`, or `serve`
  idle MARKER                        sleeps; never listens
  chain PORT MARKER DEPTH            serves, after leaving DEPTH processes, each in a
                                     session of its own and ignoring SIGTERM
  ignterm PORT MARKER FILE           serves; SIGTERM only creates FILE
"""

import os
import signal
import socket
import sys
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"


def serve(port, host="127.0.0.1", on_listen=None, limit=120.0):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(1024)
    if on_listen:
        on_listen()
    end = time.time() + limit
    while time.time() < end:
        s.settimeout(1)
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        c.settimeout(5)
        try:
            c.recv(65536)
            c.sendall(OK)
        except OSError:
            pass
        c.close()


def sleeper(marker):
    """A process in a session of its own, started before this one goes on; its
    pid goes to the file $ATTACK_SLEEPER_PIDFILE names, if set (proof it ran)."""
    r, w = os.pipe()
    if os.fork() == 0:
        os.close(r)
        os.setsid()
        proof = os.environ.get("ATTACK_SLEEPER_PIDFILE")
        if proof:
            with open(proof, "w") as f:
                f.write(str(os.getpid()))
        os.write(w, b"1")
        os.close(w)
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", marker])
    os.close(w)
    os.read(r, 1)
    os.close(r)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "serve":
        if len(args) > 3:
            time.sleep(float(args[3]))
        serve(args[0], args[1])
    elif mode == "listen-when":
        path, port, host = args[0], args[1], args[2]
        print("waiting", flush=True)
        end = time.time() + 60
        while not os.path.exists(path) and time.time() < end:
            time.sleep(0.01)
        serve(port, host)
    elif mode == "daemon":
        port, marker, when = args
        r, w = os.pipe()
        if os.fork() == 0:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                def listening():
                    if when == "listening":
                        os.write(w, b"1")
                    os.close(w)
                if when == "forked":
                    os.write(w, b"1")
                    time.sleep(0.3)
                serve(port, on_listen=listening)
            os._exit(0)
        os.close(w)
        os.read(r, 1)
        sys.exit(0)
    elif mode == "linger":
        port, then = args[0], args[2:]
        sleeper(args[1])
        if then[0] == "exit":
            sys.stderr.write("first line\nsecond line\nthird line\n")
            sys.stderr.flush()
            sys.exit(int(then[1]))
        elif then[0] == "idle":
            time.sleep(60)
        elif then[0] == "serve":
            serve(port)
    elif mode == "idle":
        time.sleep(60)
    elif mode == "chain":
        port, marker, depth = args[0], args[1], int(args[2])
        if os.fork() == 0:
            for _ in range(depth):
                os.setsid()
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                if os.fork() != 0:
                    break
            # SIG_IGN survives exec: the sleeper ignores SIGTERM too.
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", marker])
        serve(port)
    elif mode == "ignterm":
        port, marker, path = args

        def noted(*_):
            open(path, "w").close()

        signal.signal(signal.SIGTERM, noted)
        serve(port)
    else:
        sys.exit("unknown mode " + mode)


main()

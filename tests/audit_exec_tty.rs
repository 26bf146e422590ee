//! `lsbaws audit -- COMMAND` on a terminal (issue 13): COMMAND runs in its own
//! process group, so lsbaws hands it the terminal as a shell hands it to a
//! job. Without that, a COMMAND that reads the terminal is stopped (SIGTTIN)
//! and lsbaws waits forever.
//!
//! A Python harness (below) runs lsbaws on a pseudo-terminal (pty.fork: a new
//! session with the pty as its controlling terminal, lsbaws in its foreground
//! group), types into it, and reports lsbaws's exit and what the terminal
//! showed. On a timeout it SIGKILLs every process of that session, so a
//! failed test leaves nothing.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// argv: LSBAWS PYTHON ACTION. COMMAND prints `ready`, reads a line and
/// prints it back. ACTION: `line` types a line; `ctrl-c` types ^C; `ctrl-z`
/// types ^Z, waits for lsbaws to stop, continues it, then types a line.
const HARNESS: &str = r#"import json, os, pty, select, signal, sys, time
lsbaws, py, action = sys.argv[1:4]
child = "import sys\nprint('ready', flush=True)\nline = sys.stdin.readline()\nprint('got', line.strip(), flush=True)\n"
pid, fd = pty.fork()
if pid == 0:
    os.execv(lsbaws, [lsbaws, "audit", "--", py, "-c", child])
deadline = time.monotonic() + 30
out = b""
def read_until(token):
    global out
    while token not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return False
            if not data:
                return False
            out += data
    return token in out
def wait(flags):
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, flags | os.WNOHANG)
        if got:
            return status
        time.sleep(0.02)
    return None
def session_kill():
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[3]) == pid:
                try:
                    os.kill(int(name), signal.SIGKILL)
                except OSError:
                    pass
result = {"stopped": None}
if read_until(b"ready"):
    if action == "line":
        os.write(fd, b"hello\n")
    elif action == "ctrl-c":
        os.write(fd, b"\x03")
    elif action == "ctrl-z":
        os.write(fd, b"\x1a")
        status = wait(os.WUNTRACED)
        result["stopped"] = status is not None and os.WIFSTOPPED(status)
        os.kill(pid, signal.SIGCONT)
        os.write(fd, b"hello\n")
# Everything until the terminal closes (EIO once lsbaws and COMMAND are
# gone), or the deadline.
read_until(b"\0 never printed \0")
status = wait(0)
if status is None:
    session_kill()
    os.waitpid(pid, 0)
    result["code"] = "timeout"
else:
    result["code"] = os.waitstatus_to_exitcode(status)
result["out"] = out.decode(errors="replace")
print(json.dumps(result))
"#;

fn on_a_terminal(action: &str) -> Value {
    let (status, out, err) = run_bounded(
        Command::new(python3()).args(["-c", HARNESS, bin(), python3(), action]),
        Duration::from_secs(90),
    );
    assert!(status.success(), "harness: {status} {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("harness said {out:?}: {e}"))
}

/// COMMAND reads the terminal: it gets the line, and the run passes.
/// Negative control: without the hand-over it is stopped by SIGTTIN and the
/// harness times out.
#[test]
fn a_command_reads_the_terminal() {
    let r = on_a_terminal("line");
    assert_eq!(r["code"], 0, "{r}");
    let out = r["out"].as_str().unwrap_or("");
    assert!(out.contains("got hello"), "{r}");
    assert!(out.contains("lsbaws audit: PASS"), "{r}");
}

/// ^C on the terminal goes to COMMAND (the foreground job), which dies of
/// it: lsbaws reports and exits 130, its status.
#[test]
fn ctrl_c_on_the_terminal_reaches_the_command() {
    let r = on_a_terminal("ctrl-c");
    assert_eq!(r["code"], 130, "{r}");
    assert!(
        r["out"].as_str().unwrap_or("").contains("killed by SIGINT"),
        "{r}"
    );
}

/// ^Z stops COMMAND and lsbaws with it, as a job; continued, COMMAND gets the
/// terminal back and reads its line.
#[test]
fn ctrl_z_stops_the_job_and_it_continues() {
    let r = on_a_terminal("ctrl-z");
    assert_eq!(r["stopped"], true, "lsbaws did not stop with COMMAND: {r}");
    assert_eq!(r["code"], 0, "{r}");
    assert!(r["out"].as_str().unwrap_or("").contains("got hello"), "{r}");
}

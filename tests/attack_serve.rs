//! Regression tests of the CGI findings of the attack on `lsbaws serve`
//! (/work/notes/attack-serve.md: S1, S3, S6, S10, S11, S12). The programs are
//! tests/cgi/hostile.py: the path names the behaviour, the query a marker that
//! every process it leaves carries ([`Marked`]), which proves what is still
//! running and lets the guard kill (by pid) what a broken build left behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::attack::{Marked, first_line};
use crate::common::*;

fn hostile(extra: &[&str]) -> Server {
    let program = fixture("cgi/hostile.py");
    let mut args = vec!["--quiet", "--cgi", &program];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// `GET /MODE?MARKER`, read to the close.
fn ask(addr: SocketAddr, mode: &str, mark: &Marked) -> String {
    exchange(
        addr,
        format!("GET /{mode}?{} HTTP/1.1\r\n\r\n", mark.0).as_bytes(),
    )
}

fn body(reply: &str) -> &str {
    reply.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Waits for `n` processes with the marker; returns them.
fn await_marked(mark: &Marked, n: usize) -> Vec<i32> {
    assert!(
        eventually(Duration::from_secs(20), || mark.running().len() >= n),
        "expected {n} processes marked {}, found {:?}",
        mark.0,
        mark.running()
    );
    mark.running()
}

/// Asserts that every marked process is gone within `limit`, while the server
/// still runs (the bound is --cgi-timeout, not the server's exit).
fn assert_gone_while_serving(server: &Server, mark: &Marked, limit: Duration, what: &str) {
    assert!(
        eventually(limit, || mark.running().is_empty()),
        "{what}: still running {:?} after {limit:?}",
        mark.running()
    );
    assert!(alive(server.pid()), "{what}: the server is gone");
}

/// S1 (a): a client that reads slowly held the child in `write_all` while the
/// program, which had printed its whole answer and lingered, lived on far past
/// --cgi-timeout (20 minutes at the tester's rate). Here the client never
/// reads; lsbaws-main2 kept the program until the send timeout (60 s).
#[test]
fn s1a_a_slow_reader_does_not_keep_a_lingering_program_past_the_timeout() {
    let server = hostile(&["--cgi-timeout", "2s", "--read-timeout", "60s"]);
    let mark = Marked::new("slowread");
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.addr.into()).expect("connect");
    let mut conn = TcpStream::from(socket);
    conn.write_all(format!("GET /big-linger?{} HTTP/1.1\r\n\r\n", mark.0).as_bytes())
        .expect("request");
    await_marked(&mark, 1);
    assert_gone_while_serving(&server, &mark, Duration::from_secs(15), "slow reader");
    drop(conn);
    drop(server.stop(Duration::from_secs(20)));
}

/// S1 (b): a program that joined the server's process group escaped the
/// group kill; the log said "killed after --cgi-timeout" and the child then
/// sat in `wait()` until shutdown.
#[test]
fn s1b_a_program_in_the_servers_group_is_killed_at_the_timeout() {
    let server = hostile(&["--cgi-timeout", "1s", "--grace", "2s"]);
    let mark = Marked::new("joingroup");
    let reply = ask(server.addr, "join-server-group", &mark);
    assert!(reply.starts_with("HTTP/1.1 504 "), "{reply}");
    assert_gone_while_serving(&server, &mark, Duration::from_secs(10), "joined group");
    let pid = server.pid();
    assert!(
        eventually(Duration::from_secs(10), || children_of(pid).is_empty()),
        "the child is stuck: {:?}",
        children_of(pid)
    );
    let (status, _, err) = server.stop(Duration::from_secs(20));
    assert!(status.success(), "{err}");
    assert!(err.contains("killed after --cgi-timeout"), "{err}");
    mark.assert_none_left("after the server");
}

/// S1 (c): a job the program left in its group was never stopped once the
/// program exited normally: alive past --cgi-timeout and after the server.
/// It is stopped when the program exits (here well before the 30 s timeout).
#[test]
fn s1c_a_job_left_by_a_program_that_exited_ends_with_it() {
    let server = hostile(&["--cgi-timeout", "30s"]);
    let mark = Marked::new("jobleft");
    let reply = ask(server.addr, "job-left", &mark);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert_eq!(body(&reply), "hi\n");
    assert_gone_while_serving(&server, &mark, Duration::from_secs(15), "job left");
    let (status, _, err) = server.stop(Duration::from_secs(20));
    assert!(status.success(), "{err}");
    assert!(
        err.contains("still ran when it exited, and were killed"),
        "{err}"
    );
}

/// S1 (d): a worker that moved to a process group of its own survived the
/// timeout's group kill, and the server.
#[test]
fn s1d_a_worker_in_a_group_of_its_own_ends_at_the_timeout() {
    let server = hostile(&["--cgi-timeout", "1s"]);
    let mark = Marked::new("owngroup");
    let reply = ask(server.addr, "worker-own-group", &mark);
    assert!(reply.starts_with("HTTP/1.1 504 "), "{reply}");
    assert_gone_while_serving(&server, &mark, Duration::from_secs(10), "own group");
    drop(server.stop(Duration::from_secs(20)));
    mark.assert_none_left("after the server");
}

/// A double-forked, setsid'd daemon escaped everything but `--subreaper`; the
/// child is now the subreaper of its program's tree, and stops it when the
/// program exits.
#[test]
fn a_daemon_ends_with_its_program_without_subreaper() {
    let server = hostile(&["--cgi-timeout", "30s"]);
    let mark = Marked::new("daemon");
    let reply = ask(server.addr, "daemon", &mark);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert_gone_while_serving(&server, &mark, Duration::from_secs(15), "daemon");
    drop(server.stop(Duration::from_secs(20)));
}

/// S1 (e): a connection child that did not act on SIGTERM was SIGKILLed at
/// shutdown, and only PDEATHSIG stopped its program: the job the program had
/// started was left running under init. The child is stopped here (SIGSTOP),
/// as the tester forced it.
#[test]
fn s1e_a_child_killed_at_shutdown_leaves_no_cgi_process() {
    let server = hostile(&["--cgi-timeout", "60s", "--grace", "500ms"]);
    let mark = Marked::new("stopped");
    let addr = server.addr;
    let request = format!("GET /group-sleeper?{} HTTP/1.1\r\n\r\n", mark.0);
    let client = std::thread::spawn(move || try_exchange(addr, request.as_bytes()));
    await_marked(&mark, 2);
    let kids = children_of(server.pid());
    assert_eq!(kids.len(), 1, "{kids:?}");
    send_signal(kids[0].0, 19).expect("SIGSTOP the child");
    let pid = server.pid();
    server.guard.signal(15);
    let mut server = server;
    let (status, _, err) = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}: {err}");
    assert!(
        eventually(Duration::from_secs(5), || mark.running().is_empty()),
        "left behind by server {pid}: {:?}",
        mark.running()
    );
    let _ = client.join();
}

/// S11: a job that kept the program's stdout open turned a complete answer
/// into a 504 after --cgi-timeout. The program's exit ends its response.
#[test]
fn s11_a_job_holding_stdout_does_not_turn_an_answer_into_504() {
    let server = hostile(&["--cgi-timeout", "30s", "--grace", "1s"]);
    let mark = Marked::new("holdsout");
    let started = Instant::now();
    let reply = ask(server.addr, "job-holds-stdout", &mark);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert_eq!(body(&reply), "hi\n");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    drop(server.stop(Duration::from_secs(20)));
    mark.assert_none_left("after the server");
}

/// Starts `serve ARGS` with its stderr a pipe that is full and never read (a
/// log consumer that stopped), through python3, which fills the pipe and then
/// execs the server (its pid is the server's).
pub(crate) fn serve_with_full(fd: i32, args: &[&str]) -> Spawned {
    const FILL: &str = r#"
import fcntl, os, sys
r, w = os.pipe()
fcntl.fcntl(w, fcntl.F_SETFL, os.O_NONBLOCK)
for size in (65536, 1):
    try:
        while True:
            os.write(w, b"x" * size)
    except BlockingIOError:
        pass
fcntl.fcntl(w, fcntl.F_SETFL, 0)
os.set_inheritable(r, True)  # a reader that exists and never reads
os.dup2(w, int(sys.argv[1]))
os.execv(sys.argv[2], sys.argv[2:])
"#;
    Spawned::start(
        Command::new(python3())
            .args(["-c", FILL, &fd.to_string(), bin(), "serve"])
            .args(args),
    )
}

/// S3 (1): the program's stderr was the server's raw, blocking fd 2, so a log
/// reader that stopped made every program that logs block: 504s.
#[test]
fn s3_a_program_that_floods_stderr_is_answered_when_nobody_reads_the_log() {
    let program = fixture("cgi/hostile.py");
    let port = unused_port().to_string();
    let bind = format!("127.0.0.1:{port}");
    let server = serve_with_full(
        2,
        &["--bind", &bind, "--cgi", &program, "--cgi-timeout", "5s"],
    );
    let ready = first_line(&server, Duration::from_secs(30));
    let addr = parse_ready(&ready).unwrap_or_else(|| panic!("{ready}"));
    let (reply, took) = try_exchange(addr, b"GET /stderr-spam HTTP/1.1\r\n\r\n");
    assert!(
        reply.starts_with("HTTP/1.1 200 OK\r\n"),
        "after {took:?}: {reply}"
    );
    assert_eq!(body(&reply), "ok\n");
}

/// S3 (2): escape sequences a program wrote to stderr reached the terminal raw.
#[test]
fn s3_a_programs_stderr_is_relayed_escaped() {
    let server = hostile(&[]);
    let reply = exchange(server.addr, b"GET /stderr-escapes HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    let (status, _, err) = server.stop(Duration::from_secs(20));
    assert!(status.success());
    assert_no_raw_controls(err.as_bytes(), "serve's stderr");
    assert!(
        err.contains("said: \\x1b[31mRED\\x1b]0;pwned-title\\x07 \\u{202e}evil \\u{9b}2J"),
        "{err}"
    );
}

/// S10: the program's `Transfer-Encoding: chunked` went out next to our
/// Content-Length (RFC 9112 §6.1 forbids both).
#[test]
fn s10_a_programs_transfer_encoding_is_not_relayed() {
    let server = hostile(&[]);
    let reply = exchange(server.addr, b"GET /transfer-encoding HTTP/1.1\r\n\r\n");
    let head = reply.split_once("\r\n\r\n").map_or("", |(h, _)| h);
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{reply:?}"
    );
    assert!(head.contains("\r\nContent-Length: 12"), "{reply:?}");
    assert_eq!(body(&reply), "hello world\n");
    drop(server.stop(Duration::from_secs(20)));
}

/// S10: `Status: 204` went out with a Content-Length and a body.
#[test]
fn s10_a_204_has_no_body_and_no_length() {
    let server = hostile(&[]);
    let reply = exchange(server.addr, b"GET /status-204 HTTP/1.1\r\n\r\n");
    assert!(
        reply.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{reply:?}"
    );
    assert!(reply.ends_with("\r\n\r\n"), "a body was sent: {reply:?}");
    assert!(!reply.contains("Content-Length"), "{reply:?}");
    drop(server.stop(Duration::from_secs(20)));
}

/// S10: a program killed by a signal mid-output gave a 200 whose length
/// matched the truncated body. Buffered: now a 502 with the reason; streamed
/// (over 16 MiB): chunked, and the last chunk is missing, which the client sees.
#[test]
fn s10_a_program_that_crashes_mid_output_is_not_passed_off_as_whole() {
    let server = hostile(&["--cgi-timeout", "30s"]);
    let reply = exchange(server.addr, b"GET /crash HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 502 "), "{reply:?}");
    let mut conn = TcpStream::connect(server.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    conn.write_all(b"GET /crash-streamed HTTP/1.1\r\n\r\n")
        .expect("request");
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]);
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert!(
        dechunk(&raw[end..]).is_none(),
        "a cut response looks whole ({} bytes)",
        raw.len()
    );
    let (status, _, err) = server.stop(Duration::from_secs(20));
    assert!(status.success());
    assert!(err.contains("killed by signal 11"), "{err}");
}

/// S6 (2): `Vec::with_capacity(Content-Length)` aborted the child (empty
/// reply) when --cgi-max-body let a huge length through. The body now streams.
#[test]
fn s6_a_huge_content_length_is_not_allocated_up_front() {
    let server = hostile(&[
        "--cgi-max-body",
        "18446744073709551615",
        "--read-timeout",
        "2s",
    ]);
    let (reply, took) = try_exchange(
        server.addr,
        b"POST / HTTP/1.1\r\nContent-Length: 100000000000\r\n\r\nabc",
    );
    assert!(
        reply.starts_with("HTTP/1.1 408 ") || reply.starts_with("HTTP/1.1 200 "),
        "after {took:?}: {reply:?}"
    );
    let (status, _, err) = server.stop(Duration::from_secs(20));
    assert!(status.success());
    assert!(
        !err.contains("panicked") && !err.contains("memory allocation"),
        "{err}"
    );
}

/// S6 (1): under RLIMIT_NPROC the body-feeder thread could not start and
/// `thread::spawn` panicked (SIGABRT, empty reply). The server runs as a uid
/// nothing else uses, so the limit counts exactly: server, child, program;
/// a fourth task (the old thread) is refused every time.
#[test]
fn s6_no_helper_thread_to_fail_under_rlimit_nproc() {
    if !is_root() {
        return skip("needs root to run the server as another user (root ignores RLIMIT_NPROC)");
    }
    use std::os::unix::fs::PermissionsExt;
    let uid = 47_113;
    let dir = TempDir::new("nproc-cgi");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = dir.path("lsbaws");
    std::fs::copy(bin(), &copy).expect("copy binary");
    let program = dir.path("hostile.py");
    std::fs::copy(fixture("cgi/hostile.py"), &program).expect("copy program");
    for f in [&copy, &program] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let server = Server::start_with(
        Command::new("setpriv")
            .current_dir(&dir.0)
            .args([&format!("--reuid={uid}"), &format!("--regid={uid}")])
            .args(["--clear-groups", "--", "prlimit", "--nproc=3:3", &copy])
            .args(["serve", "--bind", "127.0.0.1:0", "--cgi", &program]),
    );
    let pid = server.pid();
    for _ in 0..3 {
        let reply = exchange(server.addr, b"GET /plain HTTP/1.1\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply:?}");
        assert_eq!(body(&reply), "mode plain\n");
        assert!(eventually(Duration::from_secs(10), || children_of(pid).is_empty()));
    }
    let (status, _, err) = server.stop(Duration::from_secs(20));
    assert!(status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// S12: in absolute-form the program got `PATH_INFO=http://host:port/path` and
/// the Host header's name; PATH_INFO was not percent-decoded (RFC 3875 §4.1.5).
#[test]
fn s12_absolute_form_and_encoded_paths_give_the_decoded_path() {
    let server = Server::start(&["--quiet", "--cgi", &fixture("cgi/env.py")]);
    let reply = exchange(
        server.addr,
        b"GET http://example.com:8080/x/a%20b%2Fc?q=1%202 HTTP/1.1\r\nHost: other\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    let env: Vec<&str> = body(&reply).lines().collect();
    for want in [
        "PATH_INFO=/x/a b/c",
        "QUERY_STRING=q=1%202",
        "SERVER_NAME=example.com",
    ] {
        assert!(env.contains(&want), "{want} missing: {env:?}");
    }
    let reply = exchange(server.addr, b"GET /a%00b HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    drop(server.stop(Duration::from_secs(20)));
}

/// S1: a server that dies (SIGKILL, the OOM killer) must not leave its CGI
/// trees running: each connection child hears of it (PR_SET_PDEATHSIG
/// SIGTERM) and stops its program's whole tree, here a worker in a group of
/// its own that cleared its own parent-death signal. lsbaws-main2's child
/// went on until --cgi-timeout, and the worker outlived everything.
#[test]
fn s1_a_server_killed_outright_leaves_no_cgi_process() {
    let mut server = hostile(&["--cgi-timeout", "60s"]);
    let mark = Marked::new("serverkilled");
    let addr = server.addr;
    let request = format!("GET /worker-own-group?{} HTTP/1.1\r\n\r\n", mark.0);
    let client = std::thread::spawn(move || try_exchange(addr, request.as_bytes()));
    await_marked(&mark, 2);
    server.guard.signal(9);
    assert!(
        eventually(Duration::from_secs(10), || mark.running().is_empty()),
        "outlived the server: {:?}",
        mark.running()
    );
    let _ = server.wait_exit(Duration::from_secs(20));
    let _ = client.join();
}

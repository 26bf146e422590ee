//! Regression tests of the server findings of the attack on `lsbaws serve`
//! (/work/notes/attack-serve.md: S2, S4, S7, S8, S13-S16) that are not about
//! what a CGI program does: output that cannot be written, what the summary
//! counts, limits, and the request log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::attack_serve::serve_with_full;
use crate::common::*;
use crate::serve_faults::{race_shim, serve_with_race};

/// Waits until something accepts connections on `port`.
fn await_listener(port: u16) {
    assert!(
        eventually(Duration::from_secs(30), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nothing listens on {port}"
    );
}

/// S2: with its stdout a full pipe, serve blocked forever writing the ready
/// line, on a listening socket, and SIGTERM, SIGINT and SIGHUP did nothing.
#[test]
fn s2_a_stop_signal_ends_a_server_whose_ready_line_cannot_be_written() {
    let port = unused_port();
    let bind = format!("127.0.0.1:{port}");
    let mut server = serve_with_full(1, &["--bind", &bind]);
    await_listener(port);
    let sent = Instant::now();
    server.signal(15);
    let status = server
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("serve ignored SIGTERM while announcing itself"));
    assert!(status.success(), "{status}");
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener outlived the server"
    );
}

/// S2: when nobody makes room for the ready line, the server serves anyway
/// after a bounded wait, and says so on stderr.
#[test]
fn s2_an_unwritable_ready_line_is_dropped_and_the_server_serves() {
    let port = unused_port();
    let bind = format!("127.0.0.1:{port}");
    let server = serve_with_full(1, &["--bind", &bind]);
    await_listener(port);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    conn.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("request");
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    assert_eq!(reply, HELLO);
    assert!(
        eventually(Duration::from_secs(5), || String::from_utf8_lossy(
            &server.stderr()
        )
        .contains("unannounced")),
        "{}",
        String::from_utf8_lossy(&server.stderr())
    );
    server.signal(15);
    let (status, _, _) = server.finish(Duration::from_secs(20));
    assert!(status.success(), "{status}");
}

/// S9: a stdout that was already a broken pipe made serve exit 2 ("announcing
/// the server: Broken pipe") instead of serving.
#[test]
fn s9_a_broken_stdout_does_not_stop_the_server_from_serving() {
    let port = unused_port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = Command::new(bin())
        .args(["serve", "--quiet", "--bind", &bind])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take()); // the reader is gone before the ready line
    let stderr = child.stderr.take().expect("stderr");
    let mut guard = ProcGuard::new(child);
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    await_listener(port);
    assert_eq!(
        exchange(
            format!("127.0.0.1:{port}").parse().expect("addr"),
            b"GET / HTTP/1.1\r\n\r\n"
        ),
        HELLO
    );
    guard.signal(15);
    let status = guard
        .wait_timeout(Duration::from_secs(20))
        .expect("serve exits on SIGTERM");
    let err = err.join().expect("stderr");
    assert!(status.success(), "{status}: {err}");
}

/// S8: the error serve prints at exit was a blocking write to stderr: with a
/// full stderr pipe the process hung there forever, deaf to SIGTERM.
#[test]
fn s8_an_error_at_exit_does_not_block_on_a_full_stderr() {
    let mut server = serve_with_full(
        2,
        &[
            "--bind",
            "127.0.0.1:0",
            "--on-eintr",
            "fail",
            "--delay",
            "300ms",
            "--quiet",
        ],
    );
    let ready = crate::attack::first_line(&server, Duration::from_secs(30));
    let addr = parse_ready(&ready).unwrap_or_else(|| panic!("{ready}"));
    assert_eq!(exchange(addr, b"GET / HTTP/1.1\r\n\r\n"), HELLO);
    let status = server
        .wait_timeout(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("serve hangs writing its exit error to a full stderr"));
    assert_eq!(status.code(), Some(2), "{status}");
}

/// A shell that leaves `n` sleeps running as its children and then execs
/// `lsbaws serve ARGS`: processes the server did not fork (foreign), listed
/// in its children file.
fn serve_with_foreign_children(n: usize, args: &[&str]) -> Server {
    let sleeps = "sleep 60 & ".repeat(n);
    Server::start_with(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{sleeps}exec \"$0\" serve --bind 127.0.0.1:0 \"$@\""
            ))
            .arg(bin())
            .args(args),
    )
}

/// S7: `--reaper ignore` counted every process in its children file as its
/// own: processes it did not fork (orphans adopted with --subreaper, children
/// inherited across exec) filled --max-children for good, and the shutdown
/// waited the whole --grace for them.
#[test]
fn s7_ignore_mode_counts_only_the_children_it_forked() {
    let server = serve_with_foreign_children(
        2,
        &[
            "--quiet",
            "--reaper",
            "ignore",
            "--max-children",
            "2",
            "--grace",
            "20s",
        ],
    );
    for i in 0..4 {
        let (reply, took) = try_exchange(server.addr, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(reply, HELLO, "request {i} after {took:?}");
    }
    let started = Instant::now();
    let (status, out, err) = server.stop(Duration::from_secs(60));
    let took = started.elapsed();
    assert!(status.success(), "{err}");
    assert!(
        took < Duration::from_secs(10),
        "the shutdown waited {took:?} of a 20 s grace for processes it did not fork: {out}"
    );
    assert!(
        out.contains("2 foreign processes killed after grace"),
        "{out}"
    );
}

/// S13: a request after empty lines was logged from the start of the buffer
/// (`"????GET /lead HTTP"`) instead of its request line.
#[test]
fn s13_a_request_after_empty_lines_is_logged_by_its_request_line() {
    let server = Server::start(&[]);
    assert_eq!(
        exchange(server.addr, b"\r\n\r\nGET /lead HTTP/1.1\r\n\r\n"),
        HELLO
    );
    let (status, out, _) = server.stop(Duration::from_secs(20));
    assert!(status.success());
    assert!(out.contains("\"GET /lead HTTP/1.1\" 200"), "{out}");
}

/// S14: in a pid namespace of its own without its own /proc, serve read
/// `/proc/1/task/1/children` (its pid there is 1): the host's init's
/// children, whose zombies it reported and whose live ones it waited for
/// (the whole --grace in `ignore` mode). This host's init has children:
/// lsbaws-main2 waits here; a host whose init has none would not show it.
#[test]
fn s14_in_a_pid_namespace_the_server_counts_its_own_children() {
    if !is_root() {
        return skip("needs root for unshare --pid");
    }
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", bin()])
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--reaper",
            "ignore",
            "--grace",
            "20s",
        ])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare");
    let stdout = child.stdout.take().expect("stdout");
    let mut guard = ProcGuard::new(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::BufReader::new(stdout).read_to_string(&mut out);
        let _ = tx.send(out);
    });
    // The server is unshare's child (pid 1 inside).
    let unshare = guard.pid();
    assert!(eventually(Duration::from_secs(30), || !children_of(
        unshare
    )
    .is_empty()));
    let server = children_of(unshare)[0].0;
    assert!(eventually(Duration::from_secs(30), || {
        std::fs::read_link(format!("/proc/{server}/fd/3")).is_ok()
    }));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    send_signal(server, 15).expect("SIGTERM the server");
    let status = guard
        .wait_timeout(Duration::from_secs(60))
        .expect("unshare exits");
    let took = started.elapsed();
    let out = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("0 zombies left"), "{out}");
    assert!(
        took < Duration::from_secs(10),
        "the shutdown waited {took:?} for processes that are not its children: {out}"
    );
}

/// S15: under `--nofile 6` (every descriptor taken once the server is set
/// up) serve printed its ready line and then never accepted anyone. It now
/// says so and exits 2.
#[test]
fn s15_an_open_file_limit_that_leaves_no_descriptor_is_said_at_once() {
    let (status, out, err) = run_bounded(
        Command::new("prlimit").args(["--nofile=6:6", bin(), "serve", "--bind", "127.0.0.1:0"]),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(err.contains("open-file limit"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// S16: `--cgi NAME` where `./NAME` is a directory used the directory (502 on
/// every request) instead of NAME from PATH.
#[test]
fn s16_a_directory_named_like_the_program_does_not_hide_it_in_path() {
    let dir = TempDir::new("cgi-dir");
    std::fs::create_dir(dir.0.join("python3")).expect("mkdir");
    let script = fixture("cgi/env.py");
    let server = Server::start_with(
        Command::new(bin())
            .current_dir(&dir.0)
            .args(["serve", "--quiet", "--bind", "127.0.0.1:0"])
            .args(["--cgi", "python3", "--cgi-arg", &script]),
    );
    let reply = exchange(server.addr, b"GET / HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    let (status, _, err) = server.stop(Duration::from_secs(20));
    assert!(status.success());
    assert!(!err.contains("warning"), "{err}");
}

/// S16: a request line ending in bare CRs can never become valid, yet waited
/// the whole read timeout for a 408.
#[test]
fn s16_bare_crs_are_a_400_at_once() {
    let server = Server::start(&["--quiet", "--read-timeout", "30s"]);
    let (reply, took) = try_exchange(server.addr, b"GET / HTTP/1.1\r\r\r\r");
    assert!(
        reply.starts_with("HTTP/1.1 400 "),
        "after {took:?}: {reply:?}"
    );
    drop(server.stop(Duration::from_secs(20)));
}

/// S15: in `signalfd` mode "peak N live children" counted children that had
/// exited and were not reaped yet (reaping ran every 32 forks or when accept
/// ran dry). The shim makes each accept wait 20 ms, so every child has long
/// exited before the next fork; the peak must say so (lsbaws-main2: 32).
#[test]
fn s15_signalfd_peak_counts_live_children_not_unreaped_exits() {
    let Some(shim) = race_shim() else { return };
    let server = serve_with_race(shim, "accept-slow", &["--quiet", "--reaper", "signalfd"]);
    let replies = burst(server.addr, 40);
    assert!(replies.iter().all(|r| r == HELLO), "{replies:?}");
    let (status, out, _) = server.stop(Duration::from_secs(20));
    assert!(status.success());
    let peak: u64 = out
        .split("peak ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak in {out}"));
    assert!(peak <= 8, "peak {peak} live children, one at a time: {out}");
}

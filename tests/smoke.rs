//! Integration tests of `lsbaws smoke`: the built-in server, servers nobody here
//! wrote, and servers that cannot start.

use std::time::{Duration, Instant};

use crate::common::*;

/// Python's own forking server: ForkingMixIn reaps by polling every 0.5 s, so
/// its zombies are transient and only `--settle` lets it pass. The backlog is
/// raised from socketserver's 5 so the burst does not wait on SYN retransmits.
const PY_FORKING_SERVER: &str = "import http.server, socketserver, sys
class Server(socketserver.ForkingMixIn, http.server.HTTPServer):
    request_queue_size = 1024
Server(('127.0.0.1', int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()";

fn smoke(args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["smoke", "--quiet"];
    argv.extend_from_slice(args);
    let (status, out, err) = lsbaws(&argv, Duration::from_secs(120));
    // Whatever happened, the server smoke started is gone ...
    if let Some(pid) = server_pid(&out) {
        assert!(
            eventually(Duration::from_secs(5), || !alive(pid)),
            "server {pid} outlived smoke"
        );
    }
    // ... and this process has no zombie (other tests' children may be one for
    // an instant between exit and their guard's wait, hence eventually).
    assert!(eventually(Duration::from_secs(5), || zombies_of(
        std::process::id() as i32
    ) == 0));
    (status.code().unwrap_or(-1), out, err)
}

/// The server's pid from smoke's table (`... (pid N)`) or JSON (`"server_pid": N`).
fn server_pid(out: &str) -> Option<i32> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(out) {
        return v["server_pid"].as_i64().map(|p| p as i32);
    }
    let line = out.lines().find(|l| l.starts_with("| server "))?;
    line.rsplit_once("(pid ")?.1.split(')').next()?.parse().ok()
}

/// python3 processes whose command line holds `marker` (smoke's own command
/// line holds it too, as an argument, and must not count).
fn pythons_with(marker: &str) -> Vec<i32> {
    processes_with(marker)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.split(|&b| b == 0)
                    .next()
                    .is_some_and(|arg0| arg0.ends_with(b"python3"))
            })
        })
        .collect()
}

/// Processes whose command line holds `marker`: proof that nothing a test
/// started is still running.
fn processes_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

#[test]
fn builtin_server_passes() {
    let (code, out, err) = smoke(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().last() == Some("PASS"), "{out}");
    assert!(out.contains("128 sent, 128 ok, 0 failed"), "{out}");
    assert!(out.contains("0 in the server's tree"), "{out}");
    assert!(out.contains("exit status 0"), "{out}");
}

/// The article's bug, end to end: one wait per SIGCHLD leaves zombies.
#[test]
fn once_reaper_fails_with_zombies() {
    let dir = std::env::temp_dir().join(format!("lsbaws-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let junit = dir.join("once.xml");
    let junit_arg = junit.to_str().expect("utf-8 path");
    let (code, out, err) = smoke(&[
        "--reaper",
        "once",
        "--max-clients",
        "256",
        "--settle",
        "500ms",
        "--junit",
        junit_arg,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let verdict = out.lines().last().unwrap_or("");
    assert!(
        verdict.starts_with("FAIL: ") && verdict.contains("zombies left"),
        "{out}"
    );
    assert!(!verdict.contains("requests failed"), "{out}");
    // The zombie table lists them.
    assert!(out.contains("| Z "), "{out}");

    let xml = std::fs::read_to_string(&junit).expect("junit file");
    let doc = roxmltree::Document::parse(&xml).expect("junit parses as XML");
    let suite = doc.root_element();
    assert_eq!(suite.tag_name().name(), "testsuite");
    assert_eq!(suite.attribute("tests"), Some("3"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<_> = cases.iter().filter_map(|c| c.attribute("name")).collect();
    assert_eq!(names, ["requests", "zombies", "orphans"]);
    let failed = |name: &str| {
        cases
            .iter()
            .find(|c| c.attribute("name") == Some(name))
            .is_some_and(|c| c.children().any(|n| n.has_tag_name("failure")))
    };
    assert!(
        !failed("requests") && failed("zombies") && !failed("orphans"),
        "{xml}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn none_reaper_fails() {
    let (code, out, _) = smoke(&[
        "--reaper",
        "none",
        "--max-clients",
        "32",
        "--settle",
        "200ms",
        "--json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["pass"], false);
    assert_eq!(v["audit"]["count"], 32);
    assert_eq!(v["blast"]["ok"], 32);
    assert!(
        v["verdict"]
            .as_str()
            .unwrap_or("")
            .starts_with("FAIL: 32 zombies left"),
        "{v}"
    );
}

#[test]
fn json_report_of_a_pass() {
    let (code, out, _) = smoke(&["--max-clients", "16", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["verdict"], "PASS");
    assert_eq!(v["blast"]["connections"], 16);
    assert_eq!(v["audit"]["count"], 0);
    assert!(v["server_pid"].as_u64().unwrap_or(0) > 0);
    assert!(
        v["server_summary"]
            .as_str()
            .unwrap_or("")
            .starts_with("Shutdown: 16 connections served"),
        "{v}"
    );
}

#[test]
fn python_forking_server_passes_thanks_to_settle() {
    let dir = std::env::temp_dir().join(format!("lsbaws-pyserve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("index.html"), "hello\n").expect("index");
    let out = std::process::Command::new(bin())
        .current_dir(&dir)
        .args([
            "smoke",
            "--quiet",
            "--settle",
            "3s",
            "--",
            "python3",
            "-c",
            PY_FORKING_SERVER,
            "{port}",
        ])
        .output()
        .expect("run smoke");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("128 sent, 128 ok"), "{text}");
    assert!(text.contains("200 × 128"), "{text}");
    assert_eq!(zombies_of(std::process::id() as i32), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn python_server_that_never_reaps_fails() {
    let script = fixture("servers/leaky_server.py");
    let (code, out, err) = smoke(&[
        "--max-clients",
        "40",
        "--settle",
        "1s",
        "--",
        "python3",
        &script,
        "{port}",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let verdict = out.lines().last().unwrap_or("");
    // Exactly one per blasted connection: the readiness check connects to nothing.
    assert!(verdict.contains("40 zombies left"), "{out}");
    assert!(
        processes_with(&script).is_empty(),
        "the server outlived smoke"
    );
}

#[test]
fn builtin_server_with_a_wsgi_app_passes() {
    let app = fixture("cgi/wsgi_echo.py");
    let (code, out, err) = smoke(&["--cgi", &app, "--max-clients", "24"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("24 sent, 24 ok"), "{out}");
}

#[test]
fn a_command_that_exits_at_once_is_exit_2() {
    let (code, out, err) = smoke(&["--", "sh", "-c", "echo cannot bind {port} >&2; exit 3"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.starts_with("lsbaws: the server `sh -c "), "{err}");
    assert!(
        err.contains("exited before accepting connections") && err.contains("exit status 3"),
        "{err}"
    );
    assert!(err.contains("cannot bind"), "its stderr is shown: {err}");
}

#[test]
fn a_command_that_never_listens_is_exit_2_after_ready_timeout() {
    let marker = format!("31.{}", std::process::id());
    let started = Instant::now();
    let (code, _, err) = smoke(&[
        "--ready-timeout",
        "1s",
        "--port",
        "9",
        "--",
        "sleep",
        &marker,
    ]);
    let took = started.elapsed();
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("did not accept connections on 127.0.0.1:9 within 1s"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        processes_with(&marker).is_empty(),
        "the server outlived smoke"
    );
}

#[test]
fn bad_usage_is_exit_2() {
    for args in [
        &["--max-clients", "0"][..],
        // Used to reach tokio's builder unchecked and panic.
        &["--threads", "0"],
        &["--threads", "100000"],
        &["--timeout", "0s"],
        &["--", "my-server", "--no-port-placeholder"],
        &["--port", "8080"],
        &["--cgi", "app.py", "--", "srv", "{port}"],
        &["--reaper", "once", "--", "srv", "{port}"],
        &["--port", "0", "--", "srv", "{port}"],
        &["--url", "http://127.0.0.1:8080/"],
        &["--junit", "/nonexistent-dir/x.xml"],
    ] {
        let (code, _, err) = smoke(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

/// A server that writes a byte that is not UTF-8 to its stderr: smoke must keep
/// draining the pipe (a stopped reader would make the server's writes fail).
#[test]
fn a_server_printing_non_utf8_still_passes() {
    let noisy = format!(
        "import sys; sys.stderr.buffer.write(b'caf\\xe9\\n'); sys.stderr.flush()\n{PY_FORKING_SERVER}"
    );
    let dir = std::env::temp_dir().join(format!("lsbaws-noisy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (status, out, err) = run_bounded(
        std::process::Command::new(bin()).current_dir(&dir).args([
            "smoke",
            "--quiet",
            "--max-clients",
            "32",
            "--settle",
            "3s",
            "--",
            "python3",
            "-c",
            &noisy,
            "{port}",
        ]),
        Duration::from_secs(120),
    );
    assert_eq!(status.code(), Some(0), "{out}{err}");
    assert!(out.contains("32 sent, 32 ok"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A launcher that starts the real (leaky) server in the background and exits:
/// the server escapes the launcher's tree. smoke must still audit it (it owns
/// the listening socket), find its zombies, and stop it (smoke is a subreaper).
#[test]
fn a_server_that_daemonizes_is_still_audited_and_stopped() {
    let script = fixture("servers/leaky_server.py");
    // The launcher exits once the daemon listens (read from /proc/net/tcp:
    // a probe connection would cost the leaky server a zombie). A fixed
    // `sleep 1` lost the race on a busy machine, where python takes longer.
    let launcher = format!("(exec python3 {script} {{port}} &); {}", WAIT_LISTEN);
    let (code, out, err) = smoke(&[
        "--max-clients",
        "8",
        "--settle",
        "500ms",
        "--",
        "sh",
        "-c",
        &launcher,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.lines().last().unwrap_or("").contains("8 zombies left"),
        "{out}"
    );
    assert!(
        eventually(Duration::from_secs(5), || processes_with(&script)
            .is_empty()),
        "the daemon outlived smoke"
    );
}

/// smoke killed mid-run (a cancelled CI job): its server must not outlive it,
/// even behind a launcher that does not `exec` it (so SIGTERM to the launcher
/// alone would not reach it).
#[test]
fn killing_smoke_stops_its_server() {
    let marker = format!("lsbaws-orphan-check-{}", std::process::id());
    let program = format!("import sys\n# {marker}\n{PY_FORKING_SERVER}");
    let launcher = "python3 -c \"$1\" {port}; echo done";
    let child = std::process::Command::new(bin())
        .args([
            "smoke",
            "--quiet",
            "--duration",
            "20s",
            "--max-clients",
            "2",
            "--",
            "sh",
            "-c",
            launcher,
            "sh",
            &program,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn smoke");
    let mut guard = ProcGuard::new(child);
    assert!(
        eventually(Duration::from_secs(10), || !pythons_with(&marker)
            .is_empty()),
        "server never started"
    );
    guard.signal(15);
    assert!(
        guard.wait_timeout(Duration::from_secs(10)).is_some(),
        "smoke ignored SIGTERM"
    );
    assert!(
        eventually(Duration::from_secs(10), || pythons_with(&marker).is_empty()),
        "the server outlived smoke"
    );
}

/// A port someone else already listens on: smoke must refuse (exit 2), not blast
/// and audit the other process in the server's place.
#[test]
fn a_port_already_in_use_is_exit_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let (code, out, err) = smoke(&["--port", &port, "--", "python3", "-m", "http.server", &port]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("is not free"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

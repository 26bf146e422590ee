//! `lsbaws blast https://…` against a local rustls server whose CA and
//! certificate are made at test time (rcgen): verified with `--cacert`,
//! refused without it (the `tls_certificate` kind), accepted with
//! `--insecure`; one full handshake per connection unless `--tls-resume`.
//!
//! Must never reach a remote host, or leave a file behind (the PEM files live
//! in a directory removed on drop).

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

use crate::common::listener::*;
use crate::common::*;

/// A CA, a server certificate it signed for 127.0.0.1 and localhost, and a
/// directory holding the CA's PEM (removed on drop). Also used by
/// `merge_attack` for real https reports.
pub(crate) struct Pki {
    dir: PathBuf,
    ca_pem: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    pub(crate) fn new(tag: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("lsbaws test CA {tag}"));
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        let dir = std::env::temp_dir().join(format!(
            "lsbaws-tls-{tag}-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).expect("write CA");
        Pki {
            dir,
            ca_pem,
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    pub(crate) fn ca(&self) -> &str {
        self.ca_pem.to_str().expect("utf-8 path")
    }

    /// A TLS server answering one request per connection with [`HELLO`].
    pub(crate) fn server(&self) -> TestServer {
        self.server_answering(HELLO.as_bytes(), true)
    }

    /// A TLS server answering one request per connection with `response`,
    /// then closing with close_notify, or (`close_notify` false) with a bare
    /// TCP close, as a server that crashed or was cut off does.
    pub(crate) fn server_answering(
        &self,
        response: &'static [u8],
        close_notify: bool,
    ) -> TestServer {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            self.chain.clone(),
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
        .expect("server config");
        let config = Arc::new(config);
        TestServer::start(move |_, conn, _: &AtomicBool| {
            tls_answer(&config, conn, response, close_notify);
        })
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One TLS exchange: handshake, read a request head, answer, close (cleanly
/// with `close_notify`, else the TCP connection alone). Failures (a client
/// that refused the certificate) just end it.
fn tls_answer(
    config: &Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    response: &[u8],
    close_notify: bool,
) {
    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.ends_with(b"\r\n\r\n") && req.len() < 64 * 1024 {
        match std::io::Read::read(&mut tls, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let _ = tls.write_all(response);
    if close_notify {
        tls.conn.send_close_notify();
    }
    let _ = tls.flush();
    // A FIN, after the whole request was read (so never a RST).
    let _ = tls.sock.shutdown(std::net::Shutdown::Write);
}

pub(crate) fn https_url(server: &TestServer) -> String {
    format!("https://{}/hello", server.addr)
}

/// `lsbaws blast URL --json ARGS` with extra environment; (exit, report, stderr).
fn blast_env(url: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["blast", url, "--json"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, out, err) = run_bounded(&mut cmd, RUN_LIMIT);
    let report: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}, stderr {err:?}"));
    (status.code(), report, err)
}

#[test]
fn https_verified_with_cacert_one_full_handshake_per_connection() {
    let pki = Pki::new("ok");
    let server = pki.server();
    let args = [
        "--cacert",
        pki.ca(),
        "--max-clients",
        "4",
        "--max-conns",
        "3",
    ];
    let (code, r, err) = blast_json(&https_url(&server), &args);
    assert_eq!(code, Some(0), "{r} {err}");
    assert_eq!(
        (r["connections"].as_u64(), r["ok"].as_u64()),
        (Some(12), Some(12)),
        "{r}"
    );
    assert_eq!(
        r["tls_handshake_ms"]["count"], 12,
        "a handshake per connection: {r}"
    );
    assert!(r["tls_handshake_ms"]["max"].as_f64() > Some(0.0), "{r}");
    assert_eq!(r["tls_resumed"], 0, "full handshakes by default: {r}");
    assert_eq!(errors_total(&r), 0, "{r}");
    assert_eq!(server.accepted(), 12);
    assert!(err.is_empty(), "{err}");
    // The table has the handshake phase as its own latency row.
    let (status, out, _) = lsbaws(
        &["blast", &https_url(&server), "--cacert", pki.ca()],
        RUN_LIMIT,
    );
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("| tls handshake "), "{out}");
}

#[test]
fn https_with_an_unknown_ca_fails_with_the_certificate_kind() {
    let pki = Pki::new("unknown");
    let server = pki.server();
    let url = https_url(&server);
    // The system's store does not hold the test CA.
    let (code, r, _) = blast_env(&url, &["--max-clients", "3"], &[]);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(errors_of(&r, "tls_certificate"), 3, "{r}");
    assert_eq!(errors_of(&r, "tls_handshake"), 0, "{r}");
    assert_eq!(r["ok"], 0, "{r}");
    // A --cacert naming another CA is no better.
    let other = Pki::new("other");
    let (code, r, _) = blast_env(&url, &["--cacert", other.ca()], &[]);
    assert_eq!(
        (code, errors_of(&r, "tls_certificate")),
        (Some(1), 1),
        "{r}"
    );
    // The system store is what is read without --cacert: with the test CA
    // put there (SSL_CERT_FILE, as OpenSSL reads it), the same run passes.
    let (code, r, _) = blast_env(&url, &[], &[("SSL_CERT_FILE", pki.ca())]);
    assert_eq!((code, r["ok"].as_u64()), (Some(0), Some(1)), "{r}");
}

#[test]
fn https_insecure_passes_and_says_so_once() {
    let pki = Pki::new("insecure");
    let server = pki.server();
    let (code, r, err) = blast_json(&https_url(&server), &["--insecure", "--max-clients", "5"]);
    assert_eq!(code, Some(0), "{r} {err}");
    assert_eq!(r["ok"], 5, "{r}");
    assert_eq!(
        err.lines().filter(|l| l.contains("--insecure")).count(),
        1,
        "{err:?}"
    );
    assert_eq!(err.lines().count(), 1, "{err:?}");
}

#[test]
fn https_tls_resume_resumes_sessions() {
    let pki = Pki::new("resume");
    let server = pki.server();
    let url = https_url(&server);
    let args = ["--cacert", pki.ca(), "--max-conns", "4", "--tls-resume"];
    let (code, r, _) = blast_json(&url, &args);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["tls_handshake_ms"]["count"], 4, "{r}");
    assert!(r["tls_resumed"].as_u64() >= Some(1), "resumed: {r}");
}

#[test]
fn https_against_a_plain_http_server_is_a_handshake_error() {
    let server = TestServer::start(|_, mut conn, _| {
        // An HTTP server reads the ClientHello as a bad request and answers.
        let mut buf = [0u8; 1024];
        let _ = std::io::Read::read(&mut conn, &mut buf);
        let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    });
    let (code, r, _) = blast_json(&https_url(&server), &["--insecure", "--max-clients", "2"]);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(errors_of(&r, "tls_handshake"), 2, "{r}");
    assert_eq!(r["tls_handshake_ms"]["count"], 0, "{r}");
}

#[test]
fn tls_flags_need_https_and_cacert_must_be_readable() {
    for (args, why) in [
        (
            vec!["blast", "http://127.0.0.1:9/", "--insecure"],
            "are for https:// URLs",
        ),
        (
            vec![
                "blast",
                "https://127.0.0.1:9/",
                "--cacert",
                "/nonexistent/ca.pem",
            ],
            "--cacert /nonexistent/ca.pem: cannot read it",
        ),
    ] {
        let (status, out, err) = lsbaws(&args, RUN_LIMIT);
        assert_eq!(status.code(), Some(2), "{args:?}: {out} {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// Attack-4 F7: a response without a length (HTTP/1.0 style, the body ends
/// at the close) cut off by a bare TCP close, no close_notify. Over TLS a
/// cut can be told from an end (rustls reports the missing close_notify as
/// UnexpectedEof; RFC 9112 §9.8): it is a short response, `bad_response`
/// as a body shorter than its Content-Length is, never ok. lsbaws-main4
/// counted 5 of 5 ok (exit 0).
#[test]
fn https_close_delimited_body_cut_without_close_notify_is_bad_response() {
    let pki = Pki::new("cut");
    let server = pki.server_answering(b"HTTP/1.0 200 OK\r\n\r\nHello, Wor", false);
    let args = ["--cacert", pki.ca(), "--max-clients", "5"];
    let (code, r, err) = blast_json(&https_url(&server), &args);
    assert_eq!(code, Some(1), "{r} {err}");
    assert_eq!(r["ok"], 0, "{r}");
    assert_eq!(errors_of(&r, "bad_response"), 5, "{r}");
    assert_eq!(errors_total(&r), 5, "{r}");
    // The same response ended with close_notify is whole: ok.
    let whole = pki.server_answering(b"HTTP/1.0 200 OK\r\n\r\nHello, World!\n", true);
    let (code, r, err) = blast_json(&https_url(&whole), &args);
    assert_eq!((code, r["ok"].as_u64()), (Some(0), Some(5)), "{r} {err}");
}

/// The other side of F7, not to over-correct: most servers close TLS
/// without close_notify, and a response whose end is known (Content-Length,
/// or the last chunk) is whole before that close: ok. A Content-Length body
/// cut short is still `bad_response`.
#[test]
fn https_complete_body_then_close_without_close_notify_is_ok() {
    let pki = Pki::new("eof");
    let args = [
        "--cacert",
        pki.ca(),
        "--max-clients",
        "4",
        "--max-conns",
        "2",
    ];
    for response in [
        HELLO.as_bytes(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n0\r\n\r\n",
        b"HTTP/1.0 204 No Content\r\n\r\n",
    ] {
        let server = pki.server_answering(response, false);
        let (code, r, err) = blast_json(&https_url(&server), &args);
        let shown = String::from_utf8_lossy(response);
        assert_eq!(code, Some(0), "{shown:?}: {r} {err}");
        assert_eq!(r["ok"], 8, "{shown:?}: {r}");
    }
    let short = pki.server_answering(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nHello", false);
    let (code, r, _) = blast_json(&https_url(&short), &args);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(errors_of(&r, "bad_response"), 8, "{r}");
}

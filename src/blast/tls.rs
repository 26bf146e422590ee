//! TLS for `https://` targets (rustls, the ring provider): the client
//! configuration, the handshake, and how its failures are classified.
//!
//! Owns which certificates are trusted (the system store, or `--cacert`
//! alone, or none with `--insecure`), SNI and ALPN, and whether sessions may
//! resume (not by default: a load test of new connections must pay, and make
//! the server pay, a full handshake each). Must never read a file itself (the
//! command hands `--cacert`'s bytes over), nor let a certificate failure pass
//! for a network error.

use std::io;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::report::ErrorKind;

/// What the user asked of TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--cacert`: its name (for messages) and its PEM bytes. When given,
    /// these are the only trusted roots, as with curl.
    pub cacert: Option<(String, Vec<u8>)>,
    /// `--insecure`: no certificate verification at all.
    pub insecure: bool,
    /// `--tls-resume`: let handshakes resume earlier sessions.
    pub resume: bool,
}

/// A ready TLS client for one host.
#[derive(Clone)]
pub struct TlsSetup {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsSetup {
    /// The client for `host` (a name, or an IP literal, which is sent without
    /// SNI as RFC 6066 says).
    pub fn new(host: &str, opts: &TlsOptions) -> anyhow::Result<TlsSetup> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS: no protocol version the crypto provider supports")?;
        let mut config = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(roots(opts.cacert.as_ref())?)
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !opts.resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let server_name = ServerName::try_from(host.to_string())
            .with_context(|| format!("TLS: {host:?} is not a valid server name"))?;
        Ok(TlsSetup {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The handshake on a connected socket; the stream and whether the
    /// session was resumed, or the failure's kind.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<(TlsStream<TcpStream>, bool), ErrorKind> {
        match self.connector.connect(self.server_name.clone(), tcp).await {
            Ok(stream) => {
                let resumed =
                    stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                Ok((stream, resumed))
            }
            Err(e) => Err(handshake_error(&e)),
        }
    }
}

/// The trusted roots: `--cacert`'s certificates, or the system's store.
fn roots(cacert: Option<&(String, Vec<u8>)>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match cacert {
        Some((name, pem)) => {
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.with_context(|| format!("--cacert {name}: bad PEM"))?;
                roots
                    .add(cert)
                    .with_context(|| format!("--cacert {name}: not a usable CA certificate"))?;
                found += 1;
            }
            ensure!(found > 0, "--cacert {name}: no certificate in it");
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _unparsable) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                let why = native
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                bail!(
                    "no system root certificates found{why}: install ca-certificates, \
                     or name a CA with --cacert FILE"
                );
            }
        }
    }
    Ok(roots)
}

/// A failed handshake's kind: the certificate refused, or anything else
/// that broke the handshake. Plain network errors keep their own kinds
/// (a reset is a reset, a full fd table is ours), except a close in the
/// middle, which is how servers refuse a handshake they cannot do.
fn handshake_error(e: &io::Error) -> ErrorKind {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType => ErrorKind::TlsCertificate,
            _ => ErrorKind::TlsHandshake,
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => ErrorKind::TlsHandshake,
        _ => ErrorKind::of_io(e),
    }
}

/// `--insecure`: any certificate is accepted. The handshake's signatures are
/// still checked against the certificate's key (as `curl -k` does): only who
/// the certificate names and who signed it go unverified.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cacert_must_hold_a_certificate() {
        let opts = TlsOptions {
            cacert: Some(("empty.pem".into(), b"no pem here".to_vec())),
            ..TlsOptions::default()
        };
        let err = format!(
            "{:#}",
            TlsSetup::new("localhost", &opts).expect_err("empty")
        );
        assert!(err.contains("--cacert empty.pem: no certificate"), "{err}");
    }

    #[test]
    fn certificate_errors_are_their_own_kind() {
        let cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(handshake_error(&cert), ErrorKind::TlsCertificate);
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert_eq!(handshake_error(&alert), ErrorKind::TlsHandshake);
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(handshake_error(&eof), ErrorKind::TlsHandshake);
        let reset = io::Error::from_raw_os_error(nix::errno::Errno::ECONNRESET as i32);
        assert_eq!(handshake_error(&reset), ErrorKind::Reset);
    }
}

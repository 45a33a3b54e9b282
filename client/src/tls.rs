//! TLS towards the server, verified like SSH verifies hosts: by the certificate's pinned
//! fingerprint, not by names and a chain of authorities (servers make their own
//! certificates). The handshake's signature is still checked, so only the holder of the
//! pinned certificate's key can complete it.

use std::sync::{Arc, Mutex};

use ft_protocol::Fingerprint;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls13_signature, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};
use tokio::net::TcpStream;

/// The client's side of a connection once TLS is up.
pub type TlsStream = tokio_rustls::client::TlsStream<Wire>;

/// The socket beneath TLS: reads go through a buffer, so that one system call takes in
/// several TLS records (rustls asks for one record, 16 KiB, at a time); writes pass
/// straight through.
pub type Wire = tokio::io::BufReader<TcpStream>;

/// Bytes one read of the socket may take in (four full TLS records).
const WIRE_READ_BYTES: usize = 64 * 1024;

/// Why the TLS handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The server presented another certificate than the one pinned. Nothing was sent.
    #[error("the server's certificate is {presented}, not the pinned {expected}")]
    Mismatch {
        /// The fingerprint pinned for the server.
        expected: Fingerprint,
        /// The fingerprint it presented.
        presented: Fingerprint,
    },
    /// The handshake failed for another reason (not TLS, a bad signature, a reset).
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

/// The crypto provider of the client (one, chosen explicitly: rustls refuses to guess when
/// several are compiled in).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Runs the TLS handshake over `tcp`. With `pinned`, a certificate with another fingerprint
/// ends the handshake before any byte of ours is sent; without, any certificate is accepted
/// (trust on first use: the caller records what it saw). Returns the stream and the
/// fingerprint the server presented.
pub async fn connect(
    tcp: TcpStream,
    host: &str,
    pinned: Option<Fingerprint>,
) -> Result<(TlsStream, Fingerprint), TlsError> {
    let verifier = Arc::new(PinnedVerifier {
        pinned,
        presented: Mutex::new(None),
        provider: provider(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|err| TlsError::Handshake(std::io::Error::other(err)))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    // Names are not verified; rustls still wants one (for SNI).
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
        .unwrap_or_else(|_| ServerName::from(std::net::IpAddr::from([127, 0, 0, 1])));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let wire = tokio::io::BufReader::with_capacity(WIRE_READ_BYTES, tcp);
    let result = connector.connect(name, wire).await;
    let presented = *verifier
        .presented
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match (result, presented, pinned) {
        (_, Some(presented), Some(expected)) if !presented.matches(&expected) => {
            Err(TlsError::Mismatch {
                expected,
                presented,
            })
        }
        (Ok(stream), Some(presented), _) => Ok((stream, presented)),
        (Ok(_), None, _) => Err(TlsError::Handshake(std::io::Error::other(
            "the server presented no certificate",
        ))),
        (Err(err), _, _) => Err(TlsError::Handshake(err)),
    }
}

/// Accepts exactly the pinned certificate (or, unpinned, any), and checks the handshake's
/// signature against it like the default verifier does.
#[derive(Debug)]
struct PinnedVerifier {
    pinned: Option<Fingerprint>,
    presented: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_certificate(end_entity.as_ref());
        *self
            .presented
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(presented);
        match self.pinned {
            Some(pinned) if !pinned.matches(&presented) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered, so this is never asked; refuse rather than accept.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

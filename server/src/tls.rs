//! The server's TLS identity: a self-signed certificate made on first start in `DIR/.fts/`
//! (or the operator's own), its fingerprint, and the rustls configuration (TLS 1.3 only).
//!
//! Clients do not check names or a chain: they pin the certificate's fingerprint, like SSH
//! pins host keys. So the made certificate only needs to exist and stay the same.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use ft_protocol::Fingerprint;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

/// File names of the made certificate and key inside the private directory.
pub const CERT_FILE: &str = "cert.pem";
/// See [`CERT_FILE`].
pub const KEY_FILE: &str = "key.pem";

/// Why the TLS identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{path} holds no usable {what} (PEM expected): {cause}")]
    Pem {
        /// Which file.
        path: PathBuf,
        /// A certificate or a private key.
        what: &'static str,
        /// What the parser said.
        cause: String,
    },
    /// Only one of the certificate and the key exists.
    #[error("{present} exists but {missing} does not; remove the first or supply both")]
    HalfIdentity {
        /// The file there.
        present: PathBuf,
        /// The file not there.
        missing: PathBuf,
    },
    /// A new certificate could not be made.
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    /// rustls refused the certificate and key.
    #[error("the certificate and key cannot be used: {0}")]
    Config(rustls::Error),
}

/// The certificate the server presents, and how clients recognise it.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The configuration every connection is accepted with.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate, which clients pin.
    pub fingerprint: Fingerprint,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The crypto provider of the whole server (one, chosen explicitly: rustls refuses to guess
/// when several are compiled in).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsIdentity {
    /// The operator's certificate and key when both are given; otherwise the ones made on an
    /// earlier start in `private_dir`, made now if there are none.
    pub fn load_or_create(
        private_dir: &Path,
        operator: Option<(&Path, &Path)>,
    ) -> Result<Self, TlsError> {
        let (cert_path, key_path) = match operator {
            Some((cert, key)) => (cert.to_path_buf(), key.to_path_buf()),
            None => {
                let cert = private_dir.join(CERT_FILE);
                let key = private_dir.join(KEY_FILE);
                match (cert.exists(), key.exists()) {
                    (false, false) => create_self_signed(&cert, &key)?,
                    (true, false) => return Err(half(cert, key)),
                    (false, true) => return Err(half(key, cert)),
                    (true, true) => {}
                }
                (cert, key)
            }
        };
        let pem = |path: &Path| {
            fs::read(path).map_err(|cause| TlsError::Io {
                action: "read",
                path: path.to_path_buf(),
                cause,
            })
        };
        let cert_pem = pem(&cert_path)?;
        let key_pem = pem(&key_path)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|err| pem_error(&cert_path, "certificate", err))?;
        if certs.is_empty() {
            return Err(pem_error(&cert_path, "certificate", "no CERTIFICATE block"));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|err| pem_error(&key_path, "private key", err))?;
        Self::from_parts(certs, key)
    }

    /// A fresh self-signed identity kept in memory only (tests, tools).
    pub fn ephemeral() -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = generate()?;
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| TlsError::Generate(err.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|err| TlsError::Generate(err.to_string()))?;
        Self::from_parts(certs, key)
    }

    fn from_parts(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let fingerprint = Fingerprint::of_certificate(certs[0].as_ref());
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(TlsError::Config)?;
        Ok(Self {
            config: Arc::new(config),
            fingerprint,
        })
    }
}

fn half(present: PathBuf, missing: PathBuf) -> TlsError {
    TlsError::HalfIdentity { present, missing }
}

fn pem_error(path: &Path, what: &'static str, cause: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what,
        cause: cause.to_string(),
    }
}

/// A self-signed certificate and its key, as PEM.
fn generate() -> Result<(String, String), TlsError> {
    let names = vec!["fts".to_owned(), "localhost".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|err| TlsError::Generate(err.to_string()))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// Makes a certificate and writes it with its key: the key readable by the owner only,
/// each file complete and flushed before it carries its name.
fn create_self_signed(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let (cert_pem, key_pem) = generate()?;
    write_new(key, key_pem.as_bytes(), 0o600)?;
    write_new(cert, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), "made a new self-signed certificate");
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let io = |action: &'static str| {
        move |cause| TlsError::Io {
            action,
            path: path.to_path_buf(),
            cause,
        }
    };
    let temporary = path.with_extension("new");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .map_err(io("create"))?;
    file.write_all(bytes).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    fs::rename(&temporary, path).map_err(io("rename"))?;
    if let Some(folder) = path.parent() {
        fs::File::open(folder)
            .and_then(|folder| folder.sync_all())
            .map_err(io("sync the folder of"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_made_identity_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = TlsIdentity::load_or_create(dir.path(), None).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is the owner's alone");
        let second = TlsIdentity::load_or_create(dir.path(), None).unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        assert!(matches!(
            TlsIdentity::load_or_create(dir.path(), None),
            Err(TlsError::HalfIdentity { .. })
        ));
    }

    #[test]
    fn garbage_files_are_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        fs::write(&cert, b"not pem").unwrap();
        fs::write(&key, b"not pem").unwrap();
        let err = TlsIdentity::load_or_create(dir.path(), Some((&cert, &key))).unwrap_err();
        assert!(err.to_string().contains("c.pem"), "{err}");
    }
}

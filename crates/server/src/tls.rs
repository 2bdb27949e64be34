//! The certificate of `--tls-cert` / `--tls-key`: loaded from PEM, served to every handshake
//! through a resolver whose key can be swapped (SIGHUP), and the rustls configuration around it
//! (aws-lc-rs, TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`).
//!
//! A reload replaces the key that *new* handshakes get; connections already open keep the
//! session they negotiated, so no stream is dropped. A reload that fails (a file half written, a
//! key that does not match) keeps the certificate in use.
//!
//! ```no_run
//! use ssehub_server::tls::{Certificates, TlsFiles};
//!
//! let files = TlsFiles { cert: "cert.pem".into(), key: "key.pem".into() };
//! let certificates = Certificates::load(files)?;
//! let config = certificates.server_config(); // for tokio_rustls::TlsAcceptor
//! // ... later, when the files were renewed:
//! certificates.reload()?;
//! # Ok::<(), ssehub_server::tls::TlsError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocols offered, in order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The two PEM files: the certificate chain (leaf first) and its private key.
///
/// ```
/// let files = ssehub_server::tls::TlsFiles { cert: "cert.pem".into(), key: "key.pem".into() };
/// assert_eq!(files.cert.to_str(), Some("cert.pem"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-cert`: one or more `CERTIFICATE` blocks, the server's own first.
    pub cert: PathBuf,
    /// `--tls-key`: a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key.
    pub key: PathBuf,
}

/// Why a certificate or key could not be used. The message names the flag and the file.
///
/// ```
/// use ssehub_server::tls::{Certificates, TlsFiles};
///
/// let files = TlsFiles { cert: "/nonexistent/cert.pem".into(), key: "/nonexistent/key.pem".into() };
/// let err = Certificates::load(files).unwrap_err();
/// assert!(err.to_string().starts_with("--tls-cert /nonexistent/cert.pem: "), "{err}");
/// assert_eq!(err.flag(), "tls-cert");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("--{flag} {}: {source}", path.display())]
    Read {
        /// `tls-cert` or `tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM block of the kind needed, or a damaged one.
    #[error("--{flag} {}: {message}", path.display())]
    Pem {
        /// `tls-cert` or `tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What was expected and what is wrong.
        message: String,
    },
    /// The key is of a kind rustls cannot sign with, or is not the certificate's.
    #[error("--tls-key {}: {message}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl TlsError {
    /// The setting at fault, as its flag without dashes (`tls-cert` or `tls-key`).
    pub fn flag(&self) -> &'static str {
        match self {
            Self::Read { flag, .. } | Self::Pem { flag, .. } => flag,
            Self::Key { .. } => "tls-key",
        }
    }
}

/// The server's certificate, swappable while serving. Cheap to clone (one `Arc`); every clone
/// serves and reloads the same key.
#[derive(Clone)]
pub struct Certificates {
    shared: Arc<Shared>,
}

struct Shared {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.shared.files)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Reads and checks the certificate and its key.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file that cannot be read, holds no certificate or key, or whose
    /// key is not the certificate's.
    ///
    /// ```no_run
    /// let files = ssehub_server::tls::TlsFiles { cert: "cert.pem".into(), key: "key.pem".into() };
    /// let certificates = ssehub_server::tls::Certificates::load(files)?;
    /// # Ok::<(), ssehub_server::tls::TlsError>(())
    /// ```
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = read_key(&files, &provider)?;
        Ok(Self {
            shared: Arc::new(Shared {
                files,
                provider,
                current: RwLock::new(Arc::new(key)),
            }),
        })
    }

    /// Reads the files again and, if they are good, serves the new certificate to every new
    /// handshake. Connections already open are not touched.
    ///
    /// # Errors
    ///
    /// [`TlsError`] as for [`load`](Self::load); the certificate in use stays.
    ///
    /// ```no_run
    /// # let certificates = ssehub_server::tls::Certificates::load(ssehub_server::tls::TlsFiles { cert: "c".into(), key: "k".into() })?;
    /// if let Err(error) = certificates.reload() {
    ///     eprintln!("keeping the old certificate: {error}");
    /// }
    /// # Ok::<(), ssehub_server::tls::TlsError>(())
    /// ```
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = read_key(&self.shared.files, &self.shared.provider)?;
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(key);
        Ok(())
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.shared.files
    }

    /// The DER of the certificate served now (the leaf), for logs and tests.
    ///
    /// ```no_run
    /// # let certificates = ssehub_server::tls::Certificates::load(ssehub_server::tls::TlsFiles { cert: "c".into(), key: "k".into() })?;
    /// let leaf = certificates.current_leaf();
    /// # Ok::<(), ssehub_server::tls::TlsError>(())
    /// ```
    pub fn current_leaf(&self) -> CertificateDer<'static> {
        let current = self.current();
        current
            .cert
            .first()
            .cloned()
            .unwrap_or_else(|| CertificateDer::from(Vec::new()))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(
            &self
                .shared
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The rustls server configuration: this certificate (through the swappable resolver), no
    /// client certificates, TLS 1.2 and 1.3 with aws-lc-rs, ALPN `h2` and `http/1.1`.
    ///
    /// ```no_run
    /// # let certificates = ssehub_server::tls::Certificates::load(ssehub_server::tls::TlsFiles { cert: "c".into(), key: "k".into() })?;
    /// let acceptor = tokio_rustls::TlsAcceptor::from(certificates.server_config());
    /// # Ok::<(), ssehub_server::tls::TlsError>(())
    /// ```
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let builder =
            rustls::ServerConfig::builder_with_provider(Arc::clone(&self.shared.provider))
                .with_safe_default_protocol_versions();
        let mut config = match builder {
            Ok(builder) => builder
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(self.clone())),
            // The default versions are always in the default provider; unreachable in practice.
            Err(error) => unreachable_versions(&error),
        };
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

#[cold]
fn unreachable_versions(error: &rustls::Error) -> ! {
    panic!("aws-lc-rs supports no default TLS version: {error}")
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Both files, parsed and checked against each other.
fn read_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(&files.cert)?;
    let key_pem = read("tls-key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::Pem {
        flag: "tls-key",
        path: files.key.clone(),
        message: match error {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY block (PKCS#8, RSA or EC) in PEM form".to_owned()
            }
            other => format!("not a PEM private key: {other}"),
        },
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => TlsError::Key {
            path: files.key.clone(),
            message: format!(
                "this key is not the one of the certificate in {}",
                files.cert.display()
            ),
        },
        rustls::Error::InvalidCertificate(error) => TlsError::Pem {
            flag: "tls-cert",
            path: files.cert.clone(),
            message: format!("the first certificate cannot be read: {error:?}"),
        },
        other => TlsError::Key {
            path: files.key.clone(),
            message: format!("cannot sign with this key: {other}"),
        },
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read("tls-cert", path)?;
    let bad = |message: String| TlsError::Pem {
        flag: "tls-cert",
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(format!("a CERTIFICATE block is damaged: {error}")))?;
    if chain.is_empty() {
        return Err(bad("no CERTIFICATE block in PEM form".to_owned()));
    }
    Ok(chain)
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

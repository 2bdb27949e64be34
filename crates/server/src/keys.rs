//! The secrets `serve` makes for itself when none is configured: the publisher key and the
//! subscriber-token secret, each kept in a file of the data directory (mode 0600) so that a
//! restart keeps them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The publisher key's file in the data directory.
pub const PUBLISHER_KEY_FILE: &str = "publisher.key";
/// The HS256 secret's file in the data directory.
pub const JWT_SECRET_FILE: &str = "jwt.secret";

/// A secret read from, or just written to, a file of the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The secret.
    pub secret: String,
    /// Its file.
    pub path: PathBuf,
    /// Whether it was made now (so it is printed once, now).
    pub created: bool,
}

/// Why a secret could not be read or kept.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}; check the permissions of --data-dir, or give the secret with its flag", path.display())]
pub struct KeyError {
    /// The file.
    pub path: PathBuf,
    /// The failure.
    #[source]
    pub source: std::io::Error,
}

/// Reads the secret in `dir/name`, or makes a random one (32 bytes, hex) and writes it there,
/// readable by the owner only.
///
/// # Errors
///
/// [`KeyError`] when the directory cannot be made or the file read or written, or the OS has no
/// randomness to give.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("ssehub-keys-doc-{}", std::process::id()));
/// let first = ssehub_server::keys::load_or_create(&dir, "k")?;
/// let again = ssehub_server::keys::load_or_create(&dir, "k")?;
/// assert!(first.created && !again.created);
/// assert_eq!(first.secret, again.secret);
/// assert_eq!(first.secret.len(), 64);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), ssehub_server::keys::KeyError>(())
/// ```
pub fn load_or_create(dir: &Path, name: &str) -> Result<Stored, KeyError> {
    let path = dir.join(name);
    let error = |source| KeyError {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            return Ok(Stored {
                secret: text.trim().to_owned(),
                path,
                created: false,
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(e)),
    }
    std::fs::create_dir_all(dir).map_err(error)?;
    let secret = random_hex(32).map_err(error)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(error)?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(error)?;
    Ok(Stored {
        secret,
        path,
        created: true,
    })
}

/// `bytes` random bytes from the OS, as lowercase hex.
///
/// ```
/// let key = ssehub_server::keys::random_hex(16)?;
/// assert_eq!(key.len(), 32);
/// assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// When the OS has no randomness to give.
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(std::io::Error::other)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

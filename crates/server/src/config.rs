//! The configuration of `ssehub serve`: every setting from a flag, an `SSEHUB_*` variable or
//! the TOML file given with `--config`, in that order of precedence, then checked together.
//!
//! [`Settings`] is what one source says (every field optional); [`Settings::over`] layers two
//! sources; [`Config::from_settings`] fills in the defaults and refuses what cannot work, with
//! an error that names the setting.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tls::{Certificates, TlsError, TlsFiles};
use crate::units::{Size, Span};

/// Where the history is kept: `disk`, `memory`, or `redis://HOST[:PORT][/DB]`.
///
/// ```
/// use ssehub_server::config::StoreKind;
/// assert_eq!("disk".parse::<StoreKind>()?, StoreKind::Disk);
/// assert_eq!(
///     "redis://10.0.0.5:6379/2".parse::<StoreKind>()?,
///     StoreKind::Redis("redis://10.0.0.5:6379/2".into())
/// );
/// assert!("redis://".parse::<StoreKind>().is_err());
/// assert!("postgres://x".parse::<StoreKind>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StoreKind {
    /// One file in the data directory (redb): history survives restarts.
    Disk,
    /// In the process: history lasts as long as it runs.
    Memory,
    /// A Redis shared by several `serve` nodes (this URL): they behave as one hub.
    Redis(String),
}

impl std::str::FromStr for StoreKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "disk" => return Ok(Self::Disk),
            "memory" => return Ok(Self::Memory),
            _ => {}
        }
        let Some(rest) = text.strip_prefix("redis://") else {
            return Err(format!(
                "{text:?} is none of disk, memory, redis://HOST[:PORT][/DB]"
            ));
        };
        // [[USER]:PASSWORD@]HOST[:PORT][/DB]
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        let host_port = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host_port.starts_with('[') => {
                (host, Some(port))
            }
            _ => (host_port, None),
        };
        if host.is_empty() {
            return Err(format!("{text}: no host (redis://HOST[:PORT][/DB])"));
        }
        if let Some(port) = port
            && port.parse::<u16>().map_or(true, |port| port == 0)
        {
            return Err(format!("{text}: {port:?} is not a port"));
        }
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(format!("{text}: {db:?} is not a database number"));
        }
        Ok(Self::Redis(text.to_owned()))
    }
}

impl TryFrom<String> for StoreKind {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl StoreKind {
    /// As `--store` takes it, a password in a Redis URL masked.
    ///
    /// ```
    /// use ssehub_server::config::StoreKind;
    /// let store = StoreKind::Redis("redis://:hunter2@db:6379".into());
    /// assert_eq!(store.shown(), "redis://***@db:6379");
    /// ```
    pub fn shown(&self) -> String {
        match self {
            Self::Disk => "disk".to_owned(),
            Self::Memory => "memory".to_owned(),
            Self::Redis(url) => match url.rsplit_once('@') {
                Some((_, host)) => format!("redis://***@{host}"),
                None => url.clone(),
            },
        }
    }
}

/// What the hub does with a client whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SlowClient {
    /// Hold its events a while (`slow-client-timeout` × `slow-client-retries`), then give up on
    /// them. With a store the client is cut off instead and resumes from the history.
    Wait,
    /// Cut the connection at once; the client resumes from the history.
    Disconnect,
}

/// One source's settings: each field is `None` where that source says nothing.
///
/// The same struct is read from the command line and the environment (clap) and from the TOML
/// file (serde, kebab-case keys, unknown keys refused).
///
/// ```
/// use ssehub_server::config::Settings;
///
/// let file: Settings = toml::from_str("listen = \"127.0.0.1:9000\"\nheartbeat = \"10s\"")?;
/// let flags = Settings { heartbeat: Some("5s".parse()?), ..Settings::default() };
/// let merged = flags.over(file);
/// assert_eq!(merged.listen, Some("127.0.0.1:9000".parse()?));
/// assert_eq!(merged.heartbeat, Some("5s".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SSEHUB_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,

    /// Directory of the history file and the generated keys [default: the user's data
    /// directory, e.g. ~/.local/share/ssehub].
    #[arg(long, env = "SSEHUB_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where the history is kept: `disk`, `memory`, or `redis://HOST[:PORT][/DB]` to run several
    /// nodes as one hub [default: disk].
    #[arg(long, env = "SSEHUB_STORE", value_name = "STORE")]
    pub store: Option<StoreKind>,

    /// Prefix of the Redis keys with --store redis://, so that several hubs can share one
    /// Redis [default: ssehub].
    #[arg(long, env = "SSEHUB_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,

    /// Events of history to keep [default: 1000000].
    #[arg(long, env = "SSEHUB_RETENTION_EVENTS", value_name = "N")]
    pub retention_events: Option<u64>,

    /// How long history is kept [default: 24h].
    #[arg(long, env = "SSEHUB_RETENTION_AGE", value_name = "DURATION")]
    pub retention_age: Option<Span>,

    /// Bytes of history to keep [default: 1GiB].
    #[arg(long, env = "SSEHUB_RETENTION_BYTES", value_name = "SIZE")]
    pub retention_bytes: Option<Size>,

    /// The key publishers send as `Authorization: Bearer KEY` to `POST /push` [default: one is
    /// generated, kept in the data directory and printed once].
    #[arg(
        long,
        env = "SSEHUB_PUBLISHER_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub publisher_key: Option<String>,

    /// Shared secret of HS256 subscriber tokens (at least 32 bytes) [default: one is generated
    /// and kept in the data directory, unless --jwt-public-key is given].
    #[arg(
        long,
        env = "SSEHUB_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// PEM file of the public key of RS256 or ES256 subscriber tokens (instead of a secret).
    #[arg(long, env = "SSEHUB_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// Name of the cookie that may carry a subscriber token [default: ssehub_token].
    #[arg(long, env = "SSEHUB_JWT_COOKIE", value_name = "NAME")]
    pub jwt_cookie: Option<String>,

    /// Tokens must have this `iss` claim.
    #[arg(long, env = "SSEHUB_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,

    /// Tokens must have this `aud` claim.
    #[arg(long, env = "SSEHUB_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,

    /// Let subscribers without a token in, each under a random uid [default: false].
    #[arg(long, env = "SSEHUB_ALLOW_ANONYMOUS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_anonymous: Option<bool>,

    /// Topics (or `prefix*` patterns) anonymous subscribers may ask for; repeatable.
    #[arg(
        long = "anonymous-topic",
        env = "SSEHUB_ANONYMOUS_TOPICS",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub anonymous_topics: Vec<String>,

    /// Let anyone push without a key. Only for a hub no one else can reach [default: false].
    #[arg(long, env = "SSEHUB_ALLOW_ANONYMOUS_PUBLISH", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_anonymous_publish: Option<bool>,

    /// An origin browsers may call the hub from (`https://app.example`), or `*` for any
    /// (then without cookies); repeatable. CORS is off until one is given.
    #[arg(
        long = "cors-origin",
        env = "SSEHUB_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub cors_origins: Vec<String>,

    /// Do not serve the live page at `GET /` (its charts, test-push form and event log)
    /// [default: false].
    #[arg(long, env = "SSEHUB_NO_UI", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub no_ui: Option<bool>,

    /// Open connections of every kind at most [default: from the open-file limit].
    #[arg(long, env = "SSEHUB_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Event streams at most [default: from the open-file limit].
    #[arg(long, env = "SSEHUB_MAX_STREAMS", value_name = "N")]
    pub max_streams: Option<usize>,

    /// Event streams per uid at most [default: 64].
    #[arg(long, env = "SSEHUB_MAX_STREAMS_PER_UID", value_name = "N")]
    pub max_streams_per_uid: Option<usize>,

    /// Largest `POST /push` body [default: 2MiB].
    #[arg(long, env = "SSEHUB_MAX_PUSH_BYTES", value_name = "SIZE")]
    pub max_push_bytes: Option<Size>,

    /// Largest data of one event [default: 1MiB].
    #[arg(long, env = "SSEHUB_MAX_EVENT_BYTES", value_name = "SIZE")]
    pub max_event_bytes: Option<Size>,

    /// Events queued per connection at most [default: 256].
    #[arg(long, env = "SSEHUB_BUFFER_EVENTS", value_name = "N")]
    pub buffer_events: Option<usize>,

    /// Bytes queued per connection at most [default: 1MiB].
    #[arg(long, env = "SSEHUB_BUFFER_BYTES", value_name = "SIZE")]
    pub buffer_bytes: Option<Size>,

    /// Comment sent on an idle stream this often; 0 for none [default: 30s].
    #[arg(long, env = "SSEHUB_HEARTBEAT", value_name = "DURATION")]
    pub heartbeat: Option<Span>,

    /// What to do with a client whose queue is full [default: wait].
    #[arg(long, env = "SSEHUB_SLOW_CLIENT", value_enum)]
    pub slow_client: Option<SlowClient>,

    /// One wait for room under `--slow-client wait` [default: 5s].
    #[arg(long, env = "SSEHUB_SLOW_CLIENT_TIMEOUT", value_name = "DURATION")]
    pub slow_client_timeout: Option<Span>,

    /// Waits before an event is given up under `--slow-client wait` [default: 3].
    #[arg(long, env = "SSEHUB_SLOW_CLIENT_RETRIES", value_name = "N")]
    pub slow_client_retries: Option<u32>,

    /// A stream whose client takes nothing for this long is dropped [default: 30s].
    #[arg(long, env = "SSEHUB_WRITE_TIMEOUT", value_name = "DURATION")]
    pub write_timeout: Option<Span>,

    /// A peer that stops answering at the TCP level is dropped after this; 0 for the kernel's
    /// default [default: 60s].
    #[arg(long, env = "SSEHUB_DEAD_PEER_TIMEOUT", value_name = "DURATION")]
    pub dead_peer_timeout: Option<Span>,

    /// PEM file of the TLS certificate chain (the server's first): serve HTTPS, HTTP/2 and
    /// HTTP/1.1, instead of cleartext HTTP/1.1. Reloaded on SIGHUP. Needs --tls-key.
    #[arg(long, env = "SSEHUB_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the TLS certificate's private key (PKCS#8, RSA or EC). Reloaded on SIGHUP.
    #[arg(long, env = "SSEHUB_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// A TLS handshake not done within this is dropped [default: 10s].
    #[arg(long, env = "SSEHUB_TLS_HANDSHAKE_TIMEOUT", value_name = "DURATION")]
    pub tls_handshake_timeout: Option<Span>,

    /// On SIGINT/SIGTERM, end streams without the `close` event, so clients reconnect and
    /// resume (a restart or a rolling deploy) [default: false].
    #[arg(long, env = "SSEHUB_RESTART", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub restart: Option<bool>,
}

impl Settings {
    /// These settings, with `lower`'s wherever these say nothing.
    ///
    /// ```
    /// use ssehub_server::config::Settings;
    ///
    /// let high = Settings { restart: Some(true), ..Settings::default() };
    /// let low = Settings { restart: Some(false), retention_events: Some(5), ..Settings::default() };
    /// let merged = high.over(low);
    /// assert_eq!((merged.restart, merged.retention_events), (Some(true), Some(5)));
    /// ```
    #[must_use]
    pub fn over(self, lower: Self) -> Self {
        macro_rules! pick {
            ($($field:ident),* ; $($list:ident),*) => {
                Self {
                    $($field: self.$field.or(lower.$field),)*
                    $($list: if self.$list.is_empty() { lower.$list } else { self.$list },)*
                }
            };
        }
        pick!(
            listen, no_ui, data_dir, store, redis_prefix, retention_events, retention_age,
            retention_bytes,
            publisher_key, jwt_secret, jwt_public_key, jwt_cookie, jwt_issuer, jwt_audience,
            allow_anonymous, allow_anonymous_publish, max_connections, max_streams,
            max_streams_per_uid, max_push_bytes, max_event_bytes, buffer_events, buffer_bytes,
            heartbeat, slow_client, slow_client_timeout, slow_client_retries, write_timeout,
            dead_peer_timeout, tls_cert, tls_key, tls_handshake_timeout, restart;
            anonymous_topics, cors_origins
        )
    }

    /// Reads the TOML file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::File`] when it cannot be read, or names an unknown key or a bad value
    /// (the message gives the line).
    ///
    /// ```
    /// let err = ssehub_server::config::Settings::from_file("/nonexistent/ssehub.toml".as_ref()).unwrap_err();
    /// assert!(err.to_string().starts_with("--config /nonexistent/ssehub.toml: "));
    /// ```
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError::File {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        toml::from_str(&text).map_err(|e| error(e.to_string().trim_end().to_owned()))
    }
}

/// The default address: this machine only, until told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default history: a million events, a day, a GiB, whichever is reached first.
pub const DEFAULT_RETENTION_EVENTS: u64 = 1_000_000;
/// See [`DEFAULT_RETENTION_EVENTS`].
pub const DEFAULT_RETENTION_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// See [`DEFAULT_RETENTION_EVENTS`].
pub const DEFAULT_RETENTION_BYTES: u64 = 1 << 30;
/// The default subscriber-token cookie.
pub const DEFAULT_JWT_COOKIE: &str = "ssehub_token";
/// The default largest push body.
pub const DEFAULT_MAX_PUSH_BYTES: u64 = 2 << 20;
/// The default largest event data.
pub const DEFAULT_MAX_EVENT_BYTES: u64 = 1 << 20;
/// The default cap on streams per uid (a user's tabs and devices).
pub const DEFAULT_MAX_STREAMS_PER_UID: usize = 64;
/// The default time a TLS handshake may take.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How subscriber tokens are verified.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenKey {
    /// HS256 with this secret; `generated` if it was made and stored by `serve`.
    Secret {
        /// The secret's bytes.
        secret: String,
        /// Whether `serve` generated it (and stored it in the data directory).
        generated: bool,
    },
    /// RS256 or ES256 with the public key in this PEM file.
    PublicKey(PathBuf),
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret { generated, .. } => f
                .debug_struct("Secret")
                .field("secret", &"***")
                .field("generated", generated)
                .finish(),
            Self::PublicKey(path) => f.debug_tuple("PublicKey").field(path).finish(),
        }
    }
}

/// The effective configuration: every setting resolved and checked.
///
/// ```
/// use ssehub_server::config::{Config, Settings};
///
/// let settings = Settings { store: Some(ssehub_server::config::StoreKind::Memory), ..Settings::default() };
/// let config = Config::from_settings(settings)?;
/// assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
/// # Ok::<(), ssehub_server::config::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `--listen`.
    pub listen: SocketAddr,
    /// `--data-dir`, resolved (also with `--store memory`, for the generated keys).
    pub data_dir: PathBuf,
    /// `--store`.
    pub store: StoreKind,
    /// `--redis-prefix`.
    pub redis_prefix: String,
    /// `--retention-events`.
    pub retention_events: u64,
    /// `--retention-age`.
    pub retention_age: Duration,
    /// `--retention-bytes`.
    pub retention_bytes: u64,
    /// `--publisher-key`; `None` until [`crate::keys`] generates or loads one.
    pub publisher_key: Option<String>,
    /// `--jwt-secret` / `--jwt-public-key`; `None` until generated, or when neither is given
    /// and anonymous subscribers are allowed.
    pub token_key: Option<TokenKey>,
    /// `--jwt-cookie`.
    pub jwt_cookie: String,
    /// `--jwt-issuer`.
    pub jwt_issuer: Option<String>,
    /// `--jwt-audience`.
    pub jwt_audience: Option<String>,
    /// `--allow-anonymous`.
    pub allow_anonymous: bool,
    /// `--anonymous-topic`.
    pub anonymous_topics: Vec<String>,
    /// `--allow-anonymous-publish`.
    pub allow_anonymous_publish: bool,
    /// `--cors-origin`.
    pub cors_origins: Vec<String>,
    /// Not `--no-ui`: the live page is served at `GET /`.
    pub ui: bool,
    /// `--max-connections` (`None`: the server's default).
    pub max_connections: Option<usize>,
    /// `--max-streams` (`None`: the hub's default).
    pub max_streams: Option<usize>,
    /// `--max-streams-per-uid`.
    pub max_streams_per_uid: usize,
    /// `--max-push-bytes`.
    pub max_push_bytes: usize,
    /// `--max-event-bytes`.
    pub max_event_bytes: usize,
    /// `--buffer-events`.
    pub buffer_events: usize,
    /// `--buffer-bytes`.
    pub buffer_bytes: usize,
    /// `--heartbeat` (`None`: off).
    pub heartbeat: Option<Duration>,
    /// `--slow-client`.
    pub slow_client: SlowClient,
    /// `--slow-client-timeout`.
    pub slow_client_timeout: Duration,
    /// `--slow-client-retries`.
    pub slow_client_retries: u32,
    /// `--write-timeout`.
    pub write_timeout: Duration,
    /// `--dead-peer-timeout` (`None`: the kernel's).
    pub dead_peer_timeout: Option<Duration>,
    /// `--tls-cert` and `--tls-key` (`None`: cleartext HTTP/1.1).
    pub tls: Option<TlsFiles>,
    /// `--tls-handshake-timeout`.
    pub tls_handshake_timeout: Duration,
    /// `--restart`.
    pub restart: bool,
}

/// Why the configuration was refused. Each message names the setting as a flag (its variable
/// and TOML key are the same name in `SSEHUB_UPPER_CASE` and `kebab-case`).
///
/// ```
/// use ssehub_server::config::{Config, Settings};
///
/// let settings = Settings { jwt_secret: Some("short".into()), ..Settings::default() };
/// let err = Config::from_settings(settings).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "--jwt-secret (SSEHUB_JWT_SECRET): 5 bytes is too short for HS256; use at least 32 random bytes"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting's value cannot work.
    #[error("--{setting} ({}): {message}", env_name(setting))]
    Invalid {
        /// The setting, as its flag without dashes.
        setting: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// The `--config` file could not be read or parsed.
    #[error("--config {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line, for a parse error).
        message: String,
    },
}

impl From<TlsError> for ConfigError {
    /// The error as the setting's: `--tls-cert (SSEHUB_TLS_CERT): FILE: what is wrong`.
    fn from(error: TlsError) -> Self {
        let setting = error.flag();
        let text = error.to_string();
        let prefix = format!("--{setting} ");
        let message = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
        invalid(setting, message)
    }
}

/// `jwt-secret` → `SSEHUB_JWT_SECRET`; the repeatable flags' variables hold a list.
fn env_name(setting: &str) -> String {
    let name = match setting {
        "cors-origin" => "cors-origins",
        "anonymous-topic" => "anonymous-topics",
        other => other,
    };
    format!("SSEHUB_{}", name.replace('-', "_").to_ascii_uppercase())
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

impl Config {
    /// Fills in the defaults and checks the settings together.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the first setting that cannot work.
    ///
    /// ```
    /// use ssehub_server::config::{Config, Settings};
    ///
    /// let settings = Settings { cors_origins: vec!["app.example".into()], ..Settings::default() };
    /// let err = Config::from_settings(settings).unwrap_err();
    /// assert!(err.to_string().starts_with("--cors-origin (SSEHUB_CORS_ORIGINS): "), "{err}");
    /// ```
    pub fn from_settings(settings: Settings) -> Result<Self, ConfigError> {
        let listen = match settings.listen {
            Some(listen) => listen,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| invalid("listen", "the default address does not parse"))?,
        };
        let data_dir = match settings.data_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(invalid("data-dir", "empty; give a directory"));
            }
            Some(dir) => dir,
            None => default_data_dir().ok_or_else(|| {
                invalid(
                    "data-dir",
                    "no per-user data directory is known here (no HOME); give one, or --store memory",
                )
            })?,
        };
        let retention_events = settings
            .retention_events
            .unwrap_or(DEFAULT_RETENTION_EVENTS);
        if retention_events == 0 {
            return Err(invalid(
                "retention-events",
                "0 would keep no history; give at least 1",
            ));
        }
        let retention_age = settings
            .retention_age
            .map_or(DEFAULT_RETENTION_AGE, |s| s.0);
        if retention_age.is_zero() {
            return Err(invalid("retention-age", "0 would keep no history"));
        }
        let retention_bytes = settings
            .retention_bytes
            .map_or(DEFAULT_RETENTION_BYTES, |s| s.0);
        if retention_bytes < 4096 {
            return Err(invalid(
                "retention-bytes",
                format!("{retention_bytes} bytes would hardly hold an event; give at least 4KiB"),
            ));
        }
        if let Some(key) = &settings.publisher_key
            && key.trim().len() < 16
        {
            return Err(invalid(
                "publisher-key",
                format!(
                    "{} characters is too short to guess-proof; use at least 16 random characters (or omit it to have one generated)",
                    key.trim().len()
                ),
            ));
        }
        let token_key = match (settings.jwt_secret, settings.jwt_public_key) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "jwt-public-key",
                    "given together with --jwt-secret; tokens are verified with one or the other",
                ));
            }
            (Some(secret), None) if secret.len() < 32 => {
                return Err(invalid(
                    "jwt-secret",
                    format!(
                        "{} bytes is too short for HS256; use at least 32 random bytes",
                        secret.len()
                    ),
                ));
            }
            (Some(secret), None) => Some(TokenKey::Secret {
                secret,
                generated: false,
            }),
            (None, Some(path)) => {
                if !path.is_file() {
                    return Err(invalid(
                        "jwt-public-key",
                        format!("{} is not a readable file", path.display()),
                    ));
                }
                Some(TokenKey::PublicKey(path))
            }
            (None, None) => None,
        };
        let jwt_cookie = settings
            .jwt_cookie
            .unwrap_or_else(|| DEFAULT_JWT_COOKIE.to_owned());
        if jwt_cookie.is_empty()
            || !jwt_cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "jwt-cookie",
                format!("{jwt_cookie:?} is not a cookie name (letters, digits, - _ .)"),
            ));
        }
        for pattern in &settings.anonymous_topics {
            let name = pattern.strip_suffix('*').unwrap_or(pattern);
            if name.is_empty() && pattern != "*" || name.chars().any(char::is_control) {
                return Err(invalid(
                    "anonymous-topic",
                    format!("{pattern:?} is not a topic or a prefix* pattern"),
                ));
            }
        }
        for origin in &settings.cors_origins {
            check_origin(origin).map_err(|message| invalid("cors-origin", message))?;
        }
        if settings.cors_origins.len() > 1 && settings.cors_origins.iter().any(|o| o == "*") {
            return Err(invalid(
                "cors-origin",
                "* (any origin, without cookies) together with named origins; give one or the other",
            ));
        }
        let positive = |setting, value: Option<usize>| match value {
            Some(0) => Err(invalid(
                setting,
                "0 would refuse everything; give at least 1",
            )),
            other => Ok(other),
        };
        let max_connections = positive("max-connections", settings.max_connections)?;
        let max_streams = positive("max-streams", settings.max_streams)?;
        let max_streams_per_uid = positive("max-streams-per-uid", settings.max_streams_per_uid)?
            .unwrap_or(DEFAULT_MAX_STREAMS_PER_UID);
        let buffer_events = positive("buffer-events", settings.buffer_events)?.unwrap_or(256);
        let size = |setting, value: Option<Size>, default: u64, least: u64| {
            let bytes = value.map_or(default, |s| s.0);
            if bytes < least {
                return Err(invalid(
                    setting,
                    format!("{bytes} bytes is too small; give at least {least}"),
                ));
            }
            usize::try_from(bytes).map_err(|_| invalid(setting, "too large for this machine"))
        };
        let max_push_bytes = size(
            "max-push-bytes",
            settings.max_push_bytes,
            DEFAULT_MAX_PUSH_BYTES,
            256,
        )?;
        let max_event_bytes = size(
            "max-event-bytes",
            settings.max_event_bytes,
            DEFAULT_MAX_EVENT_BYTES,
            1,
        )?;
        let buffer_bytes = size("buffer-bytes", settings.buffer_bytes, 1 << 20, 1024)?;
        if max_event_bytes > max_push_bytes {
            return Err(invalid(
                "max-event-bytes",
                format!(
                    "{} is more than --max-push-bytes ({}): no push could carry such an event",
                    Size(max_event_bytes as u64),
                    Size(max_push_bytes as u64)
                ),
            ));
        }
        let store = settings.store.unwrap_or(StoreKind::Disk);
        let redis_prefix = settings.redis_prefix.unwrap_or_else(|| "ssehub".to_owned());
        if redis_prefix.is_empty()
            || redis_prefix
                .chars()
                .any(|c| c.is_control() || c == '{' || c == '}')
        {
            return Err(invalid(
                "redis-prefix",
                "must be a non-empty name without braces or control characters",
            ));
        }
        if let StoreKind::Redis(_) = store {
            // Every node must accept what another node's clients hold: a key made per node
            // would not.
            if settings.publisher_key.is_none()
                && !settings.allow_anonymous_publish.unwrap_or(false)
            {
                return Err(invalid(
                    "publisher-key",
                    "--store redis:// runs several nodes as one hub: give every node the same \
                     publisher key (a generated one would differ from node to node)",
                ));
            }
            if token_key.is_none() && !settings.allow_anonymous.unwrap_or(false) {
                return Err(invalid(
                    "jwt-secret",
                    "--store redis:// runs several nodes as one hub: give every node the same \
                     --jwt-secret or --jwt-public-key (a generated secret would differ from node \
                     to node, and tokens from one would fail on the others)",
                ));
            }
        }
        let heartbeat = settings
            .heartbeat
            .map_or(Some(Duration::from_secs(30)), |s| {
                (!s.0.is_zero()).then_some(s.0)
            });
        let nonzero = |setting, value: Option<Span>, default: Duration| {
            let duration = value.map_or(default, |s| s.0);
            if duration.is_zero() {
                return Err(invalid(setting, "0 would drop every connection at once"));
            }
            Ok(duration)
        };
        let slow_client_timeout = nonzero(
            "slow-client-timeout",
            settings.slow_client_timeout,
            Duration::from_secs(5),
        )?;
        let write_timeout = nonzero(
            "write-timeout",
            settings.write_timeout,
            Duration::from_secs(30),
        )?;
        let dead_peer_timeout = settings
            .dead_peer_timeout
            .map_or(Some(Duration::from_secs(60)), |s| {
                (!s.0.is_zero()).then_some(s.0)
            });
        let tls = match (settings.tls_cert, settings.tls_key) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles { cert, key };
                // Read now, so that a bad file is a configuration error naming its flag.
                Certificates::load(files.clone()).map_err(ConfigError::from)?;
                Some(files)
            }
            (Some(_), None) => {
                return Err(invalid(
                    "tls-key",
                    "missing: --tls-cert needs the certificate's private key",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls-cert",
                    "missing: --tls-key needs the certificate it is the key of",
                ));
            }
            (None, None) => None,
        };
        let tls_handshake_timeout = nonzero(
            "tls-handshake-timeout",
            settings.tls_handshake_timeout,
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        )?;
        Ok(Self {
            listen,
            data_dir,
            store,
            redis_prefix,
            retention_events,
            retention_age,
            retention_bytes,
            publisher_key: settings.publisher_key.map(|key| key.trim().to_owned()),
            token_key,
            jwt_cookie,
            jwt_issuer: settings.jwt_issuer,
            jwt_audience: settings.jwt_audience,
            allow_anonymous: settings.allow_anonymous.unwrap_or(false),
            anonymous_topics: settings.anonymous_topics,
            allow_anonymous_publish: settings.allow_anonymous_publish.unwrap_or(false),
            cors_origins: settings.cors_origins,
            ui: !settings.no_ui.unwrap_or(false),
            max_connections,
            max_streams,
            max_streams_per_uid,
            max_push_bytes,
            max_event_bytes,
            buffer_events,
            buffer_bytes,
            heartbeat,
            slow_client: settings.slow_client.unwrap_or(SlowClient::Wait),
            slow_client_timeout,
            slow_client_retries: settings.slow_client_retries.unwrap_or(3),
            write_timeout,
            dead_peer_timeout,
            tls,
            tls_handshake_timeout,
            restart: settings.restart.unwrap_or(false),
        })
    }

    /// The effective configuration as TOML that `--config` reads back, secrets masked.
    ///
    /// ```
    /// use ssehub_server::config::{Config, Settings};
    ///
    /// let settings = Settings { publisher_key: Some("0123456789abcdef0123".into()), ..Settings::default() };
    /// let text = Config::from_settings(settings)?.to_toml();
    /// assert!(text.contains("publisher-key = \"***\""));
    /// assert!(!text.contains("0123456789abcdef"));
    /// # Ok::<(), ssehub_server::config::ConfigError>(())
    /// ```
    pub fn to_toml(&self) -> String {
        use std::fmt::Write as _;

        let mut out = String::new();
        let quoted = |text: &str| toml::Value::String(text.to_owned()).to_string();
        let list = |items: &[String]| {
            let items: Vec<String> = items.iter().map(|item| quoted(item)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "{key} = {value}");
        };
        line("listen", quoted(&self.listen.to_string()));
        line("data-dir", quoted(&self.data_dir.display().to_string()));
        line("store", quoted(&self.store.shown()));
        line("redis-prefix", quoted(&self.redis_prefix));
        line("retention-events", self.retention_events.to_string());
        line(
            "retention-age",
            quoted(&Span(self.retention_age).to_string()),
        );
        line(
            "retention-bytes",
            quoted(&Size(self.retention_bytes).to_string()),
        );
        // Secrets: masked when set (a masked value is too short to be taken back in), a
        // comment when `serve` will make them.
        match &self.publisher_key {
            Some(_) => line("publisher-key", "\"***\"".to_owned()),
            None => line(
                "# publisher-key",
                "generated at start, kept in the data directory".to_owned(),
            ),
        }
        match &self.token_key {
            Some(TokenKey::Secret { .. }) => line("jwt-secret", "\"***\"".to_owned()),
            Some(TokenKey::PublicKey(path)) => {
                line("jwt-public-key", quoted(&path.display().to_string()));
            }
            None => line(
                "# jwt-secret",
                "generated at start, kept in the data directory".to_owned(),
            ),
        }
        line("jwt-cookie", quoted(&self.jwt_cookie));
        if let Some(issuer) = &self.jwt_issuer {
            line("jwt-issuer", quoted(issuer));
        }
        if let Some(audience) = &self.jwt_audience {
            line("jwt-audience", quoted(audience));
        }
        line("allow-anonymous", self.allow_anonymous.to_string());
        line("anonymous-topics", list(&self.anonymous_topics));
        line(
            "allow-anonymous-publish",
            self.allow_anonymous_publish.to_string(),
        );
        line("cors-origins", list(&self.cors_origins));
        line("no-ui", (!self.ui).to_string());
        let limit = |value: Option<usize>, default: usize| value.unwrap_or(default).to_string();
        line(
            "max-connections",
            limit(
                self.max_connections,
                ssehub_hub::admission::default_max_connections(),
            ),
        );
        line(
            "max-streams",
            limit(
                self.max_streams,
                ssehub_hub::admission::default_max_streams(),
            ),
        );
        line("max-streams-per-uid", self.max_streams_per_uid.to_string());
        line(
            "max-push-bytes",
            quoted(&Size(self.max_push_bytes as u64).to_string()),
        );
        line(
            "max-event-bytes",
            quoted(&Size(self.max_event_bytes as u64).to_string()),
        );
        line("buffer-events", self.buffer_events.to_string());
        line(
            "buffer-bytes",
            quoted(&Size(self.buffer_bytes as u64).to_string()),
        );
        line(
            "heartbeat",
            quoted(&Span(self.heartbeat.unwrap_or_default()).to_string()),
        );
        line(
            "slow-client",
            quoted(match self.slow_client {
                SlowClient::Wait => "wait",
                SlowClient::Disconnect => "disconnect",
            }),
        );
        line(
            "slow-client-timeout",
            quoted(&Span(self.slow_client_timeout).to_string()),
        );
        line("slow-client-retries", self.slow_client_retries.to_string());
        line(
            "write-timeout",
            quoted(&Span(self.write_timeout).to_string()),
        );
        line(
            "dead-peer-timeout",
            quoted(&Span(self.dead_peer_timeout.unwrap_or_default()).to_string()),
        );
        if let Some(tls) = &self.tls {
            line("tls-cert", quoted(&tls.cert.display().to_string()));
            line("tls-key", quoted(&tls.key.display().to_string()));
        }
        line(
            "tls-handshake-timeout",
            quoted(&Span(self.tls_handshake_timeout).to_string()),
        );
        line("restart", self.restart.to_string());
        out
    }
}

/// `scheme://host[:port]` with nothing after it, or `*`.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let bad = |why: &str| {
        format!(
            "{origin:?} is not an origin ({why}); write e.g. https://app.example or http://localhost:3000"
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(|| bad("no scheme"))?;
    if !matches!(scheme, "http" | "https") {
        return Err(bad("the scheme is not http or https"));
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(bad(
            "an origin has a host and nothing after it, not even a slash",
        ));
    }
    http::HeaderValue::from_str(origin).map_err(|_| bad("not a valid header value"))?;
    Ok(())
}

/// The per-user data directory: `$XDG_DATA_HOME/ssehub` or `~/.local/share/ssehub` on Linux,
/// the platform's equivalent elsewhere.
///
/// ```
/// if let Some(dir) = ssehub_server::config::default_data_dir() {
///     assert!(dir.ends_with("ssehub"));
/// }
/// ```
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join("ssehub"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(settings: Settings) -> Result<Config, String> {
        Config::from_settings(settings).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = config(Settings {
            data_dir: Some("/tmp/x".into()),
            ..Settings::default()
        })
        .unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.store, StoreKind::Disk);
        assert_eq!(config.heartbeat, Some(Duration::from_secs(30)));
        assert!(!config.allow_anonymous && !config.allow_anonymous_publish);
        assert!(config.cors_origins.is_empty());
        assert_eq!(config.token_key, None);
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    retention_events: Some(0),
                    ..Settings::default()
                },
                "--retention-events (SSEHUB_RETENTION_EVENTS): ",
            ),
            (
                Settings {
                    retention_age: Some(Span(Duration::ZERO)),
                    ..Settings::default()
                },
                "--retention-age ",
            ),
            (
                Settings {
                    retention_bytes: Some(Size(10)),
                    ..Settings::default()
                },
                "--retention-bytes ",
            ),
            (
                Settings {
                    publisher_key: Some("abc".into()),
                    ..Settings::default()
                },
                "--publisher-key ",
            ),
            (
                Settings {
                    jwt_secret: Some("x".repeat(32)),
                    jwt_public_key: Some("/k.pem".into()),
                    ..Settings::default()
                },
                "--jwt-public-key ",
            ),
            (
                Settings {
                    jwt_public_key: Some("/nonexistent.pem".into()),
                    ..Settings::default()
                },
                "--jwt-public-key ",
            ),
            (
                Settings {
                    jwt_cookie: Some("a b".into()),
                    ..Settings::default()
                },
                "--jwt-cookie ",
            ),
            (
                Settings {
                    anonymous_topics: vec!["a\nb".into()],
                    ..Settings::default()
                },
                "--anonymous-topic ",
            ),
            (
                Settings {
                    cors_origins: vec!["https://app.example/".into()],
                    ..Settings::default()
                },
                "--cors-origin ",
            ),
            (
                Settings {
                    cors_origins: vec!["ftp://app.example".into()],
                    ..Settings::default()
                },
                "--cors-origin ",
            ),
            (
                Settings {
                    max_streams: Some(0),
                    ..Settings::default()
                },
                "--max-streams ",
            ),
            (
                Settings {
                    max_connections: Some(0),
                    ..Settings::default()
                },
                "--max-connections ",
            ),
            (
                Settings {
                    max_push_bytes: Some(Size(10)),
                    ..Settings::default()
                },
                "--max-push-bytes ",
            ),
            (
                Settings {
                    max_event_bytes: Some(Size(4 << 20)),
                    ..Settings::default()
                },
                "--max-event-bytes ",
            ),
            (
                Settings {
                    write_timeout: Some(Span(Duration::ZERO)),
                    ..Settings::default()
                },
                "--write-timeout ",
            ),
            (
                Settings {
                    data_dir: Some(PathBuf::new()),
                    ..Settings::default()
                },
                "--data-dir ",
            ),
        ];
        for (settings, start) in cases {
            let err = config(settings).unwrap_err();
            assert!(err.starts_with(start), "{err} should start with {start}");
        }
    }

    #[test]
    fn the_file_refuses_unknown_keys_and_bad_values_with_the_line() {
        let err =
            toml::from_str::<Settings>("listen = \"127.0.0.1:1\"\nlisten-on = 3\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listen-on`"),
            "{err}"
        );
        let err = toml::from_str::<Settings>("heartbeat = \"often\"\n").unwrap_err();
        assert!(err.to_string().contains("is not a duration"), "{err}");
        let settings: Settings = toml::from_str(
            "heartbeat = 0\nretention-bytes = \"64MiB\"\ncors-origins = [\"http://a.test\"]",
        )
        .unwrap();
        let config = config(settings).unwrap();
        assert_eq!(config.heartbeat, None);
        assert_eq!(config.retention_bytes, 64 << 20);
        assert_eq!(config.cors_origins, ["http://a.test"]);
    }

    #[test]
    fn printed_configuration_reads_back_to_the_same_and_masks_secrets() {
        let settings = Settings {
            publisher_key: Some("p".repeat(20)),
            jwt_secret: Some("s".repeat(40)),
            cors_origins: vec!["https://app.example".into()],
            heartbeat: Some(Span(Duration::from_secs(90))),
            ..Settings::default()
        };
        let first = config(settings).unwrap();
        let text = first.to_toml();
        assert!(!text.contains("pppp") && !text.contains("ssss"), "{text}");
        // Secrets masked: the rest reads back to the same configuration.
        let mut reread: Settings = toml::from_str(&text).unwrap();
        reread.publisher_key = None;
        reread.jwt_secret = None;
        let second = config(reread).unwrap();
        let reprinted = second.to_toml();
        let masked = |text: &str| {
            text.lines()
                .filter(|line| !line.contains("publisher-key") && !line.contains("jwt-secret"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(masked(&reprinted), masked(&text));
    }
}

//! `ssehub serve` as a library: the standalone hub people deploy.
//!
//! [`config`] reads the settings (flags, `SSEHUB_*` variables, a TOML file), [`keys`] makes the
//! secrets nobody gave, [`auth`] decides who may subscribe (JWT from a header, a cookie or the
//! query; anonymous when allowed) and who may push (the publisher key, or a token that may),
//! [`cors`] lets the listed origins in, [`metrics`] serves Prometheus text. [`Hubserver`] puts
//! them around an [`ssehub_hub::Hub`] with its on-disk (or in-memory) store, behind the hub's
//! lean event-stream server:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /events` | the stream of the token's `sub`, with `?topic=` within its `topics` claim |
//! | `POST /push` | the seed's push API and envelope (publisher key or a `publish` token) |
//! | `GET /stats` | the seed's four counters, connections, users, topics (JSON) |
//! | `GET /stats/stream` | the same, plus pushes and uptime, as one `stats` event a second |
//! | `GET /` | the live page (charts, a test-push form, a topic's log), unless `--no-ui` |
//! | `GET /metrics` | Prometheus text, series `ssehub_*` |
//! | `GET /healthz`, `GET /readyz` | alive; ready (the store answers, the hub is open) |
//!
//! ```no_run
//! use ssehub_server::config::{Config, Settings};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_settings(Settings::default())?;
//! let server = ssehub_server::Hubserver::bind(config).await?;
//! println!("{}", server.banner());
//! server.run_until(async { tokio::signal::ctrl_c().await.ok(); }).await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod cors;
mod https;
pub mod keys;
pub mod metrics;
mod routes;
mod stats_stream;
pub mod tls;
mod ui;
pub mod units;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ssehub_hub::server::Server;
use ssehub_hub::store::{MemoryStore, RedbStore, Retention, Store};
use ssehub_hub::{Hub, SlowClientPolicy};
use ssehub_store_redis::RedisLog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Access, Claims, SubscriberAuth};
use crate::config::{Config, SlowClient, StoreKind, TokenKey};
use crate::cors::Cors;
use crate::metrics::Metrics;

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A generated secret could not be kept.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// The token key could not be used.
    #[error(transparent)]
    TokenKey(#[from] auth::KeyError),
    /// The history could not be opened.
    #[error("--data-dir {}: cannot open the history: {message}", dir.display())]
    Store {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// The shared Redis (`--store redis://...`) could not be used.
    #[error("--store {store} (SSEHUB_STORE): {message}")]
    Redis {
        /// The URL, a password masked.
        store: String,
        /// Why.
        message: String,
    },
    /// The address could not be bound.
    #[error("--listen {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why (in use, not allowed, not this machine's).
        #[source]
        source: std::io::Error,
    },
    /// `/metrics` could not be set up.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// The hub or server refused an option (a bug: the configuration checks them first).
    #[error("{0}")]
    Build(String),
}

/// Where the secrets came from, for the banner.
#[derive(Debug, Clone)]
enum Secret {
    /// Given by a flag, variable or file.
    Given,
    /// Kept in this file; `shown` is the secret when it was made just now.
    Stored {
        path: PathBuf,
        shown: Option<String>,
    },
    /// Made for this run only (`--store memory`): printed, not kept.
    Ephemeral(String),
}

/// A bound `ssehub serve`: its hub, listener and server, ready to run.
pub struct Hubserver {
    config: Config,
    hub: Hub,
    store: Arc<dyn Store>,
    server: Server,
    listener: TcpListener,
    addr: SocketAddr,
    store_path: Option<PathBuf>,
    publisher: Option<Secret>,
    token: Option<Secret>,
    /// Cancelled when shutdown starts: ends the stats streams.
    shutdown: CancellationToken,
    /// With `--tls-cert`: the HTTPS path, in place of the lean cleartext one.
    tls: Option<Tls>,
}

/// The HTTPS path and what reloads its certificate.
struct Tls {
    https: https::Https,
    certificates: tls::Certificates,
    /// SIGHUP, registered at bind so that a signal sent once `bind` returned is never fatal.
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl std::fmt::Debug for Hubserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hubserver")
            .field("addr", &self.addr)
            .field("store_path", &self.store_path)
            .finish_non_exhaustive()
    }
}

impl Hubserver {
    /// Makes or loads the missing secrets, opens the history, builds the hub and binds the
    /// address.
    ///
    /// # Errors
    ///
    /// [`ServeError`] naming the setting at fault (the data directory, the address, a key).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ssehub_server::config::Config::from_settings(Default::default())?;
    /// let server = ssehub_server::Hubserver::bind(config).await?;
    /// # Ok(()) }
    /// ```
    pub async fn bind(mut config: Config) -> Result<Self, ServeError> {
        let on_disk = config.store == StoreKind::Disk;
        let publisher = match (&config.publisher_key, config.allow_anonymous_publish) {
            (Some(_), _) => Some(Secret::Given),
            (None, true) => None,
            (None, false) => {
                let (key, secret) = make_secret(&config, keys::PUBLISHER_KEY_FILE)?;
                config.publisher_key = Some(key);
                Some(secret)
            }
        };
        let token = match (&config.token_key, config.allow_anonymous) {
            (Some(_), _) => Some(Secret::Given),
            (None, true) => None,
            (None, false) => {
                let (key, secret) = make_secret(&config, keys::JWT_SECRET_FILE)?;
                config.token_key = Some(TokenKey::Secret {
                    secret: key,
                    generated: true,
                });
                Some(secret)
            }
        };

        let retention = Retention::events(config.retention_events)
            .max_age(config.retention_age)
            .max_bytes(config.retention_bytes);
        let mut log = None;
        let (store, store_path): (Arc<dyn Store>, _) = if let StoreKind::Redis(url) = &config.store
        {
            // Every node on this Redis and prefix is one hub (`docs/multi-node.md`).
            let redis = RedisLog::builder(url)
                .prefix(&config.redis_prefix)
                .retention(retention)
                .connect()
                .await
                .map_err(|error| ServeError::Redis {
                    store: config.store.shown(),
                    message: error.to_string(),
                })?;
            log = Some(redis.clone());
            (Arc::new(redis), None)
        } else if on_disk {
            let error = |message: String| ServeError::Store {
                dir: config.data_dir.clone(),
                message,
            };
            std::fs::create_dir_all(&config.data_dir).map_err(|e| error(e.to_string()))?;
            let store =
                RedbStore::open(&config.data_dir, retention).map_err(|e| error(e.to_string()))?;
            let path = store.path().to_owned();
            (Arc::new(store), Some(path))
        } else {
            let store = MemoryStore::with_retention(retention);
            (Arc::new(store), None)
        };

        let builder = match log {
            Some(log) => Hub::builder().log(log),
            None => Hub::builder().store(Arc::clone(&store)),
        };
        let mut builder = builder
            .resend(true)
            .heartbeat(config.heartbeat)
            .connection_buffer(config.buffer_events)
            .max_queued_bytes(config.buffer_bytes)
            .max_streams_per_uid(config.max_streams_per_uid)
            .max_data_len(config.max_event_bytes)
            .slow_client(match config.slow_client {
                SlowClient::Wait => SlowClientPolicy::Wait {
                    timeout: config.slow_client_timeout,
                    retries: config.slow_client_retries,
                },
                SlowClient::Disconnect => SlowClientPolicy::Disconnect,
            })
            .metrics(true);
        if let Some(streams) = config.max_streams {
            builder = builder.max_streams(streams);
        }
        let hub = builder
            .build()
            .map_err(|e| ServeError::Build(e.to_string()))?;

        let access = Arc::new(Access::new(&config)?);
        let cors = Cors::new(&config.cors_origins);
        let metrics = Metrics::install()?;
        let pushes = Arc::default();
        let shutdown = CancellationToken::new();
        let mut extra = stats_stream::router(stats_stream::StatsStreams::new(
            hub.clone(),
            Arc::clone(&pushes),
            shutdown.clone(),
        ));
        if config.ui {
            extra = extra.merge(ui::router());
        }
        let push_route = routes::lean_push_route(&access, &pushes, config.max_push_bytes);
        let routes = routes::Routes {
            hub: hub.clone(),
            access: Arc::clone(&access),
            store: Arc::clone(&store),
            metrics,
            pushes,
        };
        let router = routes::router(routes, config.max_push_bytes, &cors, extra);
        let tls = match &config.tls {
            Some(files) => Some(Tls::new(&config, files, &hub, &access, &cors, &router)?),
            None => None,
        };
        let mut server = Server::builder(hub.clone(), SubscriberAuth(access))
            .events_path("/events")
            .push_route(push_route)
            .fallback(router)
            .write_timeout(config.write_timeout)
            .dead_peer_timeout(config.dead_peer_timeout);
        // Only with origins: the hook copies the stream headers for every stream it answers.
        if !cors.is_off() {
            server =
                server.response_headers(move |parts, headers| cors.stream_headers(parts, headers));
        }
        if let Some(connections) = config.max_connections {
            server = server.max_connections(connections);
        }
        let server = server
            .build()
            .map_err(|e| ServeError::Build(e.to_string()))?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            config,
            hub,
            store,
            server,
            listener,
            addr,
            store_path,
            publisher,
            token,
            shutdown,
            tls,
        })
    }

    /// The address it listens on (the port chosen, with `--listen 127.0.0.1:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its hub (to push in-process, or to read its stats).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// With `--tls-cert`: its certificate, to reload by hand (SIGHUP does the same).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = ssehub_server::Hubserver::bind(ssehub_server::config::Config::from_settings(Default::default())?).await?;
    /// if let Some(certificates) = server.certificates() {
    ///     certificates.reload()?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn certificates(&self) -> Option<&tls::Certificates> {
        self.tls.as_ref().map(|tls| &tls.certificates)
    }

    /// What to print at start: where it listens, where the history is, the publisher key (when
    /// made just now), and a push and a listen line to try, which work as printed.
    pub fn banner(&self) -> String {
        use std::fmt::Write as _;

        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", self.addr);
        let mut out = String::new();
        let _ = writeln!(out, "ssehub serve: listening on {base}");
        if let Some(tls) = &self.tls {
            let _ = writeln!(
                out,
                "  tls:           {} (HTTP/2 and HTTP/1.1; reloaded on SIGHUP)",
                tls.certificates.files().cert.display()
            );
        }
        if self.config.ui {
            let _ = writeln!(out, "  live page:     {base}/ (off with --no-ui)");
        }
        match &self.store_path {
            Some(path) => {
                let _ = writeln!(
                    out,
                    "  history:       {} (resend on reconnect)",
                    path.display()
                );
            }
            None if matches!(self.config.store, StoreKind::Redis(_)) => {
                let _ = writeln!(
                    out,
                    "  history:       {} (keys {{{}}}:*), shared by every node on it",
                    self.config.store.shown(),
                    self.config.redis_prefix
                );
            }
            None => {
                let _ = writeln!(out, "  history:       in memory (lost when the hub stops)");
            }
        }
        let bearer = match &self.publisher {
            None => {
                let _ = writeln!(
                    out,
                    "  publishing:    OPEN to anyone who can reach {base} (--allow-anonymous-publish)"
                );
                None
            }
            Some(Secret::Given) => {
                let _ = writeln!(out, "  publisher key: as configured");
                Some("$SSEHUB_PUBLISHER_KEY".to_owned())
            }
            Some(Secret::Stored {
                path,
                shown: Some(key),
            }) => {
                let _ = writeln!(out, "  publisher key: {key}");
                let _ = writeln!(
                    out,
                    "                 (new; kept in {}; shown only now)",
                    path.display()
                );
                Some(key.clone())
            }
            Some(Secret::Stored { path, shown: None }) => {
                let _ = writeln!(out, "  publisher key: in {}", path.display());
                Some(format!(
                    "$(cat {})",
                    shell_quote(&path.display().to_string())
                ))
            }
            Some(Secret::Ephemeral(key)) => {
                let _ = writeln!(out, "  publisher key: {key} (for this run only)");
                Some(key.clone())
            }
        };
        let demo_token = match (&self.config.token_key, &self.token) {
            (Some(TokenKey::Secret { secret, .. }), _) => {
                match &self.token {
                    Some(Secret::Stored { path, .. }) => {
                        let _ =
                            writeln!(out, "  tokens:        HS256, secret in {}", path.display());
                    }
                    Some(Secret::Ephemeral(_)) => {
                        let _ =
                            writeln!(out, "  tokens:        HS256, secret made for this run only");
                    }
                    _ => {
                        let _ = writeln!(out, "  tokens:        HS256 (--jwt-secret)");
                    }
                }
                auth::sign_hs256(&Claims::new("demo", Duration::from_secs(24 * 3600)), secret).ok()
            }
            (Some(TokenKey::PublicKey(path)), _) => {
                let _ = writeln!(
                    out,
                    "  tokens:        RS256/ES256, verified with {}",
                    path.display()
                );
                None
            }
            (None, _) => None,
        };
        if self.config.allow_anonymous {
            let _ = writeln!(out, "  anonymous subscribers allowed (a random uid each)");
        }
        let _ = writeln!(out, "\ntry it, in two terminals:");
        match &demo_token {
            Some(token) => {
                let _ = writeln!(
                    out,
                    "  ssehub listen '{base}/events' -H 'Authorization: Bearer {token}'"
                );
            }
            None if self.config.allow_anonymous => {
                let _ = writeln!(out, "  ssehub listen '{base}/events'");
            }
            None => {
                let _ = writeln!(
                    out,
                    "  ssehub listen '{base}/events' -H 'Authorization: Bearer <a token your issuer signed, sub=demo>'"
                );
            }
        }
        let key = bearer
            .as_ref()
            .map(|key| format!(" --key \"{key}\""))
            .unwrap_or_default();
        let to = if demo_token.is_some() || !self.config.allow_anonymous {
            "--uid demo"
        } else {
            "--broadcast"
        };
        let _ = writeln!(
            out,
            "  ssehub push --url {base}{key} {to} 'hello from ssehub push'"
        );
        let auth = bearer
            .map(|key| format!(" -H \"Authorization: Bearer {key}\""))
            .unwrap_or_default();
        let recipients = if demo_token.is_some() || !self.config.allow_anonymous {
            r#""uids":["demo"],"#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  curl{auth} -H 'Content-Type: application/json' -d '{{{recipients}\"events\":[{{\"data\":\"hello\"}}]}}' {base}/push"
        );
        if demo_token.is_some() {
            let _ = writeln!(
                out,
                "  (the listen line's token is for uid \"demo\", valid 24 h)"
            );
        }
        out
    }

    /// Serves until `signal`, then shuts down gracefully: pushes in flight finish, every
    /// stream gets the `close` event (or, with `--restart`, ends without it so clients come
    /// back and resume), the history is flushed, and new connections are no longer taken.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = ssehub_server::Hubserver::bind(ssehub_server::config::Config::from_settings(Default::default())?).await?;
    /// server.run_until(async { tokio::signal::ctrl_c().await.ok(); }).await;
    /// # Ok(()) }
    /// ```
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send + 'static) {
        let Self {
            config,
            hub,
            store,
            server,
            listener,
            tls,
            shutdown: streams,
            ..
        } = self;
        let closing = hub.clone();
        let restart = config.restart;
        let shutdown = async move {
            signal.await;
            // The stats streams end first: none holds the graceful shutdown open.
            streams.cancel();
            tracing::info!(
                restart,
                "shutting down: finishing pushes, then ending streams"
            );
            if restart {
                closing.close_for_restart().await;
            } else {
                closing.close().await;
            }
        };
        match tls {
            None => {
                server
                    .serve(listener)
                    .with_graceful_shutdown(shutdown)
                    .into_future()
                    .await;
            }
            Some(mut tls) => {
                let reloading = tls.reload_on_hangup();
                tls.https.run(listener, shutdown).await;
                reloading.abort();
            }
        }
        tracing::info!(stats = %hub.stats(), "stopped");
        drop((hub, server));
        release(store).await;
    }
}

impl Tls {
    /// The HTTPS path over the same hub, access rules, CORS and routes as the lean path.
    fn new(
        config: &Config,
        files: &tls::TlsFiles,
        hub: &Hub,
        access: &Arc<Access>,
        cors: &Cors,
        router: &axum::Router,
    ) -> Result<Self, ServeError> {
        let certificates = tls::Certificates::load(files.clone())
            .map_err(|error| ServeError::Config(error.into()))?;
        let https = https::Https::new(https::Options {
            certificates: certificates.clone(),
            events: https::Events {
                hub: hub.clone(),
                access: Arc::clone(access),
                cors: cors.clone(),
            },
            routes: router.clone(),
            handshake_timeout: config.tls_handshake_timeout,
            write_timeout: config.write_timeout,
            dead_peer_timeout: config.dead_peer_timeout,
            max_connections: config
                .max_connections
                .unwrap_or_else(ssehub_hub::admission::default_max_connections),
        });
        #[cfg(unix)]
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; the certificate will not be reloaded");
                None
            }
        };
        Ok(Self {
            https,
            certificates,
            #[cfg(unix)]
            hangup,
        })
    }

    /// A task that reloads the certificate on each SIGHUP; a bad file keeps the old one.
    fn reload_on_hangup(&mut self) -> tokio::task::JoinHandle<()> {
        let certificates = self.certificates.clone();
        #[cfg(unix)]
        let hangup = self.hangup.take();
        tokio::spawn(async move {
            #[cfg(unix)]
            if let Some(mut hangup) = hangup {
                while hangup.recv().await.is_some() {
                    match certificates.reload() {
                        Ok(()) => tracing::info!(
                            cert = %certificates.files().cert.display(),
                            "SIGHUP: certificate reloaded; new connections get it"
                        ),
                        Err(error) => tracing::error!(
                            %error,
                            "SIGHUP: certificate not reloaded; keeping the one in use"
                        ),
                    }
                }
            }
            #[cfg(not(unix))]
            drop(certificates);
        })
    }
}

/// Waits (a bounded while) for the hub's tasks to let go of the store, then closes it, so the
/// history is flushed and its file unlocked when `run_until` returns: the same process may
/// open it again at once.
async fn release(store: Arc<dyn Store>) {
    // The committer and the last connection tasks drop their handles as they finish, moments
    // after the server returns; nothing signals it, so look a few times.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&store) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if Arc::strong_count(&store) > 1 {
        tracing::warn!(
            "the store is still in use 5 s after shutdown; it closes when the process exits"
        );
    }
}

/// A secret for `file`: kept in the data directory with the on-disk store, made for this run
/// only with the memory store.
fn make_secret(config: &Config, file: &str) -> Result<(String, Secret), ServeError> {
    if config.store == StoreKind::Disk {
        let stored = keys::load_or_create(&config.data_dir, file)?;
        let shown = stored.created.then(|| stored.secret.clone());
        Ok((
            stored.secret,
            Secret::Stored {
                path: stored.path,
                shown,
            },
        ))
    } else {
        let secret = keys::random_hex(32).map_err(|source| keys::KeyError {
            path: config.data_dir.join(file),
            source,
        })?;
        Ok((secret.clone(), Secret::Ephemeral(secret)))
    }
}

/// `text` quoted for a POSIX shell when it needs it.
fn shell_quote(text: &str) -> String {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Waits for SIGINT or SIGTERM (Ctrl+C elsewhere).
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// ssehub_server::shutdown_signal().await;
/// # }
/// ```
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                tokio::signal::ctrl_c().await.ok();
            }
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.ok();
}

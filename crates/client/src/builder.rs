//! [`ClientBuilder`]: every option of the client, checked once in [`ClientBuilder::build`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};
use ssehub_wire::{DEFAULT_MAX_EVENT_LEN, DEFAULT_MAX_LINE_LEN, Utf8Bytes};

use crate::connection::HttpClient;
use crate::{Client, Error, EventStream};

/// The reconnection time used until a server sends `retry:`: 2 s, like the Go client ssehub
/// succeeds.
pub const DEFAULT_RECONNECTION_TIME: Duration = Duration::from_secs(2);
/// The default cap on the reconnection delay after failures in a row: 30 s.
pub const DEFAULT_MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);
/// The default idle timeout: 60 s without a byte (event or heartbeat comment) and the connection
/// is taken for dead. Servers that send a heartbeat comment every 15–30 s (ssehub's hub does) stay
/// well inside it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default limit on redirects followed in a row: 10.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// The settled configuration shared by a client's connections.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) url: Uri,
    pub(crate) method: Method,
    pub(crate) body: Bytes,
    pub(crate) headers: HeaderMap,
    pub(crate) last_event_id: Utf8Bytes,
    pub(crate) reconnection_time: Duration,
    pub(crate) max_reconnect_delay: Duration,
    pub(crate) jitter: bool,
    pub(crate) max_retries: Option<u32>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) reconnect_on_http_error: bool,
    pub(crate) max_redirects: u32,
    pub(crate) stop_on_close_event: bool,
    pub(crate) max_line_len: usize,
    pub(crate) max_event_len: usize,
}

/// Configures a [`Client`] (callbacks) or an [`EventStream`] (a `Stream` of events).
///
/// Every option has a default; only the URL is required. Invalid input (a bad URL or header) is
/// reported by [`build`](Self::build) / [`build_stream`](Self::build_stream), not by the setters.
///
/// ```no_run
/// use std::time::Duration;
/// use ssehub_client::ClientBuilder;
///
/// # async fn run() -> Result<(), ssehub_client::Error> {
/// let client = ClientBuilder::new("https://example.com/events")
///     .header("Authorization", "Bearer secret")
///     .last_event_id("41")
///     .reconnection_time(Duration::from_secs(1))
///     .max_reconnect_delay(Duration::from_secs(10))
///     .idle_timeout(Some(Duration::from_secs(45)))
///     .build()?;
/// client.on_message(|event| println!("{}", event.data));
/// client.connect().await?;
/// client.wait().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    url: String,
    method: Method,
    body: Bytes,
    headers: Vec<(String, String)>,
    header_map: HeaderMap,
    last_event_id: Option<String>,
    reconnection_time: Duration,
    max_reconnect_delay: Duration,
    jitter: bool,
    max_retries: Option<u32>,
    idle_timeout: Option<Duration>,
    reconnect_on_http_error: bool,
    max_redirects: u32,
    stop_on_close_event: bool,
    max_line_len: usize,
    max_event_len: usize,
    #[cfg(feature = "rustls")]
    tls_config: Option<rustls::ClientConfig>,
}

impl ClientBuilder {
    /// Starts a configuration for the stream at `url` (`http://` or `https://`).
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events");
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method: Method::GET,
            body: Bytes::new(),
            headers: Vec::new(),
            header_map: HeaderMap::new(),
            last_event_id: None,
            reconnection_time: DEFAULT_RECONNECTION_TIME,
            max_reconnect_delay: DEFAULT_MAX_RECONNECT_DELAY,
            jitter: true,
            max_retries: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            reconnect_on_http_error: false,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            stop_on_close_event: true,
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_event_len: DEFAULT_MAX_EVENT_LEN,
            #[cfg(feature = "rustls")]
            tls_config: None,
        }
    }

    /// Adds a request header, sent on every connection (appended, so a name may repeat).
    /// `Accept: text/event-stream` and `Cache-Control: no-cache` are sent unless set here. A
    /// `Last-Event-ID` header given here is taken as the initial last event id.
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events")
    ///     .header("Authorization", "Bearer secret");
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds already-validated request headers, as [`header`](Self::header) does.
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
    /// let mut headers = HeaderMap::new();
    /// headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer secret"));
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events").headers(headers);
    /// ```
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        for (name, value) in &headers {
            self.header_map.append(name.clone(), value.clone());
        }
        self
    }

    /// Resumes from an id saved earlier: the first request carries it as `Last-Event-ID`. An
    /// empty id sends no header. It must be a valid header value without NUL.
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events").last_event_id("41");
    /// ```
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// The initial reconnection time: how long to wait before reconnecting after a stream ends
    /// ([`DEFAULT_RECONNECTION_TIME`] by default). A server's `retry:` replaces it for the rest of
    /// the client's life.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events")
    ///     .reconnection_time(Duration::from_millis(500));
    /// ```
    pub fn reconnection_time(mut self, time: Duration) -> Self {
        self.reconnection_time = time;
        self
    }

    /// Caps the delay between reconnection attempts as it doubles on failures in a row
    /// ([`DEFAULT_MAX_RECONNECT_DELAY`] by default). A server's `retry:` above the cap is still
    /// honoured.
    ///
    /// The delay starts over from the reconnection time after a connection that dispatched an
    /// event or stayed open at least this long; a stream that only opens (a comment, a `retry:`)
    /// and ends is a failure, so clients of a server that ends every stream at once back off.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events")
    ///     .max_reconnect_delay(Duration::from_secs(10));
    /// ```
    pub fn max_reconnect_delay(mut self, cap: Duration) -> Self {
        self.max_reconnect_delay = cap;
        self
    }

    /// Randomises reconnection delays (on by default) so that clients cut off together do not
    /// all come back at the same instant. Delays only grow by it, never below the reconnection
    /// time, never above the cap.
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events").jitter(false);
    /// ```
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Gives up after this many reconnection attempts in a row fail (default: never). An attempt
    /// fails unless its connection dispatches an event or stays open at least the
    /// [cap](Self::max_reconnect_delay): a stream that opens, sends only comments or `retry:`
    /// (ssehub's hub opens every stream with `:ok`) and ends counts as a failure. A connection
    /// that does make progress starts the count, and the growing delay, over.
    ///
    /// `max_retries(0)` turns reconnection off: when the server ends the stream the client stops
    /// normally, the usual wish for one-shot streams such as a `POST` to an AI completion API.
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events").max_retries(5);
    /// ```
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Takes a connection for dead, and reconnects, when no byte at all arrives for this long:
    /// no event, no heartbeat comment, no response headers. [`DEFAULT_IDLE_TIMEOUT`] by default;
    /// `None` waits forever (only for servers that send no heartbeats and may stay silent long).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events")
    ///     .idle_timeout(Some(Duration::from_secs(45)));
    /// ```
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The request method (`GET` by default). Streams opened by `POST` are common in AI APIs.
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/v1/chat")
    ///     .method(http::Method::POST)
    ///     .header("Content-Type", "application/json")
    ///     .body(r#"{"stream":true}"#);
    /// ```
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The request body, sent again on every reconnection (empty by default).
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/v1/chat")
    ///     .method(http::Method::POST)
    ///     .body("{}");
    /// ```
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Also reconnects after a status other than 200 OK, or a response that is not an event
    /// stream (off by default: the spec "fails the connection" there and never reconnects, since
    /// retrying a 404 is usually pointless). That covers error statuses and the other 2xx
    /// statuses (201, 206...), which the spec fails alike; 204 No Content stops the client
    /// either way, as it is how a server says "stop". Redirects are followed, not retried. A
    /// `Retry-After` in seconds lengthens the wait before the next attempt; the attempts count
    /// as failures for the backoff and [`max_retries`](Self::max_retries).
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events")
    ///     .reconnect_on_http_error(true);
    /// ```
    pub fn reconnect_on_http_error(mut self, on: bool) -> Self {
        self.reconnect_on_http_error = on;
        self
    }

    /// How many redirects (301, 302, 303, 307, 308) one connection attempt follows
    /// ([`DEFAULT_MAX_REDIRECTS`] by default; 0 makes any redirect an error).
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events").max_redirects(3);
    /// ```
    pub fn max_redirects(mut self, limit: u32) -> Self {
        self.max_redirects = limit;
        self
    }

    /// Whether an event of type `close` stops the client for good, after being delivered (on by
    /// default). ssehub's hub, like the Go package it succeeds, sends one when it shuts down.
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events")
    ///     .stop_on_close_event(false);
    /// ```
    pub fn stop_on_close_event(mut self, on: bool) -> Self {
        self.stop_on_close_event = on;
        self
    }

    /// Limits one line of the stream, in bytes (see [`ssehub_wire::Decoder::max_line_len`]).
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events").max_line_len(1 << 20);
    /// ```
    pub fn max_line_len(mut self, limit: usize) -> Self {
        self.max_line_len = limit;
        self
    }

    /// Limits one event's data, in bytes (see [`ssehub_wire::Decoder::max_event_len`]).
    ///
    /// ```
    /// let builder = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events").max_event_len(1 << 20);
    /// ```
    pub fn max_event_len(mut self, limit: usize) -> Self {
        self.max_event_len = limit;
        self
    }

    /// Uses this rustls configuration for `https` (for a private CA or client certificates)
    /// instead of the default: the aws-lc-rs provider and the bundled Mozilla root certificates
    /// (webpki-roots), which work the same on every machine. Its ALPN list is replaced, to offer
    /// HTTP/2 and HTTP/1.1.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    /// let config = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(rustls::RootCertStore::empty())
    ///     .with_no_client_auth();
    /// let builder = ssehub_client::ClientBuilder::new("https://example.com/events").tls_config(config);
    /// # Ok::<(), rustls::Error>(())
    /// ```
    #[cfg(feature = "rustls")]
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// Checks the configuration and makes a callback [`Client`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`], [`Error::InvalidHeader`], or [`Error::TlsDisabled`] for an
    /// `https` URL without the `rustls` feature.
    ///
    /// ```
    /// let client = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events").build()?;
    /// # Ok::<(), ssehub_client::Error>(())
    /// ```
    pub fn build(self) -> Result<Client, Error> {
        let (config, http) = self.finish()?;
        Ok(Client::from_parts(config, http))
    }

    /// Checks the configuration and makes an [`EventStream`], which connects when first polled.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    ///
    /// # async fn run() -> Result<(), ssehub_client::Error> {
    /// let mut events = ssehub_client::ClientBuilder::new("http://127.0.0.1:8080/events").build_stream()?;
    /// while let Some(event) = events.next().await {
    ///     println!("{}", event?.data);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_stream(self) -> Result<EventStream, Error> {
        let (config, http) = self.finish()?;
        Ok(EventStream::from_parts(config, http))
    }

    fn finish(self) -> Result<(Arc<Config>, HttpClient), Error> {
        let url = parse_url(&self.url)?;
        let mut headers = self.header_map;
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|err| {
                Error::InvalidHeader {
                    name: name.clone(),
                    reason: err.to_string(),
                }
            })?;
            let header_value =
                HeaderValue::from_str(value.trim()).map_err(|_| Error::InvalidHeader {
                    name: name.clone(),
                    reason: "values must be visible ASCII or spaces, with no line breaks".into(),
                })?;
            headers.append(header_name, header_value);
        }
        let from_header = match headers.remove("last-event-id") {
            Some(value) => {
                Some(
                    value
                        .to_str()
                        .map(str::to_owned)
                        .map_err(|_| Error::InvalidHeader {
                            name: "Last-Event-ID".into(),
                            reason: "must be visible ASCII".into(),
                        })?,
                )
            }
            None => None,
        };
        let last_event_id = self.last_event_id.or(from_header).unwrap_or_default();
        if HeaderValue::from_str(&last_event_id).is_err() || last_event_id.contains('\0') {
            return Err(Error::InvalidHeader {
                name: "Last-Event-ID".into(),
                reason: "must be a valid header value without NUL, CR or LF".into(),
            });
        }
        #[cfg(feature = "rustls")]
        let http = HttpClient::new(self.tls_config)?;
        #[cfg(not(feature = "rustls"))]
        let http = {
            if url.scheme_str() == Some("https") {
                return Err(Error::TlsDisabled { url: self.url });
            }
            HttpClient::new()
        };
        let config = Config {
            url,
            method: self.method,
            body: self.body,
            headers,
            last_event_id: Utf8Bytes::from(last_event_id),
            reconnection_time: self.reconnection_time,
            max_reconnect_delay: self.max_reconnect_delay,
            jitter: self.jitter,
            max_retries: self.max_retries,
            idle_timeout: self.idle_timeout,
            reconnect_on_http_error: self.reconnect_on_http_error,
            max_redirects: self.max_redirects,
            stop_on_close_event: self.stop_on_close_event,
            max_line_len: self.max_line_len,
            max_event_len: self.max_event_len,
        };
        Ok((Arc::new(config), http))
    }
}

/// Parses an absolute `http`/`https` URL.
pub(crate) fn parse_url(text: &str) -> Result<Uri, Error> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = text
        .trim()
        .parse()
        .map_err(|err: http::uri::InvalidUri| invalid(&err.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) | None => {
            return Err(invalid(
                "it must be an absolute URL starting with http or https",
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    Ok(uri)
}

//! [`Error`]: everything that can go wrong, with messages that say what to do about it.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use ssehub_wire::DecodeError;

/// An underlying error (from hyper, rustls or the OS), kept as a source so the chain can be printed
/// without tying this crate's API to those crates' versions. Shared, so [`Error`] is `Clone` and
/// every caller of [`Client::wait`](crate::Client::wait) gets it.
pub type BoxError = Arc<dyn std::error::Error + Send + Sync>;

/// Why a client could not be built, could not connect, or stopped.
///
/// Errors reported while the client keeps reconnecting (through
/// [`Client::on_error`](crate::Client::on_error) and the log) are the same type as the one it
/// finally stops with; [`Error::is_retried`] says which kind each is by default.
///
/// ```
/// use ssehub_client::{ClientBuilder, Error};
///
/// let err = ClientBuilder::new("ftp://example.com/events").build().unwrap_err();
/// assert!(matches!(err, Error::InvalidUrl { .. }));
/// assert!(err.to_string().contains("http or https"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL given to the builder (or a redirect's `Location`) is not an absolute http(s) URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header given to the builder has an invalid name or value.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL is `https` but the crate was built without its `rustls` feature.
    #[error("{url} needs TLS: enable the `rustls` feature of ssehub-client")]
    TlsDisabled {
        /// The URL.
        url: String,
    },
    /// The TLS configuration could not be set up.
    #[error("TLS setup failed: {source}")]
    Tls {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// No response arrived: the connection was refused, DNS failed, TLS failed, or the
    /// connection broke before the response headers. Retried.
    #[error("could not connect to {url}: {}", chain(&**.source))]
    Connect {
        /// The URL tried.
        url: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The server answered with a status other than 200 OK, 204 No Content (which stops the
    /// client cleanly) or a redirect: an error status, or another 2xx such as 201 or 206, which
    /// the WHATWG spec fails just the same (only 200 opens a stream). Not retried unless
    /// [`ClientBuilder::reconnect_on_http_error`](crate::ClientBuilder::reconnect_on_http_error).
    #[error("{url} answered HTTP {status}{}{}", success_hint(*.status), body_suffix(.body))]
    Http {
        /// The URL that answered.
        url: String,
        /// The status.
        status: StatusCode,
        /// The start of the response body (up to 1 KiB, lossily decoded), often the server's
        /// explanation; empty when the response is an event stream, whose body may never end.
        body: String,
        /// The server's `Retry-After`, in seconds form, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The response is not an event stream. Not retried unless
    /// [`ClientBuilder::reconnect_on_http_error`](crate::ClientBuilder::reconnect_on_http_error).
    #[error(
        "{url} answered with Content-Type {}, not text/event-stream: is this the stream's URL?",
        .content_type.as_deref().unwrap_or("(none)")
    )]
    ContentType {
        /// The URL that answered.
        url: String,
        /// The `Content-Type` received, if any.
        content_type: Option<String>,
    },
    /// More redirects in a row than [`ClientBuilder::max_redirects`](crate::ClientBuilder::max_redirects)
    /// allows, or a redirect without a usable `Location`. Not retried.
    #[error("redirect from {url} not followed: {reason}")]
    Redirect {
        /// The URL that redirected.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading the stream failed after it opened (the connection was reset, for instance).
    /// Retried.
    #[error("stream from {url} broke: {}", chain(&**.source))]
    Body {
        /// The URL of the stream.
        url: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Nothing at all (no event, no comment) arrived for longer than the idle timeout, so the
    /// connection is taken for dead. Retried.
    #[error(
        "no bytes from {url} for {idle:?}: connection taken for dead (raise or disable the idle timeout if the server sends no heartbeats)"
    )]
    IdleTimeout {
        /// The URL of the stream.
        url: String,
        /// The idle timeout.
        idle: Duration,
    },
    /// The stream broke a decoder limit. Not retried: the same data would come again.
    #[error("stream from {url} rejected: {source}")]
    Decode {
        /// The URL of the stream.
        url: String,
        /// What limit was passed.
        #[source]
        source: DecodeError,
    },
    /// The client gave up after [`ClientBuilder::max_retries`](crate::ClientBuilder::max_retries)
    /// reconnection attempts in a row failed.
    #[error("gave up after {attempts} failed reconnection attempt(s); last error: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Box<Error>,
    },
    /// The server ended the stream without sending an event (an opening comment, heartbeats or a
    /// `retry:` only), before it had been open as long as the longest reconnection delay. Retried
    /// with a growing delay, as a failure, until the retries run out; this is the last error of
    /// [`RetriesExhausted`](Error::RetriesExhausted) when every attempt ended so.
    #[error("{url} ended the stream without sending an event")]
    Closed {
        /// The URL of the stream.
        url: String,
    },
    /// [`Client::connect`](crate::Client::connect) was called while the client was running.
    #[error("the client is already connected; call disconnect() first")]
    AlreadyConnected,
}

/// An error and its sources, since hyper's own message ("client error (Connect)") hides the cause
/// (refused, DNS, certificate…) in its source chain.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Why a 2xx is an error at all, which the status alone does not say.
fn success_hint(status: StatusCode) -> &'static str {
    if status.is_success() {
        " where an event stream needs 200 OK"
    } else {
        ""
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl Error {
    /// Whether the client reconnects after this error by default.
    /// [`Http`](Error::Http) and [`ContentType`](Error::ContentType) are retried too when
    /// [`ClientBuilder::reconnect_on_http_error`](crate::ClientBuilder::reconnect_on_http_error)
    /// is on.
    ///
    /// ```
    /// use ssehub_client::Error;
    /// let err = Error::Closed { url: "http://127.0.0.1/events".into() };
    /// assert!(err.is_retried());
    /// ```
    pub fn is_retried(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Body { .. }
                | Self::IdleTimeout { .. }
                | Self::Closed { .. }
        )
    }

    /// The HTTP status, when the server answered with one that fails the connection (anything
    /// but 200, 204 and a redirect followed).
    ///
    /// ```
    /// use http::StatusCode;
    /// use ssehub_client::Error;
    /// let err = Error::Http {
    ///     url: "http://h/".into(),
    ///     status: StatusCode::NOT_FOUND,
    ///     body: String::new(),
    ///     retry_after: None,
    /// };
    /// assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    /// ```
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Http { status, .. } => Some(*status),
            Self::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }
}

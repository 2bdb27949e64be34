//! One connection attempt: the request, redirects, and the status and content-type checks.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::Error;
use crate::builder::{Config, parse_url};

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// How long reading the start of an error response's body may take.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of an error response's body goes into [`Error::Http`].
const ERROR_BODY_LIMIT: usize = 1024;

/// The HTTP client, shared by a client's connections.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    inner: Client<Connector, Full<Bytes>>,
}

impl HttpClient {
    #[cfg(feature = "rustls")]
    pub(crate) fn new(tls: Option<rustls::ClientConfig>) -> Result<Self, Error> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match tls {
            Some(mut config) => {
                // hyper-rustls sets ALPN itself and refuses a config that already has some.
                config.alpn_protocols.clear();
                builder.with_tls_config(config)
            }
            // An explicit provider, so that another crate enabling rustls' `ring` feature cannot
            // make the default provider ambiguous.
            None => builder
                .with_provider_and_webpki_roots(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .map_err(|err| Error::Tls {
                    source: Arc::new(err),
                })?,
        };
        let connector = builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http_connector());
        Ok(Self::with_connector(connector))
    }

    #[cfg(not(feature = "rustls"))]
    pub(crate) fn new() -> Self {
        Self::with_connector(http_connector())
    }

    fn with_connector(connector: Connector) -> Self {
        let inner = Client::builder(TokioExecutor::new())
            // A stream's connection is never handed back for reuse, and an idle pool would only
            // keep sockets (and tasks) alive after the client stops.
            .pool_max_idle_per_host(0)
            .build(connector);
        Self { inner }
    }
}

fn http_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    // The TLS layer needs https URLs passed through.
    http.enforce_http(false);
    // Events are small and latency matters.
    http.set_nodelay(true);
    http
}

/// Where the next request goes: the configured URL at first, then wherever redirects led.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) url: Uri,
    pub(crate) method: Method,
    pub(crate) body: Bytes,
    /// Credentials are dropped once a redirect leaves the configured origin.
    pub(crate) strip_credentials: bool,
}

impl Target {
    pub(crate) fn initial(config: &Config) -> Self {
        Self {
            url: config.url.clone(),
            method: config.method.clone(),
            body: config.body.clone(),
            strip_credentials: false,
        }
    }
}

/// A successful attempt.
pub(crate) enum Opened {
    /// An event stream: read `body`. `target` is the request that produced it, after redirects.
    Stream { body: Incoming, target: Target },
    /// HTTP 204: the server asks the client to stop for good.
    NoContent,
}

/// Sends the request for `target`, following redirects, and checks the response.
pub(crate) async fn open(
    http: &HttpClient,
    config: &Config,
    start: &Target,
    last_event_id: &str,
) -> Result<Opened, Error> {
    let mut target = start.clone();
    let mut redirects = 0;
    loop {
        let request = build_request(config, &target, last_event_id)?;
        let url = target.url.to_string();
        let sending = http.inner.request(request);
        let response = match config.idle_timeout {
            Some(idle) => {
                tokio::time::timeout(idle, sending)
                    .await
                    .map_err(|_| Error::IdleTimeout {
                        url: url.clone(),
                        idle,
                    })?
            }
            None => sending.await,
        }
        .map_err(|err| Error::Connect {
            url: url.clone(),
            source: Arc::new(err),
        })?;

        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(Opened::NoContent);
        }
        if is_redirect(status) {
            if redirects >= config.max_redirects {
                return Err(Error::Redirect {
                    url,
                    reason: format!(
                        "more than {} redirects in a row (see ClientBuilder::max_redirects)",
                        config.max_redirects
                    ),
                });
            }
            redirects += 1;
            target = follow(config, &target, status, response.headers(), &url)?;
            tracing::debug!(from = %url, to = %target.url, %status, "following redirect");
            continue;
        }
        // The spec: "if res's status is not 200 ... fail the connection", so a 201 or 206 is a
        // failure like a 404, not a stream to read (204 stops the client, above).
        if status != StatusCode::OK {
            let retry_after = retry_after(response.headers());
            // An event stream's body may never end, and it holds events, not an explanation.
            let streaming = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(is_event_stream);
            let body = if streaming {
                String::new()
            } else {
                error_body(response).await
            };
            return Err(Error::Http {
                url,
                status,
                body,
                retry_after,
            });
        }
        let content_type = response.headers().get(header::CONTENT_TYPE);
        if !content_type.is_some_and(is_event_stream) {
            return Err(Error::ContentType {
                url,
                content_type: content_type
                    .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
            });
        }
        return Ok(Opened::Stream {
            body: response.into_body(),
            target,
        });
    }
}

fn build_request(
    config: &Config,
    target: &Target,
    last_event_id: &str,
) -> Result<Request<Full<Bytes>>, Error> {
    let mut headers = HeaderMap::with_capacity(config.headers.len() + 3);
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // User headers replace the defaults above; repeated user headers are all kept.
    let mut replaced = Vec::new();
    for (name, value) in &config.headers {
        if target.strip_credentials && is_credential(name) {
            continue;
        }
        if !replaced.contains(name) {
            headers.remove(name);
            replaced.push(name.clone());
        }
        headers.append(name.clone(), value.clone());
    }
    // The spec: send the header only when the last event id is not empty.
    if !last_event_id.is_empty() {
        let value = HeaderValue::from_str(last_event_id).map_err(|_| Error::InvalidHeader {
            name: "Last-Event-ID".into(),
            reason: "the last event id is not a valid header value".into(),
        })?;
        headers.insert("last-event-id", value);
    }
    let mut request = Request::new(Full::new(target.body.clone()));
    *request.method_mut() = target.method.clone();
    *request.uri_mut() = target.url.clone();
    *request.headers_mut() = headers;
    Ok(request)
}

fn is_credential(name: &header::HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::COOKIE || name == header::PROXY_AUTHORIZATION
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The request a redirect asks for, per the Fetch standard's rules on methods and bodies.
fn follow(
    config: &Config,
    from: &Target,
    status: StatusCode,
    headers: &HeaderMap,
    url: &str,
) -> Result<Target, Error> {
    let bad = |reason: String| Error::Redirect {
        url: url.to_owned(),
        reason,
    };
    let location = headers
        .get(header::LOCATION)
        .ok_or_else(|| bad(format!("HTTP {status} without a Location header")))?
        .to_str()
        .map_err(|_| bad("the Location header is not visible ASCII".into()))?;
    let next = parse_url(&resolve(&from.url, location))
        .map_err(|err| bad(format!("Location {location:?} is unusable: {err}")))?;
    // 301/302 turn a POST into a GET, 303 turns anything but HEAD into a GET; 307/308 keep both.
    let to_get = match status.as_u16() {
        301 | 302 => from.method == Method::POST,
        303 => from.method != Method::HEAD,
        _ => false,
    };
    let (method, body) = if to_get {
        (Method::GET, Bytes::new())
    } else {
        (from.method.clone(), from.body.clone())
    };
    let strip_credentials = from.strip_credentials || !same_origin(&config.url, &next);
    Ok(Target {
        url: next,
        method,
        body,
        strip_credentials,
    })
}

fn same_origin(a: &Uri, b: &Uri) -> bool {
    a.scheme() == b.scheme() && a.host() == b.host() && effective_port(a) == effective_port(b)
}

fn effective_port(uri: &Uri) -> Option<u16> {
    uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })
}

/// Resolves a `Location` against the URL that sent it: absolute, scheme-relative,
/// absolute-path and relative-path references.
fn resolve(base: &Uri, location: &str) -> String {
    let location = location.trim();
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let authority = base.authority().map_or("", |authority| authority.as_str());
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = base.path();
    let directory = &path[..path.rfind('/').map_or(0, |slash| slash + 1)];
    let directory = if directory.is_empty() { "/" } else { directory };
    if location.starts_with('?') {
        return format!("{scheme}://{authority}{path}{location}");
    }
    format!("{scheme}://{authority}{directory}{location}")
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The start of an error response's body: servers often explain the error there.
async fn error_body(response: Response<Incoming>) -> String {
    let mut body = response.into_body();
    let mut collected = Vec::new();
    let reading = async {
        while collected.len() < ERROR_BODY_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        collected.extend_from_slice(data);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_TIMEOUT, reading).await;
    collected.truncate(ERROR_BODY_LIMIT);
    String::from_utf8_lossy(&collected).trim().to_owned()
}

/// `text/event-stream`, any case, parameters allowed.
fn is_event_stream(value: &HeaderValue) -> bool {
    let essence = value.as_bytes().split(|&b| b == b';').next().unwrap_or(b"");
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_essence() {
        for ok in [
            "text/event-stream",
            "Text/Event-Stream; charset=utf-8",
            " text/event-stream ;x=y",
        ] {
            assert!(is_event_stream(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in ["text/plain", "text/event-streams", "", "application/json"] {
            assert!(!is_event_stream(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    #[test]
    fn resolves_locations() {
        let base: Uri = "http://h:8080/a/b/events?x=1".parse().unwrap();
        assert_eq!(resolve(&base, "https://o/e"), "https://o/e");
        assert_eq!(resolve(&base, "//o:1/e"), "http://o:1/e");
        assert_eq!(resolve(&base, "/e2"), "http://h:8080/e2");
        assert_eq!(resolve(&base, "e3?y=2"), "http://h:8080/a/b/e3?y=2");
        assert_eq!(resolve(&base, "?z=3"), "http://h:8080/a/b/events?z=3");
    }

    #[test]
    fn origins() {
        let a: Uri = "http://h/a".parse().unwrap();
        assert!(same_origin(&a, &"http://h:80/b".parse().unwrap()));
        assert!(!same_origin(&a, &"https://h/a".parse().unwrap()));
        assert!(!same_origin(&a, &"http://other/a".parse().unwrap()));
    }
}

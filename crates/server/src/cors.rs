//! CORS, off until origins are given: the same origins for the event stream (the hub's lean
//! path, through its response-headers hook) and for every other route (tower-http).

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins browsers may call the hub from; `*` means any (then without credentials).
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Arc<[HeaderValue]>,
    any: bool,
}

impl Cors {
    /// CORS for these origins (already checked by the configuration).
    ///
    /// ```
    /// let cors = ssehub_server::cors::Cors::new(&["https://app.example".to_owned()]);
    /// assert!(cors.allows("https://app.example"));
    /// assert!(!cors.allows("https://evil.example"));
    /// ```
    pub fn new(origins: &[String]) -> Self {
        Self {
            any: origins.iter().any(|origin| origin == "*"),
            origins: origins
                .iter()
                .filter(|origin| *origin != "*")
                .filter_map(|origin| HeaderValue::from_str(origin).ok())
                .collect(),
        }
    }

    /// Whether `origin` may read the hub's answers.
    ///
    /// ```
    /// let cors = ssehub_server::cors::Cors::new(&["*".to_owned()]);
    /// assert!(cors.allows("https://anywhere.example"));
    /// assert!(!ssehub_server::cors::Cors::default().allows("https://anywhere.example"));
    /// ```
    pub fn allows(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|allowed| allowed == origin)
    }

    /// Whether no origin is allowed (CORS off).
    pub(crate) fn is_off(&self) -> bool {
        !self.any && self.origins.is_empty()
    }

    /// The headers of an event-stream answer to `parts`: the allowed origin echoed, with
    /// credentials (cookies) allowed, or `*` without them; `Vary: Origin` either way.
    pub(crate) fn stream_headers(&self, parts: &Parts, headers: &mut HeaderMap) {
        if self.is_off() {
            return;
        }
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        let Some(origin) = parts.headers.get(header::ORIGIN) else {
            return;
        };
        if self.origins.iter().any(|allowed| allowed == origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        } else if self.any {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }

    /// The middleware for the other routes (and every preflight, `/events`'s included).
    pub(crate) fn layer(&self) -> Option<CorsLayer> {
        if self.is_off() {
            return None;
        }
        let layer = CorsLayer::new()
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::CACHE_CONTROL,
                HeaderName::from_static("last-event-id"),
            ])
            .max_age(Duration::from_secs(600));
        Some(if self.origins.is_empty() {
            layer.allow_origin(AllowOrigin::any())
        } else {
            let origins = Arc::clone(&self.origins);
            // A listed origin may send its cookies; `*` alone may not (browsers refuse both).
            layer
                .allow_origin(AllowOrigin::predicate(move |origin, _| {
                    origins.iter().any(|allowed| allowed == origin)
                }))
                .allow_credentials(true)
        })
    }
}

//! The live page at `GET /` (off with `--no-ui`): charts of connections, users, topics, pushes
//! and deliveries per second fed by `GET /stats/stream`, a form to push a test event, and a log
//! of the events of a chosen topic.
//!
//! Plain HTML, CSS and JavaScript compiled into the binary (`crates/server/ui/`): no build step,
//! nothing fetched from elsewhere. Every file goes out with a strict Content-Security-Policy
//! (only this origin's scripts, styles and connections; no inline script; no framing) and
//! `X-Content-Type-Options: nosniff`. The script writes received data with `textContent` only,
//! and keeps the publisher key typed in the form in a variable, never in storage or a cookie.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");

/// The page's policy: its own scripts, styles and connections (`/stats/stream`, `/events`,
/// `/push`) and nothing else; no `<base>`, no form posted anywhere, never in a frame.
const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The routes of the page: `/` and its two files under `/ui/`.
pub(crate) fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// One of the page's files with its type and the security headers.
fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // A new binary may serve a new page: always ask (the files are small).
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ],
        body,
    )
        .into_response()
}

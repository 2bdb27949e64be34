//! The HTTP routes besides the event stream (which the hub's lean path serves): `POST /push`,
//! `GET /stats`, `GET /metrics`, `GET /healthz`, `GET /readyz`; every error a JSON envelope.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ssehub_hub::Hub;
use ssehub_hub::push_api::error_envelope;
use ssehub_hub::server::{PushRoute, Refusal};
use ssehub_hub::store::Store;

use crate::auth::Access;
use crate::cors::Cors;
use crate::metrics::Metrics;

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the routes share.
#[derive(Clone)]
pub(crate) struct Routes {
    pub(crate) hub: Hub,
    pub(crate) access: Arc<Access>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Metrics,
    /// `POST /push` requests accepted (for the stats stream's pushes per second).
    pub(crate) pushes: Arc<AtomicU64>,
}

/// The router for everything but the event stream, `extra`'s routes (the stats stream, the
/// live page) included, CORS and body limit included.
pub(crate) fn router(routes: Routes, max_push_bytes: usize, cors: &Cors, extra: Router) -> Router {
    let router = Router::new()
        .route(
            "/push",
            post(push).layer(DefaultBodyLimit::max(max_push_bytes)),
        )
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(routes)
        .merge(extra);
    match cors.layer() {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// `POST /push` on the lean server's push path (plain requests; the rest reach [`push`]): the
/// same credential check before the body, the same answers, the same count of accepted pushes.
pub(crate) fn lean_push_route(
    access: &Arc<Access>,
    pushes: &Arc<AtomicU64>,
    max_push_bytes: usize,
) -> PushRoute {
    let access = Arc::clone(access);
    let pushes = Arc::clone(pushes);
    PushRoute::new("/push")
        .max_body_bytes(max_push_bytes)
        .authorize(move |headers| {
            access.may_publish(headers).map_err(|(status, message)| {
                // A `401` gets its `WWW-Authenticate: Bearer` from the server.
                Box::new(
                    Refusal::new(status)
                        .with_header(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )
                        .with_body(error_envelope(status.as_u16(), &message)),
                )
            })
        })
        .on_answer(move |status| {
            if status == StatusCode::OK {
                pushes.fetch_add(1, Ordering::Relaxed);
            }
        })
}

/// `POST /push`: the credential first, the body only then, so a client without the key cannot
/// make the hub read (and hold) a body of up to `--max-push-bytes`.
async fn push(State(routes): State<Routes>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Err((status, message)) = routes.access.may_publish(&parts.headers) {
        let mut response = envelope(status, &message);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return response;
    }
    // The body limit travels in the request's extensions (`DefaultBodyLimit`), kept in `parts`.
    let body = match Bytes::from_request(Request::from_parts(parts, body), &()).await {
        Ok(body) => body,
        Err(rejection) => return envelope(rejection.status(), &rejection.body_text()),
    };
    let response = ssehub_hub::axum::push_response(&routes.hub, &body).await;
    if response.status() == StatusCode::OK {
        routes.pushes.fetch_add(1, Ordering::Relaxed);
    }
    response
}

/// The seed's four counters and who is online.
async fn stats(State(routes): State<Routes>) -> Response {
    json(
        StatusCode::OK,
        serde_json::to_string(&Stats::of(&routes.hub)).unwrap_or_default(),
    )
}

/// `/stats`'s numbers (also the start of each event of the stats stream).
#[derive(serde::Serialize)]
pub(crate) struct Stats {
    total: u64,
    success: u64,
    failed: u64,
    timeout: u64,
    connections: usize,
    users: usize,
    topics: usize,
}

impl Stats {
    pub(crate) fn of(hub: &Hub) -> Self {
        let stats = hub.stats();
        Self {
            total: stats.total,
            success: stats.success,
            failed: stats.failed,
            timeout: stats.timeout,
            connections: stats.connections,
            users: stats.online_users,
            topics: stats.topics,
        }
    }
}

async fn metrics(State(routes): State<Routes>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        routes.metrics.render(&routes.hub),
    )
        .into_response()
}

/// Alive: the process answers.
async fn healthz() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
}

/// Ready: the hub is open and its store answers.
async fn readyz(State(routes): State<Routes>) -> Response {
    if routes.hub.is_closed() {
        return envelope(StatusCode::SERVICE_UNAVAILABLE, "the hub is shutting down");
    }
    match tokio::time::timeout(READY_TIMEOUT, routes.store.last_seq()).await {
        Ok(Ok(_)) => json(StatusCode::OK, r#"{"status":"ready"}"#.to_owned()),
        Ok(Err(error)) => envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the store fails: {error}"),
        ),
        Err(_) => envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the store did not answer within {READY_TIMEOUT:?}"),
        ),
    }
}

async fn not_found() -> Response {
    envelope(
        StatusCode::NOT_FOUND,
        "no such route; the hub serves GET /events, POST /push, GET /stats, GET /metrics, GET /healthz, GET /readyz",
    )
}

/// An error in the seed's envelope.
pub(crate) fn envelope(status: StatusCode, message: &str) -> Response {
    json(status, error_envelope(status.as_u16(), message))
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

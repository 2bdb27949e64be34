//! The router of the HTTPS path: `GET`/`HEAD /events` ([`answer`], which HTTP/1.1 streams also
//! go through, written by `h1.rs`), with the same authentication, topics, CORS and refusals as
//! the lean path, and every other route as on the cleartext path, behind the same limits.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use ssehub_hub::server::{DEFAULT_MAX_FALLBACK_REQUESTS, DEFAULT_REQUEST_TIMEOUT, Refusal};
use ssehub_hub::{DEFAULT_MAX_TOPIC_LEN, Hub, SubscribeOptions};

use crate::auth::Access;
use crate::cors::Cors;

/// The over-capacity wait of `serve`'s hub (its default): `Retry-After` of a shed request.
const OVER_CAPACITY_RETRY: Duration = Duration::from_secs(5);

/// What the stream route needs.
#[derive(Clone)]
pub(crate) struct Events {
    pub(crate) hub: Hub,
    pub(crate) access: Arc<Access>,
    pub(crate) cors: Cors,
}

/// `/events` beside `routes` (the cleartext path's fallback router), which gets the lean
/// path's limits on fallback requests: a request timeout (`408`) and a server-wide concurrency
/// limit (`503`). The stream route is outside them, as on the lean path: a stream's response
/// starts at once and then lasts.
pub(crate) fn router(events: Events, routes: Router) -> Router {
    let routes = guard(routes);
    // Other methods of `/events` (a CORS preflight) go to the routes, as on the lean path.
    Router::new()
        .route(
            "/events",
            get(stream).head(stream).fallback_service(routes.clone()),
        )
        .with_state(events)
        .fallback_service(routes)
}

/// The route's handler (HTTP/2, and HTTP/1.1 through hyper).
async fn stream(State(events): State<Events>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    answer(&events, parts).await
}

/// The event stream, or the answer the lean path would give instead. `HEAD` gets the `GET`'s
/// status and headers without subscribing.
pub(crate) async fn answer(events: &Events, mut parts: http::request::Parts) -> Response {
    // The hub's stream headers (`sse_response` adds them to a stream) are added to every
    // answer here, as the lean path does, and CORS's for this request's origin.
    let mut headers = HeaderMap::new();
    headers.insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    events.cors.stream_headers(&parts, &mut headers);
    let head_only = parts.method == Method::HEAD;
    let response = match events.access.subscriber(&parts) {
        Err(refusal) => refused(*refusal),
        Ok(subscriber) => match SubscribeOptions::from_request_parts(&mut parts, &()).await {
            Err(response) => response,
            Ok(options) if head_only => head(&events.hub, &subscriber, options),
            Ok(options) => ssehub_hub::axum::subscriber_response(&events.hub, &subscriber, options),
        },
    };
    with_headers(response, headers)
}

/// What `GET` would answer, short of subscribing (and of the stream caps, which only a
/// subscription checks).
fn head(hub: &Hub, subscriber: &ssehub_hub::Subscriber, options: SubscribeOptions) -> Response {
    if let Err(error) = subscriber.admit(options.clone()) {
        return (StatusCode::FORBIDDEN, error.to_string()).into_response();
    }
    for topic in &options.topics {
        if let Err(error) = ssehub_hub::check_topic(topic, DEFAULT_MAX_TOPIC_LEN) {
            return (StatusCode::BAD_REQUEST, format!("topic {topic:?}: {error}")).into_response();
        }
    }
    if hub.is_closed() {
        return StatusCode::NO_CONTENT.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        (),
    )
        .into_response()
}

/// A refusal of the authentication as a response (a `401` always carries a challenge).
fn refused(refusal: Refusal) -> Response {
    let mut response = (refusal.status(), refusal.body().clone()).into_response();
    let headers = response.headers_mut();
    for (name, value) in refusal.headers() {
        headers.append(name, value.clone());
    }
    if refusal.status() == StatusCode::UNAUTHORIZED
        && !headers.contains_key(header::WWW_AUTHENTICATE)
    {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// `extra` added to `response`, unless it already sets the same header.
fn with_headers(mut response: Response, extra: HeaderMap) -> Response {
    let headers = response.headers_mut();
    let mut last = None;
    for (name, value) in extra {
        // `HeaderMap`'s iterator names only the first of several values.
        if let Some(name) = name {
            last = (!headers.contains_key(&name)).then_some(name);
        }
        if let Some(name) = &last {
            headers.append(name, value);
        }
    }
    response
}

/// The lean server's limits on fallback requests (`ssehub_hub::server`'s defaults): one
/// semaphore over every route (a plain `ConcurrencyLimitLayer` on a `Router` would give each
/// route its own), load shed past it, and a timeout from head to response.
fn guard(routes: Router) -> Router {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_FALLBACK_REQUESTS));
    let layers = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|error: tower::BoxError| async move {
            limited(&error)
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
            semaphore,
        ))
        .timeout(DEFAULT_REQUEST_TIMEOUT);
    Router::new().fallback_service(routes).layer(layers)
}

/// The answer to a request the limits stopped.
fn limited(error: &tower::BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        let message = "the request took longer than the server's request timeout";
        // The body may be half read: the connection cannot carry another request.
        (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            message,
        )
            .into_response()
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        let message = "the server is handling its maximum of requests; try again later";
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(
                header::RETRY_AFTER,
                OVER_CAPACITY_RETRY.as_secs().to_string(),
            )],
            message,
        )
            .into_response()
    } else {
        tracing::error!(%error, "request failed");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

//! axum handlers: the event stream and the seed's push API.
//!
//! ```no_run
//! use axum::{Router, extract::Request, middleware::{self, Next}, response::Response};
//! use ssehub_hub::{Hub, axum::SubscriberId};
//!
//! // Real applications take the uid from a verified token or session here.
//! async fn auth(mut request: Request, next: Next) -> Response {
//!     request.extensions_mut().insert(SubscriberId("u001".to_owned()));
//!     next.run(request).await
//! }
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let hub = Hub::new();
//! let app = Router::new()
//!     .route("/events", ssehub_hub::axum::events(hub.clone()))
//!     .route_layer(middleware::from_fn(auth))
//!     .route("/push", ssehub_hub::axum::push(hub.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, FromRequestParts};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, MethodRouter};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::push_api::{PushRequest, PushRequestError, error_envelope, ok_envelope};
use crate::{Hub, PushError, SubscribeError, SubscribeOptions, Subscriber};

/// The subscriber's uid, put into the request's extensions by your authentication middleware.
/// [`events`] serves the stream of this uid, with no topic; insert a [`Subscriber`] instead to
/// allow topics.
///
/// ```
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(ssehub_hub::axum::SubscriberId("u001".to_owned()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberId(pub String);

/// Reads `Last-Event-ID` / `Event-Type` from the headers, else `last_event_id` / `event_type`
/// from the query, and the topics from the query (`topic`, repeatable). A header that is not
/// UTF-8, a query value that is not UTF-8 once decoded, or a resume parameter given twice is a
/// `400`.
impl<S: Send + Sync> FromRequestParts<S> for SubscribeOptions {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        subscribe_options(parts).map_err(|message| plain(StatusCode::BAD_REQUEST, &message))
    }
}

/// What the client asks for: `?topic=` (repeatable), and where to resume: `Last-Event-ID` /
/// `Event-Type` headers, else the `last_event_id` / `event_type` query. Other query parameters
/// are the application's and are ignored. The one place this is read, for the extractor and for
/// the lean server (`crate::server`); the error is the message for a `400`.
pub(crate) fn subscribe_options(parts: &Parts) -> Result<SubscribeOptions, String> {
    let mut options = SubscribeOptions::default();
    let (mut query_id, mut query_type) = (None, None);
    let query = parts.uri.query().unwrap_or_default();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = query_text(key, key)?;
        let slot = match key.as_str() {
            "topic" => {
                options.topics.push(query_text(&key, value)?);
                continue;
            }
            "last_event_id" => &mut query_id,
            "event_type" => &mut query_type,
            _ => continue,
        };
        if slot.replace(query_text(&key, value)?).is_some() {
            return Err(format!("query: {key} is given twice; give it once"));
        }
    }
    options.last_event_id = header(&parts.headers, "last-event-id")?.or(query_id);
    options.event_type = header(&parts.headers, "event-type")?.or(query_type);
    Ok(options)
}

/// A query key or value, `+` and percent escapes decoded; it must be UTF-8 (a topic decoded
/// lossily would silently be another topic).
fn query_text(key: &str, raw: &str) -> Result<String, String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| format!("query: {key} is not UTF-8 once percent-decoded"))
}

fn header(headers: &HeaderMap, name: &str) -> Result<Option<String>, String> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| format!("the {name} header is not valid text"))
        })
        .transpose()
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, message.to_owned()).into_response()
}

/// Subscribes `uid` and answers with its event stream: `200`, `Content-Type: text/event-stream`,
/// `Cache-Control: no-cache` and the hub's extra stream headers. A closed hub answers `204`
/// (spec-conformant clients stop); a hub closing for restart answers a stream that ends at once,
/// so clients reconnect after their reconnection time (to this node once it is back, or another).
///
/// Use it from your own handler when the uid does not come from [`SubscriberId`]:
///
/// ```
/// use axum::{extract::{Path, State}, response::Response};
/// use ssehub_hub::{Hub, SubscribeOptions};
///
/// async fn events(State(hub): State<Hub>, Path(room): Path<String>, options: SubscribeOptions) -> Response {
///     ssehub_hub::axum::sse_response(&hub, &room, options)
/// }
/// let app: axum::Router = axum::Router::new()
///     .route("/rooms/{room}/events", axum::routing::get(events))
///     .with_state(Hub::new());
/// ```
pub fn sse_response(hub: &Hub, uid: &str, options: SubscribeOptions) -> Response {
    match hub.subscribe(uid, options) {
        Ok(subscription) => {
            let mut response = event_stream(Body::new(subscription));
            let headers = response.headers_mut();
            for (name, value) in &hub.config().stream_headers {
                headers.insert(name, value.clone());
            }
            response
        }
        Err(error) => subscribe_error_response(hub, error),
    }
}

/// The answer to a subscription the hub refused.
pub(crate) fn subscribe_error_response(hub: &Hub, error: SubscribeError) -> Response {
    match error {
        SubscribeError::Closed => StatusCode::NO_CONTENT.into_response(),
        SubscribeError::Restarting => {
            // An empty stream that ends at once: EventSource and ssehub clients reconnect after
            // their reconnection time (a 503 would make a browser give up for good).
            event_stream(Body::from(":restarting\n"))
        }
        error @ (SubscribeError::AtCapacity { .. } | SubscribeError::UidAtCapacity { .. }) => {
            tracing::debug!(%error, "stream refused");
            over_capacity(hub)
        }
        error @ SubscribeError::TopicForbidden { .. } => {
            plain(StatusCode::FORBIDDEN, &error.to_string())
        }
        error @ (SubscribeError::EmptyUid
        | SubscribeError::InvalidTopic { .. }
        | SubscribeError::TooManyTopics { .. }) => {
            plain(StatusCode::BAD_REQUEST, &error.to_string())
        }
    }
}

/// The head of an event stream with an empty body: the answer to `HEAD`, or a stream that ends
/// at once.
#[cfg(feature = "server")]
pub(crate) fn sse_response_head() -> Response {
    event_stream(Body::empty())
}

/// [`sse_response`] for a [`Subscriber`]: the topics `options` ask for are checked against the
/// subscriber's allowed topics first; one outside them is a `403` naming it.
///
/// ```
/// use axum::{extract::State, http::HeaderMap, response::Response};
/// use ssehub_hub::{AllowedTopics, Hub, SubscribeOptions, Subscriber};
///
/// async fn events(State(hub): State<Hub>, headers: HeaderMap, options: SubscribeOptions) -> Response {
///     // A real application reads the uid and its topics from a verified token.
///     let subscriber = Subscriber::new("alice").allow_topics(AllowedTopics::new(["orders/alice/*"]));
///     ssehub_hub::axum::subscriber_response(&hub, &subscriber, options)
/// }
/// let app: axum::Router = axum::Router::new()
///     .route("/events", axum::routing::get(events))
///     .with_state(Hub::new());
/// ```
pub fn subscriber_response(
    hub: &Hub,
    subscriber: &Subscriber,
    options: SubscribeOptions,
) -> Response {
    match subscriber.admit(options) {
        Ok(options) => sse_response(hub, &subscriber.uid, options),
        Err(error) => plain(StatusCode::FORBIDDEN, &error.to_string()),
    }
}

/// The answer to a stream over a cap: a `200` stream that sets the client's reconnection time
/// to the hub's over-capacity wait (jittered) and ends, so browsers and ssehub clients come back
/// later (on `503` they would give up for good); `Retry-After` says the same to everyone else.
fn over_capacity(hub: &Hub) -> Response {
    let (body, retry_after) =
        crate::admission::over_capacity_body(hub.config().over_capacity_retry);
    let mut response = event_stream(Body::from(body));
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// A `200` event-stream response with `body`.
fn event_stream(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A `GET` route serving the event stream of the request's [`Subscriber`] extension (its uid,
/// and the `?topic=`s it asked for if its allowed topics cover them, else `403`), or of the uid
/// in a [`SubscriberId`] extension (no topic allowed), resuming from `Last-Event-ID` /
/// `last_event_id`. Without either extension it answers `500`: the authentication middleware is
/// missing.
///
/// ```
/// let hub = ssehub_hub::Hub::new();
/// let app: axum::Router = axum::Router::new().route("/events", ssehub_hub::axum::events(hub));
/// ```
pub fn events<S>(hub: Hub) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    routing::get(
        move |subscriber: Option<Extension<Subscriber>>,
              uid: Option<Extension<SubscriberId>>,
              options: SubscribeOptions| async move {
            match (subscriber, uid) {
                (Some(Extension(subscriber)), _) => subscriber_response(&hub, &subscriber, options),
                (None, Some(Extension(SubscriberId(uid)))) => {
                    subscriber_response(&hub, &Subscriber::new(uid), options)
                }
                (None, None) => {
                    tracing::error!(
                        "no Subscriber or SubscriberId in the request: put your auth middleware in front of the events route"
                    );
                    plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the server has no subscriber identity for this request",
                    )
                }
            }
        },
    )
}

/// Handles a push API request body (see [`push_api`](crate::push_api)) and answers with the
/// seed's envelope: `200` and the ids; `400` naming the bad field, `413` for an event's data over
/// [`HubBuilder::max_data_len`](crate::HubBuilder::max_data_len) (nothing is pushed either way);
/// `503` when the hub is closed or its store failed.
///
/// Recipients are explicit: a body with `uids` calls [`Hub::push`], a body **without** `uids`
/// calls [`Hub::broadcast`] (the seed's contract); `"uids": []` and unknown fields such as a
/// mistyped `"uid"` are a `400`, never a broadcast. Events of the reserved types (`close`,
/// `history-gap`) are a `400` unless the hub was built with
/// [`allow_reserved_event_types_over_http`](crate::HubBuilder::allow_reserved_event_types_over_http).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = ssehub_hub::Hub::new();
/// let response = ssehub_hub::axum::push_response(&hub, br#"{"events":[{"data":"hi"}]}"#).await;
/// assert_eq!(response.status(), 200);
/// let response = ssehub_hub::axum::push_response(&hub, br#"{"events":[]}"#).await;
/// assert_eq!(response.status(), 400);
/// let typo = br#"{"uid":["alice"],"events":[{"data":"hi"}]}"#;
/// assert_eq!(ssehub_hub::axum::push_response(&hub, typo).await.status(), 400);
/// # }
/// ```
pub async fn push_response(hub: &Hub, body: &[u8]) -> Response {
    let (status, body) = push_answer(hub, body).await;
    json(status, body)
}

/// [`push_response`]'s status and JSON body, for servers that frame the answer themselves.
pub(crate) async fn push_answer(hub: &Hub, body: &[u8]) -> (StatusCode, String) {
    let request = match PushRequest::parse(body, Some(&hub.config().limits)) {
        Ok(request) => request,
        Err(error) => return error_answer(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    if !hub.config().reserved_over_http
        && let Err(error) = request.refuse_reserved_event_types()
    {
        return error_answer(StatusCode::BAD_REQUEST, &error.to_string());
    }
    let pushed = hub.push_to(request.recipients(), request.events).await;
    match pushed {
        Ok(receipt) => (StatusCode::OK, ok_envelope(&receipt)),
        Err(error @ PushError::DuplicateId { .. }) => {
            error_answer(StatusCode::CONFLICT, &error.to_string())
        }
        Err(error @ (PushError::Closed | PushError::Store(_) | PushError::StoreTimeout { .. })) => {
            // Not the publisher's fault: it may retry (against another node, or later).
            error_answer(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
        }
        Err(error @ PushError::TooLarge { .. }) => {
            error_answer(StatusCode::PAYLOAD_TOO_LARGE, &error.to_string())
        }
        Err(error) => error_answer(
            StatusCode::BAD_REQUEST,
            &PushRequestError::from(error).to_string(),
        ),
    }
}

fn error_answer(status: StatusCode, message: &str) -> (StatusCode, String) {
    (status, error_envelope(status.as_u16(), message))
}

/// A `POST` route for the seed's push API (`{"uids":[...],"events":[...]}`; without `uids`, a
/// broadcast), answered by [`push_response`]. Requests larger than axum's body limit (2 MiB unless
/// you set `DefaultBodyLimit`) get `413` in the same envelope, as does an event's data over the
/// hub's [`max_data_len`](crate::HubBuilder::max_data_len). Guard it: anyone who can reach it can
/// push to anyone.
///
/// ```
/// let hub = ssehub_hub::Hub::new();
/// let app: axum::Router = axum::Router::new().route("/push", ssehub_hub::axum::push(hub));
/// ```
pub fn push<S>(hub: Hub) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    routing::post(move |body: Result<Bytes, BytesRejection>| async move {
        match body {
            Ok(body) => push_response(&hub, &body).await,
            Err(rejection) => envelope(rejection.status(), &rejection.body_text()),
        }
    })
}

fn envelope(status: StatusCode, message: &str) -> Response {
    json(status, error_envelope(status.as_u16(), message))
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

//! One accepted connection: its first request head decides between the lean event stream and
//! hyper with the fallback router.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use bytes::BytesMut;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::head::{self, HeadError, Route};
use super::prefixed::Prefixed;
use super::response::{closing_response, respond_and_close, stream_head};
use super::stream::EventStream;
use super::{Inner, Refusal, fallback, push};
use crate::SubscribeError;

/// Serves one connection to its end.
///
/// This future is the task of every idle event stream, so it is kept small: everything before
/// the stream (reading the head, authenticating) is one boxed future, freed when done, and the
/// stream holds only the socket, the subscription and a few words.
pub(super) async fn serve(
    inner: Arc<Inner>,
    socket: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    match Box::pin(decide(&inner, socket, peer, &shutdown)).await {
        Decision::Stream(stream) => {
            drop((inner, shutdown)); // the hub's close ends a stream, not the server's
            let end = stream.await;
            tracing::debug!(%peer, %end, "event stream ended");
        }
        Decision::Fallback(io) => Box::pin(fallback::serve(inner, io, peer, shutdown)).await,
        Decision::Push(socket, buf) => {
            Box::pin(push::serve(inner, socket, buf, peer, shutdown)).await;
        }
        Decision::Answer(socket, response) => {
            let write_timeout = inner.write_timeout;
            drop((inner, shutdown));
            Box::pin(respond_and_close(socket, &response, write_timeout)).await;
        }
        Decision::Close => {}
    }
}

/// What the first request of a connection leads to.
enum Decision {
    /// The event stream to run. Boxed: held by value, it would take its size twice in the
    /// connection's future (a moved-from local keeps its place there until its scope ends).
    Stream(Pin<Box<EventStream>>),
    /// Not an event stream: hyper serves the connection, the bytes read replayed first.
    Fallback(Prefixed<TcpStream>),
    /// A push, for the lean push path, with the bytes read.
    Push(TcpStream, Vec<u8>),
    /// The answer to write before closing: a refusal, the answer to `HEAD`, ...
    Answer(TcpStream, BytesMut),
    /// Close without an answer: the client left, shutdown, or a timeout.
    Close,
}

/// Reads the first head and, for an event stream, authenticates and subscribes. Reading the head
/// and authenticating share one deadline: a connection becomes a stream, or gets its answer,
/// within the head timeout of being accepted.
async fn decide(
    inner: &Inner,
    mut socket: TcpStream,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Decision {
    let deadline = Instant::now() + inner.head_timeout;
    let mut buf = Vec::with_capacity(head::INITIAL_HEAD_BUFFER);
    let route = tokio::select! {
        read = tokio::time::timeout_at(
            deadline,
            head::read_route(&mut socket, &mut buf, head::Paths {
                events: &inner.events_path,
                push: inner.push.as_ref().map(|route| route.path.as_str()),
            }),
        ) => read,
        // A connection that has not sent its first request has nothing to finish.
        () = shutdown.cancelled() => return Decision::Close,
    };
    let (status, error) = match route {
        Ok(Ok(Route::Events(parts))) => {
            drop(buf);
            return start_events(inner, socket, parts, peer, deadline, shutdown).await;
        }
        Ok(Ok(Route::Other)) => return Decision::Fallback(Prefixed::new(buf, socket)),
        Ok(Ok(Route::Push)) => return Decision::Push(socket, buf),
        Ok(Err(error @ HeadError::TooLarge)) => {
            (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, error)
        }
        Ok(Err(error @ HeadError::UriTooLong)) => (StatusCode::URI_TOO_LONG, error),
        Ok(Err(error @ (HeadError::Parse(_) | HeadError::Malformed(_)))) => {
            (StatusCode::BAD_REQUEST, error)
        }
        Ok(Err(error @ (HeadError::Closed | HeadError::Io(_)))) => {
            tracing::debug!(%peer, %error, "connection ended before its request");
            return Decision::Close;
        }
        Err(_elapsed) => {
            // As hyper does when its header read timeout passes: close without an answer.
            tracing::debug!(%peer, "no request head within the head timeout");
            return Decision::Close;
        }
    };
    let headers = &inner.hub.config().stream_headers;
    Decision::Answer(socket, answer(headers, status, &error.to_string(), false))
}

/// A short answer of the lean path, with these stream headers.
fn answer(headers: &HeaderMap, status: StatusCode, body: &str, head_only: bool) -> BytesMut {
    let refusal = Refusal::new(status).with_body(body.to_owned());
    closing_response(&refusal, headers, head_only)
}

/// Authenticates (until `deadline`) and subscribes. A `HEAD` request gets the answer a `GET`
/// would get, without the body, and leaves no subscription behind.
async fn start_events(
    inner: &Inner,
    socket: TcpStream,
    mut parts: Box<Parts>,
    peer: SocketAddr,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Decision {
    parts.extensions.insert(ConnectInfo(peer));
    let head_only = parts.method == Method::HEAD;
    let verdict = tokio::select! {
        verdict = tokio::time::timeout_at(deadline, inner.authenticate.authenticate_boxed(&parts)) => verdict,
        () = shutdown.cancelled() => return Decision::Close,
    };
    let headers = inner.headers_for(&parts);
    let subscriber = match verdict {
        Ok(Ok(subscriber)) => subscriber,
        Ok(Err(refusal)) => {
            return Decision::Answer(socket, closing_response(&refusal, &headers, head_only));
        }
        Err(_elapsed) => {
            // Closing (rather than a 5xx) lets EventSource and ssehub clients retry later: a
            // slow session store is usually a passing trouble. Loud, because the hook is slow.
            tracing::warn!(%peer, timeout = ?inner.head_timeout, "authentication did not answer within the head timeout; closing the connection");
            return Decision::Close;
        }
    };
    let options = match crate::axum::subscribe_options(&parts) {
        Ok(options) => options,
        Err(message) => {
            let response = answer(&headers, StatusCode::BAD_REQUEST, &message, head_only);
            return Decision::Answer(socket, response);
        }
    };
    let hub = &inner.hub;
    let uid = subscriber.uid.as_str();
    let mut head = stream_head(&headers);
    let subscribed = match subscriber.admit(options) {
        Err(error) => Err(error),
        Ok(options) if head_only => hub.check_subscribe(uid, &options).map(|()| None),
        Ok(options) => hub.subscribe(uid, options).map(Some),
    };
    let subscription = match subscribed {
        Ok(Some(subscription)) => Some(subscription),
        Ok(None) => return Decision::Answer(socket, head), // HEAD: the head alone
        Err(SubscribeError::Restarting) => {
            // An empty stream that ends at once: EventSource and ssehub clients reconnect after
            // their reconnection time (a 503 would make a browser give up for good).
            if head_only {
                return Decision::Answer(socket, head);
            }
            head.extend_from_slice(b":restarting\n");
            None
        }
        // Spec-conformant clients stop on 204.
        Err(SubscribeError::Closed) => {
            let response = answer(&headers, StatusCode::NO_CONTENT, "", head_only);
            return Decision::Answer(socket, response);
        }
        Err(error @ (SubscribeError::AtCapacity { .. } | SubscribeError::UidAtCapacity { .. })) => {
            // A stream that tells the client when to come back, as the axum handler answers
            // (a 503 would make a browser give up for good).
            tracing::debug!(%peer, uid, %error, "stream refused");
            let (body, retry_after) =
                crate::admission::over_capacity_body(hub.config().over_capacity_retry);
            let mut headers = headers.into_owned();
            headers.insert(http::header::RETRY_AFTER, retry_after.into());
            head = stream_head(&headers);
            head.extend_from_slice(&body);
            None
        }
        Err(error @ SubscribeError::TopicForbidden { .. }) => {
            tracing::debug!(%peer, uid, %error, "stream refused");
            let response = answer(
                &headers,
                StatusCode::FORBIDDEN,
                &error.to_string(),
                head_only,
            );
            return Decision::Answer(socket, response);
        }
        Err(
            error @ (SubscribeError::EmptyUid
            | SubscribeError::InvalidTopic { .. }
            | SubscribeError::TooManyTopics { .. }),
        ) => {
            let response = answer(
                &headers,
                StatusCode::BAD_REQUEST,
                &error.to_string(),
                head_only,
            );
            return Decision::Answer(socket, response);
        }
    };
    Decision::Stream(Box::pin(EventStream::new(
        socket,
        subscription,
        &inner.hub,
        head.freeze(),
        inner.write_timeout,
    )))
}

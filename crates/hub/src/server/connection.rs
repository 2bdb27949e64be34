//! One accepted connection: its first request head decides between the lean event stream and
//! hyper with the fallback router.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use bytes::BytesMut;
use http::StatusCode;
use http::request::Parts;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::head::{self, HeadError, Route};
use super::prefixed::Prefixed;
use super::response::{respond_and_close, short_response, stream_head};
use super::stream::EventStream;
use super::{Inner, fallback};
use crate::SubscribeError;

/// Serves one connection to its end.
///
/// This future is the task of every idle event stream, so it is kept small: every phase but
/// the stream itself is boxed (and freed when done), and the stream holds only the socket, the
/// subscription and a few words.
pub(super) async fn serve(
    inner: Arc<Inner>,
    mut socket: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let mut buf = Vec::with_capacity(head::INITIAL_HEAD_BUFFER);
    let route = Box::pin(async {
        tokio::select! {
            read = tokio::time::timeout(
                inner.head_timeout,
                head::read_route(&mut socket, &mut buf, &inner.events_path),
            ) => Some(read),
            // A connection that has not sent its first request has nothing to finish.
            () = shutdown.cancelled() => None,
        }
    })
    .await;
    let write_timeout = inner.write_timeout;
    let answer = match route {
        None => return,
        Some(Ok(Ok(Route::Events(parts)))) => {
            drop(buf);
            match start_events(&inner, socket, *parts, peer) {
                Ok(stream) => {
                    drop((inner, shutdown)); // the hub's close ends a stream, not the server's
                    let end = stream.await;
                    tracing::debug!(%peer, %end, "event stream ended");
                    return;
                }
                Err(refused) => refused,
            }
        }
        Some(Ok(Ok(Route::Other))) => {
            let io = Prefixed::new(buf, socket);
            return Box::pin(fallback::serve(inner, io, peer, shutdown)).await;
        }
        Some(Ok(Err(error @ HeadError::TooLarge))) => {
            let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            (socket, short_response(status, &error.to_string()))
        }
        Some(Ok(Err(error @ (HeadError::Parse(_) | HeadError::Malformed(_))))) => (
            socket,
            short_response(StatusCode::BAD_REQUEST, &error.to_string()),
        ),
        Some(Ok(Err(error @ (HeadError::Closed | HeadError::Io(_))))) => {
            tracing::debug!(%peer, %error, "connection ended before its request");
            return;
        }
        Some(Err(_elapsed)) => {
            // As hyper does when its header read timeout passes: close without an answer.
            tracing::debug!(%peer, "no request head within the head timeout");
            return;
        }
    };
    let (socket, response) = answer;
    Box::pin(respond_and_close(socket, &response, write_timeout)).await;
}

/// Authenticates and subscribes: the stream to run, or the socket and the answer that refuses.
///
/// The stream comes boxed: held by value, it would take its size twice in the connection's
/// future (a moved-from local keeps its place there until its scope ends).
fn start_events(
    inner: &Inner,
    socket: TcpStream,
    mut parts: Parts,
    peer: SocketAddr,
) -> Result<Pin<Box<EventStream>>, (TcpStream, BytesMut)> {
    parts.extensions.insert(ConnectInfo(peer));
    let uid = match (inner.authenticate)(&parts) {
        Ok(uid) => uid,
        Err(status) if status.is_informational() => {
            // A 1xx is not a final answer: the client would wait for another one.
            tracing::error!(%status, "the authenticate function returned a 1xx status; answering 500");
            return Err((
                socket,
                short_response(StatusCode::INTERNAL_SERVER_ERROR, ""),
            ));
        }
        Err(status) => return Err((socket, short_response(status, ""))),
    };
    let options = match crate::axum::subscribe_options(&parts) {
        Ok(options) => options,
        Err(message) => return Err((socket, short_response(StatusCode::BAD_REQUEST, &message))),
    };
    let hub = &inner.hub;
    let mut head = stream_head(&hub.config().stream_headers);
    let subscription = match hub.subscribe(&uid, options) {
        Ok(subscription) => Some(subscription),
        Err(SubscribeError::Restarting) => {
            // An empty stream that ends at once: EventSource and ssehub clients reconnect after
            // their reconnection time (a 503 would make a browser give up for good).
            head.extend_from_slice(b":restarting\n");
            None
        }
        // Spec-conformant clients stop on 204.
        Err(SubscribeError::Closed) => {
            return Err((socket, short_response(StatusCode::NO_CONTENT, "")));
        }
        Err(error @ (SubscribeError::AtCapacity { .. } | SubscribeError::UidAtCapacity { .. })) => {
            // A stream that tells the client when to come back, as the axum handler answers
            // (a 503 would make a browser give up for good).
            tracing::debug!(%peer, uid, %error, "stream refused");
            let (body, retry_after) =
                crate::admission::over_capacity_body(hub.config().over_capacity_retry);
            let mut headers = hub.config().stream_headers.clone();
            headers.insert(http::header::RETRY_AFTER, retry_after.into());
            head = stream_head(&headers);
            head.extend_from_slice(&body);
            None
        }
        Err(error @ SubscribeError::EmptyUid) => {
            return Err((
                socket,
                short_response(StatusCode::BAD_REQUEST, &error.to_string()),
            ));
        }
    };
    Ok(Box::pin(EventStream::new(
        socket,
        subscription,
        head.freeze(),
        inner.write_timeout,
    )))
}

//! Every request that is not an event stream: the connection goes to hyper and the fallback
//! router, as `axum::serve` would serve it. A later request of such a connection for the events
//! path (a browser reuses the kept-alive connection that fetched a page for its `EventSource`)
//! is a stream too, served by hyper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::prefixed::Prefixed;

/// `router` behind the limits every fallback request gets: at most `semaphore`'s permits at once over
/// the whole server (past it `503` with `Retry-After` at once: waiting would hold memory and a
/// connection for each), and `timeout` from the head to the response, reading the body
/// included (past it `408`: a trickled body can hold neither a connection nor a graceful
/// shutdown for longer).
pub(super) fn guard(
    router: Router,
    timeout: Duration,
    semaphore: Arc<tokio::sync::Semaphore>,
    over_capacity_retry: Duration,
) -> Router {
    // One semaphore for every route (and the lean push path): `Router::layer` layers each route
    // on its own, and a plain `ConcurrencyLimitLayer` would give each its own limit.
    let layers = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(
            move |error: tower::BoxError| async move { refusal(&error, over_capacity_retry) },
        ))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
            semaphore,
        ))
        .timeout(timeout);
    // The application's router, routes and fallback alike, as the fallback of one that adds
    // the limits.
    Router::new().fallback_service(router).layer(layers)
}

/// The body of the `408` past the request timeout (the lean push path's too).
pub(super) const TIMED_OUT: &str = "the request took longer than the server's request timeout";

/// The body of the `503` past the limit on requests at once (the lean push path's too).
pub(super) const AT_CAPACITY: &str =
    "the server is handling its maximum of requests; try again later";

/// The `Retry-After` (seconds) of that `503`: the hub's wait, jittered.
pub(super) fn retry_after(over_capacity_retry: Duration) -> u64 {
    crate::admission::retry_after_secs(crate::admission::jittered(over_capacity_retry))
}

/// The answer to a request the limits stopped.
fn refusal(error: &tower::BoxError, over_capacity_retry: Duration) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        // The body may be half read: the connection cannot carry another request.
        let mut response = (StatusCode::REQUEST_TIMEOUT, TIMED_OUT).into_response();
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        response
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(
                http::header::RETRY_AFTER,
                retry_after(over_capacity_retry).to_string(),
            )],
            AT_CAPACITY,
        )
            .into_response()
    } else {
        // The router itself never fails (its error type is `Infallible`).
        tracing::error!(%error, "fallback request failed");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

/// Serves the connection with hyper (HTTP/1.1, keep-alive, upgrades) until it ends, or until
/// shutdown, after which hyper finishes the request in progress and closes.
pub(super) async fn serve(
    inner: Arc<Inner>,
    io: Prefixed<TcpStream>,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let service = WithPeer {
        router: TowerToHyperService::new(inner.fallback.clone()),
        inner: Arc::clone(&inner),
        peer,
    };
    let connection = inner
        .http1
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// The router, with the peer's address in each request's extensions, as `axum::serve` puts it
/// with `into_make_service_with_connect_info`: handlers can extract `ConnectInfo<SocketAddr>`.
/// `GET`/`HEAD` of the events path go to [`later_stream`] instead.
struct WithPeer {
    router: TowerToHyperService<Router>,
    inner: Arc<Inner>,
    peer: SocketAddr,
}

impl hyper::service::Service<http::Request<Incoming>> for WithPeer {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let method = request.method();
        if (method == Method::GET || method == Method::HEAD)
            && request.uri().path() == self.inner.events_path
        {
            let inner = Arc::clone(&self.inner);
            return Box::pin(async move { Ok(later_stream(&inner, request).await) });
        }
        Box::pin(self.router.call(request))
    }
}

/// The answer to a request for the events path that came after another on the same connection:
/// what the lean path answers a first request (the same authentication under the head timeout,
/// topics, resume, caps, stream headers, refusals), with the stream as hyper's body. The lean
/// path's write timeout does not apply to it; the outbox's bounds and the slow-client policy do.
async fn later_stream(inner: &Inner, request: http::Request<Incoming>) -> Response {
    let (parts, _body) = request.into_parts();
    let head_only = parts.method == Method::HEAD;
    let headers = inner.headers_for(&parts).into_owned();
    let verdict = tokio::time::timeout(
        inner.head_timeout,
        inner.authenticate.authenticate_boxed(&parts),
    )
    .await;
    let mut response = match verdict {
        Ok(Ok(subscriber)) => match crate::axum::subscribe_options(&parts) {
            Err(message) => (StatusCode::BAD_REQUEST, message).into_response(),
            Ok(options) if head_only => match subscriber
                .admit(options)
                .and_then(|options| inner.hub.check_subscribe(&subscriber.uid, &options))
            {
                Ok(()) => crate::axum::sse_response_head(),
                Err(error) => crate::axum::subscribe_error_response(&inner.hub, error),
            },
            Ok(options) => crate::axum::subscriber_response(&inner.hub, &subscriber, options),
        },
        Ok(Err(refusal)) => {
            let mut response = Response::new(Body::from(refusal.body().clone()));
            *response.status_mut() = refusal.status();
            for (name, value) in refusal.headers() {
                response.headers_mut().append(name, value.clone());
            }
            if refusal.status() == StatusCode::UNAUTHORIZED
                && !response.headers().contains_key(header::WWW_AUTHENTICATE)
            {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
        Err(_elapsed) => {
            // The lean path closes without an answer, so clients retry later; here, a stream
            // that ends at once does the same for EventSource and ssehub clients.
            tracing::warn!(timeout = ?inner.head_timeout, "authentication did not answer within the head timeout");
            let mut response = crate::axum::sse_response_head();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    };
    // The stream headers and the hook's (CORS), on every answer, as the lean path sends them.
    for (name, value) in &headers {
        if !response.headers().contains_key(name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

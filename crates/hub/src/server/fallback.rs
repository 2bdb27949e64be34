//! Every request that is not an event stream: the connection goes to hyper and the fallback
//! router, as `axum::serve` would serve it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::prefixed::Prefixed;

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
struct WithPeer {
    router: TowerToHyperService<Router>,
    peer: SocketAddr,
}

impl hyper::service::Service<http::Request<Incoming>> for WithPeer {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future =
        <TowerToHyperService<Router> as hyper::service::Service<http::Request<Incoming>>>::Future;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.router.call(request)
    }
}

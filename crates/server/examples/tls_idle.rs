//! Memory per idle stream on `serve`'s HTTPS path: opens N event streams over TLS (HTTP/1.1, one
//! stream per connection; or HTTP/2, K streams per connection), waits until each has its `:ok`,
//! and prints how much the server's PSS grew per stream (`/proc/PID/smaps_rollup`).
//!
//! ```sh
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
//!   -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
//!   -addext basicConstraints=critical,CA:FALSE -keyout key.pem -out cert.pem
//! ssehub serve --listen 127.0.0.1:61400 --store memory --allow-anonymous \
//!   --tls-cert cert.pem --tls-key key.pem &
//! cargo run --release -p ssehub-server --example tls_idle -- 127.0.0.1:61400 cert.pem $! 10000 h2 100
//! ```
//!
//! Arguments: address, the certificate to trust (served for `localhost`), the server's pid,
//! streams, `h1` or `h2`, and streams per connection (h2 only; default 100).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: a failure ends it

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap()
    };
    field("Pss:")
}

async fn connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let socket = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), socket)
        .await
        .unwrap()
}

fn request() -> http::Request<Empty<Bytes>> {
    http::Request::get("https://localhost/events")
        .body(Empty::new())
        .unwrap()
}

/// Waits for the stream's first bytes (`:ok`), then keeps it open.
async fn opened(response: http::Response<Incoming>) -> Incoming {
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert!(frame.is_data());
    body
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // One failure (in any of the many tasks) ends the run with its message, once.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("tls_idle: {info}");
        std::process::exit(1);
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = args[0].parse().unwrap();
    let cert = CertificateDer::from_pem_file(&args[1]).unwrap();
    let pid: u32 = args[2].parse().unwrap();
    let streams: usize = args[3].parse().unwrap();
    let h2 = args[4] == "h2";
    let per_connection: usize = if h2 {
        args.get(5).map_or(100, |n| n.parse().unwrap())
    } else {
        1
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let connector = TlsConnector::from(Arc::new(config));

    let before = pss_kib(pid);
    let connections = streams.div_ceil(per_connection);
    let gate = Arc::new(Semaphore::new(64));
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let n = per_connection.min(streams - c * per_connection);
        let connector = connector.clone();
        let gate = Arc::clone(&gate);
        let open = Arc::clone(&open);
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let io = TokioIo::new(connect(addr, &connector).await);
            let mut held = Vec::new();
            if h2 {
                let (sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let mut opening = Vec::new();
                for _ in 0..n {
                    let mut sender = sender.clone();
                    opening.push(tokio::spawn(async move {
                        opened(sender.send_request(request()).await.unwrap()).await
                    }));
                }
                for stream in opening {
                    held.push(stream.await.unwrap());
                    open.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
                // Keep the connection (and its streams) until the end.
                std::future::pending::<()>().await;
                drop((sender, held));
            } else {
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(connection);
                held.push(opened(sender.send_request(request()).await.unwrap()).await);
                open.fetch_add(1, Ordering::Relaxed);
                drop(permit);
                std::future::pending::<()>().await;
                drop((sender, held));
            }
        }));
    }
    while open.load(Ordering::Relaxed) < streams {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pss_kib(pid);
    let per_stream = (after.saturating_sub(before)) as f64 * 1024.0 / streams as f64;
    println!(
        "{streams} idle streams over TLS + {} ({per_connection} per connection, {connections} connections): server PSS {before} KiB -> {after} KiB: {per_stream:.0} bytes/stream",
        if h2 { "HTTP/2" } else { "HTTP/1.1" }
    );
    for task in tasks {
        task.abort();
    }
}

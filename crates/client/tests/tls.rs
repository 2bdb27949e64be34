//! HTTPS through the `rustls` feature, against a TLS server with a self-signed certificate.
#![cfg(feature = "rustls")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use ssehub_client::{ClientBuilder, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS server for `localhost` answering every connection with one event; returns its port and
/// the certificate to trust.
async fn tls_server() -> (u16, rustls::pki_types::CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    // The raw replies below are HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let reply = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nid: 1\ndata: over tls\n\n";
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.flush().await;
                // Stay open until the client leaves.
                while matches!(tls.read(&mut chunk).await, Ok(n) if n > 0) {}
            });
        }
    });
    (port, cert)
}

#[tokio::test]
async fn https_with_a_trusted_certificate() {
    let (port, cert) = tls_server().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut events = ClientBuilder::new(format!("https://localhost:{port}/events"))
        .tls_config(config)
        .build_stream()
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.data, "over tls");
    assert_eq!(event.id.as_deref(), Some("1"));
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_fails_to_connect() {
    let (port, _) = tls_server().await;
    // The default configuration trusts the Mozilla roots, not this self-signed certificate.
    let client = ClientBuilder::new(format!("https://localhost:{port}/events"))
        .build()
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), client.connect())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    let chain = format!("{error}");
    assert!(
        chain.contains("certificate") || chain.contains("Certificate"),
        "{chain}"
    );
}

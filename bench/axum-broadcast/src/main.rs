//! `axum-broadcast`: the hand-written axum + `tokio::sync::broadcast` SSE hub, the baseline of
//! `bench/run.py`. Listens on `127.0.0.1:$PORT` (8081 by default): `GET /events`, `POST /push`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8081".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    eprintln!(
        "axum-broadcast: listening on http://{}/events",
        listener.local_addr()?
    );
    axum_broadcast::serve(listener).await
}

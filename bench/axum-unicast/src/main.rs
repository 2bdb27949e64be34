//! `axum-unicast`: the hand-written axum uni-cast SSE hub, a baseline of `bench/run.py`. Listens
//! on `127.0.0.1:$PORT` (8085 by default): `GET /events?uid=U`, `POST /push`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8085".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    eprintln!(
        "axum-unicast: listening on http://{}/events?uid=U",
        listener.local_addr()?
    );
    axum_unicast::serve(listener).await
}

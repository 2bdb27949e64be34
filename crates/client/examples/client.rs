//! The Go package's client example, in Rust: print every `message` event until Ctrl+C.
//!
//! ```text
//! cargo run -p ssehub-client --example client -- http://127.0.0.1:8080/events
//! ```

use ssehub_client::Client;

#[tokio::main]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080/events".to_owned());

    let client = match Client::new(url) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("Invalid configuration: {error}");
            return;
        }
    };
    client.on_event("message", |event| println!("Received: {event:?}"));

    if let Err(error) = client.connect().await {
        eprintln!("Connection failed: {error}");
        return;
    }
    println!("SSE client started, press Ctrl+C to exit");

    tokio::select! {
        stopped = client.wait() => match stopped {
            Ok(reason) => println!("Stopped: {reason:?}"),
            Err(error) => eprintln!("Stopped: {error}"),
        },
        _ = tokio::signal::ctrl_c() => client.disconnect(),
    }
}

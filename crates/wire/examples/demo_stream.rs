//! A tiny SSE server built on the wire format alone, with `std` networking: every client gets the
//! seed's `hello_world_N` broadcast, one event a second, with ids it can resume from.
//!
//! It stands in for `ssehub serve` until the hub lands. Run it and connect a client:
//!
//! ```text
//! cargo run -p ssehub-wire --example demo_stream
//! curl -N http://127.0.0.1:8080/events
//! curl -N -H 'Last-Event-ID: 5' http://127.0.0.1:8080/events   # resumes after event 5
//! ```
//!
//! `PORT` sets the port (default 8080).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use ssehub_wire::{Event, encode_comment, encode_retry};

/// One thread per client: cap them so the demo cannot be made to spawn without end.
const MAX_CLIENTS: usize = 64;
/// Bound on the request head we read, against clients that send headers forever.
const MAX_HEAD_BYTES: u64 = 16 * 1024;

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))?;
    println!(
        "SSE demo on http://{}/events  (try: curl -N http://{0}/events)",
        listener.local_addr()?
    );

    let clients = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::SeqCst);
            let _ = (&stream)
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
            continue;
        }
        let clients = Arc::clone(&clients);
        thread::spawn(move || {
            if let Err(err) = serve(stream) {
                eprintln!("client gone: {err}");
            }
            clients.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    let last_event_id = read_last_event_id(&stream)?;
    let mut stream = stream;
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    )?;
    // A comment first, so the client sees the stream open at once; then the reconnection time.
    stream.write_all(&encode_comment("connected"))?;
    stream.write_all(&encode_retry(Duration::from_secs(2)))?;

    let mut seq = last_event_id.unwrap_or(0);
    loop {
        thread::sleep(Duration::from_secs(1));
        seq += 1;
        let event = Event::new(format!("hello_world_{seq}"))
            .with_id(seq.to_string())
            .with_event("message");
        let bytes = event.encode().map_err(std::io::Error::other)?;
        stream.write_all(&bytes)?;
    }
}

/// Reads the request head and returns the numeric `Last-Event-ID`, if the client sent one.
fn read_last_event_id(stream: &TcpStream) -> std::io::Result<Option<u64>> {
    let mut reader = BufReader::new(std::io::Read::take(stream, MAX_HEAD_BYTES));
    let mut last_event_id = None;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            return Ok(last_event_id);
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("last-event-id")
        {
            last_event_id = value.trim().parse().ok();
        }
    }
}

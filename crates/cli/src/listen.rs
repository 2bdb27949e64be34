//! `ssehub listen`: a terminal client for any SSE stream.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use ssehub_client::{ClientBuilder, Event};

/// Options of `ssehub listen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream's URL (http or https).
    url: String,
    /// Print one JSON object per event: {"type":...,"data":...,"id":...}.
    #[arg(long)]
    json: bool,
    /// A request header, as 'Name: value'; repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Resume after this event id (sent as Last-Event-ID on the first request).
    #[arg(long, value_name = "ID")]
    last_event_id: Option<String>,
    /// Initial reconnection time in milliseconds, until the server sends `retry:`.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    retry: u64,
    /// Give up after this many failed reconnection attempts in a row (default: never; 0: do not
    /// reconnect). A stream that ends without sending an event counts as failed.
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
    /// Reconnect when nothing arrives for this many seconds (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    idle_timeout: u64,
    /// Also reconnect after a status other than 200 (204 always stops) and responses that are
    /// not event streams.
    #[arg(long)]
    reconnect_on_http_error: bool,
}

/// Splits and checks `Name: value` (also `ssehub bench`'s `-H`).
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not of the form 'Name: value'"))?;
    let name = name.trim();
    let value = value.trim();
    http::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    http::header::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name.to_owned(), value.to_owned()))
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a str,
    id: &'a str,
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(listen(args))
}

async fn listen(args: Args) -> ExitCode {
    let mut builder = ClientBuilder::new(&args.url)
        .reconnection_time(Duration::from_millis(args.retry))
        .idle_timeout((args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)))
        .reconnect_on_http_error(args.reconnect_on_http_error);
    for (name, value) in &args.headers {
        builder = builder.header(name, value);
    }
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id);
    }
    if let Some(retries) = args.max_retries {
        builder = builder.max_retries(retries);
    }
    let mut events = match builder.build_stream() {
        Ok(events) => events,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    // One listener for the whole run, so a Ctrl+C between two events is not missed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let item = tokio::select! {
            item = events.next() => item,
            _ = &mut ctrl_c => return ExitCode::SUCCESS,
        };
        let event = match item {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
            None => return ExitCode::SUCCESS,
        };
        let mut out = stdout.lock();
        let written = if args.json {
            write_json(&mut out, &event)
        } else {
            write_human(&mut out, &event)
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => {}
            // `| head -1` closed the pipe: the reader has what it wanted.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: cannot write to stdout: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
}

fn write_json(out: &mut impl Write, event: &Event) -> io::Result<()> {
    let line = JsonEvent {
        event_type: event.event_type(),
        data: &event.data,
        id: event.id.as_deref().unwrap_or(""),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// `[type] id=ID first line`, further lines of data indented by four spaces.
fn write_human(out: &mut impl Write, event: &Event) -> io::Result<()> {
    write!(out, "[{}]", event.event_type())?;
    if let Some(id) = &event.id {
        write!(out, " id={id}")?;
    }
    let mut lines = event.data.split('\n');
    writeln!(out, " {}", lines.next().unwrap_or(""))?;
    for line in lines {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_reject() {
        assert_eq!(
            parse_header("Authorization:  Bearer x "),
            Ok(("Authorization".into(), "Bearer x".into()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(parse_header("X: a\u{7f}b").is_err());
    }

    #[test]
    fn json_and_human_forms() {
        let event = Event::new("a \"q\"\nb").with_id("7").with_event("up");
        let mut out = Vec::new();
        write_json(&mut out, &event).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"up\",\"data\":\"a \\\"q\\\"\\nb\",\"id\":\"7\"}\n"
        );
        let mut out = Vec::new();
        write_human(&mut out, &event).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[up] id=7 a \"q\"\n    b\n"
        );
        let mut out = Vec::new();
        write_json(&mut out, &Event::new("x")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"message\",\"data\":\"x\",\"id\":\"\"}\n"
        );
    }
}

//! `ssehub push`: publish events through a hub's HTTP push API.
//!
//! One run reads the event data (an argument, or stdin), posts it as
//! `{"uids":[...],"topics":[...],"events":[...]}` with the publisher key as a bearer token, and
//! prints the ids the hub gave the events. With `--lines` every line is an event, sent in
//! requests of at most `--batch` events, in order, stopping at the first request refused. The exit
//! status says whether to fix something (1, 2) or try again later (3).

use std::error::Error as _;
use std::fmt;
use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

/// The most events the hub takes in one push.
pub const MAX_BATCH: u16 = 1_000;

/// How much of an answer that is not an envelope goes into the error message.
const RAW_BODY_SHOWN: usize = 1024;
/// The most of an answer read: the envelope for 1,000 ids is far smaller.
const ANSWER_LIMIT: usize = 4 * 1024 * 1024;

/// The exit statuses, for `ssehub push --help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  every event was accepted
  1  refused as bad input or not allowed (a 4xx other than 408 and 429; an answer that is not
     the push API's): fix the request or the key, do not retry as is
  2  usage error (bad flags, no recipients without --broadcast, nothing to send); nothing sent
  3  the hub is unavailable or over a limit (connection refused or reset, timeout, 408, 429,
     5xx): worth retrying later

With --lines, the events of the requests accepted before a refusal were pushed (their ids are
printed); nothing after it was sent.";

/// Options of `ssehub push`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The push endpoint (http or https); a URL without a path gets `/push`.
    #[arg(long, env = "SSEHUB_URL", value_name = "URL")]
    url: String,
    /// The publisher key, sent as `Authorization: Bearer KEY`. Prefer the environment variable:
    /// a command line is visible to other users of the machine.
    #[arg(
        long,
        env = "SSEHUB_PUBLISHER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    key: Option<Key>,
    /// Push to this uid's connections; repeatable.
    #[arg(long = "uid", value_name = "UID")]
    uids: Vec<String>,
    /// Push to the connections subscribed to this topic; repeatable.
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// Push to every connection. Required to push without --uid or --topic, so that a forgotten
    /// recipient never becomes a push to everyone.
    #[arg(long, conflicts_with_all = ["uids", "topics"])]
    broadcast: bool,
    /// The event type (default: `message`).
    #[arg(long = "event", value_name = "TYPE")]
    event_type: Option<String>,
    /// The event id (default: the hub assigns one). Not with --lines: ids must be unique.
    #[arg(long, value_name = "ID", conflicts_with = "lines")]
    id: Option<String>,
    /// Each line of the data is an event (empty lines are skipped).
    #[arg(long)]
    lines: bool,
    /// With --lines, at most this many events per request (the hub takes at most 1000).
    #[arg(long, value_name = "N", default_value_t = MAX_BATCH,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_BATCH)))]
    batch: u16,
    /// Print the hub's answers (JSON envelopes, one per line) instead of the ids.
    #[arg(long)]
    json: bool,
    /// Give up on a request that has not been answered after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// The event's data; `-` or none: read stdin to its end (one trailing newline dropped).
    #[arg(value_name = "DATA")]
    data: Option<String>,
}

/// The publisher key. Its `Debug` hides it, so that no diagnostic can print it.
#[derive(Clone)]
struct Key(String);

impl std::str::FromStr for Key {
    type Err = std::convert::Infallible;

    // Checked later, by `bearer`: clap's own error message would repeat the value.
    fn from_str(key: &str) -> Result<Self, Self::Err> {
        Ok(Self(key.to_owned()))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why `ssehub push` did not push everything. The message is printed after `ssehub push: `.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The arguments cannot make a push.
    #[error("{0}")]
    Usage(String),
    /// Stdin could not be read.
    #[error("cannot read the data from stdin: {0}")]
    Stdin(io::Error),
    /// The data is not UTF-8, which an event's data must be.
    #[error("the data is not UTF-8 text; events carry text (encode binary data, e.g. as base64)")]
    NotText,
    /// The async runtime or the TLS setup could not start.
    #[error("cannot start: {0}")]
    Setup(String),
    /// No connection to the hub: nothing was sent, and trying again may work.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The push URL.
        url: String,
        /// The cause, from the OS or TLS.
        reason: String,
    },
    /// The connection failed after the request went out: the hub may have pushed the events.
    #[error(
        "the connection to {url} failed before the answer: {reason}; the events may or may not \
         have been pushed"
    )]
    Broken {
        /// The push URL.
        url: String,
        /// The cause.
        reason: String,
    },
    /// No answer within `--timeout`: the hub may have pushed the events.
    #[error(
        "no answer from {url} within {seconds} s (--timeout); the events may or may not have been \
         pushed"
    )]
    Timeout {
        /// The push URL.
        url: String,
        /// The timeout.
        seconds: u64,
    },
    /// The hub answered with an error status: `<status> <the envelope's msg>`.
    #[error("{} {message}", status.as_u16())]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The envelope's `msg`, or the start of the body when it is not an envelope.
        message: String,
    },
    /// A success status with a body that is not the push API's envelope: the URL is probably not
    /// a hub's push endpoint.
    #[error(
        "{} but the answer is not the push API's (is {url} the push endpoint?): {body}",
        status.as_u16()
    )]
    NotPushApi {
        /// The push URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
    /// The ids could not be printed.
    #[error("cannot write to stdout: {0}")]
    Stdout(io::Error),
}

impl PushError {
    /// 2 for what the user asked, 3 for what may work later, 1 for the rest.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) | Self::Stdin(_) | Self::NotText => ExitCode::from(2),
            Self::Connect { .. } | Self::Broken { .. } | Self::Timeout { .. } => ExitCode::from(3),
            Self::Refused { status, .. } if retryable(*status) => ExitCode::from(3),
            Self::Refused { .. } | Self::NotPushApi { .. } | Self::Setup(_) | Self::Stdout(_) => {
                ExitCode::FAILURE
            }
        }
    }

    /// Whether the request's events may have been pushed although no success was seen.
    fn maybe_pushed(&self) -> bool {
        matches!(self, Self::Broken { .. } | Self::Timeout { .. })
    }
}

/// Statuses a later retry may get past: the hub or a proxy is busy, down or too slow.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Runs `ssehub push`; prints the outcome and returns the exit status.
pub fn run(args: Args) -> ExitCode {
    let json = args.json;
    let lines = args.lines;
    let mut progress = Progress::default();
    let outcome = Plan::new(args).and_then(|plan| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| PushError::Setup(format!("the async runtime: {error}")))?;
        runtime.block_on(plan.send(&mut progress))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ssehub push: {error}");
            if lines
                && let PushError::Refused {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    ..
                } = error
            {
                // The hub's body limit counts bytes, --batch counts events.
                eprintln!("ssehub push: a smaller --batch sends fewer events per request");
            }
            if progress.accepted > 0 {
                // Say where a multi-request run stopped, so the user knows what to send again.
                let not = if error.maybe_pushed() {
                    "the rest may or may not have been pushed"
                } else {
                    "the rest were not pushed"
                };
                eprintln!(
                    "ssehub push: {} of {} events were accepted{}; {not}",
                    progress.accepted,
                    progress.total,
                    if json {
                        ""
                    } else {
                        " (their ids are on stdout)"
                    },
                );
            }
            error.exit_code()
        }
    }
}

/// How far a run got, for the message after a failure.
#[derive(Debug, Default)]
struct Progress {
    total: usize,
    accepted: usize,
    requests: usize,
}

/// A checked push: where, to whom, what.
#[derive(Debug)]
struct Plan {
    url: Uri,
    /// `Bearer KEY`, marked sensitive.
    authorization: Option<HeaderValue>,
    recipients: Recipients,
    event_type: Option<String>,
    id: Option<String>,
    /// The event data, one entry per event.
    data: Vec<String>,
    batch: usize,
    json: bool,
    timeout: Duration,
}

/// The request's `uids` and `topics`; both empty only for an explicit `--broadcast`.
#[derive(Debug, Serialize)]
struct Recipients {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    uids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    topics: Vec<String>,
}

impl Plan {
    /// Checks the arguments and reads the data, before anything is sent.
    fn new(args: Args) -> Result<Self, PushError> {
        if args.uids.is_empty() && args.topics.is_empty() && !args.broadcast {
            return Err(PushError::Usage(
                "no recipients: name them with --uid and/or --topic, or pass --broadcast to push \
                 to every connection"
                    .to_owned(),
            ));
        }
        let url = push_url(&args.url)?;
        let authorization = match &args.key {
            // An empty variable is as good as none (`SSEHUB_PUBLISHER_KEY= ssehub push ...`).
            Some(Key(key)) if !key.is_empty() => Some(bearer(key)?),
            _ => None,
        };
        let text = match args.data.as_deref() {
            Some(data) if data != "-" => data.to_owned(),
            _ => read_stdin()?,
        };
        let data = if args.lines {
            let lines: Vec<String> = text
                .split('\n')
                .map(|line| line.strip_suffix('\r').unwrap_or(line))
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect();
            if lines.is_empty() {
                return Err(PushError::Usage(
                    "nothing to push: with --lines, the data has no non-empty line".to_owned(),
                ));
            }
            lines
        } else {
            vec![strip_one_newline(text)]
        };
        Ok(Self {
            url,
            authorization,
            recipients: Recipients {
                uids: args.uids,
                topics: args.topics,
            },
            event_type: args.event_type,
            id: args.id,
            data,
            batch: usize::from(args.batch),
            json: args.json,
            timeout: Duration::from_secs(args.timeout),
        })
    }

    /// Sends the events in order, a batch per request, printing each answer as it comes.
    async fn send(self, progress: &mut Progress) -> Result<(), PushError> {
        let client = http_client()?;
        progress.total = self.data.len();
        let mut stdout = Output::new(self.json);
        for chunk in self.data.chunks(self.batch) {
            let body = self.body(chunk);
            let request = self.request(body)?;
            progress.requests += 1;
            let answer = self.exchange(&client, request).await?;
            stdout.answer(&answer)?;
            answer.into_result(&self.url)?;
            progress.accepted += chunk.len();
        }
        Ok(())
    }

    /// The JSON body for these events.
    fn body(&self, data: &[String]) -> Bytes {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(flatten)]
            recipients: &'a Recipients,
            events: Vec<EventBody<'a>>,
        }
        #[derive(Serialize)]
        struct EventBody<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            event: Option<&'a str>,
            data: &'a str,
        }
        let body = Body {
            recipients: &self.recipients,
            events: data
                .iter()
                .map(|data| EventBody {
                    id: self.id.as_deref(),
                    event: self.event_type.as_deref(),
                    data,
                })
                .collect(),
        };
        // Strings and a struct of them always serialise.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, PushError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        request
            .body(Full::new(body))
            .map_err(|error| PushError::Usage(format!("cannot build the request: {error}")))
    }

    /// One request and its whole answer, within the timeout.
    async fn exchange(
        &self,
        client: &HttpClient,
        request: Request<Full<Bytes>>,
    ) -> Result<Answer, PushError> {
        let url = self.url.to_string();
        let exchange = async {
            let response = client.request(request).await.map_err(|error| {
                // hyper-util's own message ("client error (Connect)") says little; its causes do.
                let reason = error
                    .source()
                    .map_or_else(|| error.to_string(), error_chain);
                if error.is_connect() {
                    PushError::Connect {
                        url: url.clone(),
                        reason,
                    }
                } else {
                    PushError::Broken {
                        url: url.clone(),
                        reason,
                    }
                }
            })?;
            let status = response.status();
            let location = response.headers().get(LOCATION).cloned();
            let body = Limited::new(response.into_body(), ANSWER_LIMIT)
                .collect()
                .await
                .map_err(|error| PushError::Broken {
                    url: url.clone(),
                    reason: format!("reading the answer: {error}"),
                })?
                .to_bytes();
            Ok(Answer {
                status,
                location,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| PushError::Timeout {
                url: url.clone(),
                seconds: self.timeout.as_secs(),
            })?
    }
}

/// The hub's answer to one request.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    location: Option<HeaderValue>,
    body: Bytes,
}

/// `{"code":0,"msg":"ok","data":{...}}` or `{"code":<status>,"msg":"...","data":{}}`.
#[derive(Debug, Deserialize)]
struct Envelope {
    code: i64,
    msg: String,
    #[serde(default)]
    data: Option<Accepted>,
}

/// The `data` of a success envelope; an error envelope's `{}` has none of these.
#[derive(Debug, Deserialize)]
struct Accepted {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    failed: u64,
}

impl Answer {
    fn envelope(&self) -> Option<Envelope> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The ids the hub gave the events, or why the push was not accepted.
    fn into_result(self, url: &Uri) -> Result<Accepted, PushError> {
        let envelope = self.envelope();
        if self.status.is_success() {
            return match envelope {
                Some(Envelope {
                    code: 0,
                    data: Some(accepted @ Accepted { ids: Some(_), .. }),
                    ..
                }) => Ok(accepted),
                Some(Envelope { code, msg, .. }) if code != 0 => Err(PushError::Refused {
                    status: self.status,
                    message: msg,
                }),
                _ => Err(PushError::NotPushApi {
                    url: url.to_string(),
                    status: self.status,
                    body: shown(&self.body),
                }),
            };
        }
        let message = match (envelope, &self.location) {
            (Some(envelope), _) => envelope.msg,
            // The legacy client does not follow redirects; a POST should not be redirected anyway.
            (None, Some(location)) if self.status.is_redirection() => format!(
                "redirected to {}; pass that as --url",
                String::from_utf8_lossy(location.as_bytes())
            ),
            (None, _) => shown(&self.body),
        };
        Err(PushError::Refused {
            status: self.status,
            message,
        })
    }
}

/// Where the answers go: the ids, or the envelopes with `--json`.
struct Output {
    json: bool,
    /// Cleared when the reader went away (`| head -1`): the push goes on, silently.
    open: bool,
}

impl Output {
    fn new(json: bool) -> Self {
        Self { json, open: true }
    }

    /// Prints what the user asked for of this answer: with `--json` every envelope (errors
    /// included, on stdout as they came); otherwise the ids of an accepted push.
    fn answer(&mut self, answer: &Answer) -> Result<(), PushError> {
        let mut text = Vec::new();
        if self.json {
            if answer.envelope().is_some() {
                text.extend_from_slice(answer.body.trim_ascii());
                text.push(b'\n');
            }
        } else if answer.status.is_success()
            && let Some(Envelope {
                code: 0,
                data: Some(accepted),
                ..
            }) = answer.envelope()
        {
            for id in accepted.ids.iter().flatten() {
                text.extend_from_slice(id.as_bytes());
                text.push(b'\n');
            }
            if accepted.failed > 0 {
                // Not a refusal: the hub gave up on slow connections, per its slow-client policy.
                eprintln!(
                    "ssehub push: warning: {} deliveries failed (connections too slow to take them)",
                    accepted.failed
                );
            }
        }
        self.write(&text)
    }

    fn write(&mut self, text: &[u8]) -> Result<(), PushError> {
        if !self.open || text.is_empty() {
            return Ok(());
        }
        let mut stdout = io::stdout().lock();
        match stdout.write_all(text).and_then(|()| stdout.flush()) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                self.open = false;
                Ok(())
            }
            Err(error) => Err(PushError::Stdout(error)),
        }
    }
}

/// The start of a body that is not an envelope, for a message: lossy UTF-8, about 1 KiB.
fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= RAW_BODY_SHOWN {
        return text.to_owned();
    }
    let mut end = RAW_BODY_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Parses the push URL: absolute `http`/`https`; an empty path or `/` becomes `/push`.
fn push_url(text: &str) -> Result<Uri, PushError> {
    let usage = |why: &str| PushError::Usage(format!("--url {text:?}: {why}"));
    let url: Uri = text
        .parse()
        .map_err(|error| usage(&format!("not a URL ({error})")))?;
    let scheme = url
        .scheme()
        .ok_or_else(|| usage("not an absolute URL; give one such as http://127.0.0.1:8080/push"))?;
    if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
        return Err(usage("the scheme must be http or https"));
    }
    if url.host().is_none_or(str::is_empty) {
        return Err(usage("no host"));
    }
    if matches!(url.path(), "" | "/") {
        let mut parts = url.into_parts();
        let query = parts
            .path_and_query
            .as_ref()
            .and_then(PathAndQuery::query)
            .map(|query| format!("?{query}"))
            .unwrap_or_default();
        parts.path_and_query = Some(
            format!("/push{query}")
                .parse()
                .map_err(|_| usage("not a valid query"))?,
        );
        return Uri::from_parts(parts).map_err(|error| usage(&error.to_string()));
    }
    Ok(url)
}

/// `Bearer KEY` as a header value, marked sensitive. The error never repeats the key.
fn bearer(key: &str) -> Result<HeaderValue, PushError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
        PushError::Usage(
            "the publisher key holds characters an HTTP header cannot carry (control characters \
             or line breaks)"
                .to_owned(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// All of stdin as text.
fn read_stdin() -> Result<String, PushError> {
    if io::stdin().is_terminal() {
        // Otherwise a forgotten DATA argument looks like a hang.
        eprintln!("ssehub push: reading the data from the terminal; end it with Ctrl+D");
    }
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(PushError::Stdin)?;
    String::from_utf8(bytes).map_err(|_| PushError::NotText)
}

/// Drops one trailing line ending (`echo` and heredocs add one), keeping any others.
fn strip_one_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// An error and its causes, `a: b: c`: hyper's own message alone ("client error (Connect)")
/// does not say what happened.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTP/1.1 and HTTP/2 client for http and https, as `ssehub-client` builds it: rustls with
/// the aws-lc-rs provider and the Mozilla roots.
fn http_client() -> Result<HttpClient, PushError> {
    let mut http = HttpConnector::new();
    // The TLS layer needs https URLs passed through.
    http.enforce_http(false);
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        // An explicit provider, so that another crate enabling rustls' `ring` feature cannot make
        // the default provider ambiguous.
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .map_err(|error| PushError::Setup(format!("TLS: {error}")))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    // Kept-alive connections carry the batches of a `--lines` run one after the other.
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_url_defaults_the_path() {
        let url = |text| push_url(text).map(|url| url.to_string());
        assert_eq!(url("http://h:8080").unwrap(), "http://h:8080/push");
        assert_eq!(url("http://h:8080/").unwrap(), "http://h:8080/push");
        assert_eq!(url("https://h/?a=1").unwrap(), "https://h/push?a=1");
        assert_eq!(url("http://h/api/push").unwrap(), "http://h/api/push");
        assert!(url("ftp://h/push").is_err());
        assert!(url("h:8080/push").is_err());
        assert!(url("/push").is_err());
        assert!(url("not a url").is_err());
    }

    #[test]
    fn one_trailing_newline_goes() {
        assert_eq!(strip_one_newline("a\n\n".into()), "a\n");
        assert_eq!(strip_one_newline("a\r\n".into()), "a");
        assert_eq!(strip_one_newline("a".into()), "a");
        assert_eq!(strip_one_newline("\n".into()), "");
    }

    #[test]
    fn a_bad_key_is_not_repeated() {
        let message = bearer("sec\nret").unwrap_err().to_string();
        assert!(!message.contains("sec"), "{message}");
        assert!(bearer("secret").unwrap().is_sensitive());
        assert_eq!(format!("{:?}", Key("secret".into())), "Key(..)");
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        let refused = |status| PushError::Refused {
            status,
            message: String::new(),
        };
        for (status, code) in [
            (StatusCode::BAD_REQUEST, ExitCode::FAILURE),
            (StatusCode::UNAUTHORIZED, ExitCode::FAILURE),
            (StatusCode::CONFLICT, ExitCode::FAILURE),
            (StatusCode::PAYLOAD_TOO_LARGE, ExitCode::FAILURE),
            (StatusCode::REQUEST_TIMEOUT, ExitCode::from(3)),
            (StatusCode::TOO_MANY_REQUESTS, ExitCode::from(3)),
            (StatusCode::SERVICE_UNAVAILABLE, ExitCode::from(3)),
            (StatusCode::BAD_GATEWAY, ExitCode::from(3)),
        ] {
            assert_eq!(refused(status).exit_code(), code, "{status}");
        }
    }

    #[test]
    fn answers_become_ids_or_refusals() {
        let url: Uri = "http://h/push".parse().unwrap();
        let answer = |status, body: &'static str| Answer {
            status,
            location: None,
            body: Bytes::from_static(body.as_bytes()),
        };
        let ok = answer(
            StatusCode::OK,
            r#"{"code":0,"msg":"ok","data":{"ids":["1","2"],"connections":1,"failed":0}}"#,
        );
        assert_eq!(ok.into_result(&url).unwrap().ids.unwrap(), ["1", "2"]);
        let refused = answer(
            StatusCode::CONFLICT,
            r#"{"code":409,"msg":"duplicate id","data":{}}"#,
        );
        assert_eq!(
            refused.into_result(&url).unwrap_err().to_string(),
            "409 duplicate id"
        );
        let html = answer(StatusCode::OK, "<html>welcome</html>");
        assert!(matches!(
            html.into_result(&url),
            Err(PushError::NotPushApi { .. })
        ));
        let long = "x".repeat(5000);
        assert_eq!(shown(long.as_bytes()).len(), RAW_BODY_SHOWN + 3);
    }
}

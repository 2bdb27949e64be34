//! `ssehub bench`: a load generator for SSE servers on this machine.
//!
//! A run has five phases, each bounded in time:
//!
//! 1. check the arguments and the open-file limit (exit 2 if they cannot work);
//! 2. open the push connections, read the server's memory, connect the clients (at most
//!    `--connect-concurrency` at a time, each from its own loopback address);
//! 3. wait `--warmup`, read the server's memory again;
//! 4. publish `rate × duration` pushes on a fixed schedule, until every acknowledged push has
//!    reached every client or `duration + grace` has passed; read the CPU times around it;
//! 5. print one JSON line ([`report::Report`]).
//!
//! A broadcast run sends every push to every client. A uni-cast run (`{client}` in the stream
//! URL) subscribes each client under its own uid and addresses each push to K of them
//! ([`recipients`]); every client checks every delivery against who the push was for, and a
//! misdelivery, a loss or a duplicate fails the run.
//!
//! Modules: [`target`] (URLs, source addresses), [`limits`] (open files), [`http1`] and [`sse`]
//! (the lean reader's parsers), [`reader`] (a client), [`template`] and [`publisher`] (pushes),
//! [`recipients`] (uni-cast addressing), [`rng`] (seeded randomness, shared with `ssehub soak`),
//! [`proc_stats`] (a process's CPU and memory), [`report`] (counts and output), [`error`].

pub mod error;
pub mod http1;
pub mod limits;
pub mod proc_stats;
pub mod publisher;
pub mod reader;
pub mod recipients;
pub mod report;
pub mod rng;
pub mod sse;
pub mod target;
pub mod template;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use error::BenchError;
use proc_stats::{Memory, Process};
use publisher::{PushOutcome, PushSpec};
use reader::{Shared, Unicast};
use recipients::{Order, Recipients};
use report::{Latency, Report, ServerReport, UnicastReport};
use target::Target;
use template::Template;

/// The default push body: the ssehub push API, broadcasting one event whose data is
/// `SEQ TS`.
pub const DEFAULT_BODY: &str = r#"{"events":[{"data":"{seq} {ts}"}]}"#;

/// The default push body of a uni-cast run: the ssehub push API, to the push's clients under
/// their bare index as uid (`--sse-url '...?uid={client}'`).
pub const DEFAULT_UNICAST_BODY: &str = r#"{"uids":[{uids}],"events":[{"data":"{seq} {ts}"}]}"#;

/// The placeholder of a client's index in the stream URL; its presence makes a run uni-cast.
const CLIENT_PLACEHOLDER: &str = "{client}";

/// Clients a push is for at most: each push's count of deliveries is one byte.
const MAX_UIDS_PER_PUSH: u64 = 255;

/// The time limit of one client's connection and response head.
const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the end of a run is checked for.
const POLL: Duration = Duration::from_millis(10);

/// How long a uni-cast run goes on reading once every delivery owed has arrived: time for
/// misdeliveries and duplicates sent with them to arrive too.
const UNICAST_SETTLE: Duration = Duration::from_millis(250);

/// More pushes than this in one run is a mistake (each client keeps a bit per push).
const MAX_PUSHES: u64 = 100_000_000;

/// At most this much memory for the clients' records of pushes seen.
const MAX_SEEN_BYTES: u64 = 2 << 30;

/// Options of `ssehub bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The event stream to load: http:// on 127.0.0.0/8 or localhost. With {client} in it (as in
    /// '?uid=c{client}') the run is uni-cast: client i subscribes with its index i there, under
    /// its own uid, and each push is for --uids-per-push of them.
    #[arg(long, value_name = "URL")]
    sse_url: String,
    /// Clients to connect to the stream.
    #[arg(long, value_name = "N")]
    clients: u64,
    /// Where to POST the pushes (needed with --rate): http:// on 127.0.0.0/8 or localhost.
    /// Uni-cast: {uid} and {uids:PREFIX} in its path or query address each push there, for a
    /// server that takes the channel from the URL ('/push?uid=c{uid}'; {uids:c} becomes the bare
    /// list 'c17,c42'); a URL without them is used as is.
    #[arg(long, value_name = "URL")]
    push_url: Option<String>,
    /// Pushes per second; 0 publishes nothing and holds the connections idle for --duration.
    #[arg(long, value_name = "PUSHES_PER_SEC", default_value_t = 0.0)]
    rate: f64,
    /// Seconds of publishing (or of holding idle connections).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// Seconds to wait after all clients connected, before publishing.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    warmup: f64,
    /// Seconds after --duration to wait for the last answers and deliveries.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    grace: f64,
    /// The push body; {seq} becomes the push's number, {ts} its publish time in ns since the
    /// UNIX epoch. The event's data must carry them as its first two runs of digits. Uni-cast:
    /// {uid} becomes the index of the client the push is for (the first, with several) and
    /// {uids:PREFIX} all of them as JSON strings, PREFIX then the index, comma-separated
    /// ({uids}: no prefix). Default '{"events":[{"data":"{seq} {ts}"}]}', uni-cast
    /// '{"uids":[{uids}],"events":[{"data":"{seq} {ts}"}]}'.
    #[arg(long, value_name = "TEMPLATE")]
    body: Option<String>,
    /// Uni-cast: distinct clients each push is for (1 to 255, at most --clients).
    #[arg(long, value_name = "K", default_value_t = 1)]
    uids_per_push: u64,
    /// Uni-cast: how each push's clients are chosen; round-robin takes them in turn, random
    /// draws them from --seed and the push's number.
    #[arg(long, value_enum, value_name = "ORDER", default_value_t = Order::RoundRobin)]
    recipients: Order,
    /// Uni-cast: the seed of --recipients random.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// A push request header, as 'Name: value'; repeatable (default Content-Type:
    /// application/json).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = crate::listen::parse_header)]
    headers: Vec<(String, String)>,
    /// Keep-alive connections the pushes are pipelined over.
    #[arg(long, value_name = "K", default_value_t = 4)]
    push_connections: u64,
    /// The server's process id: report its CPU time, efficiency and memory per connection.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Clients connecting at the same time at most. Keep it below the server's listen backlog
    /// (128 for a tokio or std listener): past it the kernel drops handshakes, and each dropped
    /// one costs a 1 s SYN retransmission.
    #[arg(long, value_name = "C", default_value_t = 100)]
    connect_concurrency: u64,
    /// Source addresses the clients are spread over (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, value_name = "N", default_value_t = 250)]
    source_ips: u32,
    /// Worker threads of the generator.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: u64,
    /// The pushes carry an event type: give the body an "event" and count only events that
    /// have one (and, without this flag, only events that have none). Two runs on the same
    /// streams, one typed, then each count their own pushes.
    #[arg(long)]
    typed: bool,
    /// Publish nothing: count another run's pushes 0 to N-1 (its --rate × --duration), stamped
    /// from now on, as they arrive at these clients, and wait at most --duration for every
    /// client to have all N. For several generators watching one publisher (several servers
    /// behind one backend, each generator connected to one of them). Fails on a loss or a
    /// duplicate.
    #[arg(long, value_name = "N", conflicts_with_all = ["rate", "push_url"])]
    observe: Option<u64>,
}

/// A run, checked.
#[derive(Debug)]
struct Plan {
    sse_url: String,
    sse: Target,
    push_url: String,
    /// With a rate above 0.
    push: Option<Arc<PushSpec>>,
    clients: u64,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    grace: Duration,
    pushes_planned: u64,
    push_connections: u64,
    server: Option<(u32, Process)>,
    connect_concurrency: u64,
    source_ips: u32,
    threads: usize,
    /// Uni-cast: who each push is for.
    unicast: Option<Recipients>,
    /// Uni-cast: the addressing as given, for the report.
    unicast_report: Option<UnicastReport>,
    /// `--typed`.
    typed: bool,
    /// `--observe`: the pushes are another run's.
    observe: bool,
}

/// Runs `ssehub bench` and prints its JSON line.
pub fn run(args: Args) -> ExitCode {
    let outcome = Plan::check(args).and_then(|plan| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.threads)
            .enable_all()
            .build()
            .map_err(BenchError::Runtime)?;
        let report = runtime.block_on(bench(&plan));
        // Dropping the runtime closes every client's socket.
        runtime.shutdown_background();
        report
    });
    match outcome {
        Ok(report) => {
            let mut stdout = std::io::stdout().lock();
            let written = serde_json::to_writer(&mut stdout, &report)
                .map_err(std::io::Error::from)
                .and_then(|()| stdout.write_all(b"\n"))
                .and_then(|()| stdout.flush());
            let failures = report.failures();
            match written {
                Ok(()) if failures.is_empty() => ExitCode::SUCCESS,
                Ok(()) => {
                    let run = if report.mode == "unicast" {
                        "uni-cast"
                    } else {
                        report.mode
                    };
                    eprintln!("error: the {run} run failed: {}", failures.join(", "));
                    ExitCode::FAILURE
                }
                Err(error) => {
                    eprintln!("error: cannot write the report: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

/// Seconds given on the command line as a `Duration`.
fn seconds(name: &str, value: f64) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| *duration <= Duration::from_secs(86_400))
        .ok_or_else(|| {
            BenchError::BadArgument(format!("--{name} must be between 0 and 86400 seconds"))
        })
}

impl Plan {
    /// Checks everything that can be checked before connecting.
    fn check(args: Args) -> Result<Self, BenchError> {
        let bad = |message: String| Err(BenchError::BadArgument(message));
        let sse = Target::parse(&args.sse_url)?;
        let push_target = args.push_url.as_deref().map(Target::parse).transpose()?;
        if args.clients == 0 {
            return bad("--clients must be at least 1".into());
        }
        if !args.rate.is_finite() || args.rate < 0.0 {
            return bad("--rate must be a number of pushes per second, 0 or more".into());
        }
        let duration = seconds("duration", args.duration)?;
        let warmup = seconds("warmup", args.warmup)?;
        let grace = seconds("grace", args.grace)?;
        let publishing = args.rate > 0.0;
        let pushes_planned = match args.observe {
            Some(pushes) => pushes,
            None => (args.rate * duration.as_secs_f64()).floor() as u64,
        };
        if pushes_planned > MAX_PUSHES {
            return bad(format!(
                "--rate × --duration is {pushes_planned} pushes; at most {MAX_PUSHES} per run"
            ));
        }
        let unicast = args.sse_url.contains(CLIENT_PLACEHOLDER);
        // Uni-cast adds a one-byte count of deliveries per push.
        let seen_bytes = args
            .clients
            .saturating_mul(pushes_planned.div_ceil(8))
            .saturating_add(if unicast { pushes_planned } else { 0 });
        if seen_bytes > MAX_SEEN_BYTES {
            return bad(format!(
                "{} clients × {pushes_planned} pushes needs {} MiB to track deliveries; lower \
                 --clients, --rate or --duration",
                args.clients,
                seen_bytes >> 20
            ));
        }
        if unicast && args.observe.is_some() {
            return bad(format!(
                "--observe counts broadcasts; {CLIENT_PLACEHOLDER} in --sse-url makes a uni-cast run"
            ));
        }
        let recipients = if unicast {
            let k = args.uids_per_push;
            if !(1..=MAX_UIDS_PER_PUSH).contains(&k) || k > args.clients {
                return bad(format!(
                    "--uids-per-push must be between 1 and {MAX_UIDS_PER_PUSH}, and at most \
                     --clients"
                ));
            }
            Some(Recipients::new(args.clients, k, args.recipients, args.seed))
        } else {
            if args.uids_per_push != 1 || args.recipients != Order::RoundRobin {
                return bad(format!(
                    "--uids-per-push and --recipients need {CLIENT_PLACEHOLDER} in --sse-url"
                ));
            }
            None
        };
        let body = args.body.as_deref().unwrap_or(if unicast {
            DEFAULT_UNICAST_BODY
        } else {
            DEFAULT_BODY
        });
        let template = Template::parse(body);
        let push = match (publishing, push_target) {
            (false, _) => None,
            (true, None) => return bad("--rate above 0 needs --push-url".into()),
            (true, Some(target)) => {
                if !template.has_seq_then_ts() {
                    return bad("--body must contain {seq} and then {ts}".into());
                }
                // A server that takes its channels from the URL (nchan) is addressed there.
                let url = Template::parse_url(&target.path);
                let addresses =
                    template.has_uid() || template.has_uids() || url.has_uid() || url.has_uids();
                let lists = template.has_uids() || url.has_uids();
                match &recipients {
                    None if addresses => {
                        return bad(format!(
                            "{{uid}} and {{uids}} in --body or --push-url need \
                             {CLIENT_PLACEHOLDER} in --sse-url"
                        ));
                    }
                    Some(recipients) if recipients.per_push() > 1 && !lists => {
                        return bad("--uids-per-push above 1 needs {uids} or {uids:PREFIX} in \
                             --body or --push-url"
                            .into());
                    }
                    // Allowed, as a check of the check: the server will send every push to
                    // every client, and the run will fail on misdelivery.
                    Some(_) if !addresses => tracing::warn!(
                        "--body and --push-url have no {{uid}} or {{uids}}: the pushes address \
                         no client"
                    ),
                    _ => {}
                }
                if args.push_connections == 0 {
                    return bad("--push-connections must be at least 1".into());
                }
                Some(Arc::new(PushSpec::new(
                    target,
                    &args.headers,
                    template,
                    args.rate,
                    pushes_planned,
                    recipients.clone(),
                )))
            }
        };
        if args.connect_concurrency == 0 {
            return bad("--connect-concurrency must be at least 1".into());
        }
        if !(1..=target::MAX_SOURCE_IPS).contains(&args.source_ips) {
            return bad(format!(
                "--source-ips must be between 1 and {}",
                target::MAX_SOURCE_IPS
            ));
        }
        let threads = match usize::try_from(args.threads) {
            Ok(threads @ 1..=1024) => threads,
            _ => return bad("--threads must be between 1 and 1024".into()),
        };
        let server = match args.server_pid {
            Some(pid) => {
                let process = Process::pid(pid);
                if let Err(error) = process.cpu_secs() {
                    return bad(format!(
                        "--server-pid {pid}: cannot read /proc/{pid}: {error}"
                    ));
                }
                Some((pid, process))
            }
            None => None,
        };
        let push_connections = if publishing { args.push_connections } else { 0 };
        limits::ensure_open_files(args.clients.saturating_add(push_connections))?;
        Ok(Self {
            sse_url: args.sse_url,
            sse,
            push_url: args.push_url.unwrap_or_default(),
            push,
            clients: args.clients,
            rate: args.rate,
            duration,
            warmup,
            grace,
            pushes_planned,
            push_connections,
            server,
            connect_concurrency: args.connect_concurrency,
            source_ips: args.source_ips,
            threads,
            unicast_report: recipients.as_ref().map(|recipients| UnicastReport {
                recipients: args.recipients.name(),
                uids_per_push: recipients.per_push(),
                seed: args.seed,
            }),
            unicast: recipients,
            typed: args.typed,
            observe: args.observe.is_some(),
        })
    }
}

/// Now, in ns since the UNIX epoch: the clock of `{ts}` and of receive times.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// Runs phases 2 to 4.
async fn bench(plan: &Plan) -> Result<Report, BenchError> {
    // Push connections first: if the push URL is wrong, fail before loading the server.
    let mut push_streams = Vec::new();
    if let Some(push) = &plan.push {
        for _ in 0..plan.push_connections {
            let stream = publisher::connect(push.target()).await.map_err(|reason| {
                BenchError::PushConnect {
                    url: plan.push_url.clone(),
                    reason,
                }
            })?;
            push_streams.push(stream);
        }
        tracing::info!(connections = push_streams.len(), "push connections open");
    }

    // An observer counts what is stamped from now on: it cannot know when the publisher starts.
    let began_ns = now_ns();
    let memory_before = server_memory(plan);
    let shared = Arc::new(Shared {
        target: plan.sse.addr,
        request: sse_request(&plan.sse),
        connect_timeout: CLIENT_CONNECT_TIMEOUT,
        pushes_planned: plan.pushes_planned,
        typed: plan.typed,
        publish_start_ns: AtomicU64::new(if plan.observe { began_ns } else { 0 }),
        dropped: AtomicU64::new(0),
        tallies: (0..(plan.threads as u64 * 4).min(plan.clients))
            .map(|_| Mutex::default())
            .collect(),
        unicast: plan
            .unicast
            .clone()
            .map(|recipients| Unicast::new(recipients, plan.pushes_planned)),
    });
    let (connected, connect_errors, connect_secs) = connect_clients(plan, &shared).await;
    let clients_connected = connected.iter().filter(|&&connected| connected).count() as u64;
    if clients_connected == 0 {
        return Err(BenchError::NoClient {
            url: plan.sse_url.clone(),
            reason: connect_errors.first_reason.unwrap_or_default(),
        });
    }

    tokio::time::sleep(plan.warmup).await;
    let memory_after = server_memory(plan);

    let generator = Process::current();
    let generator_cpu_before = generator.cpu_secs().ok();
    let server_cpu_before = plan.server.as_ref().and_then(|(_, p)| p.cpu_secs().ok());
    let start = Instant::now();
    let start_ns = if plan.observe { began_ns } else { now_ns() };
    shared.publish_start_ns.store(start_ns, Ordering::Release);
    let deadline = start + plan.duration + plan.grace;
    let owed = |push: &PushSpec, outcome: &PushOutcome| match &shared.unicast {
        Some(unicast) => unicast_owed(push, unicast, &connected).expected,
        None => outcome.acked * clients_connected,
    };
    let pushes = match &plan.push {
        Some(push) => {
            tracing::info!(rate = plan.rate, pushes = plan.pushes_planned, "publishing");
            publish_and_collect(push.clone(), push_streams, &shared, &owed, start, deadline).await
        }
        None if plan.observe => {
            let owed = plan.pushes_planned * clients_connected;
            tracing::info!(
                pushes = plan.pushes_planned,
                "observing another run's pushes"
            );
            let mut poll = tokio::time::interval(POLL);
            while shared.received() < owed && Instant::now() < start + plan.duration {
                poll.tick().await;
            }
            PushOutcome::default()
        }
        None => {
            tracing::info!(
                secs = plan.duration.as_secs_f64(),
                "holding idle connections"
            );
            tokio::time::sleep_until(start + plan.duration).await;
            PushOutcome::default()
        }
    };
    let window_secs = start.elapsed().as_secs_f64();
    let server_cpu_after = plan.server.as_ref().and_then(|(_, p)| p.cpu_secs().ok());
    let generator_cpu_after = generator.cpu_secs().ok();

    let total = shared.total();
    let (deliveries_expected, lost) = match (&plan.push, &shared.unicast) {
        (Some(push), Some(unicast)) => {
            let owed = unicast_owed(push, unicast, &connected);
            (owed.expected, owed.lost)
        }
        _ => {
            let pushes = if plan.observe {
                plan.pushes_planned
            } else {
                pushes.acked
            };
            let expected = pushes * clients_connected;
            (expected, expected.saturating_sub(total.received))
        }
    };
    let delivery_secs = total.last_receive_ns.saturating_sub(start_ns) as f64 / 1e9;
    let cpu_secs = match (server_cpu_before, server_cpu_after) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let server = plan.server.as_ref().map(|(pid, _)| {
        server_report(
            *pid,
            cpu_secs,
            total.received,
            memory_before,
            memory_after,
            clients_connected,
        )
    });
    Ok(Report {
        mode: if plan.unicast.is_some() {
            "unicast"
        } else if plan.observe {
            "observe"
        } else {
            "broadcast"
        },
        clients_requested: plan.clients,
        clients_connected,
        connect_secs: round3(connect_secs),
        connect_errors: connect_errors.count,
        clients_dropped: shared.dropped.load(Ordering::Relaxed),
        pushes_planned: plan.pushes_planned,
        pushes_sent: pushes.sent,
        pushes_acked: pushes.acked,
        push_errors: pushes.sent - pushes.acked,
        rate: plan.rate,
        duration_secs: plan.duration.as_secs_f64(),
        deliveries_expected,
        deliveries_received: total.received,
        lost,
        duplicates: total.duplicates,
        misdelivered: total.misdelivered,
        other_events: total.other,
        latency_ms: Latency::of(&total.latency),
        deliveries_per_sec: if delivery_secs > 0.0 {
            (total.received as f64 / delivery_secs).round()
        } else {
            0.0
        },
        window_secs: round3(window_secs),
        generator_cpu_secs: match (generator_cpu_before, generator_cpu_after) {
            (Some(before), Some(after)) => round3(after - before),
            _ => 0.0,
        },
        server,
        unicast: plan.unicast_report.clone(),
    })
}

/// What the connected clients of a uni-cast run are owed, and did not get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owed {
    /// Over acknowledged pushes, the clients each is for that connected.
    expected: u64,
    /// Of those, deliveries that did not arrive.
    lost: u64,
}

/// Sums, push by push, what the clients of a uni-cast run are owed: a push not acknowledged is
/// owed to nobody, and one for a client that never connected is not owed to it.
fn unicast_owed(push: &PushSpec, unicast: &Unicast, connected: &[bool]) -> Owed {
    let mut owed = Owed {
        expected: 0,
        lost: 0,
    };
    let mut clients = Vec::new();
    for seq in 0..unicast.delivered.len() as u64 {
        if !push.is_acked(seq) {
            continue;
        }
        unicast.recipients.of_push(seq, &mut clients);
        let expected = clients
            .iter()
            .filter(|&&client| {
                usize::try_from(client)
                    .ok()
                    .and_then(|client| connected.get(client))
                    .is_some_and(|&connected| connected)
            })
            .count() as u64;
        owed.expected += expected;
        owed.lost += expected.saturating_sub(unicast.delivered(seq));
    }
    owed
}

/// The `GET` every client sends.
fn sse_request(target: &Target) -> Box<[u8]> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\
         User-Agent: ssehub-bench\r\n\r\n",
        target.path, target.host
    )
    .into_bytes()
    .into()
}

/// The count of failed clients and the first reason, for the log and the error.
#[derive(Debug, Default)]
struct ConnectErrors {
    count: u64,
    first_reason: Option<String>,
}

/// Spawns every client and waits until each has connected or failed. Returns which connected
/// (by index), the failures, and the seconds it took.
async fn connect_clients(plan: &Plan, shared: &Arc<Shared>) -> (Vec<bool>, ConnectErrors, f64) {
    let began = Instant::now();
    let permits = Arc::new(Semaphore::new(
        usize::try_from(plan.connect_concurrency).unwrap_or(Semaphore::MAX_PERMITS),
    ));
    let (outcomes, mut results) = mpsc::unbounded_channel();
    for index in 0..plan.clients {
        tokio::spawn(reader::run_client(
            index as usize,
            target::source_ip(index as usize, plan.source_ips),
            shared.clone(),
            permits.clone(),
            outcomes.clone(),
        ));
    }
    drop(outcomes);
    // Every client's attempt is bounded, and at most `connect_concurrency` run at once.
    let waves = plan.clients.div_ceil(plan.connect_concurrency);
    let give_up = began + CLIENT_CONNECT_TIMEOUT * u32::try_from(waves + 1).unwrap_or(u32::MAX);
    let mut connected = 0;
    let mut which = vec![false; usize::try_from(plan.clients).unwrap_or(0)];
    let mut errors = ConnectErrors::default();
    let mut last_log = began;
    while connected + errors.count < plan.clients {
        let Ok(Some((index, result))) = tokio::time::timeout_at(give_up, results.recv()).await
        else {
            break;
        };
        match result {
            Ok(()) => {
                connected += 1;
                if let Some(client) = which.get_mut(index) {
                    *client = true;
                }
            }
            Err(reason) => {
                errors.count += 1;
                if errors.first_reason.is_none() {
                    tracing::warn!(%reason, "a client could not connect (first of any)");
                    errors.first_reason = Some(reason);
                }
            }
        }
        if last_log.elapsed() >= Duration::from_secs(1) {
            last_log = Instant::now();
            tracing::info!(connected, errors = errors.count, "connecting");
        }
    }
    let unanswered = plan.clients - connected - errors.count;
    errors.count += unanswered;
    let secs = began.elapsed().as_secs_f64();
    tracing::info!(
        connected,
        errors = errors.count,
        secs = round3(secs),
        "clients connected"
    );
    (which, errors, secs)
}

/// Publishes, then waits until every acknowledged push reached every connected client it is
/// for (`owed` counts those deliveries), or the deadline.
async fn publish_and_collect(
    push: Arc<PushSpec>,
    streams: Vec<tokio::net::TcpStream>,
    shared: &Shared,
    owed: &dyn Fn(&PushSpec, &PushOutcome) -> u64,
    start: Instant,
    deadline: Instant,
) -> PushOutcome {
    let mut publishing = tokio::spawn(publisher::publish(push.clone(), streams, start, deadline));
    let mut poll = tokio::time::interval(POLL);
    let outcome = loop {
        tokio::select! {
            outcome = &mut publishing => break outcome.unwrap_or_else(|error| {
                tracing::error!(%error, "the publisher failed");
                PushOutcome::default()
            }),
            _ = poll.tick() => {}
        }
    };
    tracing::info!(sent = outcome.sent, acked = outcome.acked, "pushes done");
    let expected = owed(&push, &outcome);
    loop {
        if shared.received() >= expected || Instant::now() >= deadline {
            break;
        }
        poll.tick().await;
    }
    if shared.unicast.is_some() {
        // Copies of a push to the wrong clients travel with the right one and may be a little
        // behind it: read a moment longer, so that a misdelivery is not missed for ending early.
        tokio::time::sleep_until(deadline.min(Instant::now() + UNICAST_SETTLE)).await;
    }
    outcome
}

/// The server's memory now, if it was asked for and can be read.
fn server_memory(plan: &Plan) -> Option<Memory> {
    let (pid, process) = plan.server.as_ref()?;
    process
        .memory()
        .inspect_err(|error| tracing::warn!(pid, %error, "cannot read the server's memory"))
        .ok()
}

fn server_report(
    pid: u32,
    cpu_secs: Option<f64>,
    received: u64,
    before: Option<Memory>,
    after: Option<Memory>,
    clients: u64,
) -> ServerReport {
    let per_connection = |pick: fn(&Memory) -> u64| match (before, after) {
        (Some(before), Some(after)) => {
            Some(((pick(&after) as f64 - pick(&before) as f64) / clients as f64).round())
        }
        _ => None,
    };
    ServerReport {
        pid,
        cpu_secs: cpu_secs.map(round3),
        efficiency: cpu_secs
            .filter(|secs| *secs > 0.0)
            .map(|secs| (received as f64 / secs).round()),
        pss_bytes_before: before.map(|memory| memory.pss),
        pss_bytes_after: after.map(|memory| memory.pss),
        bytes_per_connection: per_connection(|memory| memory.pss),
        rss_bytes_before: before.map(|memory| memory.rss),
        rss_bytes_after: after.map(|memory| memory.rss),
        rss_bytes_per_connection: per_connection(|memory| memory.rss),
    }
}

fn round3(value: f64) -> f64 {
    (value * 1e3).round() / 1e3
}

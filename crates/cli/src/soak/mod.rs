//! `ssehub soak`: a long run against a hub with a store, checking the hub's promises rather than
//! its speed. Many clients, each under its own uid, drop their streams at random and resume with
//! `Last-Event-ID`; some read slowly or pause; pushes mix uni-cast and broadcast. At the end every
//! client must have received exactly the acknowledged pushes addressed to it or to everyone, once
//! each, and nothing addressed to another client. While it runs, the server's resident memory,
//! open descriptors and the delivery latency are sampled into a JSON-lines file.
//!
//! ```text
//! ssehub soak --sse-url 'http://127.0.0.1:61100/events?uid={uid}' \
//!             --push-url http://127.0.0.1:61100/push --clients 5000 --rate 100 \
//!             --duration 1800 --server-pid PID --samples soak.jsonl
//! ```

mod client;
mod ledger;
mod publisher;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::bench::error::BenchError;
use crate::bench::limits::ensure_open_files;
use crate::bench::proc_stats::Process;
use crate::bench::report::new_histogram;
use crate::bench::target::{Target, source_ip};
use client::{Counters, Phase};
use ledger::{Ledger, Recipient};
use publisher::Published;

/// The options of `ssehub soak`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The event stream, with `{uid}` where each client's uid (s0, s1, ...) goes: http:// on
    /// 127.0.0.0/8 or localhost.
    #[arg(long, value_name = "URL")]
    sse_url: String,
    /// Where to POST the pushes (`{"uids":["s7"],...}` or, for a broadcast, no uids).
    #[arg(long, value_name = "URL")]
    push_url: String,
    /// Clients, each with its own uid.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    clients: u32,
    /// Pushes per second.
    #[arg(long, value_name = "PUSHES_PER_SEC", default_value_t = 100.0)]
    rate: f64,
    /// The share of pushes that are broadcasts; the others go to one random client.
    #[arg(long, value_name = "0..1", default_value_t = 0.1)]
    broadcast_share: f64,
    /// Bytes of each push's data (padded with `x`).
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    data_bytes: usize,
    /// Keep-alive connections the pushes are spread over (push n on connection n mod K).
    #[arg(long, value_name = "K", default_value_t = 8)]
    push_connections: u64,
    /// Seconds of pushing.
    #[arg(long, value_name = "SECS", default_value_t = 1800.0)]
    duration: f64,
    /// Mean seconds between a client's own drops of its stream (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    drop_every: f64,
    /// The share of clients that read slowly: a 4 KiB receive buffer, at most --slow-rate bytes
    /// a second, and they stop reading for a while (--pause on average) every --pause-every
    /// seconds or so. Once the pushes are over they read at full speed, to catch up.
    #[arg(long, value_name = "0..1", default_value_t = 0.05)]
    slow_share: f64,
    /// Mean seconds of a slow client's pause.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    pause: f64,
    /// Mean seconds between a slow client's pauses.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pause_every: f64,
    /// Bytes a second a slow client reads (0: no cap). Keep it above the stream's own rate: a
    /// reader slower than its stream on average falls out of any finite history and is told so
    /// (`history-gap`); the verdict counts what such a notice covered apart from silent loss.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 2048.0)]
    slow_rate: f64,
    /// Seconds without a byte (not even a heartbeat) after which a client takes its stream for
    /// dead and reconnects, as the ssehub client does (0: never, as a browser's EventSource).
    /// The default suits a hub with the default 30 s heartbeat. A server whose kernel gave up
    /// on a client that was only slow (`TCP_USER_TIMEOUT`) sends it nothing more and no reset:
    /// without this the client waits for ever.
    #[arg(long, value_name = "SECS", default_value_t = 65.0)]
    idle_timeout: f64,
    /// Seconds after the last push for clients to catch up before the check.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    grace: f64,
    /// Seconds between samples.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    sample_every: f64,
    /// The server's pid: its resident memory and open descriptors go into the samples.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Where to write the samples, one JSON object a line.
    #[arg(long, value_name = "FILE")]
    samples: Option<std::path::PathBuf>,
    /// Seed of the run's randomness (recipients, drops, pauses).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Connection attempts in flight at once.
    #[arg(long, value_name = "C", default_value_t = 100)]
    connect_concurrency: usize,
    /// Source addresses the clients spread over (127.0.0.2, ...).
    #[arg(long, value_name = "N", default_value_t = 250)]
    source_ips: u32,
    /// Worker threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
}

/// One sample of the run.
#[derive(Debug, Serialize)]
struct Sample {
    secs: f64,
    phase: &'static str,
    server_rss_bytes: Option<u64>,
    server_open_fds: Option<u64>,
    connected: u64,
    connects: u64,
    drops: u64,
    server_ended: u64,
    pushes_acked: u64,
    received: u64,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_max_ms: Option<f64>,
}

/// A client that missed owed events, and what it went through.
#[derive(Debug, Serialize)]
struct LostClient {
    client: u32,
    lost: u64,
    lost_after_gap_notice: u64,
    /// The first and last push it lost silently.
    silent_range: Option<(u64, u64)>,
    /// How long before the end it last received one of its events.
    last_delivery_secs_before_end: Option<f64>,
    #[serde(flatten)]
    trace: client::Trace,
}

/// The verdict, printed as one JSON line.
#[derive(Debug, Serialize)]
struct Verdict {
    clients: u32,
    pushes_planned: u64,
    pushes_acked: u64,
    pushes_failed: u64,
    deliveries_expected: u64,
    deliveries_received: u64,
    /// Owed deliveries that never arrived and that no `history-gap` notice covered.
    lost: u64,
    /// Owed deliveries that never arrived, sent before a `history-gap` notice the client then
    /// received: the hub told it they had left the history. Not a broken promise, but a sign
    /// that the history is short for the slowest readers.
    lost_after_gap_notice: u64,
    /// The first few silent losses, as (client, push seq): where to start looking.
    lost_examples: Vec<(u32, u64)>,
    /// The first few clients that missed anything, with their history.
    lost_clients: Vec<LostClient>,
    duplicates: u64,
    misdelivered: u64,
    history_gaps: u64,
    other_events: u64,
    connects: u64,
    connect_errors: u64,
    drops: u64,
    server_ended: u64,
    /// Streams a client gave up on after the idle timeout.
    given_up_silent: u64,
    ok: bool,
}

/// Runs `ssehub soak`: exit 0 when every promise held, 1 when one did not (or it could not
/// run), 2 on bad arguments.
pub fn run(args: Args) -> ExitCode {
    match check(&args).and_then(|(sse, push)| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads.max(1))
            .enable_all()
            .build()
            .map_err(|error| BenchError::BadArgument(format!("runtime: {error}")))?;
        Ok(runtime.block_on(soak(args, sse, push)))
    }) {
        Ok(verdict) => {
            println!("{}", serde_json::to_string(&verdict).unwrap_or_default());
            if verdict.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("ssehub soak: {error}");
            ExitCode::from(2)
        }
    }
}

fn check(args: &Args) -> Result<(Target, Target), BenchError> {
    let sse = Target::parse(&args.sse_url)?;
    if !sse.path.contains("{uid}") {
        return Err(BenchError::BadArgument(format!(
            "{}: put {{uid}} where each client's uid goes",
            args.sse_url
        )));
    }
    let push = Target::parse(&args.push_url)?;
    let share = |name: &str, value: f64| {
        if (0.0..=1.0).contains(&value) {
            Ok(())
        } else {
            Err(BenchError::BadArgument(format!(
                "--{name} {value}: between 0 and 1"
            )))
        }
    };
    share("broadcast-share", args.broadcast_share)?;
    share("slow-share", args.slow_share)?;
    if !(args.rate > 0.0 && args.duration > 0.0 && args.sample_every > 0.0) {
        return Err(BenchError::BadArgument(
            "--rate, --duration and --sample-every must be positive".into(),
        ));
    }
    ensure_open_files(u64::from(args.clients) + 10)?;
    Ok((sse, push))
}

async fn soak(args: Args, sse: Target, push: Target) -> Verdict {
    let pushes = (args.rate * args.duration).round() as u64;
    let ledger = Arc::new(Ledger::plan(
        pushes,
        args.clients,
        args.broadcast_share,
        args.seed,
    ));
    let shared = Arc::new(client::Shared {
        target: sse.addr,
        host: sse.host.clone(),
        path: sse.path.clone(),
        ledger: Arc::clone(&ledger),
        drop_every: args.drop_every,
        pause: args.pause,
        pause_every: args.pause_every,
        slow_rate: args.slow_rate,
        idle_timeout: (args.idle_timeout > 0.0).then(|| Duration::from_secs_f64(args.idle_timeout)),
        connect_timeout: Duration::from_secs(10),
        counters: Counters::default(),
        latency: Mutex::new(new_histogram()),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let slow_every = if args.slow_share > 0.0 {
        (1.0 / args.slow_share).round() as u32
    } else {
        0
    };
    let clients: Vec<_> = (0..args.clients)
        .map(|index| {
            let slow = slow_every > 0 && index % slow_every == slow_every - 1;
            tokio::spawn(client::run(
                index,
                source_ip(index as usize, args.source_ips),
                slow,
                Arc::clone(&shared),
                Arc::clone(&permits),
                phase_rx.clone(),
            ))
        })
        .collect();
    // Every client connects before the first push, so each is owed every push from the first.
    let connect_deadline = Instant::now() + Duration::from_secs(120);
    while shared.counters.started.load(Ordering::Relaxed) < u64::from(args.clients)
        && Instant::now() < connect_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "soak: {} clients connected; pushing {pushes} at {}/s",
        shared.counters.started.load(Ordering::Relaxed),
        args.rate
    );

    let published = Arc::new(Published::default());
    let publishing = tokio::spawn(publisher::run(
        push,
        Arc::clone(&ledger),
        args.rate,
        args.data_bytes,
        args.push_connections,
        Arc::clone(&published),
    ));
    let server = args.server_pid.map(Process::pid);
    let mut samples = args.samples.as_ref().and_then(|path| {
        std::fs::File::create(path)
            .map_err(|error| eprintln!("soak: cannot write {}: {error}", path.display()))
            .ok()
    });
    let start = Instant::now();
    let mut sample = |phase: &'static str| {
        let latency = std::mem::replace(
            &mut *shared
                .latency
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            new_histogram(),
        );
        let ms = |quantile: f64| {
            (!latency.is_empty()).then(|| latency.value_at_quantile(quantile) as f64 / 1e6)
        };
        let counters = &shared.counters;
        let record = Sample {
            secs: start.elapsed().as_secs_f64(),
            phase,
            server_rss_bytes: server
                .as_ref()
                .and_then(|process| process.memory().ok())
                .map(|memory| memory.rss),
            server_open_fds: args.server_pid.and_then(open_fds),
            connected: counters.connected.load(Ordering::Relaxed),
            connects: counters.connects.load(Ordering::Relaxed),
            drops: counters.drops.load(Ordering::Relaxed),
            server_ended: counters.server_ended.load(Ordering::Relaxed),
            pushes_acked: published.acked.load(Ordering::Relaxed),
            received: counters.received.load(Ordering::Relaxed),
            latency_p50_ms: ms(0.5),
            latency_p99_ms: ms(0.99),
            latency_max_ms: ms(1.0),
        };
        let line = serde_json::to_string(&record).unwrap_or_default();
        eprintln!("soak: {line}");
        if let Some(file) = &mut samples {
            let _ = writeln!(file, "{line}");
        }
    };
    let every = Duration::from_secs_f64(args.sample_every);
    let mut next_sample = start + every;
    let mut publishing = std::pin::pin!(publishing);
    loop {
        tokio::select! {
            _ = &mut publishing => break,
            () = tokio::time::sleep_until(next_sample) => {
                sample("running");
                next_sample += every;
            }
        }
    }

    // Drain: no more drops or pauses; wait until every owed delivery arrived, or the grace.
    let _ = phase_tx.send(Phase::Draining);
    let expected = expected_deliveries(&ledger, args.clients);
    let grace_end = Instant::now() + Duration::from_secs_f64(args.grace);
    while shared.counters.received.load(Ordering::Relaxed) < expected && Instant::now() < grace_end
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sample("drained");
    let _ = phase_tx.send(Phase::Finished);

    let mut lost = 0;
    let mut lost_after_gap_notice = 0;
    let mut lost_examples = Vec::new();
    let mut lost_clients = Vec::new();
    let finished_ns = crate::bench::now_ns();
    for handle in clients {
        let Ok(outcome) = handle.await else { continue };
        let missing = outcome
            .seen
            .missing(&ledger, outcome.index, &mut lost_examples);
        lost += missing.silent;
        lost_after_gap_notice += missing.after_gap_notice;
        if (missing.silent > 0 || missing.after_gap_notice > 0) && lost_clients.len() < 10 {
            let trace = outcome.trace;
            lost_clients.push(LostClient {
                client: outcome.index,
                lost: missing.silent,
                lost_after_gap_notice: missing.after_gap_notice,
                silent_range: missing.silent_range,
                last_delivery_secs_before_end: (trace.last_delivery_ns > 0)
                    .then(|| finished_ns.saturating_sub(trace.last_delivery_ns) as f64 / 1e9),
                trace,
            });
        }
    }
    let counters = &shared.counters;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let duplicates = load(&counters.duplicates);
    let misdelivered = load(&counters.misdelivered);
    Verdict {
        clients: args.clients,
        pushes_planned: pushes,
        pushes_acked: load(&published.acked),
        pushes_failed: load(&published.failed),
        deliveries_expected: expected,
        deliveries_received: load(&counters.received),
        lost,
        lost_after_gap_notice,
        lost_examples,
        lost_clients,
        duplicates,
        misdelivered,
        history_gaps: load(&counters.history_gaps),
        other_events: load(&counters.other_events),
        connects: load(&counters.connects),
        connect_errors: load(&counters.connect_errors),
        drops: load(&counters.drops),
        server_ended: load(&counters.server_ended),
        given_up_silent: load(&counters.silent),
        ok: lost == 0 && duplicates == 0 && misdelivered == 0,
    }
}

/// Acknowledged pushes times their recipients: what the clients must receive in all.
fn expected_deliveries(ledger: &Ledger, clients: u32) -> u64 {
    (0..ledger.len())
        .filter(|&seq| ledger.acked(seq))
        .map(|seq| match ledger.recipient(seq) {
            Some(Recipient::Everyone) => u64::from(clients),
            Some(Recipient::Client(_)) => 1,
            None => 0,
        })
        .sum()
}

/// Open descriptors of a process (entries of `/proc/PID/fd`).
fn open_fds(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|entries| entries.count() as u64)
}

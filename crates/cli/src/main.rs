//! `ssehub`: the ssehub command line. One module per subcommand.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod listen;
mod push;
mod serve;
mod soak;
mod token;

/// Server-Sent Events hub and client.
#[derive(Debug, Parser)]
#[command(name = "ssehub", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub: event streams at /events, pushes at /push, with JWT subscribers, a
    /// publisher key, history on disk, metrics and health checks.
    Serve(Box<serve::Args>),
    /// Print the events of an SSE stream, reconnecting as the spec says, until it stops or you
    /// press Ctrl+C.
    Listen(listen::Args),
    /// Push events through a hub's HTTP push API: to uids, topics, or (with --broadcast) everyone;
    /// prints the ids the hub gave them.
    #[command(after_help = push::EXIT_STATUS_HELP)]
    Push(push::Args),
    /// Sign a subscriber (or publisher) token with the hub's HS256 secret: for trying a hub and
    /// for scripts; your application signs its users' tokens itself.
    Token(token::Args),
    /// Load-test an SSE server on this machine: connect N clients, push at a fixed rate, print
    /// one JSON line (deliveries, loss, latency percentiles, server CPU and memory).
    Bench(bench::Args),
    /// Soak-test a hub with a store on this machine: clients that drop and resume, slow
    /// readers, uni-cast and broadcast pushes; checks nothing is lost, repeated or misdelivered,
    /// and samples the server's memory, descriptors and latency over time.
    Soak(soak::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Listen(args) => listen::run(args),
        Command::Push(args) => push::run(args),
        Command::Token(args) => token::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Soak(args) => soak::run(args),
    }
}

/// Diagnostics go to stderr so stdout carries only the events; `RUST_LOG` overrides the level.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

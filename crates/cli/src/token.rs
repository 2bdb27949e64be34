//! `ssehub token`: signs an HS256 subscriber (or publisher) token with the hub's secret, for
//! trying a hub, scripts and tests; an application signs its users' tokens itself.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ssehub_server::auth::{Claims, sign_hs256};
use ssehub_server::units::Span;

/// `ssehub token`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The uid (the token's `sub`).
    #[arg(long, value_name = "UID")]
    sub: String,

    /// A topic (or `prefix*` pattern) the holder may subscribe to; repeatable.
    #[arg(long = "topic", value_name = "PATTERN")]
    topics: Vec<String>,

    /// Let the holder push too (`"publish": true`).
    #[arg(long)]
    publish: bool,

    /// How long the token is valid.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    ttl: Span,

    /// The HS256 secret [default: the one `ssehub serve` keeps in --data-dir].
    #[arg(
        long,
        env = "SSEHUB_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    jwt_secret: Option<String>,

    /// Where `ssehub serve` keeps its generated secret [default: the user's data directory].
    #[arg(long, env = "SSEHUB_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    if args.sub.is_empty() {
        eprintln!("ssehub token: --sub is empty; it names the subscriber");
        return ExitCode::from(2);
    }
    if args.ttl.0 < Duration::from_secs(1) {
        eprintln!(
            "ssehub token: --ttl {} is too short; give at least 1s",
            args.ttl
        );
        return ExitCode::from(2);
    }
    let secret = match args.jwt_secret {
        Some(secret) => secret,
        None => {
            let Some(dir) = args
                .data_dir
                .or_else(ssehub_server::config::default_data_dir)
            else {
                eprintln!("ssehub token: no --jwt-secret and no data directory to read it from");
                return ExitCode::from(2);
            };
            let path = dir.join(ssehub_server::keys::JWT_SECRET_FILE);
            match std::fs::read_to_string(&path) {
                Ok(secret) => secret.trim().to_owned(),
                Err(error) => {
                    eprintln!(
                        "ssehub token: cannot read {}: {error}; give --jwt-secret, or --data-dir of a hub that generated one",
                        path.display()
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let claims = Claims::new(args.sub, args.ttl.0)
        .topics(args.topics)
        .publish(args.publish);
    match sign_hs256(&claims, &secret) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ssehub token: {error}");
            ExitCode::FAILURE
        }
    }
}

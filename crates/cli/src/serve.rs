//! `ssehub serve`: the standalone hub (the `ssehub-server` crate) from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use ssehub_server::config::{Config, Settings};

/// `ssehub serve`'s arguments: every setting, and where else settings come from.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Every setting is also read from its SSEHUB_* variable and from the \
    --config file (kebab-case keys); a flag beats its variable, which beats the file."
)]
pub(crate) struct Args {
    /// A TOML file of settings (its keys are the flags without their leading dashes; `cors-origins` and `anonymous-topics` are lists).
    #[arg(long, env = "SSEHUB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the effective configuration (secrets masked) as TOML, and exit.
    #[arg(long)]
    print_config: bool,

    #[command(flatten)]
    settings: Settings,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let file = match &args.config {
        Some(path) => match Settings::from_file(path) {
            Ok(settings) => settings,
            Err(error) => return usage(&error),
        },
        None => Settings::default(),
    };
    let config = match Config::from_settings(args.settings.over(file)) {
        Ok(config) => config,
        Err(error) => return usage(&error),
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ssehub serve: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match ssehub_server::Hubserver::bind(config).await {
            Ok(server) => server,
            // A certificate that changed between the check and the start, say.
            Err(ssehub_server::ServeError::Config(error)) => return usage(&error),
            Err(error) => {
                eprintln!("ssehub serve: {error}");
                return ExitCode::FAILURE;
            }
        };
        println!("{}", server.banner());
        server.run_until(ssehub_server::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// A configuration error: the message names the setting; exit status 2, as for bad flags.
fn usage(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("ssehub serve: {error}");
    ExitCode::from(2)
}

//! `tapline`: load CleverTap exports into a warehouse from a laptop or a runner.

mod cli;
mod load_cmd;
mod logging;
#[cfg(feature = "clevertap-api")]
mod pull_cmd;
#[cfg(feature = "relay")]
mod relay_cmd;
mod summary;
mod warehouse_url;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// Why a command could not run at all (exit code 1); per-file and per-slice failures are
/// reported by the command itself.
type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Keep 2 for "some file was not loaded": a usage error is EX_USAGE.
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(cli::EXIT_USAGE),
            };
        }
    };
    logging::init_tracing(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_FATAL);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Errors quote object names and API answers: printed escaped.
            eprintln!(
                "error: {}",
                tapline::printable::escaped(&tapline::load::error_chain(e.as_ref()))
            );
            ExitCode::from(cli::EXIT_FATAL)
        }
    }
}

/// Runs one subcommand; returns the exit code.
async fn run(command: Command) -> Result<u8, AnyError> {
    match command {
        Command::Load(args) => load_cmd::load(args, false).await,
        Command::Sweep(args) => load_cmd::load(args, true).await,
        Command::Status(args) => load_cmd::status(args).await,
        Command::Query(args) => load_cmd::query(args).await,
        #[cfg(feature = "relay")]
        Command::Relay(args) => relay_cmd::run(args).await,
        #[cfg(not(feature = "relay"))]
        Command::Relay(_) => Err(not_built("relay", "relay")),
        #[cfg(feature = "clevertap-api")]
        Command::Pull(args) => pull_cmd::run(args).await,
        #[cfg(feature = "clevertap-api")]
        Command::Alerts(args) => pull_cmd::alerts(args).await,
        #[cfg(not(feature = "clevertap-api"))]
        Command::Pull(_) => Err(not_built("pull", "clevertap-api")),
        #[cfg(not(feature = "clevertap-api"))]
        Command::Alerts(_) => Err(not_built("alerts", "clevertap-api")),
    }
}

/// Why a command this build leaves out cannot run, and how to get it.
#[cfg(not(all(feature = "relay", feature = "clevertap-api")))]
fn not_built(command: &str, feature: &str) -> AnyError {
    format!(
        "`tapline {command}` is not in this build (the `{feature}` feature is off): \
         `cargo build -p tapline-cli` with the default features (or `make build`) has every command"
    )
    .into()
}

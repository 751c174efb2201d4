//! `tapline`: load CleverTap exports into a warehouse from a laptop or a runner.

mod cli;
mod load_cmd;
mod logging;
#[cfg(feature = "clevertap-api")]
mod pull_cmd;
mod reconcile_cmd;
#[cfg(feature = "relay")]
mod relay_cmd;
#[cfg(feature = "sqlite")]
mod retype_cmd;
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
                tapline::printable::escaped(&tapline::error::error_chain(e.as_ref()))
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
        #[cfg(feature = "sqlite")]
        Command::Retype(args) => retype_cmd::retype(args).await,
        #[cfg(not(feature = "sqlite"))]
        Command::Retype(_) => Err(not_built("retype", "sqlite")),
        Command::Reconcile(args) => reconcile_cmd::run(args).await,
        Command::Report(args) => reconcile_cmd::report(args).await,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own checks of every flag, default and help text, in the features this is built with.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// What running `args` in this build fails with.
    #[cfg(not(all(feature = "relay", feature = "clevertap-api", feature = "postgres")))]
    async fn error_of(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(args).expect("a command line this build parses");
        run(cli.command).await.expect_err("refused").to_string()
    }

    /// A build without the relay (`make demo`'s) still takes `tapline relay …` with its flags,
    /// then says which feature brings it instead of failing on the flags.
    #[cfg(not(feature = "relay"))]
    #[tokio::test]
    async fn a_build_without_the_relay_names_the_feature() {
        let error = error_of(&["tapline", "relay", "serve", "--config", "relay.toml"]).await;
        assert_eq!(
            error,
            "`tapline relay` is not in this build (the `relay` feature is off): \
             `cargo build -p tapline-cli` with the default features (or `make build`) has every command"
        );
    }

    /// The same for `pull` and `alerts` without CleverTap's API.
    #[cfg(not(feature = "clevertap-api"))]
    #[tokio::test]
    async fn a_build_without_the_api_names_the_feature() {
        let pull = error_of(&[
            "tapline",
            "pull",
            "events",
            "--event",
            "Charged",
            "--from",
            "2022-09-01",
            "--to",
            "2022-09-01",
        ])
        .await;
        assert!(
            pull.starts_with(
                "`tapline pull` is not in this build (the `clevertap-api` feature is off)"
            ),
            "{pull}"
        );
        let alerts = error_of(&["tapline", "alerts", "--rules", "alerts.json"]).await;
        assert!(
            alerts.starts_with(
                "`tapline alerts` is not in this build (the `clevertap-api` feature is off)"
            ),
            "{alerts}"
        );
    }

    /// A PostgreSQL URL in a build without PostgreSQL is refused by name, not as an unknown scheme.
    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_build_without_postgres_refuses_its_url_by_name() {
        let error = error_of(&[
            "tapline",
            "query",
            "--warehouse",
            "postgres://loader@db.example/analytics",
            "SELECT 1",
        ])
        .await;
        assert_eq!(
            error,
            "cannot use warehouse \"postgres://loader@db.example/analytics\": this build has no \
             PostgreSQL support (feature postgres)"
        );
    }
}

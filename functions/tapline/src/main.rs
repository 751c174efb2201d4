//! `tapline`: load CleverTap exports into a warehouse from a laptop or a runner.

mod cli;
mod commands;
mod pull_cmd;
mod relay_cmd;
mod summary;
mod warehouse_url;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
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
    cli::init_tracing(cli.verbose, cli.log_format);
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
    match runtime.block_on(commands::run(cli.command)) {
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

//! Logs to stderr, escaped: object names and API answers never reach a terminal raw.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Logs to stderr; `TAPLINE_LOG` (or `RUST_LOG`) overrides the level from `-v`.
pub fn init_tracing(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "error",
        1 => "info",
        _ => "debug",
    };
    let filter = std::env::var("TAPLINE_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_writer(|| tapline::printable::EscapedLines::text(std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_writer(|| tapline::printable::EscapedLines::json(std::io::stderr()))
            .init(),
    }
}

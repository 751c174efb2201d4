//! What every process (Lambda function, Cloud Run service, `tapline relay serve`) does the same
//! way: JSON logs filtered by `TAPLINE_LOG`, stopping on SIGTERM (what Lambda and Cloud Run send)
//! or Ctrl-C, and the listener a Cloud Run service binds.

use tracing::info;

/// The variable that filters logs (`info` by default; `tapline=debug,info` style).
pub const ENV_LOG: &str = "TAPLINE_LOG";

/// Installs JSON logs (one object per line, fields flattened) as the global subscriber.
#[cfg(feature = "entry-logs")]
pub fn init_json_logs() {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(|| crate::printable::EscapedLines::json(std::io::stdout()))
        .init();
}

/// Resolves on SIGTERM or Ctrl-C; servers pass it to their graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("Shutting down: finishing work in flight.");
}

/// The variable Cloud Run sets to the port a service must listen on.
pub const ENV_PORT: &str = "PORT";
/// The interface to listen on (default `0.0.0.0`, which Cloud Run needs; tests use loopback).
pub const ENV_LISTEN_HOST: &str = "TAPLINE_LISTEN_HOST";

/// The listener a Cloud Run service binds: `TAPLINE_LISTEN_HOST` (default `0.0.0.0`) and `PORT`
/// (default 8080). A `PORT` that is not a port number is an error, not a silent default.
pub async fn listen_from_env() -> std::io::Result<tokio::net::TcpListener> {
    let port: u16 = match std::env::var(ENV_PORT) {
        Ok(p) => p.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{ENV_PORT}={p:?} is not a port number"),
            )
        })?,
        Err(_) => 8080,
    };
    let host = std::env::var(ENV_LISTEN_HOST).unwrap_or_else(|_| "0.0.0.0".to_string());
    tokio::net::TcpListener::bind((host.as_str(), port)).await
}

//! What every cloud entry point does the same way: JSON logs filtered by `TAPLINE_LOG`, and
//! stopping on SIGTERM (what Lambda and Cloud Run send) or Ctrl-C.

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

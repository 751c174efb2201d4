//! Assembly: a [`Relay`] is the router and the worker built from one configuration, and
//! [`serve`] runs both on a listener until shut down.

use std::collections::HashMap;
#[cfg(feature = "relay-local")]
use std::future::Future;
#[cfg(feature = "relay-local")]
use std::path::Path;
use std::sync::Arc;

use axum::Router;
#[cfg(feature = "relay-local")]
use tokio::net::TcpListener;
use tokio::sync::Notify;
#[cfg(feature = "relay-local")]
use tokio::sync::watch;
#[cfg(feature = "relay-local")]
use tracing::info;

use crate::webhook_relay::clock::Clock;
use crate::webhook_relay::config::{DestinationKind, RelayConfig};
#[cfg(feature = "relay-local")]
use crate::webhook_relay::delivery::worker::DeliveryWorker;
use crate::webhook_relay::delivery::worker::DestinationMap;
use crate::webhook_relay::destinations::Destination;
use crate::webhook_relay::destinations::clevertap_upload::CleverTapUploadDestination;
use crate::webhook_relay::destinations::http_forward::HttpDestination;
use crate::webhook_relay::destinations::slack::SlackDestination;
use crate::webhook_relay::destinations::warehouse::WarehouseDestination;
#[cfg(feature = "relay-local")]
use crate::webhook_relay::queue::DeliveryQueue;
#[cfg(feature = "relay-local")]
use crate::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
use crate::webhook_relay::queue::{AcceptQueue, QueueError};
use crate::webhook_relay::router::{RelayState, router};

/// The relay could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The queue could not be opened or failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The HTTP client could not be built (TLS roots).
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The listener failed.
    #[error("cannot serve HTTP")]
    Serve(#[source] std::io::Error),
    /// The configuration was parsed for the endpoint alone: it has no destination secrets.
    #[error(
        "route {route:?}: destination {destination:?} has no secrets: the configuration was \
         parsed for the endpoint, not the worker"
    )]
    UnresolvedDestination {
        /// The route.
        route: String,
        /// The destination.
        destination: String,
    },
}

impl RelayError {
    /// Whether starting again may help without changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            RelayError::Queue(err) => err.is_retryable(),
            RelayError::Client(_) | RelayError::UnresolvedDestination { .. } => false,
            RelayError::Serve(_) => true,
        }
    }
}

/// The HTTP client destinations share: no redirects (a destination cannot bounce a payload to
/// a URL that is not in the configuration) and the configured timeout.
pub fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, RelayError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("tapline-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(RelayError::Client)
}

/// Every destination of `config`, built once; URLs come only from the configuration. Refused
/// for a configuration parsed for the endpoint ([`crate::webhook_relay::config::ConfigMode::Endpoint`]).
pub fn destinations(
    config: &RelayConfig,
    client: &reqwest::Client,
) -> Result<DestinationMap, RelayError> {
    let timeout = config.settings.delivery_timeout;
    let mut map: DestinationMap = HashMap::new();
    for route in &config.routes {
        for dest in &route.destinations {
            let destination: Arc<dyn Destination> = match &dest.kind {
                DestinationKind::Slack { url } => {
                    Arc::new(SlackDestination::new(client.clone(), url.clone(), timeout))
                }
                DestinationKind::Http { url, signing_keys } => Arc::new(HttpDestination::new(
                    client.clone(),
                    url.clone(),
                    signing_keys.clone(),
                    timeout,
                )),
                DestinationKind::CleverTap {
                    url,
                    account_id,
                    passcode,
                    mapping,
                } => Arc::new(CleverTapUploadDestination::new(
                    client.clone(),
                    url.clone(),
                    account_id.clone(),
                    passcode.clone(),
                    mapping.clone(),
                    timeout,
                )),
                DestinationKind::Warehouse { url } => {
                    Arc::new(WarehouseDestination::new(url.clone(), timeout))
                }
                DestinationKind::Unresolved => {
                    return Err(RelayError::UnresolvedDestination {
                        route: route.name.clone(),
                        destination: dest.name.clone(),
                    });
                }
            };
            map.insert((route.name.clone(), dest.name.clone()), destination);
        }
    }
    Ok(map)
}

/// The relay's two halves over one queue: the HTTP router and the delivery worker (feature
/// `relay-local`: the cloud functions run one half each).
#[cfg(feature = "relay-local")]
pub struct Relay {
    /// Accepts webhooks.
    pub router: Router,
    /// Delivers them.
    pub worker: Arc<DeliveryWorker>,
    /// The queue both use.
    pub queue: Arc<dyn DeliveryQueue>,
    /// Rung after each accept so the worker starts at once.
    pub wake: Arc<Notify>,
}

#[cfg(feature = "relay-local")]
impl Relay {
    /// Builds the relay for `config` over `queue`, with destinations from the configuration.
    pub fn new(
        config: &RelayConfig,
        queue: Arc<dyn DeliveryQueue>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RelayError> {
        let client = http_client(config.settings.delivery_timeout)?;
        Ok(Self::with_destinations(
            config,
            queue,
            clock,
            destinations(config, &client)?,
        ))
    }

    /// Builds the relay with the given destinations (tests use doubles here).
    pub fn with_destinations(
        config: &RelayConfig,
        queue: Arc<dyn DeliveryQueue>,
        clock: Arc<dyn Clock>,
        destinations: DestinationMap,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let worker = Arc::new(
            DeliveryWorker::new(
                queue.clone(),
                destinations,
                config.settings.retry.clone(),
                clock.clone(),
            )
            .with_retention(config.settings.retention)
            .with_dead_letter_retention(config.settings.dead_letter_retention),
        );
        let state = Arc::new(
            RelayState::new(config, queue.clone(), clock, wake.clone())
                .with_pauses(worker.pauses()),
        );
        Self {
            router: router(state),
            worker,
            queue,
            wake,
        }
    }

    /// The relay with its SQLite queue under `state_dir` and the system clock: what
    /// `tapline relay serve` and `replay` run.
    pub fn local(config: &RelayConfig, state_dir: &Path) -> Result<Self, RelayError> {
        let queue: Arc<dyn DeliveryQueue> = Arc::new(SqliteDeliveryQueue::open_with_limits(
            state_dir,
            config.settings.queue_limits,
        )?);
        Self::new(
            config,
            queue,
            Arc::new(crate::webhook_relay::clock::SystemClock),
        )
    }
}

/// The HTTP endpoint alone, storing into `queue`, without a worker: what the Lambda behind the
/// function URL runs, where the queue is SQS and another function delivers.
pub fn accept_router(
    config: &RelayConfig,
    queue: Arc<dyn AcceptQueue>,
    clock: Arc<dyn Clock>,
) -> Router {
    router(Arc::new(RelayState::new(
        config,
        queue,
        clock,
        Arc::new(Notify::new()),
    )))
}

/// Serves `relay` on `listener` under `limits` and runs its worker until `shutdown` completes;
/// then stops accepting, lets in-flight requests finish within the shutdown grace, and stops
/// the worker after its current attempts. Whatever is still pending stays in the queue for the
/// next start.
#[cfg(feature = "relay-local")]
pub async fn serve(
    relay: Relay,
    listener: TcpListener,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = relay.worker.clone();
    let wake = relay.wake.clone();
    let worker_task = tokio::spawn(async move { worker.run(wake, stop_rx).await });
    let addr = listener.local_addr().map_err(RelayError::Serve)?;
    info!(%addr, max_connections = limits.max_connections, "Relay listening.");
    let result = crate::http_server::serve(listener, relay.router, limits, shutdown)
        .await
        .map_err(RelayError::Serve);
    let _ = stop_tx.send(true);
    let _ = worker_task.await;
    info!("Relay stopped.");
    result
}

/// The server's timeouts, connection cap and shutdown grace (`TAPLINE_HTTP_*`).
pub use crate::http_server::ServerLimits;
/// Resolves on SIGTERM or Ctrl-C: what `serve` waits for outside tests.
pub use crate::process::shutdown_signal;

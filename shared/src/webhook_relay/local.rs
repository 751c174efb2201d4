//! The relay on one machine (`tapline relay serve`, feature `relay-local`): a [`Relay`] is the
//! router and the delivery worker built from one configuration over one queue, and [`serve`]
//! runs both on a listener until shut down.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tracing::info;

use crate::http_server::ServerLimits;
use crate::webhook_relay::clock::Clock;
use crate::webhook_relay::config::RelayConfig;
use crate::webhook_relay::delivery::worker::{DeliveryWorker, DestinationMap};
use crate::webhook_relay::queue::DeliveryQueue;
use crate::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
use crate::webhook_relay::relay::{RelayError, destinations, http_client};
use crate::webhook_relay::router::{RelayState, router};

/// The relay's two halves over one queue: the HTTP router and the delivery worker (feature
/// `relay-local`: the cloud functions run one half each).
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

/// Serves `relay` on `listener` under `limits` and runs its worker until `shutdown` completes;
/// then stops accepting, lets in-flight requests finish within the shutdown grace, and stops
/// the worker after its current attempts. Whatever is still pending stays in the queue for the
/// next start.
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

//! Assembly from one configuration: the HTTP client the destinations share and every
//! destination, and [`RelayError`], why a relay cannot start. Every function of the relay uses
//! it; the router is in `router` (feature `relay-endpoint`), the one-machine relay in `local`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::webhook_relay::config::{DestinationKind, RelayConfig};
use crate::webhook_relay::delivery::worker::DestinationMap;
use crate::webhook_relay::destinations::Destination;
use crate::webhook_relay::destinations::clevertap_upload::CleverTapUploadDestination;
use crate::webhook_relay::destinations::http_forward::HttpDestination;
use crate::webhook_relay::destinations::slack::SlackDestination;
use crate::webhook_relay::destinations::warehouse::WarehouseDestination;
use crate::webhook_relay::queue::QueueError;

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
                DestinationKind::ExportStatus { source, mode } => Arc::new(
                    crate::webhook_relay::destinations::export_status::ExportStatusDestination::new(
                        source.clone(),
                        mode.clone(),
                        client.clone(),
                        timeout,
                    ),
                ),
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

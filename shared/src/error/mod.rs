//! The one top-level error of the library, grouped by meaning (a source, the warehouse, the
//! configuration). Each variant knows whether retrying can help: that decides a Lambda batch item
//! failure, a Cloud Run 5xx and a CLI's exit code. Errors are shown with [`error_chain`].

pub mod chain;

pub use chain::error_chain;

use crate::warehouse::WarehouseError;

/// An operation that did not complete. Data problems in a file are not errors: they are
/// outcomes (a quarantined `FileOutcome` of the export loader) recorded in the ledger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing or opening a source failed (permission, not found, network).
    #[error("cannot read {uri}")]
    Source {
        /// The object or prefix that could not be read.
        uri: String,
        /// What the source said.
        #[source]
        source: std::io::Error,
    },
    /// The warehouse refused or could not be reached.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// Configuration is invalid; nothing was attempted.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
}

impl Error {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Source { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::Unsupported
            ),
            Error::Warehouse(err) => err.is_retryable(),
            Error::Config(_) => false,
        }
    }
}

//! Why an invocation of the export loader failed as a whole, and a named kind that says whether
//! a retry can help: Lambda's `errorType`, the Cloud Run answer's status and `"retry"`, and what
//! the relay's `export-status` destination retries or dead-letters.

use crate::export_loader::load::{FileOutcome, FileReport};
use crate::triggers::TriggerError;

/// [`InvocationError::kind`] of a payload the loader does not understand.
pub const INVALID_LOAD_PAYLOAD: &str = "InvalidLoadPayload";
/// [`InvocationError::kind`] of a sweep whose location the loader cannot list for good.
pub const SWEEP_LOCATION_REFUSED: &str = "SweepLocationRefused";
/// [`InvocationError::kind`] of a failure a later invocation may not meet.
pub const LOAD_FAILED_RETRYABLE: &str = "LoadFailedRetryable";
/// [`InvocationError::kind`] of failed loads that someone must act on.
pub const LOAD_FAILED: &str = "LoadFailed";

/// The kinds a retry of the same payload cannot fix: a caller (the relay) gives up at once.
pub const NOT_RETRYABLE_KINDS: [&str; 3] =
    [INVALID_LOAD_PAYLOAD, SWEEP_LOCATION_REFUSED, LOAD_FAILED];

/// Why a direct (non-SQS) invocation or a sweep failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The payload is not an event Tapline understands, or a sweep payload that does not parse.
    #[error(transparent)]
    Payload(#[from] TriggerError),
    /// At least one announced or swept object failed to load.
    #[error("{failed} of {total} objects failed: {first}")]
    Loads {
        /// Objects that failed.
        failed: usize,
        /// Objects tried.
        total: usize,
        /// The first failure.
        first: String,
        /// Whether any failed object may load when tried again (warehouse or storage busy or
        /// down); `false` when every failure needs someone to act (the object is gone, access
        /// is denied).
        retryable: bool,
    },
    /// A sweep could not list its location or read the ledger for it: nothing was loaded.
    #[error("sweep of {uri} could not list it or read the ledger")]
    SweepListing {
        /// The location.
        uri: String,
        /// Why.
        #[source]
        source: crate::Error,
    },
}

impl InvocationError {
    /// A sweep payload marked as one that does not parse (a mistake in the schedule or the
    /// caller): named as any payload the loader does not understand.
    pub fn malformed_sweep(error: &serde_json::Error) -> Self {
        InvocationError::Payload(TriggerError::Unrecognised(format!(
            "sweep payload: {error}"
        )))
    }

    /// A name for the kind of failure, for Lambda's `errorType` (CloudWatch metric filters, the
    /// relay's retries) and the Cloud Run answer's `errorType`:
    /// - `InvalidLoadPayload`: the payload is no event the loader understands, or a sweep payload
    ///   that does not parse (`uri` missing, a malformed `request_id`); nothing was tried.
    /// - `SweepLocationRefused`: the sweep names a location the loader cannot list for a reason
    ///   a retry cannot change (not its storage's `s3://` / `gs://`, no such bucket, access
    ///   denied); nothing was loaded.
    /// - `LoadFailedRetryable`: the warehouse or the storage was busy or down (the listing, the
    ///   ledger read or an object's load); invoking again may succeed.
    /// - `LoadFailed`: objects failed, none for a reason a retry fixes (the object is gone,
    ///   access to it denied, the warehouse refusing the rows); the ledger keeps each failure.
    pub fn kind(&self) -> &'static str {
        match self {
            InvocationError::Payload(_) => INVALID_LOAD_PAYLOAD,
            InvocationError::SweepListing {
                source: source @ crate::Error::Source { .. },
                ..
            } if !source.is_retryable() => SWEEP_LOCATION_REFUSED,
            _ if self.is_retryable() => LOAD_FAILED_RETRYABLE,
            _ => LOAD_FAILED,
        }
    }

    /// Whether invoking again with the same payload may succeed without anyone changing
    /// anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            InvocationError::Payload(_) => false,
            InvocationError::Loads { retryable, .. } => *retryable,
            InvocationError::SweepListing { source, .. } => source.is_retryable(),
        }
    }

    /// `Err` naming the first failed object when any of `reports` failed, so the invocation
    /// fails as a whole (Lambda retries it, the error metric and its alarm see it).
    pub fn of_reports(reports: &[FileReport]) -> Result<(), InvocationError> {
        let mut failed = reports.iter().filter_map(|r| match &r.outcome {
            FileOutcome::Failed { error, retryable } => Some((r, error.as_str(), *retryable)),
            _ => None,
        });
        let Some((first, error, first_retryable)) = failed.next() else {
            return Ok(());
        };
        let (rest, any_retryable) = failed.fold((0, first_retryable), |(n, any), (_, _, r)| {
            (n + 1, any || r)
        });
        Err(InvocationError::Loads {
            failed: 1 + rest,
            total: reports.len(),
            first: format!("{}: {error}", first.entry.uri),
            retryable: any_retryable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(kind: std::io::ErrorKind) -> InvocationError {
        InvocationError::SweepListing {
            uri: "s3://b/p/".to_string(),
            source: crate::Error::Source {
                uri: "s3://b/p/".to_string(),
                source: std::io::Error::new(kind, "listing"),
            },
        }
    }

    #[test]
    fn each_failure_has_a_kind_that_says_whether_to_retry() {
        let malformed = serde_json::from_str::<u8>("x").unwrap_err();
        let cases = [
            (
                InvocationError::malformed_sweep(&malformed),
                "InvalidLoadPayload",
            ),
            (
                InvocationError::Payload(TriggerError::Unrecognised("{}".into())),
                "InvalidLoadPayload",
            ),
            (
                listing(std::io::ErrorKind::InvalidInput),
                "SweepLocationRefused",
            ),
            (
                listing(std::io::ErrorKind::NotFound),
                "SweepLocationRefused",
            ),
            (
                listing(std::io::ErrorKind::PermissionDenied),
                "SweepLocationRefused",
            ),
            (listing(std::io::ErrorKind::Other), "LoadFailedRetryable"),
            (
                InvocationError::Loads {
                    failed: 1,
                    total: 2,
                    first: "x".into(),
                    retryable: true,
                },
                "LoadFailedRetryable",
            ),
            (
                InvocationError::Loads {
                    failed: 1,
                    total: 2,
                    first: "x".into(),
                    retryable: false,
                },
                "LoadFailed",
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err}");
            assert_eq!(
                err.is_retryable(),
                !NOT_RETRYABLE_KINDS.contains(&kind),
                "{err}"
            );
        }
    }
}

//! The worker Lambda's small objects in the payload bucket (feature `relay-sqs`), through the
//! one S3 adapter ([`S3Source`]): dedupe claims (`dedupe/<route>/<destination>/<sha256>`, see
//! [`crate::webhook_relay::dedupe`]) and attempt records under `attempts/`
//! ([`crate::webhook_relay::dedupe::attempt_log`]).

use aws_sdk_s3::Client;

use crate::storage::s3::S3Source;
use crate::webhook_relay::dedupe::DedupeWindow;
use crate::webhook_relay::dedupe::bucket_objects::BucketObjects;

/// Claims and attempt records as objects of one S3 bucket.
pub type S3Objects = BucketObjects<S3Source>;

/// The dedupe window with its claims in S3.
pub type DedupeStore = DedupeWindow<S3Objects>;

impl BucketObjects<S3Source> {
    /// Claims and attempt records in `bucket`, reached with `client`.
    pub fn new(client: Client, bucket: impl AsRef<str>) -> Self {
        Self::in_bucket(S3Source::new(client), format!("s3://{}", bucket.as_ref()))
    }
}

//! The relay's claim store conformance suite on S3 (moto) and Cloud Storage (fake-gcs-server).

use async_trait::async_trait;
use tapline_tests::conformance::claim_store::ClaimHarness;

mod s3 {
    use super::*;
    use tapline::webhook_relay::dedupe::s3::S3Objects;

    struct OnMoto;

    #[async_trait]
    impl ClaimHarness for OnMoto {
        type Store = S3Objects;
        async fn store(&self, name: &str) -> S3Objects {
            let client = tapline_tests::servers::s3::client().await;
            let bucket = tapline_tests::servers::s3::new_bucket(&client, name).await;
            S3Objects::new(client, bucket)
        }
        async fn missing(&self) -> S3Objects {
            S3Objects::new(
                tapline_tests::servers::s3::client().await,
                "tapline-no-such-bucket",
            )
        }
    }

    tapline_tests::claim_store_conformance_tests!(OnMoto);
}

mod gcs {
    use super::*;
    use tapline::google_auth::GoogleAuth;
    use tapline::webhook_relay::dedupe::gcs::GcsObjects;
    use tapline_tests::servers::gcs::{gcs_url, new_bucket};

    struct OnFakeGcs;

    #[async_trait]
    impl ClaimHarness for OnFakeGcs {
        type Store = GcsObjects;
        async fn store(&self, name: &str) -> GcsObjects {
            let bucket = new_bucket(name).await;
            GcsObjects::new(&gcs_url(), GoogleAuth::anonymous(), bucket).unwrap()
        }
        async fn missing(&self) -> GcsObjects {
            GcsObjects::new(
                &gcs_url(),
                GoogleAuth::anonymous(),
                "tapline-no-such-bucket",
            )
            .unwrap()
        }
    }

    tapline_tests::claim_store_conformance_tests!(OnFakeGcs);
}

//! The storage conformance suite on local files, S3 (moto) and Cloud Storage (fake-gcs-server).

use std::sync::Arc;

use async_trait::async_trait;
use tapline::storage::{ObjectSource, ObjectStore};
use tapline_tests::conformance::storage::StorageHarness;

mod local {
    use super::*;
    use tapline::storage::local::LocalSource;

    struct InTempDir(tempfile::TempDir);

    #[async_trait]
    impl StorageHarness for InTempDir {
        async fn root(&self, name: &str) -> String {
            let root = std::fs::canonicalize(self.0.path()).unwrap().join(name);
            std::fs::create_dir_all(&root).unwrap();
            format!("file://{}", root.display())
        }
        async fn seed(&self, uri: &str, body: &[u8]) {
            let path = std::path::Path::new(uri.strip_prefix("file://").unwrap());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        async fn source(&self) -> Arc<dyn ObjectSource> {
            Arc::new(LocalSource)
        }
        async fn store(&self) -> Arc<dyn ObjectStore> {
            Arc::new(LocalSource)
        }
        fn keeps_metadata(&self) -> bool {
            false
        }
    }

    tapline_tests::storage_conformance_tests!(InTempDir(tempfile::tempdir().unwrap()));
}

mod s3 {
    use super::*;
    use tapline::storage::s3::{S3Source, parse_s3_uri};

    struct OnMoto;

    #[async_trait]
    impl StorageHarness for OnMoto {
        async fn root(&self, name: &str) -> String {
            let client = tapline_tests::servers::s3::client().await;
            let bucket =
                tapline_tests::servers::s3::new_bucket(&client, &format!("st-{name}")).await;
            format!("s3://{bucket}")
        }
        async fn seed(&self, uri: &str, body: &[u8]) {
            let (bucket, key) = parse_s3_uri(uri).unwrap();
            let client = tapline_tests::servers::s3::client().await;
            tapline_tests::servers::s3::put(&client, bucket, key, body.to_vec()).await;
        }
        async fn source(&self) -> Arc<dyn ObjectSource> {
            Arc::new(S3Source::new(tapline_tests::servers::s3::client().await))
        }
        async fn store(&self) -> Arc<dyn ObjectStore> {
            Arc::new(S3Source::new(tapline_tests::servers::s3::client().await))
        }
    }

    tapline_tests::storage_conformance_tests!(OnMoto);
}

mod gcs {
    use super::*;
    use std::time::Duration;
    use tapline::google_auth::GoogleAuth;
    use tapline::storage::gcs::{GcsSource, GcsStore, parse_gs_uri};
    use tapline_tests::servers::gcs::{gcs_url, new_bucket, put};

    struct OnFakeGcs;

    #[async_trait]
    impl StorageHarness for OnFakeGcs {
        async fn root(&self, name: &str) -> String {
            format!("gs://{}", new_bucket(&format!("st-{name}")).await)
        }
        async fn seed(&self, uri: &str, body: &[u8]) {
            let (bucket, key) = parse_gs_uri(uri).unwrap();
            put(bucket, key, body.to_vec()).await;
        }
        async fn source(&self) -> Arc<dyn ObjectSource> {
            Arc::new(
                GcsSource::new(&gcs_url(), GoogleAuth::anonymous())
                    .await
                    .unwrap(),
            )
        }
        async fn store(&self) -> Arc<dyn ObjectStore> {
            Arc::new(
                GcsStore::new(&gcs_url(), GoogleAuth::anonymous(), Duration::from_secs(10))
                    .unwrap(),
            )
        }
    }

    tapline_tests::storage_conformance_tests!(OnFakeGcs);
}

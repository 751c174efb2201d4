//! Amazon S3 (and S3-compatible stores) as an export source, a sink and a store with
//! conditional puts (`If-None-Match: *`, atomic in S3 since August 2024; `If-Match: <ETag>`),
//! through `aws-sdk-s3`: the one S3 client of the codebase.
//!
//! Credentials and region come from the usual AWS chain; `AWS_ENDPOINT_URL` points it at another
//! endpoint (moto in tests, MinIO), and then path-style addressing is used, which those expect.
//! Objects stream into the parser through a sync bridge on the parser's blocking thread: no
//! object is ever held whole in memory.

use std::io::{self, Read};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;

use super::{
    NewObject, ObjectEntry, ObjectMeta, ObjectSink, ObjectSource, ObjectStore, PutMode, StoreError,
    StoredObject,
};
use crate::Error;

/// Reads exports from S3, puts files and keeps small objects. Locations are
/// `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct S3Source {
    client: Client,
}

/// Splits `s3://bucket/prefix` into bucket and prefix.
pub fn parse_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix))
}

/// S3 reports ETags in quotes; the ledger keeps the bare value.
fn bare_etag(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Sorts an SDK error into the I/O kinds that decide retries: a missing object or a denied
/// request will not succeed by trying again; throttling, 5xx and network errors may.
fn to_io<E>(err: aws_sdk_s3::error::SdkError<E>) -> io::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_string);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let kind = match (code.as_deref(), status) {
        (Some("NoSuchKey" | "NoSuchBucket" | "NotFound"), _) | (_, Some(404)) => {
            io::ErrorKind::NotFound
        }
        (Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"), _)
        | (_, Some(403)) => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    let detail = match (code, err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
    };
    io::Error::new(kind, detail)
}

impl S3Source {
    /// A source with the AWS SDK's default configuration (environment, profile, instance
    /// role), path-style when `AWS_ENDPOINT_URL` is set.
    pub async fn from_env() -> Self {
        let shared = aws_config::load_from_env().await;
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            .build();
        Self::new(Client::from_conf(config))
    }

    /// A source over a client built elsewhere (tests, Lambda init).
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Every object whose key starts with `prefix`, in key order (S3 lists keys sorted).
    async fn list_objects(&self, bucket: &str, prefix: &str) -> io::Result<Vec<ObjectEntry>> {
        let mut entries = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(to_io)?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                entries.push(ObjectEntry {
                    uri: format!("s3://{bucket}/{key}"),
                    key: key.to_string(),
                    version: object.e_tag().map(bare_etag).unwrap_or_default(),
                    size: object.size().map(|s| s as u64),
                    created_at: object
                        .last_modified()
                        .and_then(|t| jiff::Timestamp::from_second(t.secs()).ok()),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(entries)
    }
}

#[async_trait]
impl ObjectSource for S3Source {
    async fn list(&self, location: &str) -> Result<Vec<ObjectEntry>, Error> {
        let source_err = |source: io::Error| Error::Source {
            uri: location.to_string(),
            source,
        };
        let (bucket, prefix) = parse_s3_uri(location).ok_or_else(|| {
            source_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected s3://BUCKET/PREFIX",
            ))
        })?;
        self.list_objects(bucket, prefix).await.map_err(source_err)
    }

    async fn open(&self, entry: &ObjectEntry) -> Result<Box<dyn Read + Send>, Error> {
        let source_err = |source: io::Error| Error::Source {
            uri: entry.uri.clone(),
            source,
        };
        let (bucket, key) = parse_s3_uri(&entry.uri).ok_or_else(|| {
            source_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an s3:// uri",
            ))
        })?;
        let mut request = self.client.get_object().bucket(bucket).key(key);
        if !entry.version.is_empty() {
            // Read exactly the version the ledger will record; a newer one fails the
            // precondition and is picked up by its own event or the next sweep.
            request = request.if_match(format!("\"{}\"", entry.version));
        }
        let object = request.send().await.map_err(|e| source_err(to_io(e)))?;
        let reader = tokio_util::io::SyncIoBridge::new(object.body.into_async_read());
        Ok(Box::new(reader))
    }
}

#[async_trait]
impl ObjectSink for S3Source {
    async fn put_file(&self, uri: &str, path: &std::path::Path) -> io::Result<()> {
        let (bucket, key) = parse_s3_uri(uri)
            .filter(|(_, key)| !key.is_empty())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "expected s3://BUCKET/KEY")
            })?;
        // One PutObject: S3 shows the object only once it is stored whole.
        let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
            .await
            .map_err(io::Error::other)?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(to_io)?;
        Ok(())
    }
}

/// The bucket and key of an object uri, or an `InvalidInput` failure.
fn object_of(uri: &str) -> Result<(&str, &str), StoreError> {
    parse_s3_uri(uri)
        .filter(|(_, key)| !key.is_empty())
        .ok_or_else(|| StoreError::Failed {
            uri: uri.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "expected s3://BUCKET/KEY"),
        })
}

/// Sorts an SDK error for the store: a missing key is [`StoreError::NotFound`], a missing bucket
/// a failure of the store (retryable: the bucket may be created or the setting fixed).
fn store_err<E>(uri: &str, err: aws_sdk_s3::error::SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if err.code() == Some("NoSuchBucket") {
        return StoreError::Failed {
            uri: uri.to_string(),
            source: io::Error::other(to_io(err)),
        };
    }
    StoreError::from_io(uri, to_io(err))
}

/// The version and custom metadata S3 answered with an object.
fn meta_of(
    etag: Option<&str>,
    metadata: Option<&std::collections::HashMap<String, String>>,
) -> ObjectMeta {
    ObjectMeta {
        version: etag.map(bare_etag).unwrap_or_default(),
        metadata: metadata
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }
}

fn status_of<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

#[async_trait]
impl ObjectStore for S3Source {
    async fn put(&self, uri: &str, object: NewObject, mode: PutMode) -> Result<String, StoreError> {
        let (bucket, key) = object_of(uri)?;
        let mut put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_content_type(object.content_type)
            .set_metadata(Some(object.metadata.into_iter().collect()))
            .body(object.body.into());
        let replacing = matches!(mode, PutMode::Replace(_));
        put = match mode {
            PutMode::Overwrite => put,
            PutMode::Create => put.if_none_match("*"),
            PutMode::Replace(version) => put.if_match(format!("\"{}\"", bare_etag(&version))),
        };
        match put.send().await {
            Ok(output) => Ok(output.e_tag().map(bare_etag).unwrap_or_default()),
            // 409: another conditional write to the key was in flight; `If-Match` on a key
            // that is gone answers NoSuchKey: it is not at the version named either.
            Err(err)
                if matches!(status_of(&err), Some(412 | 409))
                    || (replacing && err.code() == Some("NoSuchKey")) =>
            {
                Err(StoreError::Precondition {
                    uri: uri.to_string(),
                })
            }
            Err(err) => Err(store_err(uri, err)),
        }
    }

    async fn head(&self, uri: &str) -> Result<ObjectMeta, StoreError> {
        let (bucket, key) = object_of(uri)?;
        let head = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_err(uri, e))?;
        Ok(meta_of(head.e_tag(), head.metadata()))
    }

    async fn get(&self, uri: &str) -> Result<StoredObject, StoreError> {
        let (bucket, key) = object_of(uri)?;
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_err(uri, e))?;
        let meta = meta_of(object.e_tag(), object.metadata());
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Failed {
                uri: uri.to_string(),
                source: io::Error::other(e),
            })?;
        Ok(StoredObject {
            meta,
            body: body.into_bytes().to_vec(),
        })
    }

    async fn delete(&self, uri: &str) -> Result<(), StoreError> {
        let (bucket, key) = object_of(uri)?;
        // S3 answers 204 whether or not the key existed.
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| store_err(uri, e))
    }

    async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectEntry>, StoreError> {
        let (bucket, key_prefix) = parse_s3_uri(prefix).ok_or_else(|| StoreError::Failed {
            uri: prefix.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "expected s3://BUCKET/PREFIX"),
        })?;
        self.list_objects(bucket, key_prefix)
            .await
            .map_err(|source| StoreError::Failed {
                uri: prefix.to_string(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_s3_uri("s3://b/exports/x.csv.gz"),
            Some(("b", "exports/x.csv.gz"))
        );
        assert_eq!(parse_s3_uri("s3://b"), Some(("b", "")));
        assert_eq!(parse_s3_uri("s3://b/"), Some(("b", "")));
        assert_eq!(parse_s3_uri("s3:///k"), None);
        assert_eq!(parse_s3_uri("gs://b/k"), None);
        assert_eq!(bare_etag("\"abc-2\""), "abc-2");
    }
}

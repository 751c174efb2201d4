//! AWS Secrets Manager (feature `aws-secrets`): what [`super::read_secret`] calls for an ARN or
//! a secret name, with the usual AWS credential chain and `AWS_ENDPOINT_URL`.

use super::{Secret, SecretError};

/// The string value of the Secrets Manager secret `arn`.
#[cfg(feature = "aws-secrets")]
pub(super) async fn read(arn: &str) -> Result<Secret, SecretError> {
    let shared = aws_config::load_from_env().await;
    let client = aws_sdk_secretsmanager::Client::new(&shared);
    let read_err = |source: Box<dyn std::error::Error + Send + Sync>| SecretError::Read {
        arn: arn.to_string(),
        source,
    };
    let value = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            read_err(
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                    .to_string()
                    .into(),
            )
        })?;
    value.secret_string().map(Secret::new).ok_or_else(|| {
        read_err("the secret has no string value (binary secrets are not supported)".into())
    })
}

/// Fails: this build has no Secrets Manager client.
#[cfg(not(feature = "aws-secrets"))]
pub(super) async fn read(arn: &str) -> Result<Secret, SecretError> {
    Err(SecretError::Read {
        arn: arn.to_string(),
        source: "this build reads no AWS Secrets Manager (the `aws-secrets` feature is off)".into(),
    })
}

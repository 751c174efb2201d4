//! Which store a secret reference points into, by its form, and reading it from there.

use super::{Secret, SecretError, aws};

/// Which store a secret reference points into, by its form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretReference {
    /// Google Secret Manager: a version's resource name, `projects/P/secrets/S/versions/V`
    /// (`V` a number or `latest`); `projects/P/secrets/S` means its latest version.
    GoogleVersion(String),
    /// AWS Secrets Manager: an ARN (`arn:aws:secretsmanager:…`) or a secret name.
    Aws(String),
}

impl SecretReference {
    /// Classifies `reference`. Anything not shaped like a Secret Manager name is an AWS secret
    /// id, so existing AWS deployments (ARNs or names) read as before.
    pub fn parse(reference: &str) -> Self {
        let parts: Vec<&str> = reference.split('/').collect();
        let named = |i: usize| parts.get(i).is_some_and(|p| !p.is_empty());
        match parts.as_slice() {
            ["projects", _, "secrets", _] if named(1) && named(3) => {
                SecretReference::GoogleVersion(format!("{reference}/versions/latest"))
            }
            ["projects", _, "secrets", _, "versions", _] if named(1) && named(3) && named(5) => {
                SecretReference::GoogleVersion(reference.to_string())
            }
            _ => SecretReference::Aws(reference.to_string()),
        }
    }
}

/// The value of the secret `reference` names: an AWS Secrets Manager ARN or a Google Secret
/// Manager version (see [`SecretReference`]), without the trailing line breaks a secret pasted
/// with `echo` brings.
pub async fn read_secret(reference: &str) -> Result<Secret, SecretError> {
    let value = match SecretReference::parse(reference) {
        SecretReference::GoogleVersion(name) => read_gcp_secret(&name).await?,
        SecretReference::Aws(id) => aws::read(&id).await?,
    };
    Ok(Secret::new(value.expose().trim_end_matches(['\r', '\n'])))
}

/// The value of the Secret Manager version `name`, through Google's endpoint or
/// `SECRET_MANAGER_ENDPOINT` (see [`super::gcp`]).
#[cfg(feature = "gcp-secrets")]
async fn read_gcp_secret(name: &str) -> Result<Secret, SecretError> {
    super::gcp::SecretManager::from_env()
        .map_err(|e| SecretError::Read {
            arn: name.to_string(),
            source: Box::new(e),
        })?
        .access(name)
        .await
}

/// Fails: this build has no Secret Manager client.
#[cfg(not(feature = "gcp-secrets"))]
async fn read_gcp_secret(name: &str) -> Result<Secret, SecretError> {
    Err(SecretError::Read {
        arn: name.to_string(),
        source: "this build reads no Google Secret Manager (the `gcp-secrets` feature is off)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_by_their_form() {
        use SecretReference::*;
        assert_eq!(
            SecretReference::parse("projects/acme/secrets/tapline-passcode/versions/3"),
            GoogleVersion("projects/acme/secrets/tapline-passcode/versions/3".into())
        );
        assert_eq!(
            SecretReference::parse("projects/acme/secrets/tapline-passcode"),
            GoogleVersion("projects/acme/secrets/tapline-passcode/versions/latest".into())
        );
        for aws in [
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tapline/passcode-AbCdEf",
            "tapline/passcode",
            "projects/acme/secrets//versions/1",
            "projects/acme/topics/t",
        ] {
            assert_eq!(SecretReference::parse(aws), Aws(aws.into()), "{aws}");
        }
    }
}

//! TLS towards the server, following libpq's `sslmode` and `sslrootcert`, on rustls.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ConfigError;

/// How the server's certificate is treated, following libpq: `prefer` and `require` encrypt
/// without verifying unless `sslrootcert` is given; `verify-ca` and `verify-full` verify
/// against `sslrootcert` or, without one, the Mozilla roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TlsPolicy {
    /// Encrypt when the server offers TLS, accept any certificate.
    EncryptOnly,
    /// Verify the chain and the host name against these extra roots (plus Mozilla's).
    Verify { root_cert: Option<PathBuf> },
}

/// The rustls configuration for a [`TlsPolicy`].
pub(super) fn tls_config(policy: &TlsPolicy) -> Result<rustls::ClientConfig, ConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |reason: String| ConfigError::Warehouse {
        url: "postgres://…".to_string(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let root_cert = match policy {
        TlsPolicy::EncryptOnly => {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth());
        }
        TlsPolicy::Verify { root_cert } => root_cert,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_cert {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("cannot read sslrootcert {}: {e}", path.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| bad(format!("bad certificate in {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("unusable certificate in {}: {e}", path.display())))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// libpq's `sslmode=require` without a root certificate: the channel is encrypted and the
/// handshake signatures are checked, but the certificate chain is not.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! The agent's rustls server configuration, mutual when `client_ca` is set: then only a
//! client whose certificate chains to one of those CA certificates (and is not in
//! `client_crl`) completes a handshake. The handshakes themselves run in
//! [`crate::adapters::http_server`], each on its connection's task under the connection
//! cap and bounded by the header timeout, so a slow or silent client holds up no other.

use super::config::ClientAuth;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer,
};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{path}: {problem}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the pair.
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(String),
    /// rustls refused the client CA certificates or revocation lists.
    #[error("client_ca / client_crl cannot be used: {0}")]
    ClientAuth(String),
}

/// A server configuration from a PEM certificate chain and a PEM private key, asking
/// every client for a certificate that `clients` accepts when set.
pub fn server_config(
    cert: &Path,
    key: &Path,
    clients: Option<&ClientAuth>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match clients {
        Some(clients) => builder.with_client_cert_verifier(client_verifier(clients, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Requires a client certificate chaining to one of `clients.ca` and, with
/// `clients.crl`, not revoked (a certificate whose issuer has no list there is refused).
fn client_verifier(
    clients: &ClientAuth,
    provider: Arc<tokio_rustls::rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(&clients.ca)? {
        roots
            .add(ca)
            .map_err(|e| pem(&clients.ca, format!("not a usable CA certificate: {e}")))?;
    }
    let crls = match &clients.crl {
        Some(path) => revocation_lists(path)?,
        None => Vec::new(),
    };
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        .build()
        .map_err(|e| TlsError::ClientAuth(e.to_string()))
}

/// The certificates of a PEM file: at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| pem(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem(path, "holds no certificate".to_owned()));
    }
    Ok(certs)
}

/// The revocation lists of a PEM file: at least one.
fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls: Vec<CertificateRevocationListDer<'static>> =
        CertificateRevocationListDer::pem_file_iter(path)
            .and_then(|crls| crls.collect())
            .map_err(|e| pem(path, e.to_string()))?;
    if crls.is_empty() {
        return Err(pem(path, "holds no certificate revocation list".to_owned()));
    }
    Ok(crls)
}

fn pem(path: &Path, problem: String) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        problem,
    }
}

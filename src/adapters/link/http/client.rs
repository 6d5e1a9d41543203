//! The HTTPS client every agent link shares, and what its TLS trusts and presents.
//!
//! Each setting is a file named by a variable, else a systemd credential of that name
//! when the service has one (`$CREDENTIALS_DIRECTORY/<name>`), read once per process:
//! - [`CA_FILE_ENV`] / `agent-ca`: PEM CA certificates (one or more, so an old and a
//!   new CA are trusted at once during a rotation), then the only roots for agents;
//!   without it the platform's roots are.
//! - [`CRL_FILE_ENV`] / `agent-crl` (needs a CA file): PEM revocation lists; an agent
//!   whose certificate is listed is refused, and so is one whose issuer has no list
//!   there (fail closed).
//! - [`CLIENT_CERT_FILE_ENV`] / `agent-client-cert` and [`CLIENT_KEY_FILE_ENV`] /
//!   `agent-client-key`: the certificate and key this host presents to agents (mutual
//!   TLS). The key never appears in an error or a log line.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use tokio_rustls::rustls;

/// The variable naming the PEM CA certificates trusted for agents.
pub const CA_FILE_ENV: &str = "RINGOPS_AGENT_CA_FILE";
/// The variable naming PEM revocation lists for agents' certificates.
pub const CRL_FILE_ENV: &str = "RINGOPS_AGENT_CRL_FILE";
/// The variable naming the PEM client certificate presented to agents.
pub const CLIENT_CERT_FILE_ENV: &str = "RINGOPS_AGENT_CLIENT_CERT_FILE";
/// The variable naming the PEM private key of that certificate.
pub const CLIENT_KEY_FILE_ENV: &str = "RINGOPS_AGENT_CLIENT_KEY_FILE";

/// How long connecting to an agent may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The shared client, and whether it presents a client certificate.
#[derive(Clone, Debug)]
pub struct AgentClient {
    /// The connection pool.
    pub http: reqwest::Client,
    /// True when agents are shown a client certificate (the token is then optional).
    pub identity: bool,
}

/// The client every agent link shares (one connection pool), or why there is none.
pub fn client() -> Result<AgentClient, String> {
    static CLIENT: OnceLock<Result<AgentClient, String>> = OnceLock::new();
    CLIENT.get_or_init(build).clone()
}

fn build() -> Result<AgentClient, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30));
    let ca = configured(CA_FILE_ENV, "agent-ca");
    if let Some(path) = &ca {
        let certs = reqwest::Certificate::from_pem_bundle(&read(CA_FILE_ENV, path)?)
            .map_err(|e| unusable(CA_FILE_ENV, path, &e))?;
        if certs.is_empty() {
            return Err(format!(
                "{CA_FILE_ENV} {}: holds no certificate",
                path.display()
            ));
        }
        builder = builder.tls_certs_only(certs);
    }
    if let Some(path) = configured(CRL_FILE_ENV, "agent-crl") {
        if ca.is_none() {
            return Err(format!(
                "{CRL_FILE_ENV} needs {CA_FILE_ENV} (the CAs it revokes for)"
            ));
        }
        let crls =
            reqwest::tls::CertificateRevocationList::from_pem_bundle(&read(CRL_FILE_ENV, &path)?)
                .map_err(|e| unusable(CRL_FILE_ENV, &path, &e))?;
        if crls.is_empty() {
            return Err(format!(
                "{CRL_FILE_ENV} {}: holds no revocation list",
                path.display()
            ));
        }
        builder = builder.tls_crls_only(crls);
    }
    let identity = identity()?;
    let presents = identity.is_some();
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    let http = builder
        .build()
        .map_err(|e| format!("cannot set up HTTPS: {}", crate::adapters::causes(&e)))?;
    Ok(AgentClient {
        http,
        identity: presents,
    })
}

/// The client certificate and key, when both are configured.
fn identity() -> Result<Option<reqwest::Identity>, String> {
    let cert = configured(CLIENT_CERT_FILE_ENV, "agent-client-cert");
    let key = configured(CLIENT_KEY_FILE_ENV, "agent-client-key");
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => {
            return Err(format!(
                "{CLIENT_CERT_FILE_ENV} and {CLIENT_KEY_FILE_ENV} go together: set both"
            ));
        }
    };
    let mut pem = read(CLIENT_CERT_FILE_ENV, &cert)?;
    pem.push(b'\n');
    pem.extend(read(CLIENT_KEY_FILE_ENV, &key)?);
    // The key's bytes stay out of the message: name the files only.
    reqwest::Identity::from_pem(&pem).map(Some).map_err(|_| {
        format!(
            "{CLIENT_CERT_FILE_ENV} {} and {CLIENT_KEY_FILE_ENV} {}: not a PEM certificate and its private key",
            cert.display(),
            key.display()
        )
    })
}

/// The file `env` names, else the credential `credential` when the service has it.
fn configured(env: &str, credential: &str) -> Option<PathBuf> {
    match std::env::var_os(env) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
            let path = PathBuf::from(dir).join(credential);
            path.is_file().then_some(path)
        }
    }
}

fn read(env: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {env} {}: {e}", path.display()))
}

fn unusable(env: &str, path: &Path, e: &reqwest::Error) -> String {
    format!("{env} {}: {}", path.display(), crate::adapters::causes(e))
}

/// What TLS refused in `e`, said for an operator, when the failure is TLS's: the
/// agent's certificate (untrusted, revoked) or this host's (refused by the agent).
pub fn tls_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let error = rustls_error(e)?;
    Some(match error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked) => format!(
            "its certificate is revoked (in {CRL_FILE_ENV}); renew it, or mend the revocation list"
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("its certificate is not trusted: {error} (check {CA_FILE_ENV})")
        }
        rustls::Error::AlertReceived(_) => format!(
            "it refused this host's client certificate (none shown, or not from a CA of its client_ca): {error} (check {CLIENT_CERT_FILE_ENV})"
        ),
        _ => error.to_string(),
    })
}

/// The rustls error in `e`'s chain, looking inside the I/O errors that carry it (their
/// `source` skips what they wrap, and one may wrap another).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::link::http::AgentError;
    use rustls::{AlertDescription, CertificateError};

    /// `error` as tokio-rustls and hyper hand it on: an I/O error in an I/O error.
    fn carried(error: rustls::Error) -> std::io::Error {
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
        std::io::Error::other(inner)
    }

    #[test]
    fn tls_refusals_name_the_certificate_at_fault_and_where_to_look() {
        let errors = [
            rustls::Error::InvalidCertificate(CertificateError::Revoked),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        ];
        let said: Vec<String> = errors
            .into_iter()
            .map(|e| {
                let problem = tls_problem(&carried(e)).expect("a TLS problem");
                let target = "https://10.0.3.22:7443".to_owned();
                AgentError::Tls { target, problem }.to_string()
            })
            .collect();
        insta::assert_snapshot!("tls-refusals", said.join("\n"));
        let plain = std::io::Error::other("connection refused");
        assert_eq!(tls_problem(&plain), None);
    }
}

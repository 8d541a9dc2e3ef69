//! [`TlsTrust`]: which certificates a TLS client trusts (the system's roots, a PEM
//! file's CAs, DER certificates, or a rustls configuration of the caller's own).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::ClientError;
use crate::tls::TlsError;

/// Which certificates a TLS client trusts, ready to connect with
/// ([`Client::connect_tls_with`](super::Client::connect_tls_with)). Cheap to clone.
#[derive(Clone)]
pub struct TlsTrust {
    pub(super) config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTrust").finish_non_exhaustive()
    }
}

impl TlsTrust {
    /// The system's root certificates: on Debian, the `ca-certificates` bundle in
    /// `/etc/ssl/certs`. As with OpenSSL, `SSL_CERT_FILE` (a PEM file) or
    /// `SSL_CERT_DIR` replace the system's store when set.
    pub fn system() -> Result<Self, ClientError> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let reasons: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
            let reason = if reasons.is_empty() {
                "the store is empty".to_string()
            } else {
                reasons.join("; ")
            };
            return Err(ClientError::SystemRoots(reason));
        }
        Self::with_roots(roots)
    }

    /// Every certificate in a PEM file: one CA, or several (a bundle), or a server's
    /// own self-signed certificate. Only these are trusted, not the system's roots.
    pub fn ca_file(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let error = |reason: String| ClientError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| error(e.to_string()))?;
        if certs.is_empty() {
            return Err(error("no CERTIFICATE section".into()));
        }
        let mut roots = RootCertStore::empty();
        for (i, cert) in certs.into_iter().enumerate() {
            roots
                .add(cert)
                .map_err(|e| error(format!("certificate {}: {e}", i + 1)))?;
        }
        Self::with_roots(roots)
    }

    /// These DER certificates (CAs, or a server's own self-signed certificate).
    pub fn ca_der<'a>(certs: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        for der in certs {
            roots
                .add(CertificateDer::from(der.to_vec()))
                .map_err(TlsError::Rejected)?;
        }
        Self::with_roots(roots)
    }

    /// A rustls configuration of the caller's own (other roots, client certificates).
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }

    fn with_roots(roots: RootCertStore) -> Result<Self, ClientError> {
        // The provider is named, as the server's is (src/tls.rs), so that a second
        // provider enabled elsewhere in the build cannot make the default ambiguous.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rejected)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

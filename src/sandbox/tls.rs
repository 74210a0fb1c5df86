//! HTTPS for the simulator, so tests exercise the transport used in production: the
//! same TLS handshake and certificate verification as against the real API.
//!
//! The certificate comes from the caller as PEM (tests make one at run time from a
//! throwaway CA; `sandbox --tls-cert/--tls-key` reads files). A failed handshake (the
//! client does not trust the certificate) closes the connection before any HTTP, so the
//! simulator's request counters show that nothing was sent.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A TLS server configuration for the simulator.
#[derive(Clone)]
pub struct ServerTls {
    pub(super) acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// From a PEM certificate chain (leaf first) and its PEM private key.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> std::io::Result<ServerTls> {
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {e}"))
        };
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("TLS certificate", &e))?;
        if certs.is_empty() {
            return Err(invalid("TLS certificate", &"no CERTIFICATE block in PEM"));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid("TLS key", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS versions", &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid("TLS certificate and key", &e))?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

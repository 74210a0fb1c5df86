//! Which servers the client trusts: the operating system's certificate store (where a
//! company's IT installs the CA of its TLS-inspecting proxy), plus the PEM bundle given
//! with `--ca-cert`. There is deliberately no way to turn verification off.
//!
//! Verification is reqwest's rustls platform verifier: on Linux it reads the system store
//! (honouring `SSL_CERT_FILE`/`SSL_CERT_DIR`), on macOS and Windows it asks the OS, which
//! also applies the OS's own policies. The crypto is `ring`, pure Rust plus assembly, so a
//! build needs no system OpenSSL or CMake.
//!
//! Because no provider is compiled in as reqwest's default, every `reqwest::Client` in
//! this crate and its tests must be built after [`install_crypto_provider`] (our
//! [`crate::api::Client::new`] does it); otherwise reqwest panics saying so.
//!
//! The bundle is read and every certificate in it parsed here, at start-up, so a wrong
//! path or a key file given by mistake stops the run before any request.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Installs `ring` as the process's rustls crypto provider (reqwest is built without one).
/// Idempotent: a second call, or a provider installed earlier, is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a PEM bundle of CA certificates for `--ca-cert`, checking that it holds at least
/// one certificate and that each one parses. Errors name the flag and file and say what to do.
pub fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| {
        format!("--ca-cert {shown}: cannot read the file: {e}; give the path of a PEM file")
    })?;
    let mut certificates = Vec::new();
    for (index, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let der = der.map_err(|e| {
            format!(
                "--ca-cert {shown}: certificate #{} is not valid PEM ({e}); \
                 export the CA certificate again in PEM format",
                index + 1
            )
        })?;
        check_certificate(&der).map_err(|e| {
            format!(
                "--ca-cert {shown}: certificate #{} is not a usable CA certificate ({e})",
                index + 1
            )
        })?;
        certificates.push(reqwest::Certificate::from_der(&der).map_err(|e| e.to_string())?);
    }
    if certificates.is_empty() {
        return Err(format!(
            "--ca-cert {shown}: no certificate found; the file must hold one or more \
             \"-----BEGIN CERTIFICATE-----\" blocks (PEM). Convert a DER file with \
             `openssl x509 -inform der -in ca.cer -out ca.pem`"
        ));
    }
    Ok(certificates)
}

/// What to do when a connection failed because the server's certificate is not trusted
/// (rustls says "invalid peer certificate: UnknownIssuer" and the like); `None` otherwise.
pub fn untrusted_certificate_hint(message: &str) -> Option<&'static str> {
    message.contains("peer certificate").then_some(
        "the server's TLS certificate is not trusted. If your network inspects TLS (a company \
         proxy), give its CA certificate with --ca-cert PATH (or PODERO_CA_CERT), or install it \
         in the system's certificate store; verification is never turned off",
    )
}

/// Parses one certificate as a trust anchor, as the verifier will.
fn check_certificate(der: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    rustls::RootCertStore::empty().add(der.clone().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), content).unwrap();
        file
    }

    #[test]
    fn a_bundle_without_certificates_is_refused_naming_the_flag() {
        let file = write("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        let error = load_ca_bundle(file.path()).unwrap_err();
        assert!(error.starts_with("--ca-cert "), "{error}");
        assert!(error.contains("no certificate found"), "{error}");
    }

    #[test]
    fn a_garbled_certificate_is_refused() {
        let file = write("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let error = load_ca_bundle(file.path()).unwrap_err();
        assert!(error.contains("certificate #1"), "{error}");
    }

    #[test]
    fn a_missing_file_is_refused() {
        let error = load_ca_bundle(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(error.contains("cannot read the file"), "{error}");
    }

    #[test]
    fn a_generated_ca_is_accepted() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let file = write(&format!("{}{}", ca.pem(), ca.pem()));
        assert_eq!(load_ca_bundle(file.path()).unwrap().len(), 2);
    }
}

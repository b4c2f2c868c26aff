//! TLS client configuration shared by the applets that speak HTTPS (wait-for, vault-fetch):
//! one place that reads CA certificates, client certificates, and implements the
//! server-name override and skip-verify, all on rustls with the ring provider (no OpenSSL).
//!
//! Every error is a usage error (exit 2) naming the setting as the user spelled it
//! (`--ca-file`, `VAULT_CACERT`), so callers pass those names in [`TlsOptions`].

#[cfg(feature = "inspect")]
pub mod inspect;

use std::path::PathBuf;
use std::sync::Arc;

use podinit_core::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A setting together with the name the user gave it by, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named<T> {
    /// `--ca-file`, `VAULT_CACERT`, …
    pub name: String,
    /// The value.
    pub value: T,
}

impl<T> Named<T> {
    /// Pairs a value with its flag or variable name.
    pub fn new(name: impl Into<String>, value: T) -> Self {
        Self { name: name.into(), value }
    }
}

/// What to trust and how to identify. Empty means: the system's CA certificates, no client
/// certificate, verify against the URL's host.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM files with CA certificates (instead of the system's).
    pub ca_files: Vec<Named<PathBuf>>,
    /// Directories whose `*.pem`/`*.crt` files are CA certificates.
    pub ca_dirs: Vec<Named<PathBuf>>,
    /// PEM text with CA certificates (e.g. `VAULT_CACERT_BYTES`).
    pub ca_pem: Option<Named<String>>,
    /// Client certificate chain and key (PEM files), for mutual TLS.
    pub client_identity: Option<(Named<PathBuf>, Named<PathBuf>)>,
    /// Verify the server's certificate for this name instead of the URL's host.
    pub server_name: Option<Named<String>>,
    /// Accept any server certificate (handshake signatures are still checked).
    pub insecure: bool,
}

/// Builds the rustls client configuration for `options`.
pub fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::usage(format!("setting up TLS: {e}")))?;
    let builder = if options.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let roots = Arc::new(roots(options)?);
        match &options.server_name {
            None => builder.with_root_certificates(roots),
            Some(name) => {
                let server = ServerName::try_from(name.value.clone())
                    .map_err(|_| Error::usage(format!("{} '{}' is not a DNS name or IP address", name.name, name.value)))?;
                let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider).build().map_err(|e| {
                    Error::usage(format!("setting up TLS verification: {e}"))
                        .with_hint(format!("with {}, give a CA certificate or mount the system's", name.name))
                })?;
                builder.dangerous().with_custom_certificate_verifier(Arc::new(VerifyAs { inner, name: server }))
            }
        }
    };
    match &options.client_identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key_der = PrivateKeyDer::from_pem_file(&key.value).map_err(|e| {
                Error::usage(format!("{} {}: {e}", key.name, key.value.display())).with_hint("mount the client key (PEM) at that path")
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::usage(format!("{} {} and {} {}: {e}", cert.name, cert.value.display(), key.name, key.value.display())))
        }
    }
}

/// The certificate the server showed and rustls refused, if that is somewhere in `err`'s
/// chain: as itself, inside the `io::Error`s TLS connectors wrap it in (whose `source` skips
/// the error they wrap), or, when a layer in between kept only its text, by rustls's wording.
/// A refused certificate is the pod spec's problem (`--ca-file`), never worth a retry.
pub fn certificate_problem(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let typed = podinit_core::redact::chain(err).find_map(|e| match e.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(why) => Some(format!("the server's certificate is not trusted: {why:?}")),
        rustls::Error::NoCertificatesPresented => Some("the server presented no certificate".into()),
        _ => None,
    });
    typed.or_else(|| podinit_core::redact::chain(err).map(ToString::to_string).find(|text| text.contains("invalid peer certificate")))
}

fn roots(options: &TlsOptions) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let explicit = !options.ca_files.is_empty() || !options.ca_dirs.is_empty() || options.ca_pem.is_some();
    if !explicit {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(certificates = added, "system CA certificates loaded");
        return Ok(roots);
    }
    let mut add = |certs: Vec<CertificateDer<'static>>, what: &str| -> Result<(), Error> {
        for cert in certs {
            roots.add(cert).map_err(|e| Error::usage(format!("{what}: {e}")))?;
        }
        Ok(())
    };
    for file in &options.ca_files {
        add(read_certs(file)?, &format!("{} {}", file.name, file.value.display()))?;
    }
    for dir in &options.ca_dirs {
        let shown = format!("{} {}", dir.name, dir.value.display());
        let entries = std::fs::read_dir(&dir.value).map_err(|e| {
            Error::usage(format!("{shown}: {}", podinit_core::redact::io_reason(&e))).with_hint("mount the CA directory at that path")
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt") && p.is_file())
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(Error::usage(format!("{shown} holds no *.pem or *.crt file")));
        }
        for path in paths {
            add(read_certs(&Named::new(dir.name.clone(), path.clone()))?, &format!("{} {}", dir.name, path.display()))?;
        }
    }
    if let Some(pem) = &options.ca_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.value.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| Error::usage(format!("{}: {e}", pem.name)))?;
        if certs.is_empty() {
            return Err(Error::usage(format!("{} holds no PEM certificate", pem.name)));
        }
        add(certs, &pem.name)?;
    }
    Ok(roots)
}

fn read_certs(file: &Named<PathBuf>) -> Result<Vec<CertificateDer<'static>>, Error> {
    let shown = format!("{} {}", file.name, file.value.display());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&file.value)
        .and_then(Iterator::collect)
        .map_err(|e| Error::usage(format!("{shown}: {e}")).with_hint("mount the certificate (PEM) at that path"))?;
    if certs.is_empty() {
        return Err(Error::usage(format!("{shown} holds no PEM certificate")));
    }
    Ok(certs)
}

/// Verifies the server's certificate for another name than the URL's host.
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Skip-verify: any certificate, but the handshake signatures still verify.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_setting_as_given() {
        let options = TlsOptions { ca_files: vec![Named::new("VAULT_CACERT", PathBuf::from("/nonexistent/ca.pem"))], ..Default::default() };
        let err = client_config(&options).unwrap_err();
        assert_eq!(err.kind(), podinit_core::Kind::Usage);
        assert!(err.message().starts_with("VAULT_CACERT /nonexistent/ca.pem: "), "{}", err.message());
    }

    #[test]
    fn empty_ca_directory_and_bad_pem_text_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = TlsOptions { ca_dirs: vec![Named::new("--ca-path", dir.path().to_owned())], ..Default::default() };
        assert!(client_config(&options).unwrap_err().message().contains("holds no *.pem or *.crt file"));
        let options = TlsOptions { ca_pem: Some(Named::new("VAULT_CACERT_BYTES", "not a certificate".into())), ..Default::default() };
        assert_eq!(client_config(&options).unwrap_err().message(), "VAULT_CACERT_BYTES holds no PEM certificate");
    }

    #[test]
    fn bad_server_name_is_a_usage_error() {
        let options = TlsOptions { server_name: Some(Named::new("--tls-server-name", "not a name!".into())), ..Default::default() };
        assert_eq!(client_config(&options).unwrap_err().message(), "--tls-server-name 'not a name!' is not a DNS name or IP address");
    }
}

//! `http://` and `https://` targets: a status in the expected set (2xx by default; a 503 is
//! not ready), optionally a body substring or a JSON field value. TLS through rustls with
//! the system's CA certificates, or `--ca-file`, `--tls-server-name`, `--insecure-skip-verify`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use podinit_core::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Status codes that count as ready: a list of ranges, e.g. `200-299,301`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl Default for StatusSet {
    fn default() -> Self {
        Self(vec![(200, 299)])
    }
}

impl StatusSet {
    /// Parses `200-299,301`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let code = |s: &str| s.trim().parse::<u16>().ok().filter(|c| (100..=599).contains(c));
            match (code(lo), code(hi)) {
                (Some(lo), Some(hi)) if lo <= hi => ranges.push((lo, hi)),
                _ => return Err(format!("'{part}' is not a status code or range (e.g. 200-299,301)")),
            }
        }
        Ok(Self(ranges))
    }

    fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect();
        f.write_str(&parts.join(","))
    }
}

/// HTTP and TLS settings from the command line.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpSettings {
    pub(crate) status: StatusSet,
    pub(crate) method: String,
    /// `(name, value)`; values may be secrets (Authorization) and are never logged.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body_contains: Option<String>,
    /// `(dotted path, expected value)`.
    pub(crate) json: Option<(String, String)>,
    pub(crate) follow_redirects: bool,
    pub(crate) ca_file: Option<std::path::PathBuf>,
    pub(crate) insecure: bool,
    pub(crate) server_name: Option<String>,
}

/// Largest body read for a body or JSON match.
const MAX_BODY: usize = 1 << 20;

pub(crate) struct HttpCheck {
    client: reqwest::Client,
    method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    settings: HttpSettings,
}

impl HttpCheck {
    pub(crate) fn new(settings: &HttpSettings, attempt_timeout: Duration) -> Result<Self, Error> {
        let method = reqwest::Method::from_bytes(settings.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::usage(format!("--http-method '{}' is not an HTTP method", settings.method)))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &settings.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::usage(format!("--http-header: '{name}' is not a header name")))?;
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| Error::usage(format!("--http-header {name}: the value has characters a header cannot carry")))?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        let redirect = if settings.follow_redirects { reqwest::redirect::Policy::limited(10) } else { reqwest::redirect::Policy::none() };
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(settings)?)
            .redirect(redirect)
            .connect_timeout(attempt_timeout)
            .user_agent(concat!("podinit-wait-for/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::usage(format!("setting up the HTTP client: {e}")))?;
        Ok(Self { client, method, headers, settings: settings.clone() })
    }

    pub(crate) async fn check(&self, url: &url::Url) -> anyhow::Result<()> {
        let response = self
            .client
            .request(self.method.clone(), url.as_str())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| anyhow!("{}", request_reason(&e)))?;
        let status = response.status();
        if !self.settings.status.contains(status.as_u16()) {
            bail!("answered {status} (ready on {})", self.settings.status);
        }
        if self.settings.body_contains.is_none() && self.settings.json.is_none() {
            return Ok(());
        }
        let body = read_body(response).await?;
        if let Some(text) = &self.settings.body_contains
            && !body.windows(text.len().max(1)).any(|w| w == text.as_bytes())
        {
            bail!("answered {status} but the body does not contain the text yet");
        }
        if let Some((path, want)) = &self.settings.json {
            let value: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| anyhow!("answered {status} but the body is not JSON ({e})"))?;
            match json_at(&value, path) {
                Some(found) if json_matches(found, want) => {}
                Some(found) => bail!("answered {status}; {path} is {found}, not {want}"),
                None => bail!("answered {status}; the JSON has no {path}"),
            }
        }
        Ok(())
    }
}

async fn read_body(mut response: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| anyhow!("reading the body: {}", request_reason(&e)))? {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_BODY {
            body.truncate(MAX_BODY);
            break;
        }
    }
    Ok(body)
}

/// The innermost cause, which says what went wrong (refused, TLS, DNS), without reqwest's
/// "error sending request for url (…)" wrapping.
fn request_reason(err: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = err;
    while let Some(next) = source.source() {
        source = next;
    }
    let text = match source.downcast_ref::<std::io::Error>() {
        Some(io) => podinit_core::redact::io_reason(io),
        None => source.to_string(),
    };
    if err.is_timeout() { format!("timed out ({text})") } else { text }
}

/// `a.b.0.c` into a JSON value.
pub(crate) fn json_at<'v>(value: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    path.split('.').filter(|p| !p.is_empty()).try_fold(value, |v, part| match v {
        serde_json::Value::Object(map) => map.get(part),
        serde_json::Value::Array(items) => items.get(part.parse::<usize>().ok()?),
        _ => None,
    })
}

/// A string compares as its text, anything else as its JSON (`true`, `3`, `null`).
fn json_matches(found: &serde_json::Value, want: &str) -> bool {
    match found {
        serde_json::Value::String(s) => s == want,
        other => serde_json::to_string(other).is_ok_and(|text| text == want),
    }
}

fn tls_config(settings: &HttpSettings) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::usage(format!("setting up TLS: {e}")))?;
    if settings.insecure {
        return Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))).with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &settings.ca_file {
        let shown = path.display();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect)
            .map_err(|e| Error::usage(format!("--ca-file {shown}: {e}")).with_hint("mount the CA certificate (PEM) at that path"))?;
        if certs.is_empty() {
            return Err(Error::usage(format!("--ca-file {shown} holds no PEM certificate")));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| Error::usage(format!("--ca-file {shown}: {e}")))?;
        }
    } else {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(certificates = added, "system CA certificates loaded");
    }
    if let Some(name) = &settings.server_name {
        let name = ServerName::try_from(name.clone())
            .map_err(|_| Error::usage(format!("--tls-server-name '{name}' is not a DNS name or IP address")))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().map_err(|e| {
            Error::usage(format!("setting up TLS verification: {e}"))
                .with_hint("with --tls-server-name, give --ca-file or mount system CA certificates")
        })?;
        return Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(VerifyAs { inner, name })).with_no_client_auth());
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
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

/// `--insecure-skip-verify`: any certificate, but the handshake signatures still verify.
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
    fn status_sets() {
        let s = StatusSet::parse("200-299, 301,404").unwrap();
        assert!(s.contains(204) && s.contains(301) && s.contains(404));
        assert!(!s.contains(503) && !s.contains(300));
        assert_eq!(s.to_string(), "200-299,301,404");
        assert!(StatusSet::default().contains(200) && !StatusSet::default().contains(503));
        for bad in ["", "abc", "299-200", "700", "2xx"] {
            assert!(StatusSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_paths() {
        let v: serde_json::Value = serde_json::from_str(r#"{"status":"UP","checks":[{"ok":true,"n":3}]}"#).unwrap();
        assert!(json_matches(json_at(&v, "status").unwrap(), "UP"));
        assert!(json_matches(json_at(&v, "checks.0.ok").unwrap(), "true"));
        assert!(json_matches(json_at(&v, "checks.0.n").unwrap(), "3"));
        assert!(json_at(&v, "checks.1.ok").is_none());
        assert!(json_at(&v, "status.x").is_none());
    }
}

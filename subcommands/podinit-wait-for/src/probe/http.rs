//! `http://` and `https://` targets: a status in the expected set (2xx by default; a 503 is
//! not ready), optionally a body substring or a JSON field value. TLS through rustls with
//! the system's CA certificates, or `--ca-file`, `--tls-server-name`, `--insecure-skip-verify`.

use std::time::Duration;

use anyhow::{anyhow, bail};
use podinit_core::Error;
use podinit_core::redirect::Credentials;
use podinit_tls::{Named, TlsOptions};

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
    /// Client certificate chain and key (PEM files) for mutual TLS.
    pub(crate) client_identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
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
        // Redirects are followed (never down to http); with --http-header values only to the
        // origin of the target, so a header such as an API key never reaches another host.
        let policy = podinit_core::redirect::Policy {
            max: 10,
            credentials: if settings.headers.is_empty() { Credentials::None } else { Credentials::SameOrigin },
        };
        let redirect = if settings.follow_redirects {
            reqwest::redirect::Policy::custom(move |attempt| match policy.check(attempt.previous(), attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(refusal),
            })
        } else {
            reqwest::redirect::Policy::none()
        };
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

async fn read_body(response: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    read_body_limited(response, MAX_BODY).await
}

/// The body's first `max` bytes.
pub(crate) async fn read_body_limited(mut response: reqwest::Response, max: usize) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| anyhow!("reading the body: {}", request_reason(&e)))? {
        body.extend_from_slice(&chunk);
        if body.len() >= max {
            body.truncate(max);
            break;
        }
    }
    Ok(body)
}

/// The innermost cause, which says what went wrong (refused, TLS, DNS), without reqwest's
/// "error sending request for url (…)" wrapping.
pub(crate) fn request_reason(err: &reqwest::Error) -> String {
    let text = podinit_core::redact::root_cause(err);
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

/// The TLS client configuration of every TLS target (https, rediss, amqps, grpcs).
pub(crate) fn tls_config(settings: &HttpSettings) -> Result<rustls::ClientConfig, Error> {
    podinit_tls::client_config(&TlsOptions {
        ca_files: settings.ca_file.iter().map(|path| Named::new("--ca-file", path.clone())).collect(),
        client_identity: settings
            .client_identity
            .as_ref()
            .map(|(cert, key)| (Named::new("--cert-file", cert.clone()), Named::new("--key-file", key.clone()))),
        server_name: settings.server_name.as_ref().map(|name| Named::new("--tls-server-name", name.clone())),
        insecure: settings.insecure,
        ..TlsOptions::default()
    })
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

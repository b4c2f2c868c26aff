//! The HTTP side: a reqwest client on a rustls (ring) configuration, redirects followed by
//! hand under [`Policy`] (never https → http, at most 10 hops) with the operator's
//! credentials (bearer token, header-file values) sent only to the origin the operator
//! named; errors classified by what waiting can fix ([`classify`]); [`HttpSource`], the ranges
//! of one version of a file for podinit-transfer's engine (`If-Range`: a file changed on the
//! server answers 200, and the download starts over instead of mixing versions).

use std::ops::Range;
use std::time::{Duration, SystemTime};

use podinit_core::redirect::{Credentials, Policy};
use podinit_core::retry::Verdict;
use podinit_core::{Error, Kind};
use podinit_tls::{Named, TlsOptions};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The server answered with an error status.
    Status { status: u16, retry_after: Option<Duration> },
    /// No answer, or the connection broke.
    Transport(String),
    /// The server's certificate is not trusted (or not for this name): waiting cannot fix it.
    Tls(String),
    /// A redirect podinit does not follow.
    Redirect(String),
    /// The file changed on the server underway (a range answered with the whole file).
    Changed,
    /// The bytes do not have the digest they must have.
    Mismatch(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status { status, .. } => {
                let reason = reqwest::StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
                write!(f, "the server answered {status} {reason}")
            }
            Self::Transport(why) | Self::Tls(why) | Self::Redirect(why) | Self::Mismatch(why) => f.write_str(why),
            Self::Changed => f.write_str("the file changed on the server during the download"),
        }
    }
}

impl std::error::Error for CallError {}

/// Whether waiting can fix it: no answer, 5xx, 408 and 429 yes; every other status, a refused
/// redirect, a mismatch and errors nobody foresaw no.
pub(crate) fn classify(err: &anyhow::Error) -> Verdict {
    match err.downcast_ref::<CallError>() {
        Some(CallError::Transport(_)) => Verdict::Retry,
        Some(CallError::Status { status, .. }) if *status >= 500 || matches!(status, 408 | 429) => Verdict::Retry,
        Some(CallError::Status { .. } | CallError::Tls(_) | CallError::Redirect(_) | CallError::Changed | CallError::Mismatch(_))
        | None => Verdict::Fatal(Kind::Failed),
    }
}

/// The call error behind a podinit error, if any.
pub(crate) fn call_error(err: &Error) -> Option<&CallError> {
    err.source_error().downcast_ref::<CallError>()
}

/// Turns a refusal into the message an operator acts on.
pub(crate) fn explain(err: Error) -> Error {
    let hint = match call_error(&err) {
        Some(CallError::Status { status: 404 | 410, .. }) => {
            "check the URL (a release asset's name usually carries the version and the platform)"
        }
        Some(CallError::Status { status: 401 | 403, .. }) => {
            "the server wants credentials: give --bearer-token-file or --header-file (mounted from a Secret), and check they are allowed to read this file"
        }
        Some(CallError::Redirect(_)) => "give the URL the redirect leads to, over https",
        Some(CallError::Tls(_)) => "for a server with a private CA, give its certificate with --ca-file",
        _ => return err,
    };
    err.with_hint(hint)
}

/// How long a 429 or 503 asks to wait (`Retry-After`: seconds or an HTTP date).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    httpdate::parse_http_date(text).ok().map(|at| at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The error of a response with a status other than the one wanted.
pub(crate) fn status_error(response: &reqwest::Response) -> CallError {
    CallError::Status { status: response.status().as_u16(), retry_after: retry_after(response.headers()) }
}

/// A failed request: a certificate the client refuses is [`CallError::Tls`] (fatal), anything
/// else no answer ([`CallError::Transport`], retried).
fn request_error(err: &reqwest::Error) -> CallError {
    match podinit_tls::certificate_problem(err) {
        Some(problem) => CallError::Tls(problem),
        None => CallError::Transport(reason(err)),
    }
}

/// The innermost cause (refused, TLS, DNS), without reqwest's "error sending request for url"
/// wrapping (which would show the URL unredacted).
fn reason(err: &reqwest::Error) -> String {
    let text = podinit_core::redact::root_cause(err);
    if err.is_timeout() { format!("timed out ({text})") } else { text }
}

/// What the client needs from the command line.
pub(crate) struct Settings {
    pub(crate) url: Url,
    /// `(name, value)` pairs sent only to the URL's origin; values are secrets.
    pub(crate) credentials: Vec<(String, String)>,
    pub(crate) ca_file: Option<std::path::PathBuf>,
    pub(crate) connect_timeout: Duration,
}

/// An HTTP client for one download.
pub(crate) struct Http {
    client: reqwest::Client,
    /// The URL the operator named: the origin credentials go to, the start of every chain.
    named: Url,
    credentials: HeaderMap,
    policy: Policy,
}

impl Http {
    pub(crate) fn new(settings: &Settings) -> Result<Self, Error> {
        let mut credentials = HeaderMap::new();
        for (name, value) in &settings.credentials {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Error::usage(format!("'{name}' is not a header name")))?;
            // The value is a secret: the error names the header, never the value.
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| Error::usage(format!("the value of header {name} has characters a header cannot carry")))?;
            value.set_sensitive(true);
            credentials.append(name, value);
        }
        let tls = podinit_tls::client_config(&TlsOptions {
            ca_files: settings.ca_file.iter().map(|path| Named::new("--ca-file", path.clone())).collect(),
            ..TlsOptions::default()
        })?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("podinit-http-get/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::usage(format!("setting up the HTTP client: {e}")))?;
        // Credentials are not sent to another origin at all (see `get`), so the policy itself
        // only guards the chain: no downgrade, at most 10 hops.
        let policy = Policy { max: 10, credentials: Credentials::None };
        Ok(Self { client, named: settings.url.clone(), credentials, policy })
    }

    /// The URL the operator named.
    pub(crate) fn named(&self) -> &Url {
        &self.named
    }

    /// GET `start` (the named URL or where it led) with `headers`, following redirects;
    /// returns the response and the URL that gave it. The operator's credentials go along only
    /// while the request is for the named origin.
    pub(crate) async fn get(&self, start: &Url, headers: &HeaderMap) -> anyhow::Result<(reqwest::Response, Url)> {
        let mut chain = vec![self.named.clone()];
        if *start != self.named {
            chain.push(start.clone());
        }
        let mut current = start.clone();
        loop {
            let mut request = self.client.get(current.clone()).headers(headers.clone());
            if current.origin() == self.named.origin() {
                request = request.headers(self.credentials.clone());
            }
            let response = request.send().await.map_err(|e| request_error(&e))?;
            let status = response.status();
            if !status.is_redirection() || status == reqwest::StatusCode::NOT_MODIFIED {
                return Ok((response, current));
            }
            let Some(location) = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()) else {
                return Ok((response, current));
            };
            let next = current.join(location).map_err(|e| {
                CallError::Redirect(format!("{} redirects to an unusable location ({e})", podinit_core::redact::url(&current)))
            })?;
            self.policy.check(&chain, &next).map_err(CallError::Redirect)?;
            tracing::debug!("{} redirects to {}", podinit_core::redact::url(&current), podinit_core::redact::url(&next));
            chain.push(next.clone());
            current = next;
        }
    }

    /// A small body (a checksum file), at most `limit` bytes.
    pub(crate) async fn get_small(&self, url: &Url, limit: usize) -> anyhow::Result<Vec<u8>> {
        let (mut response, _) = self.get(url, &HeaderMap::new()).await?;
        if !response.status().is_success() {
            return Err(status_error(&response).into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| CallError::Transport(reason(&e)))? {
            body.extend_from_slice(&chunk);
            anyhow::ensure!(body.len() <= limit, "the file is larger than {limit} bytes");
        }
        Ok(body)
    }
}

/// The next piece of a response body.
pub(crate) async fn chunk(response: &mut reqwest::Response) -> anyhow::Result<Option<bytes::Bytes>> {
    response.chunk().await.map_err(|e| CallError::Transport(format!("the connection broke during the body: {}", reason(&e))).into())
}

/// The ranges of one version of a file (see the module docs).
pub(crate) struct HttpSource<'a> {
    pub(crate) http: &'a Http,
    /// Where the named URL led (ranges skip the redirects).
    pub(crate) url: Url,
    /// A strong ETag, or a Last-Modified date.
    pub(crate) validator: String,
    pub(crate) size: u64,
}

impl podinit_transfer::Source for HttpSource<'_> {
    type Body = reqwest::Response;

    async fn open(&self, range: Range<u64>) -> anyhow::Result<Self::Body> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(&format!("bytes={}-{}", range.start, range.end - 1))?);
        headers.insert(header::IF_RANGE, HeaderValue::from_str(&self.validator)?);
        let (response, _) = self.http.get(&self.url, &headers).await?;
        match response.status().as_u16() {
            206 => {
                let want = format!("bytes {}-{}/{}", range.start, range.end - 1, self.size);
                let got = response.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
                if got != want {
                    // Another total size is another file; another range is a broken server.
                    if !got.ends_with(&format!("/{}", self.size)) {
                        return Err(CallError::Changed.into());
                    }
                    return Err(CallError::Transport(format!("asked for {want}, the server sent {got}")).into());
                }
                Ok(response)
            }
            // If-Range did not match: the whole (new) file instead of a range.
            200 | 416 => Err(CallError::Changed.into()),
            _ => Err(status_error(&response).into()),
        }
    }

    async fn next(&self, body: &mut Self::Body) -> anyhow::Result<Option<bytes::Bytes>> {
        chunk(body).await
    }

    fn classify(&self, err: &anyhow::Error) -> Verdict {
        classify(err)
    }

    fn changed(&self, err: &Error) -> bool {
        matches!(call_error(err), Some(CallError::Changed))
    }

    fn explain(&self, err: Error) -> Error {
        explain(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_waiting_can_fix() {
        let status = |status| anyhow::Error::new(CallError::Status { status, retry_after: None });
        for s in [500, 502, 503, 504, 408, 429] {
            assert_eq!(classify(&status(s)), Verdict::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 410, 416] {
            assert_eq!(classify(&status(s)), Verdict::Fatal(Kind::Failed), "{s}");
        }
        assert_eq!(classify(&CallError::Transport("reset".into()).into()), Verdict::Retry);
        assert_eq!(classify(&CallError::Redirect("to http".into()).into()), Verdict::Fatal(Kind::Failed));
        assert_eq!(classify(&anyhow::anyhow!("something nobody foresaw")), Verdict::Fatal(Kind::Failed));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past: no wait");
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}

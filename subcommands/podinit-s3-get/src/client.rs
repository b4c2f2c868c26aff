//! The aws-sdk-s3 client on podinit's terms, and what its errors mean.
//!
//! The client comes from aws-config's standard chain (`AWS_*` variables, profiles, web
//! identity/IRSA, EKS Pod Identity, instance metadata) with the flags on top. Its own retries
//! are off: every call goes through podinit's retry helper, so `--timeout` and SIGTERM bound
//! every wait. Its response checksum validation is off too: podinit verifies the bytes
//! itself, across ranges, and says what it checked. TLS is rustls on ring, as in every applet.

use std::fmt;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_s3::error::SdkError;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use podinit_core::retry::Verdict;
use podinit_core::{Error, Kind};

use crate::spec::S3Url;

/// Settings for the client, from the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) endpoint_url: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) path_style: Option<bool>,
    pub(crate) no_sign_request: bool,
}

/// Builds the client. Addressing: `--path-style`/`--virtual-hosted` when given, else path
/// style for a custom endpoint (MinIO, Garage, Ceph; what s5cmd does) and virtual-hosted for AWS.
pub(crate) async fn client(settings: &Settings) -> Result<Client, Error> {
    let http = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if settings.no_sign_request {
        loader = loader.no_credentials();
    }
    let sdk = loader.load().await;
    let custom_endpoint = sdk.endpoint_url().is_some();
    let mut config = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(settings.path_style.unwrap_or(custom_endpoint))
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().connect_timeout(std::time::Duration::from_secs(5)).build())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if sdk.region().is_none() {
        // Like s5cmd and aws cli: without a region, us-east-1 (any region works for a custom endpoint).
        config = config.region(Region::new("us-east-1"));
    }
    Ok(Client::from_conf(config.build()))
}

/// A failed call, reduced to what decides retrying and what the operator reads.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The store answered with an error status.
    Status { status: u16, code: String, message: String, region: Option<String> },
    /// No (complete) answer: connection refused or cut, DNS, timeout, a body that stalled.
    Transport(String),
    /// The object is no longer the one being downloaded (412 on If-Match, 416).
    Changed,
    /// Credentials could not be found or obtained.
    Credentials(String),
    /// The bytes do not match what the store says they are.
    Mismatch(String),
    /// Anything else podinit cannot use.
    Other(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { status, code, message, .. } => {
                let mut text = format!("{status}");
                if !code.is_empty() {
                    text.push(' ');
                    text.push_str(code);
                }
                if !message.is_empty() && message != code {
                    text.push_str(": ");
                    text.push_str(message);
                }
                f.write_str(&text)
            }
            Self::Transport(reason) | Self::Mismatch(reason) | Self::Other(reason) => f.write_str(reason),
            Self::Credentials(reason) => write!(f, "no usable credentials: {reason}"),
            Self::Changed => f.write_str("the object changed on the store during the download"),
        }
    }
}

impl std::error::Error for CallError {}

impl<E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static> From<SdkError<E, HttpResponse>> for CallError {
    fn from(err: SdkError<E, HttpResponse>) -> Self {
        let reason = podinit_core::redact::root_cause(&err);
        match err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let region = service.raw().headers().get("x-amz-bucket-region").map(str::to_owned);
                let code = service.err().code().unwrap_or_default().to_owned();
                let message = service.err().message().unwrap_or_default().to_owned();
                if matches!(status, 412 | 416) {
                    return Self::Changed;
                }
                Self::Status { status, code, message, region }
            }
            SdkError::TimeoutError(_) => Self::Transport("timed out".to_owned()),
            SdkError::DispatchFailure(failure) => {
                let other = failure.is_other() && failure.as_connector_error().is_some_and(|c| looks_like_credentials(c));
                if other { Self::Credentials(reason) } else { Self::Transport(reason) }
            }
            SdkError::ResponseError(_) => Self::Transport(reason),
            other => {
                if looks_like_credentials(&other) {
                    Self::Credentials(reason)
                } else {
                    Self::Other(reason)
                }
            }
        }
    }
}

fn looks_like_credentials(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("credentials") || text.contains("identity") {
            return true;
        }
        source = e.source();
    }
    false
}

impl From<aws_sdk_s3::primitives::ByteStreamError> for CallError {
    fn from(err: aws_sdk_s3::primitives::ByteStreamError) -> Self {
        Self::Transport(format!("the connection broke during the body: {}", podinit_core::redact::root_cause(&err)))
    }
}

/// Whether waiting can fix it: unreachable stores, 5xx, throttling yes; refusals no.
pub(crate) fn classify(err: &anyhow::Error) -> Verdict {
    match err.downcast_ref::<CallError>() {
        Some(CallError::Transport(_)) => Verdict::Retry,
        Some(CallError::Status { status, .. }) if *status >= 500 || matches!(status, 408 | 429) => Verdict::Retry,
        // Refusals, and errors that are not the store's (a full disk, a directory in the way, a
        // bug): waiting cannot fix them. The retry helper's own attempt timeout never gets here.
        Some(CallError::Status { .. } | CallError::Changed | CallError::Credentials(_) | CallError::Mismatch(_) | CallError::Other(_))
        | None => Verdict::Fatal(Kind::Failed),
    }
}

/// The call error behind a podinit error, if any.
pub(crate) fn call_error(err: &Error) -> Option<&CallError> {
    err.source_error().downcast_ref::<CallError>()
}

/// The code a 404 to a HEAD (which has no body to say why) gets once a HEAD of the bucket
/// found the bucket missing: see [`missing_bucket`].
pub(crate) const NO_BUCKET: &str = "NoSuchBucket (HEAD of the bucket)";

/// A 404 to a HEAD of an object says nothing about why (a HEAD response has no body): asks
/// the store whether the bucket exists, so the error names what is missing.
pub(crate) async fn missing_bucket(s3: &Client, err: Error, url: &S3Url) -> Error {
    let Some(CallError::Status { status: 404, code, .. }) = call_error(&err) else { return err };
    // Without a body the SDK names the status alone ("NotFound"), whatever is missing.
    if !(code.is_empty() || code == "NotFound") {
        return err;
    }
    match s3.head_bucket().bucket(&url.bucket).send().await.map_err(CallError::from) {
        Err(CallError::Status { status: 404, .. }) => Error::new(
            Kind::Failed,
            anyhow::Error::new(CallError::Status { status: 404, code: NO_BUCKET.to_owned(), message: String::new(), region: None })
                .context(format!("HEAD {url}")),
        ),
        _ => err,
    }
}

/// Turns a refusal into the message an operator acts on.
pub(crate) fn explain(err: Error, url: &S3Url) -> Error {
    let hint = match call_error(&err) {
        Some(CallError::Status { status: 404, code, .. }) if code == "NoSuchBucket" || code == NO_BUCKET => {
            return err.with_hint(format!("the bucket '{}' does not exist at this endpoint; check the name, --endpoint-url and --region", url.bucket));
        }
        Some(CallError::Status { status: 404, .. }) => {
            if url.is_prefix() {
                "check the bucket name and the endpoint".to_owned()
            } else {
                format!("no object has the key '{}'; for everything under a prefix end the URL with '/'", url.key)
            }
        }
        Some(CallError::Status { status: 403, .. }) => "the credentials may not read this object: check AWS_ACCESS_KEY_ID or the pod's role (IRSA, Pod Identity) and the bucket policy; for a public bucket use --no-sign-request".to_owned(),
        Some(CallError::Status { status: 301 | 400, region: Some(region), .. }) => format!("the bucket is in region {region}: add --region {region}"),
        Some(CallError::Status { status: 301, .. }) => "the bucket is in another region: set --region (or AWS_REGION)".to_owned(),
        Some(CallError::Credentials(_)) => "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (from a Secret), use IRSA or EKS Pod Identity, or --no-sign-request for a public bucket".to_owned(),
        _ => return err,
    };
    err.with_hint(hint)
}

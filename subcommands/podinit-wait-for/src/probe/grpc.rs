//! `grpc://HOST:PORT[/SERVICE]` (HTTP/2 without TLS) and `grpcs://` (TLS): ready when
//! `grpc.health.v1.Health/Check` answers SERVING for SERVICE (the server as a whole when
//! none is given), as grpc_health_probe and Kubernetes' gRPC probes ask. NOT_SERVING,
//! SERVICE_UNKNOWN, a gRPC error status (UNIMPLEMENTED: no health service) are not ready.

use std::time::Duration;

use anyhow::{anyhow, bail};
use podinit_core::Error;

/// Largest response body read (a HealthCheckResponse is 2 bytes).
const MAX_BODY: usize = 64 << 10;

pub(crate) struct GrpcCheck {
    client: reqwest::Client,
}

impl GrpcCheck {
    /// `tls`: the configuration for grpcs:// (reqwest wants one for grpc:// too, unused there).
    pub(crate) fn new(mut tls: rustls::ClientConfig, attempt_timeout: Duration) -> Result<Self, Error> {
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(attempt_timeout)
            .user_agent(concat!("podinit-wait-for/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::usage(format!("setting up the gRPC client: {e}")))?;
        Ok(Self { client })
    }

    pub(crate) async fn check(&self, base: &url::Url, service: &str) -> anyhow::Result<()> {
        let scheme = if base.scheme() == "grpcs" { "https" } else { "http" };
        let host = base.host_str().unwrap_or_default();
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
        let port = base.port().map_or(String::new(), |p| format!(":{p}"));
        let url = format!("{scheme}://{host}{port}/grpc.health.v1.Health/Check");
        let response = self
            .client
            .post(url)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(request(service))
            .send()
            .await
            .map_err(|e| anyhow!("{}", super::http::request_reason(&e)))?;
        let status = response.status();
        if !status.is_success() {
            bail!("answered HTTP {status}: is this a gRPC server?");
        }
        // A trailers-only answer carries the gRPC status in the headers.
        if let Some(code) = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).filter(|c| *c != "0") {
            let message = response.headers().get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
            bail!(
                "health check failed: gRPC status {code} ({}){}",
                code_name(code),
                if message.is_empty() { String::new() } else { format!(": {}", super::wire::said(message)) }
            );
        }
        let body = super::http::read_body_limited(response, MAX_BODY).await?;
        match serving_status(&body)? {
            1 => Ok(()),
            2 => bail!("NOT_SERVING"),
            3 => bail!("SERVICE_UNKNOWN: the server has no health status for '{service}'"),
            // Also what a server sends with NOT_FOUND in the trailers for a service it does not know.
            0 => bail!("UNKNOWN: no health status for '{service}' yet"),
            other => bail!("health status {other}"),
        }
    }
}

fn code_name(code: &str) -> &'static str {
    match code {
        "1" => "CANCELLED",
        "4" => "DEADLINE_EXCEEDED",
        "5" => "NOT_FOUND: no health status for that service",
        "7" => "PERMISSION_DENIED",
        "12" => "UNIMPLEMENTED: the server has no health service",
        "14" => "UNAVAILABLE",
        "16" => "UNAUTHENTICATED",
        _ => "see grpc.io status codes",
    }
}

/// One length-prefixed message: HealthCheckRequest { service = 1 }.
fn request(service: &str) -> Vec<u8> {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&message);
    out
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// HealthCheckResponse { status = 1 (enum) } out of the first message of the body; a
/// message without the field is UNKNOWN (0), as protobuf defaults.
fn serving_status(body: &[u8]) -> anyhow::Result<u64> {
    let (head, rest) = body.split_at_checked(5).ok_or_else(|| anyhow!("an empty answer (no health message)"))?;
    if head[0] != 0 {
        bail!("a compressed health message, which was not asked for");
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut message = rest.get(..len).ok_or_else(|| anyhow!("a health message cut short"))?;
    let mut status = 0;
    while let Some((&tag, rest)) = message.split_first() {
        message = rest;
        let value = read_varint(&mut message)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => status = value,
            (_, 0) => {}
            _ => bail!("an unexpected field in the health message"),
        }
    }
    Ok(status)
}

fn read_varint(data: &mut &[u8]) -> anyhow::Result<u64> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = data.split_first().ok_or_else(|| anyhow!("a health message cut short"))?;
        *data = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("a varint longer than 64 bits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_messages() {
        assert_eq!(request(""), [0, 0, 0, 0, 0]);
        assert_eq!(request("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 1]).unwrap(), 1);
        assert_eq!(serving_status(&[0, 0, 0, 0, 0]).unwrap(), 0, "an empty message is UNKNOWN");
        assert!(serving_status(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(serving_status(&[]).is_err());
        assert!(serving_status(&[0, 0, 0, 0, 1, 0x08]).is_err(), "a varint cut short");
    }
}

//! Talking to Vault/OpenBao: the vaultrs client on podinit's own HTTP client, logins, the
//! KV-version preflight, reads that keep lease information, revocation, and the one error
//! classification every call goes through.
//!
//! vaultrs provides the client, its middleware (`/v1` prefix, token and namespace headers,
//! `X-Vault-Request`), error mapping, the login endpoints and `revoke-self`. Two endpoints
//! are podinit's own (vaultrs has neither): `sys/internal/ui/mounts/<path>` (which mount and
//! KV version a path is on) and a plain logical GET returning the whole response, so a
//! lease id is never lost. The reqwest client is built here, not by vaultrs: its settings
//! cannot override the server name, parse `VAULT_SKIP_VERIFY` loosely, and panic on a bad
//! address.

use std::fmt;
use std::time::Duration;

use anyhow::anyhow;
use podinit_core::retry::Verdict;
use podinit_core::{Error, Kind};
use rustify_derive::Endpoint;
use serde::Deserialize;
use serde_json::Value;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;

/// A failed call, as the server or the network reported it. Never holds a secret: Vault's
/// error strings name paths, roles and policies, not values.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The server answered with an error status.
    Api { code: u16, errors: Vec<String> },
    /// No answer (connection refused, reset, DNS, timeout).
    Transport(String),
    /// The server's certificate is not trusted: waiting will not change that.
    Certificate(String),
    /// The server redirected where the token must not go (see `podinit_core::redirect`).
    Redirect(String),
    /// An answer podinit cannot use.
    Unexpected(String),
}

impl std::error::Error for CallError {}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api { code, errors } => {
                let detail = errors.iter().map(|e| tidy(e)).filter(|e| !e.is_empty()).collect::<Vec<_>>().join("; ");
                let meaning = match code {
                    400 => "bad request",
                    403 => "permission denied",
                    404 => "not found",
                    429 => "standby node or rate limited",
                    472 | 473 => "performance standby or DR node",
                    501 => "not initialized",
                    503 => "sealed or unavailable",
                    _ if *code >= 500 => "server error",
                    _ => "error",
                };
                if detail.is_empty() || detail == meaning { write!(f, "{code} {meaning}") } else { write!(f, "{code} {meaning}: {detail}") }
            }
            Self::Transport(reason) | Self::Certificate(reason) | Self::Redirect(reason) | Self::Unexpected(reason) => f.write_str(reason),
        }
    }
}

impl From<ClientError> for CallError {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::APIError { code, errors } => Self::Api { code, errors },
            ClientError::RestClientError { source } => match source {
                rustify::errors::ClientError::ServerResponseError { code, content } => {
                    Self::Api { code, errors: content.map(|c| vec![c.chars().take(200).collect()]).unwrap_or_default() }
                }
                e @ (rustify::errors::ClientError::ResponseParseError { .. }
                | rustify::errors::ClientError::ResponseConversionError { .. }
                | rustify::errors::ClientError::DataParseError { .. }) => Self::Unexpected(podinit_core::redact::root_cause(&e)),
                other if podinit_tls::certificate_problem(&other).is_some() => Self::Certificate(transport_reason(&other)),
                other if refused_redirect(&other) => Self::Redirect(podinit_core::redact::root_cause(&other)),
                other => Self::Transport(transport_reason(&other)),
            },
            other => Self::Unexpected(podinit_core::redact::root_cause(&other)),
        }
    }
}

/// Whether the redirect policy stopped the request.
fn refused_redirect(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_redirect) {
            return true;
        }
        source = e.source();
    }
    false
}

/// `127.0.0.1:8200: connection refused`, `vault:8200: timed out`.
fn transport_reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut request = None;
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            request = Some(r);
            break;
        }
        source = e.source();
    }
    let cause = podinit_core::redact::root_cause(err);
    let cause = if request.is_some_and(reqwest::Error::is_timeout) && !cause.contains("timed out") {
        format!("timed out ({cause})")
    } else {
        cause
    };
    match request.and_then(reqwest::Error::url).and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?))) {
        Some(host) => format!("{host}: {cause}"),
        None => cause,
    }
}

/// Vault's `1 error occurred:\n\t* permission denied\n\n` as `permission denied`.
fn tidy(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(|l| l.trim().trim_start_matches("* ").trim())
        .filter(|l| !(l.is_empty() || l.ends_with("occurred:") && l.contains("error")))
        .collect();
    lines.join("; ")
}

/// Which failures are worth another attempt: no answer, 5xx (503 = sealed), 429 (standby),
/// 412 (a replica not caught up), 472/473. Everything else (403 permission denied, 400
/// invalid role, 404 no secret, a refused redirect, an error podinit does not know) fails at
/// once: waiting cannot fix a policy or a bug.
pub(crate) fn classify(err: &anyhow::Error) -> Verdict {
    match err.downcast_ref::<CallError>() {
        Some(CallError::Transport(_)) => Verdict::Retry,
        Some(CallError::Api { code, .. }) if *code >= 500 || matches!(code, 412 | 429 | 472 | 473) => Verdict::Retry,
        Some(CallError::Api { .. } | CallError::Certificate(_) | CallError::Redirect(_) | CallError::Unexpected(_)) | None => {
            Verdict::Fatal(Kind::Failed)
        }
    }
}

/// The status code of an API error, if `err` is one.
pub(crate) fn api_code(err: &Error) -> Option<u16> {
    match err.source_error().downcast_ref::<CallError>() {
        Some(CallError::Api { code, .. }) => Some(*code),
        _ => None,
    }
}

/// Adds what to do to an untrusted-certificate or refused-redirect error; other errors pass
/// through.
pub(crate) fn transport_hint(err: Error) -> Error {
    match err.source_error().downcast_ref::<CallError>() {
        Some(CallError::Certificate(_)) => err
            .with_hint("trust the server's CA with --ca-cert (VAULT_CACERT); add --tls-server-name if its certificate names another host"),
        Some(CallError::Redirect(_)) => err.with_hint(
            "the token goes only to the address given or, over https, to the node Vault redirects to: use https, or point VAULT_ADDR at the active node",
        ),
        _ => err,
    }
}

/// Connection settings.
pub(crate) struct Connection {
    pub(crate) address: url::Url,
    pub(crate) tls: rustls::ClientConfig,
    pub(crate) attempt_timeout: Duration,
}

/// Builds a vaultrs client for `namespace` with `token` (may be empty before login).
pub(crate) fn client(conn: &Connection, namespace: Option<&str>, token: &str) -> Result<VaultClient, Error> {
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(conn.tls.clone())
        .connect_timeout(conn.attempt_timeout)
        .timeout(conn.attempt_timeout)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            match podinit_core::redirect::Policy::VAULT.check(attempt.previous(), attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(refusal),
            }
        }))
        .user_agent(concat!("podinit-vault-fetch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::usage(format!("setting up the HTTP client: {e}")))?;
    let base = conn.address.as_str().trim_end_matches('/');
    let settings = VaultClientSettings {
        address: conn.address.clone(),
        ca_certs: Vec::new(),
        identity: None,
        timeout: Some(conn.attempt_timeout),
        token: token.to_owned(),
        verify: true,
        version: 1,
        wrapping: false,
        namespace: namespace.map(str::to_owned),
        proxy: None,
    };
    let middle =
        EndpointMiddleware { token: token.to_owned(), version: "v1".to_owned(), wrap: None, namespace: namespace.map(str::to_owned) };
    Ok(VaultClient { http: rustify::clients::reqwest::Client::new(base, http), middle, settings })
}

/// How to log in; secrets are held only as long as the login takes.
pub(crate) enum Login {
    Kubernetes { mount: String, role: String, jwt: String },
    AppRole { mount: String, role_id: String, secret_id: String },
    Jwt { mount: String, role: Option<String>, jwt: String },
}

impl Login {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Kubernetes { mount, role, .. } => format!("logging in with kubernetes auth at auth/{mount} as role '{role}'"),
            Self::AppRole { mount, .. } => format!("logging in with approle auth at auth/{mount}"),
            Self::Jwt { mount, role: Some(role), .. } => format!("logging in with jwt auth at auth/{mount} as role '{role}'"),
            Self::Jwt { mount, role: None, .. } => format!("logging in with jwt auth at auth/{mount}"),
        }
    }

    /// One login attempt; returns the client token and its TTL.
    pub(crate) async fn attempt(&self, client: &VaultClient) -> anyhow::Result<(String, u64)> {
        let auth = match self {
            Self::Kubernetes { mount, role, jwt } => vaultrs::auth::kubernetes::login(client, mount, role, jwt).await,
            Self::AppRole { mount, role_id, secret_id } => vaultrs::auth::approle::login(client, mount, role_id, secret_id).await,
            Self::Jwt { mount, role, jwt } => vaultrs::auth::oidc::login(client, mount, jwt, role.clone()).await,
        }
        .map_err(CallError::from)?;
        Ok((auth.client_token, auth.lease_duration))
    }
}

/// What `sys/internal/ui/mounts/<path>` says about a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// `secret/` (with its trailing slash).
    pub(crate) path: String,
    pub(crate) engine: Engine,
}

/// The secrets engine behind a mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Engine {
    Kv1,
    Kv2,
    /// Anything else (database, aws, …): a plain logical read.
    Other(String),
}

#[derive(Endpoint)]
#[endpoint(path = "sys/internal/ui/mounts/{self.path}", response = "MountResponse")]
struct MountRequest {
    #[endpoint(skip)]
    path: String,
}

#[derive(Deserialize, Debug)]
struct MountResponse {
    #[serde(default)]
    path: String,
    #[serde(rename = "type", default)]
    engine: String,
    #[serde(default)]
    options: Option<serde_json::Map<String, Value>>,
}

/// One preflight attempt.
pub(crate) async fn mount_of(client: &VaultClient, path: &str) -> anyhow::Result<Mount> {
    let found = vaultrs::api::exec_with_result(client, MountRequest { path: path.to_owned() }).await.map_err(CallError::from)?;
    if found.path.is_empty() {
        return Err(CallError::Unexpected(format!("the server names no mount for {path}")).into());
    }
    let version = found.options.as_ref().and_then(|o| o.get("version")).and_then(Value::as_str).unwrap_or("1");
    let engine = match (found.engine.as_str(), version) {
        ("kv" | "generic", "2") => Engine::Kv2,
        ("kv" | "generic", _) => Engine::Kv1,
        (other, _) => Engine::Other(other.to_owned()),
    };
    Ok(Mount { path: found.path, engine })
}

#[derive(Endpoint)]
#[endpoint(path = "{self.path}", response = "Value")]
struct ReadRequest {
    #[endpoint(skip)]
    path: String,
    #[endpoint(query)]
    version: Option<u64>,
}

/// One read attempt of an API path; the whole response (data, lease_id, …).
pub(crate) async fn read(client: &VaultClient, api_path: &str, version: Option<u64>) -> anyhow::Result<Value> {
    let body =
        vaultrs::api::exec_with_no_result(client, ReadRequest { path: api_path.to_owned(), version }).await.map_err(CallError::from)?;
    if body.is_null() {
        return Err(anyhow!(CallError::Api { code: 404, errors: Vec::new() }));
    }
    Ok(body)
}

#[derive(Endpoint)]
#[endpoint(path = "{self.path}", method = "POST", response = "Value")]
struct WriteRequest {
    #[endpoint(skip)]
    path: String,
    #[endpoint(raw)]
    body: Vec<u8>,
}

/// One write attempt (`secret "pki/issue/web" "common_name=…"`, `--pki`): the whole response.
pub(crate) async fn write(client: &VaultClient, path: &str, data: &serde_json::Map<String, Value>) -> anyhow::Result<Value> {
    let body = serde_json::to_vec(data).map_err(|e| CallError::Unexpected(e.to_string()))?;
    let answer = vaultrs::api::exec_with_no_result(client, WriteRequest { path: path.to_owned(), body }).await.map_err(CallError::from)?;
    Ok(answer)
}

#[derive(Endpoint)]
#[endpoint(path = "{self.path}", method = "LIST", response = "Value")]
struct ListRequest {
    #[endpoint(skip)]
    path: String,
}

/// One list attempt: the keys under `path`, sorted; none when nothing is there (404).
pub(crate) async fn list(client: &VaultClient, path: &str) -> anyhow::Result<Vec<String>> {
    let body = match vaultrs::api::exec_with_no_result(client, ListRequest { path: path.to_owned() }).await.map_err(CallError::from) {
        Ok(body) => body,
        Err(CallError::Api { code: 404, .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let keys = body.pointer("/data/keys").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut keys = keys
        .into_iter()
        .map(|k| k.as_str().map(str::to_owned).ok_or_else(|| CallError::Unexpected(format!("listing {path}: a key that is not a string"))))
        .collect::<Result<Vec<_>, _>>()?;
    keys.sort();
    Ok(keys)
}

/// Revokes the client's own token; a failure is only worth a warning.
pub(crate) async fn revoke_self(client: &VaultClient) -> Result<(), CallError> {
    vaultrs::token::revoke_self(client).await.map_err(CallError::from)
}

/// Whether a token is set on `client`.
pub(crate) fn has_token(client: &VaultClient) -> bool {
    !client.settings().token.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_what_waiting_can_fix() {
        let api = |code| anyhow!(CallError::Api { code, errors: vec![] });
        for code in [500, 502, 503, 429, 412, 472, 473] {
            assert_eq!(classify(&api(code)), Verdict::Retry, "{code}");
        }
        for code in [400, 401, 403, 404, 405] {
            assert_eq!(classify(&api(code)), Verdict::Fatal(Kind::Failed), "{code}");
        }
        assert_eq!(classify(&anyhow!(CallError::Transport("connection refused".into()))), Verdict::Retry);
        assert_eq!(classify(&anyhow!(CallError::Unexpected("bad json".into()))), Verdict::Fatal(Kind::Failed));
        assert_eq!(classify(&anyhow!(CallError::Redirect("refusing a redirect from https to http".into()))), Verdict::Fatal(Kind::Failed));
        // An error nobody classified (a local bug) is fatal, not waited out.
        assert_eq!(classify(&anyhow!("something unforeseen")), Verdict::Fatal(Kind::Failed));
    }

    #[test]
    fn api_errors_read_well() {
        let e = CallError::Api { code: 403, errors: vec!["permission denied".into()] };
        assert_eq!(e.to_string(), "403 permission denied");
        let e = CallError::Api { code: 400, errors: vec!["invalid role name \"web\"".into()] };
        assert_eq!(e.to_string(), "400 bad request: invalid role name \"web\"");
        assert_eq!(
            CallError::Api { code: 503, errors: vec!["Vault is sealed".into()] }.to_string(),
            "503 sealed or unavailable: Vault is sealed"
        );
        let e = CallError::Api { code: 403, errors: vec!["1 error occurred:\n\t* permission denied\n\n".into()] };
        assert_eq!(e.to_string(), "403 permission denied");
        let e = CallError::Api { code: 400, errors: vec!["2 errors occurred:\n\t* a\n\t* b\n\n".into()] };
        assert_eq!(e.to_string(), "400 bad request: a; b");
    }
}

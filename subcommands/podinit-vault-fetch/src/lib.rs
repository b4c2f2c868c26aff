//! `podinit vault-fetch`: log in to Vault or OpenBao and pre-populate secrets as files.
//!
//! Parse every `SECRET` and template and read every local input (token, JWT, role and secret
//! ids) first, so bad input fails before any request. Log in (unless given a token), then for
//! each secret find its mount and KV version (`sys/internal/ui/mounts`) and read it, all
//! concurrently, each call retried through the retry helper while the server is unreachable,
//! sealed or on standby, and failing at once on permission denied, an unknown role or a
//! missing secret. Render the templates ([`template`]: in rounds, each distinct call made
//! once) and issue or keep the PKI certificate ([`pki`]). Only when everything is in memory
//! are the files written, as one set ([`output::write_set`]). A token podinit obtained is
//! revoked at the end (and on failure) unless a secret came with a lease that would die with
//! it or `--write-token` gave it to the app; a token given by the caller is never revoked.
//!
//! ```yaml
//! initContainers:
//!   - name: secrets
//!     image: podinit
//!     args: ["vault-fetch", "--auth", "kubernetes", "--role", "web", "--out", "/secrets",
//!            "secret/web/db", "secret/web/api#token=api-token", "--timeout", "2m"]
//!     env: [{ name: VAULT_ADDR, value: "https://vault.vault:8200" }]
//!     volumeMounts: [{ name: secrets, mountPath: /secrets }]
//! ```

mod client;
mod env;
mod output;
mod pki;
mod spec;
mod template;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use podinit_core::fs::FileOptions;
use podinit_core::fs::set::DataSet;
use podinit_core::retry::{self, Backoff};
use podinit_core::{Context, Error, Kind};
use podinit_tls::{Named, TlsOptions};
use serde_json::{Map, Value};
use vaultrs::client::VaultClient;

use crate::client::{Connection, Engine, Login, Mount};
pub use crate::output::Format;
use crate::output::Planned;
use crate::spec::SecretSpec;
use crate::template::{Query, TemplateArg, Templates};

/// Log in to Vault or OpenBao and write secrets as files (e.g. into a shared emptyDir).
///
/// Waits (up to --timeout) while the server is unreachable, sealed or on standby; fails at
/// once (exit 1) on permission denied, an unknown role, a missing secret or key. The files
/// of all secrets appear together or not at all; unchanged files are left alone. Exit 0 when
/// every secret was written, 1 on a refusal, 2 for bad input, 124 on timeout.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
SECRET is PATH[?QUERY][#KEY][=FILE], QUERY being version=N and/or decode=base64 joined by &:
  secret/app/db              whole secret: --out/db/<key> files (like a Secret volume)
  secret/app/db#password     one key: --out/password
  secret/app/db#password=pw  one key into --out/pw
  secret/data/app/db         the KV v2 API path is accepted too
  secret/app/java?decode=base64#keystore=keystore.jks   the bytes of a base64 value
  database/creds/app         any other engine: a plain read (its lease keeps the token alive)

--template SRC=NAME renders a Vault Agent template (secret, secrets, toJSON, ...) into NAME;
--pki writes tls.crt, tls.key and ca.crt, kept while more than --renew-below of its life is
left. Secrets, templates and the certificate are written as one set.

Variables (BAO_* first, then VAULT_*; an empty value counts as unset): ADDR, TOKEN, NAMESPACE,
CACERT, CACERT_BYTES, CAPATH, CLIENT_CERT, CLIENT_KEY, TLS_SERVER_NAME, SKIP_VERIFY (true/false
only), ROLE, ROLE_ID, SECRET_ID, TOKEN_FILE, AUTH_METHOD. A flag beats a variable.

Examples:
  podinit vault-fetch --auth kubernetes --role web --out /secrets secret/web/db
  VAULT_TOKEN=... podinit vault-fetch --out /secrets --format env secret/web/config
  podinit vault-fetch --auth approle --role-id-file /approle/role-id --secret-id-file /approle/secret-id \\
      --out /secrets --mode 0440 'secret/web/db#password=db-password'
  podinit vault-fetch --auth kubernetes --role web --out /vault/secrets --template /templates/db.env=db.env \\
      --pki pki/issue/web --common-name web.shop.svc --ttl 720h")]
pub struct Args {
    /// Secrets to fetch (see below).
    #[arg(value_name = "SECRET", required_unless_present_any = ["templates", "pki", "write_token"])]
    pub secrets: Vec<String>,

    /// Render the Vault Agent (consul-template) template SRC into NAME inside --out;
    /// repeatable.
    #[arg(long = "template", value_name = "SRC=NAME")]
    pub templates: Vec<String>,

    /// Issue a certificate from this PKI role (e.g. pki/issue/web) as tls.crt, tls.key and
    /// ca.crt, kept on reruns while it is good.
    #[arg(long, value_name = "PATH", requires = "common_name")]
    pub pki: Option<String>,

    /// Common name of the --pki certificate.
    #[arg(long, value_name = "NAME", requires = "pki")]
    pub common_name: Option<String>,

    /// Another DNS name of the --pki certificate; repeatable.
    #[arg(long = "alt-name", value_name = "NAME", requires = "pki")]
    pub alt_names: Vec<String>,

    /// An IP address of the --pki certificate; repeatable.
    #[arg(long = "ip-san", value_name = "IP", requires = "pki")]
    pub ip_sans: Vec<IpAddr>,

    /// Lifetime of the --pki certificate [default: the role's].
    #[arg(long, value_name = "DURATION", requires = "pki", value_parser = podinit_core::args::parse_duration)]
    pub ttl: Option<Duration>,

    /// Issue a new --pki certificate when less than this fraction of its life is left.
    #[arg(long, env = "PODINIT_VAULT_RENEW_BELOW", value_name = "FRACTION", default_value = "0.33", value_parser = podinit_core::args::parse_fraction)]
    pub renew_below: f64,

    /// Write the client token into NAME inside --out for the app (Vault Agent's file sink);
    /// the token is then not revoked.
    #[arg(long, env = "PODINIT_VAULT_WRITE_TOKEN", value_name = "NAME")]
    pub write_token: Option<String>,

    /// Directory to write into (the shared emptyDir); created if missing.
    #[arg(long, env = "PODINIT_VAULT_OUT", value_name = "DIR")]
    pub out: PathBuf,

    /// Output of a whole secret.
    #[arg(long, env = "PODINIT_VAULT_FORMAT", value_enum, default_value_t = Format::Files)]
    pub format: Format,

    /// Server address [env: BAO_ADDR, VAULT_ADDR].
    #[arg(long, short = 'a', value_name = "URL")]
    pub address: Option<String>,

    /// How to log in [env: BAO_AUTH_METHOD, VAULT_AUTH_METHOD; default: token].
    #[arg(long, value_enum)]
    pub auth: Option<AuthMethod>,

    /// Role to log in as (kubernetes, jwt) [env: BAO_ROLE, VAULT_ROLE].
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,

    /// Where the auth method is mounted [default: the method's name, e.g. kubernetes].
    #[arg(long, env = "PODINIT_VAULT_AUTH_MOUNT", value_name = "PATH")]
    pub auth_mount: Option<String>,

    /// The JWT for kubernetes or jwt auth.
    #[arg(
        long,
        env = "PODINIT_VAULT_JWT_FILE",
        value_name = "FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub jwt_file: PathBuf,

    /// AppRole role id [env: BAO_ROLE_ID, VAULT_ROLE_ID].
    #[arg(long, env = "PODINIT_VAULT_ROLE_ID_FILE", value_name = "FILE")]
    pub role_id_file: Option<PathBuf>,

    /// AppRole secret id [env: BAO_SECRET_ID, VAULT_SECRET_ID].
    #[arg(long, env = "PODINIT_VAULT_SECRET_ID_FILE", value_name = "FILE")]
    pub secret_id_file: Option<PathBuf>,

    /// Token for --auth token [env: BAO_TOKEN_FILE, VAULT_TOKEN_FILE; or the token itself in
    /// BAO_TOKEN, VAULT_TOKEN]. Never revoked by podinit.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Namespace of the secrets (Vault Enterprise, OpenBao) [env: BAO_NAMESPACE, VAULT_NAMESPACE].
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,

    /// Namespace to log in to [default: --namespace].
    #[arg(long, env = "PODINIT_VAULT_AUTH_NAMESPACE", value_name = "NS")]
    pub auth_namespace: Option<String>,

    /// KV version of the secrets' mounts, instead of asking the server.
    #[arg(long, env = "PODINIT_VAULT_KV_VERSION", value_name = "1|2", value_parser = clap::value_parser!(u8).range(1..=2))]
    pub kv_version: Option<u8>,

    /// Mount path of the secrets (e.g. `team/kv`), with --kv-version [default: the first
    /// path segment].
    #[arg(long, env = "PODINIT_VAULT_MOUNT", value_name = "PATH", requires = "kv_version")]
    pub mount: Option<String>,

    /// Mode of written files (octal).
    #[arg(long, env = "PODINIT_VAULT_MODE", value_name = "OCTAL", default_value = "0400", value_parser = podinit_core::args::parse_mode)]
    pub mode: u32,

    /// Mode of directories podinit creates (octal).
    #[arg(long, env = "PODINIT_VAULT_DIR_MODE", value_name = "OCTAL", default_value = "0755", value_parser = podinit_core::args::parse_mode)]
    pub dir_mode: u32,

    /// Owner of written files and created directories (needs CAP_CHOWN).
    #[arg(long, env = "PODINIT_VAULT_UID", value_name = "UID")]
    pub uid: Option<u32>,

    /// Group of written files and created directories (needs CAP_CHOWN unless it is one of
    /// podinit's groups).
    #[arg(long, env = "PODINIT_VAULT_GID", value_name = "GID")]
    pub gid: Option<u32>,

    /// CA certificate (PEM) to trust instead of the system's [env: BAO_CACERT, VAULT_CACERT].
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Directory of CA certificates [env: BAO_CAPATH, VAULT_CAPATH].
    #[arg(long, value_name = "DIR")]
    pub ca_path: Option<PathBuf>,

    /// Client certificate for mutual TLS [env: BAO_CLIENT_CERT, VAULT_CLIENT_CERT].
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// Client key for mutual TLS [env: BAO_CLIENT_KEY, VAULT_CLIENT_KEY].
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<PathBuf>,

    /// Verify the server certificate for this name [env: BAO_TLS_SERVER_NAME, VAULT_TLS_SERVER_NAME].
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,

    /// Do not verify the server certificate [env: BAO_SKIP_VERIFY, VAULT_SKIP_VERIFY].
    #[arg(long)]
    pub tls_skip_verify: bool,

    /// Secrets read at once.
    #[arg(long, env = "PODINIT_VAULT_CONCURRENCY", value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Time limit of one request.
    #[arg(long, env = "PODINIT_VAULT_ATTEMPT_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = podinit_core::args::parse_duration)]
    pub attempt_timeout: Duration,
}

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethod {
    /// A token from BAO_TOKEN/VAULT_TOKEN or --token-file.
    Token,
    /// The pod's service account token, at --jwt-file.
    Kubernetes,
    /// Role id and secret id.
    Approle,
    /// A JWT at --jwt-file (e.g. a projected service account token with a Vault audience).
    Jwt,
}

/// Everything read from the command line, the environment and local files, before any request.
struct Plan {
    specs: Vec<SecretSpec>,
    templates: Vec<TemplateArg>,
    pki: Option<pki::Request>,
    token_out: Option<PathBuf>,
    conn: Connection,
    namespace: Option<String>,
    auth_namespace: Option<String>,
    auth: Auth,
}

enum Auth {
    /// A token from the caller: used, never revoked.
    Given(String),
    /// Log in, and revoke what the login gave unless a lease needs it.
    Login(Login),
}

/// Runs `podinit vault-fetch` to completion.
pub async fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    fetch_and_write(ctx, args).await.map_err(client::transport_hint)
}

async fn fetch_and_write(ctx: &Context, args: Args) -> Result<(), Error> {
    let started = Instant::now();
    let plan = plan(&args)?;
    let templates = Templates::load(ctx, &plan.templates, &credential_files(&args))?;
    let namespace = plan.namespace.as_deref();
    let (token, obtained) = match &plan.auth {
        Auth::Given(token) => (token.clone(), false),
        Auth::Login(login) => {
            let auth_client = client::client(&plan.conn, plan.auth_namespace.as_deref().or(namespace), "")?;
            let what = login.describe();
            let (token, ttl) = retry::retry(ctx, &what, backoff(&args), client::classify, |_| login.attempt(&auth_client))
                .await
                .map_err(|e| explain_login(e, login))?;
            tracing::info!(ttl_s = ttl, "logged in ({what}); token valid for {}", humantime::format_duration(Duration::from_secs(ttl)));
            (token, true)
        }
    };
    let vault = client::client(&plan.conn, namespace, &token)?;
    let mut leases = Vec::new();
    let written = fetch_render_write(ctx, &args, &plan, &templates, &vault, &token, &mut leases).await;
    if written.is_ok() {
        for lease in &leases {
            tracing::warn!(
                lease_s = lease.seconds,
                "{}: a lease of {}{}; nothing renews it once podinit exits, so these credentials stop working then. \
                 An app that runs longer needs a renewing sidecar (Vault Agent as a native sidecar: an init container with restartPolicy: Always)",
                lease.path,
                humantime::format_duration(Duration::from_secs(lease.seconds)),
                if lease.renewable { ", renewable" } else { "" }
            );
        }
    }
    if obtained {
        match &written {
            Ok(_) if plan.token_out.is_some() => tracing::info!("keeping the token: it was written for the app (--write-token)"),
            Ok(_) => finish_token(&vault, &leases).await,
            // Nothing was written: revoking the token also ends the leases it got.
            Err(_) => finish_token(&vault, &[]).await,
        }
    }
    let written = written?;
    let elapsed = started.elapsed();
    let asked = plan.specs.len() + plan.templates.len() + usize::from(plan.pki.is_some());
    tracing::info!(
        secrets = asked,
        changed = written.changed.len(),
        unchanged = written.unchanged,
        elapsed_ms = elapsed.as_millis() as u64,
        "{asked} secret(s) → {}: {} file(s) written, {} unchanged, in {}",
        args.out.display(),
        written.changed.len(),
        written.unchanged,
        humantime::format_duration(Duration::from_millis(elapsed.as_millis() as u64))
    );
    for path in &written.changed {
        tracing::debug!(file = %path.display(), "wrote {}", path.display());
    }
    Ok(())
}

/// A secret that came with a lease.
#[derive(Clone)]
struct Lease {
    path: String,
    seconds: u64,
    renewable: bool,
}

impl Lease {
    fn of(path: &str, body: &Value) -> Option<Self> {
        body.get("lease_id").and_then(Value::as_str).filter(|id| !id.is_empty())?;
        Some(Self {
            path: path.to_owned(),
            seconds: body.get("lease_duration").and_then(Value::as_u64).unwrap_or(0),
            renewable: body.get("renewable").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

/// Everything after logging in: read the secrets, render the templates, issue (or keep)
/// the certificate, then write the one set. Leased secrets are pushed to `leases` as they
/// come (the caller logs them, and keeps the token for them, once the set is written).
async fn fetch_render_write(
    ctx: &Context,
    args: &Args,
    plan: &Plan,
    templates: &Templates,
    vault: &VaultClient,
    token: &str,
    leases: &mut Vec<Lease>,
) -> Result<output::Written, Error> {
    let mounts = MountCache::default();
    let secrets = fetch_all(ctx, vault, &plan.specs, args, &mounts).await?;
    let mut planned = Vec::new();
    for secret in &secrets {
        leases.extend(secret.lease.clone());
        planned.extend(output::render(secret.spec, &secret.data, args.format)?);
    }
    planned.extend(render_templates(ctx, vault, templates, args, &mounts, leases).await?);
    if let Some(rel) = &plan.token_out {
        planned.push(Planned { rel: rel.clone(), bytes: token.as_bytes().to_vec() });
    }
    let set = DataSet::open(ctx, &args.out, args.dir_mode).await?;
    let explain = |e: anyhow::Error| podinit_core::fs::explain_write(e, &args.out);
    if let Some(request) = &plan.pki {
        let current = set.current().map_err(explain)?;
        let kept = match current {
            Some(current) => request.kept(&current, &ca_chain(ctx, vault, request, args).await?),
            None => None,
        };
        match kept {
            Some((files, left)) => {
                tracing::info!(
                    "keeping the certificate for {} ({:.0}% of its life left, renewed below {:.0}%)",
                    request.common_name,
                    left * 100.0,
                    request.renew_below * 100.0
                );
                planned.extend(files);
            }
            None => planned.extend(issue(ctx, vault, request, args, leases).await?),
        }
    }
    output::write_set(&set, &args.out, &planned, FileOptions { mode: args.mode, uid: args.uid, gid: args.gid }, args.dir_mode)
}

/// The CA chain the `--pki` mount issues with now (`<mount>/cert/ca_chain`: its default
/// issuer and the issuers above it), as DER, for the keep rule.
async fn ca_chain(ctx: &Context, vault: &VaultClient, request: &pki::Request, args: &Args) -> Result<Vec<Vec<u8>>, Error> {
    let path = format!("{}/cert/ca_chain", request.mount());
    let what = format!("reading {path}");
    let body = retry::retry(ctx, &what, backoff(args), client::classify, |_| client::read(vault, &path, None)).await?;
    let pem = body.pointer("/data/certificate").and_then(Value::as_str).unwrap_or_default();
    podinit_tls::inspect::pem_certificates(pem.as_bytes())
        .filter(|chain| !chain.is_empty())
        .ok_or_else(|| Error::new(Kind::Failed, anyhow::anyhow!("{path}: no CA certificate in the answer; is the PKI mount set up?")))
}

/// Issues a certificate at `--pki`.
async fn issue(
    ctx: &Context,
    vault: &VaultClient,
    request: &pki::Request,
    args: &Args,
    leases: &mut Vec<Lease>,
) -> Result<Vec<Planned>, Error> {
    let what = format!("issuing a certificate for {} at {}", request.common_name, request.path);
    let body = request.body();
    let answer =
        retry::retry(ctx, &what, backoff(args), client::classify, |_| client::write(vault, &request.path, &body)).await.map_err(|e| {
            match client::api_code(&e) {
                Some(403) => e.with_hint(format!("the token's policies need 'update' on {}", request.path)),
                Some(400) => e.with_hint("the role decides which names, key types and TTLs it issues: check allowed_domains and max_ttl"),
                _ => e,
            }
        })?;
    let files = pki::files(&request.path, &answer)?;
    // A role with generate_lease: revoking the token would revoke the certificate.
    leases.extend(Lease::of(&request.path, &answer));
    tracing::info!("issued a certificate for {} at {}", request.common_name, request.path);
    Ok(files)
}

/// Renders the templates in rounds (see [`template`]): each round's new calls are made
/// together, `--concurrency` at a time, each distinct call once.
async fn render_templates(
    ctx: &Context,
    vault: &VaultClient,
    templates: &Templates,
    args: &Args,
    mounts: &MountCache,
    leases: &mut Vec<Lease>,
) -> Result<Vec<Planned>, Error> {
    for round in 0..=template::MAX_ROUNDS {
        let (rendered, pending) = templates.round();
        if pending.is_empty() {
            // Stopped by the deadline or a signal: exit 124 or 143, not a template error.
            return rendered
                .into_iter()
                .map(|r| r.map_err(|e| ctx.check_shutdown().err().unwrap_or_else(|| template::failed(&e))))
                .collect();
        }
        if round == template::MAX_ROUNDS {
            let last_error = rendered.into_iter().find_map(Result::err);
            let calls: Vec<String> = pending.iter().take(3).map(Query::describe).collect();
            return Err(Error::new(
                Kind::Failed,
                anyhow::anyhow!(
                    "the templates still make new calls after {} rounds (next: {}){}",
                    template::MAX_ROUNDS,
                    calls.join("; "),
                    last_error.map(|e| format!("; last template error: {e}")).unwrap_or_default()
                ),
            )
            .with_hint("each round follows paths that came from other secrets; guard reads with `with secret …` so one failing read does not stop the rest"));
        }
        // Writes (a PKI issue) wait until no read is open: their arguments or the branch they
        // are in may depend on what the reads return (consul-template never sends them early).
        let reads_open = pending.iter().any(|q| !matches!(q, Query::Write(..)));
        let calls = pending.into_iter().filter(|q| !(reads_open && matches!(q, Query::Write(..))));
        let answers: Vec<Result<Answered, Error>> = futures_util::stream::iter(calls)
            .map(|query| async move {
                let (value, lease) = answer(ctx, vault, &query, args, mounts).await?;
                Ok((query, value, lease))
            })
            .buffered(usize::from(args.concurrency))
            .collect()
            .await;
        for answer in answers {
            let (query, value, lease) = answer?;
            leases.extend(lease);
            templates.answer(query, value);
        }
    }
    unreachable!("the last round returns")
}

/// A template call made: the call, what the template sees, the lease that came with it.
type Answered = (Query, podinit_template::Value, Option<Lease>);

/// Makes one template call: what the template sees, and the lease that came with it.
async fn answer(
    ctx: &Context,
    vault: &VaultClient,
    query: &Query,
    args: &Args,
    mounts: &MountCache,
) -> Result<(podinit_template::Value, Option<Lease>), Error> {
    let what = query.describe();
    match query {
        Query::Read(text) => {
            let (path, version) = match text.split_once("?version=") {
                Some((path, v)) => {
                    (path, Some(v.parse::<u64>().map_err(|_| Error::usage(format!("template: {text}: ?version= takes a number")))?))
                }
                None => (text.as_str(), None),
            };
            let mount = template_mount(ctx, vault, path, args, mounts).await?;
            let api_path = template_api_path(path, &mount, false)?;
            let version = if mount.engine == Engine::Kv2 { version } else { None };
            let body = retry::retry(ctx, &what, backoff(args), client::classify, |_| client::read(vault, &api_path, version))
                .await
                .map_err(|e| explain_read(e, path, &api_path))?;
            Ok((template::secret_value(&body), Lease::of(path, &body)))
        }
        Query::Write(path, data) => {
            let data = data.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            let body =
                retry::retry(ctx, &what, backoff(args), client::classify, |_| client::write(vault, path, &data)).await.map_err(|e| {
                    if client::api_code(&e) == Some(403) { e.with_hint(format!("the token's policies need 'update' on {path}")) } else { e }
                })?;
            Ok((template::secret_value(&body), Lease::of(path, &body)))
        }
        Query::List(path) => {
            let mount = template_mount(ctx, vault, path, args, mounts).await?;
            let api_path = template_api_path(path, &mount, true)?;
            let keys =
                retry::retry(ctx, &what, backoff(args), client::classify, |_| client::list(vault, &api_path)).await.map_err(|e| {
                    if client::api_code(&e) == Some(403) {
                        e.with_hint(format!("the token's policies need 'list' on {api_path}"))
                    } else {
                        e
                    }
                })?;
            Ok((podinit_template::Value::list(keys.into_iter().map(podinit_template::Value::str).collect()), None))
        }
    }
}

/// The mount of a template's path: `--kv-version` applies to paths under `--mount` only (a
/// template also reads `database/creds/…` and other engines); others are looked up.
async fn template_mount(ctx: &Context, vault: &VaultClient, path: &str, args: &Args, mounts: &MountCache) -> Result<Mount, Error> {
    let under_mount = args.mount.as_ref().is_some_and(|m| format!("{path}/").starts_with(&format!("{}/", m.trim_matches('/'))));
    if args.kv_version.is_some() && under_mount {
        mount_for(ctx, vault, path, args, mounts).await
    } else {
        mount_of(ctx, vault, path, args, mounts).await
    }
}

/// A template's path as consul-template reads it: on a KV v2 mount, `data/` (or, to list,
/// `metadata/`) is added after the mount unless the path already has `data/`, `metadata/`
/// or `subkeys/` there.
fn template_api_path(path: &str, mount: &Mount, list: bool) -> Result<String, Error> {
    if mount.engine != Engine::Kv2 {
        return Ok(path.to_owned());
    }
    let Some(rest) = format!("{path}/").strip_prefix(&mount.path).map(|r| r.trim_end_matches('/').to_owned()) else {
        return Err(Error::usage(format!("template: {path} is not under the mount {}", mount.path)));
    };
    if ["data/", "metadata/", "subkeys/"].iter().any(|p| rest.starts_with(p)) || (list && rest == "metadata") {
        return Ok(path.to_owned());
    }
    let kind = if list { "metadata" } else { "data" };
    Ok(if rest.is_empty() { format!("{}{kind}", mount.path) } else { format!("{}{kind}/{rest}", mount.path) })
}

fn backoff(args: &Args) -> Backoff {
    Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(5),
        attempt_timeout: Some(args.attempt_timeout),
        growth: retry::Growth::Doubling,
    }
}

fn plan(args: &Args) -> Result<Plan, Error> {
    let specs = args
        .secrets
        .iter()
        .map(|s| SecretSpec::parse(s).map_err(|e| Error::usage(format!("bad SECRET {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let templates = args
        .templates
        .iter()
        .map(|t| TemplateArg::parse(t).map_err(|e| Error::usage(format!("bad --template {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let token_out = match &args.write_token {
        Some(name) => Some(spec::output_path(name, name).map_err(|e| Error::usage(format!("bad --write-token {e}")))?),
        None => None,
    };
    let pki = match &args.pki {
        None => None,
        Some(path) => {
            let path = path.trim_matches('/');
            if path.is_empty() || path.split('/').any(|s| s.is_empty() || s == "." || s == "..") || !path.contains("/issue/") {
                return Err(Error::usage(format!("--pki '{path}' is not a PKI issue path")).with_hint("e.g. --pki pki/issue/my-role"));
            }
            if let Some(name) = args.alt_names.iter().find(|n| n.is_empty() || n.contains([',', ' '])) {
                return Err(Error::usage(format!("--alt-name {name:?}: one name per --alt-name")));
            }
            let common_name = args.common_name.clone().unwrap_or_default();
            if common_name.is_empty() {
                return Err(Error::usage("--common-name is empty"));
            }
            let mut alt_names = args.alt_names.clone();
            alt_names.sort();
            alt_names.dedup();
            let mut ip_sans = args.ip_sans.clone();
            ip_sans.sort();
            ip_sans.dedup();
            Some(pki::Request { path: path.to_owned(), common_name, alt_names, ip_sans, ttl: args.ttl, renew_below: args.renew_below })
        }
    };
    if let Some(spec) = specs.iter().find(|s| s.version.is_some())
        && args.kv_version == Some(1)
    {
        return Err(Error::usage(format!("'{}': ?version= needs KV v2, but --kv-version is 1", spec.text)));
    }
    check_outputs(&specs, &templates, token_out.as_deref(), pki.is_some(), args.format)?;
    let address = flag_or_env(&args.address, "--address", "ADDR")
        .ok_or_else(|| Error::usage("no server address").with_hint("set VAULT_ADDR (or BAO_ADDR), or give --address https://vault:8200"))?;
    let address =
        url::Url::parse(&address.value).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()).ok_or_else(|| {
            Error::usage(format!("{} '{}' is not an http(s) URL", address.name, address.value))
                .with_hint("e.g. https://vault.vault.svc:8200")
        })?;
    let skip_verify = args.tls_skip_verify || env::get_bool("SKIP_VERIFY")?.unwrap_or(false);
    if skip_verify {
        tracing::warn!("TLS verification is off: anyone on the path can read the secrets");
    }
    let client_identity = match (
        flag_or_env_path(&args.client_cert, "--client-cert", "CLIENT_CERT"),
        flag_or_env_path(&args.client_key, "--client-key", "CLIENT_KEY"),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(Error::usage("a client certificate needs both a certificate and a key (--client-cert and --client-key)")),
    };
    let tls = podinit_tls::client_config(&TlsOptions {
        ca_files: flag_or_env_path(&args.ca_cert, "--ca-cert", "CACERT").into_iter().collect(),
        ca_dirs: flag_or_env_path(&args.ca_path, "--ca-path", "CAPATH").into_iter().collect(),
        ca_pem: env::get("CACERT_BYTES").map(|(var, value)| Named::new(var, value)),
        client_identity,
        server_name: flag_or_env(&args.tls_server_name, "--tls-server-name", "TLS_SERVER_NAME"),
        insecure: skip_verify,
    })?;
    let namespace = flag_or_env(&args.namespace, "--namespace", "NAMESPACE").map(|n| n.value);
    let auth = auth(args)?;
    Ok(Plan {
        specs,
        templates,
        pki,
        token_out,
        conn: Connection { address, tls, attempt_timeout: args.attempt_timeout },
        auth_namespace: args.auth_namespace.clone().or_else(|| namespace.clone()),
        namespace,
        auth,
    })
}

/// Refuses, before any request, outputs that would collide: two writing one name, or a file
/// where another output needs a directory (`db` and `db/password`); and `?decode=base64` on a
/// whole secret written as JSON or dotenv. The names of a whole secret's keys are known only
/// after reading it; `output::write_set` checks those.
fn check_outputs(
    specs: &[SecretSpec],
    templates: &[TemplateArg],
    token_out: Option<&std::path::Path>,
    pki: bool,
    format: Format,
) -> Result<(), Error> {
    let mut outputs: Vec<(PathBuf, bool, String)> = Vec::new();
    for spec in specs {
        if spec.decode_base64 && spec.key.is_none() && format != Format::Files {
            return Err(Error::usage(format!("'{}': ?decode=base64 writes raw files; it needs #KEY or --format files", spec.text)));
        }
        let (path, dir) = match (&spec.key, &spec.out, format) {
            (Some(_), Some(out), _) => (out.clone(), false),
            (Some(key), None, _) if spec::is_file_name(key) => (PathBuf::from(key), false),
            (Some(_), None, _) => continue,
            (None, Some(out), Format::Files) => (out.clone(), true),
            (None, Some(out), _) => (out.clone(), false),
            (None, None, Format::Files) => (PathBuf::from(spec.name()), true),
            (None, None, Format::Json) => (PathBuf::from(format!("{}.json", spec.name())), false),
            (None, None, Format::Env) => (PathBuf::from(format!("{}.env", spec.name())), false),
        };
        outputs.push((path, dir, format!("'{}'", spec.text)));
    }
    outputs.extend(templates.iter().map(|t| (t.out.clone(), false, format!("--template {}", t.src.display()))));
    outputs.extend(token_out.map(|p| (p.to_owned(), false, "--write-token".to_owned())));
    if pki {
        outputs.extend(pki::FILES.iter().map(|f| (PathBuf::from(f), false, "--pki".to_owned())));
    }
    let normal = |p: &std::path::Path| p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect::<PathBuf>();
    for (i, (a, a_dir, a_by)) in outputs.iter().enumerate() {
        for (b, b_dir, b_by) in &outputs[i + 1..] {
            let (a, b) = (normal(a), normal(b));
            let message = if a == b && !a_dir && !b_dir {
                format!("{a_by} and {b_by} would both write {}", a.display())
            } else if b.starts_with(&a) && !a_dir && (a != b || *b_dir) {
                format!("{a_by} writes the file {} where {b_by} needs a directory", a.display())
            } else if a.starts_with(&b) && !b_dir && (a != b || *a_dir) {
                format!("{b_by} writes the file {} where {a_by} needs a directory", b.display())
            } else {
                continue;
            };
            return Err(Error::usage(message).with_hint("give one of them another name ('#KEY=FILE', '=DIR', --template SRC=NAME)"));
        }
    }
    Ok(())
}

/// The flag when given, else `BAO_<var>`, else `VAULT_<var>`; named as it was given.
fn flag_or_env(flag: &Option<String>, name: &str, var: &str) -> Option<Named<String>> {
    match flag {
        Some(value) => Some(Named::new(name, value.clone())),
        None => env::get(var).map(|(var, value)| Named::new(var, value)),
    }
}

/// Every file vault-fetch may read a credential from (whichever the auth method): a
/// template's `file` must never read one.
fn credential_files(args: &Args) -> Vec<PathBuf> {
    let mut files = vec![args.jwt_file.clone()];
    for (flag, name, var) in [
        (&args.token_file, "--token-file", "TOKEN_FILE"),
        (&args.role_id_file, "--role-id-file", "ROLE_ID_FILE"),
        (&args.secret_id_file, "--secret-id-file", "SECRET_ID_FILE"),
        (&args.client_key, "--client-key", "CLIENT_KEY"),
    ] {
        files.extend(flag_or_env_path(flag, name, var).map(|named| named.value));
    }
    files
}

fn flag_or_env_path(flag: &Option<PathBuf>, name: &str, var: &str) -> Option<Named<PathBuf>> {
    match flag {
        Some(path) => Some(Named::new(name, path.clone())),
        None => env::get(var).map(|(var, value)| Named::new(var, PathBuf::from(value))),
    }
}

fn auth(args: &Args) -> Result<Auth, Error> {
    let method = match args.auth {
        Some(method) => method,
        None => match env::get("AUTH_METHOD") {
            None => AuthMethod::Token,
            Some((var, value)) => <AuthMethod as clap::ValueEnum>::from_str(&value, true).map_err(|_| {
                Error::usage(format!("{var}='{value}' is not an auth method")).with_hint("use token, kubernetes, approle or jwt")
            })?,
        },
    };
    let mount = |default: &str| args.auth_mount.clone().unwrap_or_else(|| default.to_owned()).trim_matches('/').to_owned();
    let role = flag_or_env(&args.role, "--role", "ROLE").map(|r| r.value);
    let secret_from = |file: &Option<PathBuf>, flag: &str, var: &str| -> Result<Option<String>, Error> {
        match file {
            Some(path) => podinit_core::fs::read_secret_file(flag, path).map(Some),
            None => Ok(env::get(var).map(|(_, value)| value)),
        }
    };
    let jwt = || podinit_core::fs::read_secret_file("--jwt-file", &args.jwt_file);
    Ok(match method {
        AuthMethod::Token => {
            let file = flag_or_env_path(&args.token_file, "--token-file", "TOKEN_FILE");
            let token = match file {
                Some(file) => podinit_core::fs::read_secret_file(&file.name, &file.value)?,
                None => env::get("TOKEN").map(|(_, token)| token).ok_or_else(|| {
                    Error::usage("no token for --auth token")
                        .with_hint("set VAULT_TOKEN from a Secret, give --token-file, or log in with --auth kubernetes --role ROLE")
                })?,
            };
            if token.is_empty() {
                return Err(Error::usage("the token is empty"));
            }
            Auth::Given(token)
        }
        AuthMethod::Kubernetes => {
            let role = role.ok_or_else(|| Error::usage("--auth kubernetes needs --role (or VAULT_ROLE)"))?;
            Auth::Login(Login::Kubernetes { mount: mount("kubernetes"), role, jwt: jwt()? })
        }
        AuthMethod::Jwt => Auth::Login(Login::Jwt { mount: mount("jwt"), role, jwt: jwt()? }),
        AuthMethod::Approle => {
            let role_id = secret_from(&args.role_id_file, "--role-id-file", "ROLE_ID")?
                .ok_or_else(|| Error::usage("--auth approle needs --role-id-file (or VAULT_ROLE_ID)"))?;
            let secret_id = secret_from(&args.secret_id_file, "--secret-id-file", "SECRET_ID")?.unwrap_or_default();
            Auth::Login(Login::AppRole { mount: mount("approle"), role_id, secret_id })
        }
    })
}

/// A login error with the operator's next step.
fn explain_login(err: Error, login: &Login) -> Error {
    let hint = match (client::api_code(&err), login) {
        (Some(400 | 403), Login::Kubernetes { .. }) => {
            "check the role's bound_service_account_names/namespaces and audience, and the auth method's kubernetes_host"
        }
        (Some(400 | 403), Login::AppRole { .. }) => "check the role id and secret id (a secret id may have expired or been used up)",
        (Some(400 | 403), Login::Jwt { .. }) => "check the role's bound_audiences and bound_claims and the JWT's issuer",
        _ => return err,
    };
    err.with_hint(hint)
}

/// One fetched secret.
struct Fetched<'a> {
    spec: &'a SecretSpec,
    data: Map<String, Value>,
    lease: Option<Lease>,
}

/// Fetches the first secret alone (so an unreachable or sealed server is waited for by one
/// retry loop, not by N noisy ones, and its mount is known to the rest), then the rest
/// concurrently.
async fn fetch_all<'a>(
    ctx: &Context,
    vault: &VaultClient,
    specs: &'a [SecretSpec],
    args: &Args,
    mounts: &MountCache,
) -> Result<Vec<Fetched<'a>>, Error> {
    let Some((first, rest)) = specs.split_first() else { return Ok(Vec::new()) };
    let mut fetched = vec![fetch_one(ctx, vault, first, args, mounts).await?];
    let results: Vec<Result<Fetched<'a>, Error>> = futures_util::stream::iter(rest)
        .map(|spec| fetch_one(ctx, vault, spec, args, mounts))
        .buffered(usize::from(args.concurrency))
        .collect()
        .await;
    for result in results {
        fetched.push(result?);
    }
    Ok(fetched)
}

/// Mounts already looked up: a secret under one of them needs no lookup of its own.
type MountCache = Mutex<Vec<Mount>>;

async fn fetch_one<'a>(
    ctx: &Context,
    vault: &VaultClient,
    spec: &'a SecretSpec,
    args: &Args,
    mounts: &MountCache,
) -> Result<Fetched<'a>, Error> {
    let mount = mount_for(ctx, vault, &spec.path, args, mounts).await?;
    let api_path = api_path(spec, &mount)?;
    let version = if mount.engine == Engine::Kv2 { spec.version } else { None };
    let what = format!("reading {}", spec.path);
    let body = retry::retry(ctx, &what, backoff(args), client::classify, |_| client::read(vault, &api_path, version))
        .await
        .map_err(|e| explain_read(e, &spec.path, &api_path))?;
    let lease = Lease::of(&spec.path, &body);
    let data = match mount.engine {
        Engine::Kv2 => body.pointer("/data/data").cloned(),
        _ => body.get("data").cloned(),
    };
    match data {
        Some(Value::Object(data)) => Ok(Fetched { spec, data, lease }),
        _ => Err(Error::new(
            Kind::Failed,
            anyhow::anyhow!("{}: the secret has no data (the latest version may be deleted or destroyed)", spec.path),
        )),
    }
}

/// The mount `path` is on: from --kv-version (and --mount) when given, else asked.
async fn mount_for(ctx: &Context, vault: &VaultClient, path: &str, args: &Args, mounts: &MountCache) -> Result<Mount, Error> {
    Ok(match args.kv_version {
        Some(version) => Mount {
            path: match &args.mount {
                Some(mount) => format!("{}/", mount.trim_matches('/')),
                None => format!("{}/", path.split('/').next().unwrap_or_default()),
            },
            engine: if version == 2 { Engine::Kv2 } else { Engine::Kv1 },
        },
        None => mount_of(ctx, vault, path, args, mounts).await?,
    })
}

/// The mount `path` is on: from the cache, else asked (and remembered).
async fn mount_of(ctx: &Context, vault: &VaultClient, path: &str, args: &Args, mounts: &MountCache) -> Result<Mount, Error> {
    let under = format!("{path}/");
    if let Some(known) = mounts.lock().unwrap_or_else(PoisonError::into_inner).iter().find(|m| under.starts_with(&m.path)) {
        return Ok(known.clone());
    }
    let what = format!("finding the mount of {path}");
    let mount = retry::retry(ctx, &what, backoff(args), client::classify, |_| client::mount_of(vault, path)).await.map_err(|e| {
        let (first, rest) = path.split_once('/').unwrap_or((path, ""));
        let hint = format!(
            "the token has no capability on {path}: grant 'read' on {first}/data/{rest} (KV v2 at {first}/) or {path} (KV v1); \
             --kv-version (and --mount) skip this lookup"
        );
        if client::api_code(&e) == Some(403) { e.with_hint(hint) } else { e }
    })?;
    mounts.lock().unwrap_or_else(PoisonError::into_inner).push(mount.clone());
    Ok(mount)
}

/// The API path of `spec` on `mount`: KV v2 reads go through `<mount>data/<rest>`.
fn api_path(spec: &SecretSpec, mount: &Mount) -> Result<String, Error> {
    let Some(rest) = format!("{}/", spec.path).strip_prefix(&mount.path).map(|r| r.trim_end_matches('/').to_owned()) else {
        return Err(Error::usage(format!("'{}' is not under the mount {}", spec.text, mount.path)));
    };
    if spec.version.is_some() && mount.engine != Engine::Kv2 {
        return Err(Error::usage(format!("'{}': ?version= needs a KV v2 mount; {} is not one", spec.text, mount.path)));
    }
    Ok(match mount.engine {
        Engine::Kv2 => {
            let rest = rest.strip_prefix("data/").unwrap_or(&rest);
            if rest.is_empty() || rest == "data" {
                return Err(Error::usage(format!("'{}' names the mount {}, not a secret in it", spec.text, mount.path)));
            }
            format!("{}data/{rest}", mount.path)
        }
        Engine::Kv1 | Engine::Other(_) => spec.path.clone(),
    })
}

fn explain_read(err: Error, path: &str, api_path: &str) -> Error {
    match client::api_code(&err) {
        Some(404) => Error::new(Kind::Failed, anyhow::anyhow!("{path}: no secret at this path (read {api_path})"))
            .with_hint("check the path and the mount; a deleted KV v2 version reads as missing"),
        Some(403) => err.with_hint(format!("the token's policies need 'read' on {api_path}")),
        _ => err,
    }
}

/// Revokes the token podinit obtained, unless a leased secret depends on it.
async fn finish_token(vault: &VaultClient, leases: &[Lease]) {
    if !leases.is_empty() {
        let paths: Vec<&str> = leases.iter().map(|l| l.path.as_str()).collect();
        tracing::warn!(
            "keeping the token: {} carr{} a lease that would end with it; the lease ends when the token's TTL does",
            paths.join(", "),
            if paths.len() == 1 { "ies" } else { "y" }
        );
        return;
    }
    if !client::has_token(vault) {
        return;
    }
    match tokio::time::timeout(Duration::from_secs(5), client::revoke_self(vault)).await {
        Ok(Ok(())) => tracing::debug!("revoked the token podinit logged in with"),
        Ok(Err(e)) => tracing::warn!("could not revoke the token podinit logged in with: {e}"),
        Err(_) => tracing::warn!("could not revoke the token podinit logged in with: no answer within 5s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(path: &str, engine: Engine) -> Mount {
        Mount { path: path.into(), engine }
    }

    #[test]
    fn colliding_outputs_are_refused_before_any_request() {
        let specs = |texts: &[&str]| texts.iter().map(|t| SecretSpec::parse(t).unwrap()).collect::<Vec<_>>();
        let tpl = |text: &str| TemplateArg::parse(text).unwrap();
        let ok = check_outputs(&specs(&["secret/a/db", "secret/b/db", "secret/x#k=conf/k"]), &[tpl("t=conf/t")], None, true, Format::Files);
        assert!(ok.is_ok(), "{ok:?}");
        let err =
            check_outputs(&specs(&["secret/web#username=app.env"]), &[tpl("/t/app=./app.env")], None, false, Format::Files).unwrap_err();
        assert_eq!(err.message(), "'secret/web#username=app.env' and --template /t/app would both write app.env");
        let err = check_outputs(&specs(&["secret/app/db"]), &[tpl("t=db")], None, false, Format::Files).unwrap_err();
        assert!(err.message().contains("writes the file db where 'secret/app/db' needs a directory"), "{}", err.message());
        assert!(check_outputs(&specs(&["secret/a#tls.crt"]), &[], None, true, Format::Files).is_err());
        assert!(check_outputs(&[], &[], Some(std::path::Path::new("ca.crt")), true, Format::Files).is_err());
        let err = check_outputs(&specs(&["secret/app?decode=base64"]), &[], None, false, Format::Json).unwrap_err();
        assert!(err.message().contains("?decode=base64 writes raw files"));
    }

    #[test]
    fn api_paths() {
        let spec = |t| SecretSpec::parse(t).unwrap();
        assert_eq!(api_path(&spec("secret/app/db"), &kv("secret/", Engine::Kv2)).unwrap(), "secret/data/app/db");
        assert_eq!(api_path(&spec("secret/data/app/db"), &kv("secret/", Engine::Kv2)).unwrap(), "secret/data/app/db");
        // A segment that merely contains "data" is not rewritten.
        assert_eq!(api_path(&spec("secret/database/db"), &kv("secret/", Engine::Kv2)).unwrap(), "secret/data/database/db");
        assert_eq!(api_path(&spec("team/kv/app"), &kv("team/kv/", Engine::Kv2)).unwrap(), "team/kv/data/app");
        assert_eq!(api_path(&spec("kv1/app"), &kv("kv1/", Engine::Kv1)).unwrap(), "kv1/app");
        assert_eq!(
            api_path(&spec("database/creds/app"), &kv("database/", Engine::Other("database".into()))).unwrap(),
            "database/creds/app"
        );
        assert!(api_path(&spec("secret"), &kv("secret/", Engine::Kv2)).is_err());
        assert!(api_path(&spec("kv1/app?version=2"), &kv("kv1/", Engine::Kv1)).is_err());
        assert!(api_path(&spec("other/app"), &kv("secret/", Engine::Kv2)).is_err());
    }
}

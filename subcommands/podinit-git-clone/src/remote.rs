//! The network side: which URL, which ref, which credentials, and one fetch with gix.
//!
//! Credentials come from files and go only to the repository's own origin (scheme, host,
//! port): set on the transport for the first request when its URL is REPO's, and given to
//! gix's 401 callback only for that origin; a redirect to another host, or a submodule
//! elsewhere, gets nothing. They never travel over plain http.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use gix::ObjectId;
use gix::credentials::helper::Action;
use gix::protocol::transport::client::blocking_io::http;
use gix::remote::Direction;
use podinit_core::retry::{Backoff, Growth, Verdict};
use podinit_core::{Error, Kind};

use crate::Args;

/// Waits between fetch attempts: a git server that is restarting, a 503 from its proxy.
pub(crate) const BACKOFF: Backoff =
    Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(10), attempt_timeout: None, growth: Growth::Doubling };

/// The local ref a fetch stores the wanted commit under (inside DEST/.git only).
const WANT: &str = "refs/podinit/want";

/// How the repository's host is authenticated against.
#[derive(Clone)]
enum Credentials {
    /// HTTP basic authentication.
    Basic { username: String, password: String },
    /// `Authorization: Bearer`.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// What to fetch, checked once before anything is written.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// The repository URL as gix takes it.
    pub(crate) url: String,
    /// The URL for messages (no password ever; REPO may not carry one).
    pub(crate) shown: String,
    /// Scheme, host and port of REPO: where credentials may go.
    origin: url::Origin,
    /// `--ref`.
    pub(crate) git_ref: String,
    /// The link's name in DEST.
    pub(crate) link: String,
    /// `--depth`, 0 for all history.
    pub(crate) depth: u32,
    /// `--sparse`, as relative paths with `/` separators and no trailing `/`.
    pub(crate) sparse: Vec<String>,
    credentials: Option<Credentials>,
    tls: Arc<rustls::ClientConfig>,
}

impl Plan {
    /// Checks the arguments (every refusal is a usage error naming the input) and reads the
    /// secret files.
    pub(crate) fn from_args(args: &Args) -> Result<Self, Error> {
        let parsed = parse_repo(&args.repo)?;
        let link = match &args.link {
            Some(link) => link.clone(),
            None => default_link(&parsed)?,
        };
        check_link_name(&link)?;
        check_ref(&args.git_ref)?;
        let sparse = args.sparse.iter().map(|p| sparse_path(p)).collect::<Result<Vec<_>, _>>()?;
        let credentials = match (&args.username, &args.password_file, &args.bearer_token_file) {
            (Some(username), Some(file), _) => Some(Credentials::Basic {
                username: username.clone(),
                password: podinit_core::fs::read_secret_file("--password-file", file)?,
            }),
            (_, _, Some(file)) => Some(Credentials::Bearer(podinit_core::fs::read_secret_file("--bearer-token-file", file)?)),
            _ => None,
        };
        if credentials.is_some() && parsed.scheme() != "https" {
            return Err(Error::usage(format!(
                "REPO {}: credentials are only sent over https, not {}://",
                podinit_core::redact::url(&parsed),
                parsed.scheme()
            ))
            .with_hint("use the repository's https:// URL"));
        }
        let tls = podinit_tls::TlsOptions {
            ca_files: args.ca_file.iter().map(|f| podinit_tls::Named::new("--ca-file", f.clone())).collect(),
            ..Default::default()
        };
        let tls = Arc::new(podinit_tls::client_config(&tls)?);
        Ok(Self {
            url: args.repo.clone(),
            shown: podinit_core::redact::url(&parsed),
            origin: parsed.origin(),
            git_ref: args.git_ref.clone(),
            link,
            depth: args.depth,
            sparse,
            credentials,
            tls,
        })
    }

    /// The plan for a submodule at `url` (relative URLs are resolved against this
    /// repository's, as git does) and `commit`: shallow, whole tree. Its credentials still
    /// go only to this repository's origin.
    pub(crate) fn submodule(&self, url: &str, commit: ObjectId) -> Result<Self, Error> {
        let resolved = if url.starts_with("./") || url.starts_with("../") {
            let base = url::Url::parse(&format!("{}/", self.url.trim_end_matches('/')))
                .map_err(|e| Error::usage(format!("{}: {e}", self.shown)))?;
            base.join(url).map_err(|e| Error::usage(format!("url {url}: {e}")))?.to_string()
        } else {
            url.to_owned()
        };
        let parsed = parse_repo(&resolved)?;
        Ok(Self {
            url: resolved,
            shown: podinit_core::redact::url(&parsed),
            git_ref: commit.to_string(),
            depth: 1,
            sparse: Vec::new(),
            ..self.clone()
        })
    }

    /// The commit `--ref` names by itself (a full commit id), if it does.
    pub(crate) fn fixed_commit(&self) -> Option<ObjectId> {
        full_id(&self.git_ref)
    }

    /// The refspec that fetches `--ref` into [`WANT`].
    fn refspec(&self) -> String {
        match self.fixed_commit() {
            Some(id) => format!("+{id}:{WANT}"),
            None => format!("+{}:{WANT}", self.git_ref),
        }
    }

    /// HTTP settings for gix's reqwest backend: podinit's TLS (rustls with ring, `--ca-file`).
    fn http_options(&self) -> http::Options {
        let tls = Arc::clone(&self.tls);
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(move |builder| {
                Ok(builder.tls_backend_preconfigured((*tls).clone()).user_agent(concat!("git/2 podinit/", env!("CARGO_PKG_VERSION"))))
            })),
            configure_request: None,
        };
        http::Options { backend: Some(Arc::new(Mutex::new(backend))), ..Default::default() }
    }

    /// The credentials as gix sends them.
    fn identity(&self) -> Option<gix::sec::identity::Credentials> {
        Some(match self.credentials.as_ref()? {
            Credentials::Basic { username, password } => gix::sec::identity::Credentials::UsernamePassword {
                username: username.clone(),
                password: password.clone(),
                oauth_refresh_token: None,
            },
            Credentials::Bearer(token) => {
                gix::sec::identity::Credentials::Encoded { authtype: "Bearer".into(), credential: token.clone(), oauth_refresh_token: None }
            }
        })
    }

    /// The credentials function gix asks on a 401: this plan's credentials for its own
    /// origin, nothing for any other URL.
    fn credentials_for(&self) -> impl FnMut(Action) -> gix::Result<Option<gix::credentials::protocol::Outcome>> + use<> {
        let (identity, origin) = (self.identity(), self.origin.clone());
        move |action| {
            let Action::Get(context) = action else { return Ok(None) };
            let Some(credentials) = identity.clone() else { return Ok(None) };
            let asked = context.url.as_ref().and_then(|u| url::Url::parse(&u.to_string()).ok()).map(|u| u.origin());
            if asked.as_ref() != Some(&origin) {
                tracing::warn!("credentials asked for another origin than the repository's; none sent");
                return Ok(None);
            }
            Ok(Some(gix::credentials::protocol::Outcome { credentials, next: context.into() }))
        }
    }
}

/// What a fetch found.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The ref names the commit the link already shows: nothing was downloaded.
    Unchanged(ObjectId),
    /// The commit is in DEST/.git now.
    New(ObjectId),
}

/// Resolves the ref at the remote and, unless it names `current`, fetches its commit (shallow
/// to `--depth`) into the bare repository at `git_dir` (made when missing or unreadable),
/// counting the pack's bytes into `received`.
pub(crate) fn fetch(
    plan: &Plan,
    git_dir: &Path,
    current: Option<&ObjectId>,
    stop: &AtomicBool,
    received: &gix::progress::StepShared,
) -> anyhow::Result<Fetched> {
    let mut repo = open_or_init(git_dir)?;
    if plan.url.starts_with("git://") && current.is_some() {
        // Over git daemon, protocol v2 waits on a delayed ACK: an unchanged rerun took 49 ms
        // where v1 answers in 4 (as `git ls-remote` does). v1 lists every ref (a git daemon's
        // repository has few), and gix does not fetch shallow over it: v1 only to compare.
        set_protocol(&mut repo, "1")?;
        let (_, advertised) = prepare(&repo, plan)?;
        if current == Some(&advertised) {
            return Ok(Fetched::Unchanged(advertised));
        }
        set_protocol(&mut repo, "2")?;
    }
    let (prepare, advertised) = prepare(&repo, plan)?;
    if current == Some(&advertised) {
        return Ok(Fetched::Unchanged(advertised));
    }
    let shallow = match std::num::NonZeroU32::new(plan.depth) {
        Some(depth) => gix::remote::fetch::Shallow::DepthAtRemote(depth),
        // All history, also into a repository an earlier run fetched shallow.
        None if repo.is_shallow().unwrap_or(true) => gix::remote::fetch::Shallow::undo(),
        None => gix::remote::fetch::Shallow::NoChange,
    };
    tracing::info!("fetching {} ({advertised}) from {}", plan.git_ref, plan.shown);
    let outcome = prepare
        .with_shallow(shallow)
        .receive(crate::meter::Tap::watching(crate::meter::PACK_BYTES, received), stop)
        .map_err(|e| git_error(e, format!("fetching {} from {}", plan.git_ref, plan.shown), plan))?;
    if let gix::remote::fetch::Status::Change { write_pack_bundle, .. } = &outcome.status {
        tracing::info!("received {} objects", write_pack_bundle.index.num_objects);
    }
    let id =
        repo.find_reference(WANT).and_then(|mut r| r.peel_to_id()).map_err(|e| anyhow::anyhow!("reading what was fetched: {e}"))?.detach();
    let commit = repo
        .find_object(id)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| fatal(Kind::Usage, format!("--ref {}: {id} is not a commit: {e}", plan.git_ref)))?;
    Ok(Fetched::New(commit.id))
}

/// Connects and resolves the ref: the prepared fetch and the commit (a tag peeled) the remote
/// names.
fn prepare<'repo>(
    repo: &'repo gix::Repository,
    plan: &Plan,
) -> anyhow::Result<(
    gix::remote::fetch::Prepare<'static, 'repo, Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>>,
    ObjectId,
)> {
    // Without `url.*.insteadOf` from DEST/.git/config: the volume is writable by the app, and a
    // rewrite there would send the credentials elsewhere.
    let remote = repo
        .remote_at_without_url_rewrite(plan.url.as_str())
        .map_err(|e| fatal(Kind::Usage, format!("REPO {}: {e}", plan.shown)))?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs([plan.refspec().as_str()], Direction::Fetch)
        .map_err(|e| fatal(Kind::Usage, format!("--ref {}: {e}", plan.git_ref)))?;
    let mut connection = remote
        .connect(Direction::Fetch)
        .map_err(|e| {
            // git:// connects here (name lookup and TCP; an https URL connects with its first
            // request): a name that does not resolve yet or a refused port is a server not up yet.
            if plan.url.starts_with("git://") {
                anyhow::Error::new(Transient(GitError(e))).context(format!("connecting to {}", plan.shown))
            } else {
                git_error(e, format!("connecting to {}", plan.shown), plan)
            }
        })?
        .with_credentials(plan.credentials_for())
        .with_transport_options(Box::new(plan.http_options()));
    let ours = url::Url::parse(&connection.transport_mut().to_url().to_string()).is_ok_and(|u| u.origin() == plan.origin);
    if let Some(identity) = plan.identity().filter(|_| ours) {
        // Sent with the first request to REPO's origin (not to a submodule elsewhere), as
        // `curl -u` does, which saves the 401 round trip; gix drops them when a redirect leads
        // to another host.
        connection.transport_mut().set_credentials(identity).map_err(|e| anyhow::anyhow!("setting the credentials: {e}"))?;
    }
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| git_error(e, format!("listing the refs of {}", plan.shown), plan))?;
    let advertised =
        prepare.ref_map().mappings.iter().find_map(|m| m.remote.peeled_id().or_else(|| m.remote.as_id()).map(ToOwned::to_owned));
    let Some(advertised) = advertised else {
        return Err(fatal(Kind::Usage, format!("--ref {}: {} has no branch or tag of that name", plan.git_ref, plan.shown)));
    };
    Ok((prepare, advertised))
}

/// Sets `protocol.version` for this process's use of the repository (not written to disk).
fn set_protocol(repo: &mut gix::Repository, version: &str) -> anyhow::Result<()> {
    repo.config_snapshot_mut()
        .set_value(&gix::config::tree::Protocol::VERSION, version)
        .map_err(|e| anyhow::anyhow!("setting the protocol version: {e}"))?;
    Ok(())
}

/// The config gix writes into a bare repository it makes on Linux, and all podinit's cache
/// ever has.
const CONFIG: &str = "[core]\n\tfilemode = true\n\tbare = true\n\tlogallrefupdates = false\n\tignorecase = false\n\tprecomposeunicode = false\n\trepositoryformatversion = 0\n";

/// Opens DEST/.git, or makes it: it is podinit's cache, so one that does not open (a run
/// killed while making it) is made anew.
pub(crate) fn open_or_init(git_dir: &Path) -> anyhow::Result<gix::Repository> {
    if git_dir.exists() {
        // The volume may be the app's to write: whatever its config says now (url rewrites,
        // HTTP headers, credential helpers, filters), podinit's cache has podinit's config.
        podinit_core::fs::write_atomic(&git_dir.join("config"), CONFIG.as_bytes(), podinit_core::fs::FileOptions::default())
            .with_context(|| format!("writing {}/config", git_dir.display()))?;
        match gix::open_opts(git_dir, gix::open::Options::isolated()) {
            Ok(repo) => return Ok(repo),
            Err(e) => {
                tracing::info!("{} does not open as a repository ({e}); making it anew", git_dir.display());
                std::fs::remove_dir_all(git_dir).with_context(|| format!("removing {}", git_dir.display()))?;
            }
        }
    }
    let repo = gix::ThreadSafeRepository::init_opts(
        git_dir,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        gix::open::Options::isolated(),
    )
    .map_err(|e| anyhow::anyhow!("making the repository {}: {e}", git_dir.display()))?;
    Ok(repo.to_thread_local())
}

/// A gix error kept whole, so [`classify`] can read its classification; shown as gix's
/// message and the deepest cause (gix's own chain repeats every layer).
#[derive(Debug)]
pub(crate) struct GitError(pub(crate) gix::Error);

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&podinit_core::redact::url_text(&causes(&self.0)))
    }
}

/// The messages of an error chain joined by `: `, without the layers that only repeat or
/// classify (gix puts `I/O error (Other)` and class names like `Validation` between them);
/// an `io::Error` is looked into (its `source` skips the error it wraps).
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut texts: Vec<String> = Vec::new();
    for e in podinit_core::redact::chain(err) {
        let text = match e.downcast_ref::<std::io::Error>() {
            // The error it wraps comes next.
            Some(io) if io.get_ref().is_some() => continue,
            Some(io) => podinit_core::redact::io_reason(io),
            None => e.to_string(),
        };
        let noise = text.starts_with("I/O error (") || (!text.contains(' ') && !texts.is_empty());
        if !noise && !texts.iter().any(|t| t.contains(&text)) {
            texts.push(text);
        }
    }
    texts.join(": ")
}

impl std::error::Error for GitError {}

/// A gix error while `doing` (which names the URL): a refused certificate or refused
/// credentials are the pod spec's to mend (exit 2, with what to do); anything else is left to
/// [`classify`].
fn git_error(err: gix::Error, doing: String, plan: &Plan) -> anyhow::Error {
    if let Some(problem) = podinit_tls::certificate_problem(&err) {
        let error = Error::new(Kind::Usage, anyhow::anyhow!("{doing}: {problem}"))
            .with_hint("give the CA that signed the server's certificate with --ca-file (PEM)");
        return anyhow::Error::new(error);
    }
    if err.is_unauthenticated() || err.to_string().contains("No credentials were returned") {
        let hint = if plan.credentials.is_some() {
            "the server refused the credentials: check the token in --password-file/--bearer-token-file and its read access to the repository"
        } else {
            "the repository needs credentials: give --username and --password-file (a read-only deploy token), or --bearer-token-file"
        };
        return anyhow::Error::new(Error::new(Kind::Usage, anyhow::anyhow!("{doing}: authentication required")).with_hint(hint));
    }
    anyhow::Error::new(GitError(err)).context(doing)
}

/// A failure worth retrying whatever gix's classification says.
#[derive(Debug)]
struct Transient(GitError);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Transient {}

/// A failure retrying cannot mend.
fn fatal(kind: Kind, message: String) -> anyhow::Error {
    anyhow::Error::new(Error::new(kind, anyhow::anyhow!(message)))
}

/// Retries what gix classifies as retryable (connection refused or reset, timeouts, 5xx), 408
/// and 429, and git:// connections that fail (the name, the port); an authentication failure
/// or a missing repository (404) is exit 2, anything else exit 1.
pub(crate) fn classify(err: &anyhow::Error) -> Verdict {
    if let Some(inner) = err.downcast_ref::<Error>() {
        return Verdict::Fatal(inner.kind());
    }
    if err.chain().any(|e| e.is::<Transient>()) {
        return Verdict::Retry;
    }
    if let Some(GitError(git)) = err.chain().find_map(|e| e.downcast_ref::<GitError>()) {
        match http_status(git) {
            Some(404) => return Verdict::Fatal(Kind::Usage),
            Some(408 | 429) => return Verdict::Retry,
            _ => {}
        }
        if git.can_retry_lenient() {
            return Verdict::Retry;
        }
        return Verdict::Fatal(if git.is_unauthenticated() || git.is_permission_denied() || git.is_not_found() {
            Kind::Usage
        } else {
            Kind::Failed
        });
    }
    Verdict::Fatal(Kind::Failed)
}

/// The HTTP status of a failed request somewhere in `err`'s chain (reqwest's own error, or
/// inside the `io::Error`s gix wraps it in).
fn http_status(err: &(dyn std::error::Error + 'static)) -> Option<u16> {
    podinit_core::redact::chain(err).find_map(|e| Some(e.downcast_ref::<reqwest::Error>()?.status()?.as_u16()))
}

/// REPO as a URL; refuses ssh (no ssh binary in the image), scp-like `host:path` and
/// credentials in the URL (they would be in argv and the pod spec).
fn parse_repo(repo: &str) -> Result<url::Url, Error> {
    let scp_like = !repo.contains("://") && repo.split_once(':').is_some_and(|(host, _)| !host.contains('/'));
    let parsed = if scp_like { None } else { url::Url::parse(repo).ok() };
    let Some(parsed) = parsed else {
        return Err(Error::usage(format!("REPO '{}': not a URL", podinit_core::redact::url_text(repo)))
            .with_hint("give https://host/path.git (ssh is not built in: use the https URL with --username and --password-file)"));
    };
    match parsed.scheme() {
        "https" | "http" | "git" => {}
        "file" => {
            return Err(Error::usage(format!(
                "REPO {}: file:// repositories are read by running git, which the image does not have",
                podinit_core::redact::url(&parsed)
            ))
            .with_hint("serve the repository (git daemon, smart HTTP), or copy a checked-out tree with `podinit cp -a`"));
        }
        "ssh" | "git+ssh" | "ssh+git" => {
            return Err(Error::usage(format!(
                "REPO {}: ssh is not built into podinit (no ssh binary in the image)",
                podinit_core::redact::url(&parsed)
            ))
            .with_hint("use the repository's https:// URL with --username and --password-file (a deploy token)"));
        }
        other => {
            return Err(Error::usage(format!("REPO {}: the scheme {other}:// is not supported", podinit_core::redact::url(&parsed)))
                .with_hint("use https://, http:// or git://"));
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::usage(format!(
            "REPO {}: credentials in the URL would be in the pod spec and the process list",
            podinit_core::redact::url(&parsed)
        ))
        .with_hint("put the token in a Secret and give --username and --password-file (or --bearer-token-file)"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::usage(format!("REPO {}: no host", podinit_core::redact::url(&parsed))));
    }
    Ok(parsed)
}

/// git-sync's default link: the last path component of REPO without `.git`.
fn default_link(url: &url::Url) -> Result<String, Error> {
    let leaf = url.path_segments().and_then(|mut s| s.rfind(|p| !p.is_empty())).unwrap_or_default();
    let leaf = leaf.strip_suffix(".git").unwrap_or(leaf);
    if leaf.is_empty() {
        return Err(
            Error::usage(format!("REPO {}: no name to call the link by", podinit_core::redact::url(url))).with_hint("give --link NAME")
        );
    }
    Ok(leaf.to_owned())
}

/// The link is one name directly in DEST, not hidden (`.git`, `.worktrees` and podinit's own
/// `..` names are the layout's).
fn check_link_name(link: &str) -> Result<(), Error> {
    if link.is_empty() || link.starts_with('.') || link.contains('/') || link.contains('\0') || link.len() > 200 {
        return Err(Error::usage(format!("--link '{link}': must be one file name of at most 200 bytes that does not start with '.'"))
            .with_hint("the link lives directly in DEST, e.g. --link repo"));
    }
    Ok(())
}

/// A ref as git's check-ref-format allows it (with a one-level name), or a commit id; an
/// abbreviated id is refused (the remote cannot be asked for one).
fn check_ref(git_ref: &str) -> Result<(), Error> {
    if full_id(git_ref).is_some() {
        return Ok(());
    }
    if git_ref.len() >= 4 && git_ref.len() < 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
        // A branch can be named like that, so only a hint at the refusal a missing ref gives.
        tracing::debug!("--ref {git_ref} looks like an abbreviated commit id; it is looked up as a branch or tag");
    }
    let bad = git_ref.is_empty()
        || git_ref.starts_with(['-', '/', '.'])
        || git_ref.ends_with(['/', '.'])
        || git_ref.ends_with(".lock")
        || git_ref.contains("..")
        || git_ref.contains("//")
        || git_ref.contains("@{")
        || git_ref.contains("/.")
        || git_ref.bytes().any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b));
    if bad {
        return Err(Error::usage(format!("--ref '{git_ref}': not a valid branch, tag or commit id"))
            .with_hint("give a branch (main), a tag (v1.2.0), refs/... or a full 40-character commit id"));
    }
    Ok(())
}

/// A full hexadecimal SHA-1.
fn full_id(text: &str) -> Option<ObjectId> {
    (text.len() == 40).then(|| ObjectId::from_hex(text.as_bytes()).ok()).flatten()
}

/// A `--sparse` path: relative, inside the tree, `/`-separated.
fn sparse_path(path: &str) -> Result<String, Error> {
    let trimmed = path.trim_matches('/');
    let bad = trimmed.is_empty() || path.starts_with('/') || trimmed.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::usage(format!("--sparse '{path}': must be a path inside the repository, like docs or src/app")));
    }
    Ok(trimmed.to_owned())
}

/// Where DEST's repository is.
pub(crate) fn git_dir(dest: &Path) -> PathBuf {
    dest.join(".git")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_urls() {
        assert!(parse_repo("https://example.com/a/b.git").is_ok());
        assert!(parse_repo("git://example.com/b").is_ok());
        for bad in [
            "file:///srv/repo.git",
            "git@github.com:org/repo.git",
            "ssh://git@example.com/r.git",
            "https://u:p@example.com/r.git",
            "ftp://x/y",
            "/srv/repo",
        ] {
            let err = parse_repo(bad).unwrap_err();
            assert_eq!(err.kind(), Kind::Usage, "{bad}");
            assert!(!err.message().contains(":p@"), "{}", err.message());
        }
    }

    #[test]
    fn default_links() {
        let link = |u: &str| default_link(&url::Url::parse(u).unwrap()).unwrap();
        assert_eq!(link("https://example.com/org/dags.git"), "dags");
        assert_eq!(link("https://example.com/org/site/"), "site");
        assert_eq!(link("git://example.com/r"), "r");
        assert!(default_link(&url::Url::parse("https://example.com/").unwrap()).is_err());
    }

    #[test]
    fn refs_and_links() {
        for good in ["main", "v1.2.0", "refs/heads/release/1.x", "HEAD", "0123456789abcdef0123456789abcdef01234567"] {
            assert!(check_ref(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a..b", "a b", "a:b", "x.lock", "a/", "@{1}", "a/.b"] {
            assert!(check_ref(bad).is_err(), "{bad:?}");
        }
        for bad in ["", ".git", "..data", "a/b", ".worktrees"] {
            assert!(check_link_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sparse_path("dags/").unwrap(), "dags");
        for bad in ["../x", "/etc", "a/../b", "", "./a"] {
            assert!(sparse_path(bad).is_err(), "{bad:?}");
        }
    }
}

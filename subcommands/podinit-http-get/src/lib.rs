//! `podinit http-get`: download a file over HTTP(S) into a shared volume, verified against a
//! checksum, atomically, and not again when the local copy is current.
//!
//! One GET tells what the server has (size, `Accept-Ranges`, ETag, Last-Modified); it is
//! conditional (`If-None-Match`, `If-Modified-Since`) when a record beside DEST says which
//! version DEST holds, so a current file costs one request, or none when a checksum is given
//! and the record says DEST has it. A large file from a server with ranges goes through
//! podinit-transfer's engine (parallel ranges with `If-Range`, resumed after a killed run,
//! hashed as it arrives, synced, renamed into place); otherwise that first response is
//! streamed into a temp file, hashed on the way. `--extract` downloads the archive the same
//! way into the destination directory, then unpacks it as a new version of a set
//! (`fs::set::DataSet`: readers see the old tree or the new one).
//!
//! ```yaml
//! initContainers:
//!   - name: plugin
//!     image: podinit
//!     args: ["http-get", "https://example.com/plugin-v1.2.0.tar.gz", "/plugins/",
//!            "--checksum-url", "https://example.com/SHA256SUMS", "--extract"]
//!     volumeMounts: [{ name: plugins, mountPath: /plugins }]
//! ```

mod checksum;
mod client;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use podinit_core::fs::set::DataSet;
use podinit_core::fs::{AtomicFile, FileOptions, hidden_sibling, write_atomic};
use podinit_core::progress::{Progress, Unit, bytes};
use podinit_core::retry::{self, Backoff};
use podinit_core::{Context, Error, Kind};
use podinit_transfer::archive::{Codec, Format};
use podinit_transfer::{Digest as _, Object, Partial, Record, Transfer};
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::checksum::{Hasher, Want};
use crate::client::{CallError, Http, HttpSource};

/// Download a file over HTTP(S), verified, atomically, resumably.
///
/// A large file from a server that takes ranges is fetched with concurrent ranged GETs into a
/// temp file beside DEST, hashed as it arrives, synced and renamed into place: DEST is the old
/// complete file or the new complete file, never a partial one. A download interrupted by a
/// killed pod resumes (If-Range: a file changed on the server starts over). A rerun costs one
/// conditional request when DEST is current, none when a checksum is given and DEST has it.
/// Exit 0 when DEST is current, 1 when the server refuses (4xx) or the bytes do not verify
/// (nothing is written), 2 for bad input, 124 when --timeout passes while the server is
/// unreachable or answers 5xx.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
URL and DEST:
  https://host/path/tool.tar.gz /opt/tool.tar.gz   into that file
  https://host/path/tool.tar.gz /opt/              into /opt/tool.tar.gz
  https://host/path/tool.tar.gz /opt/tool --extract   unpacked into /opt/tool

Credentials come from files (a mounted Secret), never from the command line, and go only to
the URL's own origin: a redirect to another host is followed without them.

Examples:
  podinit http-get https://get.helm.sh/helm-v3.17.0-linux-amd64.tar.gz /tools/ --checksum-url https://get.helm.sh/helm-v3.17.0-linux-amd64.tar.gz.sha256sum --extract
  podinit http-get https://models.internal/llm.safetensors /models/ --sha256 9f86d0...  --ca-file /etc/ca/ca.pem
  podinit http-get https://artifacts.internal/app.zip /app/ --extract --bearer-token-file /secrets/token")]
pub struct Args {
    /// http:// or https:// URL of the file.
    #[arg(value_name = "URL")]
    pub url: String,

    /// File or directory to write (see below); directories are created.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,

    /// The file's expected SHA-256 (hex); a mismatch writes nothing and exits 1.
    #[arg(long, env = "PODINIT_HTTP_GET_SHA256", value_name = "HEX", group = "digest")]
    pub sha256: Option<String>,

    /// The file's expected SHA-512 (hex); a mismatch writes nothing and exits 1.
    #[arg(long, env = "PODINIT_HTTP_GET_SHA512", value_name = "HEX", group = "digest")]
    pub sha512: Option<String>,

    /// A SHA256SUMS-style file (`HEX  NAME` lines, or one digest): the line for the URL's file name is the expected digest.
    #[arg(long, env = "PODINIT_HTTP_GET_CHECKSUM_URL", value_name = "URL", group = "digest")]
    pub checksum_url: Option<String>,

    /// Unpack a .tar, .tar.gz, .tar.zst, .tar.xz, .tar.bz2 or .zip file into DEST (a directory).
    #[arg(long, env = "PODINIT_HTTP_GET_EXTRACT", value_parser = BoolishValueParser::new())]
    pub extract: bool,

    /// Decompress a single .gz, .zst, .xz or .bz2 file into DEST (`DIR/` gets the name without the
    /// extension); the checksum is the compressed file's, as published. Within --extract-max-size.
    #[arg(long, env = "PODINIT_HTTP_GET_DECOMPRESS", value_parser = BoolishValueParser::new(), conflicts_with = "extract")]
    pub decompress: bool,

    /// Archive format for --extract.
    #[arg(long, env = "PODINIT_HTTP_GET_FORMAT", value_enum, default_value_t = Format::Auto, requires = "extract")]
    pub format: Format,

    #[command(flatten)]
    pub extract_limits: podinit_transfer::unpack::Limits,

    /// A file holding a bearer token, sent as `Authorization: Bearer …` to the URL's origin only.
    #[arg(long, env = "PODINIT_HTTP_GET_BEARER_TOKEN_FILE", value_name = "FILE")]
    pub bearer_token_file: Option<PathBuf>,

    /// A file of `Name: value` lines, sent as headers to the URL's origin only (values are secrets).
    #[arg(long, env = "PODINIT_HTTP_GET_HEADER_FILE", value_name = "FILE")]
    pub header_file: Option<PathBuf>,

    /// PEM file with the CA certificates to trust (instead of the system's).
    #[arg(long, env = "PODINIT_HTTP_GET_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Mode of written files (octal).
    #[arg(long, env = "PODINIT_HTTP_GET_MODE", value_name = "OCTAL", default_value = "0644", value_parser = podinit_core::args::parse_mode)]
    pub mode: u32,

    /// Owner of written files (needs CAP_CHOWN).
    #[arg(long, env = "PODINIT_HTTP_GET_UID", value_name = "UID")]
    pub uid: Option<u32>,

    /// Group of written files.
    #[arg(long, env = "PODINIT_HTTP_GET_GID", value_name = "GID")]
    pub gid: Option<u32>,

    /// Ranged GETs in flight, when the server takes ranges.
    #[arg(long, env = "PODINIT_HTTP_GET_PARALLEL", value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,

    /// Size of one ranged GET; a smaller file is one GET.
    #[arg(long, env = "PODINIT_HTTP_GET_PART_SIZE", value_name = "SIZE", default_value = "16MiB", value_parser = podinit_transfer::parse_part_size)]
    pub part_size: u64,

    /// Give up on (and retry) a response that sends nothing for this long.
    #[arg(long, env = "PODINIT_HTTP_GET_STALL_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = podinit_core::args::parse_duration)]
    pub stall_timeout: Duration,

    /// Download even when DEST is current.
    #[arg(long, env = "PODINIT_HTTP_GET_FORCE", value_parser = BoolishValueParser::new())]
    pub force: bool,
}

/// What to do, settled before any request.
#[derive(Debug)]
struct Plan {
    url: Url,
    /// The URL's last path segment: the default file name, and the name looked up in a
    /// checksum file.
    name: String,
    target: Target,
    want: Option<Want>,
    checksum_url: Option<Url>,
    credentials: Vec<(String, String)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// The file as served, or decompressed with `Some(codec)`.
    File(PathBuf, Option<Codec>),
    Extract {
        dir: PathBuf,
        format: Format,
    },
}

fn parse_url(flag: &str, text: &str) -> Result<Url, Error> {
    let url = Url::parse(text).map_err(|e| Error::usage(format!("{flag} '{}': {e}", podinit_core::redact::url_text(text))))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Error::usage(format!("{flag} {} is not an http(s) URL", podinit_core::redact::url(&url))));
    }
    Ok(url)
}

fn plan(args: &Args) -> Result<Plan, Error> {
    let url = parse_url("URL", &args.url)?;
    let name = url.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default();
    let name = percent_decode(name);
    let want = match (&args.sha256, &args.sha512) {
        (Some(hex), _) => Some(
            Want::from_hex(hex)
                .filter(|w| matches!(w, Want::Sha256(_)))
                .ok_or_else(|| Error::usage(format!("--sha256 '{hex}' is not a SHA-256 digest (64 hex digits)")))?,
        ),
        (_, Some(hex)) => Some(
            Want::from_hex(hex)
                .filter(|w| matches!(w, Want::Sha512(_)))
                .ok_or_else(|| Error::usage(format!("--sha512 '{hex}' is not a SHA-512 digest (128 hex digits)")))?,
        ),
        _ => None,
    };
    let checksum_url = args.checksum_url.as_deref().map(|u| parse_url("--checksum-url", u)).transpose()?;
    let dest_is_dir = args.dest.is_dir();
    let target = if args.extract {
        let format = args.format.resolve(&name).map_err(Error::usage)?;
        if args.dest.exists() && !dest_is_dir {
            return Err(Error::usage(format!("DEST {} is a file; --extract unpacks into a directory", args.dest.display())));
        }
        Target::Extract { dir: args.dest.clone(), format }
    } else {
        let (codec, stem) = if args.decompress {
            let (codec, stem) = Codec::of(&name).map_err(Error::usage)?;
            (Some(codec), stem)
        } else {
            (None, name.as_str())
        };
        if args.dest.as_os_str().to_string_lossy().ends_with('/') {
            if stem.is_empty() || stem.starts_with('.') || stem.contains('/') {
                return Err(Error::usage(format!("the URL names no file to write into {}", args.dest.display()))
                    .with_hint("name the file: DEST /dir/NAME"));
            }
            Target::File(args.dest.join(stem), codec)
        } else if dest_is_dir {
            return Err(Error::usage(format!("DEST {} is a directory, but a file goes into a file", args.dest.display()))
                .with_hint(format!("write '{}/' to download into it, or name the file", args.dest.display())));
        } else {
            Target::File(args.dest.clone(), codec)
        }
    };
    let mut credentials = Vec::new();
    if let Some(path) = &args.bearer_token_file {
        let token = podinit_core::fs::read_secret_file("--bearer-token-file", path)?;
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::usage(format!("--bearer-token-file {} is empty", path.display())));
        }
        credentials.push(("Authorization".to_owned(), format!("Bearer {token}")));
    }
    if let Some(path) = &args.header_file {
        let text = podinit_core::fs::read_secret_file("--header-file", path)?;
        credentials.extend(parse_header_file(&text).map_err(|e| Error::usage(format!("--header-file {}: {e}", path.display())))?);
    }
    Ok(Plan { url, name, target, want, checksum_url, credentials })
}

/// `Name: value` lines (blank lines and `#` comments skipped). Errors name the line, never
/// the value.
fn parse_header_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("line {} is not 'Name: value'", n + 1));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b)) {
            return Err(format!("line {}: '{name}' is not a header name", n + 1));
        }
        out.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `podinit http-get` to completion.
pub async fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let plan = plan(&args)?;
    let http = Http::new(&client::Settings {
        url: plan.url.clone(),
        credentials: plan.credentials.clone(),
        ca_file: args.ca_file.clone(),
        connect_timeout: Duration::from_secs(10),
    })?;
    let want = match (&plan.want, &plan.checksum_url) {
        (Some(want), _) => Some(want.clone()),
        (None, Some(sums)) => Some(checksum_from(ctx, &http, sums, &plan.name).await?),
        (None, None) => None,
    };
    let get = Get {
        ctx,
        http: &http,
        shown: podinit_core::redact::url(&plan.url),
        want,
        options: podinit_transfer::Options {
            concurrency: usize::from(args.parallel),
            part_size: args.part_size,
            file: FileOptions { mode: args.mode, uid: args.uid, gid: args.gid },
            stall: args.stall_timeout,
        },
        force: args.force,
        limits: args.extract_limits,
    };
    match plan.target {
        Target::File(dest, codec) => get.file(&dest, codec).await,
        Target::Extract { dir, format } => get.extract(&dir, format).await,
    }
}

/// The expected digest from the line for `name` of the checksum file at `sums`.
async fn checksum_from(ctx: &Context, http: &Http, sums: &Url, name: &str) -> Result<Want, Error> {
    let shown = podinit_core::redact::url(sums);
    let what = format!("GET {shown}");
    let body = retry::retry(ctx, &what, metadata_backoff(), client::classify, |_| http.get_small(sums, 1 << 20))
        .await
        .map_err(|e| client::explain(e).context(format!("reading the checksum file {shown}")))?;
    let text = String::from_utf8_lossy(&body);
    checksum::pick(&text, name).map_err(|e| {
        Error::usage(format!("--checksum-url {shown}: {e}")).with_hint("the file must have a 'HEX  NAME' line for the URL's file name")
    })
}

/// For requests without a long body: an answer is due within 30 s.
fn metadata_backoff() -> Backoff {
    Backoff { attempt_timeout: Some(Duration::from_secs(30)), ..podinit_transfer::download::backoff() }
}

/// What the last download left beside DEST (or inside an extracted set), so a rerun costs one
/// conditional request, or none when a checksum is given.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Saved {
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    /// `sha256:HEX` or `sha512:HEX`, when a checksum was given and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    /// The file as it was left (one file), or [`podinit_transfer::unpack::fingerprint`] of
    /// the tree (an extraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<Record>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
}

fn digest_text(want: &Want) -> String {
    match want {
        Want::Sha256(h) => format!("sha256:{h}"),
        Want::Sha512(h) => format!("sha512:{h}"),
    }
}

impl Saved {
    /// The conditional headers of a request for the version this record holds.
    fn conditions(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(v) = self.etag.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
            headers.insert(header::IF_NONE_MATCH, v);
        }
        if let Some(v) = self.last_modified.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
            headers.insert(header::IF_MODIFIED_SINCE, v);
        }
        headers
    }
}

/// What the first GET said.
struct Probe {
    response: Option<reqwest::Response>,
    /// Where the URL led.
    url: Url,
    size: Option<u64>,
    ranges: bool,
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Probe {
    /// What a range must match: a strong ETag, else Last-Modified.
    fn validator(&self) -> Option<String> {
        self.etag.clone().filter(|e| !e.starts_with("W/")).or_else(|| self.last_modified.clone())
    }

    fn modified(&self) -> Option<SystemTime> {
        self.last_modified.as_deref().and_then(|t| httpdate::parse_http_date(t).ok())
    }
}

/// What a download did.
struct Downloaded {
    fetched: u64,
    resumed: u64,
    verified: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// What every step of one run needs.
#[derive(Clone)]
struct Get<'a> {
    ctx: &'a Context,
    http: &'a Http,
    /// The URL as shown (redacted).
    shown: String,
    want: Option<Want>,
    options: podinit_transfer::Options,
    force: bool,
    /// What `--extract` may unpack.
    limits: podinit_transfer::unpack::Limits,
}

impl Get<'_> {
    /// One file to `dest`.
    async fn file(&self, dest: &Path, codec: Option<Codec>) -> Result<(), Error> {
        let started = Instant::now();
        let saved_path = hidden_sibling(dest, ".podinit-http");
        let saved = load_saved(&saved_path)
            .filter(|s| s.source == self.shown && s.file.as_ref().is_some_and(|r| r.is_current(dest, &r.etag, r.size)));
        if !self.force
            && let (Some(want), Some(saved)) = (&self.want, &saved)
            && saved.digest.as_deref() == Some(digest_text(want).as_str())
        {
            Partial::discard(dest);
            tracing::info!("{} is current (recorded {} matches): nothing to download", dest.display(), want.name());
            return Ok(());
        }
        // Without a checksum, the server says whether the recorded version is current.
        let conditions = match (&saved, self.force || self.want.is_some()) {
            (Some(saved), false) => saved.conditions(),
            _ => HeaderMap::new(),
        };
        let Some(probe) = self.probe(&conditions).await? else {
            Partial::discard(dest);
            tracing::info!("{} is current (the server answered 304 Not Modified): nothing to download", dest.display());
            return Ok(());
        };
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_dir(dir)?;
        }
        let progress = self.ctx.progress(self.shown.clone(), probe.size, Unit::Bytes);
        // Compressed: fetched (resumably, verified) beside DEST, then decompressed into it.
        let fetch_to = if codec.is_some() { hidden_sibling(dest, ".podinit-compressed") } else { dest.to_owned() };
        let done = self.download(probe, &fetch_to, &progress).await?;
        drop(progress);
        if let Some(codec) = codec {
            self.decompress(codec, &fetch_to, dest).await?;
        }
        let saved = Saved {
            source: self.shown.clone(),
            file: Some(Record::of(dest, done.etag.as_deref().or(done.last_modified.as_deref()).unwrap_or_default(), None, None)?),
            etag: done.etag.clone(),
            last_modified: done.last_modified.clone(),
            digest: self.want.as_ref().map(digest_text),
            fingerprint: None,
        };
        save(&saved_path, &saved)?;
        let resumed = if done.resumed > 0 { format!("; {} resumed from an earlier run", bytes(done.resumed)) } else { String::new() };
        summary(started, done.fetched, &format!("{} → {}", self.shown, dest.display()), &format!("verified: {}{resumed}", done.verified));
        Ok(())
    }

    /// `from` (verified) decompressed into `dest`, which appears whole or not at all; `from`
    /// is removed either way.
    async fn decompress(&self, codec: Codec, from: &Path, dest: &Path) -> Result<u64, Error> {
        let file = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
        let out = AtomicFile::create(dest, self.options.file)?;
        let max = self.limits.bytes_for(out.file());
        let stop = self.ctx.stop_check();
        let result = tokio::task::spawn_blocking(move || {
            let n = podinit_transfer::archive::decompress(codec, file, out.file(), max, &stop)?;
            out.commit()?;
            anyhow::Ok(n)
        })
        .await
        .map_err(|e| anyhow::anyhow!("the decompressor stopped: {e}"))?;
        let _ = std::fs::remove_file(from);
        result.map_err(|e| {
            self.ctx.check_shutdown().err().unwrap_or_else(|| {
                Error::new(Kind::Failed, e.context(format!("decompressing {}", self.shown)))
                    .with_hint("nothing was written at DEST; check the file on the server, or raise --extract-max-size")
            })
        })
    }

    /// The archive unpacked into `dir` as a new version of a set.
    async fn extract(&self, dir: &Path, format: Format) -> Result<(), Error> {
        let started = Instant::now();
        // The lock makes replicas sharing a volume extract once; the others find it current.
        let set = DataSet::open(self.ctx, dir, 0o755).await?;
        let saved = current_manifest(&set).filter(|(s, tree)| s.source == self.shown && s.fingerprint.as_deref() == Some(tree.as_str()));
        let saved = saved.map(|(s, _)| s);
        if !self.force
            && let (Some(want), Some(saved)) = (&self.want, &saved)
            && saved.digest.as_deref() == Some(digest_text(want).as_str())
        {
            set.ensure_visible().map_err(|e| podinit_core::fs::explain_write(e, dir))?;
            tracing::info!("{} holds {} (recorded {} matches), extracted: nothing to download", dir.display(), self.shown, want.name());
            return Ok(());
        }
        let conditions = match (&saved, self.force || self.want.is_some()) {
            (Some(saved), false) => saved.conditions(),
            _ => HeaderMap::new(),
        };
        let Some(probe) = self.probe(&conditions).await? else {
            set.ensure_visible().map_err(|e| podinit_core::fs::explain_write(e, dir))?;
            tracing::info!("{} holds {} (the server answered 304 Not Modified): nothing to download", dir.display(), self.shown);
            return Ok(());
        };
        // The archive is downloaded (resumably) into the set's directory, under a `..` name
        // the layout owns, then unpacked from there: zip needs the whole file.
        let archive = dir.join("..podinit-archive");
        let progress = self.ctx.progress(self.shown.clone(), probe.size, Unit::Bytes);
        let archive_options = podinit_transfer::Options { file: FileOptions { mode: 0o600, uid: None, gid: None }, ..self.options };
        let done = Get { options: archive_options, ..self.clone() }.download(probe, &archive, &progress).await?;
        drop(progress);
        let staged = set.stage(0o755, None, None).map_err(|e| podinit_core::fs::explain_write(e, dir))?;
        let root = staged.dir().try_clone().with_context(|| format!("opening {}", staged.dir().path().display()))?.shown_as(dir);
        let file = std::fs::File::open(&archive).with_context(|| format!("opening {}", archive.display()))?;
        let shown = self.shown.clone();
        let (limits, stop) = (self.limits, self.ctx.stop_check());
        let (entries, root) = tokio::task::spawn_blocking(move || {
            let entries = podinit_transfer::archive::unpack_file(file, format, &root, limits, stop)?;
            anyhow::Ok((entries, root))
        })
        .await
        .map_err(|e| anyhow::anyhow!("the unpacker stopped: {e}"))?
        .map_err(|e| {
            let _ = std::fs::remove_file(&archive);
            // Stopped by the deadline or a signal: exit 124 or 143, as any wait.
            self.ctx
                .check_shutdown()
                .err()
                .unwrap_or_else(|| podinit_core::fs::explain_write(e.context(format!("extracting {shown}")), dir))
        })?;
        let saved = Saved {
            source: self.shown.clone(),
            etag: done.etag.clone(),
            last_modified: done.last_modified.clone(),
            digest: self.want.as_ref().map(digest_text),
            file: None,
            fingerprint: Some(podinit_transfer::unpack::fingerprint(&root)?),
        };
        let write_manifest = || -> anyhow::Result<()> {
            let mut file = root.create_file(OsStr::new(MANIFEST))?;
            serde_json::to_writer_pretty(&mut file, &saved).context("writing the manifest")?;
            Ok(())
        };
        write_manifest().map_err(|e| podinit_core::fs::explain_write(e, dir))?;
        staged.commit().map_err(|e| podinit_core::fs::explain_write(e, dir))?;
        let _ = std::fs::remove_file(&archive);
        summary(
            started,
            done.fetched,
            &format!("{} → {} ({entries} entries)", self.shown, dir.display()),
            &format!("verified: {}", done.verified),
        );
        Ok(())
    }

    /// The first GET (conditional when `conditions` are given); `None` for 304 Not Modified.
    async fn probe(&self, conditions: &HeaderMap) -> Result<Option<Probe>, Error> {
        let what = format!("GET {}", self.shown);
        let named = self.http.named().clone();
        let response = retry::retry(self.ctx, &what, metadata_backoff(), client::classify, |_| async {
            let (response, url) = self.http.get(&named, conditions).await?;
            let status = response.status().as_u16();
            if status == 304 || (200..300).contains(&status) {
                return Ok((response, url));
            }
            let err = client::status_error(&response);
            if let CallError::Status { retry_after: Some(wait), .. } = &err
                && matches!(status, 429 | 503)
            {
                // The server says when to come back: wait that long (within the deadline).
                let wait = (*wait).min(Duration::from_secs(60)).min(self.ctx.remaining().unwrap_or(Duration::MAX));
                tracing::info!("GET {}: the server answered {status}, asks to retry after {wait:.0?}", self.shown);
                let _ = self.ctx.sleep(wait).await;
            }
            Err(err.into())
        })
        .await
        .map_err(client::explain)?;
        let (response, url) = response;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let text = |name: header::HeaderName| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let probe = Probe {
            size: response.content_length(),
            ranges: text(header::ACCEPT_RANGES).is_some_and(|r| r.eq_ignore_ascii_case("bytes")),
            etag: text(header::ETAG),
            last_modified: text(header::LAST_MODIFIED),
            url,
            response: None,
        };
        Ok(Some(Probe { response: Some(response), ..probe }))
    }

    /// Downloads what `probe` found into `dest`: ranged when the server takes ranges and the
    /// file is larger than one part, else the probe's own body; started over (at most 3
    /// times) when the file changes underway.
    async fn download(&self, mut probe: Probe, dest: &Path, progress: &Progress) -> Result<Downloaded, Error> {
        let mut restarts = 0;
        loop {
            // Ranged when it pays (more than one part) or an earlier run left ranges of this
            // very version (whatever part size it used).
            let ranged = match (probe.ranges, probe.size, probe.validator()) {
                (true, Some(size), Some(validator))
                    if size > self.options.part_size
                        || Partial::load(dest).is_some_and(|p| p.source == self.shown && p.validator == validator && p.size == size) =>
                {
                    Some((size, validator))
                }
                _ => None,
            };
            let Some((size, validator)) = ranged else {
                Partial::discard(dest);
                return self.stream(probe, dest, progress).await;
            };
            // The body of the probe is not needed: ranges follow.
            drop(probe.response.take());
            match self.ranged(&probe, size, validator, dest, progress).await {
                Err(err) if matches!(client::call_error(&err), Some(CallError::Changed)) => {
                    if restarts == 3 {
                        return Err(err.with_hint("the file keeps changing on the server; rerun once it is complete"));
                    }
                    restarts += 1;
                    Partial::discard(dest);
                    tracing::info!("{} changed on the server during the download; starting over", self.shown);
                    match self.probe(&HeaderMap::new()).await? {
                        Some(next) => probe = next,
                        None => {
                            return Err(Error::new(Kind::Failed, anyhow::anyhow!("GET {}: 304 to an unconditional request", self.shown)));
                        }
                    }
                }
                other => return other,
            }
        }
    }

    async fn ranged(&self, probe: &Probe, size: u64, validator: String, dest: &Path, progress: &Progress) -> Result<Downloaded, Error> {
        let source = HttpSource { http: self.http, url: probe.url.clone(), validator: validator.clone(), size };
        let object = Object { source: self.shown.clone(), size, validator };
        let transfer = Transfer { ctx: self.ctx, source: &source, object: &object, options: &self.options, progress, budget: None };
        let prepared = transfer.prepare(dest, self.want.is_some())?;
        let (hasher, _, fetched) = transfer.fetch(prepared, Hasher::new(self.want.as_ref()), (), &mut ()).await?;
        match checksum::check(self.want.as_ref(), hasher.finish()) {
            Ok(verified) => {
                let (fetched_bytes, resumed) = (fetched.fetched, fetched.resumed);
                fetched.commit(&self.options, probe.modified())?;
                Ok(Downloaded {
                    fetched: fetched_bytes,
                    resumed,
                    verified,
                    etag: probe.etag.clone(),
                    last_modified: probe.last_modified.clone(),
                })
            }
            Err(mismatch) => {
                fetched.discard();
                Err(mismatch_error(&self.shown, &mismatch))
            }
        }
    }

    /// One GET streamed into a temp file beside `dest`, hashed as it arrives (the probe's
    /// response first; a new GET after a broken connection).
    async fn stream(&self, probe: Probe, dest: &Path, progress: &Progress) -> Result<Downloaded, Error> {
        let what = format!("GET {}", self.shown);
        let Probe { response, url, etag, last_modified, .. } = probe;
        let modified = last_modified.as_deref().and_then(|t| httpdate::parse_http_date(t).ok());
        let first = Mutex::new(response);
        let fetched = retry::retry(self.ctx, &what, podinit_transfer::download::backoff(), client::classify, |_| async {
            let taken = first.lock().map_err(|_| anyhow::anyhow!("a lock was poisoned"))?.take();
            let mut response = match taken {
                Some(response) => response,
                None => {
                    let (response, _) = self.http.get(&url, &HeaderMap::new()).await?;
                    if !response.status().is_success() {
                        return Err(client::status_error(&response).into());
                    }
                    response
                }
            };
            let length = response.content_length();
            let mut file = AtomicFile::create(dest, self.options.file)?;
            let mut hasher = Hasher::new(self.want.as_ref());
            let mut counted = 0u64;
            loop {
                let chunk = match tokio::time::timeout(self.options.stall, client::chunk(&mut response)).await {
                    Ok(chunk) => chunk?,
                    Err(_) => return Err(CallError::Transport(format!("no data for {:?}", self.options.stall)).into()),
                };
                let Some(chunk) = chunk else { break };
                hasher.update(&chunk);
                std::io::Write::write_all(&mut file, &chunk)
                    .map_err(|e| anyhow::anyhow!("writing {}: {}", dest.display(), podinit_core::redact::io_reason(&e)))?;
                progress.inc(chunk.len() as u64);
                counted += chunk.len() as u64;
            }
            if let Some(length) = length {
                anyhow::ensure!(counted == length, CallError::Transport(format!("the body ended after {counted} of {length} bytes")));
            }
            let verified = checksum::check(self.want.as_ref(), hasher.finish()).map_err(CallError::Mismatch)?;
            if let Some(modified) = modified {
                let _ = file.file().set_modified(modified);
            }
            tokio::task::spawn_blocking(move || file.commit())
                .await
                .map_err(|e| anyhow::anyhow!("committing {}: {e}", dest.display()))??;
            Ok((counted, verified))
        })
        .await;
        let (fetched, verified) = match fetched {
            Ok(done) => done,
            Err(err) => {
                return Err(match client::call_error(&err) {
                    Some(CallError::Mismatch(m)) => mismatch_error(&self.shown, m),
                    _ => client::explain(err),
                });
            }
        };
        Ok(Downloaded { fetched, resumed: 0, verified, etag, last_modified })
    }
}

fn mismatch_error(shown: &str, mismatch: &str) -> Error {
    Error::new(Kind::Failed, anyhow::anyhow!("{shown}: verification failed: {mismatch}"))
        .with_hint("nothing was written; check the checksum given, or whether the file on the server was replaced")
}

/// The manifest's name inside an extracted set's data directory (a `..` name: no link).
const MANIFEST: &str = "..podinit-http";
/// Its name before 2026-12-07 (a set written then is still recognised as current).
const LEGACY_MANIFEST: &str = "..podinit-http.json";

/// The manifest of the set's current version and the fingerprint of its tree now.
fn current_manifest(set: &DataSet) -> Option<(Saved, String)> {
    let current = set.current().ok()??;
    let bytes = current.read(OsStr::new(MANIFEST)).or_else(|_| current.read(OsStr::new(LEGACY_MANIFEST))).ok()?;
    let saved: Saved = serde_json::from_slice(&bytes).ok()?;
    let tree = podinit_transfer::unpack::fingerprint(&current).ok()?;
    Some((saved, tree))
}

fn load_saved(path: &Path) -> Option<Saved> {
    serde_json::from_slice(&podinit_core::fs::read_state(path)?).ok()
}

fn save(path: &Path, saved: &Saved) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(saved).context("encoding the record")?;
    write_atomic(path, &bytes, FileOptions { mode: 0o644, uid: None, gid: None })?;
    podinit_core::fs::remove_legacy_state(path);
    Ok(())
}

fn ensure_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(Kind::Failed, anyhow::anyhow!("creating {}: {}", dir.display(), podinit_core::redact::io_reason(&e))))
}

/// The final line: what, how much, how fast, what was checked.
fn summary(started: Instant, fetched: u64, what: &str, tail: &str) {
    let secs = started.elapsed().as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let rate = fetched as f64 / secs.max(0.001) / 1_048_576.0;
    tracing::info!(
        bytes = fetched,
        elapsed_ms = (secs * 1000.0) as u64,
        "{what}: {} in {secs:.2}s ({rate:.1} MiB/s), {tail}",
        bytes(fetched)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn planned(argv: &[&str]) -> Result<Plan, Error> {
        let cli = Cli::try_parse_from(std::iter::once("http-get").chain(argv.iter().copied())).map_err(|e| Error::usage(e.to_string()))?;
        plan(&cli.args)
    }

    #[test]
    fn destinations() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let p = planned(&["https://h/r/v1/tool%20x.tar.gz", &format!("{d}/")]).unwrap();
        assert_eq!(p.target, Target::File(dir.path().join("tool x.tar.gz"), None));
        assert_eq!(p.name, "tool x.tar.gz");
        assert_eq!(planned(&["https://h/a.bin", &d]).unwrap_err().kind(), Kind::Usage, "a directory without '/'");
        let p = planned(&["https://h/a.zip", &d, "--extract"]).unwrap();
        assert_eq!(p.target, Target::Extract { dir: dir.path().to_owned(), format: Format::Zip });
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for argv in [
            &["ftp://h/a", "/x"][..],
            &["not a url", "/x"],
            &["https://h/a", "/x", "--sha256", "abc"],
            &["https://h/a", "/x", "--sha512", &"a".repeat(64)],
            &["https://h/a", "/x", "--sha256", &"a".repeat(64), "--checksum-url", "https://h/SUMS"],
            &["https://h/a.bin", "/x", "--extract"],
            &["https://h/a.bin", "/x", "--checksum-url", "h/SUMS"],
            &["https://h/a.bin", "/x", "--bearer-token-file", "/nonexistent/token"],
        ] {
            let err = planned(argv).err().unwrap_or_else(|| panic!("{argv:?} must be refused"));
            assert_eq!(err.kind(), Kind::Usage, "{argv:?}");
        }
    }

    #[test]
    fn header_files() {
        let h = parse_header_file("# comment\nX-Api-Key: s3cr3t\n\nPRIVATE-TOKEN:  abc:def \n").unwrap();
        assert_eq!(h, [("X-Api-Key".to_owned(), "s3cr3t".to_owned()), ("PRIVATE-TOKEN".to_owned(), "abc:def".to_owned())]);
        let err = parse_header_file("X-Api-Key s3cr3t\n").unwrap_err();
        assert!(err.contains("line 1") && !err.contains("s3cr3t"), "{err}");
        assert!(parse_header_file("Bad Name: v\n").is_err());
    }
}

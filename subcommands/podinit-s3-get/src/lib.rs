//! `podinit s3-get`: download an object or a prefix from S3 or an S3-compatible store into a
//! shared volume, fast, verified, atomically, and not again when the local copy is current.
//!
//! One object: HEAD; if the manifest beside the file says it holds this ETag and the file is
//! untouched, stop (one request). Else concurrent ranged GETs into a temp file beside it,
//! resumed from an earlier run's ranges when the object is unchanged, verified, renamed into
//! place ([`object`]). A prefix: one listing, the current files skipped, small objects many at a
//! time with one GET each, large ones ranged ([`prefix`]). `--extract`: the archive unpacked
//! while it streams in, published when complete ([`extract`]).
//!
//! ```yaml
//! initContainers:
//!   - name: model
//!     image: podinit
//!     args: ["s3-get", "s3://models/llm/v3/weights.safetensors", "/models/", "--timeout", "30m"]
//!     volumeMounts: [{ name: models, mountPath: /models }]
//! ```

mod client;
mod extract;
mod md5x;
mod object;
mod prefix;
mod spec;
mod state;
mod verify;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::builder::BoolishValueParser;
use podinit_core::fs::FileOptions;
use podinit_core::fs::set::DataSet;
use podinit_core::progress::{Unit, bytes};
use podinit_core::{Context, Error, Kind};

pub use crate::spec::ArchiveFormat;
use crate::spec::S3Url;
use crate::state::{Manifest, Record};
use podinit_transfer::Partial;

/// Download an object or a prefix from S3 or any S3-compatible store.
///
/// A large object is fetched with concurrent ranged GETs into a temp file beside DEST, verified
/// (the store's checksum, else its MD5 ETag; --sha256 when given) and renamed into place: DEST
/// is the old complete file or the new complete file, never a partial one. A rerun when DEST is
/// current costs one HEAD; a download interrupted by a killed pod resumes. Exit 0 when DEST is
/// current, 1 when the store refuses (missing, forbidden) or the bytes do not verify, 2 for bad
/// input, 124 when --timeout passes while the store is unreachable.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
SOURCE and DEST:
  s3://bucket/path/model.bin /models/model.bin   one object into that file
  s3://bucket/path/model.bin /models/            one object into /models/model.bin
  s3://bucket/path/ /data/                       every object under the prefix, keys as paths
  s3://bucket/geo.tar.zst /data/ --extract       unpacked into /data while it downloads

Credentials and endpoint come from the standard AWS chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_PROFILE and the shared files, web identity (IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE),
EKS Pod Identity, instance metadata; AWS_REGION, AWS_ENDPOINT_URL(_S3). A flag beats a variable.

Examples:
  podinit s3-get s3://models/llm/v3/weights.safetensors /models/
  podinit s3-get --endpoint-url http://minio.storage:9000 s3://data/train/ /data/ --include '*.parquet'
  podinit s3-get --no-sign-request --region us-east-1 s3://public-bucket/GeoLite2-City.tar.gz /geo/ --extract")]
pub struct Args {
    /// s3://BUCKET/KEY, or s3://BUCKET/PREFIX/ for everything under a prefix.
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// File or directory to write (see below); directories are created.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,

    /// S3 endpoint (MinIO, Ceph, Garage, R2, ...) [env: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL].
    #[arg(long, env = "PODINIT_S3_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Region [env: AWS_REGION; default: us-east-1].
    #[arg(long, env = "PODINIT_S3_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Path-style addressing (https://host/bucket/key) [default: on for --endpoint-url, off for AWS].
    #[arg(long, env = "PODINIT_S3_PATH_STYLE", value_parser = BoolishValueParser::new(), conflicts_with = "virtual_hosted")]
    pub path_style: bool,

    /// Virtual-hosted addressing (https://bucket.host/key), even with a custom endpoint.
    #[arg(long, env = "PODINIT_S3_VIRTUAL_HOSTED", value_parser = BoolishValueParser::new())]
    pub virtual_hosted: bool,

    /// Send unsigned requests (public buckets); no credentials are looked up.
    #[arg(long, env = "PODINIT_S3_NO_SIGN_REQUEST", value_parser = BoolishValueParser::new())]
    pub no_sign_request: bool,

    /// Prefix mode: only keys (relative to the prefix) matching this glob; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Prefix mode: leave out keys matching this glob; repeatable; beats --include.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Unpack a .tar, .tar.gz or .tar.zst object into DEST (a directory) while it downloads.
    #[arg(long, env = "PODINIT_S3_EXTRACT", value_parser = BoolishValueParser::new())]
    pub extract: bool,

    /// Archive format for --extract.
    #[arg(long, env = "PODINIT_S3_EXTRACT_FORMAT", value_enum, default_value_t = ArchiveFormat::Auto, requires = "extract")]
    pub extract_format: ArchiveFormat,

    #[command(flatten)]
    pub extract_limits: podinit_transfer::unpack::Limits,

    /// The object's expected SHA-256 (hex); a mismatch writes nothing and exits 1.
    #[arg(long, env = "PODINIT_S3_SHA256", value_name = "HEX")]
    pub sha256: Option<String>,

    /// Mode of written files (octal).
    #[arg(long, env = "PODINIT_S3_MODE", value_name = "OCTAL", default_value = "0644", value_parser = podinit_core::args::parse_mode)]
    pub mode: u32,

    /// Owner of written files (needs CAP_CHOWN).
    #[arg(long, env = "PODINIT_S3_UID", value_name = "UID")]
    pub uid: Option<u32>,

    /// Group of written files.
    #[arg(long, env = "PODINIT_S3_GID", value_name = "GID")]
    pub gid: Option<u32>,

    /// Ranged GETs in flight for one object; in a prefix, for all its large objects together.
    #[arg(long, env = "PODINIT_S3_CONCURRENCY", value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Size of one ranged GET [default: 16MiB, rounded up to whole stored parts when a
    /// multipart ETag is checked].
    #[arg(long, env = "PODINIT_S3_PART_SIZE", value_name = "SIZE", value_parser = podinit_transfer::parse_part_size)]
    pub part_size: Option<u64>,

    /// Prefix mode: small objects downloaded at once.
    #[arg(long, env = "PODINIT_S3_OBJECTS_AT_ONCE", value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub objects_at_once: u16,

    /// Give up on (and retry) a response that sends nothing for this long.
    #[arg(long, env = "PODINIT_S3_STALL_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = podinit_core::args::parse_duration)]
    pub stall_timeout: Duration,

    /// Download even when DEST is current.
    #[arg(long, env = "PODINIT_S3_FORCE", value_parser = BoolishValueParser::new())]
    pub force: bool,
}

/// What to do, settled before any request.
enum Job {
    Object { url: S3Url, dest: PathBuf },
    Prefix { url: S3Url, dir: PathBuf, filter: spec::Filter },
    Extract { url: S3Url, dir: PathBuf, format: ArchiveFormat },
}

/// Runs `podinit s3-get` to completion.
pub async fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let job = plan(&args)?;
    let s3 = client::client(&client::Settings {
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
        path_style: if args.path_style {
            Some(true)
        } else if args.virtual_hosted {
            Some(false)
        } else {
            None
        },
        no_sign_request: args.no_sign_request,
    })
    .await?;
    let opts = object::Options {
        concurrency: usize::from(args.concurrency),
        part_size: args.part_size.unwrap_or(object::DEFAULT_PART_SIZE),
        part_size_given: args.part_size.is_some(),
        file: FileOptions { mode: args.mode, uid: args.uid, gid: args.gid },
        limits: args.extract_limits,
        stall: args.stall_timeout,
        pinned_sha256: args.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
        budget: None,
    };
    match job {
        Job::Object { url, dest } => get_object(ctx, &s3, &url, &dest, &opts, args.force).await,
        Job::Prefix { url, dir, filter } => {
            prefix::get_prefix(ctx, &s3, &url, &dir, &filter, &opts, usize::from(args.objects_at_once), args.force).await
        }
        Job::Extract { url, dir, format } => get_extract(ctx, &s3, &url, &dir, format, &opts, args.force).await,
    }
}

fn plan(args: &Args) -> Result<Job, Error> {
    let url = S3Url::parse(&args.source).map_err(|e| Error::usage(format!("SOURCE {e}")))?;
    if let Some(sha) = &args.sha256
        && spec::parse_hex::<32>(sha).is_none()
    {
        return Err(Error::usage(format!("--sha256 '{sha}' is not a SHA-256 digest (64 hex digits)")));
    }
    if let Some(endpoint) = &args.endpoint_url
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        return Err(Error::usage(format!("--endpoint-url '{endpoint}' is not an http(s) URL")).with_hint("e.g. http://minio.storage:9000"));
    }
    let dest_is_dir = args.dest.is_dir();
    let dest_says_dir = args.dest.as_os_str().to_string_lossy().ends_with('/');
    if url.is_prefix() {
        if args.extract || args.sha256.is_some() {
            return Err(Error::usage(format!("{url} is a prefix; --extract and --sha256 take one object")));
        }
        if args.dest.exists() && !dest_is_dir {
            return Err(Error::usage(format!("DEST {} is a file; a prefix goes into a directory", args.dest.display())));
        }
        let filter = spec::Filter { include: args.include.clone(), exclude: args.exclude.clone() };
        return Ok(Job::Prefix { url, dir: args.dest.clone(), filter });
    }
    if !args.include.is_empty() || !args.exclude.is_empty() {
        return Err(Error::usage(format!("--include/--exclude select keys under a prefix; {url} is one object"))
            .with_hint("end SOURCE with '/' for everything under a prefix"));
    }
    if args.extract {
        let format = args.extract_format.resolve(&url.key).map_err(Error::usage)?;
        if args.dest.exists() && !dest_is_dir {
            return Err(Error::usage(format!("DEST {} is a file; --extract unpacks into a directory", args.dest.display())));
        }
        return Ok(Job::Extract { url, dir: args.dest.clone(), format });
    }
    let dest = if dest_says_dir {
        args.dest.join(url.file_name())
    } else if dest_is_dir {
        return Err(Error::usage(format!("DEST {} is a directory, but one object goes into a file", args.dest.display()))
            .with_hint(format!("write '{}/' to download into it as {}, or name the file", args.dest.display(), url.file_name())));
    } else {
        args.dest.clone()
    };
    Ok(Job::Object { url, dest })
}

fn ensure_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(Kind::Failed, anyhow::anyhow!("creating {}: {}", dir.display(), podinit_core::redact::io_reason(&e))))
}

async fn get_object(
    ctx: &Context,
    s3: &aws_sdk_s3::Client,
    url: &S3Url,
    dest: &Path,
    opts: &object::Options,
    force: bool,
) -> Result<(), Error> {
    let started = Instant::now();
    let remote = object::head(ctx, s3, url, opts.pinned_sha256.as_deref()).await?;
    let source = url.to_string();
    let manifest_path = Manifest::beside(dest);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let manifest = Manifest::load(&manifest_path, &source);
    let current = manifest.files.get(&name).is_some_and(|r| {
        r.is_current(dest, &remote.etag, remote.size) && opts.pinned_sha256.as_ref().is_none_or(|p| r.sha256.as_ref() == Some(p))
    });
    if current && !force {
        Partial::discard(dest);
        tracing::info!(etag = %remote.etag, "{} is current ({}, ETag {}): nothing to download", dest.display(), bytes(remote.size), remote.etag);
        return Ok(());
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    let progress = ctx.progress(format!("{url}"), Some(remote.size), Unit::Bytes);
    let (remote, done) = object::download_latest(ctx, s3, url, remote, dest, opts, &progress, 3).await?;
    drop(progress);
    let mut manifest = Manifest { source, ..Manifest::default() };
    manifest.files.insert(name, Record::of(dest, &remote.etag, remote.version_id.as_deref(), done.sha256.clone())?);
    manifest.save(&manifest_path)?;
    let resumed = if done.resumed > 0 { format!("; {} resumed from an earlier run", bytes(done.resumed)) } else { String::new() };
    summary(started, done.fetched, &format!("{url} → {}", dest.display()), &format!("verified: {}{resumed}", done.verified));
    Ok(())
}

async fn get_extract(
    ctx: &Context,
    s3: &aws_sdk_s3::Client,
    url: &S3Url,
    dir: &Path,
    format: ArchiveFormat,
    opts: &object::Options,
    force: bool,
) -> Result<(), Error> {
    let started = Instant::now();
    let mut remote = object::head(ctx, s3, url, opts.pinned_sha256.as_deref()).await?;
    // The lock makes replicas sharing a volume extract once; the others find it current.
    let set = DataSet::open(ctx, dir, 0o755).await?;
    if !force && extract::is_current(&set, url, &remote.etag) {
        set.ensure_visible().map_err(|e| podinit_core::fs::explain_write(e, dir))?;
        tracing::info!("{} holds {url} (ETag {}), extracted: nothing to download", dir.display(), remote.etag);
        return Ok(());
    }
    // A multipart archive is checked against its ETag part by part as it streams.
    object::learn_part_size(ctx, s3, url, &mut remote).await;
    let progress = ctx.progress(format!("{url}"), Some(remote.size), Unit::Bytes);
    let extracted = extract::extract(ctx, s3, url, &remote, format, &set, opts, &progress).await?;
    drop(progress);
    summary(
        started,
        remote.size,
        &format!("{url} → {} ({} entries)", dir.display(), extracted.entries),
        &format!("verified: {}", extracted.verified),
    );
    Ok(())
}

/// The final line: what, how much, how fast, what was checked.
pub(crate) fn summary(started: Instant, fetched: u64, what: &str, tail: &str) {
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

    fn job(argv: &[&str]) -> Result<Job, Error> {
        let cli = Cli::try_parse_from(std::iter::once("s3-get").chain(argv.iter().copied())).unwrap();
        plan(&cli.args)
    }

    #[test]
    fn destinations() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        match job(&["s3://b/m/model.bin", &format!("{d}/")]).unwrap() {
            Job::Object { dest, .. } => assert_eq!(dest, dir.path().join("model.bin")),
            _ => panic!("an object"),
        }
        let err = job(&["s3://b/m/model.bin", &d]).err().unwrap();
        assert_eq!(err.kind(), Kind::Usage);
        assert!(err.message().contains("is a directory"), "{}", err.message());
        assert!(matches!(job(&["s3://b/m/", &d]).unwrap(), Job::Prefix { .. }));
        assert!(matches!(job(&["s3://b/a.tar.zst", &d, "--extract"]).unwrap(), Job::Extract { format: ArchiveFormat::TarZst, .. }));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for argv in [
            &["b/key", "/x"][..],
            &["s3://b/key", "/x", "--sha256", "abc"],
            &["s3://b/p/", "/x", "--extract"],
            &["s3://b/key", "/x", "--include", "*.bin"],
            &["s3://b/key.zip", "/x", "--extract"],
            &["s3://b/key", "/x", "--endpoint-url", "minio:9000"],
        ] {
            let err = job(argv).err().unwrap_or_else(|| panic!("{argv:?} must be refused"));
            assert_eq!(err.kind(), Kind::Usage, "{argv:?}");
        }
    }
}

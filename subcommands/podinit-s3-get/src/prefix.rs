//! Every object under a prefix into a directory.
//!
//! One listing (ListObjectsV2, each page retried), `--include/--exclude`, every key mapped to a
//! path inside the directory (a key that would leave it refuses the whole run before anything
//! is written). Files the manifest says are current are skipped, so a rerun costs the listing
//! alone. Objects of at least two parts take the ranged, resumable path, biggest first and
//! several at once, their ranges drawing on one budget of `--concurrency` ranges in flight:
//! when one object has only its last ranges left, the next one's fill the budget, so no shard
//! downloads alone at the end. Small objects go `--objects-at-once` at a time beside them, one
//! GET each. On the first failure the others stop at once (the next run resumes the ranges
//! their checkpoints recorded: taken as ranges complete, at most every 250 ms); the manifest is
//! saved either way, so the next run skips what is done.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use podinit_core::progress::Unit;
use podinit_core::retry::{self, Backoff};
use podinit_core::{Context, Error, Kind};

use crate::client::{self, CallError};
use crate::object::{self, Options};
use crate::spec::{self, Filter, S3Url};
use crate::state::{Manifest, Record};

/// Large objects downloading at once: enough that one object's last ranges never leave the
/// budget idle, few enough that a failure loses little.
const LARGE_AT_ONCE: usize = 4;

/// An object in place.
struct Done {
    listed: Listed,
    etag: String,
    version: Option<String>,
    verified: String,
    sha256: Option<String>,
    large: bool,
}

/// One listed object and where it goes.
struct Listed {
    key: String,
    size: u64,
    etag: String,
    relative: String,
    path: PathBuf,
}

#[expect(clippy::too_many_arguments, reason = "one call site")]
pub(crate) async fn get_prefix(
    ctx: &Context,
    s3: &Client,
    url: &S3Url,
    dir: &Path,
    filter: &Filter,
    opts: &Options,
    at_once: usize,
    force: bool,
) -> Result<(), Error> {
    let started = Instant::now();
    let listed = list(ctx, s3, url).await?;
    let total_listed = listed.len();
    super::ensure_dir(dir)?;
    let mut objects = Vec::new();
    for (key, size, etag) in listed {
        // Filters see the key as the store has it (relative to the prefix), so an escaping key
        // can be left out with --exclude.
        if !filter.takes(key.strip_prefix(url.key.as_str()).unwrap_or(&key)) {
            continue;
        }
        let relative = spec::relative_path(&url.key, &key).map_err(|reason| {
            Error::new(Kind::Failed, anyhow::anyhow!("{url}: {reason}; refused, nothing was downloaded"))
                .with_hint("leave the key out with --exclude, or rename it on the store")
        })?;
        let relative_text = relative.to_string_lossy().into_owned();
        let path = podinit_core::fs::resolve_inside(dir, &relative)
            .map_err(|e| Error::new(Kind::Failed, e.context(format!("{url}: key '{key}'"))).with_hint("nothing was downloaded"))?;
        objects.push(Listed { key, size, etag, relative: relative_text, path });
    }
    let selected = objects.len();
    let source = url.to_string();
    let manifest_path = Manifest::inside(dir);
    let mut manifest = Manifest::load(&manifest_path, &source);
    let todo: Vec<Listed> = objects
        .into_iter()
        .filter(|o| force || !manifest.files.get(&o.relative).is_some_and(|r| r.is_current(&o.path, &o.etag, o.size)))
        .collect();
    if todo.is_empty() {
        tracing::info!("{url} → {}: {total_listed} object(s) listed, every selected one current: nothing to download", dir.display());
        return Ok(());
    }
    let total: u64 = todo.iter().map(|o| o.size).sum();
    let count = todo.len();
    let progress = ctx.progress(format!("{url}"), Some(total), Unit::Bytes);
    let (mut large, small): (Vec<Listed>, Vec<Listed>) = todo.into_iter().partition(|o| o.size >= 2 * opts.part_size);
    large.sort_by_key(|o| std::cmp::Reverse(o.size));
    let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let ranged_opts = Options { budget: Some(budget), ..opts.clone() };
    let mut checks = Checks::default();
    let mut outcome: Result<(), Error> = Ok(());

    let (mut large, mut small) = (large.into_iter(), small.into_iter());
    let (mut large_running, mut small_running) = (0usize, 0usize);
    let mut running = FuturesUnordered::new();
    loop {
        // Large objects first, LARGE_AT_ONCE of them (their ranges limited by the budget), then
        // small ones beside them.
        while large_running < LARGE_AT_ONCE
            && let Some(o) = large.next()
        {
            large_running += 1;
            let (progress, ranged_opts) = (&progress, &ranged_opts);
            running.push(
                async move {
                    let object_url = S3Url { bucket: url.bucket.clone(), key: o.key.clone() };
                    if let Some(parent) = o.path.parent() {
                        super::ensure_dir(parent)?;
                    }
                    let remote = object::head(ctx, s3, &object_url, None).await?;
                    // A large object of a prefix starts over once if it changes underway.
                    let (remote, done) = object::download_latest(ctx, s3, &object_url, remote, &o.path, ranged_opts, progress, 1).await?;
                    Ok(Done {
                        listed: o,
                        etag: remote.etag,
                        version: remote.version_id,
                        verified: done.verified,
                        sha256: done.sha256,
                        large: true,
                    })
                }
                .boxed_local(),
            );
        }
        while small_running < at_once.max(1)
            && let Some(o) = small.next()
        {
            small_running += 1;
            let progress = &progress;
            running.push(
                async move {
                    let object_url = S3Url { bucket: url.bucket.clone(), key: o.key.clone() };
                    if let Some(parent) = o.path.parent() {
                        super::ensure_dir(parent)?;
                    }
                    let (etag, version, verified) =
                        object::fetch_small(ctx, s3, &object_url, &o.path, opts, (&o.etag, o.size), progress).await?;
                    Ok(Done { listed: o, etag, version, verified, sha256: None, large: false })
                }
                .boxed_local(),
            );
        }
        let Some(result): Option<Result<Done, Error>> = running.next().await else { break };
        match result {
            Ok(done) => {
                if done.large {
                    large_running -= 1;
                } else {
                    small_running -= 1;
                }
                checks.add(&done.verified);
                let record = Record::of(&done.listed.path, &done.etag, done.version.as_deref(), done.sha256)?;
                manifest.files.insert(done.listed.relative, record);
            }
            Err(err) => {
                outcome = Err(err);
                break;
            }
        }
    }
    drop(running);
    drop(progress);
    manifest.save(&manifest_path)?;
    outcome?;
    super::summary(
        started,
        total,
        &format!("{url} → {}: {count} object(s) downloaded, {} already current", dir.display(), selected - count),
        &format!("verified: {}", checks.text()),
    );
    Ok(())
}

/// The listing: (key, size, ETag) of every object under the prefix, directory markers left out.
async fn list(ctx: &Context, s3: &Client, url: &S3Url) -> Result<Vec<(String, u64, String)>, Error> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let what = format!("LIST {url}");
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            attempt_timeout: Some(Duration::from_secs(60)),
            growth: retry::Growth::Doubling,
        };
        let page = retry::retry(ctx, &what, backoff, client::classify, |_| {
            let token = token.clone();
            async move {
                s3.list_objects_v2()
                    .bucket(&url.bucket)
                    .prefix(&url.key)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(|e| anyhow::Error::new(CallError::from(e)))
            }
        })
        .await
        .map_err(|e| client::explain(e, url))?;
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            let size = u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
            if key.ends_with('/') && size == 0 {
                continue;
            }
            out.push((key.to_owned(), size, object.e_tag().unwrap_or_default().to_owned()));
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    tracing::debug!("{url}: {} object(s) listed", out.len());
    Ok(out)
}

/// How many files were verified which way, for the summary.
#[derive(Default)]
struct Checks(std::collections::BTreeMap<String, usize>);

impl Checks {
    fn add(&mut self, verified: &str) {
        *self.0.entry(verified.to_owned()).or_default() += 1;
    }

    fn text(&self) -> String {
        self.0.iter().map(|(how, n)| format!("{n} by {how}")).collect::<Vec<_>>().join(", ")
    }
}

//! Every object under a prefix into a directory.
//!
//! One listing (ListObjectsV2, each page retried), `--include/--exclude`, every key mapped to a
//! path inside the directory (a key that would leave it refuses the whole run before anything
//! is written). Files the manifest says are current are skipped, so a rerun costs the listing
//! alone. Small objects go many at a time, one GET each; objects of at least two parts take the
//! ranged, resumable path one after another. The manifest is saved even when a later object
//! fails, so the next run skips what is done.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use podinit_core::progress::Unit;
use podinit_core::retry::{self, Backoff};
use podinit_core::{Context, Error, Kind};

use crate::client::{self, CallError};
use crate::object::{self, Options};
use crate::spec::{self, Filter, S3Url};
use crate::state::{Manifest, Record};

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
    let (large, small): (Vec<Listed>, Vec<Listed>) = todo.into_iter().partition(|o| o.size >= 2 * opts.part_size);
    let mut checks = Checks::default();
    let mut outcome: Result<(), Error> = Ok(());

    let mut running = FuturesUnordered::new();
    let mut small = small.into_iter();
    loop {
        while outcome.is_ok() && running.len() < at_once.max(1) {
            let Some(o) = small.next() else { break };
            let object_url = S3Url { bucket: url.bucket.clone(), key: o.key.clone() };
            let progress = &progress;
            running.push(async move {
                if let Some(parent) = o.path.parent() {
                    super::ensure_dir(parent)?;
                }
                let result = object::fetch_small(ctx, s3, &object_url, &o.path, opts, (&o.etag, o.size), progress).await;
                result.map(|(etag, version, verified)| (o, etag, version, verified))
            });
        }
        let Some(result) = running.next().await else { break };
        match result {
            Ok((o, etag, version, verified)) => {
                checks.add(&verified);
                manifest.files.insert(o.relative.clone(), Record::of(&o.path, &etag, version.as_deref(), None)?);
            }
            Err(err) => {
                if outcome.is_ok() {
                    outcome = Err(err);
                }
            }
        }
    }
    drop(running);
    if outcome.is_ok() {
        for o in large {
            let object_url = S3Url { bucket: url.bucket.clone(), key: o.key.clone() };
            if let Some(parent) = o.path.parent() {
                super::ensure_dir(parent)?;
            }
            let result = match object::head(ctx, s3, &object_url, None).await {
                // A large object of a prefix starts over once if it changes underway.
                Ok(remote) => object::download_latest(ctx, s3, &object_url, remote, &o.path, opts, &progress, 1).await,
                Err(err) => Err(err),
            };
            match result {
                Ok((remote, done)) => {
                    checks.add(&done.verified);
                    manifest
                        .files
                        .insert(o.relative.clone(), Record::of(&o.path, &remote.etag, remote.version_id.as_deref(), done.sha256)?);
                }
                Err(err) => {
                    outcome = Err(err);
                    break;
                }
            }
        }
    }
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

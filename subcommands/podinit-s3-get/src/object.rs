//! One object to one file: a HEAD, then podinit-transfer's engine (concurrent ranged GETs
//! into `.NAME.podinit-partial`, verified as they arrive, resumable, renamed into place) with
//! S3 as its [`S3Source`]: every range GET carries `If-Match` on the ETag (and the version id),
//! so an object replaced mid-download is noticed (the caller starts over). What the bytes must
//! hash to is S3's: a CRC of the store and the MD5s of a multipart upload's parts are computed
//! per range as the bytes arrive ([`verify::Ranged`]; ranges are whole parts unless
//! `--part-size` says otherwise), SHA-256 and a single-part MD5 in order ([`Hasher`]); parts
//! that ranges do not follow (a resumed download of another range size, `--part-size`) are
//! read back as each is on disk ([`PartHashes`]).
//!
//! Small objects (prefix mode) take [`fetch_small`]: one GET, hashed as it streams into an
//! [`AtomicFile`].

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::{ChecksumMode, ServerSideEncryption};
use podinit_core::fs::{AtomicFile, FileOptions};
use podinit_core::progress::Progress;
use podinit_core::retry::{self, Backoff, Verdict};
use podinit_core::{Context, Error, Kind};
use podinit_transfer::{Digest, Object, Partial, RangeObserver, Source, Transfer};

use crate::client::{self, CallError};
use crate::spec::{self, Etag, S3Url};
use crate::verify::{self, Expected, Hasher, Multipart};

/// What a HEAD or a whole-object GET response says about the object: size, ETag, version,
/// and what the bytes must hash to (the two outputs are different types with the same
/// accessors).
macro_rules! remote {
    ($out:expr, $pinned:expr) => {{
        let etag = $out.e_tag().unwrap_or_default().to_owned();
        Remote {
            size: u64::try_from($out.content_length().unwrap_or(0)).unwrap_or(0),
            version_id: $out.version_id().filter(|v| *v != "null").map(str::to_owned),
            last_modified: $out.last_modified().and_then(|t| SystemTime::try_from(*t).ok()),
            expected: Expected {
                etag: Some(Etag::parse(&etag)),
                etag_not_md5: matches!(
                    $out.server_side_encryption(),
                    Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
                ) || $out.sse_customer_algorithm().is_some(),
                part_size: None,
                checksum_type: match $out.checksum_type() {
                    Some(aws_sdk_s3::types::ChecksumType::FullObject) => Some(verify::ChecksumType::FullObject),
                    Some(aws_sdk_s3::types::ChecksumType::Composite) => Some(verify::ChecksumType::Composite),
                    _ => None,
                },
                crc64nvme: $out.checksum_crc64_nvme().map(str::to_owned),
                crc32c: $out.checksum_crc32_c().map(str::to_owned),
                crc32: $out.checksum_crc32().map(str::to_owned),
                sha256: $out.checksum_sha256().map(str::to_owned),
                pinned_sha256: $pinned,
            },
            etag,
        }
    }};
}

/// What the store says about an object.
#[derive(Clone, Debug)]
pub(crate) struct Remote {
    pub(crate) size: u64,
    pub(crate) etag: String,
    pub(crate) version_id: Option<String>,
    pub(crate) last_modified: Option<SystemTime>,
    pub(crate) expected: Expected,
}

/// How to download.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) concurrency: usize,
    /// `--part-size`, or [`DEFAULT_PART_SIZE`].
    pub(crate) part_size: u64,
    /// `--part-size` was given: ranges are that size, whatever the stored parts.
    pub(crate) part_size_given: bool,
    pub(crate) file: FileOptions,
    /// A body that sends nothing for this long is given up (and retried).
    pub(crate) stall: Duration,
    pub(crate) pinned_sha256: Option<String>,
    /// What `--extract` may unpack.
    pub(crate) limits: podinit_transfer::unpack::Limits,
    /// Ranges in flight across the objects of a prefix (`--concurrency` permits).
    pub(crate) budget: Option<Arc<tokio::sync::Semaphore>>,
}

/// What a download did.
#[derive(Debug)]
pub(crate) struct Downloaded {
    /// Bytes fetched by this run.
    pub(crate) fetched: u64,
    /// Bytes found on disk from an interrupted earlier run.
    pub(crate) resumed: u64,
    /// What was verified, for the summary.
    pub(crate) verified: String,
    pub(crate) sha256: Option<String>,
}

/// For transfers: no limit on an attempt (a body may take long), `--stall-timeout` instead.
pub(crate) use podinit_transfer::download::backoff;

/// For HEADs: an answer without a body is due within 30 s.
fn metadata_backoff() -> Backoff {
    Backoff { attempt_timeout: Some(Duration::from_secs(30)), ..backoff() }
}

/// HEAD: size, ETag, version, checksums.
pub(crate) async fn head(ctx: &Context, s3: &Client, url: &S3Url, pinned_sha256: Option<&str>) -> Result<Remote, Error> {
    let what = format!("HEAD {url}");
    let out = retry::retry(ctx, &what, metadata_backoff(), client::classify, |_| async {
        s3.head_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| anyhow::Error::new(CallError::from(e)))
    })
    .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => return Err(client::explain(client::missing_bucket(s3, e, url).await, url)),
    };
    Ok(remote!(out, pinned_sha256.map(str::to_owned)))
}

/// The part size of a multipart upload (`HEAD ?partNumber=1`), when its parts are uniform.
pub(crate) async fn learn_part_size(ctx: &Context, s3: &Client, url: &S3Url, remote: &mut Remote) {
    if remote.expected.wants_part_size() {
        remote.expected.part_size = part_size(ctx, s3, url, &remote.etag, remote.size).await;
    }
}

/// The size of every part but the last of the multipart object `etag`, from the length of part
/// 1 (`HEAD ?partNumber=1`); `None` for another kind of ETag, parts of mixed sizes, or when the
/// store does not say.
pub(crate) async fn part_size(ctx: &Context, s3: &Client, url: &S3Url, etag: &str, size: u64) -> Option<u64> {
    let Etag::Multipart { parts, .. } = Etag::parse(etag) else { return None };
    let what = format!("HEAD {url} part 1");
    let out = retry::retry(ctx, &what, metadata_backoff(), client::classify, |_| async {
        s3.head_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .part_number(1)
            .if_match(etag)
            .send()
            .await
            .map_err(|e| anyhow::Error::new(CallError::from(e)))
    })
    .await;
    match out {
        Ok(out) => spec::uniform_part_size(size, parts, u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0)),
        Err(e) => {
            tracing::debug!("cannot learn the part size of {url}: {e}");
            None
        }
    }
}

/// The S3 side of a download: ranged GETs of exactly the version in `remote`.
pub(crate) struct S3Source<'a> {
    pub(crate) s3: &'a Client,
    pub(crate) url: &'a S3Url,
    pub(crate) remote: &'a Remote,
}

impl Source for S3Source<'_> {
    type Body = aws_sdk_s3::primitives::ByteStream;

    async fn open(&self, range: Range<u64>) -> anyhow::Result<Self::Body> {
        range_get(self.s3, self.url, self.remote, &range).await
    }

    async fn next(&self, body: &mut Self::Body) -> anyhow::Result<Option<bytes::Bytes>> {
        body.try_next().await.map_err(|e| CallError::from(e).into())
    }

    fn classify(&self, err: &anyhow::Error) -> Verdict {
        client::classify(err)
    }

    fn changed(&self, err: &Error) -> bool {
        matches!(client::call_error(err), Some(CallError::Changed))
    }

    fn explain(&self, err: Error) -> Error {
        client::explain(err, self.url)
    }
}

impl Digest for Hasher {
    fn is_idle(&self) -> bool {
        Hasher::is_idle(self)
    }

    fn update(&mut self, data: &[u8]) {
        Hasher::update(self, data);
    }
}

/// The size of a range unless `--part-size` says otherwise.
pub(crate) const DEFAULT_PART_SIZE: u64 = 16 << 20;

/// Stored parts larger than this are not followed by the ranges (too few ranges to run at once,
/// too much lost to a kill): their MD5s are read back instead.
const MAX_RANGE_OF_PARTS: u64 = 256 << 20;

impl Options {
    /// The engine's options for `remote`: ranges of whole stored parts (the smallest number of
    /// parts reaching [`DEFAULT_PART_SIZE`]) when its multipart ETag is to be checked and
    /// `--part-size` was not given, so each range's writer computes its parts' MD5s from the
    /// bytes in memory.
    pub(crate) fn transfer(&self, expected: &Expected) -> podinit_transfer::Options {
        let part_size = match expected.part_size {
            Some(part) if !self.part_size_given && expected.wants_part_size() && (1..=MAX_RANGE_OF_PARTS).contains(&part) => {
                part * self.part_size.div_ceil(part).max(1)
            }
            _ => self.part_size,
        };
        podinit_transfer::Options { concurrency: self.concurrency, part_size, file: self.file, stall: self.stall }
    }
}

/// Downloads `remote` into `dest` (see the module docs). On failure the ranges on disk are
/// recorded for the next run; `dest` is untouched.
pub(crate) async fn download(
    ctx: &Context,
    s3: &Client,
    url: &S3Url,
    remote: &Remote,
    dest: &Path,
    opts: &Options,
    progress: &Progress,
) -> Result<Downloaded, Error> {
    let source = S3Source { s3, url, remote };
    let object = Object { source: url.to_string(), size: remote.size, validator: remote.etag.clone() };
    let options = opts.transfer(&remote.expected);
    let transfer = Transfer { ctx, source: &source, object: &object, options: &options, progress, budget: opts.budget.as_deref() };
    let started = Instant::now();
    let mut plan = remote.expected.plan();
    let prepared = transfer.prepare(dest, !plan.is_empty())?;
    // What can be computed per range as it arrives; a resumed download keeps its range size,
    // which may not follow the stored parts.
    let range_size = prepared.range_size();
    let ranged = plan.split_ranged(|part| range_size.is_multiple_of(part));
    let mut parts = plan.split_multipart().map(|m| PartHashes::new(m, remote.size, range_size));
    let observer: &mut dyn RangeObserver = match &mut parts {
        Some(parts) => parts,
        None => &mut (),
    };
    let (hasher, states, fetched) = transfer.fetch(prepared, Hasher::new(plan), ranged.clone(), observer).await?;
    let fetched_in = started.elapsed();
    let sha256 = hasher.sha256_hex();
    let multipart = match parts {
        Some(parts) => Some(parts.finish().await?),
        None => None,
    };
    let (bytes_fetched, resumed) = (fetched.fetched, fetched.resumed);
    // The lanes service may still hold some of the object's bytes: waited for off the runtime.
    let per_range =
        tokio::task::spawn_blocking(move || ranged.check(states)).await.map_err(|e| anyhow::anyhow!("the part hasher stopped: {e}"))?;
    let checked = (|| {
        let mut checked = vec![per_range?, hasher.finish()?];
        if let Some(multipart) = multipart {
            checked.push(multipart?);
        }
        Ok::<_, String>(verify::join(&checked))
    })();
    let verified = match checked {
        Ok(verified) => verified,
        Err(mismatch) => {
            fetched.discard();
            return Err(Error::new(Kind::Failed, anyhow::anyhow!("{url}: verification failed: {mismatch}"))
                .with_hint("nothing was written; if the object is being rewritten, rerun once it is complete"));
        }
    };
    let verified_in = started.elapsed();
    fetched.commit(&options, remote.last_modified)?;
    tracing::debug!(
        "{url}: ranges done after {fetched_in:.2?}, verified after {verified_in:.2?}, in place after {:.2?}",
        started.elapsed()
    );
    Ok(Downloaded { fetched: bytes_fetched, resumed, verified, sha256 })
}

/// [`download`] of the object as it is now: when it changes underway (412), the partial file
/// is dropped, the object looked up again and the download started over, at most `restarts`
/// times. Returns the version that was written.
#[expect(clippy::too_many_arguments, reason = "two call sites; a struct would only rename them")]
pub(crate) async fn download_latest(
    ctx: &Context,
    s3: &Client,
    url: &S3Url,
    mut remote: Remote,
    dest: &Path,
    opts: &Options,
    progress: &Progress,
    restarts: u32,
) -> Result<(Remote, Downloaded), Error> {
    let mut restarted = 0;
    loop {
        learn_part_size(ctx, s3, url, &mut remote).await;
        match download(ctx, s3, url, &remote, dest, opts, progress).await {
            Err(err) if matches!(client::call_error(&err), Some(CallError::Changed)) => {
                if restarted == restarts {
                    return Err(err.with_hint("the object keeps changing; rerun once its writer is done"));
                }
                restarted += 1;
                Partial::discard(dest);
                let old = remote.etag.clone();
                remote = head(ctx, s3, url, opts.pinned_sha256.as_deref()).await?;
                tracing::warn!("{url} changed during the download (ETag {old} → {}); starting over", remote.etag);
            }
            other => return other.map(|done| (remote, done)),
        }
    }
}

/// GET of one range of exactly the version being downloaded (`If-Match`, version id).
pub(crate) async fn range_get(
    s3: &Client,
    url: &S3Url,
    remote: &Remote,
    range: &Range<u64>,
) -> anyhow::Result<aws_sdk_s3::primitives::ByteStream> {
    let out = s3
        .get_object()
        .bucket(&url.bucket)
        .key(&url.key)
        .range(format!("bytes={}-{}", range.start, range.end - 1))
        .if_match(&remote.etag)
        .set_version_id(remote.version_id.clone())
        .send()
        .await
        .map_err(CallError::from)?;
    Ok(out.body)
}

/// The MD5 of every stored part of a multipart upload, each computed on the blocking pool (in
/// parallel, from the page cache) as soon as the ranges covering it are on disk.
struct PartHashes {
    check: Multipart,
    size: u64,
    range_size: u64,
    jobs: Vec<Option<tokio::task::JoinHandle<std::io::Result<[u8; 16]>>>>,
}

impl PartHashes {
    fn new(check: Multipart, size: u64, range_size: u64) -> Self {
        let jobs = (0..check.parts).map(|_| None).collect();
        Self { check, size, range_size, jobs }
    }

    fn part(&self, p: usize) -> Range<u64> {
        let start = p as u64 * self.check.part_size;
        start..(start + self.check.part_size).min(self.size)
    }

    /// The multipart ETag checked, or what did not match.
    async fn finish(self) -> Result<Result<String, String>, Error> {
        let mut md5s = Vec::with_capacity(self.jobs.len());
        for job in self.jobs {
            let job = job.ok_or_else(|| anyhow::anyhow!("a part was never hashed"))?;
            let md5 = job.await.map_err(|e| anyhow::anyhow!("a part hasher stopped: {e}"))?;
            md5s.push(md5.context("reading back the download to verify it")?);
        }
        Ok(self.check.check(&md5s))
    }
}

impl RangeObserver for PartHashes {
    /// Range `i` is on disk: start the parts it completes.
    fn range_done(&mut self, i: usize, done: &[bool], file: &Arc<File>) {
        let (start, end) = (i as u64 * self.range_size, ((i as u64 + 1) * self.range_size).min(self.size));
        let first = usize::try_from(start / self.check.part_size).unwrap_or(usize::MAX);
        let last = usize::try_from(end.saturating_sub(1) / self.check.part_size).unwrap_or(usize::MAX);
        for p in first..=last.min(self.jobs.len().saturating_sub(1)) {
            let part = self.part(p);
            let covering = usize::try_from(part.start / self.range_size).unwrap_or(0)
                ..=usize::try_from(part.end.saturating_sub(1) / self.range_size).unwrap_or(0);
            if self.jobs[p].is_some() || !covering.into_iter().all(|r| done.get(r).copied().unwrap_or(false)) {
                continue;
            }
            let file = Arc::clone(file);
            self.jobs[p] = Some(tokio::task::spawn_blocking(move || {
                let mut hasher = <md5::Md5 as md5::Digest>::new();
                podinit_transfer::read_range(&file, part, &mut vec![0u8; 1 << 20], |data| md5::Digest::update(&mut hasher, data))?;
                Ok(md5::Digest::finalize(hasher).into())
            }));
        }
    }
}

/// The next piece of a body, or a transport error when nothing came for `stall`.
async fn next_chunk(body: &mut aws_sdk_s3::primitives::ByteStream, stall: Duration) -> anyhow::Result<Option<bytes::Bytes>> {
    match tokio::time::timeout(stall, body.try_next()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(e)) => Err(CallError::from(e).into()),
        Err(_) => Err(CallError::Transport(format!("no data for {}", humantime::format_duration(stall))).into()),
    }
}

/// Asks the store for the object's checksums (`x-amz-checksum-mode: ENABLED`) with the header
/// alone, not the SDK's `checksum_mode`: that one also turns on the SDK's own validation,
/// which hashes every byte a second time and logs a warning for every composite (multipart)
/// checksum. podinit verifies the bytes itself (see `verify.rs`).
fn ask_for_checksums(request: &mut aws_smithy_runtime_api::http::Request) {
    request.headers_mut().insert("x-amz-checksum-mode", "ENABLED");
}

/// One GET into an [`AtomicFile`], hashed as it streams; for the many small objects of a
/// prefix. Returns the ETag of what was written and what was verified.
pub(crate) async fn fetch_small(
    ctx: &Context,
    s3: &Client,
    url: &S3Url,
    dest: &Path,
    opts: &Options,
    listed: (&str, u64),
    progress: &Progress,
) -> Result<(String, Option<String>, String), Error> {
    // A multipart object (aws cli uploads from 8 MiB in parts) is checked against its ETag
    // while it streams when the part size is known: one HEAD of part 1 learns it.
    let (listed_etag, listed_size) = listed;
    let part_size = part_size(ctx, s3, url, listed_etag, listed_size).await;
    let what = format!("GET {url}");
    retry::retry(ctx, &what, backoff(), client::classify, |_| async {
        let out = s3
            .get_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .customize()
            .mutate_request(ask_for_checksums)
            .send()
            .await
            .map_err(CallError::from)?;
        let mut remote = remote!(out, None);
        // The part size belongs to the listed object; a replaced one is checked without it.
        if remote.etag == listed_etag {
            remote.expected.part_size = part_size;
        }
        let mut hasher = Hasher::new(remote.expected.plan());
        let mut file = AtomicFile::create(dest, opts.file)?;
        let mut body = out.body;
        let mut counted = 0u64;
        while let Some(chunk) = next_chunk(&mut body, opts.stall).await? {
            hasher.update(&chunk);
            std::io::Write::write_all(&mut file, &chunk)
                .map_err(|e| anyhow::anyhow!("writing {}: {}", dest.display(), podinit_core::redact::io_reason(&e)))?;
            progress.inc(chunk.len() as u64);
            counted += chunk.len() as u64;
        }
        if let Some(len) = out.content_length.and_then(|l| u64::try_from(l).ok()) {
            anyhow::ensure!(counted == len, CallError::Transport(format!("the body ended after {counted} of {len} bytes")));
        }
        let verified = hasher.finish().map_err(|m| CallError::Mismatch(format!("verification failed: {m}")))?;
        if let Some(modified) = remote.last_modified {
            let _ = file.file().set_modified(modified);
        }
        // fsync of the file and its directory off the runtime's threads: with many small
        // objects at once the syncs overlap, and the filesystem can commit them together.
        tokio::task::spawn_blocking(move || file.commit()).await.map_err(|e| anyhow::anyhow!("committing {}: {e}", dest.display()))??;
        Ok((remote.etag, remote.version_id, verified))
    })
    .await
    .map_err(|e| client::explain(e, url))
}

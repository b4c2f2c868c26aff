//! One object to one file: a HEAD, then concurrent ranged GETs written at their offsets into
//! `.NAME.podinit-partial` in the destination directory, verified while they arrive (a
//! [`Verifier`] thread hashes the file right behind the contiguous downloaded prefix for
//! whole-object digests; [`PartHashes`] MD5s each stored part of a multipart upload on the
//! blocking pool as soon as it is on disk; both read the page cache, never a second pass),
//! then renamed into place. Every range GET carries `If-Match` on the ETag, so an object
//! replaced mid-download is noticed (the caller starts over). Ranges on disk are recorded after
//! an fdatasync every 250 ms, in the background, so a killed init container resumes.
//!
//! Small objects (prefix mode) take [`fetch_small`]: one GET, hashed as it streams into an
//! [`AtomicFile`].

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::{ChecksumMode, ServerSideEncryption};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use podinit_core::fs::{AtomicFile, FileOptions};
use podinit_core::progress::Progress;
use podinit_core::retry::{self, Backoff};
use podinit_core::{Context, Error, Kind};

use crate::client::{self, CallError};
use crate::spec::{self, Etag, S3Url};
use crate::state::Partial;
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
    pub(crate) part_size: u64,
    pub(crate) file: FileOptions,
    /// A body that sends nothing for this long is given up (and retried).
    pub(crate) stall: Duration,
    pub(crate) pinned_sha256: Option<String>,
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
pub(crate) fn backoff() -> Backoff {
    Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5), attempt_timeout: None }
}

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
    let source = url.to_string();
    let data_path = Partial::data_path(dest);
    let resumable = Partial::load(dest).filter(|p| {
        p.source == source
            && p.etag == remote.etag
            && p.size == remote.size
            && p.range_size > 0
            // Not through a link: one planted there (with a forged state file) is discarded,
            // never written through.
            && std::fs::symlink_metadata(&data_path).is_ok_and(|m| m.is_file() && m.len() == remote.size)
    });
    let (file, range_size, mut done) = match resumable {
        Some(partial) => {
            let file = open_partial(&data_path, false)?;
            let mut done = vec![false; spec::ranges(remote.size, partial.range_size).len()];
            for i in partial.done {
                if let Some(slot) = done.get_mut(i) {
                    *slot = true;
                }
            }
            (file, partial.range_size, done)
        }
        None => {
            Partial::discard(dest);
            let file = open_partial(&data_path, true)?;
            if let Err(e) = preallocate(&file, remote.size) {
                Partial::discard(dest);
                let doing = format!("reserving {} for {}", podinit_core::progress::bytes(remote.size), dest.display());
                return Err(podinit_core::fs::explain_write(podinit_core::fs::io_error(e, doing), dest.parent().unwrap_or(dest)));
            }
            let ranges = spec::ranges(remote.size, opts.part_size).len();
            (file, opts.part_size, vec![false; ranges])
        }
    };
    let ranges = spec::ranges(remote.size, range_size);
    let resumed: u64 = ranges.iter().zip(&done).filter(|(_, d)| **d).map(|(r, _)| r.end - r.start).sum();
    if resumed > 0 {
        tracing::info!(
            resumed_bytes = resumed,
            "resuming {url}: {} of {} already on disk from an earlier run",
            podinit_core::progress::bytes(resumed),
            podinit_core::progress::bytes(remote.size)
        );
    }
    progress.set_total(remote.size);
    progress.inc(resumed);
    let progress_started = Instant::now();
    let file = Arc::new(file);
    let mut plan = remote.expected.plan();
    let mut parts = plan.split_multipart().map(|m| PartHashes::new(m, remote.size, range_size));
    let verifier = Verifier::start(&file, Hasher::new(plan))?;
    verifier.advance(watermark(&ranges, &done));
    if let Some(parts) = &mut parts {
        for i in (0..ranges.len()).filter(|i| done[*i]) {
            parts.range_done(i, &done, &file);
        }
    }

    let mut pending: VecDeque<usize> = (0..ranges.len()).filter(|i| !done[*i]).collect();
    let mut running = FuturesUnordered::new();
    let mut fetched = 0u64;
    let mut checkpoint =
        Checkpoint::new(dest, Partial { source, etag: remote.etag.clone(), size: remote.size, range_size, done: Vec::new() });
    let outcome: Result<(), Error> = loop {
        while running.len() < opts.concurrency.max(1) {
            let Some(i) = pending.pop_front() else { break };
            let range = ranges[i].clone();
            let file = &file;
            running.push(async move { (i, fetch_range(ctx, s3, url, remote, file, range, opts.stall, progress).await) });
        }
        let Some((i, result)) = running.next().await else { break Ok(()) };
        match result {
            Ok(n) => {
                fetched += n;
                done[i] = true;
                verifier.advance(watermark(&ranges, &done));
                if let Some(parts) = &mut parts {
                    parts.range_done(i, &done, &file);
                }
                checkpoint.maybe(&file, &done);
            }
            Err(err) => break Err(err),
        }
    };
    drop(running);
    if let Err(err) = outcome {
        if matches!(client::call_error(&err), Some(CallError::Changed)) {
            checkpoint.settle().await;
        } else {
            checkpoint.now(&file, &done).await;
        }
        return Err(err);
    }
    checkpoint.settle().await;
    let fetched_in = progress_started.elapsed();
    let hasher = verifier.finish().await?;
    let sha256 = hasher.sha256_hex();
    let multipart = match parts {
        Some(parts) => Some(parts.finish().await?),
        None => None,
    };
    let verified = match hasher.finish().and_then(|seq| Ok(verify::join(seq, multipart.transpose()?))) {
        Ok(verified) => verified,
        Err(mismatch) => {
            Partial::discard(dest);
            return Err(Error::new(Kind::Failed, anyhow::anyhow!("{url}: verification failed: {mismatch}"))
                .with_hint("nothing was written; if the object is being rewritten, rerun once it is complete"));
        }
    };
    let verified_in = progress_started.elapsed();
    commit(&file, &data_path, dest, &opts.file, remote.last_modified)?;
    let _ = std::fs::remove_file(Partial::state_path(dest));
    tracing::debug!(
        "{url}: ranges done after {fetched_in:.2?}, verified after {verified_in:.2?}, in place after {:.2?}",
        progress_started.elapsed()
    );
    Ok(Downloaded { fetched, resumed, verified, sha256 })
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

/// One range, retried on its own; written at its offset.
#[expect(clippy::too_many_arguments, reason = "one call site; a struct would only rename them")]
async fn fetch_range(
    ctx: &Context,
    s3: &Client,
    url: &S3Url,
    remote: &Remote,
    file: &File,
    range: Range<u64>,
    stall: Duration,
    progress: &Progress,
) -> Result<u64, Error> {
    let what = format!("GET {url} bytes {}-{}", range.start, range.end - 1);
    retry::retry(ctx, &what, backoff(), client::classify, |_| {
        let range = range.clone();
        async move {
            let mut body = range_get(s3, url, remote, &range).await?;
            let mut at = range.start;
            while let Some(chunk) = next_chunk(&mut body, stall).await? {
                let end = at + chunk.len() as u64;
                anyhow::ensure!(
                    end <= range.end,
                    CallError::Transport(format!("the store sent more than the {} bytes asked for", range.end - range.start))
                );
                file.write_all_at(&chunk, at)
                    .map_err(|e| anyhow::anyhow!("writing the download: {}", podinit_core::redact::io_reason(&e)))?;
                progress.inc(chunk.len() as u64);
                at = end;
            }
            anyhow::ensure!(
                at == range.end,
                CallError::Transport(format!("the body ended after {} of {} bytes", at - range.start, range.end - range.start))
            );
            Ok(range.end - range.start)
        }
    })
    .await
    .map_err(|e| client::explain(e, url))
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

/// The next piece of a body, or a transport error when nothing came for `stall`.
pub(crate) async fn next_chunk(body: &mut aws_sdk_s3::primitives::ByteStream, stall: Duration) -> anyhow::Result<Option<bytes::Bytes>> {
    match tokio::time::timeout(stall, body.try_next()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(e)) => Err(CallError::from(e).into()),
        Err(_) => Err(CallError::Transport(format!("no data for {}", humantime::format_duration(stall))).into()),
    }
}

/// The end of the contiguous prefix of ranges on disk.
fn watermark(ranges: &[Range<u64>], done: &[bool]) -> u64 {
    match done.iter().position(|d| !d) {
        Some(i) => ranges[i].start,
        None => ranges.last().map_or(0, |r| r.end),
    }
}

/// The data file of an unfinished download: created new, or (resuming) opened as it was
/// left. Never through a link: a link planted at that name, with a forged state file, must not
/// redirect the writes of a privileged container elsewhere.
fn open_partial(path: &Path, create: bool) -> Result<File, Error> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if create {
        options.create_new(true).mode(0o600);
    }
    let doing = if create { "creating" } else { "opening" };
    let file = options.open(path).map_err(|e| {
        let why = if e.raw_os_error() == Some(libc::ELOOP) {
            "a symbolic link is in the way".to_owned()
        } else {
            podinit_core::redact::io_reason(&e)
        };
        Error::new(Kind::Failed, anyhow::anyhow!("{doing} {}: {why}", path.display()))
    })?;
    let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("{} is not a regular file", path.display())));
    }
    Ok(file)
}

/// Reserves the space up front (fail early on a full emptyDir); falls back to a sparse length
/// where the filesystem cannot allocate.
fn preallocate(file: &File, size: u64) -> std::io::Result<()> {
    let len = i64::try_from(size).unwrap_or(i64::MAX);
    match nix::fcntl::posix_fallocate(file, 0, len) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ENOSPC) => Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
        Err(_) => file.set_len(size),
    }
}

/// The temp file becomes `dest`, its mtime the object's LastModified (see
/// [`podinit_core::fs::publish`]).
fn commit(file: &File, temp: &Path, dest: &Path, opts: &FileOptions, modified: Option<SystemTime>) -> Result<(), Error> {
    if let Some(modified) = modified {
        let _ = file.set_modified(modified);
    }
    podinit_core::fs::publish(file, temp, dest, *opts)?;
    Ok(())
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
                let mut at = part.start;
                verify::md5_of(|buf| {
                    let n = usize::try_from(part.end - at).unwrap_or(usize::MAX).min(buf.len());
                    file.read_exact_at(&mut buf[..n], at)?;
                    at += n as u64;
                    Ok(n)
                })
            }));
        }
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

/// Hashes the file in a blocking thread, up to the watermark it is told.
struct Verifier {
    tx: std::sync::mpsc::Sender<u64>,
    handle: tokio::task::JoinHandle<std::io::Result<Hasher>>,
}

impl Verifier {
    fn start(file: &Arc<File>, mut hasher: Hasher) -> Result<Self, Error> {
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let file = Arc::clone(file);
        let handle = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0u64;
            while let Ok(mark) = rx.recv() {
                if hasher.is_idle() {
                    continue;
                }
                while at < mark {
                    let n = usize::try_from(mark - at).unwrap_or(usize::MAX).min(buf.len());
                    file.read_exact_at(&mut buf[..n], at)?;
                    hasher.update(&buf[..n]);
                    at += n as u64;
                }
            }
            Ok(hasher)
        });
        Ok(Self { tx, handle })
    }

    fn advance(&self, mark: u64) {
        let _ = self.tx.send(mark);
    }

    async fn finish(self) -> Result<Hasher, Error> {
        drop(self.tx);
        let hasher = self.handle.await.map_err(|e| anyhow::anyhow!("the verifier stopped: {e}"))?;
        Ok(hasher.context("reading back the download to verify it")?)
    }
}

/// Records which ranges are on disk, after an fdatasync, at most every 250 ms. The periodic
/// ones run on a blocking thread so the downloads go on meanwhile; the last one (on failure or
/// SIGTERM) is waited for.
struct Checkpoint {
    dest: PathBuf,
    state: Partial,
    last: Instant,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Checkpoint {
    /// Often enough that a killed download loses little and that dirty pages (charged to the
    /// pod's memory limit) are written out as the download goes, not all at the end.
    const EVERY: Duration = Duration::from_millis(250);

    fn new(dest: &Path, state: Partial) -> Self {
        Self { dest: dest.to_owned(), state, last: Instant::now(), running: None }
    }

    /// The state to record next, if it differs from the last one.
    fn next(&mut self, done: &[bool]) -> Option<Partial> {
        let indexes: Vec<usize> = done.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i).collect();
        if indexes.is_empty() || indexes == self.state.done {
            return None;
        }
        self.state.done = indexes;
        Some(self.state.clone())
    }

    fn maybe(&mut self, file: &Arc<File>, done: &[bool]) {
        if self.last.elapsed() < Self::EVERY || self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.last = Instant::now();
        let Some(state) = self.next(done) else { return };
        let (file, dest) = (Arc::clone(file), self.dest.clone());
        self.running = Some(tokio::task::spawn_blocking(move || record(&file, &dest, &state)));
    }

    /// Waits for a periodic checkpoint under way.
    async fn settle(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
    }

    async fn now(&mut self, file: &File, done: &[bool]) {
        self.settle().await;
        if let Some(state) = self.next(done) {
            record(file, &self.dest, &state);
        }
    }
}

fn record(file: &File, dest: &Path, state: &Partial) {
    if let Err(e) = file.sync_data() {
        tracing::warn!("cannot sync the partial download ({e}); a restart will start over");
        return;
    }
    if let Err(e) = state.save(dest) {
        tracing::warn!("cannot record the partial download ({e:#}); a restart will start over");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_the_end_of_the_contiguous_prefix() {
        let ranges = spec::ranges(10, 3);
        assert_eq!(watermark(&ranges, &[false, true, true, true]), 0);
        assert_eq!(watermark(&ranges, &[true, true, false, true]), 6);
        assert_eq!(watermark(&ranges, &[true, true, true, true]), 10);
    }
}

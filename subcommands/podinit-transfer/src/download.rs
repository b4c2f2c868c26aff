//! One object to one file, whatever serves it: concurrent ranged GETs written at their
//! offsets into `.NAME.podinit-partial` in the destination directory, verified while they
//! arrive, then renamed into place. Ranges on disk are recorded after an fdatasync every
//! 250 ms, in the background, so a killed init container resumes.
//!
//! The network's thread only receives: each range hands its chunks to a writer on the blocking
//! pool, which writes them at their offsets, feeds the range's [`RangeDigest`] (CRCs, the MD5s
//! of the stored parts the range covers) from the bytes in memory, and writes behind the
//! download ([`WriteBehind`]: `sync_file_range`, and under a tight memory limit
//! `posix_fadvise(DONTNEED)` of what is on disk), so dirty pages never pile up against a pod's
//! limit. Digests that need the bytes in order across ranges (SHA-256, a single-part MD5) are a
//! [`Digest`] fed by a [`Verifier`] thread reading the file right behind the contiguous
//! downloaded prefix; a [`RangeObserver`] may read back pieces as they complete (stored parts
//! that ranges do not follow). Either keeps the page cache (nothing is dropped they still need).
//!
//! Where the bytes come from is a [`Source`] (S3, HTTP): it opens a range and yields its
//! chunks, and it says which of its errors are worth a retry. Every range it serves must be
//! of the version named by [`Object::validator`] (`If-Match`, `If-Range`); when the object
//! changed underway the source says so ([`Source::changed`]) and the caller starts over.
//!
//! The group of things every step needs (context, source, object, options, progress) is a
//! [`Transfer`]; a download is [`Transfer::prepare`] (resume or start), [`Transfer::fetch`]
//! (the ranges, the hasher fed behind them), then the caller checks the digests and calls
//! [`Fetched::commit`] (or drops it: the partial file stays for the next run).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use podinit_core::fs::FileOptions;
use podinit_core::progress::Progress;
use podinit_core::retry::{self, Backoff, Verdict};
use podinit_core::{Context, Error, Kind};

use crate::partial::Partial;
use crate::ranges;

/// Where bytes come from.
pub trait Source: Sync {
    /// An open response body.
    type Body: Send;

    /// Starts a GET of `range` (of the version being downloaded).
    fn open(&self, range: Range<u64>) -> impl Future<Output = anyhow::Result<Self::Body>> + Send;

    /// The next piece of `body`, `None` at its end.
    fn next(&self, body: &mut Self::Body) -> impl Future<Output = anyhow::Result<Option<Bytes>>> + Send;

    /// Whether waiting can fix `err` (an error of `open` or `next`). The engine's own
    /// [`Transport`] errors (a short body, a stall) are retried without asking.
    fn classify(&self, err: &anyhow::Error) -> Verdict;

    /// Whether `err` says the object changed underway (the caller starts over).
    fn changed(&self, err: &Error) -> bool;

    /// The error an operator reads (hints for refusals).
    fn explain(&self, err: Error) -> Error {
        err
    }
}

/// A broken transfer (a body that ended early, sent too much, or stalled): always retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport(pub String);

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Transport {}

/// Writing the partial file failed (or its writeback did): never retried, and the partial
/// download is dropped (see [`Transfer::fetch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailed(pub String);

impl std::fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing the download: {}", self.0)
    }
}

impl std::error::Error for WriteFailed {}

/// Bytes fed in order (the whole-object digests of a download).
pub trait Digest: Send + 'static {
    /// Nothing to compute: the verifier thread does not read the file back.
    fn is_idle(&self) -> bool;
    fn update(&mut self, data: &[u8]);
}

/// Digests of each range, computed by the range's writer from the bytes as they arrive (a
/// range an earlier run left is read back once). [`Transfer::fetch`] returns one state per
/// range, in order, for the caller to combine.
pub trait RangeDigest: Clone + Send + 'static {
    type State: Send + 'static;
    /// Nothing to compute (ranges on disk are not read back).
    fn is_idle(&self) -> bool;
    /// The state of `range` (offsets in the object), before any byte.
    fn start(&self, range: &Range<u64>) -> Self::State;
    /// The next bytes of the range, in order.
    fn update(state: &mut Self::State, data: &[u8]);
}

impl RangeDigest for () {
    type State = ();

    fn is_idle(&self) -> bool {
        true
    }

    fn start(&self, _: &Range<u64>) {}

    fn update(_: &mut (), _: &[u8]) {}
}

/// Told each time a range is on disk (e.g. to hash stored parts the ranges do not follow,
/// reading them back).
pub trait RangeObserver {
    /// Range `i` is on disk; `done` says which others are.
    fn range_done(&mut self, i: usize, done: &[bool], file: &Arc<File>);

    /// Reads nothing back (the page cache of written ranges may be dropped).
    fn is_idle(&self) -> bool {
        false
    }
}

impl RangeObserver for () {
    fn range_done(&mut self, _: usize, _: &[bool], _: &Arc<File>) {}

    fn is_idle(&self) -> bool {
        true
    }
}

/// Which bytes: the source as shown, their size and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The source as shown in logs and recorded with a partial download (redacted).
    pub source: String,
    pub size: u64,
    /// An ETag, else a Last-Modified date: what a resumed download must match.
    pub validator: String,
}

/// How to download.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Ranges in flight.
    pub concurrency: usize,
    /// Size of one range (a resumed download keeps the size it started with).
    pub part_size: u64,
    /// Mode and owner of the published file.
    pub file: FileOptions,
    /// A body that sends nothing for this long is given up (and retried).
    pub stall: Duration,
}

/// For transfers: no limit on an attempt (a body may take long), [`Options::stall`] instead.
pub fn backoff() -> Backoff {
    Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5), attempt_timeout: None, growth: retry::Growth::Doubling }
}

/// What every step of a download needs.
pub struct Transfer<'a, S> {
    pub ctx: &'a Context,
    pub source: &'a S,
    pub object: &'a Object,
    pub options: &'a Options,
    pub progress: &'a Progress,
    /// Ranges in flight across several transfers at once (a prefix's objects), one permit per
    /// range, on top of [`Options::concurrency`] for this one.
    pub budget: Option<&'a tokio::sync::Semaphore>,
}

/// A partial file ready to be filled: new, or what an earlier run left.
pub struct Prepared {
    dest: PathBuf,
    data_path: PathBuf,
    file: Arc<File>,
    range_size: u64,
    ranges: Vec<Range<u64>>,
    done: Vec<bool>,
    resumed: u64,
}

impl Prepared {
    /// The size of one range of this download.
    pub fn range_size(&self) -> u64 {
        self.range_size
    }

    /// The partial file (for a [`RangeObserver`] to read ranges already on disk).
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Which ranges are on disk already.
    pub fn done(&self) -> &[bool] {
        &self.done
    }
}

/// Every range on disk and synced; not yet in place.
pub struct Fetched {
    /// Bytes fetched by this run.
    pub fetched: u64,
    /// Bytes found on disk from an interrupted earlier run.
    pub resumed: u64,
    dest: PathBuf,
    data_path: PathBuf,
    file: Arc<File>,
}

impl Fetched {
    /// The partial file becomes `dest` (mode, owner, fsync, rename, fsync of the directory;
    /// see [`podinit_core::fs::publish`]), its mtime `modified` when given.
    pub fn commit(self, options: &Options, modified: Option<SystemTime>) -> Result<(), Error> {
        if let Some(modified) = modified {
            let _ = self.file.set_modified(modified);
        }
        podinit_core::fs::publish(&self.file, &self.data_path, &self.dest, options.file)?;
        let _ = std::fs::remove_file(Partial::state_path(&self.dest));
        Ok(())
    }

    /// The bytes did not verify: the partial download is removed.
    pub fn discard(self) {
        Partial::discard(&self.dest);
    }
}

impl<S: Source> Transfer<'_, S> {
    fn classify(&self, err: &anyhow::Error) -> Verdict {
        if err.downcast_ref::<Transport>().is_some() {
            Verdict::Retry
        } else if err.downcast_ref::<WriteFailed>().is_some() {
            Verdict::Fatal(Kind::Failed)
        } else {
            self.source.classify(err)
        }
    }

    /// The partial file of `dest`: resumed when an earlier run left one of this object (same
    /// source, version and size) and `verified` says every byte will be checked against a
    /// digest (the bytes on disk are the volume's, which someone else may have forged along
    /// with the state file: without a digest nothing would notice), else a new one with the
    /// space reserved.
    pub fn prepare(&self, dest: &Path, verified: bool) -> Result<Prepared, Error> {
        let object = self.object;
        let data_path = Partial::data_path(dest);
        let found = Partial::load(dest);
        if found.is_some() && !verified {
            tracing::info!(
                "{}: not resuming the earlier partial download: without a checksum nothing would verify the bytes on disk",
                dest.display()
            );
        }
        let resumable = found.filter(|_| verified).filter(|p| {
            p.source == object.source
                && p.validator == object.validator
                && p.size == object.size
                && p.range_size > 0
                // Not through a link: one planted there (with a forged state file) is discarded,
                // never written through.
                && std::fs::symlink_metadata(&data_path).is_ok_and(|m| m.is_file() && m.len() == object.size)
        });
        let (file, range_size, done) = match resumable {
            Some(partial) => {
                let file = open_partial(&data_path, false)?;
                let mut done = vec![false; ranges(object.size, partial.range_size).len()];
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
                if let Err(e) = preallocate(&file, object.size) {
                    Partial::discard(dest);
                    let doing = format!("reserving {} for {}", podinit_core::progress::bytes(object.size), dest.display());
                    return Err(podinit_core::fs::explain_write(podinit_core::fs::io_error(e, doing), dest.parent().unwrap_or(dest)));
                }
                let part_size = self.options.part_size.max(1);
                (file, part_size, vec![false; ranges(object.size, part_size).len()])
            }
        };
        let ranges = ranges(object.size, range_size);
        let resumed = ranges.iter().zip(&done).filter(|(_, d)| **d).map(|(r, _)| r.end - r.start).sum();
        Ok(Prepared { dest: dest.to_owned(), data_path, file: Arc::new(file), range_size, ranges, done, resumed })
    }

    /// Fetches every range not on disk: `hasher` fed behind the contiguous prefix (and
    /// returned, having seen every byte), `digest` computed per range (one state per range,
    /// in order), `observer` told of each range. On failure the ranges on disk are recorded for
    /// the next run (unless the object changed) and the error returned; `dest` is untouched.
    pub async fn fetch<H: Digest, D: RangeDigest>(
        &self,
        prepared: Prepared,
        hasher: H,
        digest: D,
        observer: &mut dyn RangeObserver,
    ) -> Result<(H, Vec<D::State>, Fetched), Error> {
        let Prepared { dest, data_path, file, range_size, ranges, mut done, resumed } = prepared;
        let object = self.object;
        if resumed > 0 {
            tracing::info!(
                resumed_bytes = resumed,
                "resuming {}: {} of {} already on disk from an earlier run",
                object.source,
                podinit_core::progress::bytes(resumed),
                podinit_core::progress::bytes(object.size)
            );
        }
        self.progress.set_total(object.size);
        self.progress.inc(resumed);
        // Dropping written pages pays only when the pod's memory limit could not hold the file
        // (else the app starting next finds it in the page cache) and nothing reads them back.
        let limit = memory_limit();
        let drop_cache = hasher.is_idle() && observer.is_idle() && limit.is_some_and(|limit| object.size > limit / 2);
        tracing::debug!("{}: memory limit {limit:?}, written pages dropped: {drop_cache}", object.source);
        let verifier = Verifier::start(&file, hasher);
        verifier.advance(watermark(&ranges, &done));
        for i in (0..ranges.len()).filter(|i| done[*i]) {
            observer.range_done(i, &done, &file);
        }
        let earlier = read_back(&file, &ranges, &done, &digest);
        let mut states: Vec<Option<D::State>> = (0..ranges.len()).map(|_| None).collect();
        let mut pending: VecDeque<usize> = (0..ranges.len()).filter(|i| !done[*i]).collect();
        let mut running = FuturesUnordered::new();
        let mut fetched = 0u64;
        let state =
            Partial { source: object.source.clone(), validator: object.validator.clone(), size: object.size, range_size, done: Vec::new() };
        let mut checkpoint = Checkpoint::new(&dest, state);
        let outcome: Result<(), Error> = loop {
            while running.len() < self.options.concurrency.max(1) {
                let Some(i) = pending.pop_front() else { break };
                let range = ranges[i].clone();
                let (file, digest) = (&file, &digest);
                running.push(async move { (i, self.fetch_range(file, range, digest, drop_cache).await) });
            }
            let Some((i, result)) = running.next().await else { break Ok(()) };
            match result {
                Ok((n, range_state)) => {
                    fetched += n;
                    done[i] = true;
                    states[i] = Some(range_state);
                    verifier.advance(watermark(&ranges, &done));
                    observer.range_done(i, &done, &file);
                    checkpoint.maybe(&file, &done);
                    if let Some(failed) = checkpoint.failed() {
                        break Err(sync_failed(&dest, failed));
                    }
                }
                Err(err) => break Err(err),
            }
        };
        drop(running);
        if let Err(err) = outcome {
            let failed = checkpoint.settle().await.is_some() || err.source_error().downcast_ref::<WriteFailed>().is_some();
            if failed {
                // The kernel reports a writeback error once and for the whole file: no range on
                // disk can be vouched for any more, so a restart starts over.
                Partial::discard(&dest);
            } else if !self.source.changed(&err) {
                checkpoint.now(&file, &done).await;
            }
            return Err(err);
        }
        if let Some(failed) = checkpoint.settle().await {
            let err = sync_failed(&dest, failed);
            Partial::discard(&dest);
            return Err(err);
        }
        let hasher = verifier.finish().await?;
        let earlier = earlier.await.map_err(|e| anyhow::anyhow!("the verifier stopped: {e}"))?;
        for (i, state) in earlier.context("reading back the ranges an earlier run left, to verify them")? {
            states[i] = Some(state);
        }
        let states = states.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| anyhow::anyhow!("a range was never hashed"))?;
        Ok((hasher, states, Fetched { fetched, resumed, dest, data_path, file }))
    }

    /// One range, retried on its own: its chunks go to a writer on the blocking pool
    /// ([`write_range`]), which writes them at their offsets and computes the range's digest.
    async fn fetch_range<D: RangeDigest>(
        &self,
        file: &Arc<File>,
        range: Range<u64>,
        digest: &D,
        drop_cache: bool,
    ) -> Result<(u64, D::State), Error> {
        let what = format!("GET {} bytes {}-{}", self.object.source, range.start, range.end - 1);
        let _permit = match self.budget {
            Some(budget) => Some(budget.acquire().await.map_err(|e| anyhow::anyhow!("the transfer budget closed: {e}"))?),
            None => None,
        };
        retry::retry(
            self.ctx,
            &what,
            backoff(),
            |e| self.classify(e),
            |_| {
                let range = range.clone();
                async move {
                    let mut body = self.source.open(range.clone()).await?;
                    // The state is made here, not on the writer's thread: an attempt's state is
                    // always newer than the one it replaces.
                    let state = digest.start(&range);
                    let (tx, rx) = tokio::sync::mpsc::channel(WRITER_QUEUE);
                    let writer = tokio::task::spawn_blocking({
                        let (file, range) = (Arc::clone(file), range.clone());
                        move || write_range::<D>(&file, &range, state, rx, drop_cache)
                    });
                    let received = self.receive(&mut body, &range, tx).await;
                    // The writer is waited for whatever the attempt's outcome: a failed attempt's
                    // writes must be over before the retry writes the same offsets, and a write
                    // error (the first word on a failing disk) comes before the network's. (An
                    // attempt dropped by --timeout or SIGTERM ends the whole fetch, its range
                    // not recorded, so its writer is left to finish alone.)
                    let state = writer
                        .await
                        .map_err(|e| anyhow::anyhow!("the writer stopped: {e}"))?
                        .map_err(|e| WriteFailed(podinit_core::redact::io_reason(&e)))?;
                    let at = received?;
                    anyhow::ensure!(
                        at == range.end,
                        Transport(format!("the body ended after {} of {} bytes", at - range.start, range.end - range.start))
                    );
                    Ok((range.end - range.start, state))
                }
            },
        )
        .await
        .map_err(|e| self.source.explain(e))
    }

    /// The body of one attempt of `range`, in batches to its writer; returns where it ended.
    /// A writer that stopped (a failed write) ends it early: the caller reports why.
    async fn receive(&self, body: &mut S::Body, range: &Range<u64>, tx: tokio::sync::mpsc::Sender<Vec<Bytes>>) -> anyhow::Result<u64> {
        let mut at = range.start;
        let mut batch = Vec::new();
        let mut batched = 0;
        while let Some(chunk) = self.next_chunk(body).await? {
            let end = at + chunk.len() as u64;
            anyhow::ensure!(
                end <= range.end,
                Transport(format!("the server sent more than the {} bytes asked for", range.end - range.start))
            );
            self.progress.inc(chunk.len() as u64);
            at = end;
            batched += chunk.len();
            batch.push(chunk);
            if batched >= WRITER_BATCH {
                batched = 0;
                if tx.send(std::mem::take(&mut batch)).await.is_err() {
                    return Ok(at);
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        Ok(at)
    }

    /// One range into memory, retried on its own (extracting while downloading).
    pub async fn fetch_into_memory(&self, range: Range<u64>) -> Result<Bytes, Error> {
        let what = format!("GET {} bytes {}-{}", self.object.source, range.start, range.end - 1);
        retry::retry(
            self.ctx,
            &what,
            backoff(),
            |e| self.classify(e),
            |_| {
                let range = range.clone();
                async move {
                    let mut body = self.source.open(range.clone()).await?;
                    let want = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
                    let mut buf = Vec::with_capacity(want);
                    while let Some(chunk) = self.next_chunk(&mut body).await? {
                        anyhow::ensure!(buf.len() + chunk.len() <= want, Transport("the server sent more than asked for".into()));
                        buf.extend_from_slice(&chunk);
                    }
                    anyhow::ensure!(buf.len() == want, Transport(format!("the body ended after {} of {want} bytes", buf.len())));
                    Ok(Bytes::from(buf))
                }
            },
        )
        .await
        .map_err(|e| self.source.explain(e))
    }

    /// The next piece of a body, or a [`Transport`] error when nothing came for the stall time.
    pub async fn next_chunk(&self, body: &mut S::Body) -> anyhow::Result<Option<Bytes>> {
        let stall = self.options.stall;
        match tokio::time::timeout(stall, self.source.next(body)).await {
            Ok(chunk) => chunk,
            Err(_) => Err(Transport(format!("no data for {}", humantime::format_duration(stall))).into()),
        }
    }
}

/// The end of the contiguous prefix of ranges on disk.
fn watermark(ranges: &[Range<u64>], done: &[bool]) -> u64 {
    match done.iter().position(|d| !d) {
        Some(i) => ranges[i].start,
        None => ranges.last().map_or(0, |r| r.end),
    }
}

/// Bytes a range's network side hands its writer at a time, and batches queued: about
/// 512 KiB in memory per range (the batch filling, two queued, one being written; a pod's
/// memory limit counts every buffer), few wake-ups of the writer.
const WRITER_BATCH: usize = 128 << 10;
const WRITER_QUEUE: usize = 2;

/// The writer of one range (on the blocking pool): each batch written at its offset, fed to the
/// range's digest `state`, and written behind; returns the state once the network side is done
/// (its sender dropped).
fn write_range<D: RangeDigest>(
    file: &File,
    range: &Range<u64>,
    mut state: D::State,
    mut rx: tokio::sync::mpsc::Receiver<Vec<Bytes>>,
    drop_cache: bool,
) -> std::io::Result<D::State> {
    let mut behind = WriteBehind::new(range.start, drop_cache);
    let mut at = range.start;
    while let Some(batch) = rx.blocking_recv() {
        for chunk in &batch {
            file.write_all_at(chunk, at)?;
            D::update(&mut state, chunk);
            at += chunk.len() as u64;
        }
        behind.written(file, at)?;
    }
    behind.finish(file, at)?;
    Ok(state)
}

/// Writing behind a range's download (the pattern of Linux's own advice for streaming writes):
/// every [`WriteBehind::STEP`] written bytes are handed to writeback at once
/// (`SYNC_FILE_RANGE_WRITE`, which does not wait), and the step before is waited for, so at
/// most two steps per range are dirty or under writeback; under a tight memory limit the pages
/// written back are dropped (`POSIX_FADV_DONTNEED`): the limit then never has to reclaim them,
/// and nothing needs them again (digests come from the bytes in memory). The final fdatasync
/// finds little left to write. Errors of the wait are returned: a writeback error reported
/// here would not be reported again by the fdatasync of the same file.
struct WriteBehind {
    /// The end of what was handed to writeback.
    started: u64,
    /// The end of what is known written back.
    waited: u64,
    drop_cache: bool,
}

impl WriteBehind {
    const STEP: u64 = 1 << 20;

    fn new(at: u64, drop_cache: bool) -> Self {
        Self { started: at, waited: at, drop_cache }
    }

    fn written(&mut self, file: &File, end: u64) -> std::io::Result<()> {
        if end - self.started < Self::STEP {
            return Ok(());
        }
        sync_range(file, self.started..end, false)?;
        self.wait(file, self.started)?;
        self.started = end;
        Ok(())
    }

    /// The range is written: the rest handed to writeback, and waited for when its pages are
    /// to be dropped.
    fn finish(&mut self, file: &File, end: u64) -> std::io::Result<()> {
        if end > self.started {
            sync_range(file, self.started..end, false)?;
            self.started = end;
        }
        if self.drop_cache { self.wait(file, end) } else { Ok(()) }
    }

    /// Waits for writeback up to `end` (and drops those pages when asked).
    fn wait(&mut self, file: &File, end: u64) -> std::io::Result<()> {
        if end <= self.waited {
            return Ok(());
        }
        let range = self.waited..end;
        sync_range(file, range.clone(), true)?;
        if self.drop_cache {
            let (at, len) = (i64::try_from(range.start).unwrap_or(i64::MAX), i64::try_from(range.end - range.start).unwrap_or(i64::MAX));
            let _ = nix::fcntl::posix_fadvise(file, at, len, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        }
        self.waited = end;
        Ok(())
    }
}

/// `sync_file_range` of `range`: start writeback, or (`wait`) write and wait for all of it.
fn sync_range(file: &File, range: Range<u64>, wait: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    let (at, len) = (i64::try_from(range.start).unwrap_or(i64::MAX), i64::try_from(range.end - range.start).unwrap_or(i64::MAX));
    #[expect(unsafe_code, reason = "sync_file_range has no safe wrapper in nix 0.31")]
    // SAFETY: the descriptor stays open for the call (borrowed from `file`); the other
    // arguments are plain integers.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), at, len, flags) };
    match nix::errno::Errno::result(rc) {
        // A filesystem without it (some FUSE and network ones): the fdatasync does the work.
        Ok(_) | Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EINVAL | nix::errno::Errno::EOPNOTSUPP) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The work of [`read_back`]: (range index, state) of each range on disk.
type ReadBack<S> = tokio::task::JoinHandle<std::io::Result<Vec<(usize, S)>>>;

/// The states of the ranges an earlier run left, read back from the file once, in one
/// blocking task (none when the digest is idle).
fn read_back<D: RangeDigest>(file: &Arc<File>, ranges: &[Range<u64>], done: &[bool], digest: &D) -> ReadBack<D::State> {
    let todo: Vec<(usize, Range<u64>)> = ranges.iter().cloned().enumerate().filter(|(i, _)| done[*i]).collect();
    let (file, digest) = (Arc::clone(file), digest.clone());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(todo.len());
        let mut buf = if digest.is_idle() { Vec::new() } else { vec![0u8; 1 << 20] };
        for (i, range) in todo {
            let mut state = digest.start(&range);
            if !digest.is_idle() {
                read_range(&file, range, &mut buf, |data| D::update(&mut state, data))?;
            }
            out.push((i, state));
        }
        Ok(out)
    })
}

/// Reads `range` of `file` (bytes on disk, to verify them) in pieces of `buf`'s size (not
/// empty), each handed to `feed`.
pub fn read_range(file: &File, range: Range<u64>, buf: &mut [u8], mut feed: impl FnMut(&[u8])) -> std::io::Result<()> {
    assert!(!buf.is_empty(), "a buffer to read into");
    let mut at = range.start;
    while at < range.end {
        let n = usize::try_from(range.end - at).unwrap_or(usize::MAX).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        feed(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

/// The memory limit of this process's cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`;
/// a container's own group, or the root of its view), when one is set. Read once: a prefix
/// downloads many objects under the same limit.
fn memory_limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(read_memory_limit)
}

fn read_memory_limit() -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let read = |path: &str| {
        let text = std::fs::read_to_string(path).ok()?;
        // v2 says `max`; v1 says a number near 2^63 when unlimited.
        text.trim().parse::<u64>().ok().filter(|limit| *limit < 1 << 60)
    };
    groups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let base = if controllers.is_empty() {
            "/sys/fs/cgroup"
        } else if controllers.split(',').any(|c| c == "memory") {
            "/sys/fs/cgroup/memory"
        } else {
            return None;
        };
        let file = if controllers.is_empty() { "memory.max" } else { "memory.limit_in_bytes" };
        read(&format!("{base}{}/{file}", path.trim_end_matches('/'))).or_else(|| read(&format!("{base}/{file}")))
    })
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
    if size == 0 {
        return Ok(());
    }
    let len = i64::try_from(size).unwrap_or(i64::MAX);
    match nix::fcntl::posix_fallocate(file, 0, len) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ENOSPC) => Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
        Err(_) => file.set_len(size),
    }
}

/// Hashes the file in a blocking thread, up to the watermark it is told.
struct Verifier<H> {
    tx: std::sync::mpsc::Sender<u64>,
    handle: tokio::task::JoinHandle<std::io::Result<H>>,
}

impl<H: Digest> Verifier<H> {
    fn start(file: &Arc<File>, mut hasher: H) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let file = Arc::clone(file);
        let handle = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0u64;
            while let Ok(mark) = rx.recv() {
                if hasher.is_idle() {
                    continue;
                }
                if at < mark {
                    read_range(&file, at..mark, &mut buf, |data| hasher.update(data))?;
                    at = mark;
                }
            }
            Ok(hasher)
        });
        Self { tx, handle }
    }

    fn advance(&self, mark: u64) {
        let _ = self.tx.send(mark);
    }

    async fn finish(self) -> Result<H, Error> {
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
    /// Why a sync failed, set by the record that saw it. Sticky, and the end of recording: the
    /// kernel reports a writeback error once, so a later sync (or the fdatasync before the
    /// rename) would succeed over lost writes.
    failed: Arc<OnceLock<String>>,
}

impl Checkpoint {
    /// Often enough that a killed download loses little and that dirty pages (charged to the
    /// pod's memory limit) are written out as the download goes, not all at the end.
    const EVERY: Duration = Duration::from_millis(250);

    fn new(dest: &Path, state: Partial) -> Self {
        Self { dest: dest.to_owned(), state, last: Instant::now(), running: None, failed: Arc::default() }
    }

    /// Why a sync failed, if one did.
    fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
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
        if self.last.elapsed() < Self::EVERY || self.running.as_ref().is_some_and(|h| !h.is_finished()) || self.failed().is_some() {
            return;
        }
        self.last = Instant::now();
        let Some(state) = self.next(done) else { return };
        let (file, dest, failed) = (Arc::clone(file), self.dest.clone(), Arc::clone(&self.failed));
        self.running = Some(tokio::task::spawn_blocking(move || record(&file, &dest, &state, &failed)));
    }

    /// Waits for a periodic checkpoint under way; says why a sync failed, if one did.
    async fn settle(&mut self) -> Option<&str> {
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
        self.failed()
    }

    async fn now(&mut self, file: &File, done: &[bool]) {
        if self.settle().await.is_some() {
            return;
        }
        if let Some(state) = self.next(done) {
            record(file, &self.dest, &state, &self.failed);
        }
    }
}

/// fdatasync, then the state recorded; a failed sync is kept in `failed` (nothing recorded).
fn record(file: &File, dest: &Path, state: &Partial, failed: &OnceLock<String>) {
    if let Err(e) = file.sync_data() {
        tracing::warn!("cannot sync the partial download ({e}); a restart will start over");
        let _ = failed.set(podinit_core::redact::io_reason(&e));
        return;
    }
    if let Err(e) = state.save(dest) {
        tracing::warn!("cannot record the partial download ({e:#}); a restart will start over");
    }
}

/// The error of a failed sync of `dest`'s partial download.
fn sync_failed(dest: &Path, why: &str) -> Error {
    Error::new(Kind::Failed, anyhow::anyhow!("{}: syncing the download to disk failed: {why}", dest.display()))
        .with_hint("nothing was published and the partial download was dropped; check the volume (full, read-only, failing) and rerun")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_the_end_of_the_contiguous_prefix() {
        let ranges = ranges(10, 3);
        assert_eq!(watermark(&ranges, &[false, true, true, true]), 0);
        assert_eq!(watermark(&ranges, &[true, true, false, true]), 6);
        assert_eq!(watermark(&ranges, &[true, true, true, true]), 10);
    }
}

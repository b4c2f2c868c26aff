//! `--extract`: a `.tar`, `.tar.gz` or `.tar.zst` object unpacked while it downloads.
//!
//! Ranges are fetched concurrently but consumed in order through a bounded window
//! (`concurrency` ranges of at most [`WINDOW_PART`] bytes in memory), and fed to a blocking
//! thread that hashes them (verification as for a plain download), decompresses and unpacks
//! (`podinit_transfer::unpack`: what an entry may and may not do) into the new data directory of a
//! [`DataSet`]. Only when the archive is complete, verified and synced does the set switch to
//! it: readers see the old version or the new one whole, never a mix, whatever the types of
//! its entries were before. The set's data directory also holds the manifest
//! (`..podinit-s3.json`: the object's ETag and a fingerprint of the tree as written), so a
//! rerun with the same object and an untouched tree costs one HEAD.

use std::ffi::OsStr;
use std::io::{self, Read};

use anyhow::Context as _;
use aws_sdk_s3::Client;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use podinit_core::fs::root::Dir;
use podinit_core::fs::set::DataSet;
use podinit_core::progress::Progress;
use podinit_core::{Context, Error, Kind};

use podinit_transfer::unpack::{self, Limits, Unpacker};
use podinit_transfer::{Object, Transfer};

use crate::object::{Remote, S3Source};
use crate::spec::{self, ArchiveFormat};
use crate::verify::Hasher;
use serde::{Deserialize, Serialize};

/// The largest range held in memory while extracting.
pub(crate) const WINDOW_PART: u64 = 8 << 20;

/// The manifest's name inside the data directory (a `..` name: no link in the destination).
const MANIFEST: &str = "..podinit-s3";
/// Its name before 2026-12-07 (a set written then is still recognised as current).
const LEGACY_MANIFEST: &str = "..podinit-s3.json";

/// What the data directory holds.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    source: String,
    etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version_id: Option<String>,
    /// [`unpack::fingerprint`] of the tree as written.
    fingerprint: String,
}

/// What an extraction did.
pub(crate) struct Extracted {
    pub(crate) verified: String,
    pub(crate) entries: u64,
}

/// Whether the set's current version is `url`'s object at `etag`, untouched since written.
pub(crate) fn is_current(set: &DataSet, url: &spec::S3Url, etag: &str) -> bool {
    let Ok(Some(current)) = set.current() else { return false };
    let Some(manifest) = current
        .read(OsStr::new(MANIFEST))
        .or_else(|_| current.read(OsStr::new(LEGACY_MANIFEST)))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok())
    else {
        return false;
    };
    manifest.source == url.to_string() && manifest.etag == etag && unpack::fingerprint(&current).is_ok_and(|f| f == manifest.fingerprint)
}

/// Downloads and unpacks `remote` as a new version of `set`, then switches to it.
#[expect(clippy::too_many_arguments, reason = "one call site")]
pub(crate) async fn extract(
    ctx: &Context,
    s3: &Client,
    url: &spec::S3Url,
    remote: &Remote,
    format: ArchiveFormat,
    set: &DataSet,
    opts: &crate::object::Options,
    progress: &Progress,
) -> Result<Extracted, Error> {
    let dest = set.dir().path();
    let staged = set.stage(0o755, None, None).map_err(|e| podinit_core::fs::explain_write(e, dest))?;
    let root = staged.dir().try_clone().with_context(|| format!("opening {}", staged.dir().path().display()))?.shown_as(dest);
    let (verified, entries, root) = unpack_streamed(ctx, s3, url, remote, format, root, opts, progress).await?;
    let manifest = Manifest {
        source: url.to_string(),
        etag: remote.etag.clone(),
        version_id: remote.version_id.clone(),
        fingerprint: unpack::fingerprint(&root)?,
    };
    let write_manifest = || -> anyhow::Result<()> {
        let mut file = root.create_file(OsStr::new(MANIFEST))?;
        serde_json::to_writer_pretty(&mut file, &manifest).context("writing the manifest")?;
        Ok(())
    };
    write_manifest().map_err(|e| podinit_core::fs::explain_write(e, dest))?;
    staged.commit().map_err(|e| podinit_core::fs::explain_write(e, dest))?;
    Ok(Extracted { verified, entries })
}

#[expect(clippy::too_many_arguments, reason = "one call site")]
async fn unpack_streamed(
    ctx: &Context,
    s3: &Client,
    url: &spec::S3Url,
    remote: &Remote,
    format: ArchiveFormat,
    root: Dir,
    opts: &crate::object::Options,
    progress: &Progress,
) -> Result<(String, u64, Dir), Error> {
    let (concurrency, stall, limits, stop) = (opts.concurrency.max(1), opts.stall, opts.limits, ctx.stop_check());
    progress.set_total(remote.size);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(concurrency.max(1));
    let hasher = Hasher::new(remote.expected.plan());
    let dest = root.path().to_owned();
    let unpacker = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader { rx, current: bytes::Bytes::new(), hasher };
        unpack(reader, format, root, limits, stop)
    });
    let source = S3Source { s3, url, remote };
    let object = Object { source: url.to_string(), size: remote.size, validator: remote.etag.clone() };
    let options = podinit_transfer::Options { concurrency, part_size: WINDOW_PART, file: podinit_core::fs::FileOptions::default(), stall };
    let transfer = Transfer { ctx, source: &source, object: &object, options: &options, progress, budget: None };
    let ranges = spec::ranges(remote.size, WINDOW_PART);
    let mut window = FuturesOrdered::new();
    let mut next = 0usize;
    let download: Result<(), Error> = async {
        loop {
            while window.len() < concurrency.max(1) && next < ranges.len() {
                let range = ranges[next].clone();
                next += 1;
                window.push_back(transfer.fetch_into_memory(range));
            }
            let Some(piece) = window.next().await else { return Ok(()) };
            let piece = piece?;
            progress.inc(piece.len() as u64);
            if tx.send(piece).await.is_err() {
                // The unpacker stopped early: its error says why.
                return Ok(());
            }
        }
    }
    .await;
    drop(window);
    drop(tx);
    let unpacked = unpacker.await.map_err(|e| anyhow::anyhow!("the unpacker stopped: {e}"))?;
    download?;
    // Stopped by the deadline or a signal: exit 124 or 143, as any wait.
    let (hasher, entries, root) = unpacked.map_err(|e| {
        ctx.check_shutdown().err().unwrap_or_else(|| podinit_core::fs::explain_write(e.context(format!("extracting {url}")), &dest))
    })?;
    let verified = hasher
        .finish()
        .map_err(|m| Error::new(Kind::Failed, anyhow::anyhow!("{url}: verification failed: {m}")).with_hint("nothing was extracted"))?;
    Ok((verified, entries, root))
}

/// The downloaded bytes, in order, as a `Read`; hashed as they pass.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
    hasher: Hasher,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(next) => {
                    self.hasher.update(&next);
                    self.current = next;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Unpacks the archive into `root`; returns the hasher (having seen every byte), the number
/// of entries, and the root.
fn unpack(
    mut reader: ChannelReader,
    format: ArchiveFormat,
    root: Dir,
    limits: Limits,
    stop: unpack::Stop,
) -> anyhow::Result<(Hasher, u64, Dir)> {
    let mut unpacker = Unpacker::new(root.try_clone()?, limits, Some(stop));
    {
        let format = match format {
            ArchiveFormat::Tar | ArchiveFormat::Auto => podinit_transfer::archive::Format::Tar,
            ArchiveFormat::TarGz => podinit_transfer::archive::Format::TarGz,
            ArchiveFormat::TarZst => podinit_transfer::archive::Format::TarZst,
        };
        unpacker.tar(podinit_transfer::archive::tar_decoder(format, &mut reader)?)?;
    }
    // Whatever follows the archive (padding) still counts for verification.
    io::copy(&mut reader, &mut io::sink()).context("reading the rest of the download")?;
    let entries = unpacker.finish()?;
    Ok((reader.hasher, entries, root))
}

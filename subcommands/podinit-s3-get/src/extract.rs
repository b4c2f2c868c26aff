//! `--extract`: a `.tar`, `.tar.gz` or `.tar.zst` object unpacked while it downloads.
//!
//! Ranges are fetched concurrently but consumed in order through a bounded window
//! (`concurrency` ranges of at most [`WINDOW_PART`] bytes in memory), and fed to a blocking
//! thread that hashes them (verification as for a plain download), decompresses and unpacks
//! into a staging directory inside the destination. Entries that would land outside it (an
//! absolute path, `..`), links pointing outside it, and device nodes are refused before
//! anything is written for them. Only when the archive is complete and verified are its
//! top-level entries renamed into the destination, each replacing the old one whole.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_sdk_s3::Client;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use podinit_core::progress::Progress;
use podinit_core::retry;
use podinit_core::{Context, Error, Kind};

use crate::client::{self, CallError};
use crate::object::{Remote, backoff, next_chunk, range_get};
use crate::spec::{self, ArchiveFormat};
use crate::verify::Hasher;

/// The largest range held in memory while extracting.
pub(crate) const WINDOW_PART: u64 = 8 << 20;

/// What an extraction did.
pub(crate) struct Extracted {
    pub(crate) verified: String,
    pub(crate) entries: u64,
    /// Top-level names now in the destination.
    pub(crate) top: Vec<String>,
}

#[expect(clippy::too_many_arguments, reason = "one call site")]
pub(crate) async fn extract(
    ctx: &Context,
    s3: &Client,
    url: &spec::S3Url,
    remote: &Remote,
    format: ArchiveFormat,
    dest: &Path,
    concurrency: usize,
    stall: Duration,
    progress: &Progress,
) -> Result<Extracted, Error> {
    clean_leftovers(dest);
    let staging = dest.join(format!(".podinit-extract-{}", std::process::id()));
    std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let result = unpack_streamed(ctx, s3, url, remote, format, &staging, concurrency, stall, progress).await;
    let outcome = result.and_then(|(verified, entries)| {
        let top = publish(&staging, dest)?;
        Ok(Extracted { verified, entries, top })
    });
    let _ = std::fs::remove_dir_all(&staging);
    outcome
}

#[expect(clippy::too_many_arguments, reason = "one call site")]
async fn unpack_streamed(
    ctx: &Context,
    s3: &Client,
    url: &spec::S3Url,
    remote: &Remote,
    format: ArchiveFormat,
    staging: &Path,
    concurrency: usize,
    stall: Duration,
    progress: &Progress,
) -> Result<(String, u64), Error> {
    progress.set_total(remote.size);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(concurrency.max(1));
    let hasher = Hasher::new(remote.expected.plan());
    let staging_owned = staging.to_owned();
    let unpacker = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader { rx, current: bytes::Bytes::new(), hasher };
        unpack(reader, format, &staging_owned)
    });
    let ranges = spec::ranges(remote.size, WINDOW_PART);
    let mut window = FuturesOrdered::new();
    let mut next = 0usize;
    let download: Result<(), Error> = async {
        loop {
            while window.len() < concurrency.max(1) && next < ranges.len() {
                let range = ranges[next].clone();
                next += 1;
                window.push_back(fetch_into_memory(ctx, s3, url, remote, range, stall));
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
    let (hasher, entries) = unpacked.map_err(|e| Error::new(Kind::Failed, e.context(format!("extracting {url}"))))?;
    let verified = hasher
        .finish()
        .map_err(|m| Error::new(Kind::Failed, anyhow::anyhow!("{url}: verification failed: {m}")).with_hint("nothing was extracted"))?;
    Ok((verified, entries))
}

async fn fetch_into_memory(
    ctx: &Context,
    s3: &Client,
    url: &spec::S3Url,
    remote: &Remote,
    range: std::ops::Range<u64>,
    stall: Duration,
) -> Result<bytes::Bytes, Error> {
    let what = format!("GET {url} bytes {}-{}", range.start, range.end - 1);
    retry::retry(ctx, &what, backoff(), client::classify, |_| {
        let range = range.clone();
        async move {
            let mut body = range_get(s3, url, remote, &range).await?;
            let want = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
            let mut buf = Vec::with_capacity(want);
            while let Some(chunk) = next_chunk(&mut body, stall).await? {
                anyhow::ensure!(buf.len() + chunk.len() <= want, CallError::Transport("the store sent more than asked for".into()));
                buf.extend_from_slice(&chunk);
            }
            anyhow::ensure!(buf.len() == want, CallError::Transport(format!("the body ended after {} of {want} bytes", buf.len())));
            Ok(bytes::Bytes::from(buf))
        }
    })
    .await
    .map_err(|e| client::explain(e, url))
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

/// Unpacks the archive into `staging`; returns the hasher (having seen every byte) and the
/// number of entries.
fn unpack(mut reader: ChannelReader, format: ArchiveFormat, staging: &Path) -> anyhow::Result<(Hasher, u64)> {
    let entries = {
        let decoded: Box<dyn Read + '_> = match format {
            ArchiveFormat::Tar | ArchiveFormat::Auto => Box::new(&mut reader),
            ArchiveFormat::TarGz => Box::new(flate2::read::MultiGzDecoder::new(&mut reader)),
            ArchiveFormat::TarZst => Box::new(zstd::stream::read::Decoder::new(&mut reader).context("starting the zstd decoder")?),
        };
        unpack_tar(decoded, staging)?
    };
    // Whatever follows the archive (padding) still counts for verification.
    io::copy(&mut reader, &mut io::sink()).context("reading the rest of the download")?;
    Ok((reader.hasher, entries))
}

fn unpack_tar(decoded: impl Read, staging: &Path) -> anyhow::Result<u64> {
    let mut archive = tar::Archive::new(decoded);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(false);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut count = 0u64;
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading an archive entry")?;
        let path = entry.path().context("an entry with an unreadable name")?.into_owned();
        let inside = check_entry(&entry, &path)?;
        if !inside {
            continue;
        }
        let unpacked = entry.unpack_in(staging).with_context(|| format!("unpacking '{}'", path.display()))?;
        if !unpacked {
            bail!("entry '{}' would land outside the destination: refused", path.display());
        }
        count += 1;
    }
    Ok(count)
}

/// Refuses entries that would escape; `Ok(false)` for entries to skip (device nodes, FIFOs).
fn check_entry<R: Read>(entry: &tar::Entry<'_, R>, path: &Path) -> anyhow::Result<bool> {
    let shown = path.display();
    let Some(normal) = normalize(Path::new(""), path) else {
        bail!("entry '{shown}' would land outside the destination (absolute or '..'): refused");
    };
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry.link_name().context("reading a link target")?.unwrap_or_default().into_owned();
        let base = if kind.is_symlink() { normal.parent().unwrap_or(Path::new("")).to_owned() } else { PathBuf::new() };
        if target.is_absolute() || normalize(&base, &target).is_none() {
            bail!("link '{shown}' points outside the destination (to '{}'): refused", target.display());
        }
    } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        tracing::warn!("skipping '{shown}': device nodes and FIFOs are not extracted");
        return Ok(false);
    }
    Ok(true)
}

/// `base/path` with `.` and `..` resolved lexically; `None` when it climbs above the root or
/// is absolute.
fn normalize(base: &Path, path: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = base.iter().collect();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

/// Moves every top-level entry of `staging` into `dest`, replacing what is there.
fn publish(staging: &Path, dest: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(staging).with_context(|| format!("reading {}", staging.display()))? {
        let entry = entry.with_context(|| format!("reading {}", staging.display()))?;
        let name = entry.file_name();
        let target = dest.join(&name);
        let old = dest.join(format!(".podinit-old-{}-{}", std::process::id(), name.to_string_lossy()));
        let replaced_dir = std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir());
        if replaced_dir {
            std::fs::rename(&target, &old).with_context(|| format!("moving the old {} aside", target.display()))?;
        }
        std::fs::rename(entry.path(), &target).with_context(|| format!("moving {} into place", target.display()))?;
        if replaced_dir {
            let _ = std::fs::remove_dir_all(&old);
        }
        names.push(name.to_string_lossy().into_owned());
    }
    podinit_core::fs::sync_dir(dest).with_context(|| format!("syncing {}", dest.display()))?;
    names.sort();
    Ok(names)
}

/// Staging directories of an extraction that was killed.
fn clean_leftovers(dest: &Path) {
    let Ok(entries) = std::fs::read_dir(dest) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".podinit-extract-") || name.starts_with(".podinit-old-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_paths_inside() {
        assert_eq!(normalize(Path::new(""), Path::new("a/./b/../c")), Some(PathBuf::from("a/c")));
        assert_eq!(normalize(Path::new("a/b"), Path::new("../../x")), Some(PathBuf::from("x")));
        assert_eq!(normalize(Path::new("a"), Path::new("../../x")), None);
        assert_eq!(normalize(Path::new(""), Path::new("/etc/passwd")), None);
    }
}

//! What podinit remembers beside the files it downloaded, so a rerun costs one request.
//!
//! A [`Manifest`] records, per file, which object version it holds (ETag, version id, size)
//! and the local file as it was left (inode, size, mtime): a rerun skips a file only when both
//! still agree, so a file changed or replaced locally is downloaded again. For one object it is
//! `.NAME.podinit-s3.json` beside the file; for a prefix or an extracted archive it is
//! `.podinit-s3.json` in the directory. A [`Partial`] describes an unfinished download
//! (`.NAME.podinit-partial` plus `.json`): which ranges are on disk, for which ETag, so a
//! restarted init container fetches only the rest.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use podinit_core::fs::{FileOptions, hidden_sibling, write_atomic};
use serde::{Deserialize, Serialize};

/// One downloaded file and the object it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version_id: Option<String>,
    pub(crate) size: u64,
    pub(crate) ino: u64,
    pub(crate) mtime_ns: i64,
    /// Absent in manifests of older versions: such a record is never current (one download).
    #[serde(default)]
    pub(crate) ctime_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sha256: Option<String>,
}

impl Record {
    /// Describes `path` as it is now, holding the object with `etag`.
    pub(crate) fn of(path: &Path, etag: &str, version_id: Option<&str>, sha256: Option<String>) -> anyhow::Result<Self> {
        let meta = std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            etag: etag.to_owned(),
            version_id: version_id.map(str::to_owned),
            size: meta.size(),
            ino: meta.ino(),
            mtime_ns: mtime_ns(&meta),
            ctime_ns: Some(ctime_ns(&meta)),
            sha256,
        })
    }

    /// `path` is still the file this record describes, holding the object with `etag`.
    pub(crate) fn is_current(&self, path: &Path, etag: &str, size: u64) -> bool {
        self.etag == etag
            && self.size == size
            && std::fs::symlink_metadata(path).is_ok_and(|m| {
                m.is_file()
                    && m.size() == self.size
                    && m.ino() == self.ino
                    && mtime_ns(&m) == self.mtime_ns
                    && Some(ctime_ns(&m)) == self.ctime_ns
            })
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec())
}

fn ctime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec())
}

/// The records of one destination, keyed by path relative to the manifest's directory.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) source: String,
    pub(crate) files: BTreeMap<String, Record>,
}

impl Manifest {
    /// `.NAME.podinit-s3.json` beside a single file.
    pub(crate) fn beside(dest: &Path) -> PathBuf {
        hidden_sibling(dest, ".podinit-s3.json")
    }

    /// `.podinit-s3.json` inside a directory.
    pub(crate) fn inside(dir: &Path) -> PathBuf {
        dir.join(".podinit-s3.json")
    }

    /// The manifest at `path` if it exists, is readable and is for `source`; else empty.
    pub(crate) fn load(path: &Path, source: &str) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Self>(&bytes).ok())
            .filter(|m| m.source == source)
            .unwrap_or_else(|| Self { source: source.to_owned(), files: BTreeMap::new() })
    }

    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).context("encoding the manifest")?;
        write_atomic(path, &bytes, FileOptions { mode: 0o644, uid: None, gid: None }).map(|_| ())
    }
}

/// An unfinished download of one object into `.NAME.podinit-partial`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Partial {
    pub(crate) source: String,
    pub(crate) etag: String,
    pub(crate) size: u64,
    pub(crate) range_size: u64,
    /// Indexes of the ranges on disk (synced before they were recorded).
    pub(crate) done: Vec<usize>,
}

impl Partial {
    /// Where the data of an unfinished download of `dest` lives.
    pub(crate) fn data_path(dest: &Path) -> PathBuf {
        hidden_sibling(dest, ".podinit-partial")
    }

    pub(crate) fn state_path(dest: &Path) -> PathBuf {
        hidden_sibling(dest, ".podinit-partial.json")
    }

    pub(crate) fn load(dest: &Path) -> Option<Self> {
        let bytes = std::fs::read(Self::state_path(dest)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub(crate) fn save(&self, dest: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(self).context("encoding the download state")?;
        write_atomic(&Self::state_path(dest), &bytes, FileOptions { mode: 0o600, uid: None, gid: None }).map(|_| ())
    }

    /// Removes the data and the state of an unfinished download (if any).
    pub(crate) fn discard(dest: &Path) {
        let _ = std::fs::remove_file(Self::state_path(dest));
        let _ = std::fs::remove_file(Self::data_path(dest));
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use std::os::unix::fs::FileExt as _;

    use super::*;

    #[test]
    fn records_notice_local_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.bin");
        std::fs::write(&file, b"12345").unwrap();
        let record = Record::of(&file, "\"e1\"", None, None).unwrap();
        assert!(record.is_current(&file, "\"e1\"", 5));
        assert!(!record.is_current(&file, "\"e2\"", 5), "another ETag");
        assert!(!record.is_current(&file, "\"e1\"", 6), "another size on the store");
        std::fs::write(dir.path().join("other"), b"12345").unwrap();
        std::fs::rename(dir.path().join("other"), &file).unwrap();
        assert!(!record.is_current(&file, "\"e1\"", 5), "replaced locally (another inode)");
        // Edited in place, same size, mtime put back: only ctime tells.
        let record = Record::of(&file, "\"e1\"", None, None).unwrap();
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().write_all_at(b"X", 0).unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
        assert!(!record.is_current(&file, "\"e1\"", 5), "edited in place with the mtime restored");
    }

    #[test]
    fn manifests_round_trip_and_belong_to_one_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = Manifest::inside(dir.path());
        let mut m = Manifest::load(&path, "s3://b/p/");
        assert!(m.files.is_empty());
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        m.files.insert("a".into(), Record::of(&dir.path().join("a"), "\"e\"", Some("v1"), None).unwrap());
        m.save(&path).unwrap();
        assert_eq!(Manifest::load(&path, "s3://b/p/").files.len(), 1);
        assert!(Manifest::load(&path, "s3://b/other/").files.is_empty());
        assert_eq!(Manifest::beside(&dir.path().join("m.bin")), dir.path().join(".m.bin.podinit-s3.json"));
    }
}

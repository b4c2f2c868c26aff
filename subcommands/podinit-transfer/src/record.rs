//! What a downloaded file holds and how it was left, so a rerun can tell "current" without
//! reading it: a [`Record`] is current only while the source says the same version (ETag or
//! Last-Modified, size) and the local file is the same inode with the same size, mtime and
//! ctime (a file edited in place, even with its mtime put back, is downloaded again).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// One downloaded file and the object it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    pub size: u64,
    pub ino: u64,
    pub mtime_ns: i64,
    /// Absent in manifests of older versions: such a record is never current (one download).
    #[serde(default)]
    pub ctime_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Record {
    /// Describes `path` as it is now, holding the object with `etag`.
    pub fn of(path: &Path, etag: &str, version_id: Option<&str>, sha256: Option<String>) -> anyhow::Result<Self> {
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
    pub fn is_current(&self, path: &Path, etag: &str, size: u64) -> bool {
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
}

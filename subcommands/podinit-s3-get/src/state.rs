//! What podinit remembers beside the files it downloaded, so a rerun costs one request.
//!
//! A [`Manifest`] records, per file, which object version it holds (ETag, version id, size)
//! and the local file as it was left (inode, size, mtime): a rerun skips a file only when both
//! still agree, so a file changed or replaced locally is downloaded again. For one object it is
//! `.NAME.podinit-s3` beside the file; for a prefix it is `.podinit-s3` in the directory (no
//! `.json` ending: apps that load every `*.json` of a folder must not take it; the names
//! before 2026-12-07 had one and are still read, then removed). An unfinished download is podinit-transfer's
//! `Partial`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use podinit_core::fs::{FileOptions, hidden_sibling, write_atomic};
pub(crate) use podinit_transfer::Record;
use serde::{Deserialize, Serialize};

/// The records of one destination, keyed by path relative to the manifest's directory.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) source: String,
    pub(crate) files: BTreeMap<String, Record>,
}

impl Manifest {
    /// `.NAME.podinit-s3` beside a single file.
    pub(crate) fn beside(dest: &Path) -> PathBuf {
        hidden_sibling(dest, ".podinit-s3")
    }

    /// `.podinit-s3` inside a directory.
    pub(crate) fn inside(dir: &Path) -> PathBuf {
        dir.join(".podinit-s3")
    }

    /// The manifest at `path` if it exists, is readable and is for `source`; else empty.
    pub(crate) fn load(path: &Path, source: &str) -> Self {
        podinit_core::fs::read_state(path)
            .and_then(|bytes| serde_json::from_slice::<Self>(&bytes).ok())
            .filter(|m| m.source == source)
            .unwrap_or_else(|| Self { source: source.to_owned(), files: BTreeMap::new() })
    }

    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).context("encoding the manifest")?;
        write_atomic(path, &bytes, FileOptions { mode: 0o644, uid: None, gid: None })?;
        podinit_core::fs::remove_legacy_state(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use super::*;

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
        assert_eq!(Manifest::beside(&dir.path().join("m.bin")), dir.path().join(".m.bin.podinit-s3"));
    }
}

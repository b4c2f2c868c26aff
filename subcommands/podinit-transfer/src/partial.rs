//! An unfinished download (`.NAME.podinit-partial` plus `.NAME.podinit-partial-state` beside the destination):
//! which ranges are on disk, of which version of which source, so a restarted init container
//! fetches only the rest.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use podinit_core::fs::{FileOptions, hidden_sibling, write_atomic};
use serde::{Deserialize, Serialize};

/// An unfinished download of one object into `.NAME.podinit-partial`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// The source as shown (an `s3://` or redacted `https://` URL).
    pub source: String,
    /// The version of the bytes: an ETag, else a Last-Modified date.
    #[serde(alias = "etag")]
    pub validator: String,
    pub size: u64,
    pub range_size: u64,
    /// Indexes of the ranges on disk (synced before they were recorded).
    pub done: Vec<usize>,
}

impl Partial {
    /// Where the data of an unfinished download of `dest` lives.
    pub fn data_path(dest: &Path) -> PathBuf {
        hidden_sibling(dest, ".podinit-partial")
    }

    /// Its record (no `.json` ending, as every state file: see `podinit_core::fs::read_state`).
    pub fn state_path(dest: &Path) -> PathBuf {
        hidden_sibling(dest, ".podinit-partial-state")
    }

    pub fn load(dest: &Path) -> Option<Self> {
        let bytes = podinit_core::fs::read_capped(&Self::state_path(dest), podinit_core::fs::STATE_FILE_MAX).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, dest: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(self).context("encoding the download state")?;
        write_atomic(&Self::state_path(dest), &bytes, FileOptions { mode: 0o600, uid: None, gid: None }).map(|_| ())
    }

    /// Removes the data and the state of an unfinished download (if any), and the record an
    /// earlier version left as `.NAME.podinit-partial.json`.
    pub fn discard(dest: &Path) {
        let _ = std::fs::remove_file(Self::state_path(dest));
        let _ = std::fs::remove_file(hidden_sibling(dest, ".podinit-partial.json"));
        let _ = std::fs::remove_file(Self::data_path(dest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_of_an_older_version_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.bin");
        let old = br#"{"source":"s3://b/m.bin","etag":"\"e1\"","size":10,"range_size":4,"done":[0,2]}"#;
        write_atomic(&Partial::state_path(&dest), old, FileOptions::default()).unwrap();
        let p = Partial::load(&dest).unwrap();
        assert_eq!((p.validator.as_str(), p.done.as_slice()), ("\"e1\"", &[0, 2][..]));
        Partial::discard(&dest);
        assert!(Partial::load(&dest).is_none());
    }
}

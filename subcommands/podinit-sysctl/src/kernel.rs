//! Reading and writing keys under /proc/sys, with errors told apart.
//!
//! Straight `std::fs` rather than the `sysctl` crate: the crate turns every `/` of a key
//! into `.` and back, so interface names with dots (`eth0.100`) are unreachable, and it maps
//! every open error to "not found", so a read-only /proc/sys looks like an unknown key.
//! See ARCHITECTURE.md.

use std::io::{self, Read as _, Write as _};
use std::path::PathBuf;

use crate::spec::{Key, Namespaces};

/// This process's namespaces, as [`Namespaces::decide`] judges them.
pub(crate) fn namespaces() -> Namespaces {
    use std::os::unix::fs::MetadataExt as _;
    let ino = |ns: &str| std::fs::metadata(format!("/proc/self/ns/{ns}")).ok().map(|m| m.ino());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().and_then(|release| {
        let mut numbers = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
        Some((numbers.next()?, numbers.next()?))
    });
    Namespaces::decide(ino("net"), ino("ipc"), ino("uts"), kernel)
}

/// The sysctl tree: `/proc/sys` (another root only for tests).
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    root: PathBuf,
}

/// Why a key could not be read or written.
#[derive(Debug)]
pub(crate) enum Fault {
    /// No such key in this kernel or namespace.
    Unknown,
    /// The key is a directory of keys.
    Directory,
    /// Read-only /proc/sys, or not root: needs a privileged container.
    NotPermitted(io::Error),
    /// The kernel refused the value (EINVAL: out of range or wrong format).
    Rejected(io::Error),
    /// Anything else.
    Other(io::Error),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown => f.write_str("no such key"),
            Self::Directory => f.write_str("a directory of keys, not a key"),
            Self::NotPermitted(e) => write!(f, "permission denied ({e})"),
            Self::Rejected(e) => write!(f, "the kernel rejected the value ({e})"),
            Self::Other(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for Fault {
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => Self::Unknown,
            io::ErrorKind::IsADirectory => Self::Directory,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => Self::NotPermitted(err),
            io::ErrorKind::InvalidInput => Self::Rejected(err),
            _ => Self::Other(err),
        }
    }
}

impl Tree {
    /// A tree rooted at `root` (normally `/proc/sys`).
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file of a key.
    pub(crate) fn path(&self, key: &Key) -> PathBuf {
        self.root.join(key.rel_path())
    }

    /// The current value, without its trailing newline.
    pub(crate) fn read(&self, key: &Key) -> Result<String, Fault> {
        let mut text = self.read_path(&self.path(key))?;
        if text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }

    /// The value as the kernel gives it, trailing newline and all (for printing as procps).
    pub(crate) fn read_raw(&self, key: &Key) -> Result<String, Fault> {
        self.read_path(&self.path(key))
    }

    /// Reads a file of /proc/sys in as few calls as it takes: open, reads into one buffer,
    /// close (`read_to_string` adds an `fstat` and an `lseek` per file, and a `stat` before
    /// the open another: a 50-line sysctl.d file made 350 calls instead of 200). A directory
    /// opens fine and fails the first read with `EISDIR` (`Fault::Directory`).
    pub(crate) fn read_path(&self, path: &std::path::Path) -> Result<String, Fault> {
        let mut file = std::fs::File::open(path)?;
        let mut buf = Vec::with_capacity(256);
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve(buf.capacity());
            }
            let start = buf.len();
            buf.resize(buf.capacity(), 0);
            match file.read(&mut buf[start..]) {
                Ok(0) => {
                    buf.truncate(start);
                    break;
                }
                Ok(n) => buf.truncate(start + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(start),
                Err(e) => return Err(e.into()),
            }
        }
        String::from_utf8(buf).map_err(|e| Fault::Other(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    /// Whether the key is a file its owner cannot read (`vm.drop_caches`): write-only.
    pub(crate) fn is_write_only(&self, key: &Key) -> bool {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(self.path(key)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o400 == 0)
    }

    /// The root of the tree.
    pub(crate) fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Writes the value in one `write(2)` on a fresh descriptor, as the kernel's strict
    /// mode (`kernel.sysctl_writes_strict`) requires: no buffering that could split it.
    pub(crate) fn write(&self, key: &Key, value: &str) -> Result<(), Fault> {
        let mut file = std::fs::OpenOptions::new().write(true).open(self.path(key))?;
        let line = format!("{value}\n");
        let written = file.write(line.as_bytes())?;
        if written != line.len() {
            return Err(Fault::Other(io::Error::other(format!("short write: {written} of {} bytes", line.len()))));
        }
        Ok(())
    }
}

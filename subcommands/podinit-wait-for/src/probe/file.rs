//! `file://` targets: exists (optionally non-empty, or containing a text), detected through
//! inotify on the nearest existing ancestor directory, with polling as the safety net
//! (inotify sees only changes made through this kernel: not, e.g., host-side writes to a
//! virtiofs share).

use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, bail};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

/// What "ready" means for a file.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileCheck {
    /// Ready only when the file has at least one byte.
    pub(crate) non_empty: bool,
    /// Ready only when the file contains this text.
    pub(crate) contains: Option<String>,
    /// Ready when the path does not exist (no link either).
    pub(crate) absent: bool,
}

/// Largest file read for `contains`.
const MAX_READ: u64 = 16 << 20;

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub(crate) struct Watcher {
    path: PathBuf,
    check: FileCheck,
    inotify: Option<AsyncFd<Fd>>,
    watched: Mutex<Option<PathBuf>>,
}

impl Watcher {
    pub(crate) fn new(path: PathBuf, check: FileCheck) -> Self {
        #[expect(
            deprecated,
            reason = "AsyncFd owns the Inotify, so the fd outlives its registration: the guarantee the unsafe register() asks for"
        )]
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok().and_then(|fd| AsyncFd::new(Fd(fd)).ok());
        if inotify.is_none() {
            tracing::debug!(path = %path.display(), "no inotify: polling only");
        }
        Self { path, check, inotify, watched: Mutex::new(None) }
    }

    pub(crate) fn has_inotify(&self) -> bool {
        self.inotify.is_some()
    }

    /// Watches the deepest existing directory on the way to the file (and the file itself
    /// when it exists, for content changes). Called before every check, so an event between
    /// the check and the wait is never lost.
    fn arm(&self) {
        let Some(fd) = &self.inotify else { return };
        let mut dir: &Path = self.path.parent().unwrap_or(Path::new("/"));
        while !dir.is_dir() {
            dir = dir.parent().unwrap_or(Path::new("/"));
        }
        let mut watched = self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if watched.as_deref() != Some(dir) {
            let flags = AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_ATTRIB
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF;
            if fd.get_ref().0.add_watch(dir, flags).is_ok() {
                *watched = Some(dir.to_owned());
            }
        }
    }

    /// Resolves on the next inotify event (after draining the queue).
    pub(crate) async fn changed(&self) {
        let Some(fd) = &self.inotify else { return std::future::pending().await };
        let Ok(mut guard) = fd.readable().await else { return std::future::pending().await };
        // Drain: the events only say "look again".
        while fd.get_ref().0.read_events().is_ok_and(|events| !events.is_empty()) {}
        guard.clear_ready();
        // A directory on the way may have appeared: re-arm deeper.
        if let Ok(mut watched) = self.watched.lock() {
            *watched = None;
        }
    }

    pub(crate) fn check(&self) -> anyhow::Result<()> {
        self.arm();
        let path = &self.path;
        if self.check.absent {
            return match std::fs::symlink_metadata(path) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Ok(_) => bail!("{} still exists", path.display()),
                Err(err) => Err(err).with_context(|| format!("checking {}", path.display())),
            };
        }
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!("{} does not exist yet", path.display()),
            Err(err) => return Err(err).with_context(|| format!("checking {}", path.display())),
        };
        if self.check.non_empty && meta.len() == 0 {
            bail!("{} exists but is empty", path.display());
        }
        if let Some(text) = &self.check.contains {
            if !meta.is_file() {
                bail!("{} is not a regular file", path.display());
            }
            use std::io::Read as _;
            let mut content = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_READ).read_to_end(&mut content))
                .with_context(|| format!("reading {}", path.display()))?;
            if !content.windows(text.len().max(1)).any(|w| w == text.as_bytes()) {
                bail!("{} does not contain the text yet", path.display());
            }
        }
        Ok(())
    }
}

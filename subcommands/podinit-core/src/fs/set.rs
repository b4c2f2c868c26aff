//! A set of files that appears, changes and disappears as one: the layout of the kubelet's
//! AtomicWriter (what Secret and ConfigMap volumes use), so readers see the old set or the
//! new one, never a mix, whatever happens to the writer.
//!
//! ```text
//! DEST/..2026_12_01_10_00_00.4711_123/   the files, in a directory of their own
//! DEST/..data -> ..2026_12_01_10_00_00.4711_123
//! DEST/db -> ..data/db                   one link per top-level name
//! DEST/..podinit.lock                    held by the writer (N replicas on one volume)
//! ```
//!
//! A new version is written into a fresh timestamped directory, every file and directory of
//! it is synced, then one `rename` of a `..data_tmp` link over `..data` switches readers to
//! it. Top-level names the new set has are made links into `..data` (a file or directory of
//! that name from before is swapped out whole); links of names it no longer has are removed;
//! the old directory goes last. A writer killed at any point leaves the old set readable; the
//! next writer removes what it left (a half-written directory, a `..data_tmp`) under the lock.
//! Top-level names starting with `..` belong to the layout: they get no link, so a writer can
//! keep a private file in the data directory (s3-get's manifest), and a set's visible names
//! cannot start with `..` (callers refuse such names, as the kubelet does).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use nix::fcntl::{Flock, FlockArg};

use super::root::{Dir, Kind};
use crate::{Context, Error, Kind as ErrorKind};

/// The link to the current data directory.
pub const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";
const SWAP: &str = "..podinit-swap";
const LOCK: &str = "..podinit.lock";

/// A directory holding (or about to hold) a set, locked for this writer.
#[derive(Debug)]
pub struct DataSet {
    dir: Dir,
    /// The data directory `..data` points at, if any.
    current: Option<OsString>,
    /// The directory this open made (it did not exist), to remove again if nothing is
    /// ever published in it.
    created: Option<std::path::PathBuf>,
    _lock: Flock<File>,
}

impl Drop for DataSet {
    /// A first run that published nothing (a download that did not verify, an archive
    /// refused) leaves no trace: the directory it made, holding only the lock, is removed.
    fn drop(&mut self) {
        if let Some(path) = &self.created
            && self.dir.stat(OsStr::new(DATA)).ok().flatten().is_none()
        {
            let _ = self.dir.remove_all(OsStr::new(LOCK));
            // Fails, and so keeps the directory, when anything else is in it.
            let _ = std::fs::remove_dir(path);
        }
    }
}

impl DataSet {
    /// Opens `path` (creating it with `mode` when missing), waits for the lock other podinit
    /// writers of the same directory hold (replicas sharing a volume), and removes what a
    /// killed writer left behind.
    pub async fn open(ctx: &Context, path: &Path, mode: u32) -> Result<Self, Error> {
        for _ in 0..100 {
            if let Some(set) = Self::try_open(ctx, path, mode).await? {
                return Ok(set);
            }
            // The writer we waited for removed the directory it had made and published
            // nothing (see `Drop`): start over, as the first writer now.
            ctx.check_shutdown()?;
        }
        Err(Error::new(
            ErrorKind::Failed,
            anyhow::anyhow!("{}: removed under podinit again and again while it waited to write there", path.display()),
        ))
    }

    async fn try_open(ctx: &Context, path: &Path, mode: u32) -> Result<Option<Self>, Error> {
        let failed = |e: anyhow::Error| Error::new(ErrorKind::Failed, e);
        let created = !path.is_dir();
        if created {
            std::fs::DirBuilder::new()
                .recursive(true)
                .create(path)
                .map_err(|e| super::explain_write(super::io_error(e, format!("creating {}", path.display())), path))?;
        }
        let dir = Dir::open(path).map_err(|e| failed(anyhow::anyhow!("opening {}: {}", path.display(), crate::redact::io_reason(&e))))?;
        if created {
            // The mode the caller asked for, not the umask's; an existing directory (a
            // volume's root) keeps its own.
            dir.set_mode(mode).map_err(failed)?;
        }
        let Some(lock) = lock(ctx, path).await? else { return Ok(None) };
        let current = current_name(&dir).map_err(failed)?;
        let set = Self { dir, current, created: created.then(|| path.to_owned()), _lock: lock };
        set.clean_leftovers().map_err(failed)?;
        Ok(Some(set))
    }

    /// The directory holding the set.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The current data directory, if a set was written before.
    pub fn current(&self) -> anyhow::Result<Option<Dir>> {
        self.current
            .as_ref()
            .map(|name| self.dir.sub(name).with_context(|| format!("opening {}", self.dir.path().join(name).display())))
            .transpose()
    }

    /// Starts a new version: an empty data directory with `mode` and owner, to be filled and
    /// then [`Staged::commit`]ted. Dropped uncommitted, it is removed.
    pub fn stage(&self, mode: u32, uid: Option<u32>, gid: Option<u32>) -> anyhow::Result<Staged<'_>> {
        let name = timestamped_name();
        let dir = self.dir.mkdir(&name, mode)?;
        if uid.is_some() || gid.is_some() {
            nix::unistd::fchown(&dir, uid.map(nix::unistd::Uid::from_raw), gid.map(nix::unistd::Gid::from_raw))
                .with_context(|| format!("setting the owner of {}", dir.path().display()))?;
        }
        Ok(Staged { set: self, name, dir, committed: false })
    }

    /// Makes sure every top-level name of the current set is a link into it (a rerun after a
    /// writer was killed between the switch and the links).
    pub fn ensure_visible(&self) -> anyhow::Result<()> {
        let Some(current) = self.current()? else { return Ok(()) };
        for name in visible(&current.names()?) {
            self.link(&name)?;
        }
        Ok(())
    }

    /// Removes a half-written data directory, `..data_tmp` and swap leftovers of a killed
    /// writer (never the current data directory).
    fn clean_leftovers(&self) -> anyhow::Result<()> {
        for name in self.dir.names()? {
            let leftover = name == DATA_TMP || name.as_encoded_bytes().starts_with(SWAP.as_bytes()) || is_timestamped(&name);
            if leftover && Some(&name) != self.current.as_ref() {
                tracing::debug!("removing {} (left by an interrupted run)", self.dir.path().join(&name).display());
                self.dir.remove_all(&name)?;
            }
        }
        Ok(())
    }

    /// Makes the top-level `name` a link into `..data`, replacing whatever else is there in
    /// one step.
    fn link(&self, name: &OsStr) -> anyhow::Result<()> {
        let mut target = OsString::from(format!("{DATA}/"));
        target.push(name);
        let existing = self.dir.stat(name).with_context(|| format!("reading {}", self.dir.path().join(name).display()))?;
        match existing.map(|s| Kind::of(&s)) {
            None => self.dir.symlink(name, &target),
            Some(Kind::Symlink) if self.dir.read_link(name).ok().as_ref() == Some(&target) => Ok(()),
            Some(kind) => {
                let swap = OsStr::new(SWAP);
                self.dir.remove_all(swap)?;
                self.dir.symlink(swap, &target)?;
                if kind == Kind::Dir {
                    // rename cannot replace a directory with a link: swap them, then remove
                    // the old directory under its new name.
                    self.dir.exchange(swap, name)?;
                    self.dir.remove_all(swap)
                } else {
                    self.dir.rename(swap, name)
                }
            }
        }
    }

    /// Removes the top-level link `name` if it is one of this set's.
    fn unlink(&self, name: &OsStr) -> anyhow::Result<()> {
        let mut target = OsString::from(format!("{DATA}/"));
        target.push(name);
        if self.dir.read_link(name).ok().as_ref() == Some(&target) {
            self.dir.remove_all(name)?;
        }
        Ok(())
    }
}

/// A new version being written.
#[derive(Debug)]
pub struct Staged<'a> {
    set: &'a DataSet,
    name: OsString,
    dir: Dir,
    committed: bool,
}

impl Staged<'_> {
    /// The new data directory, to write the set into.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Makes the new version the current one (see the module docs). Before the switch every
    /// file and directory written is synced, so after a crash the set is the old one or a
    /// complete new one.
    pub fn commit(mut self) -> anyhow::Result<()> {
        sync_tree(&self.dir)?;
        self.dir.sync()?;
        let set = self.set;
        let top = &set.dir;
        top.remove_all(OsStr::new(DATA_TMP))?;
        top.symlink(OsStr::new(DATA_TMP), &self.name)?;
        top.rename(OsStr::new(DATA_TMP), OsStr::new(DATA))?;
        self.committed = true;
        top.sync()?;
        let new = visible(&self.dir.names()?);
        for name in &new {
            set.link(name)?;
        }
        if let Some(old) = set.current()? {
            for name in visible(&old.names()?) {
                if !new.contains(&name) {
                    set.unlink(&name)?;
                }
            }
        }
        if let Some(old) = &set.current {
            top.remove_all(old)?;
        }
        top.sync()
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.set.dir.remove_all(&self.name);
        }
    }
}

/// Takes the set's lock, waiting (within `--timeout`, ended by SIGTERM) while another
/// podinit holds it. `None` when the holder removed the lock and its directory (a first
/// run that published nothing): the caller starts over.
pub async fn lock(ctx: &Context, dir: &Path) -> Result<Option<Flock<File>>, Error> {
    let path = dir.join(LOCK);
    let mut waited = false;
    loop {
        let file = match super::open_lock_file(&path) {
            // The directory was removed by the writer before us (a first run that published
            // nothing): start over.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other,
        };
        let file = file.map_err(|e| super::explain_write(super::io_error(e, format!("creating the lock {}", path.display())), dir))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            // Unlinked by the holder before it let go: it removed its directory too.
            Ok(lock) if lock.metadata().is_ok_and(|m| std::os::unix::fs::MetadataExt::nlink(&m) == 0) => return Ok(None),
            Ok(lock) => return Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                if !waited {
                    tracing::info!("{}: another podinit is writing here; waiting for it", dir.display());
                    waited = true;
                }
                ctx.sleep(Duration::from_millis(200)).await?;
            }
            Err((_, e)) => return Err(Error::new(ErrorKind::Failed, anyhow::anyhow!("locking {}: {}", path.display(), e.desc()))),
        }
    }
}

/// The data directory `..data` names, if it is a link to a timestamped directory.
fn current_name(dir: &Dir) -> anyhow::Result<Option<OsString>> {
    match dir.read_link(OsStr::new(DATA)) {
        Ok(target) if is_timestamped(&target) => Ok(Some(target)),
        Ok(target) => {
            anyhow::bail!(
                "{} points at '{}', not at a data directory of podinit's",
                dir.path().join(DATA).display(),
                target.to_string_lossy()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {}", dir.path().join(DATA).display(), crate::redact::io_reason(&e))),
    }
}

/// `..2026_12_01_10_00_00.4711_123456789`: UTC time (as the kubelet names them), then the
/// process and the clock's nanoseconds, so two writers never pick the same name.
fn timestamped_name() -> OsString {
    let now = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = stamp.chars().take(19).map(|c| if c.is_ascii_digit() { c } else { '_' }).collect();
    let nanos = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    OsString::from(format!("..{digits}.{}_{nanos}", std::process::id()))
}

/// `..` followed by a digit: a data directory (the kubelet's and podinit's).
fn is_timestamped(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.len() > 2 && bytes.starts_with(b"..") && bytes[2].is_ascii_digit() && !bytes.contains(&b'/')
}

/// The names of a data directory that get a top-level link.
fn visible(names: &[OsString]) -> Vec<OsString> {
    names.iter().filter(|n| !n.as_encoded_bytes().starts_with(b"..")).cloned().collect()
}

/// Syncs every file (data) and directory (entries) below `dir`, each directory after what
/// is in it; iterative ([`Dir::walk`]), so a deep tree costs memory linear in its depth.
pub fn sync_tree(dir: &Dir) -> anyhow::Result<()> {
    dir.walk(
        &mut |parent, name, stat, _| {
            if Kind::of(stat) == Kind::File {
                let file = parent.open_file(name).map_err(|e| super::io_error(e, "opening"))?;
                file.sync_data().map_err(|e| super::io_error(e, "syncing"))?;
            }
            Ok(())
        },
        &mut |sub| sub.sync(),
    )
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use std::os::unix::fs::MetadataExt as _;

    use super::*;
    use crate::GlobalArgs;

    fn write(set: &DataSet, files: &[(&str, &str)]) {
        let staged = set.stage(0o755, None, None).unwrap();
        for (rel, text) in files {
            let parts = super::super::root::components(Path::new(rel)).unwrap();
            let (name, parent) = parts.split_last().unwrap();
            let dir = staged.dir().create_dir_all(parent, 0o755).unwrap();
            std::io::Write::write_all(&mut dir.create_file(name).unwrap(), text.as_bytes()).unwrap();
        }
        staged.commit().unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn versions_replace_each_other_whole() {
        let (ctx, _tx) = Context::for_tests(&GlobalArgs::default());
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        // An older layout: a plain file and a directory where links will go, and a file of
        // someone else's that stays.
        std::fs::create_dir_all(out.join("data")).unwrap();
        std::fs::write(out.join("data/old"), "old").unwrap();
        std::fs::write(out.join("a.txt"), "old a").unwrap();
        std::fs::write(out.join("mine"), "keep").unwrap();
        {
            let set = DataSet::open(&ctx, &out, 0o755).await.unwrap();
            write(&set, &[("a.txt", "a1"), ("data/x", "x1"), ("gone", "g")]);
        }
        assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "a1");
        assert_eq!(std::fs::read_to_string(out.join("data/x")).unwrap(), "x1");
        assert!(!out.join("data/old").exists());
        assert_eq!(std::fs::read_link(out.join("data")).unwrap(), Path::new("..data/data"));
        {
            let set = DataSet::open(&ctx, &out, 0o755).await.unwrap();
            // `data` changes from a directory to a file; `gone` leaves the set.
            write(&set, &[("a.txt", "a2"), ("data", "now a file")]);
        }
        assert_eq!(std::fs::read_to_string(out.join("data")).unwrap(), "now a file");
        assert!(!out.join("gone").exists() && std::fs::symlink_metadata(out.join("gone")).is_err());
        assert_eq!(std::fs::read_to_string(out.join("mine")).unwrap(), "keep");
        let names = listing(&out);
        assert_eq!(names.iter().filter(|n| is_timestamped(OsStr::new(n))).count(), 1, "{names:?}");
        assert!(names.contains(&"..data".to_owned()) && names.contains(&"..podinit.lock".to_owned()), "{names:?}");
    }

    #[tokio::test]
    async fn an_uncommitted_version_leaves_the_old_one_and_is_cleaned_up() {
        let (ctx, _tx) = Context::for_tests(&GlobalArgs::default());
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        {
            let set = DataSet::open(&ctx, out, 0o755).await.unwrap();
            write(&set, &[("k", "v1")]);
        }
        let inode = std::fs::metadata(out.join("k")).unwrap().ino();
        {
            let set = DataSet::open(&ctx, out, 0o755).await.unwrap();
            let staged = set.stage(0o755, None, None).unwrap();
            std::io::Write::write_all(&mut staged.dir().create_file(OsStr::new("k")).unwrap(), b"v2").unwrap();
            // A killed writer: the staged directory stays behind, as after SIGKILL.
            std::mem::forget(staged);
        }
        assert_eq!(std::fs::read_to_string(out.join("k")).unwrap(), "v1");
        assert_eq!(std::fs::metadata(out.join("k")).unwrap().ino(), inode);
        std::os::unix::fs::symlink("..nowhere", out.join(DATA_TMP)).unwrap();
        let set = DataSet::open(&ctx, out, 0o755).await.unwrap();
        set.ensure_visible().unwrap();
        let names = listing(out);
        assert_eq!(names.iter().filter(|n| is_timestamped(OsStr::new(n))).count(), 1, "the killed run's directory is gone: {names:?}");
        assert!(!names.contains(&DATA_TMP.to_owned()));
    }

    #[tokio::test]
    async fn a_second_writer_waits_for_the_first() {
        let (ctx, _tx) = Context::for_tests(&GlobalArgs { timeout: Some(Duration::from_millis(600)), ..GlobalArgs::default() });
        let tmp = tempfile::tempdir().unwrap();
        let _first = DataSet::open(&ctx, tmp.path(), 0o755).await.unwrap();
        let err = DataSet::open(&ctx, tmp.path(), 0o755).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
    }

    #[test]
    fn names() {
        let name = timestamped_name();
        assert!(is_timestamped(&name), "{name:?}");
        assert!(name.to_string_lossy().starts_with("..20"), "{name:?}");
        assert!(!is_timestamped(OsStr::new("..data")) && !is_timestamped(OsStr::new("..data_tmp")));
        assert_eq!(visible(&[OsString::from("..data"), OsString::from("a"), OsString::from("..podinit-s3.json")]), [OsString::from("a")]);
    }
}

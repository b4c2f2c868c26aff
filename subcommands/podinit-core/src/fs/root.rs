//! Paths below a directory, reached without following symbolic links.
//!
//! A privileged init container writing into a shared volume must not be redirected by a link
//! someone planted there, nor by a directory swapped for a link between a check and a write.
//! So below a [`Dir`] nothing is resolved by path: every walk goes one component at a time
//! from directory descriptors with `O_NOFOLLOW`, and a symbolic link anywhere on the way ends
//! the walk with an error that names it. Files are created with `O_EXCL | O_NOFOLLOW` in the
//! directory they belong to. Untrusted relative paths (archive entries, secret keys, object
//! keys) are first split by [`components`], which refuses absolute paths and `..`.
//!
//! Symbolic links that podinit itself creates (an archive's links) are judged by
//! [`Dir::check_link`]: resolved as the kernel would resolve them, against the tree as it is,
//! and refused if that leaves the directory.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// An open directory and the path it is shown by.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What is at a name, without following a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

impl Kind {
    /// The kind of a `stat` result.
    pub fn of(stat: &FileStat) -> Self {
        match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => Self::Dir,
            SFlag::S_IFREG => Self::File,
            SFlag::S_IFLNK => Self::Symlink,
            _ => Self::Other,
        }
    }
}

/// The deepest tree a walk goes down (remove, sync, fingerprint, unpack): deeper than any
/// path the kernel resolves (`PATH_MAX` is 4096 bytes, so 2048 levels of one-letter names),
/// deeper than any real tree, and shallow enough that a walk holding a descriptor per level
/// stays within a pod's open-file limit.
pub const MAX_DEPTH: usize = 2048;

/// The depth from which a walk makes sure it may hold [`MAX_DEPTH`] descriptors.
pub const DEEP: usize = 256;

/// Raises the soft limit of open files to the hard one (as Go's runtime does at every start),
/// once: a walk holds a descriptor per level, and a pod's soft limit may be 1024.
pub fn allow_deep_walks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
            && soft < hard
        {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    });
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// The normal components of an untrusted relative path; refuses an absolute path, a `..`
/// component, and a path that names nothing (`""`, `.`).
pub fn components(untrusted: &Path) -> anyhow::Result<Vec<&OsStr>> {
    let shown = untrusted.display();
    let mut parts = Vec::new();
    for component in untrusted.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => bail!("'{shown}' has a '..' component"),
            Component::RootDir | Component::Prefix(_) => bail!("'{shown}' is an absolute path"),
        }
    }
    if parts.is_empty() {
        bail!("'{shown}' names no file");
    }
    Ok(parts)
}

/// Opens the file at `path`, which the operator named (links followed), for reading: a FIFO
/// or device is refused without blocking, so a FIFO planted where a file was cannot hang the
/// process.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    regular(File::from(nix::fcntl::open(path, flags, Mode::empty())?))
}

/// `file` if it is a regular file, in blocking mode again.
fn regular(file: File) -> io::Result<File> {
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))?;
    Ok(file)
}

impl Dir {
    /// Opens the directory at `path`, which the operator named (a link there is followed,
    /// as for any path given on the command line).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Self { fd, path: path.to_owned() })
    }

    /// Opens the directory at `path`, which the operator named, but never through a link as
    /// its last component: one swapped in for a directory of a volume fails (`ELOOP`, or
    /// `ENOTDIR`) instead of leading elsewhere.
    pub fn open_nofollow(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(path, DIR_FLAGS, Mode::empty())?;
        Ok(Self { fd, path: path.to_owned() })
    }

    /// Sets this directory's mode to exactly `mode` (special bits included).
    pub fn chmod_exact(&self, mode: u32) -> anyhow::Result<()> {
        nix::sys::stat::fchmod(&self.fd, Mode::from_bits_truncate(mode & 0o7777))
            .map_err(|e| io_error(e, &self.path, &format!("setting mode {mode:04o} on")))
    }

    /// Changes this directory's owner and group (`None` keeps that one).
    pub fn chown_self(&self, uid: Option<u32>, gid: Option<u32>) -> anyhow::Result<()> {
        nix::unistd::fchown(&self.fd, uid.map(nix::unistd::Uid::from_raw), gid.map(nix::unistd::Gid::from_raw))
            .map_err(|e| io_error(e, &self.path, "changing the owner of"))
    }

    /// The path this directory is shown by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same directory, shown by another path in messages (a new version's directory
    /// by the destination it will be seen at).
    #[must_use]
    pub fn shown_as(mut self, path: &Path) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Another descriptor of the same directory.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self { fd: self.fd.try_clone()?, path: self.path.clone() })
    }

    /// The entry `name` directly in this directory, as a directory; a link there is refused.
    pub fn sub(&self, name: &OsStr) -> io::Result<Self> {
        let fd = nix::fcntl::openat(&self.fd, name, DIR_FLAGS, Mode::empty())?;
        Ok(Self { fd, path: self.path.join(name) })
    }

    /// The directory `rel` below this one, walked without following links; names the link
    /// when one is in the way.
    pub fn open_dir(&self, rel: &[&OsStr]) -> anyhow::Result<Self> {
        let mut dir = self.try_clone().with_context(|| format!("opening {}", self.path.display()))?;
        for part in rel {
            dir = dir.sub(part).map_err(|e| walk_error(&dir, part, e))?;
        }
        Ok(dir)
    }

    /// Creates the missing directories of `rel` below this one (each with `mode`, keeping a
    /// setgid bit it inherits), without following links; returns the deepest.
    pub fn create_dir_all(&self, rel: &[&OsStr], mode: u32) -> anyhow::Result<Self> {
        let mut dir = self.try_clone().with_context(|| format!("opening {}", self.path.display()))?;
        for part in rel {
            dir = match dir.sub(part) {
                Ok(sub) => sub,
                Err(e) if e.kind() == io::ErrorKind::NotFound => dir.mkdir(part, mode)?,
                Err(e) => return Err(walk_error(&dir, part, e)),
            };
        }
        Ok(dir)
    }

    /// Creates the directory `name` with exactly `mode` (the umask aside; a setgid bit it
    /// inherits from this one is kept) and opens it.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> anyhow::Result<Self> {
        let shown = self.path.join(name);
        match nix::sys::stat::mkdirat(&self.fd, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(io_error(e, &shown, "creating")),
        }
        let sub = self.sub(name).map_err(|e| walk_error(self, name, e))?;
        sub.set_mode(mode)?;
        Ok(sub)
    }

    /// Sets this directory's mode, keeping a setgid bit it has (inherited from an `fsGroup`
    /// volume: without it files below would get podinit's group, not the pod's).
    pub fn set_mode(&self, mode: u32) -> anyhow::Result<()> {
        let inherited = self.stat_self()?.st_mode & 0o2000;
        nix::sys::stat::fchmod(&self.fd, Mode::from_bits_truncate((mode & 0o7777) | inherited))
            .map_err(|e| io_error(e, &self.path, &format!("setting mode {mode:o} on")))
    }

    /// Creates the file `name` (which must not exist; a link there is not followed), open for
    /// writing, with mode `0600` until the caller sets its own.
    pub fn create_file(&self, name: &OsStr) -> anyhow::Result<File> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(&self.fd, name, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| io_error(e, &self.path.join(name), "creating"))?;
        Ok(File::from(fd))
    }

    /// Creates the new file `name` (never an existing one, never through a link) with `mode`
    /// (the umask applies, as to any creation), for writing.
    pub fn create_file_with_mode(&self, name: &OsStr, mode: u32) -> anyhow::Result<File> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(&self.fd, name, flags, Mode::from_bits_truncate(mode & 0o777))
            .map_err(|e| io_error(e, &self.path.join(name), "creating"))?;
        Ok(File::from(fd))
    }

    /// Flushes the whole file system this directory is on to its device (`syncfs`): one call
    /// makes a batch of files durable where a sync per file would wait once per file.
    pub fn sync_fs(&self) -> anyhow::Result<()> {
        nix::unistd::syncfs(&self.fd).map_err(|e| io_error(e, &self.path, "syncing the file system of"))
    }

    /// Opens the regular file `name` for reading; a link or anything but a file is refused
    /// (a FIFO swapped in is opened without blocking, then refused).
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        regular(File::from(nix::fcntl::openat(&self.fd, name, flags, Mode::empty())?))
    }

    /// The whole content of the regular file `name` in this directory (never through a link),
    /// at most [`super::STATE_FILE_MAX`] bytes (more is an error, found before reading).
    pub fn read(&self, name: &OsStr) -> io::Result<Vec<u8>> {
        super::read_whole(self.open_file(name)?, super::STATE_FILE_MAX)
    }

    /// Creates the symbolic link `name` pointing at `target`.
    pub fn symlink(&self, name: &OsStr, target: &OsStr) -> anyhow::Result<()> {
        nix::unistd::symlinkat(target, &self.fd, name).map_err(|e| io_error(e, &self.path.join(name), "creating the link"))
    }

    /// Creates the hard link `name` to `from_name` in `from` (a link there is linked itself,
    /// never followed).
    pub fn hard_link(&self, name: &OsStr, from: &Self, from_name: &OsStr) -> anyhow::Result<()> {
        nix::unistd::linkat(&from.fd, from_name, &self.fd, name, AtFlags::empty())
            .map_err(|e| io_error(e, &self.path.join(name), "creating the hard link"))
    }

    /// What is at `name`, without following a link; `None` when nothing is.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        match nix::sys::stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// This directory's own `stat`.
    pub fn stat_self(&self) -> anyhow::Result<FileStat> {
        nix::sys::stat::fstat(&self.fd).map_err(|e| io_error(e, &self.path, "reading"))
    }

    /// The target of the link `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        Ok(nix::fcntl::readlinkat(&self.fd, name)?)
    }

    /// The names in this directory (without `.` and `..`), sorted.
    pub fn names(&self) -> anyhow::Result<Vec<OsString>> {
        let listed = || -> nix::Result<Vec<OsString>> {
            let mut dir = nix::dir::Dir::from_fd(self.fd.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?)?;
            let mut names = Vec::new();
            for entry in dir.iter() {
                let name = OsStr::from_bytes(entry?.file_name().to_bytes()).to_owned();
                if name != "." && name != ".." {
                    names.push(name);
                }
            }
            Ok(names)
        };
        let mut names = listed().map_err(|e| io_error(e, &self.path, "listing"))?;
        names.sort();
        Ok(names)
    }

    /// Renames `from` to `to`, both in this directory, replacing `to` unless it is a directory.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> anyhow::Result<()> {
        nix::fcntl::renameat(&self.fd, from, &self.fd, to).map_err(|e| io_error(e, &self.path.join(to), "renaming into place"))
    }

    /// Renames `from` to `to` unless `to` exists (`RENAME_NOREPLACE`): false when it does.
    pub fn rename_noreplace(&self, from: &OsStr, to: &OsStr) -> anyhow::Result<bool> {
        match nix::fcntl::renameat2(&self.fd, from, &self.fd, to, nix::fcntl::RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(io_error(e, &self.path.join(to), "renaming into place")),
        }
    }

    /// Swaps `a` and `b`, both in this directory, in one step (whatever their types).
    pub fn exchange(&self, a: &OsStr, b: &OsStr) -> anyhow::Result<()> {
        nix::fcntl::renameat2(&self.fd, a, &self.fd, b, nix::fcntl::RenameFlags::RENAME_EXCHANGE)
            .map_err(|e| io_error(e, &self.path.join(b), "swapping into place"))
    }

    /// Removes `name` and, for a directory, everything below it, never following a link
    /// (a link is removed, not what it points at). Directories made read-only (an archive's
    /// `0555`) are made writable first, so removal works without root. Missing is fine.
    /// Iterative and at any depth: one open directory at a time (the way back up is `..`,
    /// checked to be the directory it came from by device and inode), and per level its name
    /// and the names left in it: memory linear in the depth, no descriptor per level. A
    /// leftover too deep for any other walk is still removed.
    pub fn remove_all(&self, name: &OsStr) -> anyhow::Result<()> {
        self.remove_tree(name, &mut Removal::default())
    }

    /// [`Dir::remove_all`], as `removal` says: on one file system only, stopping when asked,
    /// telling each path removed.
    pub fn remove_tree(&self, name: &OsStr, removal: &mut Removal<'_>) -> anyhow::Result<()> {
        let gone = |e: Errno| if e == Errno::ENOENT { Ok(()) } else { Err(e) };
        let Some(stat) = self.stat(name).map_err(|e| io_error(e, &self.path.join(name), "reading"))? else { return Ok(()) };
        if Kind::of(&stat) != Kind::Dir {
            nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .or_else(gone)
                .map_err(|e| io_error(e, &self.path.join(name), "removing"))?;
            removal.tell(&self.path.join(name), false);
            return Ok(());
        }
        let mut steps = 0u32;
        /// A directory being emptied: its name in its parent, its identity, the names left.
        struct Level {
            name: OsString,
            id: (u64, u64),
            left: Vec<OsString>,
        }
        let shown = |levels: &[Level], last: &OsStr| levels.iter().fold(self.path.clone(), |p, l| p.join(&l.name)).join(last);
        let (device, mounts) = (removal.device, removal.mounts.clone());
        let open = |parent: &Self, child: &OsStr| -> anyhow::Result<(Self, Level)> {
            let sub = parent.sub_unnamed(child).map_err(|e| walk_error(parent, child, e))?;
            let own = sub.stat_self()?;
            if device.is_some_and(|d| d != own.st_dev) || mounts.as_ref().is_some_and(|m| m.contains(&(own.st_dev, own.st_ino))) {
                bail!("another file system is mounted there: not removed (add --cross-file-systems)");
            }
            // A directory its owner cannot write (an archive's 0555) is made writable to be
            // emptied; only the owner (or root) can: for someone else's directory the unlinks
            // below say why it fails. Others keep their mode.
            if own.st_mode & 0o300 != 0o300 {
                let _ = nix::sys::stat::fchmod(&sub.fd, Mode::from_bits_truncate(0o700));
            }
            let mut left = sub.names()?;
            left.reverse();
            Ok((sub, Level { name: child.to_owned(), id: (own.st_dev, own.st_ino), left }))
        };
        let (mut here, first) = open(self, name)?;
        let mut levels = vec![first];
        while let Some(level) = levels.last_mut() {
            steps = steps.wrapping_add(1);
            if steps.is_multiple_of(1024)
                && let Some(stop) = &removal.stop
            {
                stop().map_err(|reason| anyhow::anyhow!("{reason}"))?;
            }
            if let Some(child) = level.left.pop() {
                // Unlinked first, without a `stat`: Linux refuses a directory with `EISDIR`
                // (one call per file, as the listing's type would save GNU's fts the stat).
                let is_dir = match nix::unistd::unlinkat(&here.fd, child.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir) {
                    Ok(()) => {
                        if removal.removed.is_some() {
                            removal.tell(&shown(&levels, &child), false);
                        }
                        false
                    }
                    Err(Errno::ENOENT) => false,
                    Err(Errno::EISDIR) => true,
                    Err(e) => {
                        // POSIX's EPERM for a directory, or a real refusal: the type decides.
                        let found = here.stat(&child).map_err(|err| io_error(err, &shown(&levels, &child), "reading"))?;
                        if found.is_none_or(|s| Kind::of(&s) != Kind::Dir) {
                            return Err(io_error(e, &shown(&levels, &child), "removing"));
                        }
                        true
                    }
                };
                if is_dir {
                    let (sub, level) =
                        open(&here, &child).map_err(|e| e.context(format!("removing {}", shown(&levels, &child).display())))?;
                    here = sub;
                    levels.push(level);
                }
                continue;
            }
            let Some(done) = levels.pop() else { break };
            // Back to the parent: `self` at the top, else `..`, which must be the directory
            // this one was opened from (a tree moved meanwhile is not followed elsewhere).
            let parent = match levels.last() {
                None => None,
                Some(above) => {
                    let up = here.sub_unnamed(OsStr::new("..")).map_err(|e| walk_error(&here, OsStr::new(".."), e))?;
                    let id = up.stat_self()?;
                    if (id.st_dev, id.st_ino) != above.id {
                        bail!("{} was moved while podinit removed it: stopped", shown(&levels, &done.name).display());
                    }
                    Some(up)
                }
            };
            here = match parent {
                Some(up) => up,
                None => self.try_clone().map_err(|e| io_error(e, &self.path, "opening"))?,
            };
            nix::unistd::unlinkat(&here.fd, done.name.as_os_str(), nix::unistd::UnlinkatFlags::RemoveDir)
                .or_else(gone)
                .map_err(|e| io_error(e, &shown(&levels, &done.name), "removing"))?;
            if removal.removed.is_some() {
                removal.tell(&shown(&levels, &done.name), true);
            }
        }
        Ok(())
    }

    /// Visits every entry below this directory, depth first, parents before their entries,
    /// names in order, never following a link: `on_entry` for each entry (with its depth,
    /// 1 for this directory's own entries), `on_leave` for each subdirectory once everything
    /// below it was visited. Iterative, memory linear in the depth, which is capped at
    /// [`MAX_DEPTH`] (a deeper tree is an error naming it). The `Dir` an entry comes with is
    /// shown by its name alone: the path of a deep entry is built only for an error.
    pub fn walk(
        &self,
        on_entry: &mut dyn FnMut(&Self, &OsStr, &FileStat, usize) -> anyhow::Result<()>,
        on_leave: &mut dyn FnMut(&Self) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut levels: Vec<(Self, Vec<OsString>, OsString)> = Vec::new();
        let mut top = self.names()?;
        top.reverse();
        let shown = |levels: &[(Self, Vec<OsString>, OsString)], last: &OsStr| {
            levels.iter().fold(self.path.clone(), |p, (_, _, n)| p.join(n)).join(last)
        };
        loop {
            let next = match levels.last_mut() {
                Some((_, names, _)) => names.pop(),
                None => top.pop(),
            };
            let Some(name) = next else {
                match levels.pop() {
                    Some((dir, _, _)) => on_leave(&dir)?,
                    None => return Ok(()),
                }
                continue;
            };
            let dir = levels.last().map_or(self, |(d, _, _)| d);
            let Some(stat) = dir.stat(&name).map_err(|e| io_error(e, &shown(&levels, &name), "reading"))? else { continue };
            on_entry(dir, &name, &stat, levels.len() + 1).map_err(|e| e.context(format!("at {}", shown(&levels, &name).display())))?;
            if Kind::of(&stat) == Kind::Dir {
                if levels.len() + 1 > MAX_DEPTH {
                    bail!("{} is more than {MAX_DEPTH} directories deep: refused", shown(&levels, &name).display());
                }
                if levels.len() == DEEP {
                    allow_deep_walks();
                }
                let sub = dir
                    .sub_unnamed(&name)
                    .map_err(|e| walk_error(dir, &name, e).context(format!("at {}", shown(&levels, &name).display())))?;
                let mut names = sub.names()?;
                names.reverse();
                levels.push((sub, names, name));
            }
        }
    }

    /// The directory `name` in this one (never through a link), shown by `name` alone: for
    /// walks that would otherwise keep a whole path per level.
    fn sub_unnamed(&self, name: &OsStr) -> io::Result<Self> {
        let fd = nix::fcntl::openat(&self.fd, name, DIR_FLAGS, Mode::empty())?;
        Ok(Self { fd, path: PathBuf::from(name) })
    }

    /// Flushes this directory's entries to disk (after renames in it).
    pub fn sync(&self) -> anyhow::Result<()> {
        nix::unistd::fsync(&self.fd).map_err(|e| io_error(e, &self.path, "syncing"))
    }

    /// Checks that the symbolic link at `rel` (components below this directory, as from
    /// [`components`]) resolves to a place inside this directory, following links as the
    /// kernel would against the tree as it is now. A component that does not exist (a
    /// dangling link) is taken as written, so a dangling link that would climb out once its
    /// target appears is refused too.
    pub fn check_link(&self, rel: &[&OsStr]) -> anyhow::Result<()> {
        let Some((name, parent)) = rel.split_last() else { bail!("an empty path is not a link") };
        let shown = || rel.iter().collect::<PathBuf>().display().to_string();
        let mut stack: Vec<OsString> = parent.iter().map(|p| (*p).to_owned()).collect();
        let first = self.open_dir(parent)?.read_link(name).with_context(|| format!("reading the link '{}'", shown()))?;
        let mut pending: Vec<OsString> = Vec::new();
        push_target(&mut pending, &first).map_err(|why| anyhow::anyhow!("link '{}' {why}", shown()))?;
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                if stack.pop().is_none() {
                    bail!("link '{}' leads outside {} (to '{}')", shown(), self.path.display(), first.to_string_lossy());
                }
                continue;
            }
            let parts: Vec<&OsStr> = stack.iter().map(OsString::as_os_str).collect();
            let here = self.open_dir(&parts).ok();
            let found = here.as_ref().and_then(|dir| dir.stat(&part).ok().flatten());
            match found.map(|s| Kind::of(&s)) {
                Some(Kind::Symlink) => {
                    hops += 1;
                    if hops > 40 {
                        bail!("link '{}' goes through more than 40 links", shown());
                    }
                    let target = here.as_ref().map(|dir| dir.read_link(&part)).transpose()?.unwrap_or_default();
                    push_target(&mut pending, &target)
                        .map_err(|why| anyhow::anyhow!("link '{}' goes through '{}', which {why}", shown(), part.to_string_lossy()))?;
                }
                _ => stack.push(part),
            }
        }
        Ok(())
    }
}

/// Puts the components of a link target on `pending` (a stack: the first component last).
fn push_target(pending: &mut Vec<OsString>, target: &OsStr) -> Result<(), String> {
    let path = Path::new(target);
    if target.is_empty() {
        return Err("has an empty target".into());
    }
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_owned()),
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("points at the absolute path '{}'", target.to_string_lossy()));
            }
        }
    }
    pending.extend(parts.into_iter().rev());
    Ok(())
}

/// How [`Dir::remove_tree`] goes; the default is [`Dir::remove_all`]'s.
#[derive(Default)]
pub struct Removal<'a> {
    /// Directories of another file system (a mount below) are not entered: the removal stops
    /// there with an error naming it.
    pub device: Option<u64>,
    /// Mount roots ([`crate::fs::mount_roots`]): a directory that is one is not entered
    /// either, even on the same device (a bind mount).
    pub mounts: Option<std::sync::Arc<crate::fs::MountRoots>>,
    /// Asked every 1024 entries; `Err` stops the removal with that reason.
    pub stop: Option<crate::context::StopCheck>,
    /// Told each path removed, and whether it was a directory (`rm -v`).
    pub removed: Option<&'a mut Told<'a>>,
}

/// What [`Removal::removed`] is told: a path removed, and whether it was a directory.
pub type Told<'a> = dyn FnMut(&Path, bool) + 'a;

impl Removal<'_> {
    fn tell(&mut self, path: &Path, dir: bool) {
        if let Some(removed) = self.removed.as_mut() {
            removed(path, dir);
        }
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The error of a walk that stopped at `part` below `dir`: a link or a file in the way, or
/// an I/O error.
fn walk_error(dir: &Dir, part: &OsStr, err: io::Error) -> anyhow::Error {
    let at = dir.path.join(part);
    match err.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ELOOP) => anyhow::anyhow!("{} is a symbolic link; podinit does not follow links there", at.display()),
        Some(Errno::ENOTDIR) => match dir.stat(part) {
            Ok(Some(stat)) if Kind::of(&stat) == Kind::Symlink => {
                anyhow::anyhow!("{} is a symbolic link; podinit does not follow links there", at.display())
            }
            _ => anyhow::anyhow!("{} is not a directory", at.display()),
        },
        _ => anyhow::anyhow!("opening {}: {}", at.display(), crate::redact::io_reason(&err)),
    }
}

/// `creating /data/x: no space left on device`.
fn io_error(err: impl Into<io::Error>, path: &Path, doing: &str) -> anyhow::Error {
    super::io_error(err, format!("{doing} {}", path.display()))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use std::os::unix::fs::symlink;

    use super::*;

    fn parts(p: &str) -> Vec<&OsStr> {
        components(Path::new(p)).unwrap()
    }

    #[test]
    fn untrusted_paths_are_split_or_refused() {
        assert_eq!(parts("a/./b/c"), ["a", "b", "c"]);
        assert_eq!(parts("./x"), ["x"]);
        for bad in ["../x", "a/../b", "/etc/passwd", "", ".", "a/.."] {
            assert!(components(Path::new(bad)).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn walks_never_follow_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = Dir::open(tmp.path()).unwrap();
        root.create_dir_all(&parts("a/b"), 0o755).unwrap();
        symlink(outside.path(), tmp.path().join("a/out")).unwrap();
        symlink("b", tmp.path().join("a/inner")).unwrap();
        let err = root.create_dir_all(&parts("a/out/x"), 0o755).unwrap_err();
        assert!(format!("{err:#}").contains("a/out is a symbolic link"), "{err:#}");
        // Even a link that stays inside is not walked through.
        assert!(root.open_dir(&parts("a/inner")).is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing was created outside");
        // A file cannot be created over a planted link either.
        symlink(outside.path().join("f"), tmp.path().join("a/b/f")).unwrap();
        assert!(root.open_dir(&parts("a/b")).unwrap().create_file(OsStr::new("f")).is_err());
        assert!(!outside.path().join("f").exists());
    }

    #[test]
    fn links_are_judged_by_where_they_really_lead() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open(tmp.path()).unwrap();
        root.create_dir_all(&parts("sub/deeper"), 0o755).unwrap();
        let link = |at: &str, target: &str| {
            let p = parts(at);
            let (name, parent) = p.split_last().unwrap();
            root.open_dir(parent).unwrap().symlink(name, OsStr::new(target)).unwrap();
            root.check_link(&p)
        };
        assert!(link("sub/up", "..").is_ok());
        assert!(link("sub/deeper/file", "../../sub/x").is_ok(), "dangling, but inside");
        assert!(link("abs", "/etc").is_err());
        assert!(link("sub/out", "../..").is_err());
        // `d -> .` is harmless alone; `x -> d/..` looks inside when read as text, but `d/..`
        // is the parent of the root: the chained-link escape.
        assert!(link("d", ".").is_ok());
        let err = link("x", "d/..").unwrap_err();
        assert!(format!("{err:#}").contains("leads outside"), "{err:#}");
        assert!(link("y", "d/d/d/sub").is_ok());
        assert!(link("z", "missing/../../etc").is_err(), "a dangling link that would climb out");
        assert!(link("loop", "loop").is_err());
    }

    /// A chain of `depth` directories `d/d/d/…` below `root`, with a file at the bottom.
    fn chain(root: &Dir, depth: usize) {
        let mut dir = root.mkdir(OsStr::new("d"), 0o755).unwrap();
        for _ in 1..depth {
            dir = dir.mkdir(OsStr::new("d"), 0o755).unwrap();
        }
        drop(dir.create_file(OsStr::new("f")).unwrap());
    }

    #[test]
    fn deep_trees_are_walked_and_removed_up_to_the_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open(tmp.path()).unwrap();
        chain(&root, 1500);
        let mut seen = (0, 0);
        root.walk(
            &mut |_, _, _, depth| {
                seen.0 += 1;
                seen.1 = seen.1.max(depth);
                Ok(())
            },
            &mut |_| Ok(()),
        )
        .unwrap();
        assert_eq!(seen, (1501, 1501));
        root.remove_all(OsStr::new("d")).unwrap();
        assert!(!tmp.path().join("d").exists());
        chain(&root, MAX_DEPTH + 10);
        let err = root.walk(&mut |_, _, _, _| Ok(()), &mut |_| Ok(())).unwrap_err();
        assert!(format!("{err:#}").contains("directories deep"), "{err:#}");
        // Removal has no cap: a leftover too deep to walk must still go.
        root.remove_all(OsStr::new("d")).unwrap();
        assert!(!tmp.path().join("d").exists());
    }

    #[test]
    fn remove_all_handles_read_only_directories_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let root = Dir::open(tmp.path()).unwrap();
        let d = root.create_dir_all(&parts("t/ro"), 0o755).unwrap();
        std::fs::write(tmp.path().join("t/ro/f"), b"x").unwrap();
        symlink(outside.path(), tmp.path().join("t/ro/link")).unwrap();
        d.set_mode(0o555).unwrap();
        root.remove_all(OsStr::new("t")).unwrap();
        assert!(!tmp.path().join("t").exists());
        assert!(outside.path().join("keep").exists(), "a link's target is never removed");
        root.remove_all(OsStr::new("missing")).unwrap();
    }
}

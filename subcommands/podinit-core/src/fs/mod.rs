//! Files podinit produces appear complete or not at all, and never outside their destination.
//!
//! Every file is written to a hidden temp file in the destination directory (so the rename
//! stays on one filesystem, e.g. one `emptyDir`), given its mode and owner, fsynced, renamed
//! into place, and the directory is fsynced. An [`AtomicFile`] dropped before
//! [`AtomicFile::commit`] removes its temp file. [`resolve_inside`] turns an untrusted
//! relative path (an object key) into a path that cannot leave its root, through `..` or
//! through a symlink.
//!
//! - [`root`]: directories walked without following links, for writing below a root an
//!   attacker may have planted links in, and judging the links podinit creates.
//! - [`set`]: a set of files that appears and changes as one (the kubelet's AtomicWriter
//!   layout), for vault-fetch's secrets and extracted archives.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};

pub mod root;
pub mod set;

/// The longest file name Linux file systems take (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Mode and owner of a produced file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOptions {
    /// Permission bits, e.g. `0o400`.
    pub mode: u32,
    /// Owner to set (needs CAP_CHOWN unless it is ourselves).
    pub uid: Option<u32>,
    /// Group to set.
    pub gid: Option<u32>,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self { mode: 0o644, uid: None, gid: None }
    }
}

/// A file being written; visible at its destination only after [`commit`](Self::commit).
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    temp: PathBuf,
    dest: PathBuf,
    options: FileOptions,
    committed: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl AtomicFile {
    /// Starts writing `dest`; the temp file lives beside it as `.NAME.podinit-PID-N`.
    pub fn create(dest: &Path, options: FileOptions) -> anyhow::Result<Self> {
        let (dir, _) = split(dest)?;
        let temp = hidden_sibling(dest, &format!(".podinit-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("creating a temp file in {}", dir.display()))?;
        Ok(Self { file, temp, dest: dest.to_owned(), options, committed: false })
    }

    /// The open temp file, e.g. for positioned writes.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the file will appear.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Makes the file appear at its destination, complete (see [`publish`]).
    pub fn commit(mut self) -> anyhow::Result<()> {
        self.file.flush().with_context(|| format!("writing {}", self.dest.display()))?;
        publish(&self.file, &self.temp, &self.dest, self.options)?;
        self.committed = true;
        Ok(())
    }
}

/// Makes the written temp file `temp` (in the directory of `dest`) appear as `dest`, complete:
/// mode, owner, fsync, rename, fsync of the directory. [`AtomicFile::commit`] ends with it; so
/// does a download written at offsets into a file of its own (s3-get's resumable partial file).
pub fn publish(file: &File, temp: &Path, dest: &Path, options: FileOptions) -> anyhow::Result<()> {
    let shown = dest.display();
    file.set_permissions(std::fs::Permissions::from_mode(options.mode))
        .with_context(|| format!("setting mode {:o} on {shown}", options.mode))?;
    if options.uid.is_some() || options.gid.is_some() {
        std::os::unix::fs::fchown(file, options.uid, options.gid)
            .with_context(|| format!("setting owner {}:{} on {shown}", fmt_id(options.uid), fmt_id(options.gid)))?;
    }
    file.sync_all().with_context(|| format!("syncing {shown}"))?;
    std::fs::rename(temp, dest).with_context(|| format!("renaming into place {shown}"))?;
    // A bare name (`out.yaml`) has the empty path as its parent: the current directory.
    let (dir, _) = split(dest)?;
    sync_dir(dir).with_context(|| format!("syncing the directory of {shown}"))
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `data` to `dest` atomically. Skips the write (and returns `false`) when `dest`
/// already holds exactly `data` with the same mode, so reruns do not touch the file.
pub fn write_atomic(dest: &Path, data: &[u8], options: FileOptions) -> anyhow::Result<bool> {
    if unchanged(dest, data, options) {
        return Ok(false);
    }
    let mut file = AtomicFile::create(dest, options)?;
    file.write_all(data).with_context(|| format!("writing {}", dest.display()))?;
    file.commit()?;
    Ok(true)
}

/// An I/O error with what podinit was doing: shown as `writing /data/x: no space left on
/// device` (the cause said once, in short), the OS error kept for [`explain_write`].
#[derive(Debug)]
pub struct IoError {
    doing: String,
    source: io::Error,
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.doing, crate::redact::io_reason(&self.source))
    }
}

impl std::error::Error for IoError {}

/// The [`IoError`] of `doing` (`"writing /data/x"`).
pub fn io_error(source: impl Into<io::Error>, doing: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(IoError { doing: doing.to_string(), source: source.into() })
}

impl IoError {
    /// The OS error number, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// A failed write below `dest` as the operator should read it: the error (which names the
/// path) and, for a full or read-only volume or a permission problem, what to do.
pub fn explain_write(err: impl Into<anyhow::Error>, dest: &Path) -> crate::Error {
    let err = err.into();
    let errno = err.chain().find_map(|e| {
        e.downcast_ref::<IoError>()
            .and_then(IoError::raw_os_error)
            .or_else(|| e.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error))
    });
    let hint = match errno {
        Some(libc::ENOSPC | libc::EDQUOT) => Some(format!(
            "the volume at {} is full: give it room for the whole result (the emptyDir's sizeLimit or the PVC's size); nothing was published",
            dest.display()
        )),
        Some(libc::EROFS) => Some(format!("{} is read-only: mount a writable volume (an emptyDir) there", dest.display())),
        Some(libc::EACCES | libc::EPERM) => Some(format!(
            "podinit (uid {}) may not write in {}: set the pod's fsGroup, or run this init container as the volume's owner",
            nix::unistd::geteuid(),
            dest.display()
        )),
        _ => None,
    };
    let err = match err.downcast::<crate::Error>() {
        Ok(inner) => inner,
        Err(other) => crate::Error::new(crate::Kind::Failed, other),
    };
    match hint {
        Some(hint) => err.with_hint(hint),
        None => err,
    }
}

/// Reads a secret (a password, a token, an id) mounted as a file, without its trailing line
/// ends. `flag` names the setting in the error, which never shows the file's content.
pub fn read_secret_file(flag: &str, path: &Path) -> Result<String, crate::Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::Error::usage(format!("{flag} {}: {}", path.display(), crate::redact::io_reason(&e)))
            .with_hint("mount the Secret at that path")
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Whether `dest` already holds exactly `data` with the mode and owner of `options`: a
/// rerun then leaves the file (and its inode) alone. Read as [`read_capped`] reads (a link,
/// a FIFO or a device there is simply "not the same").
pub fn unchanged(dest: &Path, data: &[u8], options: FileOptions) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(dest) else { return false };
    meta.len() == data.len() as u64 && as_asked(&meta, options) && read_capped(dest, data.len() as u64).is_ok_and(|old| old == data)
}

/// Whether `meta` (an lstat's) is a regular file with the mode and owner of `options`.
pub fn as_asked(meta: &std::fs::Metadata, options: FileOptions) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.is_file()
        && meta.mode() & 0o7777 == options.mode
        && options.uid.is_none_or(|u| u == meta.uid())
        && options.gid.is_none_or(|g| g == meta.gid())
}

/// Reads a file podinit finds in a volume (its own state beside a destination, a file it
/// compares with): the one safe way to read what someone else may have planted. Never
/// through a link at `path` (`O_NOFOLLOW`), never blocking on a FIFO (`O_NONBLOCK`), a
/// regular file only, and at most `max` bytes (more is an error, checked before reading:
/// a link to `/dev/zero` or a huge file cannot exhaust memory).
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use nix::fcntl::OFlag;
    // A device is never opened (opening one can do something): refused by its `lstat`, then
    // by the open file's own `fstat` (something swapped in between is not read either).
    if !std::fs::symlink_metadata(path)?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let file = File::from(nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())?);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    read_whole(file, max)
}

/// All of the regular file `file`, if it holds at most `max` bytes: its size is checked
/// before reading, and the read stops one byte past `max` (a file that grew meanwhile).
pub(crate) fn read_whole(file: File, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let too_big = || io::Error::new(io::ErrorKind::InvalidData, format!("larger than {max} bytes"));
    let len = file.metadata()?.len();
    if len > max {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Opens (creating it, mode `0600`) the lock file `path` that podinit flocks beside what it
/// writes (a set's `..podinit.lock`, a SQLite database's migration lock): never through a
/// link planted there (root would create a file where it points), never blocking on a FIFO
/// planted there, a regular file only.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    use nix::fcntl::OFlag;
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file() && !m.is_symlink()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let file = File::from(nix::fcntl::open(path, flags, nix::sys::stat::Mode::from_bits_truncate(0o600))?);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(file)
}

/// The most podinit reads of one of its own state files (records, manifests, partial
/// download states): far above what it writes, far below what could hurt.
pub const STATE_FILE_MAX: u64 = 16 << 20;

/// The name a state file had before 2026-12-07: the same with `.json` appended. State files
/// podinit keeps beside what it wrote (`.NAME.podinit-http`, `.podinit-s3`, a set's
/// `..podinit-s3`) have no extension of their own, so an app that loads every `*.json` of the
/// directory (Grafana's dashboards folder, a plugin loader) never takes one for its own.
pub fn legacy_state_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// A state file (at most [`STATE_FILE_MAX`]), or the one a version before 2026-12-07 left
/// under its `.json` name, so an upgrade does not cost a download; that one is renamed to the
/// new name (in its directory: nothing is written through it), so a rerun that finds
/// everything current leaves no `*.json` behind either.
pub fn read_state(path: &Path) -> Option<Vec<u8>> {
    if let Ok(bytes) = read_capped(path, STATE_FILE_MAX) {
        return Some(bytes);
    }
    let legacy = legacy_state_path(path);
    let bytes = read_capped(&legacy, STATE_FILE_MAX).ok()?;
    let _ = std::fs::rename(&legacy, path);
    Some(bytes)
}

/// Removes the `.json`-named state file an earlier version left (after the new one is
/// written), so the directory holds one record and nothing an app globbing `*.json` would load.
pub fn remove_legacy_state(path: &Path) {
    let _ = std::fs::remove_file(legacy_state_path(path));
}

/// Copies what is left of `from` to the end of `to`: in the kernel (`copy_file_range`, which
/// also lets a file system share extents), or by reading and writing where it cannot. Unlike
/// `std::io::copy` it asks nothing about the files first: the caller knows they are regular.
pub fn copy_contents(from: &mut File, to: &mut File) -> io::Result<u64> {
    let mut copied = 0u64;
    loop {
        match nix::fcntl::copy_file_range(&*from, None, &*to, None, 1 << 30) {
            Ok(0) => return Ok(copied),
            Ok(n) => copied += n as u64,
            Err(nix::errno::Errno::EINTR) => {}
            // Not between these file systems, or not for these files: the plain way.
            Err(nix::errno::Errno::EXDEV | nix::errno::Errno::ENOSYS | nix::errno::Errno::EINVAL | nix::errno::Errno::EOPNOTSUPP)
                if copied == 0 =>
            {
                return io::copy(from, to);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The roots of the mounts this process sees, as (device, inode) of each mount point (what a
/// `stat` through it shows): a directory that is one is another mount even when it shares the
/// device of its parent (a bind mount of the same disk, a hostPath under an emptyDir, a
/// subPath), which a device comparison misses. From `/proc/self/mountinfo` (at most 4 MiB);
/// empty when it cannot be read.
pub fn mount_roots() -> MountRoots {
    use std::os::unix::fs::MetadataExt as _;
    mount_points().iter().filter_map(|point| std::fs::metadata(point).ok()).map(|meta| (meta.dev(), meta.ino())).collect()
}

/// Mount roots as (device, inode) ([`mount_roots`]).
pub type MountRoots = std::collections::HashSet<(u64, u64)>;

/// The mount points this process sees, from `/proc/self/mountinfo` (at most 4 MiB); empty
/// when it cannot be read.
pub fn mount_points() -> Vec<PathBuf> {
    use std::io::Read as _;
    let mut text = Vec::new();
    if File::open("/proc/self/mountinfo").and_then(|f| f.take(4 << 20).read_to_end(&mut text)).is_err() {
        return Vec::new();
    }
    String::from_utf8_lossy(&text).lines().filter_map(|line| line.split(' ').nth(4)).map(unescape_mount_point).collect()
}

/// A mount point as mountinfo writes it: space, tab, newline and backslash as `\NNN` octal.
fn unescape_mount_point(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) =
                bytes.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Fsyncs a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Joins an untrusted relative path onto `root`, refusing anything that would land outside:
/// absolute paths, `..` that climbs above the root, and existing symlinks (anywhere below
/// the root, up to the parent of the last component) that point outside it.
///
/// The last component may be an existing symlink: an atomic rename replaces the link
/// itself, never what it points at.
pub fn resolve_inside(root: &Path, untrusted: &Path) -> anyhow::Result<PathBuf> {
    let shown = untrusted.display();
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in untrusted.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    bail!("'{shown}' climbs out of {} with '..'", root.display());
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                bail!("'{shown}' is absolute; only paths relative to {} are allowed", root.display())
            }
        }
    }
    if parts.is_empty() {
        bail!("'{shown}' names no file inside {}", root.display());
    }
    let canonical_root = root.canonicalize().with_context(|| format!("resolving {}", root.display()))?;
    let mut path = root.to_path_buf();
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        if i == last {
            break;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = path.canonicalize().with_context(|| format!("resolving the symlink {}", path.display()))?;
                if !target.starts_with(&canonical_root) {
                    bail!("'{shown}' goes through the symlink {} to {}, outside {}", path.display(), target.display(), root.display());
                }
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => break,
            Err(err) => return Err(err).with_context(|| format!("checking {}", path.display())),
        }
    }
    let mut result = root.to_path_buf();
    result.extend(parts);
    Ok(result)
}

/// `dir/.NAME<suffix>` for `dir/NAME`: a hidden name of podinit's own beside a file (a temp
/// file, a manifest, a partial download). When NAME is too long for the suffix to fit in
/// [`NAME_MAX`], it is shortened and a hash of the whole name keeps two long names apart.
pub fn hidden_sibling(dest: &Path, suffix: &str) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
    let name = dest.file_name().map(std::ffi::OsStr::as_bytes).unwrap_or_default();
    let mut out = Vec::with_capacity(NAME_MAX);
    out.push(b'.');
    if 1 + name.len() + suffix.len() <= NAME_MAX {
        out.extend_from_slice(name);
    } else {
        // FNV-1a: not a security measure, only apart names for distinct long names.
        let hash = name.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        let tag = format!("~{hash:016x}");
        let mut keep = NAME_MAX - 1 - suffix.len() - tag.len();
        // Cut on a character boundary when the name is UTF-8.
        while keep > 0 && std::str::from_utf8(&name[..keep]).is_err() && std::str::from_utf8(name).is_ok() {
            keep -= 1;
        }
        out.extend_from_slice(&name[..keep]);
        out.extend_from_slice(tag.as_bytes());
    }
    out.extend_from_slice(suffix.as_bytes());
    dest.with_file_name(OsString::from_vec(out))
}

fn split(dest: &Path) -> anyhow::Result<(&Path, &std::ffi::OsStr)> {
    let name = dest.file_name().with_context(|| format!("'{}' names no file", dest.display()))?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

fn fmt_id(id: Option<u32>) -> String {
    id.map_or_else(|| "-".to_owned(), |i| i.to_string())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn mount_points_are_read_as_mountinfo_escapes_them() {
        assert_eq!(unescape_mount_point(r"/var/lib/kubelet/pods/a\040b/volumes"), PathBuf::from("/var/lib/kubelet/pods/a b/volumes"));
        assert_eq!(unescape_mount_point(r"/x\134y\011z"), PathBuf::from("/x\\y\tz"));
        assert_eq!(unescape_mount_point(r"/trailing\04"), PathBuf::from(r"/trailing\04"), "not an escape: kept");
        // This process's own root is a mount root.
        let root = std::fs::metadata("/").unwrap();
        assert!(mount_roots().contains(&(root.dev(), root.ino())));
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".podinit-"))
            .collect()
    }

    #[test]
    fn write_atomic_sets_mode_and_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("token");
        let opts = FileOptions { mode: 0o400, ..FileOptions::default() };
        assert!(write_atomic(&dest, b"s3cr3t", opts).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"s3cr3t");
        assert_eq!(std::fs::metadata(&dest).unwrap().mode() & 0o7777, 0o400);
        let inode = std::fs::metadata(&dest).unwrap().ino();
        assert!(!write_atomic(&dest, b"s3cr3t", opts).unwrap());
        assert_eq!(std::fs::metadata(&dest).unwrap().ino(), inode, "identical content must not be rewritten");
        assert!(write_atomic(&dest, b"new", opts).unwrap());
        assert_ne!(std::fs::metadata(&dest).unwrap().ino(), inode);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn dropped_file_leaves_nothing_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model.bin");
        std::fs::write(&dest, b"old complete file").unwrap();
        {
            let mut f = AtomicFile::create(&dest, FileOptions::default()).unwrap();
            f.write_all(b"half of the new").unwrap();
        }
        assert_eq!(std::fs::read(&dest).unwrap(), b"old complete file");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn hidden_names_fit_name_max() {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(hidden_sibling(Path::new("/m/model.bin"), ".json"), Path::new("/m/.model.bin.json"));
        let long = "é".repeat(122);
        let a = dir.path().join(format!("{long}a"));
        let b = dir.path().join(format!("{long}b"));
        assert_eq!(a.file_name().unwrap().len(), 245);
        let (ha, hb) = (hidden_sibling(&a, ".podinit-partial.json"), hidden_sibling(&b, ".podinit-partial.json"));
        assert!(ha.file_name().unwrap().len() <= NAME_MAX && ha != hb);
        assert!(ha.file_name().unwrap().to_str().is_some(), "cut on a character boundary");
        assert!(ha.file_name().unwrap().as_bytes().ends_with(b".podinit-partial.json"));
        // A valid 245-byte name can be written atomically.
        assert!(write_atomic(&a, b"x", FileOptions::default()).unwrap());
        assert_eq!(std::fs::read(&a).unwrap(), b"x");
    }

    #[test]
    fn resolve_inside_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(resolve_inside(root, Path::new("a/b/c")).unwrap(), root.join("a/b/c"));
        assert_eq!(resolve_inside(root, Path::new("a/../b")).unwrap(), root.join("b"));
        assert_eq!(resolve_inside(root, Path::new("./x")).unwrap(), root.join("x"));
        for bad in ["../x", "a/../../x", "/etc/passwd", "", ".", "a/.."] {
            assert!(resolve_inside(root, Path::new(bad)).is_err(), "{bad} must be refused");
        }
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let err = resolve_inside(root, Path::new("link/x")).unwrap_err();
        assert!(format!("{err:#}").contains("outside"), "{err:#}");
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("inner")).unwrap();
        assert!(resolve_inside(root, Path::new("inner/x")).is_ok());
        // The last component may be a link: the rename replaces the link, not its target.
        assert!(resolve_inside(root, Path::new("link")).is_ok());
    }
}

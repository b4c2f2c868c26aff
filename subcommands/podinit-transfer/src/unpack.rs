//! Writing an archive's entries into a fresh directory, safely: what an archive may and may
//! not do to the volume it is unpacked into.
//!
//! - Every entry is written below the root through [`Dir`] walks that never follow a link, so
//!   no entry lands outside, whatever links earlier entries made (`d -> .`, then
//!   `d/d/d/esc -> ../../../etc` is refused: `d` is a link in the way). Absolute paths and `..`
//!   are refused; top-level names starting with `..` are the data-directory layout's.
//! - Symbolic links are created as they come, then judged at the end, against the finished
//!   tree, by where they really lead ([`Dir::check_link`]): one that leaves the root fails
//!   the whole extraction. A hard link may name only a regular file already extracted: a
//!   hard link to a symbolic link would give it a second name at another depth, where the
//!   same target leads elsewhere.
//! - Modes keep only the permission bits: setuid and setgid are stripped (an archive must
//!   not plant a setuid file in a volume the app runs from); the sticky bit is kept on
//!   directories (a `1777` scratch directory), dropped on files. A setgid bit a directory
//!   inherits from an `fsGroup` volume is kept. Owners are not restored.
//! - Budgets ([`Limits`]): bytes unpacked (by default the volume's free space less a margin,
//!   checked against each entry's declared size before it is written, and as it is written),
//!   entries, and depth; going over stops the extraction (the caller's staged set is then
//!   removed). Runs of zeros (a sparse entry's holes) are written as holes.
//! - Directory modes and times are applied last, deepest first, as tar does: a `0555`
//!   directory is still writable while its entries are written, also without root.
//! - Device nodes and FIFOs are skipped with a warning.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use podinit_core::fs::root::{Dir, Kind, MAX_DEPTH, components};
use sha2::Digest as _;

/// Mode of directories an archive implies but does not list.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// What one extraction may write; the options every applet that extracts takes.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct Limits {
    /// Most bytes --extract unpacks (files' sizes, holes included); going over stops it, nothing published [default: the volume's free space less 5 %, at most 1 GiB less]
    #[arg(long, env = "PODINIT_EXTRACT_MAX_SIZE", value_name = "SIZE", value_parser = podinit_core::args::parse_size)]
    pub extract_max_size: Option<u64>,

    /// Most entries --extract unpacks; going over stops it, nothing published.
    #[arg(long, env = "PODINIT_EXTRACT_MAX_ENTRIES", value_name = "N", default_value_t = DEFAULT_MAX_ENTRIES)]
    pub extract_max_entries: u64,
}

/// Entries an archive may hold by default: a node_modules tree has some 100k.
pub const DEFAULT_MAX_ENTRIES: u64 = 2_000_000;

impl Default for Limits {
    fn default() -> Self {
        Self { extract_max_size: None, extract_max_entries: DEFAULT_MAX_ENTRIES }
    }
}

impl Limits {
    /// The byte budget for unpacking into `root`: the one given, else what the file system
    /// has free for an unprivileged writer, less 5 % of it (at most 1 GiB): an archive never
    /// fills the volume the app writes to.
    pub fn bytes_for(&self, root: &impl std::os::fd::AsFd) -> u64 {
        if let Some(max) = self.extract_max_size {
            return max;
        }
        match nix::sys::statvfs::fstatvfs(root) {
            Ok(vfs) => {
                let free = vfs.blocks_available().saturating_mul(vfs.fragment_size());
                free - (free / 20).min(1 << 30)
            }
            Err(_) => u64::MAX,
        }
    }
}

/// Unpacks entries into a directory of its own (see the module docs).
pub struct Unpacker {
    root: Dir,
    /// Asked every so often whether to go on (the deadline, SIGTERM).
    stop: Option<Stop>,
    /// Entries met (written or skipped), for the entry budget.
    seen: u64,
    /// Directory steps left for finding entries' parents (an archive alternating between two
    /// deep directories would cost its depth for every entry).
    steps_left: u64,
    /// Bytes still allowed.
    bytes_left: u64,
    /// The byte budget, for messages.
    max_bytes: u64,
    max_entries: u64,
    /// Links created, to judge once the tree is complete.
    links: Vec<PathBuf>,
    /// Directories listed by the archive: mode and mtime to apply at the end.
    dirs: Vec<(PathBuf, u32, Option<SystemTime>)>,
    /// The parent directory of the last entry (entries come grouped by directory).
    last_parent: Option<(PathBuf, Dir)>,
    entries: u64,
}

/// A check that says whether to go on: `Err` with the reason (the deadline, a stop signal).
pub use podinit_core::context::StopCheck as Stop;

/// Directory steps (components opened to find entries' parents) one extraction may take:
/// archives in the usual order take one or two per entry.
const MAX_STEPS: u64 = 200_000_000;

/// What a directory or link entry costs of the byte budget: the block it takes.
const NON_FILE_COST: u64 = 4096;

/// Skipped entries named in a warning one by one before only counting.
const LOGGED_SKIPS: u64 = 20;

/// How often (entries, or 64 KiB blocks of one file) the stop check is asked.
const CHECK_EVERY: u64 = 1024;

impl Unpacker {
    /// Unpacks into `root` within `limits`; `stop` (the caller's deadline and signals) is
    /// asked every so often, since the unpacker runs on a thread of its own.
    pub fn new(root: Dir, limits: Limits, stop: Option<Stop>) -> Self {
        let max_bytes = limits.bytes_for(&root);
        Self {
            root,
            stop,
            seen: 0,
            steps_left: MAX_STEPS,
            bytes_left: max_bytes,
            max_bytes,
            max_entries: limits.extract_max_entries,
            links: Vec::new(),
            dirs: Vec::new(),
            last_parent: None,
            entries: 0,
        }
    }

    /// Refuses an entry over the entry budget, or one whose declared size is over what is
    /// left of the byte budget (before anything of it is written).
    fn admit(&mut self, shown: &Path, size: u64) -> anyhow::Result<()> {
        self.seen += 1;
        if self.seen.is_multiple_of(CHECK_EVERY) {
            self.check()?;
        }
        if self.seen > self.max_entries {
            bail!(
                "the archive has more than {} entries: stopped at '{}' (--extract-max-entries raises the limit)",
                self.max_entries,
                shown.display()
            );
        }
        if size > self.bytes_left {
            bail!("{}", self.over_budget(shown));
        }
        Ok(())
    }

    /// The caller's stop check, if any.
    fn check(&self) -> anyhow::Result<()> {
        match &self.stop {
            Some(stop) => stop().map_err(|why| anyhow::anyhow!("{why}")),
            None => Ok(()),
        }
    }

    /// An entry not extracted: counted against the entry budget, named in a warning (the
    /// first few: an archive of a million FIFOs must not write a million lines).
    fn skip(&mut self, path: &Path, why: &str) -> anyhow::Result<()> {
        self.admit(path, 0)?;
        let skipped = self.seen - self.entries;
        if skipped <= LOGGED_SKIPS {
            tracing::warn!("skipping '{}': {why}", path.display());
        } else if skipped == LOGGED_SKIPS + 1 {
            tracing::warn!("more entries are skipped; only counted from here");
        }
        Ok(())
    }

    fn over_budget(&self, shown: &Path) -> String {
        format!(
            "the archive unpacks to more than {} bytes: stopped at '{}' (--extract-max-size raises the limit{})",
            self.max_bytes,
            shown.display(),
            if self.max_bytes == u64::MAX { "" } else { "; by default it is the volume's free space less a margin" }
        )
    }

    /// Unpacks a tar stream.
    pub fn tar(&mut self, stream: impl Read) -> anyhow::Result<()> {
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries().context("reading the archive")? {
            let mut entry = entry.context("reading an archive entry")?;
            let path = entry.path().context("an entry with an unreadable name")?.into_owned();
            let header = entry.header();
            let kind = header.entry_type();
            let mode = header.mode().unwrap_or(0o644) & 0o1777;
            let mtime = header.mtime().ok().map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
            use tar::EntryType as T;
            let what = match kind {
                // Counted like any entry: an endless stream of them must meet the budgets.
                T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {
                    self.admit(&path, 0)?;
                    continue;
                }
                T::Directory => Entry::Dir,
                T::Regular | T::Continuous | T::GNUSparse => Entry::File,
                T::Symlink => Entry::Symlink(entry.link_name().context("reading a link target")?.unwrap_or_default().into_owned()),
                T::Link => Entry::HardLink(entry.link_name().context("reading a link target")?.unwrap_or_default().into_owned()),
                T::Char | T::Block | T::Fifo => {
                    self.skip(&path, "device nodes and FIFOs are not extracted")?;
                    continue;
                }
                other => {
                    self.skip(&path, &format!("entries of type {:?} are not extracted", other.as_byte() as char))?;
                    continue;
                }
            };
            let size = entry.size();
            self.entry(&path, what, mode, mtime, size, &mut entry)?;
        }
        Ok(())
    }

    /// Unpacks a zip archive (its central directory is at the end: the whole file is needed).
    /// Entries get the same rules as a tar's; a zip's names are taken as they are written,
    /// never "sanitised" into something else, so `../x` and `/x` are refused, not rewritten.
    pub fn zip(&mut self, file: std::fs::File) -> anyhow::Result<()> {
        let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).context("reading the zip archive")?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).context("reading a zip entry")?;
            let path = PathBuf::from(OsStr::from_bytes(entry.name_raw()));
            let unix = entry.unix_mode();
            let what = if entry.is_dir() {
                Entry::Dir
            } else if entry.is_symlink() {
                // A link target is a path: PATH_MAX bytes at most.
                let mut target = Vec::new();
                (&mut entry).take(4096).read_to_end(&mut target).context("reading a link target")?;
                Entry::Symlink(PathBuf::from(OsStr::from_bytes(&target)))
            } else {
                Entry::File
            };
            let mode = unix.map_or(if matches!(what, Entry::Dir) { 0o755 } else { 0o644 }, |m| m & 0o1777);
            let size = entry.size();
            self.entry(&path, what, mode, None, size, &mut entry)?;
        }
        Ok(())
    }

    /// Writes one entry; `data` is its content (for a file), `size` the size its header
    /// declares. `mode` may carry the sticky bit, which only a directory keeps.
    fn entry(
        &mut self,
        path: &Path,
        what: Entry,
        mode: u32,
        mtime: Option<SystemTime>,
        size: u64,
        data: &mut dyn Read,
    ) -> anyhow::Result<()> {
        self.admit(path, if matches!(what, Entry::File) { size } else { 0 })?;
        if !matches!(what, Entry::File) {
            // A directory or link takes a block of its own: two million empty directories
            // would fill a volume without a byte of data.
            self.bytes_left = self.bytes_left.checked_sub(NON_FILE_COST).ok_or_else(|| anyhow::anyhow!("{}", self.over_budget(path)))?;
        }
        let mode = if matches!(what, Entry::Dir) { mode & 0o1777 } else { mode & 0o777 };
        let shown = path.display();
        if matches!(what, Entry::Dir) && path.components().all(|c| matches!(c, std::path::Component::CurDir)) {
            return Ok(()); // `./`: the root itself
        }
        let parts = components(path).map_err(|e| anyhow::anyhow!("entry {e}: refused (it would land outside the destination)"))?;
        // Room below MAX_DEPTH for the set's own levels, so whatever is extracted can be
        // walked (synced, fingerprinted) from the set's directory.
        if parts.len() > MAX_DEPTH - 8 {
            bail!("entry '{shown}' is more than {} directories deep: refused", MAX_DEPTH - 8);
        }
        if parts[0].as_bytes().starts_with(b"..") {
            bail!("entry '{shown}': top-level names starting with '..' are reserved for the data directory layout; refused");
        }
        let (name, parent) = parts.split_last().unwrap_or((&parts[0], &[]));
        let dir = self.parent(parent).map_err(|e| anyhow::anyhow!("entry '{shown}': {e:#}: refused"))?;
        let rel: PathBuf = parts.iter().collect();
        match what {
            Entry::Dir => {
                match dir.stat(name).with_context(|| format!("reading '{shown}'"))?.map(|s| Kind::of(&s)) {
                    Some(Kind::Dir) => {}
                    Some(_) => {
                        dir.remove_all(name)?;
                        dir.mkdir(name, 0o700)?;
                    }
                    None => {
                        dir.mkdir(name, 0o700)?;
                    }
                }
                self.dirs.push((rel, mode, mtime));
            }
            Entry::File => {
                make_room(&dir, name, &shown)?;
                let mut file = dir.create_file(name)?;
                let wrote = write_sparse(data, &mut file, self.bytes_left, self.stop.as_ref()).map_err(|e| written(e, &dir, name))?;
                let Some(wrote) = wrote else { bail!("{}", self.over_budget(path)) };
                self.bytes_left -= wrote;
                file.set_permissions(std::fs::Permissions::from_mode(mode)).with_context(|| format!("setting the mode of '{shown}'"))?;
                if let Some(mtime) = mtime {
                    let _ = file.set_modified(mtime);
                }
            }
            Entry::Symlink(target) => {
                if target.as_os_str().is_empty() || target.is_absolute() {
                    bail!("link '{shown}' points at '{}', outside the destination: refused", target.display());
                }
                make_room(&dir, name, &shown)?;
                dir.symlink(name, target.as_os_str())?;
                self.links.push(rel);
            }
            Entry::HardLink(target) => {
                let from = components(&target).map_err(|e| anyhow::anyhow!("hard link '{shown}' to {e}: refused"))?;
                let (from_name, from_parent) = from.split_last().unwrap_or((&from[0], &[]));
                let from_dir = self.root.open_dir(from_parent).with_context(|| format!("hard link '{shown}'"))?;
                // Only to a regular file this archive wrote: a second name for a symbolic
                // link would be judged nowhere (links are judged by the name they were made at).
                let target_kind = from_dir.stat(from_name).with_context(|| format!("hard link '{shown}'"))?.map(|s| Kind::of(&s));
                if target_kind != Some(Kind::File) {
                    bail!("hard link '{shown}' names '{}', which is not a file the archive extracted before it: refused", target.display());
                }
                make_room(&dir, name, &shown)?;
                dir.hard_link(name, &from_dir, from_name)?;
            }
        }
        self.entries += 1;
        Ok(())
    }

    /// The directory `parent` (created when the archive implies it), from the cache when the
    /// last entry was in it too.
    fn parent(&mut self, parent: &[&OsStr]) -> anyhow::Result<Dir> {
        let rel: PathBuf = parent.iter().collect();
        if let Some((cached, dir)) = &self.last_parent
            && *cached == rel
        {
            return Ok(dir.try_clone()?);
        }
        self.steps_left = self.steps_left.checked_sub(parent.len() as u64).ok_or_else(|| {
            anyhow::anyhow!("the archive's entries take more than {MAX_STEPS} directory steps to place: refused (entries out of order between deep directories)")
        })?;
        let dir = self.root.create_dir_all(parent, IMPLIED_DIR_MODE)?;
        self.last_parent = Some((rel, dir.try_clone()?));
        Ok(dir)
    }

    /// Judges every link against the finished tree, then applies directory modes and times,
    /// deepest first. Returns the number of entries written.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.last_parent = None;
        let links = std::mem::take(&mut self.links);
        for (i, link) in links.iter().enumerate() {
            let parts = components(link)?;
            // Judging a link walks its path, and each link it goes through, from the root:
            // charged to the same step budget as placing entries, and the stop check asked.
            self.steps_left = self
                .steps_left
                .checked_sub(parts.len() as u64 * 2)
                .ok_or_else(|| anyhow::anyhow!("the archive's links take more than {MAX_STEPS} directory steps to judge: refused"))?;
            if (i as u64).is_multiple_of(CHECK_EVERY) {
                self.check()?;
            }
            let (name, parent) = parts.split_last().unwrap_or((&parts[0], &[]));
            let dir = self.root.open_dir(parent).map_err(|e| e.context(format!("judging the link '{}': refused", link.display())))?;
            // A later entry may have replaced the link.
            if dir.stat(name)?.is_some_and(|s| Kind::of(&s) == Kind::Symlink) {
                self.root.check_link(&parts).map_err(|e| anyhow::anyhow!("{e:#}: refused, nothing was extracted"))?;
            }
        }
        self.dirs.sort_by_key(|(rel, ..)| std::cmp::Reverse(rel.components().count()));
        for (rel, mode, mtime) in &self.dirs {
            let dir = self.root.open_dir(&components(rel)?)?;
            dir.set_mode(*mode)?;
            if let Some(mtime) = mtime {
                let when = nix::sys::time::TimeSpec::from(mtime.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
                let _ = nix::sys::stat::futimens(&dir, &when, &when);
            }
        }
        Ok(self.entries)
    }
}

enum Entry {
    Dir,
    File,
    Symlink(PathBuf),
    HardLink(PathBuf),
}

/// Removes what an earlier entry of the same name left (a later entry wins, as in tar), but
/// never a directory: an entry cannot replace one.
fn make_room(dir: &Dir, name: &OsStr, shown: &impl std::fmt::Display) -> anyhow::Result<()> {
    match dir.stat(name).with_context(|| format!("reading '{shown}'"))?.map(|s| Kind::of(&s)) {
        None => Ok(()),
        Some(Kind::Dir) => bail!("entry '{shown}' would replace a directory of the same archive: refused"),
        Some(_) => dir.remove_all(name),
    }
}

/// Copies `data` into `file`, which is new and empty, leaving runs of zeros as holes (a sparse
/// entry's, or any 64 KiB of zeros: the same content). Returns the bytes copied, or `None`
/// as soon as they would be more than `budget` (the caller fails the extraction).
fn write_sparse(data: &mut dyn Read, file: &mut std::fs::File, budget: u64, stop: Option<&Stop>) -> std::io::Result<Option<u64>> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    const BLOCK: usize = 64 << 10;
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0u64;
    let mut hole = 0u64;
    loop {
        let mut filled = 0;
        while filled < BLOCK {
            match data.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        total += filled as u64;
        if total > budget {
            return Ok(None);
        }
        if let Some(stop) = stop
            && (total / BLOCK as u64).is_multiple_of(CHECK_EVERY)
        {
            stop().map_err(std::io::Error::other)?;
        }
        let chunk = &buf[..filled];
        if chunk.iter().all(|b| *b == 0) {
            hole += filled as u64;
        } else {
            if hole > 0 {
                file.seek(SeekFrom::Current(i64::try_from(hole).unwrap_or(i64::MAX)))?;
                hole = 0;
            }
            file.write_all(chunk)?;
        }
        if filled < BLOCK {
            break;
        }
    }
    if hole > 0 {
        file.set_len(total)?;
    }
    Ok(Some(total))
}

/// A write error naming the file (ENOSPC stays the cause, for the caller's hint).
fn written(err: std::io::Error, dir: &Dir, name: &OsStr) -> anyhow::Error {
    podinit_core::fs::io_error(err, format!("writing {}", dir.path().join(name).display()))
}

/// A digest of the tree below `root` as it is on disk (names, depths, types, modes, sizes,
/// inodes, mtimes and ctimes, in walk order): any change made after it was taken, even one
/// that puts an mtime back, changes it. Top-level names starting with `..` (podinit's own)
/// are left out. Iterative ([`Dir::walk`]): memory and time linear in the depth.
pub fn fingerprint(root: &Dir) -> anyhow::Result<String> {
    let mut hash = sha2::Sha256::new();
    // The first top-level `..` directory being skipped, and the depth below it.
    let mut skipping: Option<usize> = None;
    root.walk(
        &mut |_, name, stat, depth| {
            if let Some(at) = skipping {
                if depth > at {
                    return Ok(());
                }
                skipping = None;
            }
            if depth == 1 && name.as_bytes().starts_with(b"..") {
                skipping = Some(depth);
                return Ok(());
            }
            hash.update((depth as u64).to_le_bytes());
            hash.update(name.as_bytes());
            hash.update([0]);
            for n in [
                u64::from(stat.st_mode),
                u64::try_from(stat.st_size).unwrap_or(0),
                stat.st_ino,
                u64::try_from(stat.st_mtime).unwrap_or(0),
                u64::try_from(stat.st_mtime_nsec).unwrap_or(0),
                u64::try_from(stat.st_ctime).unwrap_or(0),
                u64::try_from(stat.st_ctime_nsec).unwrap_or(0),
            ] {
                hash.update(n.to_le_bytes());
            }
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    Ok(crate::hex(&hash.finalize()))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are read plainly")]

    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    /// A tar archive of `(path, kind, mode, link target or content)`, with paths written as
    /// given (the tar crate's builder would refuse the hostile ones).
    fn archive(entries: &[(&str, tar::EntryType, u32, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, kind, mode, text) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(*mode);
            let body: &[u8] = if *kind == tar::EntryType::Regular { text.as_bytes() } else { b"" };
            if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                header.as_old_mut().linkname[..text.len()].copy_from_slice(text.as_bytes());
            }
            header.set_size(body.len() as u64);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn unpack(entries: &[(&str, tar::EntryType, u32, &str)]) -> (tempfile::TempDir, anyhow::Result<u64>) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut unpacker = Unpacker::new(Dir::open(&root).unwrap(), Limits { extract_max_size: None, extract_max_entries: 100 }, None);
        let result = unpacker.tar(&archive(entries)[..]).and_then(|()| unpacker.finish());
        (tmp, result)
    }

    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as L};

    #[test]
    fn chained_links_cannot_climb_out() {
        // `d -> .` is harmless alone; an entry written through it is not.
        let (tmp, result) = unpack(&[("d", L, 0o777, "."), ("d/d/d/d/d/d/esc", L, 0o777, "../../../../../../etc")]);
        let err = result.unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert!(std::fs::symlink_metadata(tmp.path().join("root/esc")).is_err());
        // Written where it is, `x -> d/..` reads as inside but leads to the root's parent.
        let (_tmp, result) = unpack(&[("d", L, 0o777, "."), ("x", L, 0o777, "d/..")]);
        assert!(format!("{:#}", result.unwrap_err()).contains("leads outside"));
        // And a link made harmless-looking first, then aimed out by a later one.
        let (_tmp, result) = unpack(&[("a/l", L, 0o777, "../b/.."), ("b", L, 0o777, ".")]);
        assert!(result.is_err());
    }

    #[test]
    fn escaping_paths_and_links_are_refused() {
        for bad in [
            &[("../x", F, 0o644, "x")][..],
            &[("/etc/x", F, 0o644, "x")],
            &[("a", L, 0o777, "/etc")],
            &[("a/b", L, 0o777, "../../x")],
            &[("h", H, 0o644, "../outside")],
            &[("..data", D, 0o755, "")],
        ] {
            let (_tmp, result) = unpack(bad);
            assert!(result.is_err(), "{bad:?} must be refused");
        }
        let (tmp, result) = unpack(&[
            ("a/b/c", F, 0o644, "c"),
            ("a/up", L, 0o777, "../a/b/c"),
            ("a/dangling", L, 0o777, "b/none"),
            ("h", H, 0o644, "a/b/c"),
        ]);
        assert_eq!(result.unwrap(), 4);
        assert_eq!(std::fs::read_to_string(tmp.path().join("root/a/up")).unwrap(), "c");
        assert_eq!(std::fs::read_to_string(tmp.path().join("root/h")).unwrap(), "c");
    }

    #[test]
    fn special_bits_are_stripped_and_directory_modes_come_last() {
        let (tmp, result) =
            unpack(&[("ro", D, 0o555, ""), ("ro/suid", F, 0o4755, "x"), ("ro/sgid", F, 0o2755, "y"), ("sticky", D, 0o1777, "")]);
        result.unwrap();
        let mode = |p: &str| std::fs::symlink_metadata(tmp.path().join("root").join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("ro/suid"), 0o755);
        assert_eq!(mode("ro/sgid"), 0o755);
        assert_eq!(mode("sticky"), 0o1777, "a scratch directory keeps its sticky bit");
        assert_eq!(mode("ro"), 0o555, "applied after its entries were written");
        std::fs::set_permissions(tmp.path().join("root/ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_hard_link_to_a_symbolic_link_is_refused() {
        // `a/b/l -> ../../x` stays inside where it stands; a second name for it at the top
        // (`top`, a hard link) would point two levels above the root.
        let (tmp, result) = unpack(&[("a/b/l", L, 0o777, "../../x"), ("top", H, 0o644, "a/b/l")]);
        let err = result.unwrap_err();
        assert!(format!("{err:#}").contains("not a file the archive extracted"), "{err:#}");
        assert!(std::fs::symlink_metadata(tmp.path().join("root/top")).is_err());
        // To a directory neither.
        let (_tmp, result) = unpack(&[("d", D, 0o755, ""), ("h", H, 0o644, "d")]);
        assert!(result.is_err());
    }

    #[test]
    fn budgets_of_bytes_and_entries_stop_an_extraction() {
        let entries: Vec<(String, tar::EntryType, u32, &str)> = (0..150).map(|i| (format!("f{i}"), F, 0o644, "x")).collect();
        let borrowed: Vec<(&str, tar::EntryType, u32, &str)> = entries.iter().map(|(p, k, m, t)| (p.as_str(), *k, *m, *t)).collect();
        let (_tmp, result) = unpack(&borrowed);
        assert!(format!("{:#}", result.unwrap_err()).contains("more than 100 entries"));
        let tmp = tempfile::tempdir().unwrap();
        let limits = Limits { extract_max_size: Some(1000), extract_max_entries: 100 };
        let mut unpacker = Unpacker::new(Dir::open(tmp.path()).unwrap(), limits, None);
        let body = "y".repeat(600);
        let result = unpacker.tar(&archive(&[("a", F, 0o644, &body), ("b", F, 0o644, &body)])[..]);
        assert!(format!("{:#}", result.unwrap_err()).contains("more than 1000 bytes"));
        assert!(!tmp.path().join("b").exists(), "refused by its declared size, before a byte of it");
    }

    #[test]
    fn zeros_are_written_as_holes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 8 << 20];
        data[3 << 20] = 1;
        let mut file = std::fs::File::create(tmp.path().join("f")).unwrap();
        assert_eq!(write_sparse(&mut &data[..], &mut file, 16 << 20, None).unwrap(), Some(8 << 20));
        drop(file);
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), data);
        let blocks = std::fs::metadata(tmp.path().join("f")).unwrap().blocks();
        assert!(blocks * 512 < 1 << 20, "8 MiB of mostly zeros take {} bytes", blocks * 512);
        let mut file = std::fs::File::create(tmp.path().join("g")).unwrap();
        assert_eq!(write_sparse(&mut &data[..], &mut file, 1 << 20, None).unwrap(), None, "over the budget");
    }

    #[test]
    fn later_entries_win_but_never_over_a_directory() {
        let (tmp, result) = unpack(&[("f", F, 0o644, "one"), ("f", F, 0o644, "two")]);
        result.unwrap();
        assert_eq!(std::fs::read_to_string(tmp.path().join("root/f")).unwrap(), "two");
        let (_tmp, result) = unpack(&[("d/x", F, 0o644, "x"), ("d", F, 0o644, "file over a directory")]);
        assert!(result.is_err());
    }

    #[test]
    fn fingerprints_see_edits_that_restore_mtime() {
        let (tmp, result) = unpack(&[("a/b", F, 0o644, "12345")]);
        result.unwrap();
        let root = Dir::open(&tmp.path().join("root")).unwrap();
        let before = fingerprint(&root).unwrap();
        assert_eq!(fingerprint(&root).unwrap(), before);
        let file = tmp.path().join("root/a/b");
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, "54321").unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
        assert_ne!(fingerprint(&root).unwrap(), before);
    }
}

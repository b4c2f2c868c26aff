//! `podinit cp`: copy files and trees into a volume, each file atomically.
//!
//! Every file is written to a temp file in its destination directory, synced and renamed
//! over the destination, so an app never reads a half-copied config. Files are synced in
//! batches: a batch of temp files is made durable by one `syncfs`, then renamed, where a sync
//! per file would wait for the disk once per file (see ARCHITECTURE.md). Below the destination
//! nothing is resolved through a link (the destination's directories are walked with
//! `O_NOFOLLOW`), so a link planted in a volume cannot redirect a copy outside it. A source
//! that is a kubelet ConfigMap or Secret volume (`..data`, `..2026_…` and visible links into
//! `..data`) is copied as the app sees it: its visible files with their content, never the
//! `..` entries. A destination file that already holds the same bytes (and mode, owner) is
//! left alone: a rerun changes nothing.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::sys::stat::{FileStat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use podinit_core::fs::root::{Dir, Kind};
use podinit_core::{Context, Error};

use crate::mode::{self, Mode};
use crate::walk::{Change, Tally};
use crate::{WalkArgs, finish};

/// Copy files and directories, as cp does; each file appears whole or not at all.
///
/// SRC... DEST: into the directory DEST (named after each SRC), or one SRC to DEST itself.
/// `SRC/.` copies what is in SRC; `*`, `?` and `[...]` in a SRC are expanded as sh does
/// (`/certs/*.key`). A kubelet ConfigMap or Secret volume is copied as the app sees it: its
/// files, with content, never its `..data` entries. Below DEST no link is followed.
#[derive(Debug, Clone, clap::Args)]
#[command(
    override_usage = "podinit cp [OPTIONS] <SRC>... <DEST>",
    after_help = "\
Examples:
  podinit cp -rL /config/. /etc/app/                     a ConfigMap's files into an emptyDir
  podinit cp --mode 0600 /secret/tls.key /certs/tls.key  a key, readable by its owner only
  podinit cp /podinit /shared/bin/podinit                the binary, for the app to exec
  podinit cp -a /seed/. /data/                           a tree, with modes, owners and times
  podinit cp /certs/*.pem /etc/ssl/app/                  the files a pattern matches

Differences from GNU cp: an existing file is replaced by a new one (atomic), not written
over; a file already holding the same content, mode and owner is not touched."
)]
pub struct Args {
    /// Copy directories and everything in them (-R too).
    #[arg(short = 'r', short_alias = 'R', long = "recursive")]
    pub recursive: bool,

    /// Follow links in the sources: copy what they point at.
    #[arg(short = 'L', long = "dereference", conflicts_with = "no_dereference")]
    pub dereference: bool,

    /// Copy links as links (the default with -r; without -r, SRC links are followed); -d too.
    #[arg(short = 'P', short_alias = 'd', long = "no-dereference")]
    pub no_dereference: bool,

    /// Keep mode, ownership (as root) and timestamps (--preserve=mode,ownership,timestamps),
    /// of files, directories and links.
    #[arg(short = 'p')]
    pub preserve_all: bool,

    /// -r -P -p: a tree as it is, links as links, with modes, owners (as root) and times.
    #[arg(short = 'a', long)]
    pub archive: bool,

    /// Only replace a file older than its source (or missing).
    #[arg(short = 'u', long)]
    pub update: bool,

    /// A line for every file copied (`'SRC' -> 'DEST'`), as GNU's -v; on stdout.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// What to keep: a list of mode, ownership, timestamps (or all).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub preserve: Vec<String>,

    /// Do not replace an existing file.
    #[arg(short = 'n', long = "no-clobber", conflicts_with = "force")]
    pub no_clobber: bool,

    /// Refused: podinit never asks (a pod has no terminal); see the hint.
    #[arg(short = 'i', long, hide = true)]
    pub interactive: bool,

    /// Replace existing files (what podinit's atomic copy does anyway; GNU's flag).
    #[arg(short = 'f', long)]
    pub force: bool,

    /// DEST is the copy's own name, never a directory to copy into.
    #[arg(short = 'T', long = "no-target-directory")]
    pub no_target_directory: bool,

    /// Mode of the files copied (octal or symbolic, as chmod), e.g. 0600 for keys.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    #[command(flatten)]
    pub walk: WalkArgs,

    /// Sources, then the destination.
    #[arg(value_name = "PATH", required = true, num_args = 2..)]
    pub paths: Vec<PathBuf>,
}

/// What to keep of each source file.
#[derive(Clone, Copy, Debug, Default)]
struct Preserve {
    mode: bool,
    ownership: bool,
    timestamps: bool,
}

/// Settings of one run, shared by the copying threads.
struct Copier {
    preserve: Preserve,
    mode: Option<Mode>,
    umask: u32,
    follow: bool,
    no_clobber: bool,
    update: bool,
    verbose: bool,
    /// Files written under temp names, to be synced and renamed in a batch.
    staged: Mutex<Vec<Staged>>,
    /// The directories written to while the copy is small (at most [`SMALL`] files, no
    /// directory made): synced one by one at the end instead of their file systems. `None`
    /// once past that.
    small: Mutex<Option<(usize, Vec<Arc<Dir>>)>>,
    /// Directories whose times to set once everything is in (`-p`).
    dir_times: Mutex<Vec<DirTimes>>,
    /// A directory on each file system written to, to sync once more at the end.
    devices: Mutex<Vec<(u64, Arc<Dir>)>>,
    /// Directories to give their mode once their files are in.
    later: Mutex<Vec<(Dir, u32)>>,
    /// How to walk source trees.
    walk: crate::walk::Walk,
}

/// A copied directory and the times to give it: the root of its copy (`parent` `None`, `name`
/// empty), or `name` in the directory recorded at index `parent` (recorded before it: a
/// directory is visited before its entries). One name per directory, whatever the depth.
struct DirTimes {
    root: Arc<Dir>,
    parent: Option<usize>,
    name: OsString,
    times: (TimeSpec, TimeSpec),
}

/// A file written under a temp name beside its destination, not yet renamed into place.
struct Staged {
    /// The temp file, to sync by itself in a small batch (`None` for a link).
    file: Option<File>,
    dir: Arc<Dir>,
    /// The file system `dir` is on.
    device: u64,
    temp: OsString,
    name: OsString,
    /// `-n`: a file that appeared at `name` meanwhile is kept (`RENAME_NOREPLACE`).
    keep_existing: bool,
}

/// How many read-only directories wait, open, for their mode until the end of a copy.
const MAX_LATER: usize = 256;

/// How many staged files one `syncfs` makes durable before they are renamed into place.
const BATCH: usize = 256;

/// A batch of at most this many files is made durable file by file (`fsync`), and a copy of
/// at most this many into existing directories syncs those directories, not their file
/// systems: a `syncfs` waits for everything anyone wrote there (a busy node's volume), which
/// made a one-file copy take 0.6-1.2 s (see docs/benchmarks.md).
const SMALL: usize = 8;

thread_local! {
    /// The destination directory this thread last wrote into (its parent's copy and its
    /// name there, the parent kept alive so the pointer stays its own): the walk visits the
    /// entries of one directory one after another, so one open descriptor serves them all.
    static LAST_DIR: RefCell<Option<LastDir>> = const { RefCell::new(None) };
}

/// The parent's copy, the name in it, the open directory and its file system.
type LastDir = (Arc<Dir>, OsString, Arc<Dir>, u64);

/// Where the entries of a source directory are copied to, carried down the walk: never found
/// again from the destination's root, which cost time quadratic in the depth.
#[derive(Default)]
enum Dest {
    /// The directory's copy could not be made: its entries are skipped (its failure counted).
    #[default]
    None,
    /// An open directory and its file system (the root of a copy), and its index in
    /// `dir_times` (-p).
    Open(Arc<Dir>, u64, Option<usize>),
    /// The directory `name` in the copy of the parent (opened when its entries' turn comes:
    /// a wide tree waiting in the walk keeps no descriptor per directory), and its index in
    /// `dir_times` (-p).
    In(Arc<Dir>, OsString, Option<usize>),
}

impl Dest {
    /// The open destination directory and its file system, `None` to skip.
    fn open(&self) -> anyhow::Result<Option<(Arc<Dir>, u64)>> {
        match self {
            Self::None => Ok(None),
            Self::Open(dir, device, _) => Ok(Some((Arc::clone(dir), *device))),
            Self::In(parent, name, _) => LAST_DIR.with_borrow_mut(|last| {
                if let Some((p, n, dir, device)) = last.as_ref()
                    && Arc::ptr_eq(p, parent)
                    && n == name
                {
                    return Ok(Some((Arc::clone(dir), *device)));
                }
                let dir = Arc::new(parent.create_dir_all(&[name.as_os_str()], 0o755)?);
                let device = dir.stat_self()?.st_dev;
                *last = Some((Arc::clone(parent), name.clone(), Arc::clone(&dir), device));
                Ok(Some((dir, device)))
            }),
        }
    }

    /// Where this directory's times are recorded (-p).
    fn times_index(&self) -> Option<usize> {
        match self {
            Self::None => None,
            Self::Open(_, _, index) | Self::In(_, _, index) => *index,
        }
    }
}

/// Runs `podinit cp` to completion.
pub fn run(ctx: &Context, mut args: Args) -> Result<(), Error> {
    crate::refuse_interactive(args.interactive, "-n keeps every file that exists")?;
    let follows = args.dereference || !(args.recursive || args.no_dereference || args.archive);
    args.paths = crate::operands(std::mem::take(&mut args.paths), follows)?;
    if let [only] = args.paths.as_slice() {
        return Err(Error::usage(format!("only one path once expanded ({}): name a destination", only.display())));
    }
    copy(ctx, args)
}

/// Copies as `args` say, its paths taken as they are (`mv` across file systems too).
pub(crate) fn copy(ctx: &Context, mut args: Args) -> Result<(), Error> {
    if args.archive {
        args.recursive = true;
        args.no_dereference = !args.dereference;
        args.preserve_all = true;
    }
    let walk = args.walk.walk(false)?;
    let (sources, dest) = args.paths.split_at(args.paths.len() - 1);
    let dest = &dest[0];
    let mut preserve = Preserve::default();
    for item in &args.preserve {
        match item.as_str() {
            "mode" => preserve.mode = true,
            "ownership" => preserve.ownership = true,
            "timestamps" => preserve.timestamps = true,
            "all" => preserve = Preserve { mode: true, ownership: true, timestamps: true },
            other => return Err(Error::usage(format!("--preserve: '{other}' is not mode, ownership, timestamps or all"))),
        }
    }
    if args.preserve_all {
        preserve = Preserve { mode: true, ownership: true, timestamps: true };
    }
    let mode = args.mode.as_deref().map(Mode::parse).transpose().map_err(|e| Error::usage(format!("--mode {e}")))?;
    let dest_is_dir = !args.no_target_directory && dest.is_dir();
    if sources.len() > 1 && !dest_is_dir {
        return Err(Error::usage(format!("copying {} sources needs DEST to be a directory; {} is not one", sources.len(), dest.display())));
    }
    let copier = Copier {
        preserve,
        mode,
        umask: mode::umask(),
        follow: args.dereference,
        no_clobber: args.no_clobber,
        update: args.update,
        verbose: args.verbose,
        staged: Mutex::new(Vec::new()),
        small: Mutex::new(Some((0, Vec::new()))),
        dir_times: Mutex::new(Vec::new()),
        devices: Mutex::new(Vec::new()),
        later: Mutex::new(Vec::new()),
        walk,
    };
    // Bad input before anything is written: a directory without -r, a copy into itself.
    let metas: Vec<std::io::Result<std::fs::Metadata>> = sources
        .iter()
        .map(|source| {
            if args.dereference || !(args.recursive || args.no_dereference) {
                std::fs::metadata(source)
            } else {
                std::fs::symlink_metadata(source)
            }
        })
        .collect();
    for (source, meta) in sources.iter().zip(&metas) {
        if let Ok(meta) = meta
            && meta.is_dir()
        {
            if !args.recursive {
                return Err(Error::usage(format!("{} is a directory: add -r to copy it", source.display())));
            }
            if inside(dest, source) {
                return Err(Error::usage(format!("cannot copy the directory {} into itself ({})", source.display(), dest.display())));
            }
        }
    }
    let started = Instant::now();
    let tally = Tally::with_progress(ctx, format!("cp → {}", dest.display()));
    for (source, meta) in sources.iter().zip(metas) {
        // One source failing does not stop the others (as cp does); counted, named at the end.
        let copied = meta.map_err(|e| podinit_core::fs::io_error(e, format!("cannot copy {}", source.display()))).and_then(|meta| {
            let contents = source.as_os_str().as_encoded_bytes().ends_with(b"/.");
            if meta.is_dir() {
                // Into DEST itself, or into a directory named after SRC below it (not
                // followed if it is a link: it is a name in the volume, not the operator's).
                let name = (!contents && dest_is_dir).then(|| source.file_name().unwrap_or(OsStr::new(".")));
                copier.tree(ctx, source, &meta, dest, name, &tally)
            } else {
                let target = if dest_is_dir { dest.join(source.file_name().unwrap_or_default()) } else { dest.clone() };
                let (dir, name) = crate::parent_of(&target)?;
                let device = dir.stat_self()?.st_dev;
                let change = copier.one(source, &meta, &Arc::new(dir), device, &name, &tally)?;
                tally.add(change);
                Ok(())
            }
        });
        if let Err(e) = copied {
            tally.fail(&e);
        }
    }
    copier.finish(&tally)?;
    let what = format!("{} → {}", sources.iter().map(|s| s.display().to_string()).collect::<Vec<_>>().join(" "), dest.display());
    finish("cp", &what, &tally, started, ctx)
}

impl Copier {
    /// Copies the tree at `source` to `dest` (the operator's path, made when missing), or to
    /// `name` in it (made when missing, never followed if it is a link).
    fn tree(
        &self,
        ctx: &Context,
        source: &Path,
        meta: &std::fs::Metadata,
        dest: &Path,
        name: Option<&OsStr>,
        tally: &Tally,
    ) -> anyhow::Result<()> {
        let opened = |e| podinit_core::fs::io_error(e, format!("opening {}", dest.display()));
        let (root, made) = match name {
            None => {
                let made = !dest.exists();
                if made {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .create(dest)
                        .map_err(|e| podinit_core::fs::io_error(e, format!("creating {}", dest.display())))?;
                }
                (Dir::open(dest).map_err(opened)?, made)
            }
            Some(name) => {
                let parent = Dir::open(dest).map_err(opened)?;
                let made = parent.stat(name)?.is_none();
                (parent.create_dir_all(&[name], 0o755)?, made)
            }
        };
        if made || self.preserve.mode {
            let mode = if self.preserve.mode { meta.mode() & 0o7777 } else { meta.mode() & 0o777 & !self.umask };
            self.dir_mode(root.try_clone()?, mode)?;
        }
        if made {
            self.made_dir();
            if self.verbose {
                crate::say(format_args!("{} -> {}", crate::quoted(source), crate::quoted(root.path())));
            }
        }
        let root = Arc::new(root);
        let stat = nix::sys::stat::stat(source)?;
        let index = self.dir_owner_times(&root, &root, None, OsStr::new(""), &stat)?;
        self.copy_dir(ctx, source, (&root, index), tally, &[(meta.dev(), meta.ino())], &self.walk)
    }

    /// A copy made a directory: its parent's entry must be synced too, so the end syncs
    /// whole file systems.
    fn made_dir(&self) {
        *self.small.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// With -p: the owner of the directory `dir` (as root) now, its times once everything is
    /// in (`name` in the directory recorded at `parent`, or the root of the copy); returns
    /// where its times are recorded.
    fn dir_owner_times(
        &self,
        root: &Arc<Dir>,
        dir: &Dir,
        parent: Option<usize>,
        name: &OsStr,
        stat: &FileStat,
    ) -> anyhow::Result<Option<usize>> {
        if self.preserve.ownership {
            let own = dir.stat_self()?;
            if (own.st_uid, own.st_gid) != (stat.st_uid, stat.st_gid) {
                match dir.chown_self(Some(stat.st_uid), Some(stat.st_gid)) {
                    Err(e) if !owner_not_kept(crate::walk::errno(&e)) => return Err(e),
                    _ => {}
                }
            }
        }
        if self.preserve.timestamps {
            let times = (TimeSpec::new(stat.st_atime, stat.st_atime_nsec), TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec));
            let mut list = self.dir_times.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            list.push(DirTimes { root: Arc::clone(root), parent, name: name.to_owned(), times });
            return Ok(Some(list.len() - 1));
        }
        Ok(None)
    }

    /// Copies what is in the directory `source` into `root`. `ancestors` are the source
    /// directories this one is inside (device, inode), to refuse a cycle of links with -L.
    fn copy_dir(
        &self,
        ctx: &Context,
        source: &Path,
        (root, root_times): (&Arc<Dir>, Option<usize>),
        tally: &Tally,
        ancestors: &[(u64, u64)],
        walk: &crate::walk::Walk,
    ) -> anyhow::Result<()> {
        let mut from = Dir::open(source).map_err(|e| podinit_core::fs::io_error(e, format!("opening {}", source.display())))?;
        // A kubelet ConfigMap or Secret volume: what the app sees is the data directory
        // `..data` points at (one `..NAME` beside it); the `..` entries and the visible links
        // into `..data` are the layout. Anything else named `..data` is an ordinary entry.
        let mut skip_dotdot = false;
        if let Ok(data) = from.read_link(OsStr::new("..data"))
            && data.as_encoded_bytes().starts_with(b"..")
            && !data.as_encoded_bytes().contains(&b'/')
            && let Ok(dir) = from.sub(&data)
        {
            tracing::debug!("{}: a kubelet volume; copying what {} holds", source.display(), Path::new(&data).display());
            from = dir.shown_as(source);
            skip_dotdot = true;
        }
        let walk = crate::walk::Walk { skip_dotdot, ..walk.clone() };
        let top = Dest::Open(Arc::clone(root), root.stat_self()?.st_dev, root_times);
        walk.run(ctx, from, top, tally, |entry| {
            // What this entry's own entries get: set for a directory as soon as its copy
            // exists, so a later failure (its mode) does not lose the subtree.
            let mut below = Dest::None;
            let result = (|| -> anyhow::Result<Change> {
                let name = &entry.name;
                let Some((dest_dir, device)) = entry.carry.open()? else { return Ok(Change::Skipped) };
                let kind = entry.kind();
                if kind == Kind::Symlink && self.follow {
                    // -L: the operator asked for what links in the source point at.
                    let path = entry.path();
                    let meta =
                        std::fs::metadata(&path).map_err(|e| podinit_core::fs::io_error(e, format!("following {}", path.display())))?;
                    if !meta.is_dir() {
                        return self.one(&path, &meta, &dest_dir, device, name, tally);
                    }
                    let seen = (meta.dev(), meta.ino());
                    if ancestors.contains(&seen) {
                        anyhow::bail!("{} leads to a directory it is inside (a cycle of links): not followed", path.display());
                    }
                    let made = dest_dir.stat(name)?.is_none();
                    let sub = Arc::new(dest_dir.create_dir_all(&[*name], 0o755)?);
                    if made {
                        self.made_dir();
                    }
                    let mut inner = ancestors.to_vec();
                    inner.push(seen);
                    let index = self.dir_owner_times(&sub, &sub, None, OsStr::new(""), &nix::sys::stat::stat(&path)?)?;
                    // Walked by this thread alone: the run's threads are busy already.
                    let single = crate::walk::Walk { jobs: 1, ..walk.clone() };
                    self.copy_dir(ctx, &path, (&sub, index), tally, &inner, &single)?;
                    return Ok(if made { Change::Changed } else { Change::Unchanged });
                }
                match kind {
                    Kind::Dir => {
                        let made = dest_dir.stat(name)?.is_none();
                        let sub = dest_dir.create_dir_all(&[*name], 0o755)?;
                        let index = self.dir_owner_times(root, &sub, entry.carry.times_index(), name, entry.stat)?;
                        below = Dest::In(Arc::clone(&dest_dir), (*name).to_owned(), index);
                        if made {
                            self.made_dir();
                            if self.verbose {
                                crate::say(format_args!("{} -> {}", crate::quoted(&entry.path()), crate::quoted(sub.path())));
                            }
                        }
                        if made || self.preserve.mode {
                            let mode =
                                if self.preserve.mode { entry.stat.st_mode & 0o7777 } else { entry.stat.st_mode & 0o777 & !self.umask };
                            self.dir_mode(sub, mode)?;
                        }
                        Ok(if made { Change::Changed } else { Change::Unchanged })
                    }
                    Kind::File => self.file(entry.dir, entry.name, entry.stat, &dest_dir, device, name, tally),
                    Kind::Symlink => {
                        let target = entry.dir.read_link(entry.name)?;
                        self.symlink(&target, entry.stat, &entry.path(), &dest_dir, device, name, tally)
                    }
                    Kind::Other => {
                        tracing::warn!("skipping {}: devices, FIFOs and sockets are not copied", entry.path().display());
                        Ok(Change::Skipped)
                    }
                }
            })();
            (result, below)
        });
        Ok(())
    }

    /// One operand that is not a directory (a file, or a link, followed or not).
    fn one(
        &self,
        source: &Path,
        meta: &std::fs::Metadata,
        dest_dir: &Arc<Dir>,
        device: u64,
        name: &OsStr,
        tally: &Tally,
    ) -> anyhow::Result<Change> {
        if meta.file_type().is_symlink() {
            let stat = nix::sys::stat::lstat(source)?;
            return self.symlink(std::fs::read_link(source)?.as_os_str(), &stat, source, dest_dir, device, name, tally);
        }
        let file = podinit_core::fs::root::open_regular(source)
            .map_err(|e| podinit_core::fs::io_error(e, format!("opening {}", source.display())))?;
        let stat = nix::sys::stat::fstat(&file)?;
        self.write(file, &stat, dest_dir, device, name, source, tally)
    }

    /// A regular file found by the walk, opened without following a link.
    #[expect(clippy::too_many_arguments, reason = "the source and the destination, each a directory and a name, and the run's tally")]
    fn file(
        &self,
        dir: &Dir,
        name: &OsStr,
        stat: &FileStat,
        dest_dir: &Arc<Dir>,
        device: u64,
        dest_name: &OsStr,
        tally: &Tally,
    ) -> anyhow::Result<Change> {
        let file =
            dir.open_file(name).map_err(|e| podinit_core::fs::io_error(e, format!("opening {}", dir.path().join(name).display())))?;
        self.write(file, stat, dest_dir, device, dest_name, &dir.path().join(name), tally)
    }

    /// The mode, owner and times the copy of a file with `stat` gets.
    fn target_mode(&self, stat: &FileStat) -> u32 {
        match &self.mode {
            Some(mode) => mode.apply(stat.st_mode & 0o7777, false, self.umask),
            None if self.preserve.mode => stat.st_mode & 0o7777,
            None => stat.st_mode & 0o777 & !self.umask,
        }
    }

    /// Writes `source` (open, with `stat`) as `dest_dir/name`: a temp file, staged to be
    /// synced and renamed with its batch; nothing when the destination already holds the same.
    #[expect(clippy::too_many_arguments, reason = "the source, the destination and where it is, and the run's tally")]
    fn write(
        &self,
        mut source: File,
        stat: &FileStat,
        dest_dir: &Arc<Dir>,
        device: u64,
        name: &OsStr,
        shown: &Path,
        tally: &Tally,
    ) -> anyhow::Result<Change> {
        let existing = dest_dir.stat(name)?;
        // A file replaced keeps its mode and owner unless told otherwise, as GNU cp's write
        // into it does (the copy is a new file here: given them).
        let kept = existing.filter(|e| Kind::of(e) == Kind::File);
        let mode = match kept {
            Some(e) if self.mode.is_none() && !self.preserve.mode => e.st_mode & 0o7777,
            _ => self.target_mode(stat),
        };
        let owner = match kept {
            _ if self.preserve.ownership => Some((stat.st_uid, stat.st_gid)),
            Some(e) if nix::unistd::geteuid().is_root() => Some((e.st_uid, e.st_gid)),
            _ => None,
        };
        let said = || {
            if self.verbose {
                crate::say(format_args!("{} -> {}", crate::quoted(shown), crate::quoted(&dest_dir.path().join(name))));
            }
        };
        if let Some(existing) = existing {
            if self.no_clobber || (self.update && Kind::of(&existing) != Kind::Dir && !older(&existing, stat)) {
                return Ok(Change::Skipped);
            }
            if Kind::of(&existing) == Kind::Dir {
                anyhow::bail!("{} is a directory; a file cannot replace it", dest_dir.path().join(name).display());
            }
            // The same bytes with other times (-p) are written anew like any other change:
            // setting times through the existing file would reach its other names, maybe
            // outside the volume.
            if Kind::of(&existing) == Kind::File
                && existing.st_size == stat.st_size
                && existing.st_mode & 0o7777 == mode
                && owner.is_none_or(|(u, g)| existing.st_uid == u && existing.st_gid == g)
                && (!self.preserve.timestamps || same_times(&existing, stat))
                && same_content(&mut source, dest_dir, name, stat.st_size)?
            {
                said();
                return Ok(Change::Unchanged);
            }
        }
        let (temp, mut out) = crate::with_temp_name(name, |temp| dest_dir.create_file_with_mode(temp, mode))?;
        let written = (|| -> anyhow::Result<()> {
            podinit_core::fs::copy_contents(&mut source, &mut out).map_err(|e| {
                podinit_core::fs::io_error(e, format!("copying {} to {}", shown.display(), dest_dir.path().join(name).display()))
            })?;
            // Created with the mode less the umask: only special bits, or bits the umask
            // took, need a second call.
            if mode & !0o777 != 0 || mode & self.umask != 0 {
                out.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            if let Some((uid, gid)) = owner {
                match std::os::unix::fs::fchown(&out, Some(uid), Some(gid)) {
                    // chown clears setuid/setgid: put the mode back.
                    Ok(()) => out.set_permissions(std::fs::Permissions::from_mode(mode))?,
                    Err(e) if owner_not_kept(e.raw_os_error()) => {}
                    Err(e) => {
                        return Err(podinit_core::fs::io_error(
                            e,
                            format!("setting the owner of {}", dest_dir.path().join(name).display()),
                        ));
                    }
                }
            }
            if self.preserve.timestamps {
                nix::sys::stat::futimens(&out, &atime(stat), &mtime(stat))?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = dest_dir.remove_all(&temp);
            return Err(e);
        }
        said();
        let staged =
            Staged { file: Some(out), dir: Arc::clone(dest_dir), device, temp, name: name.to_owned(), keep_existing: self.no_clobber };
        self.stage(staged, tally);
        Ok(Change::Changed)
    }

    /// A link (`stat` its own, `shown` its path) copied as a link: made under a temp name,
    /// given the owner (as root) and times with -p, and renamed over the destination.
    #[expect(clippy::too_many_arguments, reason = "the source link, the destination and where it is, and the run's tally")]
    fn symlink(
        &self,
        target: &OsStr,
        stat: &FileStat,
        shown: &Path,
        dest_dir: &Arc<Dir>,
        device: u64,
        name: &OsStr,
        tally: &Tally,
    ) -> anyhow::Result<Change> {
        let owner_times = |at: &OsStr| -> anyhow::Result<()> {
            if self.preserve.ownership {
                let (uid, gid) = (nix::unistd::Uid::from_raw(stat.st_uid), nix::unistd::Gid::from_raw(stat.st_gid));
                match nix::unistd::fchownat(&**dest_dir, at, Some(uid), Some(gid), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(()) => {}
                    Err(e) if owner_not_kept(Some(e as i32)) => {}
                    Err(e) => {
                        return Err(podinit_core::fs::io_error(
                            e,
                            format!("setting the owner of {}", dest_dir.path().join(name).display()),
                        ));
                    }
                }
            }
            if self.preserve.timestamps {
                nix::sys::stat::utimensat(&**dest_dir, at, &atime(stat), &mtime(stat), UtimensatFlags::NoFollowSymlink)?;
            }
            Ok(())
        };
        if let Some(existing) = dest_dir.stat(name)? {
            if self.no_clobber || (self.update && Kind::of(&existing) != Kind::Dir && !older(&existing, stat)) {
                return Ok(Change::Skipped);
            }
            // The same link, owner and times: left alone; anything else is made anew under a
            // temp name, never changed at the name (another entry may be swapped in there).
            if Kind::of(&existing) == Kind::Symlink
                && dest_dir.read_link(name).is_ok_and(|t| t == target)
                && (!self.preserve.ownership
                    || (existing.st_uid, existing.st_gid) == (stat.st_uid, stat.st_gid)
                    || !nix::unistd::geteuid().is_root())
                && (!self.preserve.timestamps || same_times(&existing, stat))
            {
                return Ok(Change::Unchanged);
            }
        }
        let (temp, ()) = crate::with_temp_name(name, |temp| dest_dir.symlink(temp, target))?;
        if let Err(e) = owner_times(&temp) {
            let _ = dest_dir.remove_all(&temp);
            return Err(e);
        }
        if self.verbose {
            crate::say(format_args!("{} -> {}", crate::quoted(shown), crate::quoted(&dest_dir.path().join(name))));
        }
        let staged = Staged { file: None, dir: Arc::clone(dest_dir), device, temp, name: name.to_owned(), keep_existing: self.no_clobber };
        self.stage(staged, tally);
        Ok(Change::Changed)
    }

    /// Gives a copied directory its mode; one that would keep its owner from writing into it
    /// (a read-only source directory) gets it once its files are in (as GNU cp does).
    fn dir_mode(&self, dir: Dir, mode: u32) -> anyhow::Result<()> {
        let mut later = self.later.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Each waiting directory holds a descriptor: past a bound (a tree of thousands of
        // read-only directories), the mode is set at once, and only a non-root copier without
        // CAP_DAC_OVERRIDE would then fail to write into them.
        if mode & 0o300 == 0o300 || later.len() >= MAX_LATER {
            return dir.set_mode(mode);
        }
        dir.set_mode(mode | 0o300)?;
        later.push((dir, mode));
        Ok(())
    }

    /// Adds a written temp file to the batch; a full batch is committed by this thread.
    fn stage(&self, staged: Staged, tally: &Tally) {
        {
            let mut small = self.small.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((files, dirs)) = small.as_mut() {
                *files += 1;
                if !dirs.iter().any(|d| Arc::ptr_eq(d, &staged.dir)) {
                    dirs.push(Arc::clone(&staged.dir));
                }
                if *files > SMALL {
                    *small = None;
                }
            }
        }
        let full = {
            let mut batch = self.staged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            batch.push(staged);
            if batch.len() >= BATCH { std::mem::take(&mut *batch) } else { Vec::new() }
        };
        self.commit(full, tally);
    }

    /// Makes a batch of temp files durable (one `syncfs` per file system, or an `fsync` per
    /// file in a small batch) and renames each into place. A file that cannot be is removed
    /// and counted as failed, not changed.
    fn commit(&self, batch: Vec<Staged>, tally: &Tally) {
        let mut synced: Vec<u64> = Vec::new();
        let mut failure: Option<String> = None;
        let small = batch.len() <= SMALL;
        for staged in &batch {
            if small {
                if let Some(file) = &staged.file
                    && failure.is_none()
                    && let Err(e) = file.sync_all()
                {
                    failure = Some(format!(
                        "{:#}",
                        podinit_core::fs::io_error(e, format!("syncing {}", staged.dir.path().join(&staged.temp).display()))
                    ));
                }
                let mut devices = self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if !devices.iter().any(|(d, _)| *d == staged.device) {
                    devices.push((staged.device, Arc::clone(&staged.dir)));
                }
                continue;
            }
            if failure.is_none() && !synced.contains(&staged.device) {
                synced.push(staged.device);
                if let Err(e) = staged.dir.sync_fs() {
                    failure = Some(format!("{e:#}"));
                }
                let mut devices = self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if !devices.iter().any(|(d, _)| *d == staged.device) {
                    devices.push((staged.device, Arc::clone(&staged.dir)));
                }
            }
        }
        for staged in batch {
            let renamed = match &failure {
                None if staged.keep_existing => staged.dir.rename_noreplace(&staged.temp, &staged.name),
                None => staged.dir.rename(&staged.temp, &staged.name).map(|()| true),
                Some(reason) => Err(anyhow::anyhow!("{reason}")),
            };
            match renamed {
                Ok(true) => {}
                Ok(false) => {
                    // -n, and a file appeared at the name meanwhile: it stays.
                    let _ = staged.dir.remove_all(&staged.temp);
                    tally.unchange(Change::Skipped);
                }
                Err(e) => {
                    let _ = staged.dir.remove_all(&staged.temp);
                    tally.retract(&e.context(format!("copying to {}", staged.dir.path().join(&staged.name).display())));
                }
            }
        }
    }

    /// Commits what is staged, then syncs each file system written to once more, so the
    /// renames are durable too before the app starts.
    fn finish(&self, tally: &Tally) -> Result<(), Error> {
        let rest = std::mem::take(&mut *self.staged.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.commit(rest, tally);
        for (dir, mode) in self.later.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            if let Err(e) = dir.set_mode(mode) {
                tally.fail(&e);
            }
        }
        self.set_dir_times(tally);
        // A small copy into existing directories: those directories' entries are what is
        // left to make durable. Otherwise each file system written to, once.
        if let Some((_, dirs)) = self.small.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            for dir in dirs {
                dir.sync().map_err(Error::from)?;
            }
            return Ok(());
        }
        for (_, dir) in self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            dir.sync_fs().map_err(Error::from)?;
        }
        Ok(())
    }

    /// Gives the copied directories their times (-p), once nothing more is written into them:
    /// from each root down, a directory opened from its parent (`O_NOFOLLOW`) while the
    /// parent is open on a stack as deep as the tree, so each is opened once.
    fn set_dir_times(&self, tally: &Tally) {
        let list = std::mem::take(&mut *self.dir_times.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); list.len()];
        for (index, item) in list.iter().enumerate() {
            if let Some(parent) = item.parent {
                children[parent].push(index);
            }
        }
        let set = |dir: &Dir, item: &DirTimes| {
            if let Err(e) = nix::sys::stat::futimens(dir, &item.times.0, &item.times.1) {
                tally.fail(&podinit_core::fs::io_error(e, format!("setting the times of {}", dir.path().display())));
            }
        };
        for (top, item) in list.iter().enumerate().filter(|(_, item)| item.parent.is_none()) {
            set(&item.root, item);
            // Each level: its open directory (none for the root, which is open already) and
            // the children still to do.
            let mut stack: Vec<(Option<Dir>, std::slice::Iter<'_, usize>)> = vec![(None, children[top].iter())];
            while let Some((dir, pending)) = stack.last_mut() {
                let Some(&child) = pending.next() else {
                    stack.pop();
                    continue;
                };
                let parent = dir.as_ref().unwrap_or(&item.root);
                match parent.sub(&list[child].name) {
                    Ok(sub) => {
                        set(&sub, &list[child]);
                        stack.push((Some(sub), children[child].iter()));
                    }
                    Err(e) => {
                        tally.fail(&podinit_core::fs::io_error(e, format!("opening {}", parent.path().join(&list[child].name).display())))
                    }
                }
            }
        }
    }
}

impl Drop for Copier {
    /// A run that ends early (an error, a signal) leaves no temp file behind.
    fn drop(&mut self) {
        for staged in self.staged.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            let _ = staged.dir.remove_all(&staged.temp);
        }
    }
}

/// Whether `dest_dir/name` holds what `source` holds (read from the start; `source` is
/// rewound for the copy). Both are `size` bytes long as last seen: buffers of that size (at
/// most 64 KiB) serve, so a rerun over many small files does not clear 128 KiB per file.
fn same_content(source: &mut File, dest_dir: &Dir, name: &OsStr, size: i64) -> anyhow::Result<bool> {
    use std::io::Seek as _;
    let Ok(mut existing) = dest_dir.open_file(name) else { return Ok(false) };
    // One byte more than the size, so a file that grew since shows in the first read.
    let len = usize::try_from(size).map_or(64 << 10, |size| size.saturating_add(1).min(64 << 10));
    let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
    let same = loop {
        let n = read_full(source, &mut a)?;
        let m = read_full(&mut existing, &mut b)?;
        if n != m || a[..n] != b[..m] {
            break false;
        }
        if n == 0 {
            break true;
        }
    };
    source.rewind()?;
    Ok(same)
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn atime(stat: &FileStat) -> TimeSpec {
    TimeSpec::new(stat.st_atime, stat.st_atime_nsec)
}

fn mtime(stat: &FileStat) -> TimeSpec {
    TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec)
}

/// Whether a failed chown of a copy (error number `errno`) is the one `-p` accepts: not root,
/// so the copy stays the copier's, as GNU cp -p does; anything else is an error.
fn owner_not_kept(errno: Option<i32>) -> bool {
    errno == Some(libc::EPERM) && !nix::unistd::geteuid().is_root()
}

/// Whether `existing` has the modification time of `source` (what -p keeps; the access time
/// moves whenever the copy is read).
fn same_times(existing: &FileStat, source: &FileStat) -> bool {
    (existing.st_mtime, existing.st_mtime_nsec) == (source.st_mtime, source.st_mtime_nsec)
}

/// Whether `existing` is older than `source` (-u replaces it then).
fn older(existing: &FileStat, source: &FileStat) -> bool {
    (existing.st_mtime, existing.st_mtime_nsec) < (source.st_mtime, source.st_mtime_nsec)
}

/// Whether `dest` is `source` or below it (both resolved as far as they exist).
fn inside(dest: &Path, source: &Path) -> bool {
    let Ok(source) = std::fs::canonicalize(source) else { return false };
    let mut probe = dest.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&probe) {
            let full = rest.iter().rev().fold(real, |p: PathBuf, c: &OsString| p.join(c));
            return full.starts_with(&source);
        }
        match (probe.file_name().map(OsStr::to_os_string), probe.parent()) {
            (Some(last), Some(parent)) => {
                rest.push(last);
                probe = parent.to_path_buf();
            }
            _ => return false,
        }
    }
}

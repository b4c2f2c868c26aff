//! A parallel walk of a directory tree that never follows a link, for `chown -R`, `chmod -R`
//! and `cp -r`.
//!
//! Directories are opened from their parent's descriptor with `O_NOFOLLOW`
//! ([`podinit_core::fs::root::Dir::sub`]), so a link planted anywhere in a volume is an entry
//! like any other, never a way out. Worker threads share a stack of open directories: on a
//! metadata-bound job (a `stat` and maybe a `chown` per entry) the kernel's latency, not the
//! two cores, is the limit, and several requests in flight hide it. The walk stays on the
//! root's file system unless told otherwise, and leaves out entries by name (`lost+found`).
//! A failure on one entry is counted and the walk goes on; the first one is kept for the final
//! error. What a visit needs of each directory (`cp`'s open destination directory) is carried
//! down with it, so no level is reached again from the root; the depth is capped at
//! [`MAX_DEPTH`].

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use nix::sys::stat::FileStat;
use podinit_core::Context;
use podinit_core::fs::root::{Dir, Kind, MAX_DEPTH};

/// What a visit did to one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Changed (written, chowned, chmodded).
    Changed,
    /// Already as wanted: no syscall beyond the `stat`.
    Unchanged,
    /// Left alone on purpose (a link `chmod` does not touch).
    Skipped,
}

/// One entry met by the walk; `C` is what the visit carries down for its directory.
pub(crate) struct Entry<'a, C = ()> {
    /// The directory it is in.
    pub(crate) dir: &'a Dir,
    pub(crate) name: &'a OsStr,
    pub(crate) stat: &'a FileStat,
    /// What the visit of that directory returned for its entries (`cp`: the destination).
    pub(crate) carry: &'a C,
}

impl<C> Entry<'_, C> {
    pub(crate) fn kind(&self) -> Kind {
        Kind::of(self.stat)
    }

    /// A regular file with another name somewhere (a hard link): changing it changes that
    /// one too, which may be outside the volume (a root-owned script or secret linked in).
    pub(crate) fn hard_linked(&self) -> bool {
        self.kind() == Kind::File && self.stat.st_nlink > 1
    }

    /// The path for messages.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join(self.name)
    }
}

/// Counts of a run, shared by the workers.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Entries counted so far, shown every so often (a bar, or a log line each 10 s).
    progress: Option<podinit_core::progress::Progress>,
    pub(crate) changed: AtomicU64,
    pub(crate) unchanged: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Entries counted, for progress.
    seen: AtomicU64,
    /// Failures that were something else than a missing privilege.
    other_failures: AtomicU64,
    first: Mutex<Option<String>>,
}

/// How many failures are logged one by one before only counting.
const LOGGED_FAILURES: u64 = 20;

/// Entries counted between two progress updates (one shared update per batch keeps the
/// walk's threads from contending on the progress display).
const PROGRESS_EVERY: u64 = 4096;

impl Tally {
    /// Counts with progress shown as `what: N` (entries).
    pub(crate) fn with_progress(ctx: &Context, what: String) -> Self {
        Self { progress: Some(ctx.progress(what, None, podinit_core::progress::Unit::Items)), ..Self::default() }
    }

    pub(crate) fn add(&self, change: Change) {
        match change {
            Change::Changed => &self.changed,
            Change::Unchanged => &self.unchanged,
            Change::Skipped => &self.skipped,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.seen();
    }

    /// One more entry for the progress display.
    fn seen(&self) {
        if let Some(progress) = &self.progress
            && self.seen.fetch_add(1, Ordering::Relaxed) % PROGRESS_EVERY == PROGRESS_EVERY - 1
        {
            progress.inc(PROGRESS_EVERY);
        }
    }

    /// A change counted already that did not happen after all (a copy not renamed into
    /// place): a failure instead.
    pub(crate) fn retract(&self, err: &anyhow::Error) {
        self.changed.fetch_sub(1, Ordering::Relaxed);
        self.fail(err);
    }

    /// A change counted already that turned out to be `instead`.
    pub(crate) fn unchange(&self, instead: Change) {
        self.changed.fetch_sub(1, Ordering::Relaxed);
        self.add(instead);
    }

    /// Counts a failure on one entry: logged (the first few), and the first kept.
    pub(crate) fn fail(&self, err: &anyhow::Error) {
        let n = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        self.seen();
        if !matches!(errno(err), Some(libc::EPERM | libc::EACCES)) {
            self.other_failures.fetch_add(1, Ordering::Relaxed);
        }
        let text = format!("{err:#}");
        if n <= LOGGED_FAILURES {
            tracing::error!("{text}");
        } else if n == LOGGED_FAILURES + 1 {
            tracing::error!("more failures follow; only counted from here");
        }
        let mut first = self.first.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(text);
        }
    }

    /// The first failure, if any.
    pub(crate) fn first_failure(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn get(&self, counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Whether every failure was a missing privilege (EPERM, EACCES).
    pub(crate) fn only_denied(&self) -> bool {
        self.get(&self.failed) > 0 && self.get(&self.other_failures) == 0
    }
}

/// The OS error number behind an error, if any.
pub(crate) fn errno(err: &anyhow::Error) -> Option<i32> {
    err.chain().find_map(|e| {
        e.downcast_ref::<podinit_core::fs::IoError>()
            .and_then(podinit_core::fs::IoError::raw_os_error)
            .or_else(|| e.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error))
            .or_else(|| e.downcast_ref::<nix::errno::Errno>().map(|e| *e as i32))
    })
}

/// Regular files with more than one hard link met by a `chown -R` or `chmod -R` walk. Such a
/// file is changed only once every one of its names was met inside the walk (an owner or mode
/// is the inode's: changing it through one name changes it through all, and another name may
/// be outside the volume, a root-owned script or secret the app linked in). Until then each
/// name counts as unchanged; [`HardLinks::report`] turns the ones never completed into
/// skipped files, with a warning.
#[derive(Default)]
pub(crate) struct HardLinks {
    /// (device, inode) → names met, links the file has, the first name met.
    met: Mutex<std::collections::HashMap<(u64, u64), Met>>,
}

/// Names met, links the file has, the first name met.
type Met = (u64, u64, PathBuf);

impl HardLinks {
    /// Whether `entry` (a regular file with other links) may be changed now: this is the last
    /// of its names, all met inside the walk.
    pub(crate) fn all_met<C>(&self, entry: &Entry<'_, C>) -> bool {
        let mut met = self.met.lock().unwrap_or_else(PoisonError::into_inner);
        // st_nlink is u64 on x86_64, u32 on aarch64.
        #[allow(clippy::useless_conversion, reason = "a conversion on aarch64, where st_nlink is u32")]
        let links = u64::from(entry.stat.st_nlink);
        let slot = met.entry((entry.stat.st_dev, entry.stat.st_ino)).or_insert_with(|| (0, links, entry.path()));
        slot.0 += 1;
        slot.0 >= slot.1
    }

    /// Warns about the files some of whose names are outside the walk (the first few), and
    /// counts their names as skipped rather than unchanged.
    pub(crate) fn report(&self, tally: &Tally) {
        let met = std::mem::take(&mut *self.met.lock().unwrap_or_else(PoisonError::into_inner));
        let mut left: Vec<(u64, u64, PathBuf)> = met.into_values().filter(|(seen, links, _)| seen < links).collect();
        left.sort_by(|a, b| a.2.cmp(&b.2));
        for (i, (seen, links, path)) in left.iter().enumerate() {
            if (i as u64) < LOGGED_FAILURES {
                tracing::warn!(
                    "{} has {} hard link(s) outside the tree, maybe outside the volume: left alone (--allow-hard-links changes it)",
                    path.display(),
                    links - seen
                );
            } else if i as u64 == LOGGED_FAILURES {
                tracing::warn!("{} more files with hard links outside the tree left alone", left.len() as u64 - LOGGED_FAILURES);
            }
            tally.unchanged.fetch_sub(*seen, Ordering::Relaxed);
            tally.skipped.fetch_add(*seen, Ordering::Relaxed);
        }
    }
}

/// How to walk.
#[derive(Clone, Debug)]
pub(crate) struct Walk {
    /// Entry names left out at any depth (with everything below them).
    pub(crate) excludes: Vec<OsString>,
    /// Entry names left out directly in the root only.
    pub(crate) top_excludes: Vec<OsString>,
    /// Do not descend into a directory of another file system.
    pub(crate) one_file_system: bool,
    /// With `one_file_system`: the mount roots, so a bind mount of the same device is not
    /// descended into either; read by the first walk of a run (not at every start: a
    /// `chown` of one file never walks).
    pub(crate) mounts: Arc<std::sync::OnceLock<podinit_core::fs::MountRoots>>,
    /// Names starting with `..` are left out (the kubelet's layout of a ConfigMap volume).
    pub(crate) skip_dotdot: bool,
    /// Worker threads.
    pub(crate) jobs: usize,
}

impl Walk {
    /// Worker threads by default: several per core, since the walk waits on the kernel more
    /// than it computes.
    pub(crate) fn default_jobs() -> usize {
        std::thread::available_parallelism().map_or(2, std::num::NonZero::get).saturating_mul(4).clamp(2, 16)
    }

    /// Calls `visit` for every entry below `root` (not the root itself), from several threads.
    /// A failure of `visit` or of listing a directory is counted in `tally` and the walk goes
    /// on. For a directory, what `visit` returns beside its result is carried to the visits
    /// of its entries (`root_carry` for the root's), whether or not the visit failed.
    /// Ends early on a stop signal or at the deadline (the caller checks the context
    /// afterwards).
    pub(crate) fn run<C, F>(&self, ctx: &Context, root: Dir, root_carry: C, tally: &Tally, visit: F)
    where
        C: Default + Send + Sync,
        F: Fn(&Entry<'_, C>) -> (anyhow::Result<Change>, C) + Sync,
    {
        let device = root.stat_self().map(|s| s.st_dev).ok();
        if self.one_file_system {
            self.mounts.get_or_init(podinit_core::fs::mount_roots);
        }
        let first = Pending::Root(root, root_carry);
        let shared = Shared { state: Mutex::new(State { stack: vec![first], busy: 0 }), ready: Condvar::new() };
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.max(1) {
                scope.spawn(|| self.worker(ctx, &shared, device, tally, &visit));
            }
        });
    }

    fn worker<C, F>(&self, ctx: &Context, shared: &Shared<C>, device: Option<u64>, tally: &Tally, visit: &F)
    where
        C: Default + Send + Sync,
        F: Fn(&Entry<'_, C>) -> (anyhow::Result<Change>, C) + Sync,
    {
        while let Some(pending) = shared.take() {
            // The directory is done when this ends, even by a panic: the others must not wait.
            let _done = Done(shared);
            // A stop signal or the deadline (--timeout) ends the walk; `finish` reports it.
            if ctx.check_shutdown().is_ok() {
                let opened = match pending {
                    Pending::Root(dir, carry) => Ok((dir, carry, 0)),
                    Pending::Sub { parent, name, carry, depth } => parent
                        .sub(&name)
                        .map(|dir| (dir, carry, depth))
                        .map_err(|e| podinit_core::fs::io_error(e, format!("opening {}", parent.path().join(&name).display()))),
                };
                match opened {
                    Ok((dir, carry, depth)) => {
                        let found = self.visit_dir(dir, &carry, depth, device, tally, visit);
                        shared.push_all(found);
                    }
                    Err(e) => tally.fail(&e),
                }
            }
        }
    }

    /// Visits the entries of one directory (`depth` levels below the root); returns its
    /// subdirectories to walk (opened when their turn comes, so a wide directory keeps one
    /// descriptor open, not one per child).
    fn visit_dir<C, F>(&self, dir: Dir, carry: &C, depth: usize, device: Option<u64>, tally: &Tally, visit: &F) -> Vec<Pending<C>>
    where
        C: Default,
        F: Fn(&Entry<'_, C>) -> (anyhow::Result<Change>, C),
    {
        let dir = Arc::new(dir);
        let mut subdirs = Vec::new();
        let names = match dir.names() {
            Ok(names) => names,
            Err(e) => {
                tally.fail(&e.context(format!("listing {}", dir.path().display())));
                return subdirs;
            }
        };
        for name in names {
            if self.excludes.contains(&name)
                || (depth == 0 && self.top_excludes.contains(&name))
                || (self.skip_dotdot && name.as_encoded_bytes().starts_with(b".."))
            {
                continue;
            }
            let stat = match dir.stat(&name) {
                Ok(Some(stat)) => stat,
                Ok(None) => continue, // removed meanwhile
                Err(e) => {
                    tally.fail(&podinit_core::fs::io_error(e, format!("reading {}", dir.path().join(&name).display())));
                    continue;
                }
            };
            let entry = Entry { dir: &dir, name: &name, stat: &stat, carry };
            let (result, below) = visit(&entry);
            match result {
                Ok(change) => tally.add(change),
                Err(e) => tally.fail(&e),
            }
            if Kind::of(&stat) == Kind::Dir {
                let path = || dir.path().join(&name);
                if self.one_file_system
                    && (device.is_some_and(|d| d != stat.st_dev)
                        || self.mounts.get().is_some_and(|m| m.contains(&(stat.st_dev, stat.st_ino))))
                {
                    tracing::warn!("{}: another file system, not descended into (add --cross-file-systems)", path().display());
                    continue;
                }
                if depth + 1 == podinit_core::fs::root::DEEP {
                    podinit_core::fs::root::allow_deep_walks();
                }
                if depth + 1 > MAX_DEPTH {
                    tally.fail(&anyhow::anyhow!("{} is more than {MAX_DEPTH} directories deep: not descended into", path().display()));
                    continue;
                }
                subdirs.push(Pending::Sub { parent: Arc::clone(&dir), name, carry: below, depth: depth + 1 });
            }
        }
        subdirs
    }
}

/// Marks a taken directory done when dropped.
struct Done<'a, C>(&'a Shared<C>);

impl<C> Drop for Done<'_, C> {
    fn drop(&mut self) {
        self.0.done();
    }
}

/// A directory still to visit, with what its entries' visits get.
enum Pending<C> {
    Root(Dir, C),
    Sub { parent: Arc<Dir>, name: OsString, carry: C, depth: usize },
}

struct State<C> {
    stack: Vec<Pending<C>>,
    /// Directories being visited (their subdirectories may still come).
    busy: usize,
}

struct Shared<C> {
    state: Mutex<State<C>>,
    ready: Condvar,
}

impl<C> Shared<C> {
    /// The next directory to visit, or `None` when the walk is over.
    fn take(&self) -> Option<Pending<C>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(next) = state.stack.pop() {
                state.busy += 1;
                return Some(next);
            }
            if state.busy == 0 {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn push_all(&self, found: Vec<Pending<C>>) {
        if found.is_empty() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.stack.extend(found);
        self.ready.notify_all();
    }

    fn done(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.busy -= 1;
        if state.busy == 0 && state.stack.is_empty() {
            self.ready.notify_all();
        }
    }
}

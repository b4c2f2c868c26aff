//! DEST on disk: the lock, the link, the worktrees, checking a commit out and switching to it.
//!
//! DEST is opened once as a directory handle; `.git`, `.worktrees` and the link are looked at
//! without following links, so a link planted where podinit keeps its own directories (by a
//! container that shared the volume) is refused rather than written through. The repository's
//! own symlinks are written as links by gix, after every file, and never followed by podinit.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use gix::ObjectId;
use gix::bstr::ByteSlice as _;
use gix::progress::StepShared;
use nix::fcntl::Flock;
use podinit_core::fs::root::{Dir, Kind as EntryKind};
use podinit_core::{Context, Error, Kind};

use crate::remote::{self, Plan};

/// Where the trees are, below DEST.
const WORKTREES: &str = ".worktrees";
/// What made the tree a link shows (commit and settings): `..LINK.podinit-git-clone`, beside
/// the lock (a name no link can have).
fn state_name(link: &str) -> OsString {
    OsString::from(format!("..{link}.podinit-git-clone"))
}
/// How deep submodules may nest.
const SUBMODULE_DEPTH: u32 = 8;
/// The most submodules a checkout fetches, all levels together (each is a fetch).
const SUBMODULES_MAX: usize = 256;
/// The largest `.gitmodules` read (git's own limit for it is 1 MiB too, `GITMODULES_MAX` is
/// not git's name).
const GITMODULES_MAX: u64 = 1 << 20;

/// What else than the commit decides a tree's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `--sparse`.
    pub(crate) sparse: Vec<String>,
    /// `--submodules`.
    pub(crate) submodules: bool,
}

impl Settings {
    fn state(&self, commit: &ObjectId) -> String {
        format!("commit {commit}\nsubmodules {}\nsparse {}\n", self.submodules, self.sparse.join(","))
    }
}

/// The most a checkout may write.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub(crate) files: u64,
    pub(crate) bytes: u64,
}

/// DEST, locked for this run.
#[derive(Debug)]
pub(crate) struct Layout {
    dest: PathBuf,
    dir: Dir,
    link: String,
    /// The commit the link names, if it names one of podinit's trees.
    current: Option<ObjectId>,
    /// The state file's content.
    state: Option<String>,
    _lock: Flock<File>,
}

/// What a blocking checkout needs of the layout (paths only).
#[derive(Clone, Debug)]
pub(crate) struct Paths {
    dest: PathBuf,
}

/// A checked-out tree under a hidden name in `.worktrees`, not yet published.
#[derive(Debug)]
pub(crate) struct Staged {
    name: OsString,
}

impl Layout {
    /// Opens DEST (made with mode 0755 when missing), takes its lock (waiting for another
    /// podinit writing there), reads which commit the link shows and removes what an
    /// interrupted run left in `.worktrees`.
    pub(crate) async fn open(ctx: &Context, dest: &Path, link: String) -> Result<Self, Error> {
        let failed = |e: anyhow::Error| podinit_core::fs::explain_write(e, dest);
        let lock = loop {
            if !dest.is_dir() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .create(dest)
                    .map_err(|e| failed(podinit_core::fs::io_error(e, format!("creating {}", dest.display()))))?;
            }
            if let Some(lock) = podinit_core::fs::set::lock(ctx, dest).await? {
                break lock;
            }
        };
        let dir = Dir::open(dest).map_err(|e| failed(podinit_core::fs::io_error(e, format!("opening {}", dest.display()))))?;
        for own in [".git", WORKTREES] {
            match dir.stat(OsStr::new(own)).map_err(|e| failed(e.into()))? {
                Some(stat) if EntryKind::of(&stat) != EntryKind::Dir => {
                    return Err(Error::new(Kind::Usage, anyhow::anyhow!("{} is not a directory of podinit's", dest.join(own).display()))
                        .with_hint("DEST holds something else: remove it, or give git-clone a directory of its own"));
                }
                _ => {}
            }
        }
        let current = current(&dir, &link).map_err(|e| Error::new(Kind::Usage, e))?;
        let worktrees = dir.create_dir_all(&[OsStr::new(WORKTREES)], 0o755).map_err(failed)?;
        // Trees a link in DEST names stay (this one's, and another --link's in the same DEST).
        let linked = linked_trees(&dir).map_err(failed)?;
        for name in worktrees.names().map_err(failed)? {
            if !linked.contains(&name) {
                tracing::debug!("removing {} (no link names it)", worktrees.path().join(&name).display());
                worktrees.remove_all(&name).map_err(failed)?;
            }
        }
        if dir.stat(OsStr::new(".git")).map_err(|e| failed(e.into()))?.is_some() {
            let git = dir.sub(OsStr::new(".git")).map_err(|e| failed(podinit_core::fs::io_error(e, "opening .git")))?;
            if !remove_stale_locks(&git).map_err(failed)? {
                tracing::warn!("{} holds links or special files podinit did not make; making it anew", git.path().display());
                drop(git);
                dir.remove_all(OsStr::new(".git")).map_err(failed)?;
            }
        }
        let state = dir.read(&state_name(&link)).ok().and_then(|b| String::from_utf8(b).ok());
        Ok(Self { dest: dest.to_owned(), dir, link, current, state, _lock: lock })
    }

    /// The link, for messages.
    pub(crate) fn link_path(&self) -> PathBuf {
        self.dest.join(&self.link)
    }

    /// DEST/.git.
    pub(crate) fn git_dir(&self) -> PathBuf {
        remote::git_dir(&self.dest)
    }

    /// The commit the link shows, if `settings` made that tree (another `--sparse` or
    /// `--submodules` needs a new checkout of the same commit).
    pub(crate) fn current(&self, settings: &Settings) -> Option<ObjectId> {
        self.current.filter(|c| self.state.as_deref() == Some(settings.state(c).as_str()))
    }

    /// What a checkout on another thread needs.
    pub(crate) fn clone_paths(&self) -> Paths {
        Paths { dest: self.dest.clone() }
    }

    /// Makes the staged tree the one the link shows: the file system is synced, the tree
    /// renamed to its commit (swapped with an older checkout of the same commit), the link
    /// replaced by one rename, then the old tree removed.
    pub(crate) fn publish(self, staged: Staged, commit: ObjectId, settings: &Settings) -> anyhow::Result<()> {
        let worktrees = self.dir.sub(OsStr::new(WORKTREES)).with_context(|| format!("opening {}", self.dest.join(WORKTREES).display()))?;
        worktrees.sync_fs()?;
        let name = OsString::from(commit.to_string());
        if worktrees.stat(&name)?.is_some() {
            // The same commit with other settings: swap, so the link stays valid throughout.
            // The state goes first: killed after the swap, the next run must not take the new
            // tree for one made with the old settings.
            self.dir.remove_all(&state_name(&self.link))?;
            self.dir.sync()?;
            worktrees.exchange(&staged.name, &name)?;
            worktrees.remove_all(&staged.name)?;
        } else {
            worktrees.rename(&staged.name, &name)?;
        }
        worktrees.sync()?;
        let temp = OsString::from(format!("..{}.podinit-link", self.link));
        self.dir.remove_all(&temp)?;
        self.dir.symlink(&temp, OsStr::new(&format!("{WORKTREES}/{commit}")))?;
        self.dir.rename(&temp, OsStr::new(&self.link))?;
        podinit_core::fs::write_atomic(
            &self.dest.join(state_name(&self.link)),
            settings.state(&commit).as_bytes(),
            podinit_core::fs::FileOptions::default(),
        )?;
        self.dir.sync()?;
        if let Some(old) = self.current.filter(|old| *old != commit) {
            let old = OsString::from(old.to_string());
            if !linked_trees(&self.dir)?.contains(&old) {
                worktrees.remove_all(&old)?;
            }
        }
        tracing::info!("{} -> {WORKTREES}/{commit}", self.link_path().display());
        Ok(())
    }
}

impl Paths {
    /// Checks `commit` out of DEST/.git into a new hidden directory in `.worktrees`, with
    /// `--sparse` applied and, with `--submodules`, the submodules fetched and checked out;
    /// counts the files written into `written`.
    pub(crate) fn checkout(
        &self,
        plan: &Plan,
        commit: ObjectId,
        settings: &Settings,
        budget: Budget,
        stop: &AtomicBool,
        written: &StepShared,
    ) -> anyhow::Result<Staged> {
        let worktrees =
            Dir::open_nofollow(&self.dest.join(WORKTREES)).with_context(|| format!("opening {}", self.dest.join(WORKTREES).display()))?;
        let name = OsString::from(format!("..{commit}.{}", std::process::id()));
        worktrees.remove_all(&name)?;
        let root = worktrees.mkdir(&name, 0o755)?;
        let mut work = Work { dest: &self.dest, submodules: 0, budget, spent: Budget { files: 0, bytes: 0 }, stop, written };
        let filled = (|| {
            let repo = remote::open_or_init(&remote::git_dir(&self.dest))?;
            let gitlinks = check_out(&mut work, &repo, commit, &root, &settings.sparse)?;
            if settings.submodules {
                submodules(&mut work, plan, gitlinks, &repo, commit, &root, 1)?;
            }
            anyhow::Ok(work.spent)
        })();
        let spent = match filled {
            Ok(spent) => spent,
            Err(err) => {
                // Nothing half-written stays (a run killed here leaves it to the next one).
                let _ = worktrees.remove_all(&name);
                return Err(err);
            }
        };
        tracing::info!("checked out {commit}: {} files, {}", spent.files, podinit_core::progress::bytes(spent.bytes));
        Ok(Staged { name })
    }
}

/// Removes what a killed run left in DEST/.git: lock files (`shallow.lock`, a ref's `.lock`),
/// which would make every later fetch fail, and temporary pack files. Only podinit writes
/// there, and only under DEST's lock, which this run holds. False when `.git` holds a link,
/// a FIFO or a device (gix would follow or open them by path: planted by whoever else can
/// write the volume): the caller then removes the whole cache.
fn remove_stale_locks(git: &Dir) -> anyhow::Result<bool> {
    let mut clean = true;
    git.walk(
        &mut |parent, name, stat, _| {
            if !matches!(EntryKind::of(stat), EntryKind::File | EntryKind::Dir) {
                clean = false;
                return Ok(());
            }
            let bytes = name.as_encoded_bytes();
            let temporary = bytes.ends_with(b".lock") || (bytes.starts_with(b".tmp") && EntryKind::of(stat) == EntryKind::File);
            if temporary && EntryKind::of(stat) != EntryKind::Dir {
                tracing::debug!("removing {} (left by an interrupted run)", name.to_string_lossy());
                parent.remove_all(name)?;
            }
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    Ok(clean)
}

/// The names in `.worktrees` that links directly in DEST point at.
fn linked_trees(dir: &Dir) -> anyhow::Result<Vec<OsString>> {
    let mut linked = Vec::new();
    for name in dir.names()? {
        let is_link = dir.stat(&name).ok().flatten().is_some_and(|s| EntryKind::of(&s) == EntryKind::Symlink);
        if let Some(tree) = is_link.then(|| dir.read_link(&name).ok()).flatten().and_then(|t| {
            t.as_encoded_bytes().strip_prefix(format!("{WORKTREES}/").as_bytes()).map(|rest| OsStr::from_bytes(rest).to_owned())
        }) {
            linked.push(tree);
        }
    }
    Ok(linked)
}

/// The commit the link in `dir` names: `None` when there is no link; an error when the name is
/// taken by something that is not podinit's link.
fn current(dir: &Dir, link: &str) -> anyhow::Result<Option<ObjectId>> {
    let shown = dir.path().join(link);
    let Some(stat) = dir.stat(OsStr::new(link)).with_context(|| format!("reading {}", shown.display()))? else { return Ok(None) };
    let not_ours =
        || anyhow::anyhow!("{} is not a link into {WORKTREES} (git-clone's layout); remove it, or choose another --link", shown.display());
    if EntryKind::of(&stat) != EntryKind::Symlink {
        return Err(not_ours());
    }
    let target = dir.read_link(OsStr::new(link)).with_context(|| format!("reading {}", shown.display()))?;
    let target = target.to_str().ok_or_else(not_ours)?;
    let Some(id) = target
        .strip_prefix(&format!("{WORKTREES}/"))
        .and_then(|hex| (hex.len() == 40).then(|| ObjectId::from_hex(hex.as_bytes()).ok()).flatten())
    else {
        return Err(not_ours());
    };
    // A link whose tree is gone (removed by hand) is not a current tree.
    let present = dir.stat(OsStr::new(target)).ok().flatten().is_some_and(|s| EntryKind::of(&s) == EntryKind::Dir);
    Ok(present.then_some(id))
}

/// The submodules a checked-out tree records: the gitlinks it kept (path, commit) and its
/// `.gitmodules` blob, if it has one.
struct Gitlinks {
    links: Vec<(String, ObjectId)>,
    gitmodules: Option<ObjectId>,
}

/// Checks the tree of `commit` out into `root`, which is empty. Every entry's path is
/// validated by gix (no `..`, no `.git` in any spelling, nothing through a link); the budget
/// is checked before anything is written. Returns the submodules the tree records (under
/// `sparse`, when given).
fn check_out(work: &mut Work<'_>, repo: &gix::Repository, commit: ObjectId, root: &Dir, sparse: &[String]) -> anyhow::Result<Gitlinks> {
    let tree = repo
        .find_object(commit)
        .and_then(|o| o.peel_to_commit())
        .and_then(|c| c.tree_id())
        .map_err(|e| anyhow::anyhow!("reading the tree of {commit}: {e}"))?;
    // Counted before the tree is expanded into an index: a tree that names one subtree twice at
    // every level describes 2^40 paths in 40 small objects.
    census(work, repo, commit, tree.detach())?;
    let mut index = repo.index_from_tree(&tree).map_err(|e| refused(commit, &remote::causes(&e)))?;
    let gitmodules = index.entry_by_path(".gitmodules".into()).map(|e| e.id);
    if !sparse.is_empty() {
        index.remove_entries(|_, path, _| !sparse.iter().any(|keep| under(path.as_bytes(), keep.as_bytes())));
    }
    let links =
        index.entries().iter().filter(|e| e.mode.is_submodule()).map(|e| (e.path(&index).to_str_lossy().into_owned(), e.id)).collect();
    // What gix's `Repository::checkout_options` gives a repository opened isolated (no filter
    // drivers, no eol settings, `.gitattributes` read from the tree), with every path check on.
    let filters = gix::filter::plumbing::Pipeline::new(Default::default(), repo.object_hash(), Default::default());
    let mut options = gix_worktree_state::checkout::Options::new(filters);
    // `fs` stays at its Linux default: links and executable bits as such, names as they are.
    options.destination_is_initially_empty = true;
    options.validate.protect_hfs = true;
    options.validate.protect_ntfs = true;
    let files = gix::progress::Discard;
    let objects = repo.objects.clone().into_arc().map_err(|e| anyhow::anyhow!("{e}"))?;
    let written = crate::meter::Tap::counting(work.written);
    let outcome = gix_worktree_state::checkout(&mut index, root.path(), objects, &written, &files, work.stop, options)
        .map_err(|e| if e.is_validation() { refused(commit, &remote::causes(&e)) } else { anyhow::anyhow!("{}", remote::causes(&e)) })?;
    if work.stop.load(std::sync::atomic::Ordering::Relaxed) {
        anyhow::bail!("stopped");
    }
    if let Some(collision) = outcome.collisions.first() {
        return Err(refused(commit, &format!("{} is in the tree twice (as a link and a directory, or in two spellings)", collision.path)));
    }
    if let Some(error) = outcome.errors.first() {
        anyhow::bail!("writing {}: {}", error.path, error.error);
    }
    Ok(Gitlinks { links, gitmodules })
}

/// How deep a tree may nest (git's own `core.maxTreeDepth` default).
const MAX_TREE_DEPTH: usize = 2048;
/// The most bytes of paths a tree may name (what expanding it into an index costs).
const MAX_PATH_BYTES: u64 = 256 << 20;

/// Walks the tree of `commit` breadth first, without expanding it, and charges the budget:
/// every entry (files, links, directories, submodules) against `--max-files`, every file's
/// size (from its object header) against `--max-size`; a tree deeper than [`MAX_TREE_DEPTH`]
/// or naming more than [`MAX_PATH_BYTES`] of paths is refused. Stops at the first excess.
fn census(work: &mut Work<'_>, repo: &gix::Repository, commit: ObjectId, tree: ObjectId) -> anyhow::Result<()> {
    let tree = repo.find_tree(tree).map_err(|e| anyhow::anyhow!("reading the tree of {commit}: {e}"))?;
    let mut census = Census {
        repo,
        budget: work.budget,
        spent: work.spent,
        stop: work.stop,
        at: Place::default(),
        saved: Vec::new(),
        queued: std::collections::VecDeque::new(),
        path_bytes: 0,
        over: None,
    };
    let walked = tree.traverse().breadthfirst(&mut census);
    if let Some(over) = census.over {
        return Err(over);
    }
    walked.map_err(|e| anyhow::anyhow!("reading the tree of {commit}: {e}"))?;
    work.spent = census.spent;
    Ok(())
}

/// Where the walk is: depth and length of the current path.
#[derive(Clone, Copy, Default)]
struct Place {
    depth: usize,
    len: usize,
}

/// The visitor of [`census`].
struct Census<'r> {
    repo: &'r gix::Repository,
    budget: Budget,
    spent: Budget,
    stop: &'r AtomicBool,
    at: Place,
    saved: Vec<Place>,
    queued: std::collections::VecDeque<Place>,
    path_bytes: u64,
    over: Option<anyhow::Error>,
}

impl Census<'_> {
    fn push(&mut self, component: &gix::bstr::BStr) {
        self.at = Place { depth: self.at.depth + 1, len: self.at.len + 1 + component.len() };
    }

    /// Charges one entry of `size` bytes; `Break` once over a budget (the error kept).
    fn charge(&mut self, size: u64) -> std::ops::ControlFlow<(), bool> {
        self.spent.files += 1;
        self.spent.bytes = self.spent.bytes.saturating_add(size);
        self.path_bytes += self.at.len as u64;
        let over = if self.spent.files > self.budget.files || self.spent.bytes > self.budget.bytes {
            Some(
                Error::new(
                    Kind::Failed,
                    anyhow::anyhow!(
                        "the tree holds more than --max-files {} entries or --max-size {} (counted {} entries, {} so far)",
                        self.budget.files,
                        podinit_core::progress::bytes(self.budget.bytes),
                        self.spent.files,
                        podinit_core::progress::bytes(self.spent.bytes)
                    ),
                )
                .with_hint("raise --max-files/--max-size if the repository is that big")
                .into(),
            )
        } else if self.at.depth > MAX_TREE_DEPTH {
            Some(anyhow::anyhow!("the tree nests deeper than {MAX_TREE_DEPTH} directories"))
        } else if self.path_bytes > MAX_PATH_BYTES {
            Some(anyhow::anyhow!("the tree's paths add up to more than {}", podinit_core::progress::bytes(MAX_PATH_BYTES)))
        } else if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            Some(anyhow::anyhow!("stopped"))
        } else {
            None
        };
        match over {
            Some(err) => {
                self.over = Some(err);
                std::ops::ControlFlow::Break(())
            }
            None => std::ops::ControlFlow::Continue(true),
        }
    }
}

impl gix::traverse::tree::Visit for Census<'_> {
    fn pop_back_tracked_path_and_set_current(&mut self) {
        self.at = self.queued.pop_back().unwrap_or_default();
    }

    fn pop_front_tracked_path_and_set_current(&mut self) {
        self.at = self.queued.pop_front().unwrap_or_default();
    }

    fn push_back_tracked_path_component(&mut self, component: &gix::bstr::BStr) {
        self.push(component);
        self.queued.push_back(self.at);
    }

    fn push_path_component(&mut self, component: &gix::bstr::BStr) {
        self.saved.push(self.at);
        self.push(component);
    }

    fn pop_path_component(&mut self) {
        self.at = self.saved.pop().unwrap_or_default();
    }

    fn visit_tree(&mut self, _entry: &gix::objs::tree::EntryRef<'_>) -> std::ops::ControlFlow<(), bool> {
        self.charge(0)
    }

    fn visit_nontree(&mut self, entry: &gix::objs::tree::EntryRef<'_>) -> std::ops::ControlFlow<(), bool> {
        let size = if entry.mode.is_commit() {
            0
        } else {
            match self.repo.find_header(entry.oid) {
                Ok(header) => header.size(),
                Err(e) => {
                    self.over = Some(anyhow::anyhow!("reading {}: {e}", entry.oid));
                    return std::ops::ControlFlow::Break(());
                }
            }
        };
        self.charge(size)
    }
}

/// A tree podinit will not write: a path git refuses too (`..`, `.git` in any spelling, a `/`
/// inside a name, NTFS and HFS aliases of those) or one entry twice. The repository is the
/// input at fault: exit 2.
fn refused(commit: ObjectId, why: &str) -> anyhow::Error {
    anyhow::Error::new(
        Error::new(Kind::Usage, anyhow::anyhow!("the tree of {commit} holds a path podinit refuses to write: {why}"))
            .with_hint("git refuses such trees too (fsck): fix the repository, or check out another --ref"),
    )
}

/// Whether `path` is `keep` or below it.
fn under(path: &[u8], keep: &[u8]) -> bool {
    path.starts_with(keep) && (path.len() == keep.len() || path[keep.len()] == b'/')
}

/// What a checkout (a tree and its submodules) shares: the budget and what is spent of it,
/// gix's interrupt flag, the counter of files written.
struct Work<'a> {
    dest: &'a Path,
    /// Submodules fetched so far (all levels).
    submodules: usize,
    budget: Budget,
    spent: Budget,
    stop: &'a AtomicBool,
    written: &'a StepShared,
}

/// Fetches and checks out the submodules `commit`'s checkout recorded (`gitlinks`, named in
/// its `.gitmodules`), each into its path below `root`, each into its own repository in
/// DEST/.git/modules, recursively up to [`SUBMODULE_DEPTH`] levels.
fn submodules(
    work: &mut Work<'_>,
    plan: &Plan,
    gitlinks: Gitlinks,
    repo: &gix::Repository,
    commit: ObjectId,
    root: &Dir,
    level: u32,
) -> anyhow::Result<()> {
    let Gitlinks { links, gitmodules } = gitlinks;
    if links.is_empty() {
        return Ok(());
    }
    if level > SUBMODULE_DEPTH {
        anyhow::bail!("submodules nest deeper than {SUBMODULE_DEPTH} levels");
    }
    let gitmodules = match gitmodules {
        None => Vec::new(),
        Some(id) => {
            let size = repo.find_header(id).map_err(|e| anyhow::anyhow!("reading .gitmodules: {e}"))?.size();
            if size > GITMODULES_MAX {
                return Err(refused(commit, &format!(".gitmodules is {size} bytes, more than {GITMODULES_MAX}")));
            }
            repo.find_object(id).map_err(|e| anyhow::anyhow!("reading .gitmodules: {e}"))?.data.clone()
        }
    };
    let file = gix::submodule::File::from_bytes(&gitmodules, None, &Default::default()).map_err(|e| anyhow::anyhow!(".gitmodules: {e}"))?;
    for (path, id) in links {
        let name = file
            .names()
            .find(|name| file.path(name).ok().is_some_and(|p| p == path.as_bytes()))
            .ok_or_else(|| anyhow::anyhow!("the submodule at {path} is not in .gitmodules"))?;
        let name =
            gix::validate::submodule::name(name).map_err(|e| anyhow::anyhow!("submodule name {name:?}: {e}"))?.to_str_lossy().into_owned();
        let url = file
            .url(name.as_bytes().into())
            .map_err(|e| anyhow::anyhow!("submodule {name}: {e}"))?
            .to_bstring()
            .to_str_lossy()
            .into_owned();
        // Relative URLs resolve against this repository's URL (the parent's, at every level).
        let sub_plan = plan.submodule(&url, id).map_err(|e| anyhow::Error::new(e.context(format!("submodule {name}"))))?;
        work.submodules += 1;
        if work.submodules > SUBMODULES_MAX {
            return Err(refused(commit, &format!("more than {SUBMODULES_MAX} submodules in all")));
        }
        tracing::info!("submodule {path}: {id} from {}", sub_plan.shown);
        // One repository per URL, named by a hash of it: a submodule's name is the
        // repository's to choose (`/data`, `..`), never a path podinit joins.
        let key = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, sub_plan.url.as_bytes())
            .map_err(|e| anyhow::anyhow!("hashing a submodule URL: {e}"))?;
        let git_dir = remote::git_dir(work.dest).join("modules").join(key.to_string());
        let received = StepShared::default();
        match remote::fetch(&sub_plan, &git_dir, None, work.stop, &received).map_err(|e| e.context(format!("submodule {name}")))? {
            remote::Fetched::New(_) | remote::Fetched::Unchanged(_) => {}
        }
        let sub_repo = remote::open_or_init(&git_dir)?;
        let parts: Vec<&OsStr> = path.split('/').map(OsStr::new).collect();
        let dir = root.create_dir_all(&parts, 0o755)?;
        let nested = check_out(work, &sub_repo, id, &dir, &[]).map_err(|e| e.context(format!("submodule {path}")))?;
        submodules(work, &sub_plan, nested, &sub_repo, id, &dir, level + 1)?;
    }
    Ok(())
}

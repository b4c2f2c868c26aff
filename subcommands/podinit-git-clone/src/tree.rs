//! DEST on disk: the lock, the link, the worktrees, checking a commit out and switching to it.
//!
//! DEST is opened once as a directory handle; `.git`, `.worktrees` and the link are looked at
//! without following links, so a link planted where podinit keeps its own directories (by a
//! container that shared the volume) is refused rather than written through. The repository's
//! own symlinks are written as links by gix, after every file, and never followed by podinit.

use std::ffi::{OsStr, OsString};
use std::fs::File;
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
/// What made the current tree (commit and settings), beside the lock.
const STATE: &str = "..podinit-git-clone";
/// How deep submodules may nest.
const SUBMODULE_DEPTH: u32 = 8;
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
        for name in worktrees.names().map_err(failed)? {
            if current.as_ref().is_none_or(|c| OsString::from(c.to_string()) != name) {
                tracing::debug!("removing {} (not the current tree)", worktrees.path().join(&name).display());
                worktrees.remove_all(&name).map_err(failed)?;
            }
        }
        if dir.stat(OsStr::new(".git")).map_err(|e| failed(e.into()))?.is_some() {
            let git = dir.sub(OsStr::new(".git")).map_err(|e| failed(podinit_core::fs::io_error(e, "opening .git")))?;
            remove_stale_locks(&git).map_err(failed)?;
        }
        let state = dir.read(OsStr::new(STATE)).ok().and_then(|b| String::from_utf8(b).ok());
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
            &self.dest.join(STATE),
            settings.state(&commit).as_bytes(),
            podinit_core::fs::FileOptions::default(),
        )?;
        self.dir.sync()?;
        if let Some(old) = self.current.filter(|old| *old != commit) {
            worktrees.remove_all(OsStr::new(&old.to_string()))?;
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
        let mut work = Work { plan, dest: &self.dest, budget, spent: Budget { files: 0, bytes: 0 }, stop, written };
        let filled = (|| {
            let repo = remote::open_or_init(&remote::git_dir(&self.dest))?;
            check_out(&mut work, &repo, commit, &root, &settings.sparse)?;
            if settings.submodules {
                submodules(&mut work, &repo, commit, &root, 1)?;
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
/// there, and only under DEST's lock, which this run holds.
fn remove_stale_locks(git: &Dir) -> anyhow::Result<()> {
    git.walk(
        &mut |parent, name, stat, _| {
            let bytes = name.as_encoded_bytes();
            let temporary = bytes.ends_with(b".lock") || (bytes.starts_with(b".tmp") && EntryKind::of(stat) == EntryKind::File);
            if temporary && EntryKind::of(stat) != EntryKind::Dir {
                tracing::debug!("removing {} (left by an interrupted run)", name.to_string_lossy());
                parent.remove_all(name)?;
            }
            Ok(())
        },
        &mut |_| Ok(()),
    )
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

/// Checks the tree of `commit` out into `root`, which is empty. Every entry's path is
/// validated by gix (no `..`, no `.git` in any spelling, nothing through a link); the budget
/// is checked before anything is written.
fn check_out(work: &mut Work<'_>, repo: &gix::Repository, commit: ObjectId, root: &Dir, sparse: &[String]) -> anyhow::Result<()> {
    let (budget, spent) = (work.budget, &mut work.spent);
    let tree = repo
        .find_object(commit)
        .and_then(|o| o.peel_to_commit())
        .and_then(|c| c.tree_id())
        .map_err(|e| anyhow::anyhow!("reading the tree of {commit}: {e}"))?;
    let mut index = repo.index_from_tree(&tree).map_err(|e| refused(commit, &remote::causes(&e)))?;
    if !sparse.is_empty() {
        index.remove_entries(|_, path, _| !sparse.iter().any(|keep| under(path.as_bytes(), keep.as_bytes())));
    }
    let mut this = Budget { files: 0, bytes: 0 };
    for entry in index.entries() {
        if entry.mode.is_submodule() {
            continue;
        }
        this.files += 1;
        let size = repo.find_header(entry.id).map_err(|e| anyhow::anyhow!("reading {}: {e}", entry.id))?.size();
        this.bytes = this.bytes.saturating_add(size);
        if spent.files + this.files > budget.files || spent.bytes.saturating_add(this.bytes) > budget.bytes {
            return Err(Error::new(
                Kind::Failed,
                anyhow::anyhow!(
                    "{commit} holds more than --max-files {} or --max-size {} (counted {} files, {} so far)",
                    budget.files,
                    podinit_core::progress::bytes(budget.bytes),
                    spent.files + this.files,
                    podinit_core::progress::bytes(spent.bytes.saturating_add(this.bytes))
                ),
            )
            .with_hint("raise --max-files/--max-size if the repository is that big, or check out part of it with --sparse")
            .into());
        }
    }
    spent.files += this.files;
    spent.bytes = spent.bytes.saturating_add(this.bytes);
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
    Ok(())
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
    plan: &'a Plan,
    dest: &'a Path,
    budget: Budget,
    spent: Budget,
    stop: &'a AtomicBool,
    written: &'a StepShared,
}

/// Fetches and checks out the submodules `commit` records (gitlinks named in its
/// `.gitmodules`), each into its path below `root`, each into its own repository in
/// DEST/.git/modules, recursively up to [`SUBMODULE_DEPTH`] levels.
fn submodules(work: &mut Work<'_>, repo: &gix::Repository, commit: ObjectId, root: &Dir, level: u32) -> anyhow::Result<()> {
    let tree = repo.find_object(commit).and_then(|o| o.peel_to_commit()).and_then(|c| c.tree_id()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let index = repo.index_from_tree(&tree).map_err(|e| anyhow::anyhow!("{e}"))?;
    let links: Vec<(String, ObjectId)> = index
        .entries()
        .iter()
        .filter(|e| e.mode.is_submodule())
        .map(|e| (e.path(&index).to_str_lossy().into_owned(), e.id))
        .filter(|(path, _)| work.plan.sparse.is_empty() || work.plan.sparse.iter().any(|keep| under(path.as_bytes(), keep.as_bytes())))
        .collect();
    if links.is_empty() {
        return Ok(());
    }
    if level > SUBMODULE_DEPTH {
        anyhow::bail!("submodules nest deeper than {SUBMODULE_DEPTH} levels");
    }
    let gitmodules = match index.entry_by_path(".gitmodules".into()) {
        None => Vec::new(),
        Some(entry) => {
            let size = repo.find_header(entry.id).map_err(|e| anyhow::anyhow!("reading .gitmodules: {e}"))?.size();
            if size > GITMODULES_MAX {
                return Err(refused(commit, &format!(".gitmodules is {size} bytes, more than {GITMODULES_MAX}")));
            }
            repo.find_object(entry.id).map_err(|e| anyhow::anyhow!("reading .gitmodules: {e}"))?.data.clone()
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
        let sub_plan = work.plan.submodule(&url, id).map_err(|e| anyhow::anyhow!("submodule {name}: {}", e.message()))?;
        tracing::info!("submodule {path}: {id} from {}", sub_plan.shown);
        let git_dir = remote::git_dir(work.dest).join("modules").join(&name);
        let received = StepShared::default();
        match remote::fetch(&sub_plan, &git_dir, None, work.stop, &received).map_err(|e| e.context(format!("submodule {name}")))? {
            remote::Fetched::New(_) | remote::Fetched::Unchanged(_) => {}
        }
        let sub_repo = remote::open_or_init(&git_dir)?;
        let parts: Vec<&OsStr> = path.split('/').map(OsStr::new).collect();
        let dir = root.create_dir_all(&parts, 0o755)?;
        check_out(work, &sub_repo, id, &dir, &[]).map_err(|e| e.context(format!("submodule {path}")))?;
        submodules(work, &sub_repo, id, &dir, level + 1)?;
    }
    Ok(())
}

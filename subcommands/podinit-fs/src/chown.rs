//! `podinit chown`: owner and group of files, with `-R` of everything below, never following
//! a link out of the tree, and with no syscall for what already has the owner.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::AtFlags;
use nix::unistd::{Gid, Uid};
use podinit_core::fs::root::Dir;
use podinit_core::{Context, Error};

use crate::owner::{self, Owner};
use crate::walk::{Change, Tally};
use crate::{Verbose, WalkArgs, finish, parent_of};

/// Change the owner and group of files, as chown does; with -R of everything below.
///
/// OWNER[:GROUP] is numeric or named in /etc/passwd and /etc/group (`1001:2000`, `app:`,
/// `:2000`). With -R, links are never followed (their own owner changes), the walk stays on
/// the file system of each PATH unless --cross-file-systems, and entries that already have
/// the owner are not touched, so a rerun changes nothing. A failure on one entry does not stop
/// the walk: exit 1 at the end naming the first (77 when podinit lacks the privilege).
#[derive(Debug, Clone, clap::Args)]
#[command(
    disable_help_flag = true,
    after_help = "\
Examples:
  podinit chown -R 1001:1001 /data                       the volume-permissions init container
  podinit chown -R --if-root-mismatch --exclude lost+found 1001:2000 /data
  podinit chown -h 1001 /data/current                    the link itself"
)]
pub struct Args {
    /// Also everything below each directory, never following a link.
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// A link given as PATH: change the link itself, not what it points at (always so below
    /// a -R walk).
    #[arg(short = 'h', long = "no-dereference")]
    pub no_dereference: bool,

    /// Only change files now owned by CURRENT (`UID`, `UID:GID`, `:GID`).
    #[arg(long, value_name = "CURRENT")]
    pub from: Option<String>,

    /// With -R: leave the tree alone when PATH itself already has the owner (the kubelet's
    /// `fsGroupChangePolicy: OnRootMismatch`); a fast rerun for huge volumes.
    #[arg(long)]
    pub if_root_mismatch: bool,

    /// With -R: also change regular files that have more than one hard link (by default left
    /// alone with a warning: the other name may be outside the volume, a root-owned script or
    /// secret linked in; systemd-tmpfiles refuses them too).
    #[arg(long)]
    pub allow_hard_links: bool,

    /// A line for every file (changed or retained), as GNU's -v; on stdout.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// A line for every file changed.
    #[arg(short = 'c', long)]
    pub changes: bool,

    #[command(flatten)]
    pub walk: WalkArgs,

    /// Print help (`-h` is --no-dereference, as in chown).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,

    /// Where the account files are (tests only).
    #[arg(long, hide = true, default_value = "/etc")]
    pub etc: PathBuf,

    /// OWNER[:GROUP], `:GROUP`, or `OWNER:` (the owner's login group).
    #[arg(value_name = "OWNER[:GROUP]")]
    pub owner: String,

    /// Files and directories.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs `podinit chown` to completion.
pub fn run(ctx: &Context, mut args: Args) -> Result<(), Error> {
    let owner = owner::parse(&args.owner, &args.etc).map_err(|e| Error::usage(format!("OWNER {e}")))?;
    let from = args.from.as_deref().map(|f| owner::parse(f, &args.etc)).transpose().map_err(|e| Error::usage(format!("--from {e}")))?;
    let walk = args.walk.walk(false)?;
    args.paths = crate::operands(std::mem::take(&mut args.paths), !(args.recursive || args.no_dereference))?;
    let job = Job { owner, from, verbose: Verbose::of(args.verbose, args.changes) };
    let started = Instant::now();
    let tally = Tally::with_progress(ctx, format!("chown {}", args.owner));
    for path in &args.paths {
        // One operand failing does not stop the others (as chown does); counted, named at the end.
        if let Err(e) = one(ctx, &args, &walk, path, job, &tally) {
            tally.fail(&e);
        }
    }
    let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
    finish("chown", &format!("{owner} {}", paths.join(" ")), &tally, started, ctx)
}

/// What to do to each file.
#[derive(Clone, Copy)]
struct Job {
    owner: Owner,
    from: Option<Owner>,
    verbose: Verbose,
}

impl Job {
    /// Whether a file owned by `uid:gid` is left as it is.
    fn leaves(&self, uid: u32, gid: u32) -> bool {
        self.owner.matches(uid, gid) || self.from.is_some_and(|f| !f.matches(uid, gid))
    }

    /// GNU's -v line for a file that was owned by `uid:gid`.
    fn say(&self, path: &Path, uid: u32, gid: u32, changed: bool) {
        if !self.verbose.says(changed) {
            return;
        }
        let now = Owner { uid: Some(self.owner.uid.unwrap_or(uid)), gid: Some(self.owner.gid.unwrap_or(gid)) };
        if changed {
            crate::say(format_args!("changed ownership of {} from {uid}:{gid} to {now}", crate::quoted(path)));
        } else {
            crate::say(format_args!("ownership of {} retained as {uid}:{gid}", crate::quoted(path)));
        }
    }
}

fn one(ctx: &Context, args: &Args, walk: &crate::walk::Walk, path: &Path, job: Job, tally: &Tally) -> anyhow::Result<()> {
    let owner = job.owner;
    if !(args.recursive || args.no_dereference) {
        // Not a walk: a link given as PATH is followed, as chown does.
        let meta = std::fs::metadata(path).map_err(|e| podinit_core::fs::io_error(e, format!("cannot access {}", path.display())))?;
        let (uid, gid) = (std::os::unix::fs::MetadataExt::uid(&meta), std::os::unix::fs::MetadataExt::gid(&meta));
        if job.leaves(uid, gid) {
            tally.add(Change::Unchanged);
            job.say(path, uid, gid, false);
        } else {
            std::os::unix::fs::chown(path, owner.uid, owner.gid)
                .map_err(|e| podinit_core::fs::io_error(e, format!("changing the owner to {owner} of {}", path.display())))?;
            tally.add(Change::Changed);
            job.say(path, uid, gid, true);
        }
        return Ok(());
    }
    let link = std::fs::symlink_metadata(path).map_err(|e| podinit_core::fs::io_error(e, format!("cannot access {}", path.display())))?;
    if !(args.recursive && link.is_dir()) {
        // -h, or -R on a link or a file: the entry itself, never followed (a link swapped in
        // since the stat above is changed itself).
        let (parent, name) = parent_of(path)?;
        let stat = parent.stat(&name)?.ok_or_else(|| anyhow::anyhow!("{} is gone", path.display()))?;
        tally.add(chown_at(&parent, &name, &stat, job)?);
        return Ok(());
    }
    // -R on a directory: through a descriptor opened without following a link, so one swapped
    // in for the directory since the stat is refused, never walked.
    let root = Dir::open_nofollow(path)
        .map_err(|e| podinit_core::fs::io_error(e, format!("opening {} (not following a link)", path.display())))?;
    let stat = root.stat_self()?;
    let matches = owner.matches(stat.st_uid, stat.st_gid);
    if job.leaves(stat.st_uid, stat.st_gid) {
        tally.add(Change::Unchanged);
        job.say(path, stat.st_uid, stat.st_gid, false);
    } else {
        // A failure here is counted and the walk goes on, as chown does.
        match root.chown_self(owner.uid, owner.gid) {
            Ok(()) => {
                tally.add(Change::Changed);
                job.say(path, stat.st_uid, stat.st_gid, true);
            }
            Err(e) => tally.fail(&e),
        }
    }
    if args.if_root_mismatch && matches {
        tracing::info!("{}: already owned by {owner}: the tree is left alone (--if-root-mismatch)", path.display());
        return Ok(());
    }
    let links = crate::walk::HardLinks::default();
    walk.run(ctx, root, (), tally, |entry| {
        if entry.hard_linked() && !args.allow_hard_links && !owner.matches(entry.stat.st_uid, entry.stat.st_gid) && !links.all_met(entry) {
            return (Ok(Change::Unchanged), ());
        }
        (chown_at(entry.dir, entry.name, entry.stat, job), ())
    });
    links.report(tally);
    Ok(())
}

/// Changes one entry's owner without following it, unless it already has it.
fn chown_at(dir: &Dir, name: &std::ffi::OsStr, stat: &nix::sys::stat::FileStat, job: Job) -> anyhow::Result<Change> {
    let owner = job.owner;
    if job.leaves(stat.st_uid, stat.st_gid) {
        job.say(&dir.path().join(name), stat.st_uid, stat.st_gid, false);
        return Ok(Change::Unchanged);
    }
    nix::unistd::fchownat(dir, name, owner.uid.map(Uid::from_raw), owner.gid.map(Gid::from_raw), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| podinit_core::fs::io_error(e, format!("changing the owner to {owner} of {}", dir.path().join(name).display())))?;
    job.say(&dir.path().join(name), stat.st_uid, stat.st_gid, true);
    Ok(Change::Changed)
}

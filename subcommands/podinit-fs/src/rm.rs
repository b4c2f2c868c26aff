//! `podinit rm`: remove files, with `-r` whole trees, never following a link out of them and
//! never crossing into another file system unless asked.

use std::path::{Path, PathBuf};

use podinit_core::fs::root::{Kind as EntryKind, Removal};
use podinit_core::{Context, Error, Kind};

/// Remove files and, with -r, directories and everything in them, as rm does.
///
/// A link is removed itself, never what it points at, at any depth; a directory of another
/// file system met below (a mount) is not entered unless --cross-file-systems, and the run
/// fails naming it. `/`, `.` and `..`, and a mount point itself (the volume: empty it with
/// `DIR/*`), are refused before anything is removed. `*`, `?` and `[...]` are expanded as sh
/// does, so `rm -rf /data/cache/*` works without a shell. With -f a missing PATH is success:
/// a restarted pod runs the same line again.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit rm -f /data/plugins/old-driver.jar
  podinit rm -rf /data/cache/*                      what is in the cache (not its dot files)
  podinit rm -rf /data/tmp /data/lock.pid")]
pub struct Args {
    /// Directories too, with everything in them (-R too).
    #[arg(short = 'r', short_alias = 'R', long)]
    pub recursive: bool,

    /// A missing PATH is no error; never asks.
    #[arg(short = 'f', long)]
    pub force: bool,

    /// Refused: podinit never asks (a pod has no terminal); see the hint.
    #[arg(short = 'i', long, hide = true)]
    pub interactive: bool,

    /// Empty directories too (without -r).
    #[arg(short = 'd', long = "dir")]
    pub dir: bool,

    /// A line for every file and directory removed, as GNU's -v; on stdout.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// With -r: also remove what is on other file systems mounted below.
    #[arg(long)]
    pub cross_file_systems: bool,

    /// Files and directories.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs `podinit rm` to completion.
pub fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    crate::refuse_interactive(args.interactive, "name exactly what to remove (patterns such as DIR/*.jar work)")?;
    let paths = crate::operands(args.paths.clone(), false)?;
    let mounts = std::sync::Arc::new(podinit_core::fs::mount_roots());
    // Bad input before anything is removed.
    for path in &paths {
        refuse(path, &mounts)?;
    }
    let (mut removed, mut missing) = (0u64, 0u64);
    let done = crate::each_operand(ctx, &paths, |path| {
        if one(ctx, &args, path, &mounts)? {
            removed += 1;
        } else {
            missing += 1;
        }
        Ok(())
    });
    ctx.check_shutdown()?;
    tracing::debug!(removed, missing, "rm: {removed} removed, {missing} not there");
    done
}

/// Refuses what rm must never remove: `/`, `.` and `..`, a mount point.
fn refuse(path: &Path, mounts: &Mounts) -> Result<(), Error> {
    let bytes = path.as_os_str().as_encoded_bytes();
    let last = bytes.rsplit(|&b| b == b'/').find(|c| !c.is_empty()).unwrap_or(b"/");
    if last == b"." || last == b".." {
        return Err(Error::usage(format!("refusing to remove '.' or '..': {}", path.display()))
            .with_hint("name the directory itself, or what is in it (DIR/*)"));
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if meta.is_dir() && mount_point(path, &meta, mounts) {
        return Err(Error::usage(format!("{} is a mount point (a volume, or /): not removed", path.display()))
            .with_hint("to empty it, name what is in it: rm -rf DIR/* (and DIR/.[!.]* for its dot files)"));
    }
    Ok(())
}

/// The mount roots this process sees ([`podinit_core::fs::mount_roots`]).
type Mounts = std::sync::Arc<podinit_core::fs::MountRoots>;

/// Whether the directory `path` is the root of a mount: one of `mounts`, another device than
/// its parent's, or its own parent (`/`).
fn mount_point(path: &Path, meta: &std::fs::Metadata, mounts: &Mounts) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    if mounts.contains(&(meta.dev(), meta.ino())) {
        return true;
    }
    let Ok(parent) = std::fs::metadata(path.join("..")) else { return false };
    parent.dev() != meta.dev() || parent.ino() == meta.ino()
}

/// Removes one operand: `Ok(false)` when it was not there (with -f).
fn one(ctx: &Context, args: &Args, path: &Path, mounts: &Mounts) -> Result<bool, Error> {
    let failed = |doing: &str, e: anyhow::Error| {
        let kind =
            if crate::walk::errno(&e).is_some_and(|n| n == libc::EACCES || n == libc::EPERM) { Kind::NotPermitted } else { Kind::Failed };
        Error::new(kind, e.context(format!("{doing} {}", path.display())))
    };
    // -f: a path whose directory is missing too is as missing as any (`rm -rf a/*/x`).
    if args.force && std::fs::symlink_metadata(path).is_err_and(|e| matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))) {
        return Ok(false);
    }
    let (parent, name) = crate::parent_of(path).map_err(|e| failed("cannot remove", e))?;
    let Some(stat) = parent.stat(&name).map_err(|e| failed("cannot remove", e.into()))? else {
        if args.force {
            return Ok(false);
        }
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("cannot remove {}: not found", path.display()))
            .with_hint("add -f to accept a missing file (what a restarted pod needs)"));
    };
    let say = |path: &Path, dir: bool| {
        if args.verbose {
            let what = if dir { "removed directory" } else { "removed" };
            crate::say(format_args!("{what} {}", crate::quoted(path)));
        }
    };
    if EntryKind::of(&stat) == EntryKind::Dir && !args.recursive {
        if !args.dir {
            return Err(Error::new(Kind::Failed, anyhow::anyhow!("cannot remove {}: a directory", path.display()))
                .with_hint("add -r to remove it with everything in it, -d if it is empty"));
        }
        nix::unistd::unlinkat(&parent, name.as_os_str(), nix::unistd::UnlinkatFlags::RemoveDir)
            .map_err(|e| failed("cannot remove", podinit_core::fs::io_error(e, "removing the directory")))?;
        say(path, true);
        return Ok(true);
    }
    let mut tell = |p: &Path, dir: bool| say(p, dir);
    let mut removal = Removal {
        device: (!args.cross_file_systems).then_some(stat.st_dev),
        mounts: (!args.cross_file_systems).then(|| std::sync::Arc::clone(mounts)),
        stop: Some(ctx.stop_check()),
        // Only with -v: telling builds each path, which costs time linear in the depth.
        removed: if args.verbose { Some(&mut tell) } else { None },
    };
    parent.remove_tree(&name, &mut removal).map_err(|e| match ctx.check_shutdown() {
        Err(stopped) => stopped,
        Ok(()) => failed("cannot remove", e),
    })?;
    Ok(true)
}

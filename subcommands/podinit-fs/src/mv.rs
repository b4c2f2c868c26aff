//! `podinit mv`: rename files and trees, in one step where rename(2) can; across file systems
//! a whole copy put in place in one step, then the source removed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use podinit_core::fs::root::Dir;
use podinit_core::{Context, Error, Kind};

/// Move (rename) files and directories, as mv does.
///
/// SRC... DEST: into the directory DEST, or one SRC to DEST itself (-T: always). Within a file
/// system a rename, which the app sees in one step; across file systems SRC is copied (as
/// `cp -a`, under a temp name beside DEST), renamed into place whole, then removed. A link is
/// moved as a link. `*`, `?` and `[...]` are expanded as sh does. When SRC is gone and DEST
/// is there, the move is taken as done (a restarted pod runs the same line again).
#[derive(Debug, Clone, clap::Args)]
#[command(
    override_usage = "podinit mv [OPTIONS] <SRC>... <DEST>",
    after_help = "\
Examples:
  podinit mv /data/config.yaml.new /data/config.yaml
  podinit mv /staging/*.jar /data/plugins/"
)]
pub struct Args {
    /// Replace an existing DEST (the default; GNU's flag).
    #[arg(short = 'f', long, conflicts_with = "no_clobber")]
    pub force: bool,

    /// Refused: podinit never asks (a pod has no terminal); see the hint.
    #[arg(short = 'i', long, hide = true)]
    pub interactive: bool,

    /// Do not replace an existing DEST.
    #[arg(short = 'n', long = "no-clobber")]
    pub no_clobber: bool,

    /// DEST is the new name, never a directory to move into.
    #[arg(short = 'T', long = "no-target-directory")]
    pub no_target_directory: bool,

    /// A line for every move (`renamed 'SRC' -> 'DEST'`), as GNU's -v; on stdout.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Sources, then the destination.
    #[arg(value_name = "PATH", required = true, num_args = 2..)]
    pub paths: Vec<PathBuf>,
}

/// Runs `podinit mv` to completion.
pub fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    crate::refuse_interactive(args.interactive, "-n keeps every file that exists")?;
    let mut paths = crate::operands(args.paths.clone(), false)?;
    let Some(dest) = paths.pop() else { return Err(Error::usage("name a source and a destination")) };
    if paths.is_empty() {
        return Err(Error::usage(format!("only one path once expanded ({}): name a destination", dest.display())));
    }
    let into = !args.no_target_directory && dest.is_dir();
    if paths.len() > 1 && !into {
        return Err(Error::usage(format!("moving {} sources needs DEST to be a directory; {} is not one", paths.len(), dest.display())));
    }
    // Every target named before anything moves.
    let mut moves = Vec::with_capacity(paths.len());
    for source in &paths {
        let target = match source.file_name() {
            Some(name) if into => dest.join(name),
            None if into => return Err(Error::usage(format!("'{}' names no file to move", source.display()))),
            _ => dest.clone(),
        };
        moves.push((source, target));
    }
    crate::each_operand(ctx, moves, |(source, target)| one(ctx, &args, source, &target, &dest))
}

/// Moves `source` to `target` (the full new name; `dest` the operand it came from).
fn one(ctx: &Context, args: &Args, source: &Path, target: &Path, dest: &Path) -> Result<(), Error> {
    let (from, from_name) = crate::parent_of(source).map_err(Error::from)?;
    let (to, to_name) = crate::parent_of(target).map_err(Error::from)?;
    let aside = aside_name(&from_name);
    let Some(stat) = from.stat(&from_name).map_err(|e| crate::operand_error("cannot move", source, &e))? else {
        // A move across file systems that was stopped (SIGTERM, the deadline, a node restart)
        // left SRC set aside under its moving name: finish it.
        if from.stat(&aside).map_err(|e| crate::operand_error("cannot move", source, &e))?.is_some() {
            tracing::info!("{}: finishing a move to {} that was interrupted", source.display(), target.display());
            if to.stat(&to_name).ok().flatten().is_none() {
                across(ctx, args, &from, &aside, &to, &to_name)?;
            }
            return remove_aside(ctx, &from, &aside, source, target);
        }
        // A rerun: SRC gone and the new name there. DEST itself counts too: `mv /data/old
        // /data/new` made /data/new, so the rerun reads DEST as a directory to move into.
        if to.stat(&to_name).ok().flatten().is_some() || std::fs::symlink_metadata(dest).is_ok() {
            tracing::info!("{} is not there and {} is: moved already", source.display(), dest.display());
            return Ok(());
        }
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("cannot move {}: not found", source.display())));
    };
    let existing = to.stat(&to_name).map_err(|e| crate::operand_error("cannot move to", target, &e))?;
    if let Some(existing) = &existing {
        if (existing.st_dev, existing.st_ino) == (stat.st_dev, stat.st_ino) {
            tracing::info!("{} and {} are the same file: nothing to move", source.display(), target.display());
            return Ok(());
        }
        if args.no_clobber {
            tracing::info!("{} exists: kept (-n)", target.display());
            return Ok(());
        }
    }
    let flags = if args.no_clobber { nix::fcntl::RenameFlags::RENAME_NOREPLACE } else { nix::fcntl::RenameFlags::empty() };
    match nix::fcntl::renameat2(&from, from_name.as_os_str(), &to, to_name.as_os_str(), flags) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) if args.no_clobber => return Ok(()),
        Err(nix::errno::Errno::EXDEV) => {
            refuse_mounts(source)?;
            // Set aside on its own file system first (one rename), so a stopped move is
            // found and finished by the rerun, never half copied again into DEST/NAME.
            if !from.rename_noreplace(&from_name, &aside)? {
                return Err(Error::new(
                    Kind::Failed,
                    anyhow::anyhow!(
                        "{} exists beside {}: an earlier move of it was interrupted",
                        from.path().join(&aside).display(),
                        source.display()
                    ),
                )
                .with_hint("remove one of them, or move it back over the other, then run again"));
            }
            across(ctx, args, &from, &aside, &to, &to_name)?;
            remove_aside(ctx, &from, &aside, source, target)?;
        }
        Err(e) => return Err(crate::operand_error(&format!("cannot move {} to", source.display()), target, &e.into())),
    }
    // The new name durable before the app starts, and the old one gone for good.
    to.sync().map_err(Error::from)?;
    from.sync().map_err(Error::from)?;
    if args.verbose {
        crate::say(format_args!("renamed {} -> {}", crate::quoted(source), crate::quoted(target)));
    }
    Ok(())
}

/// The name SRC is set aside under while it is moved to another file system.
fn aside_name(name: &OsStr) -> std::ffi::OsString {
    podinit_core::fs::hidden_sibling(Path::new(name), ".podinit-moving").into_os_string()
}

/// Refuses to move a mount point, or a tree with a file system mounted below it, to another
/// file system: the copy would take the mounted volume's files and the removal empty it.
fn refuse_mounts(source: &Path) -> Result<(), Error> {
    let Ok(real) = std::fs::canonicalize(source) else { return Ok(()) };
    if let Some(point) = podinit_core::fs::mount_points().into_iter().find(|p| p.starts_with(&real)) {
        return Err(Error::usage(format!(
            "{} has a file system mounted at {}: not moved to another file system",
            source.display(),
            point.display()
        ))
        .with_hint("move what is in it by name (patterns such as DIR/* work), leaving the mount"));
    }
    Ok(())
}

/// Copies the set-aside `from/aside` to another file system as `cp -a` does, under a temp name
/// beside `to_name`, and renames it into place whole.
fn across(ctx: &Context, args: &Args, from: &Dir, aside: &OsStr, to: &Dir, to_name: &OsStr) -> Result<(), Error> {
    let source = from.path().join(aside);
    let stat = from.stat(aside).map_err(|e| crate::operand_error("cannot move", &source, &e))?;
    let is_dir = stat.is_some_and(|s| podinit_core::fs::root::Kind::of(&s) == podinit_core::fs::root::Kind::Dir);
    // The temp name is taken (a directory, or an empty file cp replaces) so no one else's
    // entry is ever written through.
    let (temp, ()) = if is_dir {
        crate::with_temp_name(to_name, |temp| to.mkdir(temp, 0o700).map(drop))?
    } else {
        crate::with_temp_name(to_name, |temp| to.create_file(temp).map(drop))?
    };
    let cleanup = |e: Error| {
        let _ = to.remove_all(&temp);
        e
    };
    let staged = to.path().join(&temp);
    let copy_from = if is_dir { source.join(".") } else { source };
    let copy = crate::cp::Args {
        recursive: true,
        dereference: false,
        no_dereference: true,
        preserve_all: true,
        preserve: Vec::new(),
        archive: true,
        update: false,
        verbose: false,
        interactive: false,
        no_clobber: false,
        force: false,
        no_target_directory: true,
        mode: None,
        walk: crate::WalkArgs { exclude: Vec::new(), cross_file_systems: false, jobs: None },
        paths: vec![copy_from, staged],
    };
    crate::cp::copy(ctx, copy).map_err(cleanup)?;
    let placed = if args.no_clobber { to.rename_noreplace(&temp, to_name) } else { to.rename(&temp, to_name).map(|()| true) };
    match placed {
        Ok(true) => {}
        Ok(false) => {
            return Err(cleanup(Error::new(
                Kind::Failed,
                anyhow::anyhow!("{} appeared meanwhile: kept (-n)", to.path().join(to_name).display()),
            )));
        }
        Err(e) => return Err(cleanup(e.into())),
    }
    to.sync().map_err(Error::from)
}

/// Removes the set-aside source once its copy is in place, on its own file system only.
fn remove_aside(ctx: &Context, from: &Dir, aside: &OsStr, source: &Path, target: &Path) -> Result<(), Error> {
    let device = from.stat_self().map_err(Error::from)?.st_dev;
    let mut removal = podinit_core::fs::root::Removal {
        device: Some(device),
        mounts: Some(std::sync::Arc::new(podinit_core::fs::mount_roots())),
        stop: Some(ctx.stop_check()),
        removed: None,
    };
    from.remove_tree(aside, &mut removal).map_err(|e| {
        Error::new(Kind::Failed, e.context(format!("{} was copied to {}, but removing it failed", source.display(), target.display())))
    })?;
    from.sync().map_err(Error::from)
}

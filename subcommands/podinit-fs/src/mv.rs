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
    let mut paths = crate::operands(args.paths.clone())?;
    let Some(dest) = paths.pop() else { return Err(Error::usage("name a source and a destination")) };
    if paths.is_empty() {
        return Err(Error::usage(format!("only one path once expanded ({}): name a destination", dest.display())));
    }
    let into = !args.no_target_directory && dest.is_dir();
    if paths.len() > 1 && !into {
        return Err(Error::usage(format!("moving {} sources needs DEST to be a directory; {} is not one", paths.len(), dest.display())));
    }
    let mut first: Option<Error> = None;
    for source in &paths {
        ctx.check_shutdown()?;
        let target = match source.file_name() {
            Some(name) if into => dest.join(name),
            None if into => return Err(Error::usage(format!("'{}' names no file to move", source.display()))),
            _ => dest.clone(),
        };
        if let Err(e) = one(ctx, &args, source, &target) {
            // One operand failing does not stop the others (as mv does).
            tracing::error!("{e:#}");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Moves `source` to `target` (the full new name).
fn one(ctx: &Context, args: &Args, source: &Path, target: &Path) -> Result<(), Error> {
    let (from, from_name) = crate::parent_of(source).map_err(Error::from)?;
    let (to, to_name) = crate::parent_of(target).map_err(Error::from)?;
    let Some(stat) = from.stat(&from_name).map_err(|e| crate::operand_error("cannot move", source, &e))? else {
        if to.stat(&to_name).ok().flatten().is_some() {
            tracing::info!("{} is not there and {} is: moved already", source.display(), target.display());
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
        Err(nix::errno::Errno::EXDEV) => across(ctx, args, source, &to, &to_name)?,
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

/// Moves `source` to another file system: a copy as `cp -a` under a temp name beside
/// `to_name`, renamed into place whole, then the source removed.
fn across(ctx: &Context, args: &Args, source: &Path, to: &Dir, to_name: &OsStr) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(source).map_err(|e| crate::operand_error("cannot move", source, &e))?;
    // The temp name is taken (a directory, or an empty file cp replaces) so no one else's
    // entry is ever written through.
    let (temp, ()) = if meta.is_dir() {
        crate::with_temp_name(to_name, |temp| to.mkdir(temp, 0o700).map(drop))?
    } else {
        crate::with_temp_name(to_name, |temp| to.create_file(temp).map(drop))?
    };
    let cleanup = |e: Error| {
        let _ = to.remove_all(&temp);
        e
    };
    let staged = to.path().join(&temp);
    let from = if meta.is_dir() { source.join(".") } else { source.to_path_buf() };
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
        walk: crate::WalkArgs { exclude: Vec::new(), cross_file_systems: true, jobs: None },
        paths: vec![from, staged],
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
    to.sync().map_err(Error::from)?;
    let (parent, name) = crate::parent_of(source).map_err(Error::from)?;
    parent.remove_tree(&name, &mut podinit_core::fs::root::Removal { stop: Some(ctx.stop_check()), ..Default::default() }).map_err(
        |e| {
            Error::new(
                Kind::Failed,
                e.context(format!("{} was copied to {}, but removing it failed", source.display(), to.path().join(to_name).display())),
            )
        },
    )?;
    Ok(())
}

//! `podinit ln`: links, symbolic with `-s`; replaced in one step with `-f`; left alone when
//! already as asked.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use podinit_core::{Context, Error, Kind};

use crate::parent_of;

/// Make a link named LINK to TARGET, as ln does: symbolic with -s, hard otherwise.
///
/// When LINK is an existing directory (and not -T), the link goes into it, named after TARGET;
/// several TARGETs (or a pattern, `/plugins/*.jar`) go into the directory last named.
/// A link that already points at TARGET is left alone, so a restarted pod runs the same line
/// again; with -f anything else at LINK is replaced in one step (a new link renamed over it),
/// never removed first.
#[derive(Debug, Clone, clap::Args)]
#[command(
    override_usage = "podinit ln [OPTIONS] <TARGET> [LINK]\n       podinit ln [OPTIONS] <TARGET>... <DIR>",
    after_help = "\
Examples:
  podinit ln -s /models/v3 /models/current
  podinit ln -sfn /models/v4 /models/current      switch a link to a directory in one step"
)]
pub struct Args {
    /// A symbolic link (TARGET is stored as written, relative or absolute).
    #[arg(short = 's', long)]
    pub symbolic: bool,

    /// Replace whatever is at LINK.
    #[arg(short = 'f', long)]
    pub force: bool,

    /// When LINK is a link to a directory, replace it rather than link inside that directory.
    #[arg(short = 'n', long = "no-dereference")]
    pub no_dereference: bool,

    /// LINK is the link's own name, never a directory to put it in.
    #[arg(short = 'T', long = "no-target-directory")]
    pub no_target_directory: bool,

    /// A line for the link made, as GNU's -v; on stdout.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// TARGET [LINK], or TARGET... DIR: what each link points at, then the link's name or the
    /// directory to put the links in [default: the current directory].
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs `podinit ln` to completion.
pub fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    // A link's target is stored, and a hard link is made to a link itself: nothing followed.
    let mut paths = crate::operands(args.paths.clone(), false)?;
    let (targets, link) = match paths.len() {
        1 => (paths, None),
        _ => {
            let link = paths.pop();
            (paths, link)
        }
    };
    let into_dir = link.as_ref().is_some_and(|l| l.is_dir()) && !args.no_target_directory;
    if targets.len() > 1 && !into_dir {
        let shown = link.as_ref().map_or_else(String::new, |l| l.display().to_string());
        return Err(Error::usage(format!(
            "linking {} targets needs the last operand to be a directory; {shown} is not one",
            targets.len()
        )));
    }
    for target in &targets {
        ctx.check_shutdown()?;
        one(&args, target, link.as_deref())?;
    }
    Ok(())
}

/// Makes one link to `target`, named `link` or put into it.
fn one(args: &Args, target: &Path, link: Option<&Path>) -> Result<(), Error> {
    let name_of_target =
        || target.file_name().map(PathBuf::from).ok_or_else(|| Error::usage(format!("TARGET '{}' names no file", target.display())));
    let link = match link {
        None => name_of_target()?,
        Some(link) if args.no_target_directory => link.to_path_buf(),
        Some(link) => {
            let into_dir = if args.no_dereference { std::fs::symlink_metadata(link).is_ok_and(|m| m.is_dir()) } else { link.is_dir() };
            if into_dir { link.join(name_of_target()?) } else { link.to_path_buf() }
        }
    };
    if already(args, target, &link) {
        tracing::debug!("{} already links to {}", link.display(), target.display());
        return Ok(());
    }
    let exists = std::fs::symlink_metadata(&link).is_ok();
    if exists && !args.force {
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("{} exists (and is not a link to {})", link.display(), target.display()))
            .with_hint("add -f to replace it"));
    }
    if exists && std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("{} is a directory; a link cannot replace it", link.display())));
    }
    // A new link under a temporary name, renamed over LINK: never a moment without one.
    let (dir, name) = parent_of(&link)?;
    let (temp, ()) = if args.symbolic {
        crate::with_temp_name(&name, |temp| dir.symlink(temp, target.as_os_str()))?
    } else {
        let (from, from_name) = parent_of(target)?;
        crate::with_temp_name(&name, |temp| dir.hard_link(temp, &from, &from_name))?
    };
    dir.rename(&temp, &name).map_err(|e| {
        let _ = dir.remove_all(&temp);
        Error::from(e)
    })?;
    dir.sync().map_err(Error::from)?;
    tracing::debug!("{} → {}", link.display(), target.display());
    if args.verbose {
        crate::say(format_args!("{} -> {}", crate::quoted(&link), crate::quoted(target)));
    }
    Ok(())
}

/// Whether LINK is already the link asked for.
fn already(args: &Args, target: &Path, link: &Path) -> bool {
    if args.symbolic {
        return std::fs::read_link(link).is_ok_and(|t| t == target);
    }
    match (std::fs::symlink_metadata(link), std::fs::symlink_metadata(target)) {
        (Ok(l), Ok(t)) => l.dev() == t.dev() && l.ino() == t.ino(),
        _ => false,
    }
}

//! `podinit ln`: links, symbolic with `-s`; replaced in one step with `-f`; left alone when
//! already as asked.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use podinit_core::{Context, Error, Kind};

use crate::parent_of;

/// Make a link named LINK to TARGET, as ln does: symbolic with -s, hard otherwise.
///
/// When LINK is an existing directory (and not -T), the link goes into it, named after TARGET.
/// A link that already points at TARGET is left alone, so a restarted pod runs the same line
/// again; with -f anything else at LINK is replaced in one step (a new link renamed over it),
/// never removed first.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit ln -s /models/v3 /models/current
  podinit ln -sfn /models/v4 /models/current      switch a link to a directory in one step")]
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

    /// What the link points at.
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,

    /// The link's name, or a directory to put it in [default: the current directory].
    #[arg(value_name = "LINK")]
    pub link: Option<PathBuf>,
}

/// Runs `podinit ln` to completion.
pub fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    ctx.check_shutdown()?;
    let name_of_target = || {
        args.target.file_name().map(PathBuf::from).ok_or_else(|| Error::usage(format!("TARGET '{}' names no file", args.target.display())))
    };
    let link = match &args.link {
        None => name_of_target()?,
        Some(link) if args.no_target_directory => link.clone(),
        Some(link) => {
            let into_dir = if args.no_dereference { std::fs::symlink_metadata(link).is_ok_and(|m| m.is_dir()) } else { link.is_dir() };
            if into_dir { link.join(name_of_target()?) } else { link.clone() }
        }
    };
    if already(&args, &link) {
        tracing::debug!("{} already links to {}", link.display(), args.target.display());
        return Ok(());
    }
    let exists = std::fs::symlink_metadata(&link).is_ok();
    if exists && !args.force {
        return Err(Error::new(
            Kind::Failed,
            anyhow::anyhow!("{} exists (and is not a link to {})", link.display(), args.target.display()),
        )
        .with_hint("add -f to replace it"));
    }
    if exists && std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("{} is a directory; a link cannot replace it", link.display())));
    }
    // A new link under a temporary name, renamed over LINK: never a moment without one.
    let (dir, name) = parent_of(&link)?;
    let (temp, ()) = if args.symbolic {
        crate::with_temp_name(&name, |temp| dir.symlink(temp, args.target.as_os_str()))?
    } else {
        let (from, from_name) = parent_of(&args.target)?;
        crate::with_temp_name(&name, |temp| dir.hard_link(temp, &from, &from_name))?
    };
    dir.rename(&temp, &name).map_err(|e| {
        let _ = dir.remove_all(&temp);
        Error::from(e)
    })?;
    dir.sync().map_err(Error::from)?;
    tracing::debug!("{} → {}", link.display(), args.target.display());
    Ok(())
}

/// Whether LINK is already the link asked for.
fn already(args: &Args, link: &Path) -> bool {
    if args.symbolic {
        return std::fs::read_link(link).is_ok_and(|t| t == args.target);
    }
    match (std::fs::symlink_metadata(link), std::fs::symlink_metadata(&args.target)) {
        (Ok(l), Ok(t)) => l.dev() == t.dev() && l.ino() == t.ino(),
        _ => false,
    }
}

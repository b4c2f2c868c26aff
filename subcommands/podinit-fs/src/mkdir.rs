//! `podinit mkdir`: directories, with `-p` their parents too; idempotent with `-p`.

use std::path::PathBuf;

use podinit_core::{Context, Error, Kind};

use crate::mode::{self, Mode};

/// Create directories, as mkdir does.
///
/// With -p the missing parents are made too and an existing directory is fine (nothing
/// changes: its mode stays), so a restarted pod runs the same line again. -m sets the mode of
/// the directories named (not of the parents), whatever the umask.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit mkdir -p /data/cache /data/logs
  podinit mkdir -p -m 0700 /data/private")]
pub struct Args {
    /// Make missing parents too; an existing directory is no error.
    #[arg(short = 'p', long)]
    pub parents: bool,

    /// Mode of the directories named (octal or symbolic, as chmod).
    #[arg(short = 'm', long, value_name = "MODE")]
    pub mode: Option<String>,

    /// A line for every directory made, as GNU's -v; on stdout.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Directories.
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<PathBuf>,
}

/// Runs `podinit mkdir` to completion.
pub fn run(ctx: &Context, mut args: Args) -> Result<(), Error> {
    let mode = args.mode.as_deref().map(Mode::parse).transpose().map_err(|e| Error::usage(format!("-m {e}")))?;
    args.dirs = crate::operands(std::mem::take(&mut args.dirs), false)?;
    let umask = mode::umask();
    let (mut made, mut existed) = (0u32, 0u32);
    for dir in &args.dirs {
        ctx.check_shutdown()?;
        let there = args.parents && dir.is_dir();
        // For -v: the directories -p is about to make (the missing ancestors, outermost first).
        let missing: Vec<&std::path::Path> = if args.verbose && args.parents {
            let mut missing: Vec<_> = dir.ancestors().skip(1).take_while(|p| !p.as_os_str().is_empty() && !p.exists()).collect();
            missing.reverse();
            missing
        } else {
            Vec::new()
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(args.parents);
        match builder.create(dir) {
            Ok(()) if there => existed += 1,
            Ok(()) => {
                made += 1;
                if args.verbose {
                    for path in missing.into_iter().chain([dir.as_path()]) {
                        crate::say(format_args!("mkdir: created directory {}", crate::quoted(path)));
                    }
                }
                if let Some(mode) = &mode {
                    // Relative to 0777, as GNU mkdir: `-m o-rwx` is 0770 whatever the umask.
                    let new = mode.apply(0o777, true, umask);
                    // Through a descriptor of the directory just made, never a link swapped in.
                    use std::os::unix::fs::OpenOptionsExt as _;
                    let made = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                        .open(dir)
                        .and_then(|d| d.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(new)));
                    made.map_err(|e| crate::operand_error(&format!("setting mode {new:04o} on"), dir, &e))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && !dir.is_dir() => {
                return Err(Error::new(
                    Kind::Failed,
                    anyhow::anyhow!("cannot create directory {}: a file of that name exists", dir.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::new(Kind::Failed, anyhow::anyhow!("cannot create directory {}: it exists", dir.display()))
                    .with_hint("add -p to accept an existing directory (what a restarted pod needs)"));
            }
            Err(e) => return Err(crate::operand_error("cannot create directory", dir, &e)),
        }
    }
    tracing::debug!(made, existed, "mkdir: {made} made, {existed} already there");
    Ok(())
}

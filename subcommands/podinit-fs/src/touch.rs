//! `podinit touch`: create empty files, or set the times of existing ones to now.

use std::path::PathBuf;

use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;
use podinit_core::{Context, Error};

/// Create files that do not exist (empty) and set the times of every FILE to now, as touch does.
///
/// An existing file's content is never changed. A link given as FILE is followed, as in touch.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit touch /data/.initialized
  podinit touch -c /data/app.log          only if it exists")]
pub struct Args {
    /// Do not create missing files.
    #[arg(short = 'c', long = "no-create")]
    pub no_create: bool,

    /// Only the access time.
    #[arg(short = 'a')]
    pub access: bool,

    /// Only the modification time.
    #[arg(short = 'm', id = "modification")]
    pub modification: bool,

    /// Files.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `podinit touch` to completion.
pub fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    // `-a` or `-m` alone narrows to that time; both, or neither, set both (as in GNU touch).
    let atime = if args.modification && !args.access { TimeSpec::UTIME_OMIT } else { TimeSpec::UTIME_NOW };
    let mtime = if args.access && !args.modification { TimeSpec::UTIME_OMIT } else { TimeSpec::UTIME_NOW };
    for file in &args.files {
        ctx.check_shutdown()?;
        if !args.no_create {
            // O_CREAT without O_TRUNC: an existing file keeps its content. One podinit may
            // not write (read-only, someone else's) still gets its times set below if allowed.
            // O_NONBLOCK: an existing FIFO must not block the open (as GNU touch).
            use std::os::unix::fs::OpenOptionsExt as _;
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o666)
                // Never created through a link (a dangling one planted in a volume would
                // make root create a file wherever it points); an existing link's target
                // still gets its times below, as touch does.
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
                .open(file);
            if let Err(e) = opened
                && !file.exists()
            {
                return Err(crate::operand_error("cannot touch", file, &e));
            }
        }
        match nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, file, &atime, &mtime, UtimensatFlags::FollowSymlink) {
            Ok(()) => {}
            Err(nix::errno::Errno::ENOENT) if args.no_create => {}
            Err(e) => return Err(crate::operand_error("setting the times of", file, &std::io::Error::from(e))),
        }
    }
    Ok(())
}

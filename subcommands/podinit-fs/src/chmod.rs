//! `podinit chmod`: file modes, octal or symbolic, with `-R` of everything below, never
//! following a link, and with no syscall for what already has the mode.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::stat::{FchmodatFlags, FileStat, Mode as NixMode};
use podinit_core::fs::root::{Dir, Kind};
use podinit_core::{Context, Error};

use crate::mode::{self, Mode};
use crate::walk::{Change, Tally};
use crate::{Verbose, WalkArgs, finish};

/// Change the mode of files, as chmod does; with -R of everything below.
///
/// MODE is octal (`0640`, `2775`) or symbolic (`u=rwX,go=`, `g+s`, `a-w`; `X` is execute for
/// directories and files already executable). With -R, links are never followed nor changed,
/// the walk stays on the file system of each PATH unless --cross-file-systems, and entries
/// that already have the mode are not touched, so a rerun changes nothing. A failure on one
/// entry does not stop the walk: exit 1 at the end naming the first.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit chmod 0600 /secrets/tls.key
  podinit chmod -R u=rwX,g=rX,o= /data
  podinit chmod -R --if-root-mismatch g+rwX /shared")]
pub struct Args {
    /// Also everything below each directory, never following a link.
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// With -R: leave the tree alone when PATH itself already has the mode.
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

    /// Octal or symbolic.
    #[arg(value_name = "MODE", allow_hyphen_values = true)]
    pub mode: String,

    /// Files and directories.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs `podinit chmod` to completion.
pub fn run(ctx: &Context, mut args: Args) -> Result<(), Error> {
    let mode = Mode::parse(&args.mode).map_err(|e| Error::usage(format!("MODE {e}")))?;
    let walk = args.walk.walk(false)?;
    args.paths = crate::operands(std::mem::take(&mut args.paths), !args.recursive)?;
    let job = Job { mode, umask: mode::umask(), verbose: Verbose::of(args.verbose, args.changes) };
    let started = Instant::now();
    let tally = Tally::with_progress(ctx, format!("chmod {}", args.mode));
    for path in &args.paths {
        // One operand failing does not stop the others (as chmod does); counted, named at the end.
        if let Err(e) = one(ctx, &args, &walk, path, &job, &tally) {
            tally.fail(&e);
        }
    }
    let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
    finish("chmod", &format!("{} {}", args.mode, paths.join(" ")), &tally, started, ctx)
}

/// What to do to each file.
struct Job {
    mode: Mode,
    umask: u32,
    verbose: Verbose,
}

impl Job {
    /// GNU's -v line for a file whose mode was `old`.
    fn say(&self, path: &Path, old: u32, new: u32) {
        if !self.verbose.says(old != new) {
            return;
        }
        if old == new {
            crate::say(format_args!("mode of {} retained as {old:04o} ({})", crate::quoted(path), mode::letters(old)));
        } else {
            crate::say(format_args!(
                "mode of {} changed from {old:04o} ({}) to {new:04o} ({})",
                crate::quoted(path),
                mode::letters(old),
                mode::letters(new)
            ));
        }
    }
}

fn one(ctx: &Context, args: &Args, walk: &crate::walk::Walk, path: &Path, job: &Job, tally: &Tally) -> anyhow::Result<()> {
    let (mode, umask) = (&job.mode, job.umask);
    let access = |e| podinit_core::fs::io_error(e, format!("cannot access {}", path.display()));
    if !args.recursive {
        // Not a walk: a link given as PATH is followed, as chmod does.
        let meta = std::fs::metadata(path).map_err(access)?;
        let old = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        let new = mode.apply(old, meta.is_dir(), umask);
        if new == old {
            tally.add(Change::Unchanged);
        } else {
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(new))
                .map_err(|e| podinit_core::fs::io_error(e, format!("setting mode {new:04o} on {}", path.display())))?;
            tally.add(Change::Changed);
        }
        job.say(path, old, new);
        return Ok(());
    }
    // With -R nothing is followed: a link planted where the volume's directory was must not
    // turn a walk of the volume into one of its target.
    let link = std::fs::symlink_metadata(path).map_err(access)?;
    if link.file_type().is_symlink() {
        tracing::warn!("{} is a symbolic link: -R does not follow it (name the directory itself)", path.display());
        tally.add(Change::Skipped);
        return Ok(());
    }
    if !link.is_dir() {
        let (parent, name) = crate::parent_of(path)?;
        let stat = parent.stat(&name)?.ok_or_else(|| anyhow::anyhow!("{} is gone", path.display()))?;
        tally.add(chmod_at(&parent, &name, &stat, job)?);
        return Ok(());
    }
    // Through a descriptor opened without following a link: one swapped in since is refused.
    let root = Dir::open_nofollow(path)
        .map_err(|e| podinit_core::fs::io_error(e, format!("opening {} (not following a link)", path.display())))?;
    let old = root.stat_self()?.st_mode & 0o7777;
    let new = mode.apply(old, true, umask);
    if new == old {
        tally.add(Change::Unchanged);
        job.say(path, old, new);
    } else {
        // A failure here is counted and the walk goes on, as chmod does.
        match root.chmod_exact(new) {
            Ok(()) => {
                tally.add(Change::Changed);
                job.say(path, old, new);
            }
            Err(e) => tally.fail(&e),
        }
    }
    if args.if_root_mismatch && new == old {
        tracing::info!("{}: already mode {old:04o}: the tree is left alone (--if-root-mismatch)", path.display());
        return Ok(());
    }
    let links = crate::walk::HardLinks::default();
    walk.run(ctx, root, (), tally, |entry| {
        if entry.hard_linked()
            && !args.allow_hard_links
            && mode.apply(entry.stat.st_mode & 0o7777, false, umask) != entry.stat.st_mode & 0o7777
            && !links.all_met(entry)
        {
            return (Ok(Change::Unchanged), ());
        }
        (chmod_at(entry.dir, entry.name, entry.stat, job), ())
    });
    links.report(tally);
    Ok(())
}

/// Sets one entry's mode without following it, unless it already has it; links are skipped.
fn chmod_at(dir: &Dir, name: &std::ffi::OsStr, stat: &FileStat, job: &Job) -> anyhow::Result<Change> {
    let kind = Kind::of(stat);
    if kind == Kind::Symlink {
        if job.verbose == Verbose::All {
            crate::say(format_args!("neither symbolic link {} nor referent has been changed", crate::quoted(&dir.path().join(name))));
        }
        return Ok(Change::Skipped);
    }
    let old = stat.st_mode & 0o7777;
    let new = job.mode.apply(old, kind == Kind::Dir, job.umask);
    if new == old {
        job.say(&dir.path().join(name), old, new);
        return Ok(Change::Unchanged);
    }
    let shown = || format!("setting mode {new:04o} on {}", dir.path().join(name).display());
    let bits = NixMode::from_bits_truncate(new);
    // Never through a link, even one swapped in since the stat: the C library refuses a
    // link with EOPNOTSUPP (fchmodat2, or its /proc emulation on older kernels), and that is
    // an error here, never a reason to try again following it.
    match fchmodat_nofollow(dir, name, bits) {
        Ok(()) => {
            job.say(&dir.path().join(name), old, new);
            Ok(Change::Changed)
        }
        Err(nix::errno::Errno::EOPNOTSUPP) => {
            anyhow::bail!("{}: a symbolic link now (it was not when read): not followed", dir.path().join(name).display())
        }
        Err(e) => Err(podinit_core::fs::io_error(e, shown())),
    }
}

/// `fchmodat(dir, name, mode, AT_SYMLINK_NOFOLLOW)` in one call: the kernel's `fchmodat2`
/// (Linux 6.6). The static binary's C library (glibc 2.36) emulates the flag with four calls
/// and a path through /proc, which made `chmod -R` of a million files slower than GNU chmod
/// (which does not ask for it); older kernels get that emulation.
fn fchmodat_nofollow(dir: &Dir, name: &std::ffi::OsStr, bits: NixMode) -> nix::Result<()> {
    // fchmodat2 is 452 on every architecture (the unified syscall table since Linux 5.1); the
    // libc crate names it for x86_64 but not yet for aarch64 (found by the arm64 build).
    const SYS_FCHMODAT2: libc::c_long = 452;
    use std::os::fd::{AsFd as _, AsRawFd as _};
    use std::os::unix::ffi::OsStrExt as _;
    static NO_FCHMODAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !NO_FCHMODAT2.load(std::sync::atomic::Ordering::Relaxed) {
        let c_name = std::ffi::CString::new(name.as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
        #[expect(unsafe_code, reason = "fchmodat2 has no safe wrapper in nix or the C library podinit links")]
        // SAFETY: the descriptor stays open for the call, the name is a NUL-terminated
        // string that outlives it, and the other arguments are plain integers.
        let rc = unsafe {
            libc::syscall(
                SYS_FCHMODAT2,
                dir.as_fd().as_raw_fd(),
                c_name.as_ptr(),
                libc::c_uint::from(bits.bits()),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        match nix::errno::Errno::result(rc) {
            Err(nix::errno::Errno::ENOSYS) => NO_FCHMODAT2.store(true, std::sync::atomic::Ordering::Relaxed),
            other => return other.map(drop),
        }
    }
    nix::sys::stat::fchmodat(dir, name, bits, FchmodatFlags::NoFollowSymlink)
}

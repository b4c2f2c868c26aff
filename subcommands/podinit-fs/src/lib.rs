//! podinit's volume applets: `chown`, `chmod`, `mkdir`, `cp`, `ln`, `touch` — the jobs most init
//! containers in real charts do, which today need a shell image.
//!
//! What makes them init-container tools rather than coreutils:
//! - a walk never follows a link (`-R` is `-P`): a link planted in a volume cannot make a
//!   privileged init container chown, chmod or copy anything outside it (`walk`);
//! - an entry that already has its owner, mode or content gets no syscall beyond a `stat`, so
//!   a rerun of `chown -R` on a matching tree changes nothing; `--if-root-mismatch` skips the
//!   walk when the root already matches, as the kubelet's `fsGroupChangePolicy: OnRootMismatch`;
//! - `cp` writes each file atomically (temp file, synced, renamed; the syncs one `syncfs` per
//!   batch of files) and knows the kubelet's ConfigMap and Secret layout (`..data`);
//! - on a large tree, several threads keep the kernel busy (`walk`);
//! - with `-R`, a failure on one entry is counted and the walk goes on; the run ends with exit 1
//!   naming the first failure.
//!
//! One crate for the six (they share the walk, owners and modes, and each is small); each has
//! its own Cargo feature in the `podinit` binary. They run without a Tokio runtime.

pub mod chmod;
pub mod chown;
pub mod cp;
pub mod ln;
pub mod mkdir;
pub mod mv;
pub mod rm;
pub mod touch;

mod glob;
mod mode;
mod owner;
mod walk;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::time::Instant;

use podinit_core::{Error, Kind};

use crate::walk::Tally;

/// `-v` (a line for every entry) and `-c` (for every change), GNU's lines on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Verbose {
    #[default]
    Quiet,
    Changes,
    All,
}

impl Verbose {
    pub(crate) fn of(verbose: bool, changes: bool) -> Self {
        if verbose {
            Self::All
        } else if changes {
            Self::Changes
        } else {
            Self::Quiet
        }
    }

    /// Whether a line is printed for an entry that was (or was not) changed.
    pub(crate) fn says(self, changed: bool) -> bool {
        self == Self::All || (changed && self == Self::Changes)
    }
}

/// Prints one `-v` line on stdout (control characters escaped: a file name cannot forge a
/// line). A closed stdout does not stop the job.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let line = line.to_string();
    let _ = writeln!(std::io::stdout().lock(), "{}", podinit_core::logging::printable(&line));
}

/// A path as GNU's `-v` lines quote it.
pub(crate) fn quoted(path: &std::path::Path) -> String {
    format!("'{}'", path.display())
}

/// Runs `one` for each operand (stopping at a stop signal or the deadline): one failing does
/// not stop the others, as coreutils' tools go on. The first failure is the run's error
/// (printed at the end, and in the termination message); the others are logged as they come.
pub(crate) fn each_operand<T>(
    ctx: &podinit_core::Context,
    operands: impl IntoIterator<Item = T>,
    mut one: impl FnMut(T) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut first: Option<Error> = None;
    for operand in operands {
        ctx.check_shutdown()?;
        if let Err(e) = one(operand) {
            if first.is_some() {
                tracing::error!("{e:#}");
            } else {
                first = Some(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// `-i`: refused with a hint, since nothing can answer a question in a pod.
pub(crate) fn refuse_interactive(interactive: bool, keep: &str) -> Result<(), Error> {
    if interactive {
        return Err(Error::usage("-i asks before each change, and a pod has no one to answer").with_hint(format!("drop -i; {keep}")));
    }
    Ok(())
}

/// The path operands with sh's patterns expanded ([`glob`]); `follows`: the applet follows
/// a link given as an operand (`chmod`, `chown` without `-R` or `-h`, `touch` without `-h`,
/// `cp` without `-r`), so a link a pattern finds that leads out of the directory it lists is
/// left out.
pub(crate) fn operands(paths: Vec<std::path::PathBuf>, follows: bool) -> Result<Vec<std::path::PathBuf>, Error> {
    glob::expand(paths, follows)
}

/// Options every recursive applet has.
#[derive(Debug, Clone, clap::Args)]
pub struct WalkArgs {
    /// With -R: leave out entries of this name at any depth, and all below them (e.g.
    /// `lost+found`); `/NAME` only the entry NAME directly in each PATH (rsync's anchor);
    /// repeatable.
    #[arg(long, value_name = "NAME")]
    pub exclude: Vec<OsString>,

    /// With -R: also descend into directories of other file systems (by default the walk
    /// stays on the file system of each PATH).
    #[arg(long)]
    pub cross_file_systems: bool,

    /// Threads walking the tree [default: 4 per core, at most 16].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
}

impl WalkArgs {
    fn walk(&self, skip_dotdot: bool) -> Result<walk::Walk, Error> {
        let (mut excludes, mut top_excludes) = (Vec::new(), Vec::new());
        for name in &self.exclude {
            let bytes = name.as_encoded_bytes();
            let (list, bare) = match bytes.strip_prefix(b"/") {
                Some(rest) => (&mut top_excludes, rest),
                None => (&mut excludes, bytes),
            };
            if bare.is_empty() || bare.contains(&b'/') || bare == b"." || bare == b".." {
                return Err(Error::usage(format!(
                    "--exclude '{}' is not a name: give NAME (at any depth) or /NAME (directly in PATH)",
                    name.display()
                )));
            }
            list.push(OsStr::from_bytes(bare).to_owned());
        }
        Ok(walk::Walk {
            excludes,
            top_excludes,
            one_file_system: !self.cross_file_systems,
            mounts: std::sync::Arc::default(),
            skip_dotdot,
            jobs: self.jobs.map_or_else(walk::Walk::default_jobs, usize::from),
        })
    }
}

/// The closing line of a run, and its error when an entry failed: exit 1, or 77 when every
/// failure was a missing privilege.
fn finish(applet: &str, what: &str, tally: &Tally, started: Instant, ctx: &podinit_core::Context) -> Result<(), Error> {
    let (changed, unchanged, skipped, failed) =
        (tally.get(&tally.changed), tally.get(&tally.unchanged), tally.get(&tally.skipped), tally.get(&tally.failed));
    let mut parts = vec![format!("{changed} changed"), format!("{unchanged} unchanged")];
    if skipped > 0 {
        parts.push(format!("{skipped} skipped"));
    }
    if failed > 0 {
        parts.push(format!("{failed} failed"));
    }
    tracing::info!(changed, unchanged, skipped, failed, "{applet} {what}: {} in {:.2?}", parts.join(", "), started.elapsed());
    ctx.check_shutdown()?;
    let Some(first) = tally.first_failure() else { return Ok(()) };
    let total = changed + unchanged + skipped + failed;
    let denied = tally.only_denied();
    let err = Error::new(
        if denied { Kind::NotPermitted } else { Kind::Failed },
        anyhow::anyhow!("{failed} of {total} entries failed; the first: {first}"),
    );
    Err(if denied {
        err.with_hint(
            "changing owners needs root with CAP_CHOWN (and CAP_FOWNER for modes of files podinit does not own, CAP_DAC_OVERRIDE to enter another user's directories): runAsUser: 0 and capabilities: {drop: [ALL], add: [CHOWN, FOWNER, DAC_OVERRIDE]}",
        )
    } else {
        err
    })
}

/// An error about one operand: exit 1 with its path.
fn operand_error(doing: &str, path: &std::path::Path, err: &std::io::Error) -> Error {
    let kind = if err.kind() == std::io::ErrorKind::PermissionDenied { Kind::NotPermitted } else { Kind::Failed };
    Error::new(kind, anyhow::anyhow!("{doing} {}: {}", path.display(), podinit_core::redact::io_reason(err)))
}

/// The directory of `path` (opened as the operator named it) and the last component.
pub(crate) fn parent_of(path: &std::path::Path) -> anyhow::Result<(podinit_core::fs::root::Dir, OsString)> {
    let name = path.file_name().ok_or_else(|| anyhow::anyhow!("'{}' names no file", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let dir =
        podinit_core::fs::root::Dir::open(parent).map_err(|e| podinit_core::fs::io_error(e, format!("opening {}", parent.display())))?;
    // Shown as the operand was written: `copy.txt`, not `./copy.txt`.
    let shown = path.parent().unwrap_or_else(|| std::path::Path::new(""));
    Ok((dir.shown_as(shown), name.to_owned()))
}

/// Makes something under a new temp name beside `name` (`.NAME.podinit-RANDOM-N`, within
/// NAME_MAX) with `make`, which must fail with `EEXIST` on a name in use: a name planted in
/// the volume is never used, removed or written through; another is tried.
pub(crate) fn with_temp_name<T>(name: &OsStr, make: impl Fn(&OsStr) -> anyhow::Result<T>) -> anyhow::Result<(OsString, T)> {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static TEMP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed = *SEED.get_or_init(|| {
        use std::hash::{BuildHasher as _, Hasher as _};
        // A per-process random value (the standard library seeds RandomState from the OS).
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    });
    let mut tries = 0;
    loop {
        let suffix = format!(".podinit-{seed:016x}-{}", TEMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let temp = podinit_core::fs::hidden_sibling(std::path::Path::new(name), &suffix).into_os_string();
        match make(&temp) {
            Ok(made) => return Ok((temp, made)),
            Err(e) if walk::errno(&e) == Some(libc::EEXIST) && tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

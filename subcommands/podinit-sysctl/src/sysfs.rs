//! `podinit sysfs`: the node tuning charts do with `echo never >
//! /sys/kernel/mm/transparent_hugepage/enabled` in a privileged init container, with
//! `sysctl`'s contract: read first and write only what differs, read back, `--check`
//! without privileges, exit 77 with a hint when /sys is read-only.
//!
//! An attribute that offers choices shows them with the current one in brackets
//! (`always madvise [never]`): its value is the bracketed word. Attributes are named below
//! the root (`/sys`, or the node's sysfs mounted elsewhere with `--root`), with or without
//! the leading `/sys/`; `..` is refused. Links inside sysfs are the kernel's
//! (`class/net/lo` → `devices/virtual/net/lo`) and are followed.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use clap::builder::BoolishValueParser;
use podinit_core::{Context, Error, Kind};

use crate::kernel::{Fault, Tree};

/// Set kernel attributes under /sys, only when different, read back to verify.
///
/// PATH=VALUE writes VALUE to the attribute PATH (below --root, `/sys/` optional) when it
/// holds something else; PATH alone prints it. An attribute of choices
/// (`always madvise [never]`) holds the bracketed one. Exit 0 when every attribute holds its
/// value, 1 when one failed, 2 for bad input (nothing is written), 77 when /sys is read-only
/// (the container needs privileges).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit sysfs kernel/mm/transparent_hugepage/enabled=never kernel/mm/transparent_hugepage/defrag=never
  podinit sysfs /sys/kernel/mm/transparent_hugepage/enabled=never     `echo never > …`, the same
  podinit sysfs --check kernel/mm/transparent_hugepage/enabled=never  unprivileged: is the node ready?
  podinit sysfs --root /host-sys kernel/mm/transparent_hugepage/enabled=madvise")]
pub struct Args {
    /// Attributes to set (PATH=VALUE) or print (PATH).
    #[arg(value_name = "PATH[=VALUE]", required = true)]
    pub settings: Vec<String>,

    /// Compare without writing: exit 0 when every attribute holds its value, 1 naming those
    /// that do not (needs no privileges).
    #[arg(long, env = "PODINIT_SYSFS_CHECK", value_parser = BoolishValueParser::new())]
    pub check: bool,

    /// Print what would be written, write nothing.
    #[arg(long, env = "PODINIT_SYSFS_DRY_RUN", value_parser = BoolishValueParser::new(), conflicts_with = "check")]
    pub dry_run: bool,

    /// Where the sysfs is mounted (the node's, mounted into the container elsewhere).
    #[arg(long, env = "PODINIT_SYSFS_ROOT", value_name = "DIR", default_value = "/sys")]
    pub root: PathBuf,
}

/// One attribute and the value asked for.
struct Setting {
    rel: PathBuf,
    value: Option<String>,
}

/// Parses `PATH[=VALUE]`: a relative path below the root without `..` (a leading `/sys/`, or
/// the root's own path, is the root's), a value of one line (spaces around it dropped, as
/// the kernel drops them).
fn parse(arg: &str, root: &Path) -> Result<Setting, String> {
    let (path, value) = match arg.split_once('=') {
        Some((p, v)) => (p, Some(v.trim())),
        None => (arg, None),
    };
    let root = format!("{}/", root.display().to_string().trim_end_matches('/'));
    let path = path.strip_prefix(root.as_str()).or_else(|| path.strip_prefix("/sys/")).unwrap_or(path).trim_start_matches('/');
    if path.is_empty() {
        return Err(format!("'{arg}' names no attribute"));
    }
    let rel = PathBuf::from(path);
    if path.split('/').any(|c| c == "." || c == "..") || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("'{path}' must be a path below the sysfs root, without `.` or `..`"));
    }
    if let Some(value) = value
        && (value.contains(['\n', '\0']) || value.is_empty())
    {
        return Err(format!("the value for {path} must be one non-empty line"));
    }
    Ok(Setting { rel, value: value.map(str::to_owned) })
}

/// The value an attribute holds: the bracketed choice of `always madvise [never]`, else the
/// text without its trailing newline.
pub(crate) fn current(text: &str) -> &str {
    let text = text.trim_end_matches('\n');
    if let Some(open) = text.find('[')
        && let Some(len) = text[open + 1..].find(']')
    {
        return &text[open + 1..open + 1 + len];
    }
    text.trim()
}

/// Runs `podinit sysfs` to completion.
pub fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let settings: Vec<Setting> =
        args.settings.iter().map(|a| parse(a, &args.root)).collect::<Result<_, _>>().map_err(|e| Error::usage(format!("argument {e}")))?;
    let tree = Tree::new(&args.root);
    // Every attribute read before anything is written: a typo stops the run unchanged.
    let mut now = Vec::with_capacity(settings.len());
    for setting in &settings {
        let path = args.root.join(&setting.rel);
        let text = tree.read_path(&path).map_err(|fault| fault_error(&path, "reading", fault))?;
        now.push(current(&text).to_owned());
    }
    let mut unsatisfied = Vec::new();
    let mut failures: Vec<Error> = Vec::new();
    for (setting, now) in settings.iter().zip(&now) {
        ctx.check_shutdown()?;
        let path = args.root.join(&setting.rel);
        let Some(want) = &setting.value else {
            let _ = writeln!(std::io::stdout().lock(), "{} = {now}", setting.rel.display());
            continue;
        };
        if now == want {
            tracing::info!(attribute = %path.display(), action = "unchanged", "{}: unchanged {now}", path.display());
            continue;
        }
        if args.check {
            unsatisfied.push(format!("{} is {now}, wants {want}", path.display()));
            continue;
        }
        if args.dry_run {
            tracing::info!(attribute = %path.display(), action = "would-set", "{}: would set {want} (now {now})", path.display());
            continue;
        }
        match write(&tree, &path, want) {
            Ok(()) => tracing::info!(attribute = %path.display(), action = "set", "{}: set {want} (was {now})", path.display()),
            Err(e) => failures.push(e),
        }
    }
    if !unsatisfied.is_empty() {
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("not satisfied: {}", unsatisfied.join("; ")))
            .with_hint("run `podinit sysfs` with the same settings in a privileged init container, or configure the node"));
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            for e in &failures {
                tracing::error!("{e:#}");
            }
            let kind = if failures.iter().all(|e| e.kind() == Kind::NotPermitted) { Kind::NotPermitted } else { Kind::Failed };
            let first = failures.remove(0);
            Err(Error::new(kind, anyhow::anyhow!("{n} attributes failed; the first: {first}")))
        }
    }
}

/// Writes `value` in one `write(2)` and reads it back.
fn write(tree: &Tree, path: &Path, value: &str) -> Result<(), Error> {
    let written = (|| -> Result<(), Fault> {
        let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
        let line = format!("{value}\n");
        let n = file.write(line.as_bytes())?;
        if n != line.len() {
            return Err(Fault::Other(std::io::Error::other(format!("short write: {n} of {} bytes", line.len()))));
        }
        Ok(())
    })();
    written.map_err(|fault| fault_error(path, "writing", fault))?;
    let text = tree.read_path(path).map_err(|fault| fault_error(path, "reading back", fault))?;
    let after = current(&text);
    if after != value {
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("{}: the kernel took {value} but reads back {after}", path.display())));
    }
    Ok(())
}

/// The error for a fault on one attribute, with its exit code and hint.
fn fault_error(path: &Path, doing: &str, fault: Fault) -> Error {
    match fault {
        Fault::Unknown => Error::new(Kind::Usage, anyhow::anyhow!("{doing} {}: no such attribute", path.display()))
            .with_hint("check the path below /sys (`ls` it on the node); attributes of modules or devices not on this node do not exist"),
        Fault::NotPermitted(e) => Error::new(Kind::NotPermitted, anyhow::anyhow!("{doing} {}: permission denied ({e})", path.display()))
            .with_hint("/sys is read-only in an unprivileged container: give this init container securityContext: {privileged: true, runAsUser: 0}"),
        Fault::Directory => Error::usage(format!("{doing} {}: a directory, not an attribute", path.display())),
        other => Error::new(Kind::Failed, anyhow::anyhow!("{doing} {}: {other}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bracketed_choice_is_the_value() {
        assert_eq!(current("always madvise [never]\n"), "never");
        assert_eq!(current("[always] madvise never\n"), "always");
        assert_eq!(current("1500\n"), "1500");
        assert_eq!(current("  64  \n"), "64");
    }

    #[test]
    fn paths_stay_below_the_root() {
        let sys = Path::new("/sys");
        assert_eq!(
            parse("/sys/kernel/mm/transparent_hugepage/enabled=never", sys).unwrap().rel,
            PathBuf::from("kernel/mm/transparent_hugepage/enabled")
        );
        let host = parse("/host-sys/kernel/mm/transparent_hugepage/enabled= never ", Path::new("/host-sys/")).unwrap();
        assert_eq!((host.rel, host.value.as_deref()), (PathBuf::from("kernel/mm/transparent_hugepage/enabled"), Some("never")));
        assert_eq!(parse("kernel/mm/transparent_hugepage/defrag", sys).unwrap().value, None);
        for bad in ["../etc/passwd=x", "kernel/../../etc=x", "a/./b=1", "=x", "/sys/=x", "a=", "a= ", "a=b\nc"] {
            assert!(parse(bad, sys).is_err(), "{bad}");
        }
    }
}

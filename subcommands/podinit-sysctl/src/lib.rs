//! `podinit sysctl`: set kernel parameters from a privileged init container.
//!
//! Read, compare, write only when different, read back to verify (restoring the old value
//! if the kernel reads back something else). Node-wide limits (`vm.max_map_count`,
//! `fs.inotify.*`, …) are never lowered: other pods on the node rely on them. Pod-scoped
//! keys (`net.*`, `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`) are set exactly.
//!
//! ```yaml
//! initContainers:
//!   - name: sysctl
//!     image: podinit
//!     args: ["sysctl", "vm.max_map_count=262144", "net.core.somaxconn=1024"]
//!     securityContext: { privileged: true, runAsUser: 0 }
//! ```

mod kernel;
mod print;
mod spec;
pub mod sysfs;
mod system;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use podinit_core::retry::{self, Backoff};
use podinit_core::{Context, Error, Kind};

use crate::kernel::{Fault, Tree};
use crate::print::{Print, print_all};
use crate::spec::{Namespaces, Plan, Setting};

/// Set kernel parameters, never lowering node-wide limits; a drop-in for procps' and
/// busybox's sysctl.
///
/// KEY=VALUE sets a key (and prints `key = value`, as procps does), KEY alone prints it. A
/// node-wide limit that is already higher is kept (other pods rely on it) unless
/// --allow-lower. Exit 0 when every key is satisfied, 1 when one failed, 2 for bad input
/// (nothing is written), 77 when /proc/sys is read-only (the container needs privileges).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit sysctl -w vm.max_map_count=262144               raise, never lower (-w optional)
  podinit sysctl net.core.somaxconn=1024 kernel.shmmax=68719476736
  podinit sysctl net.ipv4.conf.eth0/100.rp_filter=1       a VLAN interface eth0.100
  podinit sysctl -p /etc/podinit/sysctl.conf              sysctl.d format (-p alone: /etc/sysctl.conf)
  podinit sysctl --system                                 /etc/sysctl.d, /run/sysctl.d, ... as procps
  podinit sysctl --check vm.max_map_count=262144          unprivileged: is the node ready?

As in procps, -q (no echo of writes) can be combined: -qw, -ew. With -p, every argument is a file.")]
pub struct Args {
    /// KEY=VALUE to set, KEY to print (with -p: FILEs). Separators: net.ipv4.conf.eth0/100.rp_filter
    /// or net/ipv4/conf/eth0.100/rp_filter.
    #[arg(value_name = "KEY[=VALUE]")]
    pub settings: Vec<String>,

    /// Load settings from sysctl.d-format files: FILE, `-` for stdin, /etc/sysctl.conf when
    /// none is given; then every argument is a file too. Repeatable; a later setting wins.
    #[arg(
        short = 'p',
        long = "load",
        value_name = "FILE",
        env = "PODINIT_SYSCTL_LOAD",
        value_delimiter = ',',
        num_args = 0..=1,
        default_missing_value = "/etc/sysctl.conf",
        action = clap::ArgAction::Append
    )]
    pub load: Vec<PathBuf>,

    /// Load the sysctl.d directories as procps does: *.conf of /etc/sysctl.d, /run/sysctl.d,
    /// /usr/local/lib/sysctl.d, /usr/lib/sysctl.d, /lib/sysctl.d (a name in an earlier directory
    /// hides the same name later), in name order, then /etc/sysctl.conf. Unknown keys are skipped.
    #[arg(long, env = "PODINIT_SYSCTL_SYSTEM", value_parser = BoolishValueParser::new())]
    pub system: bool,

    /// Every argument is a KEY=VALUE to write (what KEY=VALUE does anyway; procps' flag).
    #[arg(short = 'w', long = "write")]
    pub write: bool,

    /// Print every key (`-A`, `-X` too); other arguments are ignored.
    #[arg(short = 'a', long = "all", short_aliases = ['A', 'X'])]
    pub all: bool,

    /// Show what would change; write nothing.
    #[arg(long, env = "PODINIT_SYSCTL_DRY_RUN", value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// Write nothing; exit 1 if any key is not satisfied (node-wide limits: at least the value).
    #[arg(long, env = "PODINIT_SYSCTL_CHECK", value_parser = BoolishValueParser::new(), conflicts_with = "dry_run")]
    pub check: bool,

    /// With --check: keep checking until every key is satisfied; exit 124 after --timeout.
    #[arg(long, env = "PODINIT_SYSCTL_WAIT", value_parser = BoolishValueParser::new(), requires = "check")]
    pub wait: bool,

    /// Set node-wide limits to exactly the value even when that lowers them.
    #[arg(long, env = "PODINIT_SYSCTL_ALLOW_LOWER", value_parser = BoolishValueParser::new())]
    pub allow_lower: bool,

    /// Skip unknown keys, as if every line started with `-`.
    #[arg(
        short = 'e',
        long = "ignore",
        alias = "ignore-unknown",
        env = "PODINIT_SYSCTL_IGNORE_UNKNOWN",
        value_parser = BoolishValueParser::new()
    )]
    pub ignore_unknown: bool,

    /// Print values only (reads and the echo of writes).
    #[arg(short = 'n', long = "values")]
    pub values_only: bool,

    /// Print names only.
    #[arg(short = 'N', long = "names", conflicts_with = "values_only")]
    pub names_only: bool,

    /// Print values only, without a newline.
    #[arg(short = 'b', long = "binary")]
    pub binary: bool,

    /// Root of the sysctl tree (tests only).
    #[arg(long, hide = true, env = "PODINIT_SYSCTL_ROOT", default_value = "/proc/sys")]
    pub root: PathBuf,
}

/// Runs `podinit sysctl` to completion, without a Tokio runtime (it starts like busybox).
pub fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let tree = Tree::new(&args.root);
    let print = Print::new(&args, ctx.quiet());
    if args.all {
        return print_all(&tree, &print);
    }
    let settings = collect(ctx, &args, &print)?;
    let work = preflight(&tree, &args, settings)?;
    let namespaces = kernel::namespaces();
    if args.check {
        return check(ctx, &tree, &args, namespaces, &work);
    }
    apply(&tree, &args, &print, namespaces, &work)
}

/// A setting whose key exists and whose value fits it.
#[derive(Debug)]
struct Work {
    setting: Setting,
    /// The value before podinit touched it; `None` for a write-only key.
    current: Option<String>,
    /// Unknown key on a `-` line or with `-e`: report and skip.
    skip: bool,
}

fn collect(ctx: &Context, args: &Args, print: &Print) -> Result<Vec<Setting>, Error> {
    let mut settings = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    if args.system {
        files.extend(system::files(Path::new("/")));
    }
    files.extend(args.load.iter().cloned());
    // procps: with -p, every argument is a file.
    let arguments_are_files = !args.load.is_empty();
    if arguments_are_files {
        files.extend(args.settings.iter().map(PathBuf::from));
    }
    let mut loaded = Vec::with_capacity(files.len());
    for path in &files {
        loaded.push(read_source(ctx, path)?);
    }
    for (name, text) in loaded {
        if args.system {
            print.applying(&name)?;
        }
        let mut parsed = spec::parse_file(&text, &name).map_err(Error::usage)?;
        if args.system {
            // procps: --system skips what this node does not have.
            parsed.iter_mut().for_each(|s| s.ignore_failure = true);
        }
        settings.extend(parsed);
    }
    if !arguments_are_files {
        for (i, arg) in args.settings.iter().enumerate() {
            let setting = spec::parse_arg(arg, format!("argument {}", i + 1)).map_err(Error::usage)?;
            if args.write && setting.value.is_none() {
                return Err(Error::usage(format!("-w: '{arg}' is not KEY=VALUE")).with_hint("to print a key, leave out -w"));
            }
            settings.push(setting);
        }
    }
    if settings.is_empty() {
        let mut err = Error::usage("nothing to do: give KEY=VALUE, KEY, -p FILE, --system or -a");
        if !files.is_empty() {
            err = err.with_hint("the files hold no settings");
        }
        return Err(err);
    }
    // A later setting of the same key wins, as across sysctl.d files.
    let mut deduped: Vec<Setting> = Vec::with_capacity(settings.len());
    for s in settings {
        if let Some(i) = deduped.iter().position(|d| d.key == s.key && d.value.is_some() && s.value.is_some()) {
            tracing::debug!("{}: {} overrides {}", s.key, s.origin, deduped[i].origin);
            deduped.remove(i);
        }
        deduped.push(s);
    }
    Ok(deduped)
}

fn read_source(ctx: &Context, path: &Path) -> Result<(String, String), Error> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        let bytes = read_stdin(ctx).map_err(|e| e.context("reading settings from stdin"))?;
        text = String::from_utf8(bytes).map_err(|_| Error::usage("the settings on stdin are not UTF-8"))?;
        return Ok(("stdin".into(), text));
    }
    let name = path.display().to_string();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .with_context(|| format!("reading --load {name}"))
        .map_err(|e| Error::new(Kind::Usage, e).with_hint("mount the file (e.g. from a ConfigMap) at that path"))?;
    Ok((name, text))
}

/// All of stdin, waiting for it with `poll` in short slices so that SIGTERM and `--timeout`
/// end a wait for a writer that never closes it.
fn read_stdin(ctx: &Context) -> Result<Vec<u8>, Error> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd as _;
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        ctx.check_shutdown()?;
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(Error::new(Kind::Usage, anyhow::anyhow!("waiting for stdin: {}", e.desc()))),
        }
        match lock.read(&mut buf) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::new(Kind::Usage, anyhow::anyhow!("{}", podinit_core::redact::io_reason(&e)))),
        }
    }
}

/// Checks every setting before anything is written: a bad key or value anywhere means no
/// write at all (exit 2).
fn preflight(tree: &Tree, args: &Args, settings: Vec<Setting>) -> Result<Vec<Work>, Error> {
    let mut work = Vec::with_capacity(settings.len());
    for setting in settings {
        let key = &setting.key;
        let current = match tree.read(key) {
            Ok(v) => Some(v),
            Err(Fault::Unknown) if setting.ignore_failure || args.ignore_unknown => {
                work.push(Work { setting, current: None, skip: true });
                continue;
            }
            Err(Fault::Unknown) => {
                return Err(Error::usage(format!("{}: unknown key '{key}' (no {})", setting.origin, tree.path(key).display())).with_hint(
                    "check the spelling; keys of modules not loaded on this node, or of interfaces not in this pod, do not exist; \
                     in a sysctl.d file a leading '-' makes a key optional",
                ));
            }
            Err(Fault::Directory) => {
                return Err(Error::usage(format!("{}: '{key}' is a directory of keys, not a key", setting.origin)));
            }
            // A write-only key (vm.drop_caches): it exists; there is nothing to compare, and
            // (as procps) nothing to print.
            Err(Fault::NotPermitted(_)) if tree.is_write_only(key) => {
                if setting.value.is_none() {
                    continue;
                }
                None
            }
            Err(fault @ Fault::NotPermitted(_)) => return Err(not_permitted(format!("reading {key}: {fault}"))),
            Err(fault) => return Err(Error::new(Kind::Failed, anyhow::anyhow!("reading {key}: {fault}"))),
        };
        if let (Some(cur), Some(want)) = (&current, &setting.value) {
            spec::check_value_kind(cur, want).map_err(|e| Error::usage(format!("{}: {key}: {e}", setting.origin)))?;
        }
        work.push(Work { setting, current, skip: false });
    }
    Ok(work)
}

fn not_permitted(message: String) -> Error {
    Error::new(Kind::NotPermitted, anyhow::anyhow!(message))
        .with_hint("/proc/sys is read-only in an unprivileged container: give this init container securityContext: {privileged: true, runAsUser: 0}")
        .with_hint("pod-scoped keys (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*) can instead go in the pod's securityContext.sysctls, without privileges")
}

/// What happened to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Unchanged,
    Changed,
    Kept,
    WouldChange,
    Skipped,
    Failed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Changed => "changed",
            Self::Kept => "kept",
            Self::WouldChange => "would change",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

fn apply(tree: &Tree, args: &Args, print: &Print, namespaces: Namespaces, work: &[Work]) -> Result<(), Error> {
    let mut counts = [0usize; 6];
    let mut failures: Vec<(String, Kind)> = Vec::new();
    for w in work {
        let key = &w.setting.key;
        let scope = namespaces.scope(key);
        if w.skip {
            tracing::info!(key = %key, scope = scope.as_str(), action = "skipped", "{key}: skipped: unknown key ({})", w.setting.origin);
            counts[Action::Skipped as usize] += 1;
            continue;
        }
        let Some(wanted) = &w.setting.value else {
            // Read now, not at preflight: `KEY=VALUE KEY` prints the value just set.
            match tree.read_raw(key) {
                Ok(raw) => print.read(key, &raw)?,
                Err(fault) => {
                    tracing::error!(key = %key, action = "failed", "{key}: failed: reading: {fault}");
                    failures.push((format!("{key} (reading: {fault})"), Kind::Failed));
                }
            }
            continue;
        };
        let action = match set_one(tree, args, namespaces, w, wanted) {
            Ok(action) => action,
            Err(fault) if w.setting.ignore_failure => {
                tracing::warn!(key = %key, action = "skipped", error = %fault.message(), "{key}: skipped: {} (ignored: '-' line)", fault.message());
                Action::Skipped
            }
            Err(fault) => {
                tracing::error!(key = %key, scope = scope.as_str(), action = "failed", "{key}: failed: {}", fault.message());
                failures.push((format!("{key} ({})", fault.message()), fault.kind()));
                Action::Failed
            }
        };
        if action != Action::Failed && action != Action::Skipped {
            // As procps: `key = value` for every setting it made (here also kept), the value
            // the kernel now holds.
            let now = if action == Action::WouldChange || print.quiet() { None } else { tree.read(key).ok() };
            print.wrote(key, now.as_deref().unwrap_or(wanted))?;
        }
        counts[action as usize] += 1;
    }
    summarize(&counts);
    if failures.is_empty() {
        return Ok(());
    }
    let total = work.len();
    let names: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    let message = format!("{} of {total} keys failed: {}", failures.len(), names.join(", "));
    if failures.iter().any(|(_, k)| *k == Kind::NotPermitted) {
        Err(not_permitted(message))
    } else {
        Err(Error::new(Kind::Failed, anyhow::anyhow!(message)))
    }
}

/// A failure on one key, kept apart so the other keys still get applied.
#[derive(Debug)]
struct KeyFault(Kind, String);

impl KeyFault {
    fn kind(&self) -> Kind {
        self.0
    }
    fn message(&self) -> &str {
        &self.1
    }
}

fn set_one(tree: &Tree, args: &Args, namespaces: Namespaces, w: &Work, wanted: &str) -> Result<Action, KeyFault> {
    let key = &w.setting.key;
    let scope = namespaces.scope(key);
    let limit = key.is_limit();
    let node_note = if scope.is_node() { format!(" ({}, stays after this pod ends)", scope.why()) } else { String::new() };
    let plan = match &w.current {
        Some(cur) => spec::plan(scope, limit, cur, wanted, args.allow_lower),
        None => Plan::Write(wanted.to_owned()),
    };
    let old = w.current.as_deref().map_or_else(|| "(write-only)".to_owned(), spec::normalize);
    let asked = spec::normalize(wanted);
    let value = match plan {
        Plan::Unchanged => {
            tracing::info!(key = %key, scope = scope.as_str(), action = "unchanged", value = %old, "{key}: unchanged {old}");
            return Ok(Action::Unchanged);
        }
        Plan::KeepHigher => {
            tracing::info!(key = %key, scope = scope.as_str(), action = "kept", value = %old, wanted = %asked,
                "{key}: kept {old}, not lower than {asked} ({}: other pods may rely on it; --allow-lower forces {asked})", scope.why());
            return Ok(Action::Kept);
        }
        Plan::Write(value) => value,
    };
    let new = spec::normalize(&value);
    let merged = if new == asked { String::new() } else { format!(" (asked {asked}; fields already higher are kept)") };
    if args.dry_run {
        tracing::info!(key = %key, scope = scope.as_str(), action = "would-change", old = %old, new = %new, "{key}: would change {old} → {new}{merged}{node_note}");
        return Ok(Action::WouldChange);
    }
    let satisfied = |now: &str| !matches!(spec::plan(scope, limit, now, wanted, args.allow_lower), Plan::Write(_));
    if let Err(fault) = tree.write(key, &value) {
        let now = tree.read(key);
        // Another pod may have raced us to the same value: then all is well.
        if let (Fault::NotPermitted(_), Ok(now)) = (&fault, &now)
            && satisfied(now)
        {
            tracing::info!(key = %key, scope = scope.as_str(), action = "unchanged", value = %now, "{key}: unchanged {now} (set meanwhile by someone else)");
            return Ok(Action::Unchanged);
        }
        // A failed write may still have changed the key (a short write takes the first
        // fields): put the old value back.
        let restored = restore(tree, key, w.current.as_deref(), now.ok().as_deref());
        let kind = if matches!(fault, Fault::NotPermitted(_)) { Kind::NotPermitted } else { Kind::Failed };
        return Err(KeyFault(kind, format!("writing {new}: {fault}{restored}")));
    }
    let after = tree.read(key).map_err(|f| KeyFault(Kind::Failed, format!("reading back after the write: {f}")))?;
    if w.current.is_none() || spec::same_value(&after, &value) || satisfied(&after) {
        tracing::info!(key = %key, scope = scope.as_str(), action = "changed", old = %old, new = %new, "{key}: changed {old} → {new}{merged}{node_note}");
        return Ok(Action::Changed);
    }
    let restored = restore(tree, key, w.current.as_deref(), Some(&after));
    Err(KeyFault(Kind::Failed, format!("the kernel took {new} but reads back {}{restored}", spec::normalize(&after))))
}

/// Puts `old` back when the key now reads something else; says what happened.
fn restore(tree: &Tree, key: &spec::Key, old: Option<&str>, now: Option<&str>) -> &'static str {
    match (old, now) {
        (Some(old), Some(now)) if !spec::same_value(old, now) => {
            if tree.write(key, old).is_ok() {
                "; the old value was restored"
            } else {
                "; the old value could not be restored"
            }
        }
        _ => "",
    }
}

/// `--wait`: `once` until it succeeds, with growing pauses (200 ms to 5 s, jittered); past
/// `--timeout` exit 124 with the last error, on SIGTERM 143.
fn wait_until(ctx: &Context, once: impl Fn() -> anyhow::Result<()>) -> Result<(), Error> {
    let backoff = Backoff {
        initial: std::time::Duration::from_millis(200),
        max: std::time::Duration::from_secs(5),
        attempt_timeout: None,
        growth: retry::Growth::Doubling,
    };
    let mut jitter = retry::Jitter::new();
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let err = match once() {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        if attempt == 1 {
            tracing::info!("waiting for sysctl values: not yet: {err:#}");
        }
        if let Err(stop) = ctx.sleep_blocking(backoff.delay(attempt, started.elapsed(), &mut jitter)) {
            if stop.kind() != Kind::Timeout {
                return Err(stop);
            }
            let elapsed = humantime::format_duration(std::time::Duration::from_millis(ctx.started().elapsed().as_millis() as u64));
            let limit = ctx.timeout().map_or_else(String::new, |t| format!(" (--timeout {})", humantime::format_duration(t)));
            return Err(Error::new(
                Kind::Timeout,
                err.context(format!("waiting for sysctl values: gave up after {attempt} attempts in {elapsed}{limit}; last error")),
            )
            .with_hint("raise --timeout (PODINIT_TIMEOUT) if the node is only slow to be configured"));
        }
    }
}

fn summarize(counts: &[usize; 6]) {
    let order = [Action::Changed, Action::WouldChange, Action::Kept, Action::Unchanged, Action::Skipped, Action::Failed];
    let total: usize = counts.iter().sum();
    if total == 0 {
        return;
    }
    let parts: Vec<String> =
        order.iter().filter(|a| counts[**a as usize] > 0).map(|a| format!("{} {}", counts[*a as usize], a.as_str())).collect();
    tracing::info!(
        changed = counts[Action::Changed as usize],
        would_change = counts[Action::WouldChange as usize],
        kept = counts[Action::Kept as usize],
        unchanged = counts[Action::Unchanged as usize],
        skipped = counts[Action::Skipped as usize],
        failed = counts[Action::Failed as usize],
        "{total} {}: {}",
        if total == 1 { "key" } else { "keys" },
        parts.join(", ")
    );
}

/// `--check`: compare without writing; with `--wait`, keep comparing until satisfied.
fn check(ctx: &Context, tree: &Tree, args: &Args, namespaces: Namespaces, work: &[Work]) -> Result<(), Error> {
    let once = || -> anyhow::Result<()> {
        let mut unsatisfied = Vec::new();
        for w in work.iter().filter(|w| !w.skip) {
            let (key, Some(wanted)) = (&w.setting.key, &w.setting.value) else { continue };
            let now = tree.read(key).map_err(|f| anyhow::anyhow!("reading {key}: {f}"))?;
            let (scope, limit) = (namespaces.scope(key), key.is_limit());
            if !spec::satisfies(scope, limit, &now, wanted, args.allow_lower) {
                let how = if scope.is_node() && limit && !args.allow_lower { "at least " } else { "" };
                unsatisfied.push(format!("{key} is {}, wants {how}{}", spec::normalize(&now), spec::normalize(wanted)));
            } else {
                tracing::debug!(key = %key, action = "satisfied", "{key}: satisfied by {}", spec::normalize(&now));
            }
        }
        if unsatisfied.is_empty() { Ok(()) } else { anyhow::bail!("{}", unsatisfied.join("; ")) }
    };
    let result = if args.wait { wait_until(ctx, once) } else { once().map_err(Error::from) };
    match result {
        Ok(()) => {
            let n = work.iter().filter(|w| w.setting.value.is_some() && !w.skip).count();
            tracing::info!(satisfied = n, "{n} {} satisfied", if n == 1 { "key" } else { "keys" });
            Ok(())
        }
        Err(err) if err.kind() == Kind::Failed => Err(err
            .context("not satisfied")
            .with_hint("run `podinit sysctl` with the same settings in a privileged init container, or configure the node")),
        Err(err) => Err(err),
    }
}

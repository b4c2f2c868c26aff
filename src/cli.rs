//! The command line of the multi-call binary: `podinit [OPTIONS] <APPLET> …`, the same
//! through a link named after the applet, `--list` and `--install`.
//!
//! Parse failures are turned into the exit-status contract here: 127 for an unknown
//! applet, 2 for any other usage error, each as one `podinit <applet>: error: …` line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use podinit_core::args::LogFormat;
use podinit_core::{Error, GlobalArgs, Kind};

use crate::applets::{self, Applet};

/// `0.1.0 (x86_64)`: the version and the architecture the binary was built for.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PODINIT_ARCH"), ")");

/// One small static binary for the jobs Kubernetes init containers do.
///
/// Run an applet as `podinit <APPLET> …`, or through a link named after it (see --install).
/// Every applet exits 0 on success (also when there was nothing to do), 1 when the job
/// failed, 2 on bad input, 77 without the privileges it needs, 124 when --timeout passed,
/// 143 when stopped by SIGTERM; 127 for an unknown applet.
#[derive(Debug, clap::Parser)]
#[command(name = "podinit", version = VERSION, arg_required_else_help = true, subcommand_value_name = "APPLET", subcommand_help_heading = "Applets")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    /// Print the applets compiled into this binary, one per line.
    #[arg(long, exclusive = true, help_heading = "Multi-call")]
    pub(crate) list: bool,

    /// `--install [-s] DIR`: create a link named after each applet in DIR, pointing at this
    /// binary (hard links; symbolic with -s). DIR is created if missing; a link to podinit
    /// is replaced atomically, anything else of that name kept (see --force).
    #[arg(long, value_name = "DIR", conflicts_with = "list", help_heading = "Multi-call")]
    pub(crate) install: Option<PathBuf>,

    /// With --install: symbolic links instead of hard links.
    #[arg(short = 's', long, requires = "install", help_heading = "Multi-call")]
    pub(crate) symlink: bool,

    /// With --install: only these applets (comma-separated), e.g. `wait-for` in an app image.
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "install", help_heading = "Multi-call")]
    pub(crate) applets: Vec<String>,

    /// With --install: replace a file of an applet's name that is not already podinit (by
    /// default it is kept, so an app image's own `cp` or `chown` is never shadowed).
    #[arg(long, requires = "install", help_heading = "Multi-call")]
    pub(crate) force: bool,

    /// Run the steps listed in this YAML file (e.g. from a ConfigMap) in order, stopping at
    /// the first failure. On the command line, separate steps with `&&` instead:
    /// `podinit sysctl vm.max_map_count=262144 '&&' wait-for tcp://db:5432`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["list", "install"], help_heading = "Multi-call")]
    pub(crate) steps: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) applet: Option<Applet>,
}

/// busybox-style dispatch: a binary invoked as `wait-for` (or `-wait-for`) runs as
/// `podinit wait-for`. Any other name (`podinit`, `podinit-x86_64`) is the multiplexer.
pub(crate) fn rewrite_argv0(mut argv: Vec<OsString>) -> Result<Vec<OsString>, Error> {
    let Some(first) = argv.first() else { return Ok(vec!["podinit".into()]) };
    let base = Path::new(first).file_name().unwrap_or(first.as_os_str()).to_string_lossy().into_owned();
    let name = base.strip_prefix('-').unwrap_or(&base);
    if applets::COMPILED.contains(&name) {
        argv[0] = OsString::from(name);
        argv.insert(0, "podinit".into());
    } else if applets::ALL.contains(&name) {
        return Err(not_in_build(name));
    }
    Ok(argv)
}

fn not_in_build(name: &str) -> Error {
    Error::new(Kind::NotFound, anyhow::anyhow!("applet '{name}' is not compiled into this build"))
        .with_hint("use the full podinit image, or rebuild with --features ".to_owned() + name)
}

/// busybox's `--install [-s] DIR` takes `-s` before DIR, which a clap option value cannot:
/// this rewrites it to `--install DIR -s` before parsing.
pub(crate) fn reorder_install(mut argv: Vec<OsString>) -> Vec<OsString> {
    if let Some(i) = argv.iter().position(|a| a == "--install")
        && argv.get(i + 1).is_some_and(|a| a == "-s" || a == "--symlink")
    {
        let flag = argv.remove(i + 1);
        argv.push(flag);
    }
    argv
}

/// The applet named on a command line, for the prefix of a usage error.
pub(crate) fn applet_in(argv: &[OsString]) -> &'static str {
    applets::named_in(argv).unwrap_or("")
}

/// What to do with a parse failure: print help/version (exit 0), or a usage error.
pub(crate) enum ParseFailure {
    /// Help or version was printed; exit with this code.
    Printed(u8),
    /// A usage error to report.
    Usage(Error),
}

pub(crate) fn classify(err: &clap::Error, argv: &[OsString]) -> ParseFailure {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ParseFailure::Printed(0)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ParseFailure::Printed(Kind::Usage.exit_code())
        }
        ErrorKind::InvalidSubcommand => {
            let given = err.get(clap::error::ContextKind::InvalidSubcommand).map(ToString::to_string).unwrap_or_default();
            if applets::ALL.contains(&given.as_str()) {
                return ParseFailure::Usage(not_in_build(&given));
            }
            ParseFailure::Usage(
                Error::new(Kind::NotFound, anyhow::anyhow!("unknown applet '{given}'"))
                    .with_hint(format!("applets in this build: {}", applets::COMPILED.join(", "))),
            )
        }
        _ => {
            let rendered = err.render().to_string();
            let mut lines = rendered.lines().filter(|l| !l.trim().is_empty()).peekable();
            let first = lines.next().unwrap_or("invalid arguments");
            let mut first = first.strip_prefix("error: ").unwrap_or(first).to_owned();
            // "the following required arguments were not provided:" lists them on the next,
            // indented lines: keep the message on one line.
            if first.ends_with(':') {
                let mut items = Vec::new();
                while let Some(item) = lines.next_if(|l| l.starts_with(' ')) {
                    items.push(item.trim().to_owned());
                }
                first = format!("{first} {}", items.join(", "));
            }
            let mut error = Error::usage(first);
            for line in lines {
                if let Some(tip) = line.trim().strip_prefix("tip: ") {
                    error = error.with_hint(tip.to_owned());
                }
            }
            let applet = applet_in(argv);
            let help = if applet.is_empty() { "podinit --help".to_owned() } else { format!("podinit {applet} --help") };
            ParseFailure::Usage(error.with_hint(format!("'{help}' lists the options")))
        }
    }
}

/// The settings that say how to report a command line that did not parse, found one by one:
/// `--termination-log` and `--log-format` (before `--`), else their `PODINIT_…` variables.
/// One bad global flag or variable (`--timeout 300000000000y`) makes clap refuse them all,
/// yet the usage error must still reach the termination message the pod asked for.
pub(crate) fn lenient_global(argv: &[OsString]) -> GlobalArgs {
    let flag = |name: &str| -> Option<OsString> {
        let mut args = argv.iter().skip(1).take_while(|a| *a != "--");
        let mut found = None;
        while let Some(arg) = args.next() {
            if arg == name {
                found = args.next().cloned();
            } else if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix(name)).and_then(|r| r.strip_prefix('=')) {
                found = Some(value.into());
            }
        }
        found
    };
    #[expect(clippy::disallowed_methods, reason = "clap refused the settings as a whole; these two are read alone")]
    let env = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    let termination_log = flag("--termination-log").or_else(|| env("PODINIT_TERMINATION_LOG")).map(PathBuf::from);
    let log_format = flag("--log-format")
        .or_else(|| env("PODINIT_LOG_FORMAT"))
        .and_then(|v| <LogFormat as clap::ValueEnum>::from_str(&v.to_string_lossy(), true).ok())
        .unwrap_or_default();
    GlobalArgs { termination_log, log_format, ..GlobalArgs::default() }
}

/// `podinit --version` (or `-V`) and nothing else: the line clap would print, without building
/// the parser of every applet first (a third of a start's instructions; a unit test checks the
/// line is clap's).
pub(crate) fn version_only(argv: &[OsString]) -> Option<String> {
    match argv {
        [_, flag] if flag == "--version" || flag == "-V" => Some(format!("podinit {VERSION}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_fast_path_prints_what_clap_prints() {
        use clap::CommandFactory as _;
        let clap_says = Cli::command().render_version();
        assert_eq!(version_only(&argv(&["podinit", "--version"])).map(|v| v + "\n"), Some(clap_says.clone()));
        assert_eq!(version_only(&argv(&["podinit", "-V"])).map(|v| v + "\n"), Some(clap_says));
        assert_eq!(version_only(&argv(&["podinit", "sysctl", "--version"])), None);
        assert_eq!(version_only(&argv(&["podinit", "--version", "x"])), None);
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn links_named_after_an_applet_run_it() {
        assert_eq!(rewrite_argv0(argv(&["/usr/bin/sysctl", "-n", "x"])).unwrap(), argv(&["podinit", "sysctl", "-n", "x"]));
        assert_eq!(rewrite_argv0(argv(&["-sysctl"])).unwrap(), argv(&["podinit", "sysctl"]));
        assert_eq!(rewrite_argv0(argv(&["./podinit", "sysctl"])).unwrap(), argv(&["./podinit", "sysctl"]));
        assert_eq!(rewrite_argv0(argv(&["podinit-x86_64", "sysctl"])).unwrap(), argv(&["podinit-x86_64", "sysctl"]));
        assert_eq!(rewrite_argv0(argv(&[])).unwrap(), argv(&["podinit"]));
    }

    #[test]
    fn a_command_line_that_does_not_parse_still_says_where_to_report() {
        let g =
            lenient_global(&argv(&["podinit", "--timeout", "300000000000y", "--termination-log", "/t/m", "sysctl", "--log-format=json"]));
        assert_eq!(g.termination_log.as_deref(), Some(Path::new("/t/m")));
        assert_eq!(g.log_format, LogFormat::Json);
        // After `--` it is the exec'd command's.
        let g = lenient_global(&argv(&["podinit", "wait-for", "x", "--", "app", "--termination-log", "/no"]));
        assert_eq!(g.termination_log, None);
    }

    #[test]
    fn install_takes_s_before_dir() {
        assert_eq!(reorder_install(argv(&["podinit", "--install", "-s", "/bin"])), argv(&["podinit", "--install", "/bin", "-s"]));
        assert_eq!(reorder_install(argv(&["podinit", "--install", "/bin"])), argv(&["podinit", "--install", "/bin"]));
    }

    #[test]
    fn every_applets_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        // Clashing flags (`-h` for help and for chown's --no-dereference) panic here, not in a pod.
        Cli::command().debug_assert();
    }

    #[test]
    fn a_parser_with_one_applet_parses_as_the_whole_one() {
        let parse = |args: &[&str]| applets::parse_only::<Cli>(&argv(args)).map(|cli| cli.applet.map(|a| a.name()));
        let first = applets::COMPILED[0];
        assert_eq!(parse(&["podinit", first, "--help"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
        // An option's value that is an applet's name: the narrow parse fails, the whole one not.
        let last = applets::COMPILED[applets::COMPILED.len() - 1];
        if first != last {
            assert_eq!(parse(&["podinit", "--termination-log", first, last, "--help"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
        }
        assert_eq!(parse(&["podinit", "frobnicate"]).unwrap_err().kind(), ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn compiled_applets_are_the_parsers_and_known() {
        use clap::CommandFactory as _;
        let parsed: Vec<String> = Cli::command().get_subcommands().map(|c| c.get_name().to_owned()).filter(|n| n != "help").collect();
        assert_eq!(parsed, applets::COMPILED, "applets::COMPILED must list the Applet variants, in order");
        for name in applets::COMPILED {
            assert!(applets::ALL.contains(name), "{name} is missing from applets::ALL");
        }
    }
}

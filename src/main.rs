//! Entry point of the `podinit` multi-call binary.
//!
//! Only process plumbing lives here: argument dispatch, logging, the runtime, signals, and
//! turning the outcome into an exit status. Nothing else ends the process.

mod applets;
mod cli;
mod install;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use podinit_core::{Context, Error, GlobalArgs, Kind, logging, termination};

/// How long an applet gets to clean up (release locks, remove temp files) after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let argv = match cli::rewrite_argv0(std::env::args_os().collect()) {
        Ok(argv) => cli::reorder_install(argv),
        Err(err) => return fail("", &GlobalArgs::default(), &err),
    };
    let cli = match cli::Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(err) => {
            return match cli::classify(&err, &argv) {
                cli::ParseFailure::Printed(code) => ExitCode::from(code),
                cli::ParseFailure::Usage(usage) => fail(cli::applet_in(&argv), &fallback_global(), &usage),
            };
        }
    };
    if cli.list {
        return print_lines(applets::COMPILED);
    }
    if let Some(dir) = &cli.install {
        logging::init("", &cli.global);
        return match install::install(dir, cli.symlink, applets::COMPILED) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail("", &cli.global, &err),
        };
    }
    let Some(applet) = cli.applet else {
        // Unreachable with arg_required_else_help, but a usage error all the same.
        return fail("", &cli.global, &Error::usage("no applet given"));
    };
    let name = applet.name();
    logging::init(name, &cli.global);
    let runtime = match runtime(applet.multi_threaded()) {
        Ok(rt) => rt,
        Err(io) => return fail(name, &cli.global, &Error::new(Kind::Failed, anyhow::Error::new(io).context("starting the runtime"))),
    };
    let outcome = runtime.block_on(async {
        let ctx = Context::new(name, &cli.global);
        let run = applet.run(&ctx);
        tokio::pin!(run);
        tokio::select! {
            outcome = &mut run => outcome,
            signal = ctx.shutdown_requested() => {
                tracing::warn!("{signal} received: stopping");
                // The applet sees the signal too; give it a moment to clean up.
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut run).await;
                Err(podinit_core::context::interrupted(signal))
            }
        }
    });
    // Do not wait for blocking tasks an interrupted applet may have left behind.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(name, &cli.global, &err),
    }
}

/// A thread per core for applets that want it (only builds with such an applet link the
/// multi-threaded scheduler); one thread otherwise.
fn runtime(multi_threaded: bool) -> std::io::Result<tokio::runtime::Runtime> {
    #[cfg(feature = "s3-get")]
    if multi_threaded {
        return tokio::runtime::Builder::new_multi_thread().enable_all().build();
    }
    let _ = multi_threaded;
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Reports `err` on stderr and in the termination message; returns its exit status.
fn fail(applet: &'static str, global: &GlobalArgs, err: &Error) -> ExitCode {
    logging::init(applet, global);
    logging::report_error(err);
    termination::write(global.termination_log.as_deref(), applet, err);
    ExitCode::from(err.kind().exit_code())
}

/// Global settings when the command line itself did not parse: the environment still
/// says where the termination message goes and how to log.
fn fallback_global() -> GlobalArgs {
    #[derive(clap::Parser)]
    struct EnvOnly {
        #[command(flatten)]
        global: GlobalArgs,
    }
    EnvOnly::try_parse_from(["podinit"]).map(|e| e.global).unwrap_or_default()
}

fn print_lines(lines: &[&str]) -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return ExitCode::from(Kind::Failed.exit_code());
        }
    }
    ExitCode::SUCCESS
}

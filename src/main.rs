//! Entry point of the `podinit` multi-call binary.
//!
//! Only process plumbing lives here: argument dispatch, logging, the runtime, signals, and
//! turning the outcome into an exit status. Nothing else ends the process.

mod applets;
mod cli;
mod install;
mod steps;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use podinit_core::{Context, Error, GlobalArgs, Kind, logging, termination};

use crate::applets::Runtime;

/// How long an applet gets to clean up (release locks, remove temp files) after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let argv = match cli::rewrite_argv0(std::env::args_os().collect()) {
        Ok(argv) => cli::reorder_install(argv),
        Err(err) => return fail("", &GlobalArgs::default(), &err),
    };
    if let Some(version) = cli::version_only(&argv) {
        return print_lines(&[&version]);
    }
    match steps::split(&argv) {
        Ok(Some(steps)) => return run_steps(&steps),
        Ok(None) => {}
        Err(err) => return fail("", &fallback_global(), &err),
    }
    let cli = match parse(&argv) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.list {
        return print_lines(applets::COMPILED);
    }
    if let Some(dir) = &cli.install {
        logging::init("", &cli.global);
        let names: Vec<&str> =
            if cli.applets.is_empty() { applets::COMPILED.to_vec() } else { cli.applets.iter().map(String::as_str).collect() };
        if let Some(unknown) = names.iter().find(|n| !applets::COMPILED.contains(n)) {
            let err = Error::usage(format!("--applets: '{unknown}' is not an applet of this build"))
                .with_hint(format!("applets in this build: {}", applets::COMPILED.join(", ")));
            return fail("", &cli.global, &err);
        }
        return match install::install(dir, cli.symlink, cli.force, &names) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail("", &cli.global, &err),
        };
    }
    if let Some(file) = &cli.steps {
        if let Some(applet) = &cli.applet {
            let err = Error::usage(format!("--steps and the applet '{}' both name what to run", applet.name()))
                .with_hint("list the applet as a step in the file, or drop --steps");
            return fail("", &cli.global, &err);
        }
        return match steps::from_file(file, &argv) {
            Ok(steps) => run_steps(&steps),
            Err(err) => fail("", &cli.global, &err),
        };
    }
    let Some(applet) = cli.applet else {
        // Unreachable with arg_required_else_help, but a usage error all the same.
        return fail("", &cli.global, &Error::usage("no applet given"));
    };
    run(vec![(None, applet, cli.global)])
}

/// Parses one command line; on failure, reports it and returns the exit status.
fn parse(argv: &[OsString]) -> Result<cli::Cli, ExitCode> {
    applets::parse_only::<cli::Cli>(argv).map_err(|err| match cli::classify(&err, argv) {
        cli::ParseFailure::Printed(code) => ExitCode::from(code),
        cli::ParseFailure::Usage(usage) => fail(cli::applet_in(argv), &fallback_global(), &usage),
    })
}

/// Parses every step, then runs them. A step that does not parse fails the run before any
/// step has run, naming the step.
fn run_steps(steps: &[steps::Step]) -> ExitCode {
    let mut plan = Vec::with_capacity(steps.len());
    for step in steps {
        let in_step = |err: Error| {
            let applet = cli::applet_in(&step.argv);
            fail(applet, &fallback_global(), &err.context(step.label()))
        };
        let cli = match applets::parse_only::<cli::Cli>(&step.argv) {
            Ok(cli) => cli,
            Err(err) => {
                return match cli::classify(&err, &step.argv) {
                    cli::ParseFailure::Printed(code) => ExitCode::from(code),
                    cli::ParseFailure::Usage(usage) => in_step(usage),
                };
            }
        };
        let applet = match cli.applet {
            Some(applet) if !cli.list && cli.install.is_none() && cli.steps.is_none() => applet,
            _ => return in_step(Error::usage("a step is an applet and its arguments, not --list, --install or --steps")),
        };
        plan.push((Some(step), applet, cli.global));
    }
    run(plan)
}

/// Runs the applets in order; the first failure ends the run with its exit status. With more
/// than one step, each is logged and a failure names its step. A Tokio runtime is built only
/// when a step needs one (current-thread unless a step wants a thread per core); `blocking`
/// applets run without it.
fn run(plan: Vec<(Option<&steps::Step>, applets::Applet, GlobalArgs)>) -> ExitCode {
    let Some((_, first, first_global)) = plan.first() else { return ExitCode::SUCCESS };
    logging::init(first.name(), first_global);
    let needs = plan.iter().map(|(_, applet, _)| applet.runtime()).max().unwrap_or(Runtime::Blocking);
    let runtime = match needs {
        Runtime::Blocking => None,
        needs => match runtime(needs) {
            Ok(rt) => Some(rt),
            Err(io) => {
                let err = Error::new(Kind::Failed, anyhow::Error::new(io).context("starting the runtime"));
                return fail(first.name(), first_global, &err);
            }
        },
    };
    let mut outcome = Ok(());
    for (step, applet, global) in plan {
        let name = applet.name();
        // Each step logs as its own options say (options before the first applet are in every
        // step's); its --timeout counts from its own start.
        logging::init(name, &global);
        let started = std::time::Instant::now();
        if let Some(step) = step {
            tracing::info!("{} started", step.label());
        }
        let result = match applet.run_blocking(&global) {
            Ok(result) => result,
            Err(applet) => match &runtime {
                Some(rt) => rt.block_on(run_applet(*applet, &global)),
                None => Err(Error::new(Kind::Failed, anyhow::anyhow!("{name} needs a runtime and none was built"))),
            },
        };
        if let Err(err) = result {
            let err = match step {
                Some(step) => err.context(step.label()),
                None => err,
            };
            outcome = Err((name, global, err));
            break;
        }
        if let Some(step) = step {
            tracing::info!("{} done in {:.1?}", step.label(), started.elapsed());
        }
    }
    // Do not wait for blocking tasks an interrupted applet may have left behind.
    if let Some(rt) = runtime {
        rt.shutdown_background();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((name, global, err)) => fail(name, &global, &err),
    }
}

/// Runs one async applet to completion, or until SIGTERM/SIGINT plus a grace period for
/// cleanup.
async fn run_applet(applet: applets::Applet, global: &GlobalArgs) -> Result<(), Error> {
    let ctx = Context::new(applet.name(), global);
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
}

/// A thread per core for applets that want it (only builds with such an applet link the
/// multi-threaded scheduler); one thread otherwise.
fn runtime(needs: Runtime) -> std::io::Result<tokio::runtime::Runtime> {
    #[cfg(any(feature = "s3-get", feature = "http-get"))]
    if needs == Runtime::Multi {
        return tokio::runtime::Builder::new_multi_thread().enable_all().build();
    }
    let _ = needs;
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Reports `err` on stderr and in the termination message; returns its exit status.
fn fail(applet: &'static str, global: &GlobalArgs, err: &Error) -> ExitCode {
    logging::init(applet, global);
    logging::report_error(err);
    termination::write(global.termination_log.as_deref(), applet, err);
    ExitCode::from(err.kind().exit_code())
}

/// Global settings when the command line itself did not parse: what of them still parses
/// (see [`cli::lenient_global`]) says where the termination message goes and how to log.
fn fallback_global() -> GlobalArgs {
    cli::lenient_global(&std::env::args_os().collect::<Vec<_>>())
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

//! [`Context`]: what the process hands every applet.
//!
//! It carries the overall deadline (`--timeout`, counted from process start), the shutdown
//! signal (SIGTERM from the kubelet, SIGINT from a terminal), and the progress mode. Every
//! wait in the product goes through [`Context::sleep`] or [`crate::retry`], so a deadline or
//! a signal ends it promptly and with the right exit status.

use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::watch;

use crate::args::{GlobalArgs, ProgressArg};
use crate::error::{Error, Kind};
use crate::progress::{Progress, ProgressMode, Unit};

/// The applet's view of the process: deadline, shutdown, progress.
#[derive(Debug)]
pub struct Context {
    applet: &'static str,
    started: Instant,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    shutdown: watch::Receiver<Option<&'static str>>,
    progress: ProgressMode,
    quiet: bool,
}

impl Context {
    /// A context for `applet`, listening for SIGTERM and SIGINT.
    ///
    /// Must be called inside a Tokio runtime with signals and timers enabled.
    pub fn new(applet: &'static str, args: &GlobalArgs) -> Self {
        let (tx, rx) = watch::channel(None);
        spawn_signal_listener(tx);
        Self::with_shutdown(applet, args, rx)
    }

    fn with_shutdown(applet: &'static str, args: &GlobalArgs, shutdown: watch::Receiver<Option<&'static str>>) -> Self {
        let started = Instant::now();
        let progress = if args.quiet {
            ProgressMode::Off
        } else {
            match args.progress {
                ProgressArg::Auto => ProgressMode::detect(),
                ProgressArg::Bar => ProgressMode::Bar,
                ProgressArg::Log => ProgressMode::Log,
                ProgressArg::Off => ProgressMode::Off,
            }
        };
        Self {
            applet,
            started,
            timeout: args.timeout,
            deadline: args.timeout.and_then(|t| started.checked_add(t)),
            shutdown,
            progress,
            quiet: args.quiet,
        }
    }

    /// A context with no signal listener, for tests: `shutdown` can trigger it instead.
    #[doc(hidden)]
    pub fn for_tests(args: &GlobalArgs) -> (Self, watch::Sender<Option<&'static str>>) {
        let (tx, rx) = watch::channel(None);
        (Self::with_shutdown("test", args, rx), tx)
    }

    /// The applet's name, as in `podinit <applet>:`.
    pub fn applet(&self) -> &'static str {
        self.applet
    }

    /// `-q`: only warnings and errors (an applet with output of its own may quiet that too:
    /// sysctl's echo of writes, as procps' `-q`).
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// When the process started (the deadline counts from here).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// `--timeout`, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The instant past which waits give up, if `--timeout` was given.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline; `None` means no deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The signal that asked us to stop, if one has arrived.
    pub fn shutdown_signal(&self) -> Option<&'static str> {
        *self.shutdown.borrow()
    }

    /// Resolves when SIGTERM or SIGINT arrives; returns its name.
    pub async fn shutdown_requested(&self) -> &'static str {
        let mut rx = self.shutdown.clone();
        loop {
            if let Some(signal) = *rx.borrow_and_update() {
                return signal;
            }
            if rx.changed().await.is_err() {
                // The listener is gone (tests): never resolves.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Sleeps for `duration`, or less if the deadline comes first.
    ///
    /// Errors with [`Kind::Interrupted`] on SIGTERM/SIGINT and with [`Kind::Timeout`] when
    /// the deadline has passed. The only place in podinit that sleeps.
    pub async fn sleep(&self, duration: Duration) -> Result<(), Error> {
        let remaining = self.remaining();
        let capped = remaining.map_or(duration, |r| r.min(duration));
        #[expect(clippy::disallowed_methods, reason = "this is the one sanctioned sleep")]
        let sleep = tokio::time::sleep(capped);
        tokio::select! {
            () = sleep => {}
            signal = self.shutdown_requested() => return Err(interrupted(signal)),
        }
        if remaining.is_some_and(|r| r <= duration) {
            return Err(self.timeout_error());
        }
        Ok(())
    }

    /// An error saying the deadline passed.
    pub fn timeout_error(&self) -> Error {
        let timeout = self.timeout.map_or_else(String::new, |t| format!(" ({})", humantime::format_duration(t)));
        Error::new(Kind::Timeout, anyhow::anyhow!("deadline passed: --timeout{timeout} ran out"))
            .with_hint("raise --timeout (PODINIT_TIMEOUT) if the dependency is only slow")
    }

    /// A progress reporter in this process's mode (bar, log lines or nothing).
    pub fn progress(&self, what: impl Into<String>, total: Option<u64>, unit: Unit) -> Progress {
        Progress::new(self.progress, what.into(), total, unit)
    }
}

/// The error for a stop by signal.
pub fn interrupted(signal: &str) -> Error {
    Error::new(Kind::Interrupted, anyhow::anyhow!("stopped by {signal}"))
}

fn spawn_signal_listener(tx: watch::Sender<Option<&'static str>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT; a stop signal will end the process abruptly");
        return;
    };
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        let _ = tx.send(Some(name));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sleep_stops_at_the_deadline() {
        let args = GlobalArgs { timeout: Some(Duration::from_secs(2)), ..GlobalArgs::default() };
        let (ctx, _tx) = Context::for_tests(&args);
        ctx.sleep(Duration::from_secs(1)).await.unwrap();
        let err = ctx.sleep(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), Kind::Timeout);
        assert!(Instant::now() >= ctx.started() + Duration::from_secs(2));
        assert!(Instant::now() < ctx.started() + Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_wakes_on_shutdown() {
        let (ctx, tx) = Context::for_tests(&GlobalArgs::default());
        tx.send(Some("SIGTERM")).unwrap();
        let err = ctx.sleep(Duration::from_secs(3600)).await.unwrap_err();
        assert_eq!(err.kind(), Kind::Interrupted);
        assert_eq!(err.message(), "stopped by SIGTERM");
    }
}

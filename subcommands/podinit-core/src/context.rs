//! [`Context`]: what the process hands every applet.
//!
//! It carries the overall deadline (`--timeout`, counted from process start), the shutdown
//! signal (SIGTERM from the kubelet, SIGINT from a terminal), and the progress mode. Every
//! wait in the product goes through [`Context::sleep`] or [`crate::retry`], so a deadline or
//! a signal ends it promptly and with the right exit status.
//!
//! An applet that does no async work runs without a Tokio runtime ([`Context::blocking`]):
//! the signals then only raise a flag, which its loops check with [`Context::check_shutdown`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

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
    shutdown: Arc<Shutdown>,
    progress: ProgressMode,
    quiet: bool,
}

/// A check for work that cannot await the context: `Err` with the reason to stop.
pub type StopCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Which stop signal arrived, if any; async waiters are woken when one does.
#[derive(Debug, Default)]
struct Shutdown {
    /// 0, or the signal number (15, 2).
    signal: AtomicU8,
    /// Raised by signal-hook in a context without a runtime.
    term: Arc<AtomicBool>,
    int: Arc<AtomicBool>,
    woken: Notify,
}

impl Shutdown {
    fn signal(&self) -> Option<&'static str> {
        if self.term.load(Ordering::Relaxed) {
            return Some("SIGTERM");
        }
        if self.int.load(Ordering::Relaxed) {
            return Some("SIGINT");
        }
        match self.signal.load(Ordering::Relaxed) {
            15 => Some("SIGTERM"),
            2 => Some("SIGINT"),
            _ => None,
        }
    }

    fn raise(&self, signal: &str) {
        self.signal.store(if signal == "SIGINT" { 2 } else { 15 }, Ordering::Relaxed);
        self.woken.notify_waiters();
    }
}

/// Stands in for a stop signal in tests ([`Context::for_tests`]).
#[derive(Debug, Clone)]
pub struct TestSignal(Arc<Shutdown>);

impl TestSignal {
    /// Raises `Some("SIGTERM")` or `Some("SIGINT")` as if it had arrived.
    #[expect(clippy::result_unit_err, reason = "the shape of a channel send, which tests used before")]
    pub fn send(&self, signal: Option<&'static str>) -> Result<(), ()> {
        if let Some(signal) = signal {
            self.0.raise(signal);
        }
        Ok(())
    }
}

impl Context {
    /// A context for `applet`, listening for SIGTERM and SIGINT.
    ///
    /// Must be called inside a Tokio runtime with signals and timers enabled.
    pub fn new(applet: &'static str, args: &GlobalArgs) -> Self {
        let shutdown = Arc::new(Shutdown::default());
        if spawn_signal_listener(Arc::clone(&shutdown)) {
            // Also straight from the handler: work that runs without yielding (a template
            // render) sees the signal while the runtime's listener task cannot run. Only
            // with the listener in place: else the default action (ending the process)
            // must stay.
            let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&shutdown.term))
                .and_then(|_| signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&shutdown.int)));
        }
        Self::with_shutdown(applet, args, shutdown)
    }

    /// A context for an applet that runs without a Tokio runtime: SIGTERM and SIGINT raise
    /// a flag that [`Context::check_shutdown`] reads (the applet's loops check it).
    pub fn blocking(applet: &'static str, args: &GlobalArgs) -> Self {
        let shutdown = Arc::new(Shutdown::default());
        let registered = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&shutdown.term))
            .and_then(|_| signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&shutdown.int)));
        if registered.is_err() {
            tracing::warn!("cannot listen for SIGTERM/SIGINT; a stop signal will end the process abruptly");
        }
        Self::with_shutdown(applet, args, shutdown)
    }

    fn with_shutdown(applet: &'static str, args: &GlobalArgs, shutdown: Arc<Shutdown>) -> Self {
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
    pub fn for_tests(args: &GlobalArgs) -> (Self, TestSignal) {
        let shutdown = Arc::new(Shutdown::default());
        (Self::with_shutdown("test", args, Arc::clone(&shutdown)), TestSignal(shutdown))
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
        self.shutdown.signal()
    }

    /// For loops of applets without a runtime: an error (exit 143) once a stop signal has
    /// arrived, and past the deadline the timeout error (exit 124).
    pub fn check_shutdown(&self) -> Result<(), Error> {
        if let Some(signal) = self.shutdown_signal() {
            return Err(interrupted(signal));
        }
        if self.remaining().is_some_and(|r| r.is_zero()) {
            return Err(self.timeout_error());
        }
        Ok(())
    }

    /// For work that runs without yielding or checking the context itself (a template
    /// render): `Err` with the reason once a stop signal arrived or the deadline passed. The
    /// caller maps that to [`Context::check_shutdown`]'s error.
    pub fn stop_check(&self) -> StopCheck {
        let (shutdown, deadline) = (Arc::clone(&self.shutdown), self.deadline);
        Arc::new(move || {
            if let Some(signal) = shutdown.signal() {
                return Err(format!("stopped by {signal}"));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err("stopped: the --timeout ran out".into());
            }
            Ok(())
        })
    }

    /// Resolves when SIGTERM or SIGINT arrives; returns its name.
    pub async fn shutdown_requested(&self) -> &'static str {
        loop {
            let woken = self.shutdown.woken.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(signal) = self.shutdown_signal() {
                return signal;
            }
            woken.await;
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

    /// [`Context::sleep`] for applets without a runtime: sleeps in short slices, so a stop
    /// signal ends it within 50 ms (exit 143), and stops at the deadline (exit 124).
    pub fn sleep_blocking(&self, duration: Duration) -> Result<(), Error> {
        let end = std::time::Instant::now() + duration.min(crate::args::MAX_DURATION);
        loop {
            self.check_shutdown()?;
            let now = std::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            let mut slice = (end - now).min(Duration::from_millis(50));
            if let Some(left) = self.remaining() {
                slice = slice.min(left);
            }
            #[expect(clippy::disallowed_methods, reason = "the one sanctioned blocking sleep, in slices that check for signals")]
            std::thread::sleep(slice);
        }
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

/// Starts the task that raises `shutdown` on SIGTERM or SIGINT; false when it cannot listen.
fn spawn_signal_listener(shutdown: Arc<Shutdown>) -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT; a stop signal will end the process abruptly");
        return false;
    };
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        shutdown.raise(name);
    });
    true
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

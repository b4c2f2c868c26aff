//! Progress of long work: an indicatif bar on a terminal, a plain log line every few
//! seconds otherwise (what `kubectl logs` shows), nothing with `--quiet`.
//!
//! Log lines written while a bar is drawn go through [`suspend_bar`], so the two never
//! garble each other.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar on stderr.
    Bar,
    /// An info log line every [`LOG_INTERVAL`].
    Log,
    /// Nothing.
    Off,
}

impl ProgressMode {
    /// A bar when stderr is a terminal, log lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() { Self::Bar } else { Self::Log }
    }
}

/// What is being counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes: shown as MiB/GiB with a throughput.
    Bytes,
    /// Things (files, secrets, migrations).
    Items,
}

/// How often a progress log line is written when there is no terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` (which writes to stderr) with the active bar, if any, hidden.
pub fn suspend_bar<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE_BAR.lock().ok().and_then(|slot| slot.clone());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// One piece of long work being tracked.
#[derive(Debug)]
pub struct Progress {
    mode: ProgressMode,
    what: String,
    unit: Unit,
    total: AtomicU64,
    done: AtomicU64,
    started: Instant,
    last_log: Mutex<Instant>,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(crate) fn new(mode: ProgressMode, what: String, total: Option<u64>, unit: Unit) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            let template = match unit {
                Unit::Bytes => "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
                Unit::Items => "{msg} {wide_bar} {pos}/{len} {per_sec} {eta}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_message(what.clone());
            if let Ok(mut slot) = ACTIVE_BAR.lock() {
                *slot = Some(bar.clone());
            }
            bar
        });
        let now = Instant::now();
        Self {
            mode,
            what,
            unit,
            total: AtomicU64::new(total.unwrap_or(0)),
            done: AtomicU64::new(0),
            started: now,
            last_log: Mutex::new(now),
            bar,
        }
    }

    /// Sets (or corrects) the total.
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Counts `n` more units done.
    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        self.tick();
    }

    /// Units done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Writes a log line if one is due (log mode only). Called by [`inc`](Self::inc); call
    /// it from a timer too when work can stall.
    pub fn tick(&self) {
        if self.mode != ProgressMode::Log {
            return;
        }
        let Ok(mut last) = self.last_log.lock() else { return };
        if last.elapsed() < LOG_INTERVAL {
            return;
        }
        *last = Instant::now();
        drop(last);
        tracing::info!("{}", self.line());
    }

    /// `what: 1.2 GiB of 4.0 GiB (30%), 85.3 MiB/s` or `what: 12 of 100 (12%)`.
    pub fn line(&self) -> String {
        let done = self.done();
        let total = self.total.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let (done_f, total_f) = (done as f64, total as f64);
        let share = if total > 0 { format!(" ({:.0}%)", 100.0 * done_f / total_f) } else { String::new() };
        match self.unit {
            Unit::Bytes => {
                let of = if total > 0 { format!(" of {}", bytes(total)) } else { String::new() };
                format!("{}: {}{of}{share}, {}/s", self.what, bytes(done), bytes_f(done_f / secs))
            }
            Unit::Items => {
                let of = if total > 0 { format!(" of {total}") } else { String::new() };
                format!("{}: {done}{of}{share}", self.what)
            }
        }
    }

    /// Ends the display (the applet logs its own summary).
    pub fn finish(self) {}
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Ok(mut slot) = ACTIVE_BAR.lock() {
                *slot = None;
            }
        }
    }
}

/// `1.5 GiB`, `340.0 KiB`, `12 B`.
pub fn bytes(n: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    bytes_f(n as f64)
}

fn bytes_f(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_how_far_along() {
        let p = Progress::new(ProgressMode::Off, "model.bin".into(), Some(4 << 30), Unit::Bytes);
        p.inc(1 << 30);
        let line = p.line();
        assert!(line.starts_with("model.bin: 1.0 GiB of 4.0 GiB (25%), "), "{line}");
        let q = Progress::new(ProgressMode::Off, "secrets".into(), Some(10), Unit::Items);
        q.inc(3);
        assert_eq!(q.line(), "secrets: 3 of 10 (30%)");
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}

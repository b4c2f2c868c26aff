//! The one helper for every wait in podinit: bounded, jittered, cancellable.
//!
//! [`retry`] calls an operation until it succeeds, fails fatally, or the deadline passes.
//! Each attempt gets a timeout clipped to the time left; between attempts it sleeps an
//! exponentially growing, jittered delay through [`Context::sleep`], so SIGTERM ends the
//! wait at once (exit 143) and a passed deadline ends it with [`Kind::Timeout`] (exit 124)
//! naming the last error. Applets decide which errors are worth retrying with a classifier,
//! which sees only errors of the operation itself: an attempt that runs out of its own time
//! limit is the helper's [`AttemptTimedOut`], always retried, never shown to the classifier.
//! A classifier names what is transient and calls everything else fatal, so a local bug or
//! an error nobody foresaw ends the run at once (exit 1) instead of spinning until `--timeout`.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::context::{Context, interrupted};
use crate::error::{Error, Kind};

/// The error of an attempt that ran out of its own time limit ([`Backoff::attempt_timeout`],
/// clipped to the deadline). The helper owns it: it is retried whatever the classifier says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimedOut(pub Duration);

impl std::fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt timed out after {}", humantime::format_duration(round_ms(self.0)))
    }
}

impl std::error::Error for AttemptTimedOut {}

/// Whether a failed attempt is worth repeating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transient (connection refused, 503, not there yet): try again after a delay.
    Retry,
    /// Retrying cannot help (permission denied, bad input): give up with this kind.
    Fatal(Kind),
}

/// Delays between attempts, from `initial` to `max` (see [`Growth`]), with "equal jitter"
/// (half fixed, half random) so N replicas started together do not retry in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Timeout of one attempt (clipped to the time left before the deadline).
    pub attempt_timeout: Option<Duration>,
    /// How the delay grows.
    pub growth: Growth,
}

/// How a [`Backoff`]'s delay grows between `initial` and `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Growth {
    /// Doubling after each failure: for calls that load a server (a login, a read).
    #[default]
    Doubling,
    /// The time waited so far divided by this: a poll of something cheap (a TCP connect)
    /// reacts within a fixed share of the wait (1/40: 25 ms after one second), and its CPU
    /// falls as the wait grows.
    ShareOfWait(u32),
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            attempt_timeout: Some(Duration::from_secs(10)),
            growth: Growth::Doubling,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1-based), `waited` after the first
    /// attempt started, before jitter is applied.
    pub fn base_delay(&self, attempt: u32, waited: Duration) -> Duration {
        match self.growth {
            Growth::Doubling => {
                let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
                self.initial.saturating_mul(factor).min(self.max)
            }
            Growth::ShareOfWait(divisor) => (waited / divisor.max(1)).max(self.initial).min(self.max),
        }
    }

    /// The jittered delay after failed attempt number `attempt`: within `[base/2, base]`.
    pub fn delay(&self, attempt: u32, waited: Duration, rng: &mut Jitter) -> Duration {
        let base = self.base_delay(attempt, waited);
        let half = base / 2;
        half + half.mul_f64(rng.next_unit())
    }
}

/// A small pseudo-random source for jitter (splitmix64), seeded per process.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and the PID, so replicas differ.
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        #[expect(clippy::cast_possible_truncation, reason = "any bits make a seed")]
        Self((nanos as u64) ^ (u64::from(std::process::id()) << 32))
    }

    /// A number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        #[expect(clippy::cast_precision_loss, reason = "53 bits are plenty for jitter")]
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

/// What one attempt knows about itself.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// This attempt's own time limit, already clipped to the deadline.
    pub timeout: Option<Duration>,
}

/// Calls `op` until it succeeds, `classify` calls an error fatal, or the deadline passes.
///
/// `what` names the operation in log lines and in the final error (`"connecting to
/// vault.example:8200"`). On give-up the error is [`Kind::Timeout`] and carries the last
/// attempt's error; on SIGTERM/SIGINT it is [`Kind::Interrupted`].
pub async fn retry<T, F, Fut>(
    ctx: &Context,
    what: &str,
    backoff: Backoff,
    classify: impl Fn(&anyhow::Error) -> Verdict,
    op: F,
) -> Result<T, Error>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    retry_or_wake(ctx, what, backoff, classify, op, std::future::pending::<()>).await
}

/// [`retry`], but the delay between attempts also ends when `wake()` resolves: for targets
/// that can announce a change (an inotify event on a directory), so the next attempt comes
/// at once instead of at the next backoff tick. The backoff stays as the safety poll.
pub async fn retry_or_wake<T, F, Fut, W, WFut>(
    ctx: &Context,
    what: &str,
    backoff: Backoff,
    classify: impl Fn(&anyhow::Error) -> Verdict,
    mut op: F,
    mut wake: W,
) -> Result<T, Error>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
    W: FnMut() -> WFut,
    WFut: Future<Output = ()>,
{
    let started = Instant::now();
    let mut jitter = Jitter::new();
    let mut last_logged: Option<String> = None;
    for number in 1u32.. {
        if let Some(signal) = ctx.shutdown_signal() {
            return Err(interrupted(signal));
        }
        let remaining = ctx.remaining();
        let timeout = match (backoff.attempt_timeout, remaining) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        };
        let attempt = Attempt { number, timeout };
        let outcome = tokio::select! {
            outcome = run_attempt(&mut op, attempt) => outcome,
            signal = ctx.shutdown_requested() => return Err(interrupted(signal)),
        };
        let err = match outcome {
            Ok(value) => {
                if number > 1 {
                    tracing::debug!(attempts = number, elapsed_ms = millis(started.elapsed()), "{what}: succeeded after {number} attempts");
                }
                return Ok(value);
            }
            Err(err) => err,
        };
        if !err.is::<AttemptTimedOut>()
            && let Verdict::Fatal(kind) = classify(&err)
        {
            return Err(Error::from(err).with_kind(kind).context(what.to_owned()));
        }
        let text = format!("{err:#}");
        if last_logged.as_deref() == Some(text.as_str()) {
            tracing::debug!(attempt = number, error = %text, "{what}: not yet: {text}");
        } else {
            tracing::info!(attempt = number, error = %text, "{what}: not yet: {text}; retrying");
            last_logged = Some(text);
        }
        let delay = backoff.delay(number, started.elapsed(), &mut jitter);
        if ctx.remaining().is_some_and(|r| r.is_zero()) {
            return Err(give_up(ctx, what, number, started, err));
        }
        let woken = tokio::select! {
            slept = ctx.sleep(delay) => slept,
            () = wake() => Ok(()),
        };
        match woken {
            Ok(()) => {}
            Err(stop) if stop.kind() == Kind::Timeout => {
                // One last attempt at the deadline is pointless: its time is gone.
                return Err(give_up(ctx, what, number, started, err));
            }
            Err(stop) => return Err(stop),
        }
    }
    unreachable!("u32 attempts are exhausted only after centuries")
}

async fn run_attempt<T, F, Fut>(op: &mut F, attempt: Attempt) -> anyhow::Result<T>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    match attempt.timeout {
        None => op(attempt).await,
        Some(limit) => match tokio::time::timeout(limit, op(attempt)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::Error::new(AttemptTimedOut(limit))),
        },
    }
}

fn give_up(ctx: &Context, what: &str, attempts: u32, started: Instant, last: anyhow::Error) -> Error {
    let elapsed = humantime::format_duration(round_ms(started.elapsed()));
    let limit = ctx.timeout().map_or_else(String::new, |t| format!(" (--timeout {})", humantime::format_duration(t)));
    Error::new(Kind::Timeout, last.context(format!("{what}: gave up after {attempts} attempts in {elapsed}{limit}; last error")))
        .with_hint("raise --timeout (PODINIT_TIMEOUT) if the dependency is only slow")
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "tests stand in for events with plain timers")]

    use std::cell::Cell;

    use super::*;
    use crate::GlobalArgs;

    fn ctx_with_timeout(secs: u64) -> (Context, crate::context::TestSignal) {
        Context::for_tests(&GlobalArgs { timeout: Some(Duration::from_secs(secs)), ..GlobalArgs::default() })
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b =
            Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1), attempt_timeout: None, growth: Growth::Doubling };
        let any = Duration::from_secs(7);
        assert_eq!(b.base_delay(1, any), Duration::from_millis(100));
        assert_eq!(b.base_delay(2, any), Duration::from_millis(200));
        assert_eq!(b.base_delay(4, any), Duration::from_millis(800));
        assert_eq!(b.base_delay(5, any), Duration::from_secs(1));
        assert_eq!(b.base_delay(1000, any), Duration::from_secs(1));
        let mut j = Jitter::new();
        for attempt in 1..50 {
            let d = b.delay(attempt, any, &mut j);
            assert!(d >= b.base_delay(attempt, any) / 2 && d <= b.base_delay(attempt, any), "{d:?}");
        }
    }

    #[test]
    fn a_share_of_the_wait_grows_with_the_wait_not_the_attempts() {
        let b = Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(500),
            attempt_timeout: None,
            growth: Growth::ShareOfWait(40),
        };
        assert_eq!(b.base_delay(1, Duration::ZERO), Duration::from_millis(5));
        assert_eq!(b.base_delay(60, Duration::from_millis(100)), Duration::from_millis(5));
        assert_eq!(b.base_delay(2, Duration::from_secs(1)), Duration::from_millis(25));
        assert_eq!(b.base_delay(90, Duration::from_secs(8)), Duration::from_millis(200));
        assert_eq!(b.base_delay(3, Duration::from_secs(3600)), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success() {
        let (ctx, _tx) = ctx_with_timeout(60);
        let calls = Cell::new(0);
        let out = retry(
            &ctx,
            "probing",
            Backoff::default(),
            |_| Verdict::Retry,
            |_| {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 4 { anyhow::bail!("refused") } else { Ok(n) } }
            },
        )
        .await
        .unwrap();
        assert_eq!(out, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_stop_at_once_with_their_kind() {
        let (ctx, _tx) = ctx_with_timeout(60);
        let calls = Cell::new(0);
        let err = retry(
            &ctx,
            "logging in",
            Backoff::default(),
            |_| Verdict::Fatal(Kind::Usage),
            |_| {
                calls.set(calls.get() + 1);
                async { Err::<(), _>(anyhow::anyhow!("permission denied")) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(calls.get(), 1);
        assert_eq!(err.kind(), Kind::Usage);
        assert_eq!(err.message(), "logging in: permission denied");
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_gives_up_with_the_last_error() {
        let (ctx, _tx) = ctx_with_timeout(3);
        let calls = Cell::new(0);
        let err = retry(
            &ctx,
            "connecting",
            Backoff::default(),
            |_| Verdict::Retry,
            |_| {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { Err::<(), _>(anyhow::anyhow!("refused #{n}")) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), Kind::Timeout);
        let msg = err.message();
        assert!(msg.starts_with("connecting: gave up after"), "{msg}");
        assert!(msg.ends_with(&format!("last error: refused #{}", calls.get())), "{msg}");
        assert_eq!(err.inner_message(), format!("refused #{}", calls.get()), "the last error alone");
        let elapsed = Instant::now() - ctx.started();
        assert!(elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(4), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_clipped_to_the_deadline() {
        let (ctx, _tx) = ctx_with_timeout(2);
        let err = retry(
            &ctx,
            "hanging",
            Backoff::default(),
            // The helper's own attempt timeout is retried even by a classifier that knows
            // nothing: it never sees it.
            |_| Verdict::Fatal(Kind::Failed),
            |attempt| async move {
                assert!(attempt.timeout.unwrap() <= Duration::from_secs(2));
                std::future::pending::<anyhow::Result<()>>().await
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), Kind::Timeout);
        assert!(err.message().contains("attempt timed out after 2s"), "{}", err.message());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_cuts_the_delay_short() {
        let (ctx, _tx) = ctx_with_timeout(3600);
        let backoff =
            Backoff { initial: Duration::from_secs(60), max: Duration::from_secs(60), attempt_timeout: None, growth: Growth::Doubling };
        let calls = Cell::new(0);
        let out = retry_or_wake(
            &ctx,
            "watching",
            backoff,
            |_| Verdict::Retry,
            |_| {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 3 { anyhow::bail!("absent") } else { Ok(n) } }
            },
            || tokio::time::sleep(Duration::from_millis(5)),
        )
        .await
        .unwrap();
        assert_eq!(out, 3);
        assert!(Instant::now() - ctx.started() < Duration::from_secs(1), "woken, not slept for a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_interrupts_the_wait() {
        let (ctx, tx) = ctx_with_timeout(3600);
        let calls = Cell::new(0);
        let err = retry(
            &ctx,
            "waiting",
            Backoff::default(),
            |_| Verdict::Retry,
            |_| {
                calls.set(calls.get() + 1);
                if calls.get() == 3 {
                    tx.send(Some("SIGTERM")).unwrap();
                }
                async { Err::<(), _>(anyhow::anyhow!("not yet")) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), Kind::Interrupted);
        assert_eq!(calls.get(), 3);
    }
}

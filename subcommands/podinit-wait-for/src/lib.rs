//! `podinit wait-for`: block until targets are ready, then exit 0 or exec the app.
//!
//! Targets of every kind are checked concurrently through the shared retry helper: cheap
//! checks (TCP connects, unix sockets, IPC objects) every ≤ 100 ms, requests (HTTP, DNS,
//! database logins) every ≤ 1 s, files on inotify events, all with jitter, per-attempt
//! timeouts, `--timeout`, and SIGTERM honoured. The 100 ms is the measured balance between
//! reaction latency and CPU while waiting (docs/benchmarks.md, `bench/wait-for`).
//!
//! ```yaml
//! initContainers:
//!   - name: wait-for-db
//!     image: podinit
//!     args: ["wait-for", "--timeout", "5m", "postgres://app@db:5432/app", "http://auth:8080/healthz"]
//! ```

mod exec;
mod probe;
mod target;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use podinit_core::args::parse_duration;
use podinit_core::retry::{self, Backoff, Growth, Verdict};
use podinit_core::{Context, Error, Kind};
use tokio::time::Instant;

pub use crate::probe::StatusSet;
use crate::probe::{FileCheck, HttpSettings, Prober, Settings};
use crate::target::{Cost, Target};

/// Wait until TCP, HTTP, DNS, database, Redis, gRPC, AMQP, NATS, ZooKeeper, memcached, file,
/// unix-socket or IPC targets are ready.
///
/// Then exit 0, or with `-- COMMAND ARGS…` replace this process with the command (same PID,
/// its signals, its exit status). Without --timeout it waits as long as it takes. Exit 124
/// when --timeout passes (naming every target still not ready), 2 for a bad target, 1 when
/// --once finds a target not ready, 127/126 when the command is missing / not executable.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Targets:
  tcp://HOST:PORT  tcp://[::1]:PORT     accepts a connection (any resolved address)
  http(s)://HOST[:PORT]/PATH            answers 2xx (see --http-*)
  dns://NAME  dns://NAME?type=MX        resolves (search domains honoured); A AAAA CNAME MX NS SRV TXT
  dns://NAME?min=3                      resolves to at least 3 addresses (records with type=)
  postgres://USER:PASS@HOST/DB          accepts an authenticated session (also mysql://, mariadb://)
  postgres://…/DB?query=SQL             the query's first column is true, non-zero or non-empty
  redis://[USER:PASS@]HOST[:PORT][/DB]  PONG after AUTH, not LOADING (rediss:// TLS; ?role=master|replica)
  grpc://HOST:PORT[/SERVICE]            grpc.health.v1 says SERVING (grpcs:// TLS)
  amqp://USER:PASS@HOST[:PORT][/VHOST]  RabbitMQ opens a connection on the vhost (amqps:// TLS)
  nats://[USER:PASS@|TOKEN@]HOST[:PORT] CONNECT accepted, PING answered
  zookeeper://HOST[:PORT][/ZNODE]       a session is granted (and the znode exists)
  memcached://HOST[:PORT]               answers version
  file:///ABS/PATH                      exists (see --file-*; gone with --file-absent), noticed through inotify
  unix:///ABS/PATH                      a unix socket accepting connections
  posix-mq:///NAME                      a POSIX message queue exists
  sysv-msg://KEY  sysv-shm://KEY  sysv-sem://KEY   a SysV IPC object with KEY (decimal or 0x-hex)

Examples:
  podinit wait-for --timeout 2m tcp://db:5432 http://auth:8080/healthz
  podinit wait-for posix-mq:///jobs -- /app/consumer --queue /jobs
  podinit wait-for --once unix:///run/app.sock      (a probe: exit 0 or 1)")]
pub struct Args {
    /// What to wait for (see Targets below).
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,

    /// Ready when any one target is ready (default: all of them).
    #[arg(long, env = "PODINIT_WAIT_FOR_ANY", value_parser = BoolishValueParser::new())]
    pub any: bool,

    /// Check each target once and exit 0 (ready) or 1 (not ready): for an exec probe.
    #[arg(long, env = "PODINIT_WAIT_FOR_ONCE", value_parser = BoolishValueParser::new(), conflicts_with = "command")]
    pub once: bool,

    /// Time limit of one check (connect, request, login); clipped to what --timeout leaves.
    #[arg(long, env = "PODINIT_WAIT_FOR_ATTEMPT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    pub attempt_timeout: Duration,

    /// Longest pause between checks of a target [default: 500ms for TCP, unix sockets and IPC
    /// (checked at 1/40 of the time waited until then); 1s for protocol handshakes (also at
    /// 1/40), HTTP, DNS and databases; files wake on inotify and poll every 1s].
    #[arg(long, env = "PODINIT_WAIT_FOR_MAX_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub max_interval: Option<Duration>,

    /// HTTP statuses that mean ready: codes and ranges.
    #[arg(long, env = "PODINIT_WAIT_FOR_HTTP_STATUS", value_name = "LIST", default_value = "200-299", value_parser = StatusSet::parse)]
    pub http_status: StatusSet,

    /// HTTP method.
    #[arg(long, env = "PODINIT_WAIT_FOR_HTTP_METHOD", value_name = "METHOD", default_value = "GET")]
    pub http_method: String,

    /// Request header `NAME: VALUE` (repeatable). Values are never logged.
    #[arg(long = "http-header", env = "PODINIT_WAIT_FOR_HTTP_HEADER", hide_env_values = true, value_name = "NAME: VALUE", value_parser = parse_header)]
    pub http_headers: Vec<(String, String)>,

    /// Ready only when the response body contains TEXT.
    #[arg(long, env = "PODINIT_WAIT_FOR_HTTP_BODY_CONTAINS", value_name = "TEXT", value_parser = non_empty)]
    pub http_body_contains: Option<String>,

    /// Ready only when the JSON body has PATH (dotted: `checks.0.status`) equal to VALUE.
    #[arg(long, env = "PODINIT_WAIT_FOR_HTTP_JSON", value_name = "PATH=VALUE", value_parser = parse_json_match)]
    pub http_json: Option<(String, String)>,

    /// Do not follow redirects (a 3xx is then judged by --http-status).
    #[arg(long, env = "PODINIT_WAIT_FOR_HTTP_NO_REDIRECT", value_parser = BoolishValueParser::new())]
    pub http_no_redirect: bool,

    /// Trust only the CA certificates (PEM) in FILE for https targets.
    #[arg(long, env = "PODINIT_WAIT_FOR_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Verify the server certificate for NAME instead of the URL's host.
    #[arg(long, env = "PODINIT_WAIT_FOR_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,

    /// Accept any server certificate (the connection is still encrypted).
    #[arg(long, env = "PODINIT_WAIT_FOR_INSECURE_SKIP_VERIFY", value_parser = BoolishValueParser::new())]
    pub insecure_skip_verify: bool,

    /// file:// targets are ready only when not empty.
    #[arg(long, env = "PODINIT_WAIT_FOR_FILE_NON_EMPTY", value_parser = BoolishValueParser::new())]
    pub file_non_empty: bool,

    /// file:// targets are ready only when they contain TEXT.
    #[arg(long, env = "PODINIT_WAIT_FOR_FILE_CONTAINS", value_name = "TEXT", value_parser = non_empty)]
    pub file_contains: Option<String>,

    /// Client certificate (PEM) for https, rediss, amqps and grpcs targets that ask for one (mutual TLS); with --key-file.
    #[arg(long, env = "PODINIT_WAIT_FOR_CERT_FILE", value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,

    /// The client certificate's private key (PEM); with --cert-file.
    #[arg(long, env = "PODINIT_WAIT_FOR_KEY_FILE", value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,

    /// file:// targets are ready when the path does not exist (a lock or a marker removed).
    #[arg(long, env = "PODINIT_WAIT_FOR_FILE_ABSENT", value_parser = BoolishValueParser::new(), conflicts_with_all = ["file_non_empty", "file_contains"])]
    pub file_absent: bool,

    /// Password for targets that log in (database, redis, nats, amqp) whose URL has none, read
    /// from FILE (a mounted Secret), so it appears in no argument list. PostgreSQL also takes
    /// PGPASSWORD from the environment.
    #[arg(long, env = "PODINIT_WAIT_FOR_PASSWORD_FILE", value_name = "FILE", conflicts_with = "db_password_file")]
    pub password_file: Option<PathBuf>,

    /// The same as --password-file (its earlier name).
    #[arg(long, env = "PODINIT_WAIT_FOR_DB_PASSWORD_FILE", value_name = "FILE")]
    pub db_password_file: Option<PathBuf>,

    /// Command to exec once ready (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once(':').ok_or("write a header as 'NAME: VALUE'")?;
    let name = name.trim();
    if name.is_empty() {
        return Err("the header has no name; write 'NAME: VALUE'".into());
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

fn parse_json_match(text: &str) -> Result<(String, String), String> {
    let (path, value) = text.split_once('=').ok_or("write PATH=VALUE, e.g. status=UP")?;
    if path.trim().is_empty() {
        return Err("the JSON path is empty; write PATH=VALUE, e.g. status=UP".into());
    }
    Ok((path.trim().to_owned(), value.to_owned()))
}

/// A secret from a file, without its trailing newline; the error names the file, never the content.
fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() { Err("give a non-empty text".into()) } else { Ok(text.to_owned()) }
}

/// Runs `podinit wait-for` to completion (or execs the command).
pub async fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let mut targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t).map_err(|e| Error::usage(format!("bad target {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let password_file = match (&args.password_file, &args.db_password_file) {
        (Some(path), _) => Some(("--password-file", path)),
        (None, Some(path)) => Some(("--db-password-file", path)),
        (None, None) => None,
    };
    if let Some((flag, path)) = password_file {
        let password = podinit_core::fs::read_secret_file(flag, path)?;
        let took = targets.iter_mut().fold(false, |took, target| target.set_default_password(&password) | took);
        if !took {
            tracing::warn!("{flag}: no target takes a password (or every URL has its own)");
        }
    }
    let command = if args.command.is_empty() { None } else { Some(exec::Command::resolve(&args.command)?) };
    if args.insecure_skip_verify {
        tracing::warn!("--insecure-skip-verify: no TLS target's certificate is checked (https, rediss, amqps, grpcs)");
    }
    let settings = Settings {
        http: HttpSettings {
            status: args.http_status.clone(),
            method: args.http_method.clone(),
            headers: args.http_headers.clone(),
            body_contains: args.http_body_contains.clone(),
            json: args.http_json.clone(),
            follow_redirects: !args.http_no_redirect,
            ca_file: args.ca_file.clone(),
            insecure: args.insecure_skip_verify,
            server_name: args.tls_server_name.clone(),
            client_identity: args.cert_file.clone().zip(args.key_file.clone()),
        },
        file: FileCheck { non_empty: args.file_non_empty, contains: args.file_contains.clone(), absent: args.file_absent },
        attempt_timeout: args.attempt_timeout,
    };
    let probers = targets.into_iter().map(|t| Prober::new(t, &settings)).collect::<Result<Vec<_>, _>>()?;

    if args.once {
        return once(ctx, &probers, &args).await;
    }
    let started = Instant::now();
    let waits: Vec<Pending<'_, Outcome>> = probers.iter().map(|p| Box::pin(wait_one(ctx, p, &args)) as _).collect();
    let outcomes = if args.any { first_ready(waits).await } else { until_all_or_fatal(waits).await };
    report(started, &outcomes, args.any)?;
    match command {
        Some(command) => {
            // The program only: its arguments may carry secrets.
            tracing::info!("running {}", args.command[0].to_string_lossy());
            Err(command.exec())
        }
        None => Ok(()),
    }
}

/// How one target's wait ended.
struct Outcome {
    target: String,
    elapsed: Duration,
    result: Result<(), Error>,
    last_error: Option<String>,
}

async fn wait_one(ctx: &Context, prober: &Prober, args: &Args) -> Outcome {
    let started = Instant::now();
    let target = prober.target().to_string();
    let (initial, max, growth) = match (prober.target().cost(), prober.event_driven()) {
        // inotify wakes us; polling is only the safety net for writers outside this kernel.
        (_, true) => (Duration::from_millis(50), Duration::from_secs(1), Growth::Doubling),
        // A check costs a connect or a stat: poll at 1/40 of the time waited, so the reaction
        // comes within 2.5 % of the wait (25 ms after one second), and CPU falls as it grows.
        (Cost::Cheap, false) => (Duration::from_millis(5), Duration::from_millis(500), Growth::ShareOfWait(40)),
        (Cost::Request, false) => (Duration::from_millis(100), Duration::from_secs(1), Growth::Doubling),
        // A handshake costs the server little more than a connect: the same share of the wait,
        // so a Redis that finishes loading is seen within 2.5 % of the wait too.
        (Cost::Handshake, false) => (Duration::from_millis(5), Duration::from_secs(1), Growth::ShareOfWait(40)),
    };
    let max = args.max_interval.unwrap_or(max);
    let backoff = Backoff { initial: initial.min(max), max, attempt_timeout: Some(args.attempt_timeout), growth };
    // A check that waiting cannot cure (a query's syntax error) ends the wait at once.
    let classify = |err: &anyhow::Error| if err.is::<probe::Fatal>() { Verdict::Fatal(Kind::Usage) } else { Verdict::Retry };
    let result = retry::retry_or_wake(ctx, &target, backoff, classify, |_| prober.check(), || prober.changed()).await;
    let elapsed = started.elapsed();
    if result.is_ok() {
        tracing::info!(target = %target, state = "ready", elapsed_ms = millis(elapsed), "{target}: ready after {}", secs(elapsed));
    }
    // Every error is retried, so a failure is the give-up error wrapping the last check's.
    let last_error = result.as_ref().err().map(Error::inner_message);
    Outcome { target, elapsed, result, last_error }
}

fn report(started: Instant, outcomes: &[Outcome], any: bool) -> Result<(), Error> {
    let total = started.elapsed();
    if let Some(stop) = outcomes.iter().find_map(|o| o.result.as_ref().err().filter(|e| e.kind() == Kind::Interrupted)) {
        return Err(Error::new(Kind::Interrupted, anyhow::anyhow!("{stop}")));
    }
    let ready: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_ok()).collect();
    let waiting: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let satisfied = if any { !ready.is_empty() } else { waiting.is_empty() };
    if satisfied {
        let list: Vec<String> = ready.iter().map(|o| format!("{} {}", o.target, secs(o.elapsed))).collect();
        let what = if any {
            "ready (any)"
        } else if ready.len() == 1 {
            "target ready"
        } else {
            "targets ready"
        };
        tracing::info!(ready = ready.len(), elapsed_ms = millis(total), "{} {what} in {}: {}", ready.len(), secs(total), list.join(", "));
        return Ok(());
    }
    let list: Vec<String> = waiting
        .iter()
        .map(|o| format!("{} ({})", o.target, o.last_error.as_deref().unwrap_or("not checked before the deadline")))
        .collect();
    let kind = waiting
        .iter()
        .map(|o| o.result.as_ref().err().map_or(Kind::Timeout, Error::kind))
        .find(|k| *k != Kind::Timeout)
        .unwrap_or(Kind::Timeout);
    Err(Error::new(
        kind,
        anyhow::anyhow!(
            "{} of {} {} not ready after {}: {}",
            waiting.len(),
            outcomes.len(),
            if outcomes.len() == 1 { "target" } else { "targets" },
            secs(total),
            list.join("; ")
        ),
    )
    .with_hint("raise --timeout (PODINIT_TIMEOUT) if a dependency is only slow"))
}

async fn once(ctx: &Context, probers: &[Prober], args: &Args) -> Result<(), Error> {
    let limit = ctx.remaining().map_or(args.attempt_timeout, |r| r.min(args.attempt_timeout));
    let checks: Vec<Pending<'_, Outcome>> = probers
        .iter()
        .map(|p| {
            Box::pin(async move {
                let started = Instant::now();
                let result = match tokio::time::timeout(limit, p.check()).await {
                    Ok(r) => r,
                    Err(_) => Err(anyhow::anyhow!("no answer within {}", secs(limit))),
                };
                let last_error = result.as_ref().err().map(|e| format!("{e:#}"));
                let result = result.map_err(|e| {
                    let fatal = e.is::<probe::Fatal>();
                    let e = Error::from(e);
                    if fatal { e.with_kind(Kind::Usage) } else { e }
                });
                Outcome { target: p.target().to_string(), elapsed: started.elapsed(), result, last_error }
            }) as _
        })
        .collect();
    let outcomes = join_all(checks).await;
    let ready = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let satisfied = if args.any { ready > 0 } else { ready == outcomes.len() };
    if satisfied {
        tracing::info!(ready, "{ready} of {} ready", outcomes.len());
        return Ok(());
    }
    let list: Vec<String> = outcomes.iter().filter_map(|o| Some(format!("{} ({})", o.target, o.last_error.as_deref()?))).collect();
    let fatal = outcomes.iter().any(|o| o.result.as_ref().is_err_and(|e| e.kind() == Kind::Usage));
    Err(Error::new(if fatal { Kind::Usage } else { Kind::Failed }, anyhow::anyhow!("not ready: {}", list.join("; "))))
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Drives all futures to completion on this task; outcomes in input order.
async fn join_all<T>(futures: Vec<Pending<'_, T>>) -> Vec<T> {
    drive(futures, |_| false).await
}

/// Drives all futures to completion, or until one ends in an error waiting cannot cure (then
/// the others are cancelled: the run fails either way).
async fn until_all_or_fatal(futures: Vec<Pending<'_, Outcome>>) -> Vec<Outcome> {
    drive(futures, |o| o.result.as_ref().is_err_and(|e| e.kind() == Kind::Usage)).await
}

/// Drives futures until one yields a ready outcome (or all have ended); returns what ended.
async fn first_ready(futures: Vec<Pending<'_, Outcome>>) -> Vec<Outcome> {
    drive(futures, |o| o.result.is_ok()).await
}

/// Polls every future on this task until all have ended or one's output satisfies `enough`;
/// returns the outputs of those that ended, in input order. The rest are dropped (cancelled).
async fn drive<T>(mut futures: Vec<Pending<'_, T>>, enough: impl Fn(&T) -> bool) -> Vec<T> {
    let mut ended: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (i, fut) in futures.iter_mut().enumerate() {
            if ended[i].is_none()
                && let Poll::Ready(value) = fut.as_mut().poll(cx)
            {
                let stop = enough(&value);
                ended[i] = Some(value);
                if stop {
                    return Poll::Ready(());
                }
            }
        }
        if ended.iter().all(Option::is_some) { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    ended.into_iter().flatten().collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `0.042s`, `1.5s`, `2m 3s`.
fn secs(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

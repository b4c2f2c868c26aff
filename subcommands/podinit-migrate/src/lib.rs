//! `podinit migrate`: sqlx-compatible schema migrations, safe when N replicas start at once.
//!
//! Connect (waiting for the database through the retry helper), compare the directory with
//! `_sqlx_migrations`; when nothing is pending, exit without taking the lock. Otherwise take
//! the migration lock by polling a try-lock (logging who holds it), re-read the history under
//! the lock (a waiter finds the winner's work and exits 0), apply what is pending one file
//! at a time, and release the lock on every path. The history table, checksums and lock keys
//! are sqlx's, so an app that also runs `sqlx::migrate!()` agrees with podinit.
//!
//! ```yaml
//! initContainers:
//!   - name: migrate
//!     image: podinit
//!     args: ["migrate", "--source", "/migrations", "--timeout", "5m"]
//!     env: [{ name: DATABASE_URL, valueFrom: { secretKeyRef: { name: db, key: url } } }]
//!     volumeMounts: [{ name: migrations, mountPath: /migrations }]
//! ```

mod db;
mod source;

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use podinit_core::retry::{self, Backoff, Verdict};
use podinit_core::{Context, Error, Kind};

use crate::db::{Applied, ApplyError, Backend, Db, sql_reason};
use crate::source::Local;

/// Apply SQL migrations (sqlx's format and history table) safely from N replicas at once.
///
/// One replica applies while the others wait for the lock and then exit 0 without applying
/// anything twice. Exit 0 when up to date, 1 when a migration or validation failed, 2 for bad
/// input, 124 when the database or the lock did not come within --timeout. `status` exits 1
/// when migrations are pending.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Migrations: files <VERSION>_<NAME>.sql, or <VERSION>_<NAME>.up.sql with a .down.sql beside it,
in --source (symlinks followed: a ConfigMap volume works). A file starting with the line
`-- no-transaction` runs outside a transaction (e.g. CREATE INDEX CONCURRENTLY).

Examples:
  podinit migrate --database-url postgres://app@db/app --database-password-file /secrets/pw --source /migrations
  DATABASE_URL=mysql://app:pw@db/app podinit migrate status --source /migrations")]
pub struct Args {
    /// What to do.
    #[arg(value_enum, default_value_t = Mode::Apply)]
    pub mode: Mode,

    /// Database URL: postgres://, mysql:// (also MariaDB), sqlite:// (add ?mode=rwc to create the file).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: String,

    /// Password for the URL when it has none, read from FILE (a mounted Secret).
    #[arg(long, env = "PODINIT_MIGRATE_DATABASE_PASSWORD_FILE", value_name = "FILE")]
    pub database_password_file: Option<PathBuf>,

    /// Directory of migration files.
    #[arg(long, env = "PODINIT_MIGRATE_SOURCE", value_name = "DIR", default_value = "migrations")]
    pub source: PathBuf,

    /// Show what would be applied; change nothing and take no lock.
    #[arg(long, env = "PODINIT_MIGRATE_DRY_RUN", value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// Fail when the database has migrations this directory does not (by default a warning:
    /// a rollback to an older release must not crash-loop).
    #[arg(long, env = "PODINIT_MIGRATE_STRICT", value_parser = BoolishValueParser::new())]
    pub strict: bool,
}

/// `podinit migrate [MODE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Apply pending migrations (the default).
    Apply,
    /// List applied and pending migrations; exit 1 when any is pending.
    Status,
    /// Check applied migrations against the files' checksums; exit 1 on a mismatch.
    Validate,
}

/// Runs `podinit migrate` to completion.
pub async fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let url = database_url(&args)?;
    let shown = podinit_core::redact::url(&url);
    let backend = Backend::of(&url).ok_or_else(|| {
        Error::usage(format!("--database-url {shown}: unknown scheme '{}'", url.scheme()))
            .with_hint("use postgres://, mysql:// or sqlite://")
    })?;
    let locals = source::load(&args.source).await?;
    let mut db = connect(ctx, &url, &shown, backend).await?;
    let result = match args.mode {
        Mode::Status => status(&mut db, &locals).await,
        Mode::Validate => validate(&mut db, &locals, &args).await,
        Mode::Apply => apply(ctx, &mut db, &locals, &args).await,
    };
    db.close().await;
    result
}

fn database_url(args: &Args) -> Result<url::Url, Error> {
    let mut url = url::Url::parse(&args.database_url).map_err(|e| {
        Error::usage(format!("--database-url (DATABASE_URL) is not a URL: {e}")).with_hint("e.g. postgres://app@db:5432/app")
    })?;
    if let Some(path) = &args.database_password_file {
        let password = podinit_core::fs::read_secret_file("--database-password-file", path)?;
        if url.password().is_none() {
            url.set_password(Some(&password))
                .map_err(|()| Error::usage(format!("--database-url {}: cannot carry a password", podinit_core::redact::url(&url))))?;
        }
    }
    Ok(url)
}

/// Connects, waiting through refused connections, DNS failures and "starting up"; a wrong
/// password or an unknown database fails at once.
async fn connect(ctx: &Context, url: &url::Url, shown: &str, backend: Backend) -> Result<Db, Error> {
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        attempt_timeout: Some(Duration::from_secs(10)),
        growth: retry::Growth::Doubling,
    };
    let what = format!("connecting to {shown}");
    retry::retry(ctx, &what, backoff, classify_connect, |_| async {
        Db::connect(url, backend).await.map_err(|e| anyhow::Error::new(ConnectError(e)))
    })
    .await
    .map_err(|e| if e.kind() == Kind::Failed { e.with_hint("check the user, password and database name in the URL") } else { e })
}

/// A failed connection attempt, shown as the one line that says why (sqlx repeats its cause).
#[derive(Debug)]
struct ConnectError(sqlx::Error);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&sql_reason(&self.0))
    }
}

impl std::error::Error for ConnectError {}

fn classify_connect(err: &anyhow::Error) -> Verdict {
    // Anything but a connection error (the retry helper's own attempt timeout never gets
    // here) is a bug or a surprise: fail at once rather than wait out --timeout.
    let Some(ConnectError(err)) = err.downcast_ref::<ConnectError>() else { return Verdict::Fatal(Kind::Failed) };
    match err {
        // Protocol: a proxy (docker-proxy, a Service without endpoints) accepting before the
        // server listens answers the SSL request with nothing; the last error names it if it
        // never clears.
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => Verdict::Retry,
        sqlx::Error::Configuration(_) => Verdict::Fatal(Kind::Usage),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // PostgreSQL: starting up / shutting down / too many connections; MySQL: too many connections.
            Some("57P03" | "57P01" | "53300" | "1040" | "08004") => Verdict::Retry,
            _ => Verdict::Fatal(Kind::Failed),
        },
        _ => Verdict::Fatal(Kind::Failed),
    }
}

/// What the directory and the history say together.
struct Plan<'a> {
    pending: Vec<&'a Local>,
    /// Applied versions that no file here has (a newer release's migrations).
    ahead: Vec<i64>,
    dirty: Option<i64>,
    mismatched: Vec<(&'a Local, Vec<u8>)>,
}

impl Plan<'_> {
    /// Every file applied and no failed one: nothing for this runner to do.
    fn complete(&self) -> bool {
        self.pending.is_empty() && self.dirty.is_none()
    }
}

fn plan<'a>(locals: &'a [Local], applied: &[Applied]) -> Plan<'a> {
    let by_version: std::collections::BTreeMap<i64, &Applied> = applied.iter().map(|a| (a.version, a)).collect();
    Plan {
        pending: locals.iter().filter(|l| !by_version.contains_key(&l.version)).collect(),
        ahead: applied.iter().filter(|a| a.success && !locals.iter().any(|l| l.version == a.version)).map(|a| a.version).collect(),
        dirty: applied.iter().find(|a| !a.success).map(|a| a.version),
        mismatched: locals
            .iter()
            .filter_map(|l| by_version.get(&l.version).filter(|a| a.success && a.checksum != l.checksum).map(|a| (l, a.checksum.clone())))
            .collect(),
    }
}

/// Problems that stop an apply (or a validate): a dirty row, changed files, a database ahead
/// under --strict.
fn check(plan: &Plan<'_>, locals: &[Local], args: &Args) -> Result<(), Error> {
    if let Some(version) = plan.dirty {
        let file = locals.iter().find(|l| l.version == version).map_or_else(|| format!("version {version}"), |l| l.file.clone());
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("{file} failed part-way on an earlier run and is marked dirty in _sqlx_migrations"))
            .with_hint(format!("repair the schema by hand to the state before or after {file}, then run: DELETE FROM _sqlx_migrations WHERE version = {version}")));
    }
    if let Some((local, applied)) = plan.mismatched.first() {
        let why = source::explain_mismatch(&args.source, local, applied);
        let others = if plan.mismatched.len() > 1 { format!(" (and {} more)", plan.mismatched.len() - 1) } else { String::new() };
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("{} was changed after it was applied{why}{others}", local.file))
            .with_hint("an applied migration must not change: restore it and put the change in a new migration"));
    }
    if !plan.ahead.is_empty() {
        let list: Vec<String> = plan.ahead.iter().map(ToString::to_string).collect();
        let message = format!("the database has migrations this image does not know: {} (a newer release applied them)", list.join(", "));
        if args.strict {
            return Err(Error::new(Kind::Failed, anyhow::anyhow!(message))
                .with_hint("deploy the newer release, or drop --strict to accept a rollback"));
        }
        tracing::warn!(ahead = %list.join(","), "{message}; continuing (--strict refuses)");
    }
    Ok(())
}

async fn status(db: &mut Db, locals: &[Local]) -> Result<(), Error> {
    let applied = db.applied().await?.unwrap_or_default();
    let plan = plan(locals, &applied);
    let mut out = String::new();
    for l in locals {
        let state = match applied.iter().find(|a| a.version == l.version) {
            Some(a) if !a.success => "dirty",
            Some(a) if a.checksum != l.checksum => "changed",
            Some(_) => "applied",
            None => "pending",
        };
        out.push_str(&format!("{state:8} {}\n", l.file));
    }
    for v in &plan.ahead {
        out.push_str(&format!("{:8} {v} (not in this directory)\n", "ahead"));
    }
    print(&out)?;
    let n = plan.pending.len();
    tracing::info!(applied = applied.len(), pending = n, "{} applied, {n} pending", applied.len());
    if n > 0 { Err(Error::new(Kind::Failed, anyhow::anyhow!("{n} migrations pending"))) } else { Ok(()) }
}

async fn validate(db: &mut Db, locals: &[Local], args: &Args) -> Result<(), Error> {
    let applied = db.applied().await?.unwrap_or_default();
    let plan = plan(locals, &applied);
    check(&plan, locals, args)?;
    let n = applied.len() - plan.ahead.len();
    tracing::info!(validated = n, "{n} applied migrations match their files");
    Ok(())
}

async fn apply(ctx: &Context, db: &mut Db, locals: &[Local], args: &Args) -> Result<(), Error> {
    let applied = db.applied().await?;
    let table_exists = applied.is_some();
    let applied = applied.unwrap_or_default();
    let plan = plan(locals, &applied);
    // Fast path: everything applied, nothing to lock.
    if table_exists && plan.complete() {
        check(&plan, locals, args)?;
        tracing::info!(applied = applied.len(), "up to date: {} migrations applied, nothing pending", applied.len());
        return Ok(());
    }
    if args.dry_run {
        check(&plan, locals, args)?;
        for l in &plan.pending {
            tracing::info!(version = l.version, file = %l.file, "would apply {}", l.file);
        }
        tracing::info!(pending = plan.pending.len(), "dry run: {} would be applied", plan.pending.len());
        return Ok(());
    }
    if lock(ctx, db, locals).await? == Locked::NotNeeded {
        tracing::info!("up to date: another runner applied everything");
        return Ok(());
    }
    let result = apply_locked(ctx, db, locals, args).await;
    let unlocked = db.unlock().await;
    match (result, unlocked) {
        (Ok(()), Ok(())) => Ok(()),
        (Ok(()), Err(e)) => Err(Error::from(e.context("releasing the migration lock"))),
        (Err(e), _) => Err(e),
    }
}

/// How the wait for the lock ended.
#[derive(Debug, PartialEq, Eq)]
enum Locked {
    /// We hold it.
    Held,
    /// While we waited, the holder applied everything: nothing to lock for.
    NotNeeded,
}

async fn lock(ctx: &Context, db: &mut Db, locals: &[Local]) -> Result<Locked, Error> {
    // A poll is a few cheap statements; polling often ends the wait soon after the holder.
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(250),
        attempt_timeout: Some(Duration::from_secs(10)),
        growth: retry::Growth::Doubling,
    };
    let db = tokio::sync::Mutex::new(db);
    retry::retry(
        ctx,
        "waiting for the migration lock",
        backoff,
        |err| if err.downcast_ref::<Busy>().is_some() { Verdict::Retry } else { Verdict::Fatal(Kind::Failed) },
        |_| async {
            let mut db = db.lock().await;
            if db.try_lock().await? {
                return Ok(Locked::Held);
            }
            // Committed history is safe to read without the lock: if it has every file, the
            // holder is done with our work and N waiters need not queue for the lock in turn.
            if let Some(applied) = db.applied().await? {
                let plan = plan(locals, &applied);
                if plan.complete() && plan.mismatched.is_empty() {
                    return Ok(Locked::NotNeeded);
                }
            }
            let holder = db.holder().await;
            Err(anyhow::Error::new(Busy(holder)))
        },
    )
    .await
    .map_err(|e| {
        if e.kind() == Kind::Timeout {
            e.with_hint(format!("a holder that died releases the lock within {}", db::DEAD_HOLDER_BOUND))
        } else {
            e
        }
    })
}

/// The lock is held by someone else.
#[derive(Debug)]
struct Busy(String);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "held by {}", self.0)
    }
}

impl std::error::Error for Busy {}

async fn apply_locked(ctx: &Context, db: &mut Db, locals: &[Local], args: &Args) -> Result<(), Error> {
    db.ensure_table().await?;
    // Under the lock: another replica may have applied everything meanwhile.
    let applied = db.applied().await?.unwrap_or_default();
    let plan = plan(locals, &applied);
    check(&plan, locals, args)?;
    if plan.pending.is_empty() {
        tracing::info!(applied = applied.len(), "up to date: another runner applied everything");
        return Ok(());
    }
    let highest = applied.iter().map(|a| a.version).max();
    let total = plan.pending.len();
    let started = std::time::Instant::now();
    for (i, m) in plan.pending.iter().enumerate() {
        if let Some(signal) = ctx.shutdown_signal() {
            return Err(podinit_core::context::interrupted(signal).context(format!("{i} of {total} migrations applied")));
        }
        if highest.is_some_and(|h| m.version < h) {
            tracing::warn!(version = m.version, file = %m.file, "{} is older than the newest applied migration; applying it out of order", m.file);
        }
        match db.apply(m).await {
            Ok(took) => {
                tracing::info!(version = m.version, file = %m.file, elapsed_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX), "applied {} in {}", m.file, humantime::format_duration(Duration::from_millis(u64::try_from(took.as_millis()).unwrap_or(0))));
            }
            Err(err) => return Err(apply_failure(db, m, err, i, total).await),
        }
    }
    tracing::info!(
        applied = total,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "{total} {} applied",
        if total == 1 { "migration" } else { "migrations" }
    );
    Ok(())
}

async fn apply_failure(db: &mut Db, m: &Local, err: ApplyError, done: usize, total: usize) -> Error {
    let (sql_err, ours) = match err {
        ApplyError::Sql(e) => (e, false),
        ApplyError::Other(e) => (e, true),
    };
    let where_ = statement_at(&sql_err, &m.sql).map_or_else(String::new, |(line, text)| format!(" at line {line} ({text})"));
    let reason = sql_reason(&sql_err);
    let what = if ours { "recording" } else { "applying" };
    let mut error =
        Error::new(Kind::Failed, anyhow::anyhow!("{what} {} failed{where_}: {reason} ({done} of {total} applied before it)", m.file));
    error = if db.backend == Backend::Mysql && db.is_dirty(m.version).await {
        error.with_hint(format!(
            "MySQL committed part of {} (DDL commits implicitly); repair the schema by hand, then run: DELETE FROM _sqlx_migrations WHERE version = {}",
            m.file, m.version
        ))
    } else if m.no_tx && db.backend != Backend::Mysql {
        error.with_hint(format!("{} ran without a transaction, so part of it may have taken effect: make it idempotent (IF NOT EXISTS; drop an INVALID index) and rerun", m.file))
    } else {
        error.with_hint(format!("nothing of {} was kept (rolled back): fix it and rerun", m.file))
    };
    error
}

/// For PostgreSQL errors that carry a position: the line number and that line's text.
fn statement_at(err: &sqlx::Error, sql: &str) -> Option<(usize, String)> {
    let db = err.as_database_error()?;
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    let sqlx::postgres::PgErrorPosition::Original(pos) = pg.position()? else { return None };
    let offset = sql.char_indices().nth(pos.saturating_sub(1)).map_or(sql.len(), |(i, _)| i);
    let line = sql[..offset].matches('\n').count() + 1;
    let text = sql.lines().nth(line - 1).unwrap_or("").trim().chars().take(120).collect();
    Some((line, text))
}

fn print(text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Error::new(Kind::Failed, anyhow::Error::new(e).context("writing to stdout")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_waiting_can_fix_is_retried() {
        let connect = |e: sqlx::Error| anyhow::Error::new(ConnectError(e));
        assert_eq!(classify_connect(&connect(sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()))), Verdict::Retry);
        assert_eq!(classify_connect(&connect(sqlx::Error::Configuration("bad".into()))), Verdict::Fatal(Kind::Usage));
        assert_eq!(classify_connect(&connect(sqlx::Error::RowNotFound)), Verdict::Fatal(Kind::Failed));
        // An error that is not a connection error (a bug, a surprise) ends the run at once.
        assert_eq!(classify_connect(&anyhow::anyhow!("something unforeseen")), Verdict::Fatal(Kind::Failed));
    }
}

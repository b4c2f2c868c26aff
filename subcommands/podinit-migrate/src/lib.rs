//! `podinit migrate`: sqlx-compatible schema migrations, safe when N replicas start at once.
//!
//! Connect (waiting for the database through the retry helper), compare the directory with
//! `_sqlx_migrations`; when nothing is pending, exit without taking the lock. Otherwise take
//! the migration lock by polling a try-lock (logging who holds it), re-read the history under
//! the lock (a waiter finds the winner's work and exits 0), apply what is pending one file
//! at a time, and release the lock on every path. The history table, checksums and lock keys
//! are sqlx's, so an app that also runs `sqlx::migrate!()` agrees with podinit.
//!
//! Around that: other tools' file formats (`formats`), taking over their history under the
//! same lock (`adopt`, `--adopt TOOL`), `repair VERSION --mark-applied|--forget` for a
//! failed version, `--history-table` (a table and lock per service) and `--create-database`.
//!
//! ```yaml
//! initContainers:
//!   - name: migrate
//!     image: podinit
//!     args: ["migrate", "--source", "/migrations", "--timeout", "5m"]
//!     env: [{ name: DATABASE_URL, valueFrom: { secretKeyRef: { name: db, key: url } } }]
//!     volumeMounts: [{ name: migrations, mountPath: /migrations }]
//! ```

mod adopt;
mod db;
mod formats;
mod source;

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use podinit_core::retry::{self, Backoff, Verdict};
use podinit_core::{Context, Error, Kind};

pub use crate::adopt::{OutOfOrder, Tool};
use crate::db::{Applied, ApplyError, Backend, Db, History, sql_reason};
pub use crate::formats::Format;
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
`-- no-transaction` runs outside a transaction (e.g. CREATE INDEX CONCURRENTLY). Other tools'
files (--format) run as those tools run them: only the up part, never a down section.

Examples:
  podinit migrate --database-url postgres://app@db/app --database-password-file /secrets/pw --source /migrations
  DATABASE_URL=mysql://app:pw@db/app podinit migrate status --source /migrations
  podinit migrate --adopt dbmate --source /db/migrations      (take over dbmate's history, then apply the rest)
  podinit migrate repair 3 --forget --source /migrations      (after undoing a failed migration by hand)")]
pub struct Args {
    /// What to do.
    #[arg(value_enum, default_value_t = Mode::Apply)]
    pub mode: Mode,

    /// For `repair`: the version whose history row to repair.
    #[arg(value_name = "VERSION", allow_negative_numbers = true)]
    pub version: Option<i64>,

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

    /// The format of the files in --source: sqlx, golang-migrate, goose, dbmate or flyway
    /// (default: --adopt's tool, else sqlx).
    #[arg(long, env = "PODINIT_MIGRATE_FORMAT", value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Take over the history TOOL wrote (golang-migrate, goose, dbmate, flyway): record what it
    /// applied in podinit's history, then apply the rest. Implies --format TOOL.
    #[arg(long, env = "PODINIT_MIGRATE_ADOPT", value_enum, value_name = "TOOL")]
    pub adopt: Option<Tool>,

    /// When adopting: what to do with files older than the newest version TOOL applied that it
    /// never applied: refuse (default) or apply.
    #[arg(long, env = "PODINIT_MIGRATE_OUT_OF_ORDER", value_enum, value_name = "WHAT")]
    pub out_of_order: Option<OutOfOrder>,

    /// When adopting: the name TOOL's history table was given (goose -table, Flyway table,
    /// dbmate --migrations-table, golang-migrate x-migrations-table) [default: the tool's].
    #[arg(long, env = "PODINIT_MIGRATE_ADOPT_TABLE", value_name = "NAME")]
    pub adopt_table: Option<String>,

    /// The history table, [SCHEMA.]NAME (a schema on PostgreSQL only, created if missing): two
    /// services with their own migrations share a database with a table each; the lock follows
    /// the table. The default is sqlx's table and lock.
    #[arg(long, env = "PODINIT_MIGRATE_HISTORY_TABLE", value_name = "NAME", default_value = db::SQLX_TABLE)]
    pub history_table: String,

    /// Create the URL's database when it does not exist (PostgreSQL, MySQL/MariaDB; SQLite:
    /// the file), safe when N replicas do it at once.
    #[arg(long, env = "PODINIT_MIGRATE_CREATE_DATABASE", value_parser = BoolishValueParser::new())]
    pub create_database: bool,

    /// For `repair`: record VERSION as applied (it was completed by hand).
    #[arg(long, conflicts_with = "forget")]
    pub mark_applied: bool,

    /// For `repair`: remove VERSION's row, so it runs again (it was undone by hand).
    #[arg(long)]
    pub forget: bool,

    /// For `repair`: also change a row that did not fail (an applied one, or none).
    #[arg(long)]
    pub force: bool,
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
    /// Repair VERSION's history row: --mark-applied or --forget (after a fix by hand).
    Repair,
}

/// Runs `podinit migrate` to completion.
pub async fn run(ctx: &Context, args: Args) -> Result<(), Error> {
    let url = database_url(&args)?;
    let shown = podinit_core::redact::url(&url);
    let backend = Backend::of(&url).ok_or_else(|| {
        Error::usage(format!("--database-url {shown}: unknown scheme '{}'", url.scheme()))
            .with_hint("use postgres://, mysql:// or sqlite://")
    })?;
    let history = History::parse(&args.history_table, backend).map_err(|why| Error::usage(format!("--history-table {why}")))?;
    if args.adopt_table.is_some() && args.adopt.is_none() {
        return Err(Error::usage("--adopt-table names the table --adopt reads: it needs --adopt TOOL"));
    }
    if let Some(table) = &args.adopt_table
        && !adopt::is_plain_name(table)
    {
        return Err(Error::usage(format!("--adopt-table '{table}': not a plain table name (lower-case letters, digits, _; at most 63)"))
            .with_hint("a table whose name has upper case or other characters is not adopted; rename it first"));
    }
    if let Some(tool) = args.adopt.filter(|t| history.schema.is_none() && history.table == adopted_table(&args, *t)) {
        return Err(Error::usage(format!("--history-table {}: that is {}'s own table, which --adopt reads", history.table, tool.name()))
            .with_hint("give podinit's history another name, or keep the default"));
    }
    let format = format_of(&args)?;
    let repair = repair_args(&args)?;
    let mut locals = source::load(&args.source, format).await?;
    if format == Format::GolangMigrate && backend == Backend::Sqlite {
        // golang-migrate's sqlite3 driver wraps each file in a transaction; its PostgreSQL
        // driver does not (the file is one implicit transaction there).
        locals.iter_mut().for_each(|l| l.no_tx = false);
    }
    let mut db = connect(ctx, &url, &shown, backend, &history, args.create_database).await?;
    let result = match (args.mode, repair) {
        (Mode::Status, _) => status(&mut db, &locals, &args).await,
        (Mode::Validate, _) => validate(&mut db, &locals, &args).await,
        (Mode::Apply, _) => apply(ctx, &mut db, &locals, &args).await,
        (Mode::Repair, Some(repair)) => repair_row(ctx, &mut db, &locals, repair).await,
        (Mode::Repair, None) => Err(Error::usage("repair needs VERSION and --mark-applied or --forget")),
    };
    db.close().await;
    result
}

/// The directory's format: --format, else --adopt's tool, else sqlx.
fn format_of(args: &Args) -> Result<Format, Error> {
    if args.out_of_order.is_some() && args.adopt.is_none() {
        return Err(Error::usage("--out-of-order is about adopting: it needs --adopt TOOL"));
    }
    match (args.format, args.adopt) {
        (Some(format), Some(tool)) if format != tool.format() => Err(Error::usage(format!(
            "--format {} and --adopt {}: adopting {} means reading its files",
            format.name(),
            tool.name(),
            tool.name()
        ))
        .with_hint("drop --format; --adopt sets it")),
        (Some(format), _) => Ok(format),
        (None, Some(tool)) => Ok(tool.format()),
        (None, None) => Ok(Format::Sqlx),
    }
}

/// What `repair` was asked to do.
#[derive(Clone, Copy, Debug)]
struct Repair {
    version: i64,
    mark_applied: bool,
    force: bool,
}

/// `repair VERSION --mark-applied|--forget [--force]`, checked before connecting; the repair
/// flags anywhere else are usage errors.
fn repair_args(args: &Args) -> Result<Option<Repair>, Error> {
    if args.mode != Mode::Repair {
        if let Some(version) = args.version {
            return Err(Error::usage(format!("unexpected argument '{version}': only repair takes a VERSION")));
        }
        if args.mark_applied || args.forget || args.force {
            return Err(Error::usage("--mark-applied, --forget and --force belong to repair")
                .with_hint("podinit migrate repair VERSION --mark-applied|--forget [--force]"));
        }
        return Ok(None);
    }
    let Some(version) = args.version else {
        return Err(Error::usage("repair needs the VERSION to repair").with_hint("podinit migrate repair VERSION --mark-applied|--forget"));
    };
    if !args.mark_applied && !args.forget {
        return Err(Error::usage(format!(
            "repair {version}: say what to do: --mark-applied (it was completed by hand) or --forget (it was undone, run it again)"
        )));
    }
    if args.adopt.is_some() {
        return Err(Error::usage("repair works on podinit's own history; --adopt does not apply"));
    }
    Ok(Some(Repair { version, mark_applied: args.mark_applied, force: args.force }))
}

fn database_url(args: &Args) -> Result<url::Url, Error> {
    let mut url = url::Url::parse(&args.database_url).map_err(|e| {
        Error::usage(format!("--database-url (DATABASE_URL) is not a URL: {e}")).with_hint("e.g. postgres://app@db:5432/app")
    })?;
    if args.create_database && url.scheme() == "sqlite" && !url.query_pairs().any(|(k, _)| k == "mode") {
        url.query_pairs_mut().append_pair("mode", "rwc");
    }
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
async fn connect(ctx: &Context, url: &url::Url, shown: &str, backend: Backend, history: &History, create: bool) -> Result<Db, Error> {
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        attempt_timeout: Some(Duration::from_secs(10)),
        growth: retry::Growth::Doubling,
    };
    let what = format!("connecting to {shown}");
    retry::retry(ctx, &what, backoff, classify_connect, |_| async {
        match Db::connect(url, backend, history).await {
            Err(err) if create && db::is_missing_database(&err) => {
                if db::create_database(url, backend).await.map_err(|e| anyhow::Error::new(ConnectError(e)))? {
                    tracing::info!("created the database {}", db::database_name(url));
                }
                Db::connect(url, backend, history).await.map_err(|e| anyhow::Error::new(ConnectError(e)))
            }
            other => other.map_err(|e| anyhow::Error::new(ConnectError(e))),
        }
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

impl<'a> Plan<'a> {
    /// The plan once `adopted` are recorded: they are no longer pending.
    fn without(self, adopted: &[&Local]) -> Self {
        Plan { pending: self.pending.into_iter().filter(|l| !adopted.iter().any(|a| a.version == l.version)).collect(), ..self }
    }

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
        return Err(Error::new(
            Kind::Failed,
            anyhow::anyhow!("{file} failed part-way on an earlier run and is marked dirty in {}", args.history_table),
        )
        .with_hint(repair_hint(&file, version)));
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

/// What to do about a half-applied file.
fn repair_hint(file: &str, version: i64) -> String {
    format!(
        "repair the schema by hand, then run `podinit migrate repair {version} --mark-applied` if you completed {file}, or `podinit migrate repair {version} --forget` if you undid it (it runs again)"
    )
}

/// One line per file; with `--adopt`, files the other tool applied and podinit's history does
/// not have yet are `adopt` (the next apply records them without running them), and a history
/// that would be refused is reported as apply would.
async fn status(db: &mut Db, locals: &[Local], args: &Args) -> Result<(), Error> {
    let applied = db.applied().await?.unwrap_or_default();
    let adopted = match args.adopt {
        Some(tool) => adoptable(db, tool, locals, &applied, args).await?,
        None => Vec::new(),
    };
    let plan = plan(locals, &applied);
    let plan = plan.without(&adopted);
    let mut out = String::new();
    for l in locals {
        let state = match applied.iter().find(|a| a.version == l.version) {
            Some(a) if !a.success => "dirty",
            Some(a) if a.checksum != l.checksum => "changed",
            Some(_) => "applied",
            None if adopted.iter().any(|a| a.version == l.version) => "adopt",
            None => "pending",
        };
        out.push_str(&format!("{state:8} {}\n", l.file));
    }
    for v in &plan.ahead {
        out.push_str(&format!("{:8} {v} (not in this directory)\n", "ahead"));
    }
    print(&out)?;
    let n = plan.pending.len();
    if adopted.is_empty() {
        tracing::info!(applied = applied.len(), pending = n, "{} applied, {n} pending", applied.len());
    } else {
        tracing::info!(
            applied = applied.len(),
            adopt = adopted.len(),
            pending = n,
            "{} applied, {} to adopt, {n} pending",
            applied.len(),
            adopted.len()
        );
    }
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
        let adopted = match args.adopt {
            Some(tool) => adoptable(db, tool, locals, &applied, args).await?,
            None => Vec::new(),
        };
        let plan = plan.without(&adopted);
        check(&plan, locals, args)?;
        for l in &adopted {
            tracing::info!(version = l.version, file = %l.file, "would adopt {} (applied by {})", l.file, args.adopt.map_or("", Tool::name));
        }
        for l in &plan.pending {
            tracing::info!(version = l.version, file = %l.file, "would apply {}", l.file);
        }
        tracing::info!(pending = plan.pending.len(), "dry run: {} would be applied", plan.pending.len());
        return Ok(());
    }
    if let Some(tool) = args.adopt {
        // A run of the tool itself (an old deployment still rolling out) must not migrate
        // while podinit adopts and applies: hold its lock too.
        let locks = adopt::tool_locks(db, tool, adopted_table(args, tool)).await?;
        if !locks.is_empty() {
            let names: Vec<String> = locks.iter().map(|l| l.lock.to_string()).collect();
            tracing::debug!("also taking {}'s locks: {}", tool.name(), names.join(", "));
        }
        db.add_foreign_locks(locks);
    }
    if lock(ctx, db, Some(locals)).await? == Locked::NotNeeded {
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

/// Waits for the lock. With `locals`, a waiter that finds every file applied stops waiting.
async fn lock(ctx: &Context, db: &mut Db, locals: Option<&[Local]>) -> Result<Locked, Error> {
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
            if let Some(locals) = locals
                && let Some(applied) = db.applied().await?
            {
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

/// `repair VERSION --mark-applied|--forget`, under the lock: refuses a row that did not fail
/// unless `--force`, and logs what it changed.
async fn repair_row(ctx: &Context, db: &mut Db, locals: &[Local], repair: Repair) -> Result<(), Error> {
    lock(ctx, db, None).await?;
    let result = repair_locked(db, locals, repair).await;
    let unlocked = db.unlock().await;
    match (result, unlocked) {
        (Ok(()), Ok(())) => Ok(()),
        (Ok(()), Err(e)) => Err(Error::from(e.context("releasing the migration lock"))),
        (Err(e), _) => Err(e),
    }
}

async fn repair_locked(db: &mut Db, locals: &[Local], repair: Repair) -> Result<(), Error> {
    let version = repair.version;
    let row = db.applied().await?.unwrap_or_default().into_iter().find(|a| a.version == version);
    let local = locals.iter().find(|l| l.version == version);
    let file = local.map_or_else(|| format!("version {version}"), |l| l.file.clone());
    let was = match &row {
        None => "none: it is pending",
        Some(a) if !a.success => "failed",
        Some(a) if local.is_some_and(|l| l.checksum != a.checksum) => "applied, with another checksum",
        Some(_) => "applied",
    };
    let refuse = |what: &str| {
        Err(Error::usage(format!("repair {version}: {file} did not fail (its row: {was}); {what}"))
            .with_hint("add --force if that is really what you want"))
    };
    if repair.mark_applied {
        let Some(local) = local else {
            return Err(Error::usage(format!("repair {version} --mark-applied: no file with version {version} in --source"))
                .with_hint("the row records the file's checksum: mount the directory that has it"));
        };
        match &row {
            Some(a) if a.success && a.checksum == local.checksum => {
                tracing::info!(version, "{file} is already recorded as applied: nothing to repair");
                return Ok(());
            }
            Some(a) if !a.success => {}
            _ if repair.force => {}
            None => return refuse("--mark-applied would record it as applied without running it"),
            Some(_) => return refuse("--mark-applied would replace its checksum with the file's"),
        }
        db.ensure_table().await?;
        db.mark_applied(local, row.is_some()).await.map_err(|e| Error::from(e.context(format!("marking {file} applied"))))?;
        tracing::info!(version, was, "repaired: {file} is now recorded as applied (was: {was})");
    } else {
        match &row {
            None => {
                return Err(Error::usage(format!("repair {version} --forget: the history has no row for {file}: nothing to forget")));
            }
            Some(a) if !a.success => {}
            Some(_) if repair.force => {}
            Some(_) => return refuse("--forget would make it run again"),
        }
        db.forget(version).await.map_err(|e| Error::from(e.context(format!("forgetting {file}"))))?;
        tracing::info!(version, was, "repaired: the row of {file} is removed (was: {was}); the next run applies it");
    }
    Ok(())
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

/// The table `tool`'s history is in: --adopt-table, else the tool's own name for it.
fn adopted_table(args: &Args, tool: Tool) -> &str {
    args.adopt_table.as_deref().unwrap_or(tool.table())
}

/// The files another tool applied and podinit's history does not have yet, or why not.
async fn adoptable<'a>(db: &mut Db, tool: Tool, locals: &'a [Local], applied: &[Applied], args: &Args) -> Result<Vec<&'a Local>, Error> {
    let table = adopted_table(args, tool);
    match adopt::read(db, tool, table).await? {
        Some(foreign) => adopt::reconcile(tool, table, &foreign, locals, applied, args.out_of_order.unwrap_or(OutOfOrder::Refuse)),
        // A table named with --adopt-table must be there: a typo would apply every file again.
        None if args.adopt_table.is_some() => Err(Error::usage(format!("--adopt-table {table}: no such table in this database"))
            .with_hint(
                "check the name (and the schema the database URL selects); without --adopt-table a missing history means a new database",
            )),
        None => {
            tracing::info!("no {} history table ({table}) in this database: nothing to adopt", tool.name());
            Ok(Vec::new())
        }
    }
}

async fn apply_locked(ctx: &Context, db: &mut Db, locals: &[Local], args: &Args) -> Result<(), Error> {
    if let Some(tool) = args.adopt {
        // Decide before creating anything, so a refusal changes nothing.
        let applied = db.applied().await?.unwrap_or_default();
        let adopted = adoptable(db, tool, locals, &applied, args).await?;
        db.ensure_table().await?;
        if !adopted.is_empty() {
            db.record_adopted(&adopted).await.map_err(|e| Error::from(e.context(format!("recording what {} applied", tool.name()))))?;
            let first = adopted.first().map_or(0, |l| l.version);
            let last = adopted.last().map_or(0, |l| l.version);
            tracing::info!(
                adopted = adopted.len(),
                first,
                last,
                "adopted {} migrations {} applied ({first} to {last})",
                adopted.len(),
                tool.name()
            );
        }
    }
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
    let (sql_err, ours, statement) = match err {
        ApplyError::Sql(e) => (e, false, None),
        ApplyError::Statement { index, err } => (err, false, Some(index)),
        ApplyError::Other(e) => (e, true, None),
    };
    let failed = match (statement, &m.statements) {
        (Some(index), Some(all)) => all.get(index).map(|text| (index, all.len(), text)),
        _ => None,
    };
    let where_ = match failed {
        Some((index, count, text)) => {
            let first = text.lines().next().unwrap_or("").trim().chars().take(120).collect::<String>();
            format!(" at statement {} of {count} ({first}), after {index} that stay applied", index + 1)
        }
        _ => statement_at(&sql_err, &m.sql).map_or_else(String::new, |(line, text)| format!(" at line {line} ({text})")),
    };
    let reason = sql_reason(&sql_err);
    let what = if ours { "recording" } else { "applying" };
    let mut error =
        Error::new(Kind::Failed, anyhow::anyhow!("{what} {} failed{where_}: {reason} ({done} of {total} applied before it)", m.file));
    error = if db.backend == Backend::Mysql && db.is_dirty(m.version).await {
        error.with_hint(format!("MySQL committed part of {} (DDL commits implicitly); {}", m.file, repair_hint(&m.file, m.version)))
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

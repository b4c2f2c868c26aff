//! The database side: one dedicated connection (never a pool, so the session lock and the
//! session are the same thing), sqlx's history table, and a lock that is really taken.
//!
//! PostgreSQL: `pg_try_advisory_lock` polled (a waiter blocked in `pg_advisory_lock` holds a
//! snapshot and deadlocks a holder running `CREATE INDEX CONCURRENTLY`), server-side TCP
//! keepalives and `client_connection_check_interval` so a dead holder's session ends within
//! seconds, even mid-statement. MySQL/MariaDB: `GET_LOCK(name, 0)`
//! polled and its result checked (MariaDB rejects sqlx's `GET_LOCK(name, -1)` and returns NULL:
//! no lock), `wait_timeout` 60 s on the session. SQLite: an flock beside the database file.
//! Lock keys are sqlx's, so podinit and an app running `sqlx::migrate!()` exclude each other.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, AssertSqlSafe, Connection as _, Executor as _};

use crate::source::Local;

/// Which SQL dialect the URL speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    Mysql,
    Sqlite,
}

impl Backend {
    pub(crate) fn of(url: &url::Url) -> Option<Self> {
        match url.scheme() {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::Mysql),
            "sqlite" => Some(Self::Sqlite),
            _ => None,
        }
    }
}

/// Where podinit keeps its history: `_sqlx_migrations` (sqlx's), or `--history-table
/// [SCHEMA.]NAME` so that several services with their own migrations share one database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct History {
    /// PostgreSQL only; created if missing.
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
}

/// sqlx's table name: the default, with sqlx's lock key.
pub(crate) const SQLX_TABLE: &str = "_sqlx_migrations";

impl History {
    /// `NAME` or (PostgreSQL) `SCHEMA.NAME`: lower-case letters, digits and `_`, not starting
    /// with a digit, at most 63 bytes each, so the name is the same quoted or not.
    pub(crate) fn parse(text: &str, backend: Backend) -> Result<Self, String> {
        let ident = |part: &str| {
            !part.is_empty()
                && part.len() <= 63
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let (schema, table) = match text.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, text),
        };
        if !ident(table) || schema.is_some_and(|s| !ident(s)) {
            return Err(format!("'{text}' is not a table name: use lower-case letters, digits and _ ([SCHEMA.]NAME)"));
        }
        if schema.is_some() && backend != Backend::Postgres {
            return Err(format!("'{text}': a schema is for PostgreSQL; on MySQL/MariaDB and SQLite give the table name alone"));
        }
        Ok(Self { schema: schema.map(str::to_owned), table: table.to_owned() })
    }

    /// The name as SQL writes it.
    pub(crate) fn qualified(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.table),
            None => self.table.clone(),
        }
    }

    fn is_sqlx(&self) -> bool {
        self.schema.is_none() && self.table == SQLX_TABLE
    }

    /// The lock key: sqlx's (from the database name) for sqlx's table, so podinit and an app
    /// running `sqlx::migrate!()` exclude each other; for another table, from the database and
    /// the table, so two services with their own tables do not wait for each other.
    pub(crate) fn lock_key(&self, database: &str) -> i64 {
        if self.is_sqlx() { lock_id(database) } else { lock_id(&format!("{database}/{}", self.qualified())) }
    }
}

/// A lock held on the server for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServerLock {
    /// PostgreSQL: `pg_try_advisory_lock(KEY)`.
    Advisory(i64),
    /// MySQL/MariaDB: `GET_LOCK(NAME, 0)`.
    Named(String),
}

impl std::fmt::Display for ServerLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Advisory(key) => write!(f, "advisory lock {key}"),
            Self::Named(name) => write!(f, "named lock '{name}'"),
        }
    }
}

/// Another tool's lock, taken while adopting its history so it cannot migrate at the same time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ForeignLock {
    pub(crate) tool: &'static str,
    pub(crate) lock: ServerLock,
}

/// A row of the history table.
#[derive(Clone, Debug)]
pub(crate) struct Applied {
    pub(crate) version: i64,
    pub(crate) success: bool,
    pub(crate) checksum: Vec<u8>,
}

pub(crate) struct Db {
    pub(crate) backend: Backend,
    pub(crate) history: History,
    conn: AnyConnection,
    /// The database's name (PostgreSQL `current_database()`, MySQL `DATABASE()`; SQLite: empty).
    pub(crate) database: String,
    /// podinit's lock on the server (PostgreSQL, MySQL/MariaDB), from the database name as
    /// sqlx derives it; SQLite locks a file instead.
    own_lock: Option<ServerLock>,
    /// Other tools' locks, taken after podinit's and released before it (`--adopt`).
    foreign_locks: Vec<ForeignLock>,
    /// Which lock the last failed `try_lock` found taken: `None` podinit's, else a foreign one.
    busy: Option<usize>,
    sqlite_lock: Option<nix::fcntl::Flock<std::fs::File>>,
    sqlite_path: Option<std::path::PathBuf>,
}

/// How long a dead holder can keep the lock: the server-side bound we set on our session.
pub(crate) const DEAD_HOLDER_BOUND: &str = "about 1 s on PostgreSQL ≥ 14 when the holder's process dies (client_connection_check_interval), 25 s when its node does (TCP keepalives); \
     on MySQL/MariaDB when its statement ends, or 60 s of silence (wait_timeout)";

impl Db {
    /// One connection attempt.
    pub(crate) async fn connect(url: &url::Url, backend: Backend, history: &History) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let mut text = url.to_string();
        if backend == Backend::Mysql && url.scheme() == "mariadb" {
            text = format!("mysql{}", &text["mariadb".len()..]);
        }
        let options: AnyConnectOptions = text.parse()?;
        let mut conn = AnyConnection::connect_with(&options).await?;
        let database = match backend {
            Backend::Postgres => {
                conn.execute("SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3; SET application_name = 'podinit migrate'").await?;
                // PostgreSQL ≥ 14: notice a vanished client during a long statement too, so a
                // killed holder's session (and lock) ends within a second, not when its
                // statement finishes. Older servers lack the setting; keepalives still apply.
                let _ = conn.execute("SET client_connection_check_interval = '1s'").await;
                sqlx::query_scalar::<_, String>("SELECT CAST(current_database() AS TEXT)").fetch_one(&mut conn).await?
            }
            Backend::Mysql => {
                conn.execute("SET SESSION wait_timeout = 60").await?;
                sqlx::query_scalar::<_, String>("SELECT DATABASE()").fetch_one(&mut conn).await?
            }
            Backend::Sqlite => String::new(),
        };
        let lock_key = history.lock_key(&database);
        let own_lock = match backend {
            Backend::Postgres => Some(ServerLock::Advisory(lock_key)),
            // sqlx's MySQL lock name: the key in hex.
            Backend::Mysql => Some(ServerLock::Named(format!("{lock_key:x}"))),
            Backend::Sqlite => None,
        };
        Ok(Self {
            backend,
            history: history.clone(),
            conn,
            database,
            own_lock,
            foreign_locks: Vec::new(),
            busy: None,
            sqlite_lock: None,
            sqlite_path: (backend == Backend::Sqlite).then(|| sqlite_file(url)),
        })
    }

    /// Whether `table` exists where unqualified names find it (PostgreSQL: the search path).
    pub(crate) async fn table_exists(&mut self, table: &str) -> anyhow::Result<bool> {
        self.table_in(None, table).await
    }

    /// Whether `table` exists in `schema` (PostgreSQL), or where unqualified names find it.
    async fn table_in(&mut self, schema: Option<&str>, table: &str) -> anyhow::Result<bool> {
        let sql = match (self.backend, schema) {
            (Backend::Postgres, None) => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = $1 AND schemaname = ANY (current_schemas(false))"
            }
            (Backend::Postgres, Some(_)) => "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = $1 AND schemaname = $2",
            (Backend::Mysql, _) => "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
            (Backend::Sqlite, _) => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        };
        let mut query = sqlx::query_scalar(sql).bind(table);
        if let Some(schema) = schema {
            query = query.bind(schema);
        }
        let n: i64 = query.fetch_one(&mut self.conn).await.map_err(clean).with_context(|| format!("looking for {table}"))?;
        Ok(n > 0)
    }

    /// A statement about the history table: `_sqlx_migrations` in `template` becomes its name
    /// (checked by `History::parse`: nothing but an identifier).
    fn q(&self, template: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(template.replace(SQLX_TABLE, &self.history.qualified()))
    }

    /// Whether `table` has `column`.
    pub(crate) async fn column_exists(&mut self, table: &str, column: &str) -> anyhow::Result<bool> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2 AND table_schema = ANY (current_schemas(false))"
            }
            Backend::Mysql => {
                "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?"
            }
            Backend::Sqlite => "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?",
        };
        let n: i64 = sqlx::query_scalar(sql)
            .bind(table)
            .bind(column)
            .fetch_one(&mut self.conn)
            .await
            .map_err(clean)
            .with_context(|| format!("looking at the columns of {table}"))?;
        Ok(n > 0)
    }

    /// Rows of two integers from a query podinit wrote (another tool's history).
    pub(crate) async fn query_pairs(&mut self, sql: &str) -> anyhow::Result<Vec<(i64, i64)>> {
        sqlx::query_as(AssertSqlSafe(sql.to_owned())).fetch_all(&mut self.conn).await.map_err(clean)
    }

    /// One text column from a query podinit wrote.
    pub(crate) async fn query_texts(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        sqlx::query_scalar(AssertSqlSafe(sql.to_owned())).fetch_all(&mut self.conn).await.map_err(clean)
    }

    /// Flyway's history: version (NULL for repeatable rows), type, script, success, checksum.
    pub(crate) async fn query_flyway(&mut self, sql: &str) -> anyhow::Result<Vec<FlywayRow>> {
        sqlx::query_as(AssertSqlSafe(sql.to_owned())).fetch_all(&mut self.conn).await.map_err(clean)
    }

    /// The history, or `None` when the table does not exist yet.
    pub(crate) async fn applied(&mut self) -> anyhow::Result<Option<Vec<Applied>>> {
        let history = self.history.clone();
        if !self.table_in(history.schema.as_deref(), &history.table).await? {
            return Ok(None);
        }
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT version, (CASE WHEN success THEN 1 ELSE 0 END)::INT8, checksum FROM _sqlx_migrations ORDER BY version"
            }
            Backend::Mysql => "SELECT version, CAST(success AS SIGNED), checksum FROM _sqlx_migrations ORDER BY version",
            Backend::Sqlite => "SELECT version, CAST(success AS INTEGER), checksum FROM _sqlx_migrations ORDER BY version",
        };
        let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(self.q(sql))
            .fetch_all(&mut self.conn)
            .await
            .map_err(clean)
            .with_context(|| format!("reading {}", history.qualified()))?;
        Ok(Some(rows.into_iter().map(|(version, success, checksum)| Applied { version, success: success != 0, checksum }).collect()))
    }

    /// sqlx's table, created if missing (under the lock).
    pub(crate) async fn ensure_table(&mut self) -> anyhow::Result<()> {
        let sql = match self.backend {
            Backend::Postgres => {
                "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)"
            }
            Backend::Mysql => {
                "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)"
            }
            Backend::Sqlite => {
                "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)"
            }
        };
        let shown = self.history.qualified();
        if let Some(schema) = self.history.schema.clone() {
            self.conn
                .execute(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
                .await
                .map_err(clean)
                .with_context(|| format!("creating the schema {schema}"))?;
        }
        let sql = self.q(sql);
        self.conn.execute(sql).await.map_err(clean).with_context(|| format!("creating {shown}"))?;
        Ok(())
    }

    /// Also takes `locks` whenever podinit's lock is taken (another tool's, while adopting).
    pub(crate) fn add_foreign_locks(&mut self, locks: Vec<ForeignLock>) {
        self.foreign_locks.extend(locks);
    }

    /// One non-blocking attempt at the lock, and then at each foreign lock: `Ok(true)` when
    /// all are taken. When one is not, those taken are released again (never holding podinit's
    /// lock while waiting for another tool's), and `holder` names the one that was busy.
    pub(crate) async fn try_lock(&mut self) -> anyhow::Result<bool> {
        let Some(own) = self.own_lock.clone() else {
            return self.try_lock_file();
        };
        self.busy = None;
        if !self.try_server(&own).await? {
            return Ok(false);
        }
        for i in 0..self.foreign_locks.len() {
            let lock = self.foreign_locks[i].lock.clone();
            let taken = self.try_server(&lock).await;
            if !matches!(taken, Ok(true)) {
                self.busy = Some(i);
                let released = self.release_from(i).await;
                let taken = taken.with_context(|| format!("taking {}'s lock ({lock})", self.foreign_locks[i].tool))?;
                released?;
                return Ok(taken);
            }
        }
        Ok(true)
    }

    /// SQLite: an flock on a file beside the database.
    fn try_lock_file(&mut self) -> anyhow::Result<bool> {
        let path = self.sqlite_path.clone().unwrap_or_default();
        let lock_path = if self.history.is_sqlx() {
            path.with_extension("podinit-migrate.lock")
        } else {
            path.with_extension(format!("podinit-migrate.{}.lock", self.history.table))
        };
        let file = podinit_core::fs::open_lock_file(&lock_path)
            .map_err(|e| podinit_core::fs::io_error(e, format!("opening the lock file {}", lock_path.display())))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                self.sqlite_lock = Some(lock);
                Ok(true)
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(false),
            Err((_, err)) => Err(anyhow!("locking {}: {}", lock_path.display(), err.desc())),
        }
    }

    /// One non-blocking attempt at one server lock.
    async fn try_server(&mut self, lock: &ServerLock) -> anyhow::Result<bool> {
        match lock {
            ServerLock::Advisory(key) => Ok(sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut self.conn)
                .await
                .map_err(clean)?),
            ServerLock::Named(name) => {
                // 1 = taken, 0 = held by another session, NULL = error: never "assume taken".
                let got: Option<i64> = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, 0) AS SIGNED)")
                    .bind(name)
                    .fetch_one(&mut self.conn)
                    .await
                    .map_err(clean)?;
                match got {
                    Some(1) => Ok(true),
                    Some(_) => Ok(false),
                    None => bail!("GET_LOCK('{name}', 0) returned NULL: the server did not take the lock"),
                }
            }
        }
    }

    /// Releases one server lock; an error when this session did not hold it.
    async fn release_server(&mut self, lock: &ServerLock) -> anyhow::Result<()> {
        let released = match lock {
            ServerLock::Advisory(key) => {
                sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)").bind(key).fetch_one(&mut self.conn).await.map_err(clean)?
            }
            ServerLock::Named(name) => {
                let released: Option<i64> = sqlx::query_scalar("SELECT CAST(RELEASE_LOCK(?) AS SIGNED)")
                    .bind(name)
                    .fetch_one(&mut self.conn)
                    .await
                    .map_err(clean)?;
                released == Some(1)
            }
        };
        if !released {
            bail!("releasing {lock}: the lock was not held by this session");
        }
        Ok(())
    }

    /// Releases the foreign locks before `end` (latest first), then podinit's; every release
    /// is tried, the first error returned.
    async fn release_from(&mut self, end: usize) -> anyhow::Result<()> {
        let mut first = Ok(());
        for i in (0..end).rev() {
            let ForeignLock { tool, lock } = self.foreign_locks[i].clone();
            let released = self.release_server(&lock).await.with_context(|| format!("{tool}'s lock"));
            first = first.and(released);
        }
        if let Some(own) = self.own_lock.clone() {
            first = first.and(self.release_server(&own).await);
        }
        first
    }

    /// Who holds the lock `try_lock` found taken, for the log of a waiting replica.
    pub(crate) async fn holder(&mut self) -> String {
        let (lock, tool) = match (self.busy, &self.own_lock) {
            (Some(i), _) => (self.foreign_locks[i].lock.clone(), Some(self.foreign_locks[i].tool)),
            (None, Some(own)) => (own.clone(), None),
            (None, None) => return "another process (SQLite file lock)".into(),
        };
        let found: Result<Option<String>, sqlx::Error> = match &lock {
            ServerLock::Advisory(key) => {
                sqlx::query_scalar(
                    "SELECT concat('pid ', a.pid, ' (', coalesce(nullif(a.application_name, ''), 'no application name'), ', from ', coalesce(host(a.client_addr), 'local'), ', session since ', to_char(a.backend_start, 'HH24:MI:SS'), ')') \
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted AND l.classid = (($1 >> 32) & 4294967295)::oid AND l.objid = ($1 & 4294967295)::oid AND l.objsubid = 1 LIMIT 1",
                )
                .bind(key)
                .fetch_optional(&mut self.conn)
                .await
            }
            ServerLock::Named(name) => {
                sqlx::query_scalar(
                    "SELECT CONCAT('connection ', p.ID, ' (', p.USER, '@', p.HOST, ', ', p.TIME, ' s in state ', COALESCE(p.COMMAND, '?'), ')') FROM information_schema.PROCESSLIST p WHERE p.ID = IS_USED_LOCK(?)",
                )
                .bind(name)
                .fetch_optional(&mut self.conn)
                .await
            }
        };
        let who = match found {
            Ok(Some(who)) => who,
            Ok(None) => "another session (it may be releasing it now)".into(),
            Err(err) => format!("another session (cannot tell which: {err})"),
        };
        match tool {
            Some(tool) => format!("{who}, on {tool}'s lock ({lock})"),
            None => who,
        }
    }

    /// Releases the lock (foreign ones first); errors are returned, never ignored silently.
    pub(crate) async fn unlock(&mut self) -> anyhow::Result<()> {
        if self.own_lock.is_none() {
            self.sqlite_lock = None;
            return Ok(());
        }
        self.release_from(self.foreign_locks.len()).await
    }

    /// Applies one migration and records it, as sqlx does: PostgreSQL and SQLite run the file
    /// and insert its row in one transaction (or without one for `-- no-transaction`);
    /// MySQL/MariaDB insert a `success = FALSE` row first, so a failure after an implicit
    /// commit (DDL) leaves a "dirty" row that says exactly which version broke.
    pub(crate) async fn apply(&mut self, m: &Local) -> Result<Duration, ApplyError> {
        let started = std::time::Instant::now();
        let sql = AssertSqlSafe(m.sql.clone());
        let table = self.history.qualified();
        match (self.backend, m.no_tx) {
            (Backend::Mysql, _) => {
                let insert = self.q(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, ?, FALSE, ?, -1)",
                );
                let update = self.q("UPDATE _sqlx_migrations SET success = TRUE WHERE version = ?");
                let mut tx = self.conn.begin().await.map_err(ApplyError::other)?;
                sqlx::query(insert)
                    .bind(m.version)
                    .bind(&m.description)
                    .bind(&m.checksum)
                    .execute(&mut *tx)
                    .await
                    .map_err(ApplyError::other)?;
                if let Err(err) = sqlx::raw_sql(sql).execute(&mut *tx).await {
                    let _ = tx.rollback().await;
                    return Err(ApplyError::Sql(err));
                }
                sqlx::query(update).bind(m.version).execute(&mut *tx).await.map_err(ApplyError::other)?;
                tx.commit().await.map_err(ApplyError::other)?;
            }
            (_, false) => {
                let mut tx = self.conn.begin().await.map_err(ApplyError::other)?;
                if let Err(err) = sqlx::raw_sql(sql).execute(&mut *tx).await {
                    let _ = tx.rollback().await;
                    return Err(ApplyError::Sql(err));
                }
                insert_row(self.backend, &table, m, &mut tx).await?;
                tx.commit().await.map_err(ApplyError::other)?;
            }
            (_, true) => {
                match &m.statements {
                    // One by one, as goose runs a NO TRANSACTION file: each its own implicit
                    // transaction, so CREATE INDEX CONCURRENTLY may stand beside others.
                    Some(statements) => {
                        for (index, statement) in statements.iter().enumerate() {
                            sqlx::raw_sql(AssertSqlSafe(statement.clone()))
                                .execute(&mut self.conn)
                                .await
                                .map_err(|err| ApplyError::Statement { index, err })?;
                        }
                    }
                    None => {
                        sqlx::raw_sql(sql).execute(&mut self.conn).await.map_err(ApplyError::Sql)?;
                    }
                }
                insert_row(self.backend, &table, m, &mut self.conn).await?;
            }
        }
        let elapsed = started.elapsed();
        let millis = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        let update = match self.backend {
            Backend::Postgres => "UPDATE _sqlx_migrations SET execution_time = $1 WHERE version = $2",
            _ => "UPDATE _sqlx_migrations SET execution_time = ? WHERE version = ?",
        };
        let update = self.q(update);
        sqlx::query(update).bind(millis).bind(m.version).execute(&mut self.conn).await.map_err(ApplyError::other)?;
        Ok(elapsed)
    }

    /// Records `adopted` as applied (another tool ran them), in one transaction: all or none.
    pub(crate) async fn record_adopted(&mut self, adopted: &[&Local]) -> anyhow::Result<()> {
        let table = self.history.qualified();
        let mut tx = self.conn.begin().await.map_err(clean)?;
        for m in adopted {
            insert_row(self.backend, &table, m, &mut tx).await.map_err(|e| match e {
                ApplyError::Sql(e) | ApplyError::Other(e) | ApplyError::Statement { err: e, .. } => clean(e),
            })?;
        }
        tx.commit().await.map_err(clean)?;
        Ok(())
    }

    /// `repair --mark-applied`: the row of `m` says applied, with the file's checksum (a new
    /// row when there is none).
    pub(crate) async fn mark_applied(&mut self, m: &Local, has_row: bool) -> anyhow::Result<()> {
        if has_row {
            let sql = match self.backend {
                Backend::Postgres => "UPDATE _sqlx_migrations SET success = TRUE, checksum = $1 WHERE version = $2",
                _ => "UPDATE _sqlx_migrations SET success = TRUE, checksum = ? WHERE version = ?",
            };
            let sql = self.q(sql);
            sqlx::query(sql).bind(m.checksum.clone()).bind(m.version).execute(&mut self.conn).await.map_err(clean)?;
            Ok(())
        } else {
            self.record_adopted(&[m]).await
        }
    }

    /// `repair --forget`: removes the row of `version`, so the file runs again.
    pub(crate) async fn forget(&mut self, version: i64) -> anyhow::Result<()> {
        let sql = match self.backend {
            Backend::Postgres => "DELETE FROM _sqlx_migrations WHERE version = $1",
            _ => "DELETE FROM _sqlx_migrations WHERE version = ?",
        };
        let sql = self.q(sql);
        sqlx::query(sql).bind(version).execute(&mut self.conn).await.map_err(clean)?;
        Ok(())
    }

    /// Whether a `success = FALSE` row for `version` survived a failed apply (MySQL DDL).
    pub(crate) async fn is_dirty(&mut self, version: i64) -> bool {
        let sql = match self.backend {
            Backend::Postgres => "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = $1 AND NOT success",
            _ => "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = ? AND success = FALSE",
        };
        let sql = self.q(sql);
        sqlx::query_scalar::<_, i64>(sql).bind(version).fetch_one(&mut self.conn).await.is_ok_and(|n| n > 0)
    }

    pub(crate) async fn close(self) {
        let _ = self.conn.close().await;
    }
}

async fn insert_row(backend: Backend, table: &str, m: &Local, conn: &mut AnyConnection) -> Result<(), ApplyError> {
    let sql = match backend {
        Backend::Postgres => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, $3, -1)"
        }
        _ => "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, ?, TRUE, ?, -1)",
    };
    let sql = AssertSqlSafe(sql.replace(SQLX_TABLE, table));
    sqlx::query(sql).bind(m.version).bind(m.description.clone()).bind(m.checksum.clone()).execute(conn).await.map_err(ApplyError::other)?;
    Ok(())
}

/// A row of Flyway's history: version (NULL for repeatable rows), type, script, success,
/// checksum (NULL for a baseline).
pub(crate) type FlywayRow = (Option<String>, String, String, i64, Option<i64>);

/// A failed apply: the migration's own SQL, or our bookkeeping around it.
#[derive(Debug)]
pub(crate) enum ApplyError {
    Sql(sqlx::Error),
    /// Statement `index` (from 0) of the migration's `statements`, run one by one, failed;
    /// those before it stay.
    Statement {
        index: usize,
        err: sqlx::Error,
    },
    Other(sqlx::Error),
}

impl ApplyError {
    fn other(err: sqlx::Error) -> Self {
        Self::Other(err)
    }
}

/// "The database does not exist" (PostgreSQL 3D000, MySQL error 1049): what --create-database fixes.
pub(crate) fn is_missing_database(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else { return false };
    // MySQL's SQLSTATE for it is the generic 42000: the error number says which.
    db.code().is_some_and(|c| c == "3D000") || db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().is_some_and(|e| e.number() == 1049)
}

/// The URL's database name (its path, decoded).
pub(crate) fn database_name(url: &url::Url) -> String {
    let path = url.path().trim_start_matches('/');
    percent_decode(path)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Creates the URL's database through the server's maintenance database (PostgreSQL:
/// `postgres`; MySQL: none). `Ok(false)` when another runner created it first: PostgreSQL
/// answers a concurrent CREATE DATABASE with 42P04 or a unique violation on pg_database
/// (23505); MySQL has `IF NOT EXISTS`.
pub(crate) async fn create_database(url: &url::Url, backend: Backend) -> Result<bool, sqlx::Error> {
    let name = database_name(url);
    let mut admin = url.clone();
    let sql = match backend {
        Backend::Postgres => {
            admin.set_path("/postgres");
            format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""))
        }
        Backend::Mysql => {
            admin.set_path("/");
            format!("CREATE DATABASE IF NOT EXISTS `{}`", name.replace('`', "``"))
        }
        Backend::Sqlite => return Ok(false),
    };
    let mut text = admin.to_string();
    if url.scheme() == "mariadb" {
        text = format!("mysql{}", &text["mariadb".len()..]);
    }
    let options: AnyConnectOptions = text.parse()?;
    let mut conn = AnyConnection::connect_with(&options).await?;
    let result = conn.execute(AssertSqlSafe(sql)).await;
    let _ = conn.close().await;
    match result {
        Ok(done) => Ok(backend == Backend::Postgres || done.rows_affected() > 0),
        Err(err) if err.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "42P04" || c == "23505") => Ok(false),
        Err(err) => Err(err),
    }
}

/// The server's message, or the I/O error, once (sqlx's Display repeats its cause).
pub(crate) fn sql_reason(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::Io(io) => podinit_core::redact::io_reason(io),
        other => other.to_string(),
    }
}

fn clean(err: sqlx::Error) -> anyhow::Error {
    anyhow!(sql_reason(&err))
}

/// sqlx's lock id: `0x3d32ad9e * crc32(database name)` (CRC-32/ISO-HDLC).
pub(crate) fn lock_id(database: &str) -> i64 {
    0x3d32_ad9e * i64::from(crc32fast::hash(database.as_bytes()))
}

fn sqlite_file(url: &url::Url) -> std::path::PathBuf {
    let text = url.as_str();
    let rest = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:")).unwrap_or(text);
    let path = rest.split('?').next().unwrap_or(rest);
    std::path::PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_match_sqlx() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
        // sqlx: 0x3d32ad9e * crc32("app") as i64, and its hex form as the MySQL lock name.
        assert_eq!(lock_id("app"), 0x3d32_ad9e * i64::from(crc32fast::hash(b"app")));
        assert_eq!(format!("{:x}", lock_id("")), "0");
    }

    #[test]
    fn history_tables_and_their_lock_keys() {
        let sqlx = History::parse("_sqlx_migrations", Backend::Postgres).unwrap();
        assert_eq!(sqlx.lock_key("app"), lock_id("app"), "sqlx's table keeps sqlx's key");
        let a = History::parse("billing.history", Backend::Postgres).unwrap();
        let b = History::parse("orders_history", Backend::Postgres).unwrap();
        assert_eq!(a.qualified(), "billing.history");
        assert!(a.lock_key("app") != sqlx.lock_key("app") && a.lock_key("app") != b.lock_key("app"));
        for bad in ["Users", "a.b.c", "1abc", "a;drop", "", "x\"y"] {
            assert!(History::parse(bad, Backend::Postgres).is_err(), "{bad}");
        }
        assert!(History::parse("s.t", Backend::Mysql).unwrap_err().contains("a schema is for PostgreSQL"));
    }

    #[test]
    fn database_names_are_decoded() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(database_name(&u("postgres://u@h/app%2Dtwo?sslmode=disable")), "app-two");
        assert_eq!(database_name(&u("mysql://u@h:3306/shop")), "shop");
    }

    #[test]
    fn sqlite_paths() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(sqlite_file(&u("sqlite:///var/lib/app/db.sqlite?mode=rwc")), std::path::PathBuf::from("/var/lib/app/db.sqlite"));
    }
}

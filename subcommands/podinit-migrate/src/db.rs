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

/// A row of `_sqlx_migrations`.
#[derive(Clone, Debug)]
pub(crate) struct Applied {
    pub(crate) version: i64,
    pub(crate) success: bool,
    pub(crate) checksum: Vec<u8>,
}

pub(crate) struct Db {
    pub(crate) backend: Backend,
    conn: AnyConnection,
    /// PostgreSQL advisory key or MySQL lock name, from the database name as sqlx derives it.
    lock_key: i64,
    lock_name: String,
    sqlite_lock: Option<nix::fcntl::Flock<std::fs::File>>,
    sqlite_path: Option<std::path::PathBuf>,
}

/// How long a dead holder can keep the lock: the server-side bound we set on our session.
pub(crate) const DEAD_HOLDER_BOUND: &str = "about 1 s on PostgreSQL ≥ 14 when the holder's process dies (client_connection_check_interval), 25 s when its node does (TCP keepalives); \
     on MySQL/MariaDB when its statement ends, or 60 s of silence (wait_timeout)";

impl Db {
    /// One connection attempt.
    pub(crate) async fn connect(url: &url::Url, backend: Backend) -> Result<Self, sqlx::Error> {
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
        let lock_key = lock_id(&database);
        Ok(Self {
            backend,
            conn,
            lock_key,
            lock_name: format!("{lock_key:x}"),
            sqlite_lock: None,
            sqlite_path: (backend == Backend::Sqlite).then(|| sqlite_file(url)),
        })
    }

    /// Whether `table` exists where unqualified names find it (PostgreSQL: the search path).
    pub(crate) async fn table_exists(&mut self, table: &str) -> anyhow::Result<bool> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = $1 AND schemaname = ANY (current_schemas(false))"
            }
            Backend::Mysql => "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        };
        let n: i64 = sqlx::query_scalar(sql)
            .bind(table)
            .fetch_one(&mut self.conn)
            .await
            .map_err(clean)
            .with_context(|| format!("looking for {table}"))?;
        Ok(n > 0)
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

    /// Flyway's history: version (NULL for repeatable rows), type, script, success.
    pub(crate) async fn query_flyway(&mut self, sql: &str) -> anyhow::Result<Vec<(Option<String>, String, String, i64)>> {
        sqlx::query_as(AssertSqlSafe(sql.to_owned())).fetch_all(&mut self.conn).await.map_err(clean)
    }

    /// The history, or `None` when the table does not exist yet.
    pub(crate) async fn applied(&mut self) -> anyhow::Result<Option<Vec<Applied>>> {
        if !self.table_exists("_sqlx_migrations").await? {
            return Ok(None);
        }
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT version, (CASE WHEN success THEN 1 ELSE 0 END)::INT8, checksum FROM _sqlx_migrations ORDER BY version"
            }
            Backend::Mysql => "SELECT version, CAST(success AS SIGNED), checksum FROM _sqlx_migrations ORDER BY version",
            Backend::Sqlite => "SELECT version, CAST(success AS INTEGER), checksum FROM _sqlx_migrations ORDER BY version",
        };
        let rows: Vec<(i64, i64, Vec<u8>)> =
            sqlx::query_as(sql).fetch_all(&mut self.conn).await.map_err(clean).context("reading _sqlx_migrations")?;
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
        self.conn.execute(sql).await.map_err(clean).context("creating _sqlx_migrations")?;
        Ok(())
    }

    /// One non-blocking attempt at the lock: `Ok(true)` when taken.
    pub(crate) async fn try_lock(&mut self) -> anyhow::Result<bool> {
        match self.backend {
            Backend::Postgres => Ok(sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(self.lock_key)
                .fetch_one(&mut self.conn)
                .await
                .map_err(clean)?),
            Backend::Mysql => {
                // 1 = taken, 0 = held by another session, NULL = error: never "assume taken".
                let got: Option<i64> = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, 0) AS SIGNED)")
                    .bind(&self.lock_name)
                    .fetch_one(&mut self.conn)
                    .await
                    .map_err(clean)?;
                match got {
                    Some(1) => Ok(true),
                    Some(_) => Ok(false),
                    None => bail!("GET_LOCK('{}', 0) returned NULL: the server did not take the lock", self.lock_name),
                }
            }
            Backend::Sqlite => {
                let path = self.sqlite_path.clone().unwrap_or_default();
                let lock_path = path.with_extension("podinit-migrate.lock");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .with_context(|| format!("opening the lock file {}", lock_path.display()))?;
                match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                    Ok(lock) => {
                        self.sqlite_lock = Some(lock);
                        Ok(true)
                    }
                    Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(false),
                    Err((_, err)) => Err(anyhow!("locking {}: {}", lock_path.display(), err.desc())),
                }
            }
        }
    }

    /// Who holds the lock, for the log of a waiting replica.
    pub(crate) async fn holder(&mut self) -> String {
        let found: Result<Option<String>, sqlx::Error> = match self.backend {
            Backend::Postgres => {
                sqlx::query_scalar(
                    "SELECT concat('pid ', a.pid, ' (', coalesce(nullif(a.application_name, ''), 'no application name'), ', from ', coalesce(host(a.client_addr), 'local'), ', session since ', to_char(a.backend_start, 'HH24:MI:SS'), ')') \
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted AND l.classid = (($1 >> 32) & 4294967295)::oid AND l.objid = ($1 & 4294967295)::oid AND l.objsubid = 1 LIMIT 1",
                )
                .bind(self.lock_key)
                .fetch_optional(&mut self.conn)
                .await
            }
            Backend::Mysql => {
                sqlx::query_scalar(
                    "SELECT CONCAT('connection ', p.ID, ' (', p.USER, '@', p.HOST, ', ', p.TIME, ' s in state ', COALESCE(p.COMMAND, '?'), ')') FROM information_schema.PROCESSLIST p WHERE p.ID = IS_USED_LOCK(?)",
                )
                .bind(&self.lock_name)
                .fetch_optional(&mut self.conn)
                .await
            }
            Backend::Sqlite => Ok(Some("another process (SQLite file lock)".into())),
        };
        match found {
            Ok(Some(who)) => who,
            Ok(None) => "another session (it may be releasing it now)".into(),
            Err(err) => format!("another session (cannot tell which: {err})"),
        }
    }

    /// Releases the lock; errors are returned, never ignored silently.
    pub(crate) async fn unlock(&mut self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Postgres => {
                let released: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                    .bind(self.lock_key)
                    .fetch_one(&mut self.conn)
                    .await
                    .map_err(clean)?;
                if !released {
                    bail!("pg_advisory_unlock: the lock was not held by this session");
                }
            }
            Backend::Mysql => {
                let released: Option<i64> = sqlx::query_scalar("SELECT CAST(RELEASE_LOCK(?) AS SIGNED)")
                    .bind(&self.lock_name)
                    .fetch_one(&mut self.conn)
                    .await
                    .map_err(clean)?;
                if released != Some(1) {
                    bail!("RELEASE_LOCK: the lock was not held by this session");
                }
            }
            Backend::Sqlite => {
                self.sqlite_lock = None;
            }
        }
        Ok(())
    }

    /// Applies one migration and records it, as sqlx does: PostgreSQL and SQLite run the file
    /// and insert its row in one transaction (or without one for `-- no-transaction`);
    /// MySQL/MariaDB insert a `success = FALSE` row first, so a failure after an implicit
    /// commit (DDL) leaves a "dirty" row that says exactly which version broke.
    pub(crate) async fn apply(&mut self, m: &Local) -> Result<Duration, ApplyError> {
        let started = std::time::Instant::now();
        let sql = AssertSqlSafe(m.sql.clone());
        match (self.backend, m.no_tx) {
            (Backend::Mysql, _) => {
                let mut tx = self.conn.begin().await.map_err(ApplyError::other)?;
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, ?, FALSE, ?, -1)",
                )
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
                sqlx::query("UPDATE _sqlx_migrations SET success = TRUE WHERE version = ?")
                    .bind(m.version)
                    .execute(&mut *tx)
                    .await
                    .map_err(ApplyError::other)?;
                tx.commit().await.map_err(ApplyError::other)?;
            }
            (_, false) => {
                let mut tx = self.conn.begin().await.map_err(ApplyError::other)?;
                if let Err(err) = sqlx::raw_sql(sql).execute(&mut *tx).await {
                    let _ = tx.rollback().await;
                    return Err(ApplyError::Sql(err));
                }
                insert_row(self.backend, m, &mut tx).await?;
                tx.commit().await.map_err(ApplyError::other)?;
            }
            (_, true) => {
                sqlx::raw_sql(sql).execute(&mut self.conn).await.map_err(ApplyError::Sql)?;
                insert_row(self.backend, m, &mut self.conn).await?;
            }
        }
        let elapsed = started.elapsed();
        let millis = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        let update = match self.backend {
            Backend::Postgres => "UPDATE _sqlx_migrations SET execution_time = $1 WHERE version = $2",
            _ => "UPDATE _sqlx_migrations SET execution_time = ? WHERE version = ?",
        };
        sqlx::query(update).bind(millis).bind(m.version).execute(&mut self.conn).await.map_err(ApplyError::other)?;
        Ok(elapsed)
    }

    /// Records `adopted` as applied (another tool ran them), in one transaction: all or none.
    pub(crate) async fn record_adopted(&mut self, adopted: &[&Local]) -> anyhow::Result<()> {
        let mut tx = self.conn.begin().await.map_err(clean)?;
        for m in adopted {
            insert_row(self.backend, m, &mut tx).await.map_err(|e| match e {
                ApplyError::Sql(e) | ApplyError::Other(e) => clean(e),
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
        sqlx::query(sql).bind(version).execute(&mut self.conn).await.map_err(clean)?;
        Ok(())
    }

    /// Whether a `success = FALSE` row for `version` survived a failed apply (MySQL DDL).
    pub(crate) async fn is_dirty(&mut self, version: i64) -> bool {
        let sql = match self.backend {
            Backend::Postgres => "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = $1 AND NOT success",
            _ => "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = ? AND success = FALSE",
        };
        sqlx::query_scalar::<_, i64>(sql).bind(version).fetch_one(&mut self.conn).await.is_ok_and(|n| n > 0)
    }

    pub(crate) async fn close(self) {
        let _ = self.conn.close().await;
    }
}

async fn insert_row(backend: Backend, m: &Local, conn: &mut AnyConnection) -> Result<(), ApplyError> {
    let sql = match backend {
        Backend::Postgres => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, $3, -1)"
        }
        _ => "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, ?, TRUE, ?, -1)",
    };
    sqlx::query(sql).bind(m.version).bind(m.description.clone()).bind(m.checksum.clone()).execute(conn).await.map_err(ApplyError::other)?;
    Ok(())
}

/// A failed apply: the migration's own SQL, or our bookkeeping around it.
#[derive(Debug)]
pub(crate) enum ApplyError {
    Sql(sqlx::Error),
    Other(sqlx::Error),
}

impl ApplyError {
    fn other(err: sqlx::Error) -> Self {
        Self::Other(err)
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
    0x3d32_ad9e * i64::from(crc32(database.as_bytes()))
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
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
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        // sqlx: 0x3d32ad9e * crc32("app") as i64, and its hex form as the MySQL lock name.
        assert_eq!(lock_id("app"), 0x3d32_ad9e * i64::from(crc32(b"app")));
        assert_eq!(format!("{:x}", lock_id("")), "0");
    }

    #[test]
    fn sqlite_paths() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(sqlite_file(&u("sqlite:///var/lib/app/db.sqlite?mode=rwc")), std::path::PathBuf::from("/var/lib/app/db.sqlite"));
    }
}

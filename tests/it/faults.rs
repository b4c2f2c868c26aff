//! Faults put in on purpose, against the real services: a proxy that refuses, stalls or
//! resets connections between podinit and Garage, OpenBao and PostgreSQL; a file system that
//! fills up; `kill -9` at random points. The promise under test: a restarted init container
//! finds the old complete result or the new complete one, never a mix, and the next run
//! cleans up and succeeds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::fault::Proxy;
use crate::support::s3::{self, Garage};
use crate::support::services::{self, Bao};
use crate::support::web::Server;
use crate::support::{Outcome, Podinit};

const MIB: usize = 1 << 20;

/// The tree an app sees under `dir` (through the set's links; the layout's `..` names left
/// out): relative path → content, links as `-> target`.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().as_encoded_bytes().starts_with(b"..") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap_or_else(|e| format!("unreadable: {e}").into_bytes()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Names of the layout in `dir` that a killed run could leave (`..2026…` directories other
/// than the current one, `..data_tmp`, swap links, temp files).
fn leftovers(dir: &Path) -> Vec<String> {
    let current = std::fs::read_link(dir.join("..data")).ok().map(|p| p.display().to_string());
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            (n.starts_with("..2") && Some(n) != current.as_ref())
                || n == "..data_tmp"
                || n.starts_with("..podinit-swap")
                || n.contains(".podinit-partial")
                || (n.contains(".podinit-") && !n.ends_with(".podinit-s3"))
        })
        .collect();
    names.sort();
    names
}

/// A small pseudo-random sequence (the seed is printed, so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
        #[expect(clippy::print_stderr, reason = "a failed run must say how to replay it")]
        {
            eprintln!("random kill points: seed {seed}");
        }
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Starts `cmd`, kills it with SIGKILL after `after` (if it still runs).
fn kill_after(cmd: &Podinit, after: Duration) {
    let mut child = cmd.command().spawn().unwrap();
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0777"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mounting a tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).output();
    }
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, &data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A version of an archive: `count` files under a few directories, contents tagged by
/// `version`, so two versions differ in every file.
fn archive_version(version: u8, count: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..count).map(|i| (format!("dir{}/file{i}", i % 4), s3::data(size, version.wrapping_mul(31).wrapping_add(i as u8)))).collect()
}

fn as_tree(files: &[(String, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    files.iter().cloned().collect()
}

fn s3_get(garage: &Garage, endpoint: &str, args: &[&str]) -> Outcome {
    garage.podinit(endpoint).args(["--timeout", "60s"]).args(args).run()
}

#[tokio::test]
async fn s3_get_writes_the_right_bytes_through_resets_and_stalls() {
    let garage = s3::garage().await;
    let proxy = Proxy::start(garage.port);
    let body = s3::data(24 * MIB + 11, 21);
    garage.put_multipart("faults/model.bin", &body, 8 * MIB).await;
    let dir = tempfile::tempdir().unwrap();
    // Three connections reset after 300 KiB of answer each.
    proxy.faults.reset_connections(3, 300 << 10);
    let dest = dir.path().join("reset.bin");
    s3_get(&garage, &proxy.endpoint(), &["--part-size", "4MiB", "s3://test/faults/model.bin", dest.to_str().unwrap()]).code(0);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(proxy.faults.resets.load(Ordering::SeqCst), 0, "every reset happened");
    // Answers stall for 2 s: each stalled range is given up after --stall-timeout and retried.
    proxy.faults.stall.store(true, Ordering::SeqCst);
    let faults = proxy.faults.clone();
    let clear = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        faults.stall.store(false, Ordering::SeqCst);
    });
    let dest = dir.path().join("stall.bin");
    let run = s3_get(&garage, &proxy.endpoint(), &["--stall-timeout", "1s", "s3://test/faults/model.bin", dest.to_str().unwrap()]);
    clear.join().unwrap();
    run.code(0);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
}

/// Writes `n` keys into `secret/PATH`, each value tagged by `version`.
fn put_secret(bao: &Bao, path: &str, version: &str, n: usize) {
    let mut args = vec!["kv".to_owned(), "put".to_owned(), format!("secret/{path}")];
    args.extend((0..n).map(|i| format!("key{i}={version}-{i}-{}", "x".repeat(200))));
    bao.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn vault_fetch(addr: &str, out: &Path) -> Podinit {
    Podinit::new().arg("vault-fetch").args(["--out"]).arg(out).env("VAULT_ADDR", addr).env("VAULT_TOKEN", "root")
}

#[tokio::test]
async fn vault_fetch_keeps_the_old_set_through_refusals_and_resets() {
    let bao = services::openbao().await;
    put_secret(&bao, "app/db", "v1", 5);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("secrets");
    vault_fetch(&bao.addr, &out).args(["--timeout", "30s", "secret/app/db=db"]).run().code(0);
    let v1 = tree(&out);
    assert_eq!(v1.len(), 5);
    put_secret(&bao, "app/db", "v2", 5);
    let port: u16 = bao.addr.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = Proxy::start(port);
    let via = format!("http://127.0.0.1:{}", proxy.port);
    // Refused until the deadline: exit 124, the old set as it was, nothing left behind.
    proxy.faults.refuse.store(true, Ordering::SeqCst);
    vault_fetch(&via, &out).args(["--timeout", "3s", "secret/app/db=db"]).run().code(124);
    assert_eq!(tree(&out), v1);
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    // Connections reset in the middle of answers: retried, then the new set, whole.
    proxy.faults.refuse.store(false, Ordering::SeqCst);
    proxy.faults.reset_connections(4, 40);
    let run = vault_fetch(&via, &out).args(["--timeout", "60s", "secret/app/db=db"]).run();
    run.code(0);
    let v2 = tree(&out);
    assert_eq!(v2.len(), 5);
    assert!(v2.values().all(|v| v.starts_with(b"v2-")), "{v2:?}");
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

#[tokio::test]
async fn vault_fetch_killed_at_random_points_leaves_the_old_set_or_the_new_one() {
    let bao = services::openbao().await;
    put_secret(&bao, "app/a", "A", 40);
    put_secret(&bao, "app/b", "B", 40);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("secrets");
    let run = |path: &str| vault_fetch(&bao.addr, &out).args(["--timeout", "30s", &format!("secret/{path}=conf")]);
    run("app/a").run().code(0);
    let a = tree(&out);
    run("app/b").run().code(0);
    let b = tree(&out);
    assert_ne!(a, b);
    let mut rng = Rng::new();
    for round in 0..24 {
        let next = if round % 2 == 0 { "app/a" } else { "app/b" };
        kill_after(&run(next), Duration::from_millis(rng.below(60)));
        let now = tree(&out);
        assert!(now == a || now == b, "round {round}: a mix of versions: {:?}", now.keys().collect::<Vec<_>>());
    }
    // The next run cleans up what the killed ones left and succeeds.
    run("app/a").run().code(0);
    assert_eq!(tree(&out), a);
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

#[tokio::test]
async fn extract_killed_at_random_points_leaves_the_old_tree_or_the_new_one() {
    let garage = s3::garage().await;
    let proxy = Proxy::start(garage.port);
    let v1 = archive_version(1, 40, 20_000);
    let v2 = archive_version(2, 40, 20_000);
    garage.put("kill/v1.tar", &tar_of(&v1), None).await;
    garage.put("kill/v2.tar", &tar_of(&v2), None).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let d = out.display().to_string();
    let run = |key: &str| garage.podinit(&proxy.endpoint()).args(["--timeout", "60s", "--extract", &format!("s3://test/kill/{key}"), &d]);
    run("v1.tar").run().code(0);
    assert_eq!(tree(&out), as_tree(&v1));
    // About 0.8 s per extraction through the slowed proxy; kills land before, during and
    // after the switch.
    proxy.faults.rate.store(1 << 20, Ordering::SeqCst);
    let mut rng = Rng::new();
    for round in 0..12 {
        let next = if round % 2 == 0 { "v2.tar" } else { "v1.tar" };
        kill_after(&run(next), Duration::from_millis(rng.below(1200)));
        let now = tree(&out);
        assert!(now == as_tree(&v1) || now == as_tree(&v2), "round {round}: a mix of versions ({} files)", now.len());
    }
    proxy.faults.rate.store(0, Ordering::SeqCst);
    run("v2.tar").run().code(0);
    assert_eq!(tree(&out), as_tree(&v2));
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

#[tokio::test]
async fn a_full_volume_fails_in_one_line_and_leaves_nothing() {
    let garage = s3::garage().await;
    let ep = garage.endpoint();
    let vol = Tmpfs::new("4m");
    // One object larger than the volume: refused when the space is reserved.
    garage.put("full/big.bin", &s3::data(6 * MIB, 3), None).await;
    let run = s3_get(&garage, &ep, &["s3://test/full/big.bin", &format!("{}/", vol.path().display())]);
    run.code(1).stderr_has("no space left on device").stderr_has("is full");
    assert_eq!(std::fs::read_dir(vol.path()).unwrap().count(), 0, "no partial file is kept");
    // An archive whose entries do not fit: stopped by the byte budget (the volume's free
    // space less a margin) before the volume fills; it holds nothing of it afterwards.
    let files = archive_version(3, 12, 512 << 10);
    garage.put("full/big.tar", &tar_of(&files), None).await;
    let out = vol.path().join("x");
    let run = s3_get(&garage, &ep, &["--extract", "s3://test/full/big.tar", out.to_str().unwrap()]);
    run.code(1).stderr_has("the archive unpacks to more than").stderr_has("the volume's free space less a margin");
    assert_eq!(run.stderr.lines().filter(|l| l.contains("error:")).count(), 1, "one error line:\n{}", run.stderr);
    assert!(!out.exists(), "nothing of it, no directory left");
    // Past the budget (raised on purpose), the volume itself fills: one line and a hint.
    let run = s3_get(&garage, &ep, &["--extract", "--extract-max-size", "1GiB", "s3://test/full/big.tar", out.to_str().unwrap()]);
    run.code(1).stderr_has("no space left on device").stderr_has(&format!("hint: the volume at {} is full", out.display()));
    assert_eq!(run.stderr.lines().filter(|l| l.contains("error:")).count(), 1, "one error line:\n{}", run.stderr);
    assert!(!out.exists(), "nothing of it, no directory left");

    // vault-fetch: the old set stays when the new one does not fit.
    let bao = services::openbao().await;
    put_secret(&bao, "app/small", "v1", 2);
    let secrets = vol.path().join("secrets");
    vault_fetch(&bao.addr, &secrets).args(["--timeout", "30s", "secret/app/small=s"]).run().code(0);
    let before = tree(&secrets);
    // Fill the volume, then ask for a set that needs more than what is left.
    let filler = vol.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 * MIB]);
    put_secret(&bao, "app/small", "v2", 40);
    let run = vault_fetch(&bao.addr, &secrets).args(["--timeout", "30s", "secret/app/small=s"]).run();
    run.code(1).stderr_has("no space left on device").stderr_has("is full");
    assert!(!run.stderr.contains("v2-"), "a secret value reached the log");
    assert_eq!(tree(&secrets), before);
    assert!(leftovers(&secrets).is_empty(), "{:?}", leftovers(&secrets));
}

#[tokio::test]
async fn migrate_cut_off_while_holding_the_lock_lets_a_second_runner_finish() {
    let db = services::postgres("pg-secret", 0).await;
    let proxy = Proxy::start(db.port);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1_slow.sql"), "CREATE TABLE slow (n INT); SELECT pg_sleep(3); INSERT INTO slow VALUES (1);").unwrap();
    std::fs::write(dir.path().join("2_next.sql"), "INSERT INTO slow VALUES (2);").unwrap();
    let direct = db.url("postgres");
    let via = direct.replace(&format!(":{}/", db.port), &format!(":{}/", proxy.port));
    let migrate = |url: &str| Podinit::new().args(["migrate", "--timeout", "60s", "--source"]).arg(dir.path()).env("DATABASE_URL", url);
    let mut conn = loop {
        match <sqlx::PgConnection as sqlx::Connection>::connect(&direct).await {
            Ok(conn) => break conn,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let first = migrate(&via).command().spawn().unwrap();
    // Once the first runner holds the lock, inside the slow migration, cut its connection.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'").fetch_one(&mut conn).await.unwrap() == 0
    {
        assert!(Instant::now() < deadline, "the first runner never took the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.reset_all();
    proxy.faults.refuse.store(true, Ordering::SeqCst);
    let first = Outcome::from_output(first.wait_with_output().unwrap());
    first.code(1);
    assert!(!first.stderr.contains("pg-secret"));
    let started = Instant::now();
    let second = migrate(&direct).run();
    second.code(0).stderr_has("applied 1_slow.sql").stderr_has("applied 2_next.sql");
    assert!(started.elapsed() < Duration::from_secs(30), "the lock was released with the cut session: {:?}", started.elapsed());
    let rows: Vec<i32> = sqlx::query_scalar("SELECT n FROM slow ORDER BY n").fetch_all(&mut conn).await.unwrap();
    assert_eq!(rows, [1, 2], "each migration applied once");
}

#[test]
fn wait_for_keeps_waiting_through_refusals_and_reacts_when_they_clear() {
    let server = Server::python(&["--route", "/healthz=status:200:{}"]);
    let proxy = Proxy::start(server.port);
    proxy.faults.refuse.store(true, Ordering::SeqCst);
    let faults = proxy.faults.clone();
    let cleared = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        faults.refuse.store(false, Ordering::SeqCst);
        Instant::now()
    });
    let out = Podinit::new().args(["wait-for", "--timeout", "30s", &format!("http://127.0.0.1:{}/healthz", proxy.port)]).run();
    let done = Instant::now();
    let cleared = cleared.join().unwrap();
    out.code(0);
    assert!(done > cleared, "not ready before the fault cleared");
    assert!(done - cleared < Duration::from_secs(2), "reacted {:?} after the fault cleared", done - cleared);
}

/// What the OpenBao dev server's TLS certificate is issued for.
fn bao_port(bao: &Bao) -> u16 {
    bao.addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn vault_fetch_never_sends_the_token_where_it_must_not_go() {
    let bao = services::openbao().await;
    put_secret(&bao, "app/db", "v1", 1);
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = Server::python(&[]);
    // Plain http to another host (127.0.0.2 is another loopback address): refused.
    let redirector = Server::python(&["--route", &format!("/=redirect:307:http://127.0.0.2:{}*", elsewhere.port)]);
    let run = vault_fetch(&format!("http://127.0.0.1:{}", redirector.port), &dir.path().join("a"))
        .env("VAULT_TOKEN", "hvs.never-elsewhere")
        .args(["--timeout", "10s", "secret/app/db"])
        .run();
    run.code(1).stderr_has("refusing a redirect").stderr_has("hint: the token goes only to the address given");
    assert!(elsewhere.requests().is_empty(), "the other host was asked: {:?}", elsewhere.requests());
    assert!(redirector.saw_header_value("hvs.never-elsewhere"), "the named server got the token");

    // https down to http, even on the same host: refused.
    let pki = crate::support::web::Pki::new("IP:127.0.0.1,DNS:localhost");
    let tls_redirector = Server::python(&[
        "--tls",
        pki.cert().to_str().unwrap(),
        pki.key().to_str().unwrap(),
        "--route",
        &format!("/=redirect:307:http://127.0.0.1:{}*", elsewhere.port),
    ]);
    let run = vault_fetch(&format!("https://127.0.0.1:{}", tls_redirector.port), &dir.path().join("b"))
        .env("VAULT_TOKEN", "hvs.never-in-clear")
        .env("VAULT_CACERT", pki.ca())
        .args(["--timeout", "10s", "secret/app/db"])
        .run();
    run.code(1).stderr_has("https to http");
    assert!(elsewhere.requests().is_empty(), "{:?}", elsewhere.requests());

    // A Vault redirect over TLS to another host (a standby pointing at the active node) is
    // followed: the TLS OpenBao at localhost, reached through a redirector at 127.0.0.1.
    let (bao_tls, ca) = services::openbao_tls().await;
    bao_tls.cli(&["kv", "put", "secret/app/db", "password=over-tls"]);
    let cas = tempfile::tempdir().unwrap();
    std::fs::write(cas.path().join("bao.pem"), &ca).unwrap();
    std::fs::copy(pki.ca(), cas.path().join("test.pem")).unwrap();
    let to_active = Server::python(&[
        "--tls",
        pki.cert().to_str().unwrap(),
        pki.key().to_str().unwrap(),
        "--route",
        &format!("/=redirect:307:https://localhost:{}*", bao_port(&bao_tls)),
    ]);
    let out = dir.path().join("c");
    let run = vault_fetch(&format!("https://127.0.0.1:{}", to_active.port), &out)
        .env("VAULT_CAPATH", cas.path())
        .args(["--timeout", "20s", "secret/app/db#password=pw"])
        .run();
    run.code(0);
    assert_eq!(std::fs::read_to_string(out.join("pw")).unwrap(), "over-tls");
}

#[test]
fn wait_for_sends_header_values_only_to_the_target_host() {
    let elsewhere = Server::python(&["--route", "/=status:200:{}"]);
    let server = Server::python(&[
        "--route",
        &format!("/away=redirect:302:http://127.0.0.2:{}/ready", elsewhere.port),
        "--route",
        "/here=redirect:302:/ready",
        "--route",
        "/ready=status:200:{}",
    ]);
    let wait = |path: &str| {
        Podinit::new()
            .args(["wait-for", "--once", "--http-header", "X-Api-Key: k3y-s3cret"])
            .arg(format!("http://127.0.0.1:{}{path}", server.port))
            .run()
    };
    wait("/here").code(0);
    let run = wait("/away");
    assert_ne!(run.code, 0);
    run.stderr_has("refusing a redirect");
    assert!(!run.stderr.contains("k3y-s3cret"));
    assert!(elsewhere.requests().is_empty(), "the header went to another host: {:?}", elsewhere.requests());
}

#[test]
fn secret_query_parameters_never_reach_the_log_or_the_termination_message() {
    let dir = tempfile::tempdir().unwrap();
    let term = dir.path().join("term");
    let out = Podinit::new()
        .args(["--termination-log", term.to_str().unwrap(), "wait-for", "--timeout", "1s"])
        .arg("http://127.0.0.1:1/health?api_key=s3cr3t-1&X-Amz-Signature=s3cr3t-2&sig=s3cr3t-3&token=s3cr3t-4&region=visible")
        .run();
    out.code(124).stderr_has("region=visible");
    let message = std::fs::read_to_string(&term).unwrap();
    for shown in [&out.stderr, &message] {
        assert!(!shown.contains("s3cr3t"), "a secret was shown:\n{shown}");
    }
}

#[test]
fn an_absurd_timeout_is_a_usage_error_with_a_termination_message() {
    let dir = tempfile::tempdir().unwrap();
    let term = dir.path().join("term");
    let run =
        Podinit::new().args(["--termination-log", term.to_str().unwrap(), "--timeout", "300000000000y", "sysctl", "kernel.ostype"]).run();
    run.code(2).stderr_has("leave the option out for no limit");
    assert!(std::fs::read_to_string(&term).unwrap().contains("(exit 2)"));
    Podinit::new().env("PODINIT_TIMEOUT", "300000000000y").args(["sysctl", "kernel.ostype"]).run().code(2);
}

#[test]
fn the_app_wait_for_execs_gets_default_signal_handling() {
    let out =
        Podinit::new().args(["wait-for", "--timeout", "10s", "file:///proc/self/status", "--", "/bin/cat", "/proc/self/status"]).run();
    out.code(0);
    let field = |name: &str| {
        let line = out.stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {}", out.stdout));
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(field("SigIgn:") & (1 << (13 - 1)), 0, "SIGPIPE is not ignored in the app");
    assert_eq!(field("SigBlk:"), 0, "no signal is blocked in the app");
}

#[tokio::test]
async fn names_as_long_as_the_file_system_allows_are_downloaded() {
    let garage = s3::garage().await;
    let long = "n".repeat(250);
    garage.put(&format!("long/{long}"), b"long name", None).await;
    let dir = tempfile::tempdir().unwrap();
    s3_get(&garage, &garage.endpoint(), &["s3://test/long/", &format!("{}/", dir.path().display())]).code(0);
    assert_eq!(std::fs::read(dir.path().join(&long)).unwrap(), b"long name");
    let one: PathBuf = dir.path().join("one").join(&long);
    s3_get(&garage, &garage.endpoint(), &[&format!("s3://test/long/{long}"), one.to_str().unwrap()]).code(0);
    assert_eq!(std::fs::read(&one).unwrap(), b"long name");
}

#[tokio::test]
async fn a_planted_link_at_the_partial_file_is_never_written_through() {
    let garage = s3::garage().await;
    let body = s3::data(3 * MIB, 30);
    garage.put("plant/model.bin", &body, None).await;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, vec![b'v'; body.len()]).unwrap();
    let dest = dir.path().join("out/model.bin");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let head = garage.client.head_object().bucket("test").key("plant/model.bin").send().await.unwrap();
    // A forged state file saying half is done, and the data file a link to the victim.
    std::os::unix::fs::symlink(&victim, dir.path().join("out/.model.bin.podinit-partial")).unwrap();
    let state = serde_json::json!({"source": "s3://test/plant/model.bin", "etag": head.e_tag().unwrap(), "size": body.len(), "range_size": MIB, "done": [0]});
    std::fs::write(dir.path().join("out/.model.bin.podinit-partial-state"), state.to_string()).unwrap();
    s3_get(&garage, &garage.endpoint(), &["s3://test/plant/model.bin", dest.to_str().unwrap()]).code(0);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(std::fs::read(&victim).unwrap(), vec![b'v'; body.len()], "the link's target is untouched");
}

#[tokio::test]
async fn a_missing_bucket_is_named_as_such() {
    let garage = s3::garage().await;
    let dir = tempfile::tempdir().unwrap();
    let run = s3_get(&garage, &garage.endpoint(), &["s3://no-such-bucket/model.bin", &format!("{}/", dir.path().display())]);
    run.code(1).stderr_has("the bucket 'no-such-bucket' does not exist");
    assert!(!run.stderr.contains("no object has the key"), "{}", run.stderr);
}

#[tokio::test]
async fn composite_checksums_are_told_apart_and_the_sdk_stays_quiet() {
    let garage = s3::garage().await;
    let body = s3::data(11 * MIB, 5);
    garage.put_multipart_checksummed("comp/model.bin", &body, 5 * MIB, aws_sdk_s3::types::ChecksumAlgorithm::Crc32).await;
    let dir = tempfile::tempdir().unwrap();
    // The ranged path and the one-GET path of a prefix (where the SDK validated and warned).
    for args in [
        vec!["s3://test/comp/model.bin".to_owned(), format!("{}/", dir.path().display())],
        vec!["--part-size".to_owned(), "16MiB".to_owned(), "s3://test/comp/".to_owned(), format!("{}/p/", dir.path().display())],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = s3_get(&garage, &garage.endpoint(), &args);
        run.code(0).stderr_has("multipart ETag (3 parts)");
        assert!(!run.stderr.contains("part-level") && !run.stderr.contains("WARN"), "{}", run.stderr);
    }
    assert_eq!(std::fs::read(dir.path().join("p/model.bin")).unwrap(), body);
}

//! `podinit wait-for` against the real servers charts wait on, started by the tests on free
//! ports of 127.0.0.1 (Debian's redis-server, memcached, nats-server, ZooKeeper and
//! RabbitMQ; a gRPC health server from PyPI's grpcio-health-checking; PostgreSQL and MariaDB
//! from the test image), each also behind the fault proxy stalling: accepted and never
//! answered is not ready, and never hangs past --timeout.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fault::Proxy;
use crate::support::services::{mariadb, postgres};
use crate::support::{Outcome, Podinit};

fn wait_for() -> Podinit {
    Podinit::new().arg("wait-for")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process in a process group of its own, killed (the whole group) when dropped.
struct Local {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Local {
    fn start(dir: tempfile::TempDir, command: &mut Command) -> Self {
        use std::os::unix::process::CommandExt as _;
        let child = command
            .current_dir(dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e} (scripts/ensure-tools installs it)"));
        Self { child, _dir: dir }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn redis(port: u16, extra: &str) -> Local {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("redis.conf"),
        format!(
            "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\nrequirepass s3cret-pw\nuser app on >app-pw ~* &* +@all\ndir {}\n{extra}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let conf = dir.path().join("redis.conf");
    Local::start(dir, Command::new("redis-server").arg(conf))
}

/// Checks that a target behind a stalling proxy is not ready and gives up on time.
fn stalls(url_for: impl Fn(u16) -> String, upstream: u16) {
    let proxy = Proxy::start(upstream);
    proxy.faults.stall.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let out = wait_for().args(["--timeout", "2s", "--attempt-timeout", "500ms", &url_for(proxy.port)]).run();
    out.code(124).stderr_has("not ready after");
    assert!(started.elapsed() < Duration::from_secs(6), "a stalled server held the wait for {:?}", started.elapsed());
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out =
        Command::new("redis-cli").args(["-p", &port.to_string(), "--no-auth-warning", "-a", "s3cret-pw"]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn redis_password_acl_user_roles_and_a_stalled_server() {
    let port = free_port();
    let url = |auth: &str, rest: &str| format!("redis://{auth}127.0.0.1:{port}{rest}");
    let started = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        redis(port, "")
    });
    let out = wait_for().args(["--timeout", "20s", &url(":s3cret-pw@", "")]).run();
    let _server = started.join().unwrap();
    out.code(0).stderr_has("ready after");
    assert!(!out.stderr.contains("s3cret-pw"), "the password reached the log:\n{}", out.stderr);
    // An ACL user, a database and the role.
    wait_for().args(["--timeout", "5s", &url("app:app-pw@", "/3?role=master")]).run().code(0);
    let out = wait_for().args(["--timeout", "1s", &url("app:wrong-pw@", "")]).run();
    out.code(124).stderr_has("AUTH refused: WRONGPASS");
    assert!(!out.stderr.contains("wrong-pw"), "{}", out.stderr);
    wait_for().args(["--timeout", "1s", &url("", "")]).run().code(124).stderr_has("wants a password (NOAUTH)");
    wait_for()
        .args(["--timeout", "1s", &url(":s3cret-pw@", "?role=replica")])
        .run()
        .code(124)
        .stderr_has("its role is master, not replica");
    // The password from a mounted Secret.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret-pw\n").unwrap();
    wait_for().args(["--timeout", "5s", "--password-file"]).arg(dir.path().join("pw")).arg(url("", "")).run().code(0);
    stalls(|p| format!("redis://:s3cret-pw@127.0.0.1:{p}"), port);
}

#[test]
fn redis_loading_its_dataset_is_not_ready() {
    // A dataset large enough that loading it takes a while: Redis accepts connections during
    // the load and answers -LOADING, where a TCP check would already pass.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    {
        let _filler = redis(port, &format!("dir {}\ndbfilename dump.rdb\nenable-debug-command yes", data.display()));
        wait_for().args(["--timeout", "20s", &format!("redis://:s3cret-pw@127.0.0.1:{port}")]).run().code(0);
        assert_eq!(redis_cli(port, &["DEBUG", "POPULATE", "3000000", "key", "64"]), "OK");
        assert_eq!(redis_cli(port, &["SAVE"]), "OK");
    }
    let _server = redis(port, &format!("dir {}\ndbfilename dump.rdb", data.display()));
    let out = wait_for().args(["--timeout", "60s", &format!("redis://:s3cret-pw@127.0.0.1:{port}")]).env("PODINIT_LOG", "debug").run();
    out.code(0).stderr_has("loading its dataset into memory (LOADING)");
    assert_eq!(redis_cli(port, &["DBSIZE"]), "3000000", "ready only once the whole dataset is in");
}

#[test]
fn memcached_and_nats_with_credentials() {
    let mc = free_port();
    let _mc = Local::start(
        tempfile::tempdir().unwrap(),
        Command::new("memcached").args(["-p", &mc.to_string(), "-U", "0", "-l", "127.0.0.1", "-u", "root"]),
    );
    wait_for().args(["--timeout", "10s", &format!("memcached://127.0.0.1:{mc}")]).run().code(0);
    stalls(|p| format!("memcached://127.0.0.1:{p}"), mc);

    let nats = free_port();
    let _nats = Local::start(
        tempfile::tempdir().unwrap(),
        Command::new("nats-server").args(["-a", "127.0.0.1", "-p", &nats.to_string(), "--user", "app", "--pass", "n4ts-pw"]),
    );
    let out = wait_for().args(["--timeout", "10s", &format!("nats://app:n4ts-pw@127.0.0.1:{nats}")]).run();
    out.code(0);
    assert!(!out.stderr.contains("n4ts-pw"));
    wait_for()
        .args(["--timeout", "1s", &format!("nats://app:nope@127.0.0.1:{nats}")])
        .run()
        .code(124)
        .stderr_has("refused: 'Authorization Violation'");
    stalls(|p| format!("nats://app:n4ts-pw@127.0.0.1:{p}"), nats);
    // A token-protected server: the URL's user part is the token, or --password-file.
    let token = free_port();
    let _token = Local::start(
        tempfile::tempdir().unwrap(),
        Command::new("nats-server").args(["-a", "127.0.0.1", "-p", &token.to_string(), "--auth", "t0ken"]),
    );
    wait_for().args(["--timeout", "10s", &format!("nats://t0ken@127.0.0.1:{token}")]).run().code(0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0ken").unwrap();
    wait_for()
        .args(["--timeout", "5s", "--password-file"])
        .arg(dir.path().join("token"))
        .arg(format!("nats://127.0.0.1:{token}"))
        .run()
        .code(0);
}

#[test]
fn zookeeper_serving_and_a_znode_that_appears() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Local::start(
        dir,
        Command::new("java")
            .args(["-cp", "/etc/zookeeper/conf_example:/usr/share/java/zookeeper.jar", "-Dzookeeper.admin.enableServer=false"])
            .args(["org.apache.zookeeper.server.ZooKeeperServerMain", &port.to_string()])
            .arg(&data),
    );
    let zk = format!("zookeeper://127.0.0.1:{port}");
    wait_for().args(["--timeout", "60s", &zk]).run().code(0).stderr_has("ready after");
    let znode = format!("{zk}/app/ready");
    wait_for().args(["--timeout", "1s", &znode]).run().code(124).stderr_has("znode /app/ready does not exist yet");
    let waiting = wait_for().args(["--timeout", "60s", &znode]).command().spawn().unwrap();
    for path in ["/app", "/app/ready"] {
        let out = Command::new("/usr/share/zookeeper/bin/zkCli.sh")
            .args(["-server", &format!("127.0.0.1:{port}"), "create", path, "x"])
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(said.contains(&format!("Created {path}")), "zkCli.sh create {path}: {said}");
    }
    Outcome::from_output(waiting.wait_with_output().unwrap()).code(0).stderr_has("/app/ready: ready after");
    stalls(|p| format!("zookeeper://127.0.0.1:{p}"), port);
    drop(server);
}

#[test]
fn rabbitmq_handshake_credentials_and_vhost() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_owned();
    let env = |name: &str| base.join(name);
    let server = Local::start(
        dir,
        Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("HOME", &base)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_NODENAME", format!("podinit-test-{port}@localhost"))
            .env("RABBITMQ_MNESIA_BASE", env("mnesia"))
            .env("RABBITMQ_LOG_BASE", env("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", env("plugins"))
            .env("RABBITMQ_CONFIG_FILE", env("rabbitmq"))
            .env("RABBITMQ_PID_FILE", env("pid"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", env("feature_flags")),
    );
    // guest/guest (no user part), allowed from 127.0.0.1; the broker takes seconds to boot.
    wait_for().args(["--timeout", "90s", &format!("amqp://127.0.0.1:{port}/%2f")]).run().code(0).stderr_has("ready after");
    let out = wait_for().args(["--timeout", "1s", &format!("amqp://guest:bad-pw@127.0.0.1:{port}/")]).run();
    out.code(124).stderr_has("the broker refused: 403 ACCESS_REFUSED");
    assert!(!out.stderr.contains("bad-pw"));
    wait_for()
        .args(["--timeout", "1s", &format!("amqp://guest:guest@127.0.0.1:{port}/orders")])
        .run()
        .code(124)
        .stderr_has("530 NOT_ALLOWED - vhost orders not found");
    stalls(|p| format!("amqp://127.0.0.1:{p}/"), port);
    drop(server);
}

#[test]
fn grpc_health_serving_not_serving_and_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("db-ready");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/grpc_health_server.py");
    let python = Path::new(&std::env::var("PODINIT_CACHE").unwrap_or_else(|_| "/var/cache/podinit".into())).join("grpc/bin/python3");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg("--db-ready")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/ensure-tools installs it)", python.display()));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let url = |service: &str| format!("grpc://127.0.0.1:{port}{service}");
    wait_for().args(["--timeout", "10s", &url("")]).run().code(0);
    wait_for().args(["--timeout", "1s", &url("/db")]).run().code(124).stderr_has("NOT_SERVING");
    wait_for().args(["--timeout", "1s", &url("/nosuch")]).run().code(124).stderr_has("no health status for 'nosuch'");
    let waiting = wait_for().args(["--timeout", "20s", &url("/db")]).command().spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&ready, "").unwrap();
    Outcome::from_output(waiting.wait_with_output().unwrap()).code(0).stderr_has("/db: ready after");
    // Not a gRPC server: an HTTP/1 server that answers every connection.
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_port = http.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        for stream in http.incoming().flatten().take(50) {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let refused = wait_for().args(["--timeout", "1s", "--attempt-timeout", "300ms", &format!("grpc://127.0.0.1:{http_port}")]).run();
    refused.code(124);
    assert!(refused.stderr.contains("not yet") && !refused.stderr.contains(": ready after"), "{}", refused.stderr);
    stalls(|p| format!("grpc://127.0.0.1:{p}"), port);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn sql_conditions_on_postgres_and_mariadb() {
    let pg = postgres("pg-s3cret", 0).await;
    let base = pg.url("postgres");
    let ready_query = format!("{base}?query=SELECT%20count(*)%20FROM%20migrations_done");
    // The table does not exist yet (migrations not run): not ready, keep waiting.
    let waiting = wait_for().args(["--timeout", "90s", &ready_query]).command().spawn().unwrap();
    let mut conn = loop {
        if let Ok(conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await {
            break conn;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    sqlx::raw_sql("CREATE TABLE migrations_done (v INT)").execute(&mut conn).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::raw_sql("INSERT INTO migrations_done VALUES (1)").execute(&mut conn).await.unwrap();
    let out = Outcome::from_output(waiting.wait_with_output().unwrap());
    out.code(0);
    assert!(!out.stderr.contains("pg-s3cret"));
    // A boolean column; false keeps waiting and says so.
    wait_for()
        .args(["--timeout", "2s", &format!("{base}?query=SELECT%20count(*)%20%3E%205%20FROM%20migrations_done")])
        .run()
        .code(124)
        .stderr_has("the query's answer is false yet");
    // A syntax error or a missing function cannot be cured by waiting: exit 2 at once.
    let started = Instant::now();
    wait_for()
        .args(["--timeout", "60s", &format!("{base}?query=SELEC%201")])
        .run()
        .code(2)
        .stderr_has("the query fails in a way waiting cannot fix: syntax error");
    assert!(started.elapsed() < Duration::from_secs(10));

    let my = mariadb("my-s3cret", 0).await;
    let url = my.url("mysql");
    let mut conn = loop {
        if let Ok(conn) = <sqlx::MySqlConnection as sqlx::Connection>::connect(&url).await {
            break conn;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    sqlx::raw_sql("CREATE TABLE dashboards (name TEXT)").execute(&mut conn).await.unwrap();
    let query = format!("{url}?query=SELECT%20EXISTS(SELECT%201%20FROM%20dashboards%20WHERE%20name%20%3D%20'home')");
    wait_for().args(["--timeout", "2s", &query]).run().code(124).stderr_has("the query's answer is false yet");
    sqlx::raw_sql("INSERT INTO dashboards VALUES ('home')").execute(&mut conn).await.unwrap();
    wait_for().args(["--timeout", "10s", &query]).run().code(0);
    wait_for()
        .args(["--timeout", "60s", &format!("{url}?query=SELEC%201")])
        .run()
        .code(2)
        .stderr_has("You have an error in your SQL syntax");
}

#[test]
fn a_file_that_must_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("upgrade.lock");
    std::fs::write(&lock, "").unwrap();
    let target = format!("file://{}", lock.display());
    wait_for().args(["--timeout", "1s", "--file-absent", &target]).run().code(124).stderr_has("still exists");
    let remove = lock.clone();
    let remover = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        std::fs::remove_file(remove).unwrap();
    });
    wait_for().args(["--timeout", "10s", "--file-absent", &target]).run().code(0).stderr_has("ready after");
    remover.join().unwrap();
    // A dangling link is still there.
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &lock).unwrap();
    wait_for().args(["--timeout", "1s", "--file-absent", &target]).run().code(124).stderr_has("still exists");
}

#[test]
fn dns_names_with_a_minimum_number_of_addresses() {
    // `peers` resolves to three addresses (an /etc/hosts of our own in a private mount namespace).
    let hosts = "127.0.0.1 localhost\n10.0.0.1 peers\n10.0.0.2 peers\n10.0.0.3 peers\n";
    let run = |target: &str| crate::support::cmd::with_hosts(hosts, &["wait-for", "--timeout", "2s", target]);
    run("dns://peers?min=3").code(0);
    run("dns://peers?min=4").code(124).stderr_has("peers resolves to 3 addresses, fewer than 4");
}

/// A server that asks for a client certificate: without one the handshake fails (never ready
/// within 2 s); with `cert` and `key`, ready.
fn needs_client_certificate(url: &str, ca: &Path, cert: &Path, key: &Path) {
    wait_for().args(["--timeout", "2s", "--ca-file"]).arg(ca).arg(url).run().code(124);
    wait_for()
        .args(["--timeout", "10s", "--ca-file"])
        .arg(ca)
        .arg("--cert-file")
        .arg(cert)
        .arg("--key-file")
        .arg(key)
        .arg(url)
        .run()
        .code(0);
}

#[test]
fn rediss_with_a_private_ca_and_a_client_certificate() {
    let pki = crate::support::web::Pki::new("DNS:localhost,IP:127.0.0.1");
    let (cert, key) = pki.client();
    let port = free_port();
    let _server = Local::start(
        tempfile::tempdir().unwrap(),
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--requirepass", "s3cret-pw"])
            .arg("--tls-cert-file")
            .arg(pki.cert())
            .arg("--tls-key-file")
            .arg(pki.key())
            .arg("--tls-ca-cert-file")
            .arg(pki.ca())
            .args(["--tls-auth-clients", "yes"]),
    );
    needs_client_certificate(&format!("rediss://:s3cret-pw@127.0.0.1:{port}"), &pki.ca(), &cert, &key);
    // Plain redis:// to the TLS port: what comes back is no Redis reply.
    wait_for().args(["--timeout", "1s", &format!("redis://:s3cret-pw@127.0.0.1:{port}")]).run().code(124);
}

#[test]
fn https_with_a_client_certificate() {
    let pki = crate::support::web::Pki::new("DNS:localhost,IP:127.0.0.1");
    let (cert, key) = pki.client();
    let port = free_port();
    let _server = Local::start(
        tempfile::tempdir().unwrap(),
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &port.to_string(), "-Verify", "1", "-verify_return_error"])
            .arg("-CAfile")
            .arg(pki.ca())
            .arg("-cert")
            .arg(pki.cert())
            .arg("-key")
            .arg(pki.key()),
    );
    let url = format!("https://127.0.0.1:{port}/");
    needs_client_certificate(&url, &pki.ca(), &cert, &key);
    wait_for().args(["--timeout", "1s", "--cert-file"]).arg(pki.ca()).arg(&url).run().code(2).stderr_has("--key-file");
}

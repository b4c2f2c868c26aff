//! `podinit wait-for` against real listeners, servers, files, sockets, IPC objects and
//! databases that become ready after a delay.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::{Duration, Instant};

use testcontainers::ImageExt as _;
use testcontainers::runners::AsyncRunner as _;

use crate::support::docker::{podinit_image, run_to_exit};
use crate::support::services::{mariadb, postgres};
use crate::support::web::Pki;
use crate::support::{Outcome, Podinit};

fn wait_for() -> Podinit {
    Podinit::new().arg("wait-for")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `f` on a thread after `delay`.
fn after(delay: Duration, f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(delay);
        f();
    })
}

#[test]
fn tcp_listener_that_appears_later_on_v4_and_v6() {
    let (v4, v6) = (free_port(), free_port());
    let server = after(Duration::from_millis(400), move || {
        let a = TcpListener::bind(("127.0.0.1", v4)).unwrap();
        let b = TcpListener::bind(("::1", v6)).unwrap();
        thread::sleep(Duration::from_secs(3));
        drop((a, b));
    });
    let started = Instant::now();
    let out = wait_for().args(["--timeout", "10s", &format!("tcp://127.0.0.1:{v4}"), &format!("tcp://[::1]:{v6}")]).run();
    out.code(0).stderr_has("connection refused").stderr_has("2 targets ready in");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(2), "took {took:?}");
    server.join().unwrap();
}

#[test]
fn a_name_with_several_addresses_is_ready_when_any_accepts() {
    // `multi` resolves to 127.0.0.1 and ::1; only the IPv6 address listens.
    let listener = TcpListener::bind(("::1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = crate::support::cmd::with_hosts(
        "127.0.0.1 localhost\n127.0.0.1 multi\n::1 multi\n",
        &["wait-for", "--timeout", "5s", &format!("tcp://multi:{port}")],
    );
    out.code(0).stderr_has(&format!("tcp://multi:{port}: ready after"));
}

/// A tiny HTTP/1.1 server: the first `not_ready` requests get 503, then 200 with `body`.
fn http_server(not_ready: usize, body: &'static str) -> (u16, thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            served += 1;
            let (status, body) = if served <= not_ready { ("503 Service Unavailable", "starting") } else { ("200 OK", body) };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if request.contains("x-stop: now") || served > 200 {
                break;
            }
        }
        served
    });
    (port, handle)
}

fn stop_http(port: u16) {
    let _ = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| s.write_all(b"GET / HTTP/1.1\r\nx-stop: now\r\n\r\n"));
}

#[test]
fn http_503_is_not_ready_and_200_is() {
    let (port, server) = http_server(3, r#"{"status":"UP","checks":[{"name":"db","ok":true}]}"#);
    let out = wait_for()
        .args([
            "--timeout",
            "10s",
            "--http-json",
            "checks.0.ok=true",
            "--http-body-contains",
            "UP",
            &format!("http://127.0.0.1:{port}/healthz"),
        ])
        .run();
    out.code(0).stderr_has("answered 503 Service Unavailable (ready on 200-299)").stderr_has("ready after");
    stop_http(port);
    assert!(server.join().unwrap() >= 4);
}

#[test]
fn http_body_and_json_mismatches_keep_waiting_and_name_the_reason() {
    let (port, server) = http_server(0, r#"{"status":"DOWN"}"#);
    let out = wait_for().args(["--timeout", "1s", "--http-json", "status=UP", &format!("http://127.0.0.1:{port}/")]).run();
    out.code(124).stderr_has("status is \"DOWN\", not UP");
    let out = wait_for().args(["--timeout", "1s", "--http-status", "204", &format!("http://127.0.0.1:{port}/")]).run();
    out.code(124).stderr_has("answered 200 OK (ready on 204)");
    stop_http(port);
    server.join().unwrap();
}

#[test]
fn http_headers_are_sent_but_never_logged() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        let request = String::from_utf8_lossy(&buf[..n]).to_lowercase();
        let status =
            if request.contains("authorization: bearer t0ps3cret") && request.starts_with("head ") { "200 OK" } else { "401 Unauthorized" };
        let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    let out = wait_for()
        .args([
            "--timeout",
            "5s",
            "--http-method",
            "HEAD",
            "--http-header",
            "Authorization: Bearer t0ps3cret",
            "--log-level",
            "debug",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .run();
    out.code(0);
    assert!(!out.stderr.contains("t0ps3cret"), "a header value reached the log:\n{}", out.stderr);
    server.join().unwrap();
}

#[test]
fn https_with_a_private_ca_server_name_override_and_skip_verify() {
    let pki = Pki::new("DNS:podinit.test");
    let port = free_port();
    let _server = pki.serve(port);
    let url = format!("https://127.0.0.1:{port}/");
    let ca = pki.ca();
    let ca = ca.to_str().unwrap();
    // The certificate is for podinit.test, the URL says 127.0.0.1: verified as podinit.test.
    wait_for().args(["--timeout", "10s", "--ca-file", ca, "--tls-server-name", "podinit.test", &url]).run().code(0);
    // Without the override the name does not match: not ready, and it says why.
    wait_for().args(["--timeout", "1s", "--ca-file", ca, &url]).run().code(124).stderr_has("certificate");
    // Without trust in the private CA: not ready either.
    wait_for().args(["--timeout", "1s", "--tls-server-name", "podinit.test", &url]).run().code(124).stderr_has("certificate");
    wait_for().args(["--timeout", "10s", "--insecure-skip-verify", &url]).run().code(0);
    // A CA file that is missing is bad input, found before any waiting.
    wait_for().args(["--ca-file", "/nonexistent/ca.pem", &url]).run().code(2).stderr_has("--ca-file /nonexistent/ca.pem");
}

#[test]
fn https_not_served_yet_keeps_waiting() {
    let pki = Pki::new("DNS:podinit.test");
    let port = free_port();
    let ca = pki.ca();
    let waiter = wait_for()
        .args([
            "--timeout",
            "15s",
            "--ca-file",
            ca.to_str().unwrap(),
            "--tls-server-name",
            "podinit.test",
            &format!("https://127.0.0.1:{port}/"),
        ])
        .command()
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(700));
    let _server = pki.serve(port);
    let out = waiter.wait_with_output().unwrap();
    let out = Outcome::from_output(out);
    out.code(0).stderr_has("connection refused");
}

#[test]
fn file_created_later_is_seen_through_inotify_even_in_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/ready");
    let p = path.clone();
    let started = Instant::now();
    let maker = after(Duration::from_millis(300), move || {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "ok").unwrap();
    });
    let out =
        wait_for().args(["--timeout".as_ref(), "10s".as_ref(), format!("file://{}", path.display()).as_ref() as &std::ffi::OsStr]).run();
    out.code(0).stderr_has("does not exist yet");
    // inotify: well within the 1 s safety poll.
    assert!(started.elapsed() < Duration::from_millis(900), "took {:?}", started.elapsed());
    maker.join().unwrap();
}

#[test]
fn file_content_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status");
    std::fs::write(&path, "").unwrap();
    let target = format!("file://{}", path.display());
    wait_for().args(["--timeout", "500ms", "--file-non-empty", &target]).run().code(124).stderr_has("exists but is empty");
    let p = path.clone();
    let writer = after(Duration::from_millis(300), move || {
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"starting\n").unwrap();
        thread::sleep(Duration::from_millis(300));
        f.write_all(b"READY\n").unwrap();
    });
    let started = Instant::now();
    wait_for().args(["--timeout", "10s", "--file-contains", "READY", &target]).run().code(0).stderr_has("does not contain the text yet");
    assert!(started.elapsed() >= Duration::from_millis(550), "ready only after the text was written");
    writer.join().unwrap();
}

#[test]
fn unix_socket_file_that_exists_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    // A stale socket file: bound once, listener gone. It exists; nothing accepts.
    drop(UnixListener::bind(&path).unwrap());
    let p = path.clone();
    let server = after(Duration::from_millis(400), move || {
        std::fs::remove_file(&p).unwrap();
        let listener = UnixListener::bind(&p).unwrap();
        let _ = listener.accept();
    });
    let out =
        wait_for().args(["--timeout".as_ref(), "10s".as_ref(), format!("unix://{}", path.display()).as_ref() as &std::ffi::OsStr]).run();
    out.code(0).stderr_has("exists but nothing listens on it yet");
    server.join().unwrap();
}

#[test]
fn posix_message_queue_created_later() {
    use nix::mqueue::{MQ_OFlag, MqAttr, mq_close, mq_open, mq_unlink};
    use nix::sys::stat::Mode;
    let name = format!("/podinit-test-{}", std::process::id());
    let n = name.clone();
    let creator = after(Duration::from_millis(300), move || {
        let attr = MqAttr::new(0, 4, 64, 0);
        let mq = mq_open(n.as_str(), MQ_OFlag::O_CREAT | MQ_OFlag::O_RDWR, Mode::from_bits_truncate(0o600), Some(&attr)).unwrap();
        mq_close(mq).unwrap();
    });
    let out = wait_for().args(["--timeout", "10s", &format!("posix-mq://{name}")]).run();
    creator.join().unwrap();
    let _ = mq_unlink(name.as_str());
    out.code(0).stderr_has(&format!("no message queue {name} yet"));
}

/// A SysV object with a key, removed again on drop.
struct SysvObject {
    kind: &'static str,
    id: i32,
}

impl SysvObject {
    #[expect(unsafe_code, reason = "SysV IPC has no safe wrapper; the calls take only integers")]
    fn create(kind: &'static str, key: i32) -> Self {
        // SAFETY: plain syscalls with integer arguments; no memory is shared or mapped.
        let id = unsafe {
            match kind {
                "msg" => libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600),
                "shm" => libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600),
                _ => libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o600),
            }
        };
        assert!(id >= 0, "creating SysV {kind} with key {key:#x}: {}", std::io::Error::last_os_error());
        Self { kind, id }
    }
}

impl Drop for SysvObject {
    #[expect(unsafe_code, reason = "removing the object created above")]
    fn drop(&mut self) {
        // SAFETY: IPC_RMID with a null buffer is valid for all three kinds.
        unsafe {
            match self.kind {
                "msg" => libc::msgctl(self.id, libc::IPC_RMID, std::ptr::null_mut()),
                "shm" => libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()),
                _ => libc::semctl(self.id, 0, libc::IPC_RMID),
            };
        }
    }
}

#[test]
fn sysv_objects_created_later_by_key() {
    let base = 0x5000_0000 | (std::process::id() & 0xffff).cast_signed() << 4;
    for (i, kind) in ["msg", "shm", "sem"].into_iter().enumerate() {
        let key = base + i32::try_from(i).unwrap();
        let creator = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            SysvObject::create(kind, key)
        });
        let target = if i == 1 { format!("sysv-{kind}://{key}") } else { format!("sysv-{kind}://{key:#x}") };
        let out = wait_for().args(["--timeout", "10s", &target]).run();
        let object = creator.join().unwrap();
        out.code(0).stderr_has("yet").stderr_has("ready after");
        drop(object);
    }
}

#[test]
fn any_is_ready_with_one_target_and_once_checks_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = format!("tcp://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let down = format!("tcp://127.0.0.1:{}", free_port());
    wait_for().args(["--timeout", "5s", "--any", &down, &up]).run().code(0);
    wait_for().args(["--once", &up]).run().code(0);
    let out = wait_for().args(["--once", &up, &down]).run();
    out.code(1).stderr_has(&format!("not ready: {down} (connecting to"));
    wait_for().args(["--once", "--any", &up, &down]).run().code(0);
}

#[test]
fn exec_replaces_the_process_keeping_pid_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    std::fs::write(&ready, "").unwrap();
    let child = wait_for()
        .args([format!("file://{}", ready.display()).as_str(), "--", "/bin/sh", "-c", "echo $$; exit 7"])
        .command()
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pid.to_string(), "the command runs as the same process");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("running /bin/sh") && !stderr.contains("exit 7"), "only the program is logged, not its arguments:\n{stderr}");
    // --once is a probe: it never execs.
    wait_for().args(["--once", "file:///", "--", "/bin/true"]).run().code(2).stderr_has("cannot be used with");
}

#[test]
fn timeout_exits_124_names_every_target_and_never_runs_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let down = format!("tcp://127.0.0.1:{}", free_port());
    let missing = format!("file://{}", dir.path().join("never").display());
    let started = Instant::now();
    let out = wait_for().args(["--timeout", "700ms", &down, &missing, "--", "/usr/bin/touch", marker.to_str().unwrap()]).run();
    out.code(124)
        .stderr_has("2 of 2 targets not ready after")
        .stderr_has(&format!("{down} (connecting to"))
        .stderr_has("does not exist yet)");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(!marker.exists(), "the command ran after a timeout");
}

#[test]
fn bad_targets_and_commands_fail_at_once() {
    for (target, says) in [
        ("db:5432", "has no scheme"),
        ("ftp://x", "unknown scheme 'ftp://'"),
        ("tcp://db", "has no port"),
        ("file://relative/path", "must be absolute"),
        ("sysv-msg://0xZZ", "is not a key"),
        ("posix-mq:///a/b", "one component"),
    ] {
        wait_for().arg(target).run().code(2).stderr_has(says).stderr_has(target);
    }
    wait_for()
        .args(["--db-password-file", "/nonexistent/pw", "postgres://app@db/app"])
        .run()
        .code(2)
        .stderr_has("--db-password-file /nonexistent/pw: not found");
    wait_for().args(["--http-status", "2xx", "http://x/"]).run().code(2).stderr_has("'2xx' is not a status code");
    // A missing or unexecutable command is found before any waiting (the target never gets ready).
    let never = format!("tcp://127.0.0.1:{}", free_port());
    let started = Instant::now();
    wait_for().args([never.as_str(), "--", "/nonexistent/app"]).run().code(127).stderr_has("not found");
    wait_for().args([never.as_str(), "--", "no-such-command-anywhere"]).run().code(127).stderr_has("not found in PATH");
    wait_for().args([never.as_str(), "--", "/etc/passwd"]).run().code(126).stderr_has("cannot be executed");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn sigterm_while_waiting_exits_143() {
    let child = wait_for().arg(format!("tcp://127.0.0.1:{}", free_port())).command().spawn().unwrap();
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert!(crate::support::cmd::sigterm(&child));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

#[test]
fn json_log_lines_carry_target_and_state() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let out = wait_for().args(["--log-format", "json", &target]).run();
    out.code(0);
    let lines = out.json_lines();
    let ready = lines.iter().find(|l| l["state"] == "ready").expect("a ready line");
    assert_eq!(ready["target"], target.as_str());
    assert!(ready["elapsed_ms"].is_u64());
}

#[test]
fn dns_names_resolve_through_the_system_resolver() {
    wait_for().args(["--timeout", "5s", "dns://localhost"]).run().code(0);
    wait_for().args(["--timeout", "1s", "dns://no-such-name.invalid"]).run().code(124).stderr_has("no-such-name.invalid does not resolve");
}

#[tokio::test]
async fn dns_record_types_through_the_pod_resolver() {
    // Containers on a user-defined network resolve each other through the engine's DNS server
    // (127.0.0.11 in /etc/resolv.conf), as pods resolve Services through CoreDNS.
    let network = format!("podinit-dns-{}", std::process::id());
    let made = std::process::Command::new("docker").args(["network", "create", &network]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let peer = podinit_image()
        .await
        .with_cmd(["wait-for", "tcp://127.0.0.1:1"])
        .with_network(&network)
        .with_container_name(format!("{network}-peer"))
        .start()
        .await
        .unwrap();
    let image = podinit_image().await;
    let ok =
        run_to_exit(image.with_cmd(["wait-for", "--timeout", "10s", &format!("dns://{network}-peer?type=A")]).with_network(&network)).await;
    let image = podinit_image().await;
    let missing =
        run_to_exit(image.with_cmd(["wait-for", "--timeout", "1s", &format!("dns://{network}-nobody?type=A")]).with_network(&network))
            .await;
    drop(peer);
    let _ = std::process::Command::new("docker").args(["network", "rm", &network]).output();
    ok.code(0).stderr_has("ready after");
    missing.code(124).stderr_has(&format!("{network}-nobody"));
}

#[tokio::test]
async fn postgres_is_ready_only_when_it_accepts_an_authenticated_session() {
    let db = postgres("pg-s3cret", 2).await;
    let out = wait_for().args(["--timeout", "60s", &db.url("postgres")]).run();
    out.code(0).stderr_has("ready after");
    assert!(!out.stderr.contains("pg-s3cret"), "the password reached the log:\n{}", out.stderr);
    // The password from a file (a mounted Secret), not from the URL.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, "pg-s3cret\n").unwrap();
    let no_password = format!("postgres://postgres@127.0.0.1:{}/app", db.port);
    wait_for().args(["--timeout", "10s", "--db-password-file", secret.to_str().unwrap(), &no_password]).run().code(0);
    let wrong = format!("postgres://postgres:wrong-pw@127.0.0.1:{}/app", db.port);
    let out = wait_for().args(["--timeout", "2s", &wrong]).run();
    out.code(124).stderr_has("password authentication failed");
    assert!(!out.stderr.contains("wrong-pw"), "the password reached the log:\n{}", out.stderr);
}

#[tokio::test]
async fn mariadb_is_ready_only_when_it_accepts_an_authenticated_session() {
    let db = mariadb("my-s3cret", 2).await;
    let out = wait_for().args(["--timeout", "60s", &db.url("mysql")]).run();
    out.code(0).stderr_has("ready after");
    assert!(!out.stderr.contains("my-s3cret"));
    let out = wait_for().args(["--timeout", "2s", &format!("mariadb://app:nope@127.0.0.1:{}/app", db.port)]).run();
    out.code(124).stderr_has("Access denied");
    assert!(!out.stderr.contains("nope@"));
}

#[test]
fn redirects_are_followed_unless_told_not_to() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        for stream in listener.incoming().take(3) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let response = if String::from_utf8_lossy(&buf[..n]).starts_with("GET /moved ") {
                "HTTP/1.1 302 Found\r\nLocation: /healthz\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    let url = format!("http://127.0.0.1:{port}/moved");
    wait_for().args(["--timeout", "5s", &url]).run().code(0);
    // Not followed, the 302 is judged by --http-status.
    wait_for().args(["--timeout", "5s", "--http-no-redirect", "--http-status", "302", &url]).run().code(0);
    server.join().unwrap();
}

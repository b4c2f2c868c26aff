//! `podinit vault-fetch` against a real OpenBao server in a container (images/test/vault).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::jwt::{SigningKey, TokenReviewer, service_account_claims};
use crate::support::services::{self, Bao};
use crate::support::{Outcome, Podinit};

/// Values no log line may ever show.
const SECRETS: &[&str] = &["s3cret-pw", "api-t0ken", "v1-value", "app-secret-id"];

fn fetch(bao: &Bao, out: &Path) -> Podinit {
    Podinit::new().args(["vault-fetch", "--timeout", "30s", "--out"]).arg(out).env("VAULT_ADDR", &bao.addr)
}

fn no_secret_in(outcome: &Outcome) {
    for secret in SECRETS {
        assert!(
            !outcome.stderr.contains(secret) && !outcome.stdout.contains(secret),
            "a secret value reached the output:\n{}",
            outcome.stderr
        );
    }
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: impl AsRef<Path>) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// Every file under `dir` as an app sees it (through the set's links; the `..` names of the
/// layout left out), relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().as_encoded_bytes().starts_with(b"..") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[tokio::test]
async fn kv_v1_and_v2_in_every_format_with_modes_owners_and_unchanged_reruns() {
    let bao = services::openbao().await;
    bao.cli(&["kv", "put", "secret/app/db", "user=app", "password=s3cret-pw", "port=5432"]);
    bao.cli(&["kv", "put", "secret/app/api", "token=api-t0ken"]);
    bao.cli(&["secrets", "enable", "-path=kv1", "-version=1", "kv"]);
    bao.cli(&["kv", "put", "kv1/app/legacy", "value=v1-value", "dash-key=x"]);
    let out = tempfile::tempdir().unwrap();
    let o = out.path();

    // Whole secrets as Secret-volume directories; one key renamed; the KV v2 API path; KV v1.
    let run =
        fetch(&bao, o).env("VAULT_TOKEN", "root").args(["secret/app/db", "secret/data/app/api#token=api-token", "kv1/app/legacy"]).run();
    run.code(0).stderr_has("3 secret(s)");
    no_secret_in(&run);
    assert_eq!(files(o), ["api-token", "db/password", "db/port", "db/user", "legacy/dash-key", "legacy/value"]);
    assert_eq!(read(o.join("db/password")), "s3cret-pw");
    assert_eq!(read(o.join("db/port")), "5432");
    assert_eq!(read(o.join("api-token")), "api-t0ken");
    assert_eq!(read(o.join("legacy/value")), "v1-value");
    assert_eq!(mode(o.join("db/password")), 0o400);

    // A rerun with nothing changed rewrites nothing (same inode).
    let inode = std::fs::metadata(o.join("db/password")).unwrap().ino();
    fetch(&bao, o)
        .env("VAULT_TOKEN", "root")
        .args(["secret/app/db", "secret/data/app/api#token=api-token", "kv1/app/legacy"])
        .run()
        .code(0)
        .stderr_has("0 file(s) written, 6 unchanged");
    assert_eq!(std::fs::metadata(o.join("db/password")).unwrap().ino(), inode);

    // A changed secret is rewritten.
    bao.cli(&["kv", "put", "secret/app/db", "user=app", "password=s3cret-pw", "port=6432"]);
    fetch(&bao, o).env("VAULT_TOKEN", "root").arg("secret/app/db").run().code(0).stderr_has("1 file(s) written, 2 unchanged");
    assert_eq!(read(o.join("db/port")), "6432");

    // JSON (data only) and dotenv, with --mode, --uid/--gid (the app runs as 1000:2000), and a version pin.
    let shaped = tempfile::tempdir().unwrap();
    let s = shaped.path();
    let run = fetch(&bao, s)
        .env("BAO_TOKEN", "root")
        .args(["--format", "json", "--mode", "0440", "--uid", "1000", "--gid", "2000", "secret/app/db", "kv1/app/legacy=conf/legacy.json"])
        .run();
    run.code(0);
    let json: serde_json::Value = serde_json::from_str(&read(s.join("db.json"))).unwrap();
    assert_eq!(json, serde_json::json!({"user": "app", "password": "s3cret-pw", "port": "6432"}));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&read(s.join("conf/legacy.json"))).unwrap()["value"], "v1-value");
    let meta = std::fs::metadata(s.join("db.json")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o440, 1000, 2000));
    let conf = std::fs::metadata(s.join("conf")).unwrap();
    assert_eq!((conf.uid(), conf.gid()), (1000, 2000));
    fetch(&bao, s).env("BAO_TOKEN", "root").args(["--format", "env", "secret/app/db?version=1", "kv1/app/legacy"]).run().code(0);
    assert_eq!(read(s.join("db.env")), "password='s3cret-pw'\nport='5432'\nuser='app'\n");
    assert_eq!(read(s.join("legacy.env")), "dash_key='x'\nvalue='v1-value'\n");
}

#[tokio::test]
async fn refusals_fail_at_once_and_leave_nothing_behind() {
    let bao = services::openbao().await;
    bao.cli(&["kv", "put", "secret/app/db", "user=app", "password=s3cret-pw"]);
    bao.cli(&["kv", "put", "secret/evil", "../../etc/passwd=owned"]);
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    let quick = |run: &Outcome, started: Instant| {
        no_secret_in(run);
        assert!(started.elapsed() < Duration::from_secs(5), "a refusal must not wait: {:?}", started.elapsed());
    };

    // The third secret is missing: the first two are not written either.
    let started = Instant::now();
    let run = fetch(&bao, o).env("VAULT_TOKEN", "root").args(["secret/app/db", "secret/app/db#user=user", "secret/app/missing"]).run();
    run.code(1).stderr_has("secret/app/missing: no secret at this path");
    quick(&run, started);
    assert_eq!(files(o), Vec::<String>::new());

    // A missing key names the keys that exist, never becomes an empty or "null" file.
    let started = Instant::now();
    let run = fetch(&bao, o).env("VAULT_TOKEN", "root").args(["secret/app/db", "secret/app/db#passwd"]).run();
    run.code(1).stderr_has("no key 'passwd' (its keys: password, user)");
    quick(&run, started);
    assert_eq!(files(o), Vec::<String>::new());

    // A key that would climb out of --out.
    let run = fetch(&bao, o).env("VAULT_TOKEN", "root").arg("secret/evil").run();
    run.code(1).stderr_has("key '../../etc/passwd' cannot be a file name");
    assert_eq!(files(o), Vec::<String>::new());
    assert!(!o.parent().unwrap().join("etc/passwd").exists());
    // Taken explicitly, it lands where the user says.
    fetch(&bao, o).env("VAULT_TOKEN", "root").arg("secret/evil#../../etc/passwd=evil").run().code(0);
    assert_eq!(files(o), ["evil"]);

    // Permission denied: a token whose policy does not cover the path.
    let limited = bao.cli(&["token", "create", "-policy=default", "-field=token"]);
    let started = Instant::now();
    let run = fetch(&bao, o).env("VAULT_TOKEN", limited.trim()).arg("secret/app/db").run();
    run.code(1).stderr_has("403 permission denied").stderr_has("grant 'read'");
    quick(&run, started);

    // Bad input: exit 2 before any request.
    fetch(&bao, o)
        .env("VAULT_TOKEN", "root")
        .env("VAULT_SKIP_VERIFY", "yes")
        .arg("secret/app/db")
        .run()
        .code(2)
        .stderr_has("VAULT_SKIP_VERIFY='yes' is not a boolean");
    fetch(&bao, o).arg("secret/app/db").run().code(2).stderr_has("no token for --auth token");
    fetch(&bao, o).env("VAULT_TOKEN", "root").arg("secret/app/db=/etc/x").run().code(2).stderr_has("must stay inside --out");
    Podinit::new()
        .args(["vault-fetch", "--out"])
        .arg(o)
        .arg("secret/app/db")
        .env("VAULT_TOKEN", "root")
        .run()
        .code(2)
        .stderr_has("no server address");
    let termination = o.parent().unwrap().join(format!("termination-{}", std::process::id()));
    fetch(&bao, o).env("VAULT_TOKEN", "root").arg("--termination-log").arg(&termination).arg("secret/app/nope").run().code(1);
    let message = read(&termination);
    assert!(message.contains("secret/app/nope: no secret at this path"), "{message}");
    std::fs::remove_file(termination).unwrap();
}

#[tokio::test]
async fn unreachable_server_is_retried_until_the_timeout() {
    let out = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of this host.
    let started = Instant::now();
    let run = Podinit::new()
        .args(["vault-fetch", "--timeout", "2s", "--out"])
        .arg(out.path())
        .env("VAULT_ADDR", "http://127.0.0.1:9")
        .env("VAULT_TOKEN", "root")
        .arg("secret/app/db")
        .run();
    run.code(124).stderr_has("127.0.0.1:9: connection refused").stderr_has("gave up after");
    assert!(started.elapsed() >= Duration::from_secs(2) && started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    assert_eq!(files(out.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_sealed_server_is_waited_for_until_unsealed() {
    let (bao, key, root) = services::openbao_sealed().await;
    bao.cli_as(&root, &["operator", "unseal", &key]);
    bao.cli_as(&root, &["secrets", "enable", "-path=secret", "-version=2", "kv"]);
    bao.cli_as(&root, &["kv", "put", "secret/app/db", "password=s3cret-pw"]);
    bao.cli_as(&root, &["operator", "seal"]);

    let out = tempfile::tempdir().unwrap();
    let child = fetch(&bao, out.path()).env("VAULT_TOKEN", &root).arg("secret/app/db#password").command().spawn().unwrap();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(files(out.path()), Vec::<String>::new(), "nothing can be read while sealed");
    bao.cli_as(&root, &["operator", "unseal", &key]);
    let run = Outcome::from_output(child.wait_with_output().unwrap());
    run.code(0).stderr_has("sealed");
    no_secret_in(&run);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(read(out.path().join("password")), "s3cret-pw");
}

/// Accessors of live tokens: a token podinit logged in with must not outlive the run.
#[tokio::test]
async fn an_untrusted_certificate_fails_at_once_and_the_right_ca_is_trusted() {
    let (bao, ca) = services::openbao_tls().await;
    bao.cli(&["kv", "put", "secret/app/db", "password=s3cret-pw"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let started = Instant::now();
    let run = fetch(&bao, &out).env("VAULT_TOKEN", "root").arg("secret/app/db").run();
    run.code(1).stderr_has("invalid peer certificate").stderr_has("hint: trust the server's CA with --ca-cert");
    assert!(started.elapsed() < Duration::from_secs(10), "waiting cannot fix an untrusted certificate");
    assert!(!out.exists());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let run = fetch(&bao, &out).env("VAULT_TOKEN", "root").env("VAULT_CACERT", &ca_file).arg("secret/app/db").run();
    run.code(0);
    no_secret_in(&run);
    assert_eq!(read(out.join("db/password")), "s3cret-pw");
}

fn token_count(bao: &Bao) -> usize {
    bao.cli(&["list", "-format=json", "auth/token/accessors"]).matches('"').count() / 2
}

#[tokio::test]
async fn approle_login_and_the_token_is_revoked_after_use() {
    let bao = services::openbao().await;
    bao.cli(&["kv", "put", "secret/app/db", "password=s3cret-pw"]);
    let role_id = bao.approle_app("app-secret-id");
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("role-id"), role_id.trim()).unwrap();
    std::fs::write(creds.path().join("secret-id"), "app-secret-id\n").unwrap();

    let before = token_count(&bao);
    let out = tempfile::tempdir().unwrap();
    let run = fetch(&bao, out.path())
        .args(["--auth", "approle", "--role-id-file"])
        .arg(creds.path().join("role-id"))
        .arg("--secret-id-file")
        .arg(creds.path().join("secret-id"))
        .args(["--log-level", "trace", "secret/app/db#password"])
        .run();
    run.code(0).stderr_has("logged in (logging in with approle auth at auth/approle)");
    no_secret_in(&run);
    assert_eq!(read(out.path().join("password")), "s3cret-pw");
    assert_eq!(token_count(&bao), before, "the approle token was not revoked");

    // A wrong secret id is refused at once with what to check.
    std::fs::write(creds.path().join("secret-id"), "wrong").unwrap();
    fetch(&bao, out.path())
        .args(["--auth", "approle", "--role-id-file"])
        .arg(creds.path().join("role-id"))
        .arg("--secret-id-file")
        .arg(creds.path().join("secret-id"))
        .arg("secret/app/db")
        .run()
        .code(1)
        .stderr_has("check the role id and secret id");

    // A token given by the caller is used and never revoked.
    let given = bao.cli(&["token", "create", "-policy=app-read", "-field=token"]);
    fetch(&bao, out.path()).env("VAULT_TOKEN", given.trim()).arg("secret/app/db#password=again").run().code(0);
    bao.cli(&["token", "lookup", given.trim()]);
}

// Multi-threaded: the TokenReview listener answers while the test thread waits for podinit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_login_with_a_service_account_token() {
    let bao = services::openbao().await;
    bao.cli(&["kv", "put", "secret/app/db", "password=s3cret-pw"]);
    bao.app_read_policy();
    let key = SigningKey::generate();
    let jwt = key.sign(&service_account_claims("shop", "web"));
    let reviewer = TokenReviewer::start(jwt.clone(), "shop", "web").await;
    bao.kubernetes_auth(&key, &reviewer);

    let before = token_count(&bao);
    let out = tempfile::tempdir().unwrap();
    let token_file = key.token_file("token", &jwt);
    let run =
        fetch(&bao, out.path()).args(["--auth", "kubernetes", "--role", "web", "--jwt-file"]).arg(&token_file).arg("secret/app/db").run();
    run.code(0).stderr_has("logged in (logging in with kubernetes auth at auth/kubernetes as role 'web')");
    assert!(!run.stderr.contains(&jwt[..40]), "the JWT reached the log");
    assert_eq!(read(out.path().join("db/password")), "s3cret-pw");
    assert!(reviewer.reviews.load(std::sync::atomic::Ordering::SeqCst) >= 1, "OpenBao never asked for a TokenReview");
    assert_eq!(token_count(&bao), before, "the kubernetes token was not revoked");

    // A service account the role does not bind is refused at once, with the hint.
    let other = key.sign(&service_account_claims("shop", "batch"));
    let other_file = key.token_file("other", &other);
    let started = Instant::now();
    fetch(&bao, out.path())
        .args(["--auth", "kubernetes", "--role", "web", "--jwt-file"])
        .arg(&other_file)
        .arg("secret/app/db")
        .run()
        .code(1)
        .stderr_has("bound_service_account_names");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A JWT signed by a key the server does not trust.
    let stranger = SigningKey::generate().sign(&service_account_claims("shop", "web"));
    let stranger_file = key.token_file("stranger", &stranger);
    fetch(&bao, out.path())
        .args(["--auth", "kubernetes", "--role", "web", "--jwt-file"])
        .arg(&stranger_file)
        .arg("secret/app/db")
        .run()
        .code(1);
    // No role: bad input.
    fetch(&bao, out.path())
        .args(["--auth", "kubernetes", "--jwt-file"])
        .arg(&token_file)
        .arg("secret/app/db")
        .run()
        .code(2)
        .stderr_has("needs --role");
}

#[tokio::test]
async fn jwt_login_and_a_hundred_secrets_at_once() {
    let bao = services::openbao().await;
    bao.app_read_policy();
    let key = SigningKey::generate();
    bao.cli(&["auth", "enable", "jwt"]);
    let pem = format!("jwt_validation_pubkeys={}", key.public_pem());
    bao.cli(&["write", "auth/jwt/config", &pem]);
    bao.cli(&[
        "write",
        "auth/jwt/role/web",
        "role_type=jwt",
        "bound_audiences=podinit",
        "user_claim=sub",
        "token_policies=app-read",
        "token_ttl=10m",
    ]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let jwt = key.sign(&serde_json::json!({"sub": "web", "aud": "podinit", "iss": "test", "iat": now, "exp": now + 600}));
    let token_file = key.token_file("jwt", &jwt);

    let mut specs = Vec::new();
    for i in 0..100 {
        bao.cli(&["kv", "put", &format!("secret/app/s{i}"), &format!("value=v{i}")]);
        specs.push(format!("secret/app/s{i}#value=s{i}"));
    }
    let out = tempfile::tempdir().unwrap();
    let run = fetch(&bao, out.path()).args(["--auth", "jwt", "--role", "web", "--jwt-file"]).arg(&token_file).args(&specs).run();
    run.code(0).stderr_has("100 secret(s)").stderr_has("100 file(s) written");
    assert_eq!(files(out.path()).len(), 100);
    assert_eq!(read(out.path().join("s42")), "v42");
    // A JWT for another audience.
    let wrong = key.sign(&serde_json::json!({"sub": "web", "aud": "other", "iss": "test", "iat": now, "exp": now + 600}));
    let wrong_file = key.token_file("wrong", &wrong);
    fetch(&bao, out.path())
        .args(["--auth", "jwt", "--role", "web", "--jwt-file"])
        .arg(&wrong_file)
        .arg("secret/app/s1")
        .run()
        .code(1)
        .stderr_has("bound_audiences");
}

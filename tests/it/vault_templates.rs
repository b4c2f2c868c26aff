//! `vault-fetch` doing what the Vault Agent injector's pre-populate mode does, against a real
//! OpenBao: Vault Agent templates (taken from Vault's and vault-k8s' documentation), PKI
//! certificates kept across restarts, real dynamic database credentials from the test
//! PostgreSQL, base64 values written as bytes, and the token written for the app.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use sqlx::Connection as _;

use crate::support::cmd::tool;
use crate::support::pod::Network;
use crate::support::services::{self, Bao};
use crate::support::{Outcome, Podinit};

fn fetch(bao: &Bao, out: &Path) -> Podinit {
    Podinit::new().args(["vault-fetch", "--timeout", "30s", "--out"]).arg(out).env("VAULT_ADDR", &bao.addr)
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn never_shows(outcome: &Outcome, values: &[&str]) {
    for value in values {
        assert!(!outcome.stderr.contains(value) && !outcome.stdout.contains(value), "{value:?} reached the output:\n{}", outcome.stderr);
    }
}

/// Template files in a directory of their own; returns it and `--template SRC=NAME` args.
fn templates(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    for (name, source) in files {
        let src = dir.path().join(format!("{}.tmpl", name.replace('/', "_")));
        std::fs::write(&src, source).unwrap();
        args.push("--template".to_owned());
        args.push(format!("{}={name}", src.display()));
    }
    (dir, args)
}

/// PKI at `pki/` with a root CA and a role `web` for `*.shop.svc` and IPs.
fn pki(bao: &Bao) {
    bao.cli(&["secrets", "enable", "pki"]);
    bao.cli(&["secrets", "tune", "-max-lease-ttl=87600h", "pki"]);
    bao.cli(&["write", "-field=certificate", "pki/root/generate/internal", "common_name=Shop Root CA", "ttl=87600h"]);
    bao.cli(&[
        "write",
        "pki/roles/web",
        "allowed_domains=shop.svc,shop.svc.cluster.local",
        "allow_subdomains=true",
        "allow_bare_domains=true",
        "allow_ip_sans=true",
        "max_ttl=72h",
    ]);
}

fn issued(bao: &Bao) -> usize {
    bao.cli(&["list", "-format=json", "pki/certs"]).matches('"').count() / 2
}

fn openssl(args: &[&str]) -> String {
    let out = tool("openssl", args);
    out.code(0);
    out.stdout
}

/// The public key of a certificate and of a private key, as openssl sees them.
fn same_key(cert: &Path, key: &Path) -> bool {
    openssl(&["x509", "-noout", "-pubkey", "-in", cert.to_str().unwrap()]) == openssl(&["pkey", "-pubout", "-in", key.to_str().unwrap()])
}

#[tokio::test]
async fn templates_from_the_vault_docs_render_against_openbao() {
    let bao = services::openbao().await;
    bao.cli(&["kv", "put", "secret/web", "username=web-user", "password=s3cret-pw"]);
    bao.cli(&["kv", "put", "secret/app/config", "api_url=https://api.shop.svc", "retries=3"]);
    bao.cli(&["kv", "put", "secret/app/db", "password=db-pw"]);
    bao.cli(&["secrets", "enable", "-path=kv1", "-version=1", "kv"]);
    bao.cli(&["kv", "put", "kv1/legacy", "value=v1-value"]);
    pki(&bao);
    let before = issued(&bao);

    // Vault's "Agent Sidecar Injector examples" (.env), a JSON config, a PEM bundle and its key
    // from two templates of one `issue` call (vault-k8s' PKI example), a listing, KV v1.
    let kv = [
        (
            "app.env",
            "{{ with secret \"secret/data/web\" -}}\n  export DB_USER=\"{{ .Data.data.username }}\"\n  export DB_PASS=\"{{ .Data.data.password }}\"\n{{- end }}\n",
        ),
        ("config.json", "{{ with secret \"secret/app/config\" }}{{ .Data.data | toJSONPretty }}{{ end }}\n"),
        (
            "misc",
            "{{ range secrets \"secret/app/\" }}{{ . }}\n{{ end }}legacy={{ with secret \"kv1/legacy\" }}{{ .Data.value }}{{ end }}\nregion={{ env \"REGION\" }}\nhello={{ base64Decode \"aGVsbG8=\" }}\nlease={{ with secret \"secret/web\" }}{{ .LeaseDuration }} {{ .Data.metadata.version }}{{ end }}\n",
        ),
    ];
    let pki_templates = [
        (
            "tls/bundle.pem",
            "{{- with secret \"pki/issue/web\" \"common_name=web.shop.svc\" \"ttl=24h\" -}}\n{{ .Data.certificate }}\n{{ .Data.issuing_ca }}\n{{- end }}\n",
        ),
        (
            "tls/key.pem",
            "{{- with secret \"pki/issue/web\" \"common_name=web.shop.svc\" \"ttl=24h\" -}}\n{{ .Data.private_key }}\n{{- end }}\n",
        ),
    ];
    let (_dir, args) = templates(&[&kv[..], &pki_templates[..]].concat());
    let (_kv_dir, kv_only) = templates(&kv);
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    let run = fetch(&bao, o).env("VAULT_TOKEN", "root").env("REGION", "eu-1").args(&args).run();
    run.code(0).stderr_has("5 secret(s)").stderr_has("5 file(s) written");
    never_shows(&run, &["s3cret-pw", "db-pw", "v1-value", "PRIVATE KEY"]);
    assert_eq!(read(o.join("app.env")), "export DB_USER=\"web-user\"\n  export DB_PASS=\"s3cret-pw\"\n");
    let config: serde_json::Value = serde_json::from_str(&read(o.join("config.json"))).unwrap();
    assert_eq!(config, serde_json::json!({"api_url": "https://api.shop.svc", "retries": "3"}));
    assert_eq!(read(o.join("misc")), "config\ndb\nlegacy=v1-value\nregion=eu-1\nhello=hello\nlease=0 1\n");
    // One `issue` for both templates: the key is the certificate's; openssl checks the chain.
    assert_eq!(issued(&bao), before + 1, "the two templates issued two certificates");
    assert!(same_key(&o.join("tls/bundle.pem"), &o.join("tls/key.pem")), "the key is not the certificate's");
    let bundle = o.join("tls/bundle.pem");
    openssl(&["verify", "-CAfile", bundle.to_str().unwrap(), bundle.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(o.join("app.env")).unwrap().mode() & 0o777, 0o400);

    // Without the PKI templates a rerun changes nothing.
    let again = tempfile::tempdir().unwrap();
    fetch(&bao, again.path()).env("VAULT_TOKEN", "root").env("REGION", "eu-1").args(&kv_only).run().code(0).stderr_has("3 file(s) written");
    let inode = std::fs::metadata(again.path().join("app.env")).unwrap().ino();
    fetch(&bao, again.path())
        .env("VAULT_TOKEN", "root")
        .env("REGION", "eu-1")
        .args(&kv_only)
        .run()
        .code(0)
        .stderr_has("0 file(s) written, 3 unchanged");
    assert_eq!(std::fs::metadata(again.path().join("app.env")).unwrap().ino(), inode);

    // A missing key fails naming the template, its line and the key; nothing is written.
    let (_bad, bad) = templates(&[("app.env", "# db\n{{ with secret \"secret/web\" }}{{ .Data.data.pasword }}{{ end }}\n")]);
    let empty = tempfile::tempdir().unwrap();
    let run = fetch(&bao, empty.path()).env("VAULT_TOKEN", "root").args(&bad).arg("secret/app/db").run();
    run.code(1).stderr_has("app.env.tmpl:2:").stderr_has("pasword");
    never_shows(&run, &["s3cret-pw", "web-user", "db-pw"]);
    assert!(std::fs::read_dir(empty.path()).unwrap().all(|e| e.unwrap().file_name().as_encoded_bytes().starts_with(b"..")));
    // A template that does not parse is bad input, found before any request.
    let (_syntax, syntax) = templates(&[("x", "{{ with secret \"secret/web\" }}{{ .Data }}\n")]);
    fetch(&bao, empty.path())
        .env("VAULT_TOKEN", "root")
        .env("VAULT_ADDR", "http://127.0.0.1:1")
        .args(&syntax)
        .run()
        .code(2)
        .stderr_has("x.tmpl:");
    // A template writing where another output writes: refused before anything is written.
    fetch(&bao, empty.path())
        .env("VAULT_TOKEN", "root")
        .env("VAULT_ADDR", "http://127.0.0.1:1")
        .args(&args[..2])
        .arg("secret/web#username=app.env")
        .run()
        .code(2)
        .stderr_has("would both write app.env");
}

#[tokio::test]
async fn pki_certificates_are_issued_once_and_kept_while_good() {
    let bao = services::openbao().await;
    pki(&bao);
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    let cert = |extra: &[&str]| {
        fetch(&bao, o)
            .env("VAULT_TOKEN", "root")
            .args([
                "--pki",
                "pki/issue/web",
                "--common-name",
                "web.shop.svc",
                "--alt-name",
                "web.shop.svc.cluster.local",
                "--ip-san",
                "10.0.0.7",
                "--ttl",
                "2h",
            ])
            .args(extra.iter().copied())
            .run()
    };
    let before = issued(&bao);
    let run = cert(&[]);
    run.code(0).stderr_has("issued a certificate for web.shop.svc");
    never_shows(&run, &["PRIVATE KEY"]);
    assert_eq!(issued(&bao), before + 1);
    let (crt, key, ca) = (o.join("tls.crt"), o.join("tls.key"), o.join("ca.crt"));
    openssl(&["verify", "-CAfile", ca.to_str().unwrap(), crt.to_str().unwrap()]);
    assert!(same_key(&crt, &key));
    assert!(read(&key).starts_with("-----BEGIN PRIVATE KEY-----"), "tls.key is not PKCS#8");
    let text = openssl(&["x509", "-noout", "-text", "-in", crt.to_str().unwrap()]);
    assert!(
        text.contains("DNS:web.shop.svc") && text.contains("DNS:web.shop.svc.cluster.local") && text.contains("IP Address:10.0.0.7"),
        "{text}"
    );
    assert!(
        read(&ca).contains("BEGIN CERTIFICATE")
            && openssl(&["x509", "-noout", "-subject", "-in", ca.to_str().unwrap()]).contains("Shop Root CA")
    );
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o400);

    // A restart keeps it: no new certificate, the same files.
    let inode = std::fs::metadata(&crt).unwrap().ino();
    cert(&[]).code(0).stderr_has("keeping the certificate for web.shop.svc").stderr_has("0 file(s) written, 3 unchanged");
    assert_eq!(issued(&bao), before + 1);
    assert_eq!(std::fs::metadata(&crt).unwrap().ino(), inode);
    // A self-signed pair with the same names planted in the volume is not kept: the chain is
    // checked against the mount's issuers as Vault reports them, and ca.crt comes from Vault.
    let vault_ca = read(&ca);
    let planted = tempfile::tempdir().unwrap();
    let (pk, pc) = (planted.path().join("k.pem"), planted.path().join("c.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "36500",
        "-subj",
        "/CN=web.shop.svc",
        "-addext",
        "subjectAltName=DNS:web.shop.svc,DNS:web.shop.svc.cluster.local,IP:10.0.0.7",
        "-keyout",
        pk.to_str().unwrap(),
        "-out",
        pc.to_str().unwrap(),
    ]);
    let data = std::fs::read_link(o.join("..data")).unwrap();
    for (name, from) in [("tls.crt", &pc), ("tls.key", &pk), ("ca.crt", &pc)] {
        let target = o.join(&data).join(name);
        std::fs::remove_file(&target).unwrap();
        std::fs::copy(from, &target).unwrap();
    }
    cert(&[]).code(0).stderr_has("issued a certificate");
    assert_eq!(issued(&bao), before + 2);
    assert_eq!(read(&ca), vault_ca, "ca.crt is not the mount's CA");
    openssl(&["verify", "-CAfile", ca.to_str().unwrap(), crt.to_str().unwrap()]);
    // Other names: a new certificate.
    cert(&["--alt-name", "api.shop.svc"]).code(0).stderr_has("issued a certificate");
    assert_eq!(issued(&bao), before + 3);
    assert!(openssl(&["x509", "-noout", "-text", "-in", crt.to_str().unwrap()]).contains("DNS:api.shop.svc"));
    // Less life left than asked for: renewed.
    cert(&["--alt-name", "api.shop.svc", "--renew-below", "0.999"]).code(0).stderr_has("issued a certificate");
    assert_eq!(issued(&bao), before + 4);
    // A name the role does not allow: refused at once with the role's hint, nothing replaced.
    let kept = read(&crt);
    fetch(&bao, o)
        .env("VAULT_TOKEN", "root")
        .args(["--pki", "pki/issue/web", "--common-name", "evil.example.com"])
        .run()
        .code(1)
        .stderr_has("allowed_domains");
    assert_eq!(read(&crt), kept);
}

#[tokio::test]
async fn database_credentials_render_into_a_connection_string() {
    let network = Network::create("vault-db").await;
    let pg_name = network.service("postgres");
    let db = services::postgres_on("pg-secret", 0, Some((&network.name, &pg_name))).await;
    let bao = services::openbao_on(Some((&network.name, &network.service("vault")))).await;
    bao.cli(&["secrets", "enable", "database"]);
    let url = format!("connection_url=postgresql://{{{{username}}}}:{{{{password}}}}@{pg_name}:5432/app?sslmode=disable");
    let mut tries = 0;
    // PostgreSQL may still be starting: the config write checks the connection.
    while Command::new("docker")
        .args(["exec", "-e", "BAO_ADDR=http://127.0.0.1:8200", "-e", "BAO_TOKEN=root", bao.container_id()])
        .args(["/bao", "write", "database/config/app"])
        .args(["plugin_name=postgresql-database-plugin", "allowed_roles=app", "username=postgres", "password=pg-secret", &url])
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        tries += 1;
        assert!(tries < 60, "OpenBao never reached PostgreSQL");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    bao.cli(&[
        "write",
        "database/roles/app",
        "db_name=app",
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT CONNECT ON DATABASE app TO \"{{name}}\";",
        "default_ttl=1h",
        "max_ttl=24h",
    ]);
    // vault-k8s' example: a connection string from dynamic credentials.
    let template = format!(
        "{{{{- with secret \"database/creds/app\" -}}}}\npostgres://{{{{ .Data.username }}}}:{{{{ .Data.password }}}}@127.0.0.1:{}/app?sslmode=disable\n{{{{- end }}}}\n",
        db.port
    );
    let (_dir, args) = templates(&[("db-url", &template)]);
    let out = tempfile::tempdir().unwrap();
    let run = fetch(&bao, out.path()).env("VAULT_TOKEN", "root").args(&args).run();
    run.code(0).stderr_has("database/creds/app: a lease of 1h").stderr_has("nothing renews it");
    let url = read(out.path().join("db-url"));
    assert!(url.starts_with("postgres://v-"), "{url}");
    never_shows(&run, &[url.split(':').nth(2).unwrap().split('@').next().unwrap()]);
    // The credentials are real: PostgreSQL lets them in.
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("the dynamic credentials log in");
    let user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut conn).await.unwrap();
    assert!(user.starts_with("v-"), "{user}");
}

#[tokio::test]
async fn base64_values_are_written_as_bytes_and_the_token_for_the_app() {
    let bao = services::openbao().await;
    let keystore: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
    let encoded = base64_encode(&keystore);
    bao.cli(&["kv", "put", "secret/app/java", &format!("keystore={encoded}"), "password=ks-pw"]);
    let role_id = bao.approle_app("app-secret-id");
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("role-id"), role_id.trim()).unwrap();
    std::fs::write(creds.path().join("secret-id"), "app-secret-id").unwrap();

    let out = tempfile::tempdir().unwrap();
    let run = fetch(&bao, out.path())
        .args(["--auth", "approle", "--role-id-file"])
        .arg(creds.path().join("role-id"))
        .arg("--secret-id-file")
        .arg(creds.path().join("secret-id"))
        .args(["--write-token", "vault-token", "secret/app/java?decode=base64#keystore=keystore.jks", "secret/app/java#password"])
        .run();
    run.code(0).stderr_has("keeping the token: it was written for the app");
    assert_eq!(std::fs::read(out.path().join("keystore.jks")).unwrap(), keystore, "the keystore differs");
    assert_eq!(read(out.path().join("password")), "ks-pw");
    let token = read(out.path().join("vault-token"));
    assert_eq!(std::fs::metadata(out.path().join("vault-token")).unwrap().mode() & 0o777, 0o400);
    never_shows(&run, &[&token, "ks-pw", &encoded[..40]]);
    // The token lives on for the app, with the login's policy.
    assert!(bao.cli(&["token", "lookup", &token]).contains("app-read"));

    // A value that is not base64: refused at once, naming the key, never the value.
    bao.cli(&["kv", "put", "secret/app/plain", "keystore=not base64 at all!"]);
    let run = fetch(&bao, out.path()).env("VAULT_TOKEN", "root").arg("secret/app/plain?decode=base64#keystore").run();
    run.code(1).stderr_has("the value of 'keystore' is not base64");
    never_shows(&run, &["not base64 at all"]);
    assert_eq!(std::fs::read(out.path().join("keystore.jks")).unwrap(), keystore, "the old set was replaced");
}

fn base64_encode(bytes: &[u8]) -> String {
    let out = Command::new("base64").arg("-w0").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write as _;
    out.stdin.as_ref().unwrap().write_all(bytes).unwrap();
    let out = out.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

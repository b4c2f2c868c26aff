//! `certs` and `truststore`, checked with independent tools: openssl (verify, x509, pkcs12,
//! s_server) and the JDK's keytool; a TLS server started with the generated material is
//! reached by podinit's own `wait-for https://` with the generated `ca.crt`.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use crate::support::cmd::{s, tool};
use crate::support::{Outcome, Podinit};

fn podinit(args: &[&str]) -> Outcome {
    Podinit::new().args(args).run()
}

/// Where `..data` points: a new name means a new set was written.
fn version(dir: &Path) -> String {
    std::fs::read_link(dir.join("..data")).unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_self_signed_set_verifies_and_a_rerun_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tls");
    let args = [
        "certs",
        "--out",
        s(&out),
        "--common-name",
        "webhook.ns.svc",
        "--dns",
        "webhook.ns.svc",
        "--dns",
        "webhook.ns.svc.cluster.local",
        "--ip",
        "127.0.0.1",
        "--keep-ca-key",
    ];
    podinit(&args).code(0).stderr_has("signed by a new CA");
    tool("openssl", &["verify", "-CAfile", s(&out.join("ca.crt")), s(&out.join("tls.crt"))])
        .code(0)
        .stdout_is(&format!("{}: OK\n", out.join("tls.crt").display()));
    let text = tool(
        "openssl",
        &[
            "x509",
            "-in",
            s(&out.join("tls.crt")),
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage,keyUsage,subjectKeyIdentifier,authorityKeyIdentifier,basicConstraints",
        ],
    );
    text.code(0);
    for want in [
        "DNS:webhook.ns.svc, DNS:webhook.ns.svc.cluster.local, IP Address:127.0.0.1",
        "TLS Web Server Authentication",
        "Digital Signature",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        "CA:FALSE",
    ] {
        assert!(text.stdout.contains(want), "{want} not in:\n{}", text.stdout);
    }
    assert!(!text.stdout.contains("Client Authentication"), "server only by default:\n{}", text.stdout);
    // The leaf's Authority Key Identifier is the CA's Subject Key Identifier.
    let ca_ski = tool("openssl", &["x509", "-in", s(&out.join("ca.crt")), "-noout", "-ext", "subjectKeyIdentifier"]);
    let ski = ca_ski.stdout.lines().nth(1).unwrap().trim().to_owned();
    assert!(text.stdout.contains(&ski), "the CA's key id {ski} is not the leaf's authority key id:\n{}", text.stdout);
    tool("openssl", &["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", s(&out.join("ca.crt")), s(&out.join("tls.crt"))])
        .code(0);
    // tls.crt is the certificate then the CA (the full chain), as cert-manager writes it.
    let chain = std::fs::read_to_string(out.join("tls.crt")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(chain.ends_with(&std::fs::read_to_string(out.join("ca.crt")).unwrap()));
    // Keys that openssl reads (PKCS#8).
    tool("openssl", &["pkey", "-in", s(&out.join("tls.key")), "-noout"]).code(0);
    for (name, mode) in [("tls.key", 0o600), ("ca.key", 0o600), ("tls.crt", 0o644), ("ca.crt", 0o644)] {
        assert_eq!(std::fs::metadata(out.join(name)).unwrap().mode() & 0o7777, mode, "{name}");
    }
    let first = version(&out);
    podinit(&args).code(0).stderr_has("is current: kept");
    assert_eq!(version(&out), first, "a rerun with the same request wrote a new set");
    // A changed request: a new certificate from the same CA (its key was kept).
    let ca = std::fs::read(out.join("ca.crt")).unwrap();
    let mut changed = args.to_vec();
    changed.retain(|a| *a != "--ip" && *a != "127.0.0.1");
    podinit(&changed).code(0).stderr_has("signed by the set's CA");
    assert_ne!(version(&out), first);
    assert_eq!(std::fs::read(out.join("ca.crt")).unwrap(), ca);
    let text = tool("openssl", &["x509", "-in", s(&out.join("tls.crt")), "-noout", "-ext", "subjectAltName"]);
    assert!(!text.stdout.contains("IP Address"), "{}", text.stdout);
    // Other usages: a new certificate (a MongoDB member presents its certificate as a client
    // too), accepted by openssl for both purposes; the same usages again: kept.
    let before = version(&out);
    let mut both = changed.clone();
    both.extend(["--usage", "server,client"]);
    podinit(&both).code(0).stderr_has("signed by the set's CA");
    assert_ne!(version(&out), before);
    for purpose in ["sslserver", "sslclient"] {
        tool("openssl", &["verify", "-x509_strict", "-purpose", purpose, "-CAfile", s(&out.join("ca.crt")), s(&out.join("tls.crt"))])
            .code(0);
    }
    let after = version(&out);
    let mut reordered = changed.clone();
    reordered.extend(["--usage", "client", "--usage", "server"]);
    podinit(&reordered).code(0).stderr_has("is current: kept");
    assert_eq!(version(&out), after);
    let mut client = changed.clone();
    client.extend(["--usage", "client"]);
    podinit(&client).code(0);
    tool("openssl", &["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", s(&out.join("ca.crt")), s(&out.join("tls.crt"))])
        .code(2);
    // Less life left than --renew-below: renewed.
    let before = version(&out);
    let mut renew = changed.clone();
    renew.extend(["--renew-below", "0.999999"]);
    podinit(&renew).code(0).stderr_has("a certificate for webhook.ns.svc");
    assert_ne!(version(&out), before);
}

#[test]
fn a_mounted_ca_signs_and_bad_ca_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, crt) = (tmp.path().join("ca.key"), tmp.path().join("ca.crt"));
    // An RSA CA with a PKCS#1 key ("BEGIN RSA PRIVATE KEY"), as older tools write it.
    tool("openssl", &["genrsa", "-traditional", "-out", s(&key), "2048"]).code(0);
    tool("openssl", &["req", "-x509", "-new", "-key", s(&key), "-out", s(&crt), "-subj", "/CN=Team CA", "-days", "30"]).code(0);
    let out = tmp.path().join("tls");
    let args = [
        "certs",
        "--out",
        s(&out),
        "--common-name",
        "api",
        "--dns",
        "api.ns.svc",
        "--ca-cert",
        s(&crt),
        "--ca-key",
        s(&key),
        "--key-type",
        "rsa-2048",
    ];
    podinit(&args).code(0).stderr_has("signed by the mounted CA");
    tool("openssl", &["verify", "-CAfile", s(&crt), s(&out.join("tls.crt"))]).code(0);
    assert_eq!(std::fs::read(out.join("ca.crt")).unwrap(), std::fs::read(&crt).unwrap());
    assert!(!out.join("ca.key").exists(), "a mounted CA's key was copied into the set");
    let issuer = tool("openssl", &["x509", "-in", s(&out.join("tls.crt")), "-noout", "-issuer", "-text"]);
    assert!(issuer.stdout.contains("issuer=CN = Team CA") && issuer.stdout.contains("Public-Key: (2048 bit)"), "{}", issuer.stdout);
    let first = version(&out);
    podinit(&args).code(0).stderr_has("kept");
    assert_eq!(version(&out), first);
    // --keep-ca-key means nothing with a mounted CA (its key never enters the set): the set
    // is still kept, not rewritten on every start.
    podinit(&[&args[..], &["--keep-ca-key"]].concat()).code(0).stderr_has("kept");
    assert_eq!(version(&out), first);
    // A key that is not the CA's: refused before anything is written.
    let other = tmp.path().join("other.key");
    tool("openssl", &["genpkey", "-algorithm", "ed25519", "-out", s(&other)]).code(0);
    let bad = podinit(&["certs", "--out", s(&tmp.path().join("x")), "--common-name", "api", "--ca-cert", s(&crt), "--ca-key", s(&other)]);
    bad.code(2).stderr_has("the key does not belong to the certificate");
    assert!(!bad.stderr.contains("PRIVATE KEY"));
    podinit(&["certs", "--out", s(&tmp.path().join("y")), "--common-name", "a b"]).code(2).stderr_has("--dns \"a b\" is not a DNS name");
}

#[test]
fn a_tls_server_with_the_generated_material_is_reached_by_wait_for() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tls");
    let args =
        ["certs", "--out", s(&out), "--common-name", "localhost", "--dns", "localhost", "--ip", "127.0.0.1", "--key-type", "ed25519"];
    podinit(&args).code(0);
    // Without --keep-ca-key too, a rerun keeps the set (and its CA) while it is current...
    let first = version(&out);
    podinit(&args).code(0).stderr_has("kept");
    assert_eq!(version(&out), first, "a rerun without --keep-ca-key made a new CA");
    // ...and a changed --mode makes a new set, so the app can read its key.
    let mut readable = args.to_vec();
    readable.extend(["--mode", "0640"]);
    let crt = std::fs::read(out.join("tls.crt")).unwrap();
    podinit(&readable).code(0).stderr_has("written again");
    assert_eq!(std::fs::metadata(out.join("tls.key")).unwrap().mode() & 0o7777, 0o640);
    assert_ne!(version(&out), first, "a new mode needs a new set");
    assert_eq!(std::fs::read(out.join("tls.crt")).unwrap(), crt, "a new mode made a new certificate");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
            s(&out.join("tls.crt")),
            "-key",
            s(&out.join("tls.key")),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/");
    let reached = podinit(&["wait-for", "--timeout", "20s", "--ca-file", s(&out.join("ca.crt")), &url]);
    // Another CA is not trusted: the name and chain really are checked.
    let other = tmp.path().join("other");
    podinit(&["certs", "--out", s(&other), "--common-name", "localhost"]).code(0);
    let refused = podinit(&["wait-for", "--timeout", "2s", "--ca-file", s(&other.join("ca.crt")), &url]);
    let _ = server.kill();
    let _ = server.wait();
    reached.code(0);
    refused.code(124).stderr_has("certificate");
}

#[test]
fn truststores_are_read_by_keytool_and_openssl_and_kept_when_current() {
    let tmp = tempfile::tempdir().unwrap();
    let cas = tmp.path().join("cas");
    std::fs::create_dir_all(&cas).unwrap();
    for n in ["one", "two"] {
        tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                s(&tmp.path().join(format!("{n}.key"))),
                "-out",
                s(&cas.join(format!("{n}.crt"))),
                "-subj",
                &format!("/CN=Private CA {n}"),
                "-days",
                "30",
            ],
        )
        .code(0);
    }
    // The same CA twice (a file and the directory): kept once.
    let dup = tmp.path().join("dup.crt");
    std::fs::copy(cas.join("one.crt"), &dup).unwrap();
    let password = tmp.path().join("password");
    std::fs::write(&password, "s3cret-store\n").unwrap();
    let p12 = tmp.path().join("store.p12");
    let args = ["truststore", "--pem", s(&cas), "--pem", s(&dup), "--system", "--password-file", s(&password), "--out", s(&p12)];
    let out = podinit(&args);
    out.code(0).stderr_has("written");
    assert!(!out.stderr.contains("s3cret-store"));
    let bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap();
    let system = bundle.matches("BEGIN CERTIFICATE").count();
    let listed = tool("keytool", &["-list", "-keystore", s(&p12), "-storepass", "s3cret-store"]);
    listed.code(0);
    assert!(listed.stdout.contains(&format!("Your keystore contains {} entries", system + 2)), "{}", listed.stdout);
    assert!(listed.stdout.contains("private_ca_one, ") && listed.stdout.contains("trustedCertEntry"), "{}", listed.stdout);
    let certs = tool("openssl", &["pkcs12", "-in", s(&p12), "-passin", "pass:s3cret-store", "-nokeys"]);
    assert_eq!(certs.stdout.matches("BEGIN CERTIFICATE").count(), system + 2);
    // Current: not rewritten (PKCS#12 is salted, so this is the set of certificates compared).
    let inode = std::fs::metadata(&p12).unwrap().ino();
    podinit(&args).code(0).stderr_has("kept");
    assert_eq!(std::fs::metadata(&p12).unwrap().ino(), inode);

    let jks = tmp.path().join("store.jks");
    podinit(&["truststore", "--pem", s(&cas), "--out", s(&jks)]).code(0);
    let listed = tool("keytool", &["-list", "-storetype", "JKS", "-keystore", s(&jks), "-storepass", "changeit"]);
    listed.code(0);
    assert!(listed.stdout.contains("Your keystore contains 2 entries") && listed.stdout.contains("private_ca_two, "), "{}", listed.stdout);
    let inode = std::fs::metadata(&jks).unwrap().ino();
    podinit(&["truststore", "--pem", s(&cas), "--out", s(&jks)]).code(0).stderr_has("kept (unchanged)");
    assert_eq!(std::fs::metadata(&jks).unwrap().ino(), inode);

    let pem = tmp.path().join("bundle.pem");
    podinit(&["truststore", "--pem", s(&cas), "--pem", s(&dup), "--out", s(&pem)]).code(0);
    let text = std::fs::read_to_string(&pem).unwrap();
    assert_eq!(text, std::fs::read_to_string(cas.join("one.crt")).unwrap() + &std::fs::read_to_string(cas.join("two.crt")).unwrap());

    // --out planted as a link to a file outside: the link is replaced, its target untouched;
    // and a certs --out whose ..data was planted as a link outside is refused, nothing written.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    let planted = tmp.path().join("planted.pem");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    podinit(&["truststore", "--pem", s(&cas), "--out", s(&planted)]).code(0);
    assert!(std::fs::symlink_metadata(&planted).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let set = tmp.path().join("set");
    std::fs::create_dir_all(&set).unwrap();
    std::os::unix::fs::symlink(&outside, set.join("..data")).unwrap();
    podinit(&["certs", "--out", s(&set), "--common-name", "svc"]).code(1).stderr_has("not at a data directory of podinit's");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "certs wrote through a planted ..data link");
    // Anything that does not parse fails the run, naming the file, with nothing written.
    std::fs::write(cas.join("broken.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let fresh = tmp.path().join("fresh.p12");
    podinit(&["truststore", "--pem", s(&cas), "--out", s(&fresh)])
        .code(2)
        .stderr_has("broken.crt: a CERTIFICATE block is not an X.509 certificate");
    assert!(!fresh.exists());
    podinit(&["truststore", "--pem", s(&tmp.path().join("nope")), "--out", s(&fresh)]).code(2).stderr_has("--pem");
    std::fs::remove_file(cas.join("broken.crt")).unwrap();

    // A PEM holding a key beside its certificate (a Secret's combined tls.pem): the key is
    // skipped with a warning naming the file, never copied; --out in a missing directory is
    // made, as certs makes its own.
    let combined = tmp.path().join("combined.pem");
    let key = tool("openssl", &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]).stdout;
    std::fs::write(&combined, std::fs::read_to_string(cas.join("one.crt")).unwrap() + &key).unwrap();
    let deep = tmp.path().join("new/dir/bundle.pem");
    podinit(&["truststore", "--pem", s(&combined), "--out", s(&deep)])
        .code(0)
        .stderr_has(&format!("{}: holds a private key (PRIVATE KEY): skipped", combined.display()));
    let bundle = std::fs::read_to_string(&deep).unwrap();
    assert!(bundle.contains("BEGIN CERTIFICATE") && !bundle.contains("PRIVATE KEY"), "{bundle}");
}

/// A Java server (support/KeystoreServer.java), killed when dropped (also when an assertion
/// fails while it runs).
struct JavaServer {
    child: std::process::Child,
    /// What it printed about the stores.
    printed: String,
    port: u16,
}

impl Drop for JavaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts support/KeystoreServer.java (Java's own KeyStore, KeyManagerFactory and TLS server)
/// on the set's stores.
fn java_server(kind: &str, out: &Path, keystore: &str, truststore: &str, password: &Path) -> JavaServer {
    use std::io::BufRead as _;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/KeystoreServer.java");
    let child = Command::new("java")
        .arg(source)
        .args([kind, s(&out.join(keystore)), s(&out.join(truststore)), s(password)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("java (OpenJDK, on machines of this kind): {e}"));
    let mut server = JavaServer { child, printed: String::new(), port: 0 };
    let stdout = server.child.stdout.take().unwrap();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        server.printed.push_str(&line);
        server.printed.push('\n');
        if let Some(port) = line.strip_prefix("port ") {
            server.port = port.parse().unwrap();
            return server;
        }
    }
    panic!("the Java server did not start:\n{}", server.printed);
}

/// Whether `name` is in the set (not through a link: `..data/NAME`'s link counts as there).
fn in_set(out: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(out.join("..data").join(name)).is_ok()
}

#[test]
fn java_loads_the_keystores_and_serves_tls_with_them_and_reruns_keep_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tls");
    let password = tmp.path().join("password");
    std::fs::write(&password, "s3cret-store\n").unwrap();
    let common = ["certs", "--out", s(&out), "--common-name", "localhost", "--dns", "localhost", "--keystore-password-file", s(&password)];
    let store = |format: &'static str, key_type: &'static str| [&common[..], &["--keystore", format, "--key-type", key_type]].concat();
    for (format, key_type, algorithm) in
        [("pkcs12", "ec-p256", "EC"), ("jks", "rsa-2048", "RSA"), ("pkcs12", "rsa-2048", "RSA"), ("jks", "ec-p256", "EC")]
    {
        let (kind, keystore, truststore) =
            if format == "jks" { ("JKS", "keystore.jks", "truststore.jks") } else { ("PKCS12", "keystore.p12", "truststore.p12") };
        let args = store(format, key_type);
        podinit(&args).code(0).stderr_has(&format!("with {keystore} and {truststore}"));
        let mode = |name: &str| std::fs::metadata(out.join(name)).unwrap().mode() & 0o7777;
        assert_eq!((mode(keystore), mode(truststore)), (0o600, 0o644), "the keystore holds the key");
        for other in
            ["keystore.p12", "truststore.p12", "keystore.jks", "truststore.jks"].into_iter().filter(|n| ![keystore, truststore].contains(n))
        {
            assert!(!in_set(&out, other), "{other} of another format is left in the set");
        }

        // keytool (the JDK's) sees the key entry with its chain and the CA's trusted entry.
        let listed =
            tool("keytool", &["-list", "-v", "-storetype", kind, "-keystore", s(&out.join(keystore)), "-storepass", "s3cret-store"]);
        let text = &listed.code(0).stdout;
        assert!(
            text.contains("Alias name: certificate") && text.contains("PrivateKeyEntry") && text.contains("Certificate chain length: 2"),
            "{text}"
        );
        let listed = tool("keytool", &["-list", "-storetype", kind, "-keystore", s(&out.join(truststore)), "-storepass", "s3cret-store"]);
        let text = &listed.code(0).stdout;
        assert!(text.contains("ca,") && text.contains("trustedCertEntry"), "{text}");

        // A Java TLS server loads them; podinit's wait-for and curl reach it with ca.crt.
        let server = java_server(kind, &out, keystore, truststore, &password);
        let printed = &server.printed;
        assert!(printed.contains(&format!("keystore certificate key=true chain=2 algorithm={algorithm}")), "{printed}");
        assert!(printed.contains("truststore ca trusted=true") && printed.contains("self-check TLSv1.3 CN=localhost"), "{printed}");
        let url = format!("https://localhost:{}/", server.port);
        podinit(&["wait-for", "--timeout", "20s", "--ca-file", s(&out.join("ca.crt")), &url]).code(0);
        let body = Command::new("curl").args(["-sS", "--cacert", s(&out.join("ca.crt")), &url]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&body.stdout), "from java ok", "{}", String::from_utf8_lossy(&body.stderr));
        drop(server);

        // A rerun keeps the set, stores included (PKCS#12 is salted: compared by content).
        let first = version(&out);
        podinit(&args).code(0).stderr_has("kept");
        assert_eq!(version(&out), first, "a rerun with the same {format} keystore made a new set");
    }

    // Another format, another password: the same certificate and key, the stores made anew.
    let crt = std::fs::read(out.join("tls.crt")).unwrap();
    for (format, pass) in [("pkcs12", "another-one"), ("jks", "another-one"), ("jks", "a-third")] {
        std::fs::write(&password, pass).unwrap();
        podinit(&store(format, "ec-p256")).code(0).stderr_has("written again");
        assert_eq!(std::fs::read(out.join("tls.crt")).unwrap(), crt, "a new {format} store made a new certificate");
        let (kind, keystore) = if format == "jks" { ("JKS", "keystore.jks") } else { ("PKCS12", "keystore.p12") };
        tool("keytool", &["-list", "-storetype", kind, "-keystore", s(&out.join(keystore)), "-storepass", pass]).code(0);
    }

    // A keystore planted in the set with the right password and another key is not kept.
    let other = tmp.path().join("other");
    podinit(
        &[
            &["certs", "--out", s(&other), "--common-name", "localhost", "--keystore-password-file", s(&password)][..],
            &["--keystore", "jks"],
        ]
        .concat(),
    )
    .code(0);
    let planted = out.join("..data").join("keystore.jks");
    std::fs::write(&planted, std::fs::read(other.join("keystore.jks")).unwrap()).unwrap();
    let before = version(&out);
    podinit(&store("jks", "ec-p256")).code(0).stderr_has("written again");
    assert_ne!(version(&out), before);
    assert_ne!(std::fs::read(out.join("keystore.jks")).unwrap(), std::fs::read(other.join("keystore.jks")).unwrap());

    // Without --keystore the stores leave the set; the certificate stays.
    podinit(&common[..7].iter().chain(&["--key-type", "ec-p256"]).copied().collect::<Vec<_>>()).code(0);
    assert!(!in_set(&out, "keystore.jks") && !in_set(&out, "truststore.jks"));
    assert_eq!(std::fs::read(out.join("tls.crt")).unwrap(), crt);

    // Bad input: no password file, an empty one; nothing changes.
    let before = version(&out);
    podinit(&common[..7].iter().chain(&["--keystore", "pkcs12"]).copied().collect::<Vec<_>>())
        .code(2)
        .stderr_has("--keystore-password-file");
    std::fs::write(&password, "\n").unwrap();
    podinit(&[&common[..], &["--keystore", "pkcs12"]].concat()).code(2).stderr_has("the file is empty");
    assert_eq!(version(&out), before);
}

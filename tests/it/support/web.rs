//! Local web servers for tests: a private CA with server certificates (openssl), and an
//! HTTP(S) server (`webserver.py`) that redirects, serves files with ranges and ETags, and
//! logs every request it gets, so a test can tell what reached which host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A private CA and a server certificate it signed for the given subject alternative names
/// (`DNS:podinit.test`, `IP:127.0.0.1,DNS:localhost`), made with openssl.
pub struct Pki {
    dir: tempfile::TempDir,
}

/// Runs openssl in `dir`, failing the test with its message.
fn openssl_in(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A key (`NAME.key`) and a certificate for it (`NAME.pem`) signed by the CA in `dir`, with
/// `subject` and the X.509 extensions `extensions` (openssl's extfile lines).
fn issue(dir: &Path, name: &str, subject: &str, extensions: &str) {
    let (key, csr, ext, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"), format!("{name}.pem"));
    openssl_in(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr]);
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl_in(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}

impl Pki {
    pub fn new(sans: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        openssl_in(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=podinit test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        issue(
            dir.path(),
            "server",
            "/CN=podinit.test",
            &format!("subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
        );
        Self { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A client certificate (clientAuth) the CA signed: (certificate, key), for mutual TLS.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        issue(dir, "client", "/CN=podinit client", "extendedKeyUsage=clientAuth\n");
        (dir.join("client.pem"), dir.join("client.key"))
    }

    /// `openssl s_server` on `port`, answering every request with 200.
    pub fn serve(&self, port: u16) -> Server {
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &port.to_string(), "-cert", "server.pem", "-key", "server.key"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Server { child, port, log: None }
    }
}

/// A server process, stopped when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    log: Option<(tempfile::TempDir, PathBuf)>,
}

impl Server {
    /// `webserver.py` with these arguments (see the script), on a free port of 127.0.0.1.
    pub fn python(args: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/webserver.py");
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--log", log.to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 for the test web server");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("webserver.py printed {line:?}, not its port"));
        Self { child, port, log: Some((logdir, log)) }
    }

    /// Every request the server got so far: `method`, `path`, `headers`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let Some((_, log)) = &self.log else { return Vec::new() };
        std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Whether any request carried `text` in a header value (a token, a key).
    pub fn saw_header_value(&self, text: &str) -> bool {
        self.requests()
            .iter()
            .any(|r| r["headers"].as_object().is_some_and(|h| h.values().any(|v| v.as_str().is_some_and(|v| v.contains(text)))))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Service-account-style JWTs signed with a key the test owns (openssl), and the one
//! Kubernetes API call Vault's kubernetes auth makes: a TokenReview, answered by a small
//! listener on the docker bridge that accepts exactly the tokens it was given.
//!
//! Vault (OpenBao) checks the JWT's signature against the public key configured in
//! `pem_keys`, then asks the API server to review the token. No cluster runs here, so the
//! review endpoint is the test's; everything on podinit's side of the login is the real flow.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// An RSA key pair in a temp dir.
pub struct SigningKey {
    dir: tempfile::TempDir,
}

impl SigningKey {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        openssl(&["genrsa", "-out", "key.pem", "2048"], dir.path());
        openssl(&["rsa", "-in", "key.pem", "-pubout", "-out", "pub.pem"], dir.path());
        Self { dir }
    }

    /// The public key, PEM.
    pub fn public_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pub.pem")).unwrap()
    }

    /// A self-signed certificate of the key, PEM (for settings that insist on a CA, such as
    /// `kubernetes_ca_cert`).
    pub fn certificate_pem(&self) -> String {
        openssl(
            &["req", "-x509", "-new", "-key", "key.pem", "-subj", "/CN=podinit-test-ca", "-days", "1", "-out", "ca.pem"],
            self.dir.path(),
        );
        std::fs::read_to_string(self.dir.path().join("ca.pem")).unwrap()
    }

    /// An RS256 JWT with `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
        let payload = b64url(claims.to_string().as_bytes());
        let input = format!("{header}.{payload}");
        let data = self.dir.path().join("input");
        std::fs::write(&data, &input).unwrap();
        let out =
            Command::new("openssl").args(["dgst", "-sha256", "-sign", "key.pem"]).arg(&data).current_dir(self.dir.path()).output().unwrap();
        assert!(out.status.success(), "openssl dgst: {}", String::from_utf8_lossy(&out.stderr));
        format!("{input}.{}", b64url(&out.stdout))
    }

    /// Writes `token` to a file (the projected token path of a pod) and returns the path.
    pub fn token_file(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, token).unwrap();
        path
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (scripts/ensure-tools installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Base64url without padding (RFC 7515).
pub fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The claims of a legacy service account token for `namespace`/`name`.
pub fn service_account_claims(namespace: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "iss": "kubernetes/serviceaccount",
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": format!("{name}-token"),
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": format!("uid-{name}"),
    })
}

/// A TokenReview endpoint on 0.0.0.0 (reachable from containers through the bridge gateway)
/// that authenticates `token` as `system:serviceaccount:NAMESPACE:NAME` and nothing else.
pub struct TokenReviewer {
    pub port: u16,
    pub reviews: Arc<AtomicUsize>,
}

impl TokenReviewer {
    pub async fn start(token: String, namespace: &str, name: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reviews = Arc::new(AtomicUsize::new(0));
        let counter = reviews.clone();
        let user = serde_json::json!({
            "username": format!("system:serviceaccount:{namespace}:{name}"),
            "uid": format!("uid-{name}"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}")],
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let token = token.clone();
                let user = user.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Some(body) = read_request(&mut stream).await else { return };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let ok = review["spec"]["token"].as_str() == Some(token.as_str());
                    let status = if ok {
                        serde_json::json!({"authenticated": true, "user": user})
                    } else {
                        serde_json::json!({"authenticated": false})
                    };
                    let answer =
                        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}).to_string();
                    let response = format!(
                        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Self { port, reviews }
    }

    /// The address Vault is configured with (the docker bridge gateway).
    pub fn url(&self) -> String {
        format!("http://172.17.0.1:{}", self.port)
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf[end + 4..end + 4 + length].to_vec());
        }
    }
}

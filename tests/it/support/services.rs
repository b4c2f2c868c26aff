//! Database servers from the test image (`images/test/db`), one container per call, with the
//! port published on 127.0.0.1. A start delay makes "the database comes up late" real.

use testcontainers::core::IntoContainerPort as _;
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt as _};

use super::docker::db_image;
use super::jwt::{SigningKey, TokenReviewer};

/// A running database; the container lives as long as this value.
pub struct Db {
    _container: ContainerAsync<GenericImage>,
    pub port: u16,
    pub password: &'static str,
}

impl Db {
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/app` or `mysql://app:PASSWORD@…/app`.
    pub fn url(&self, scheme: &str) -> String {
        let user = if scheme.starts_with("postgres") { "postgres" } else { "app" };
        format!("{scheme}://{user}:{}@127.0.0.1:{}/app", self.password, self.port)
    }
}

/// PostgreSQL 15 (user `postgres`, database `app`), accepting sessions after `start_delay` s.
pub async fn postgres(password: &'static str, start_delay: u32) -> Db {
    postgres_on(password, start_delay, None).await
}

/// [`postgres`], also reachable from containers on `network` as `NAME:5432`.
pub async fn postgres_on(password: &'static str, start_delay: u32, network: Option<(&str, &str)>) -> Db {
    let env = [("PG_PASSWORD", password), ("PG_START_DELAY", &start_delay.to_string())];
    start("postgres.sh", 5432, &env, password, network).await
}

/// MariaDB 10.11 (user `app`, database `app`), accepting sessions after `start_delay` s.
pub async fn mariadb(password: &'static str, start_delay: u32) -> Db {
    start("mariadb.sh", 3306, &[("MY_PASSWORD", password), ("MY_START_DELAY", &start_delay.to_string())], password, None).await
}

async fn start(script: &str, port: u16, env: &[(&str, &str)], password: &'static str, network: Option<(&str, &str)>) -> Db {
    let mut request: ContainerRequest<GenericImage> =
        db_image().await.with_exposed_port(port.tcp()).with_entrypoint(&format!("/usr/local/bin/{script}")).into();
    if let Some((network, name)) = network {
        request = request.with_network(network).with_container_name(name);
    }
    for (key, value) in env {
        request = request.with_env_var(*key, *value);
    }
    let container = request.start().await.expect("starting the database container");
    let port = container.get_host_port_ipv4(port.tcp()).await.expect("the published port");
    Db { _container: container, port, password }
}

/// A running OpenBao server; the container lives as long as this value.
pub struct Bao {
    container: ContainerAsync<GenericImage>,
    /// `http://127.0.0.1:PORT` (`https` with [`openbao_tls`])
    pub addr: String,
    tls: bool,
}

impl Bao {
    /// `docker exec` settings for the `bao` CLI inside the container.
    fn inner_env(&self) -> [&'static str; 4] {
        if self.tls {
            ["-e", "BAO_ADDR=https://127.0.0.1:8200", "-e", "BAO_CACERT=/tls/vault-ca.pem"]
        } else {
            ["-e", "BAO_ADDR=http://127.0.0.1:8200", "-e", "BAO_SKIP_VERIFY=false"]
        }
    }

    /// Runs the `bao` CLI inside the container with the dev root token; panics with its
    /// output on failure. Returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_as("root", args)
    }

    /// A policy `app-read`: read on `secret/app/*` (KV v2) and `kv1/app/*`.
    pub fn app_read_policy(&self) {
        let hcl = "path \"secret/data/app/*\" { capabilities = [\"read\"] }\npath \"kv1/app/*\" { capabilities = [\"read\"] }\n";
        self.cli(&["write", "sys/policy/app-read", &format!("policy={hcl}")]);
    }

    /// AppRole auth at `auth/approle` with a role `app` (policy `app-read`, made here) whose
    /// secret id is `secret_id`; returns the role id.
    pub fn approle_app(&self, secret_id: &str) -> String {
        self.app_read_policy();
        self.cli(&["auth", "enable", "approle"]);
        self.cli(&["write", "auth/approle/role/app", "token_policies=app-read", "token_ttl=10m"]);
        self.cli(&["write", "auth/approle/role/app/custom-secret-id", &format!("secret_id={secret_id}")]);
        self.cli(&["read", "-field=role_id", "auth/approle/role/app/role-id"])
    }

    /// Kubernetes auth at `auth/kubernetes`, reviewing tokens with `reviewer` (tokens signed by
    /// `key`), and a role `web` for service account `web` in namespace `shop` with `app-read`.
    pub fn kubernetes_auth(&self, key: &SigningKey, reviewer: &TokenReviewer) {
        self.cli(&["auth", "enable", "kubernetes"]);
        let host = format!("kubernetes_host={}", reviewer.url());
        let pem = format!("pem_keys={}", key.public_pem());
        let ca = format!("kubernetes_ca_cert={}", key.certificate_pem());
        self.cli(&["write", "auth/kubernetes/config", &host, &pem, &ca, "disable_local_ca_jwt=true"]);
        self.cli(&[
            "write",
            "auth/kubernetes/role/web",
            "bound_service_account_names=web",
            "bound_service_account_namespaces=shop",
            "token_policies=app-read",
            "token_ttl=10m",
        ]);
    }

    /// The container's id, for `docker exec` of commands that may fail.
    pub fn container_id(&self) -> &str {
        self.container.id()
    }

    /// [`cli`](Self::cli) with another token.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> String {
        let out = std::process::Command::new("docker")
            .arg("exec")
            .args(self.inner_env())
            .arg("-e")
            .arg(format!("BAO_TOKEN={token}"))
            .arg(self.container.id())
            .arg("/bao")
            .args(args)
            .output()
            .expect("docker exec");
        assert!(
            out.status.success(),
            "bao {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// OpenBao in dev mode: unsealed, root token `root`, KV v2 at `secret/`.
pub async fn openbao() -> Bao {
    openbao_on(None).await
}

/// [`openbao`], also reachable from containers on `network` as `NAME:8200`.
pub async fn openbao_on(network: Option<(&str, &str)>) -> Bao {
    let mut request: ContainerRequest<GenericImage> = super::docker::vault_image().await.with_exposed_port(8200.tcp()).into();
    if let Some((network, name)) = network {
        request = request.with_network(network).with_container_name(name);
    }
    let container = request.start().await.expect("starting OpenBao");
    let port = container.get_host_port_ipv4(8200.tcp()).await.expect("the published port");
    let bao = Bao { container, addr: format!("http://127.0.0.1:{port}"), tls: false };
    wait_until_answering(&bao).await;
    bao
}

/// OpenBao in dev-TLS mode: a CA and a certificate for 127.0.0.1 generated at start. Returns
/// the server (address `https://127.0.0.1:PORT`) and the CA certificate (PEM).
pub async fn openbao_tls() -> (Bao, Vec<u8>) {
    let container = super::docker::vault_image()
        .await
        .with_exposed_port(8200.tcp())
        .with_cmd(["server", "-dev", "-dev-tls", "-dev-tls-cert-dir=/tls", "-dev-root-token-id=root", "-dev-listen-address=0.0.0.0:8200"])
        .with_copy_to("/tls/.keep", Vec::new())
        .start()
        .await
        .expect("starting OpenBao");
    let port = container.get_host_port_ipv4(8200.tcp()).await.expect("the published port");
    let bao = Bao { container, addr: format!("https://127.0.0.1:{port}"), tls: true };
    wait_until_answering(&bao).await;
    let ca = std::process::Command::new("docker").args(["cp", &format!("{}:/tls/vault-ca.pem", bao.container.id()), "-"]).output().unwrap();
    assert!(ca.status.success(), "copying the CA out: {}", String::from_utf8_lossy(&ca.stderr));
    let mut archive = tar::Archive::new(&ca.stdout[..]);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut pem = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut pem).unwrap();
    (bao, pem)
}

/// OpenBao as a real server (in-memory storage), initialised with one unseal key and left
/// **sealed**. Returns the server, the unseal key and the root token.
pub async fn openbao_sealed() -> (Bao, String, String) {
    let config = "storage \"inmem\" {}\nlistener \"tcp\" {\n  address = \"0.0.0.0:8200\"\n  tls_disable = true\n}\n";
    let container = super::docker::vault_image()
        .await
        .with_exposed_port(8200.tcp())
        .with_cmd(["server", "-config=/bao.hcl"])
        .with_copy_to("/bao.hcl", config.as_bytes().to_vec())
        .start()
        .await
        .expect("starting OpenBao");
    let port = container.get_host_port_ipv4(8200.tcp()).await.expect("the published port");
    let bao = Bao { container, addr: format!("http://127.0.0.1:{port}"), tls: false };
    let mut tries = 0;
    let init = loop {
        tries += 1;
        let out = std::process::Command::new("docker")
            .args(["exec", "-e", "BAO_ADDR=http://127.0.0.1:8200", bao.container.id(), "/bao"])
            .args(["operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json"])
            .output()
            .unwrap();
        if out.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        }
        assert!(tries < 100, "bao operator init kept failing: {}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let key = init["unseal_keys_b64"][0].as_str().unwrap().to_owned();
    let root = init["root_token"].as_str().unwrap().to_owned();
    (bao, key, root)
}

async fn wait_until_answering(bao: &Bao) {
    for _ in 0..100 {
        let ok = std::process::Command::new("docker")
            .arg("exec")
            .args(bao.inner_env())
            .args([bao.container.id(), "/bao", "status"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("OpenBao did not answer within 10 s");
}

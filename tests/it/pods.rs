//! The classic init-container pods, end to end: the shipped image as init containers in a
//! simulated pod (shared network and IPC namespaces, an emptyDir, init containers in order
//! before the app containers, the restricted securityContext with a read-only root; see
//! `support::pod`), against real services reached by their short names through the kubelet's
//! search domains and `ndots:5`. The same pods as Kubernetes manifests are in docs/examples/.
//!
//! `kube.rs` plays those manifests with podman's `kube play`, an independent pod engine. What
//! stays here is what kube play cannot express: a service-account token and Kubernetes auth
//! against Vault, native sidecars, the kubelet's ConfigMap volume layout (`..data` links),
//! init containers that run again when a pod restarts (the model found current, the same
//! inode), the `fsGroup` setgid volume, search domains with `ndots:5`, and an unprivileged
//! sysctl container's exit 77 and termination message.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::support::docker::{db_image, podinit_image, static_binary};
use crate::support::jwt::{SigningKey, TokenReviewer, service_account_claims};
use crate::support::pod::{Container, Manifest, Network, Pod};
use crate::support::{cmd::host_sysctl, s3, services};

#[tokio::test]
async fn elasticsearch_style_kernel_settings_before_the_app_starts() {
    let (podinit, app) = (podinit_image().await, db_image().await);
    let node_wide: u64 = host_sysctl("vm/max_map_count").parse().unwrap();
    let host_somaxconn = host_sysctl("net/core/somaxconn");
    // The node is already tuned higher than this pod asks (say, by a DaemonSet): never lowered.
    let asked = node_wide / 2;
    let mut pod = Pod::start("pod-es", None, None).await;
    let init =
        Container::new("sysctl", &podinit).privileged().args(["sysctl", "net.core.somaxconn=8192", &format!("vm.max_map_count={asked}")]);
    let done = pod.init(init).await;
    done.outcome.code(0).stderr_has(&format!("vm.max_map_count: kept {node_wide}, not lower than {asked}"));
    let app = Container::new("elasticsearch", &app)
        .user("1000:1000")
        .command("sh")
        .args(["-c", "cat /proc/sys/net/core/somaxconn /proc/sys/vm/max_map_count"]);
    let ran = pod.start_app(app).await.wait().await;
    // The pod-scoped key is set in the pod's network namespace, which the app shares.
    ran.outcome.code(0).stdout_is(&format!("8192\n{node_wide}\n"));
    assert_eq!(host_sysctl("vm/max_map_count"), node_wide.to_string(), "the node-wide key changed");
    assert_eq!(host_sysctl("net/core/somaxconn"), host_somaxconn, "the pod's key leaked to the host");

    // Without `privileged: true` /proc/sys is read-only: the init container fails with 77, the
    // termination message says what to do, and the app never starts.
    let mut pod = Pod::start("pod-es-unprivileged", None, None).await;
    let init = Container::new("sysctl", &podinit).user("0:0").args(["sysctl", "net.core.somaxconn=8192"]);
    let failed = pod.init(init).await;
    failed.outcome.code(77);
    assert!(failed.termination_message.starts_with("podinit sysctl: "), "{}", failed.termination_message);
    assert!(failed.termination_message.contains("privileged"), "{}", failed.termination_message);
}

#[tokio::test]
async fn secrets_from_vault_are_files_a_non_root_app_reads() {
    let network = Network::create("pods-vault").await;
    let bao = services::openbao_on(Some((&network.name, &network.service("vault")))).await;
    bao.cli(&["kv", "put", "secret/app/db", "username=shop", "password=pw-from-vault"]);
    bao.app_read_policy();
    let key = SigningKey::generate();
    let jwt = key.sign(&service_account_claims("shop", "web"));
    let reviewer = TokenReviewer::start(jwt.clone(), "shop", "web").await;
    bao.kubernetes_auth(&key, &reviewer);
    let token = key.token_file("token", &jwt);

    // The steps come from the ConfigMap of docs/examples/vault-secrets.yaml: wait for Vault to
    // be unsealed, then fetch.
    let manifest = Manifest::load("vault-secrets.yaml");
    let config = tempfile::tempdir().unwrap();
    write(&config.path().join("steps.yaml"), &manifest.config_map("web-podinit", "steps.yaml"));
    // fsGroup 2000: the emptyDir is group 2000 and setgid; every container is in group 2000.
    let mut pod = Pod::start("pod-vault", Some(&network), Some(2000)).await;
    let init = Container::new("secrets", &podinit_image().await)
        .group(2000)
        .envs(manifest.env("secrets"))
        .mount(&token, "/var/run/secrets/kubernetes.io/serviceaccount/token")
        .mount(config.path(), "/etc/podinit")
        .empty_dir("/secrets")
        .args(manifest.command_line("secrets"));
    let done = pod.init(init).await;
    done.outcome.code(0).stderr_has("step 2/2 \"secrets\" done");
    assert!(!done.outcome.stderr.contains("pw-from-vault") && !done.outcome.stderr.contains(&jwt[..40]), "{}", done.outcome.stderr);
    let file = pod.empty_dir.path().join("db/password");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid(), meta.gid()), (0o440, 65532, 2000));

    let app = Container::new("app", &db_image().await)
        .user("1000:1000")
        .group(2000)
        .empty_dir("/secrets")
        .command("sh")
        .args(["-c", "cat /secrets/db/username; echo; cat /secrets/db/password"]);
    pod.start_app(app).await.wait().await.outcome.code(0).stdout_is("shop\npw-from-vault");
    drop(reviewer);
}

#[tokio::test]
async fn a_large_file_from_s3_is_not_downloaded_again_after_a_restart() {
    let network = Network::create("pods-s3").await;
    let garage = s3::garage_on(Some((&network.name, &network.service("s3")))).await;
    let body = s3::data(12 << 20, 21);
    garage.put_multipart("models/model.bin", &body, 5 << 20).await;
    let mut pod = Pod::start("pod-s3", Some(&network), None).await;
    // docs/examples/s3-model.yaml: two steps on the command line, the store is up, then the
    // download; the credentials come from a Secret there.
    let manifest = Manifest::load("s3-model.yaml");
    let init = Container::new("model", &podinit_image().await)
        .envs(manifest.env("model"))
        .env("AWS_ACCESS_KEY_ID", s3::KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET)
        .empty_dir("/models")
        .args(manifest.command_line("model"));
    pod.init(init.clone()).await.outcome.code(0).stderr_has("verified: multipart ETag (3 parts)");
    let app =
        Container::new("server", &db_image().await).user("1000:1000").empty_dir("/models").command("sha256sum").args(["/models/model.bin"]);
    let sum = pod.start_app(app.clone()).await.wait().await;
    sum.outcome.code(0);
    assert_eq!(sum.outcome.stdout.split_whitespace().next().unwrap(), format!("{:x}", Sha256::digest(&body)));
    let file = pod.empty_dir.path().join("model.bin");
    let before = std::fs::metadata(&file).unwrap();

    // The pod restarts: the init container runs again, finds the file current, downloads nothing.
    pod.restart();
    pod.init(init).await.outcome.code(0).stderr_has("is current");
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!((after.ino(), after.mtime_nsec()), (before.ino(), before.mtime_nsec()), "the file was written again");
    pod.start_app(app).await.wait().await.outcome.code(0);
}

#[tokio::test]
async fn three_replicas_migrate_one_database_at_once() {
    let network = Network::create("pods-migrate").await;
    let db = services::postgres_on("pods-pw", 3, Some((&network.name, &network.service("postgres")))).await;
    // A ConfigMap volume: the files are symlinks into a timestamped directory.
    let config = tempfile::tempdir().unwrap();
    let data = config.path().join("..2026_11_30_data");
    std::fs::create_dir(&data).unwrap();
    let manifest = Manifest::load("migrations.yaml");
    let files = ["1_items.sql", "2_seed.sql", "3_price.sql"];
    for name in files {
        let mut sql = manifest.config_map("shop-migrations", name);
        if name == "2_seed.sql" {
            sql.push_str("SELECT pg_sleep(2);\n");
        }
        write(&data.join(name), &sql);
        std::os::unix::fs::symlink(format!("..data/{name}"), config.path().join(name)).unwrap();
    }
    std::os::unix::fs::symlink("..2026_11_30_data", config.path().join("..data")).unwrap();

    // The init container of docs/examples/migrations.yaml (its files, plus a pause in the seed
    // so that the three runs overlap for sure).
    let command_line = Manifest::load("migrations.yaml").command_line("migrate");
    let image = podinit_image().await;
    let replica = |name: &str| {
        Container::new(name, &image)
            .mount(config.path(), "/migrations")
            // The Secret the manifest takes PGPASSWORD from.
            .env("PGPASSWORD", "pods-pw")
            .args(command_line.clone())
    };
    let (mut a, mut b, mut c) = tokio::join!(
        Pod::start("pod-migrate-a", Some(&network), None),
        Pod::start("pod-migrate-b", Some(&network), None),
        Pod::start("pod-migrate-c", Some(&network), None),
    );
    let runs = tokio::join!(a.init(replica("migrate")), b.init(replica("migrate")), c.init(replica("migrate")));
    let logs: Vec<&str> = [&runs.0, &runs.1, &runs.2].iter().map(|r| r.outcome.code(0).stderr.as_str()).collect();
    for name in files {
        let appliers = logs.iter().filter(|l| l.contains(&format!("applied {name} in"))).count();
        assert_eq!(appliers, 1, "{name} applied by {appliers} replicas:\n{}", logs.join("\n---\n"));
    }
    assert!(!logs.iter().any(|l| l.contains("pods-pw")), "the password reached a log");

    let pool = sqlx::PgPool::connect(&db.url("postgres")).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM items").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 1, "the seed row was inserted more than once");
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(&pool).await.unwrap();
    assert_eq!(history, 3);
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[tokio::test]
async fn a_native_sidecar_producer_holds_the_consumer_back_until_its_queue_exists() {
    // docs/examples/ipc-native-sidecar.yaml with the scripts of ipc.yaml: the producer is a
    // sidecar whose startup probe is `podinit wait-for --once`; the consumer, unwrapped, starts
    // only once the probe succeeds.
    let manifest = Manifest::load("ipc-native-sidecar.yaml");
    let scripts = tempfile::tempdir().unwrap();
    let ipc = Manifest::load("ipc.yaml");
    for name in ["consumer.pl", "producer.pl"] {
        write(&scripts.path().join(name), &ipc.config_map("ipc-scripts", name));
    }
    let probe = manifest.startup_probe("producer");
    assert_eq!(probe[..2], ["podinit", "wait-for"]);
    let (producer_line, consumer_line) = (manifest.command_line("producer"), manifest.command_line("consumer"));
    let app = db_image().await;
    let mut pod = Pod::start("pod-ipc-sidecar", None, None).await;
    let with_podinit = |name: &str, user: &str, line: &[String]| {
        Container::new(name, &app)
            .user(user)
            .mount(&static_binary(), "/usr/local/bin/podinit")
            .mount(scripts.path(), "/scripts")
            .command(&line[0])
            .args(line[1..].iter().cloned())
    };
    let _producer = pod.start_sidecar(with_podinit("producer", "2000:2000", &producer_line), &probe, 60).await;
    let consumer = pod.start_app(with_podinit("consumer", "1000:1000", &consumer_line)).await;
    consumer.wait().await.outcome.code(0).stdout_is("received 100 messages and END\n");
}

//! Every manifest of docs/examples/ that podman's `kube play` can express, played by it
//! (support::kube says what is substituted and why): the same outcomes the Docker-based pod
//! simulations (`pods.rs`) assert, from an independent implementation of Pod semantics.
//!
//! Left to the simulation, because podman 4.3's kube play cannot express them:
//! `vault-secrets.yaml` (no API server: no service-account token to log in with, no
//! TokenReview) and `ipc-native-sidecar.yaml` (no native sidecars: an init container with
//! `restartPolicy: Always` would run forever before the app).

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::support::docker::{db_image, podinit_image, static_binary};
use crate::support::kube::{Cluster, load_into_podman, podman_build};
use crate::support::s3;

/// The podinit image under test and the database image in podman; returns their names there.
async fn base_images() -> (String, String) {
    let podinit = podinit_image().await;
    let db = db_image().await;
    let (podinit, db) = (format!("{}:{}", podinit.name(), podinit.tag()), format!("{}:{}", db.name(), db.tag()));
    load_into_podman(&[&podinit, &db]);
    (format!("localhost/{podinit}"), format!("localhost/{db}"))
}

use testcontainers::Image as _;

/// A test app on the database image's Debian: `entrypoint` in exec form.
fn app_image(tag: &str, db: &str, entrypoint: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let image = format!("localhost/podinit-test-app:{tag}");
    podman_build(&image, &format!("FROM {db}\nENTRYPOINT {entrypoint}\n"), dir.path());
    image
}

#[tokio::test]
async fn kube_play_elasticsearch_kernel_settings() {
    let (podinit, db) = base_images().await;
    let app = app_image(
        "sysctl",
        &db,
        r#"["sh", "-c", "echo somaxconn=$(cat /proc/sys/net/core/somaxconn) max_map_count=$(cat /proc/sys/vm/max_map_count) uid=$(id -u)"]"#,
    );
    let before = crate::support::cmd::host_sysctl("vm/max_map_count");
    let somaxconn = crate::support::cmd::host_sysctl("net/core/somaxconn");
    let cluster = Cluster::new("es");
    let images =
        BTreeMap::from([("registry.example.com/podinit:0.1.0", podinit), ("docker.elastic.co/elasticsearch/elasticsearch:8.15.0", app)]);
    let pods = cluster.play("elasticsearch.yaml", &images);
    let outcomes: Vec<_> = pods.iter().map(|pod| cluster.wait(pod, "elasticsearch")).collect();
    // The node is the VM: put its node-wide value back before asserting anything.
    let raised = crate::support::cmd::host_sysctl("vm/max_map_count");
    std::fs::write("/proc/sys/vm/max_map_count", &before).unwrap();
    assert_eq!(outcomes.len(), 3, "one pod per replica");
    let wanted: u64 = 262_144;
    for out in &outcomes {
        let expected_map = before.parse::<u64>().unwrap().max(wanted);
        out.code(0).stdout_is(&format!("somaxconn=8192 max_map_count={expected_map} uid=1000\n"));
    }
    assert_eq!(raised.parse::<u64>().unwrap(), before.parse::<u64>().unwrap().max(wanted), "raised, never lowered");
    assert_eq!(crate::support::cmd::host_sysctl("net/core/somaxconn"), somaxconn, "the pod's own network namespace");
}

#[tokio::test]
async fn kube_play_model_from_s3_survives_a_restart() {
    let (podinit, db) = base_images().await;
    let store = s3::image().await;
    load_into_podman(&[&store]);
    let app = app_image("model", &db, r#"["sh", "-c", "sha256sum \"$2\" | cut -d' ' -f1", "server"]"#);
    let mut cluster = Cluster::new("s3");
    let port = cluster.service(
        "s3",
        &store,
        "/usr/local/bin/garage.sh",
        &[("S3_KEY_ID", s3::KEY_ID), ("S3_SECRET", s3::SECRET), ("S3_BUCKET", s3::BUCKET)],
        3900,
        "podinit-test-s3: ready",
    );
    let body = s3::data(12 << 20, 44);
    let client = s3::client(port);
    client
        .put_object()
        .bucket(s3::BUCKET)
        .key("models/model.bin")
        .body(aws_sdk_s3::primitives::ByteStream::from(body.clone()))
        .send()
        .await
        .expect("uploading the model");
    cluster.secret("s3-reader", &[("access-key-id", s3::KEY_ID), ("secret-access-key", s3::SECRET)]);
    let images = BTreeMap::from([("registry.example.com/podinit:0.1.0", podinit), ("my-inference-server:latest", app)]);
    let pods = cluster.play("s3-model.yaml", &images);
    let want = format!("{:x}\n", Sha256::digest(&body));
    cluster.wait(&pods[0], "server").code(0).stdout_is(&want);
    // A restarted pod reads the same complete file.
    cluster.restart(&pods[0]);
    let again = cluster.wait(&pods[0], "server");
    again.code(0);
    assert!(again.stdout.lines().all(|l| format!("{l}\n") == want), "{}", again.stdout);
}

#[tokio::test]
async fn kube_play_three_replicas_migrate_one_database() {
    let (podinit, db) = base_images().await;
    let app = app_image("shop", &db, r#"["true"]"#);
    let mut cluster = Cluster::new("migrate");
    let port = cluster.service(
        "postgres",
        db.trim_start_matches("localhost/"),
        "/usr/local/bin/postgres.sh",
        &[("PG_PASSWORD", "kube-pw")],
        5432,
        "",
    );
    cluster.secret("shop-db", &[("password", "kube-pw")]);
    let url = format!("postgres://postgres:kube-pw@127.0.0.1:{port}/app");
    // The server must answer before the pods' --timeout 5m runs out; waiting is theirs.
    let images = BTreeMap::from([("registry.example.com/podinit:0.1.0", podinit), ("my-shop:latest", app)]);
    let pods = cluster.play("migrations.yaml", &images);
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        cluster.wait(pod, "shop").code(0);
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let history: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version").fetch_all(&pool).await.unwrap();
    assert_eq!(history, [(1, true), (2, true), (3, true)], "each file applied once");
    let seeded: i64 = sqlx::query_scalar("SELECT count(*) FROM items").fetch_one(&pool).await.unwrap();
    assert_eq!(seeded, 1, "the seed ran once");
}

#[tokio::test]
async fn kube_play_ipc_consumer_before_producer() {
    let (_, db) = base_images().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(static_binary(), dir.path().join("podinit")).unwrap();
    let app = "localhost/podinit-test-ipc-app:latest".to_owned();
    podman_build(&app, &format!("FROM {db}\nCOPY podinit /usr/local/bin/podinit\n"), dir.path());
    let cluster = Cluster::new("ipc");
    let images = BTreeMap::from([("ipc-app-with-podinit:latest", app)]);
    let pods = cluster.play("ipc.yaml", &images);
    cluster.wait(&pods[0], "consumer").code(0).stdout_is("received 100 messages and END\n");
    cluster.wait(&pods[0], "producer").code(0);
}

#[tokio::test]
async fn kube_play_volume_for_a_non_root_app() {
    let (podinit, db) = base_images().await;
    // The app: what uid 1001 sees of the volumes the init containers prepared.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("web"),
        "#!/bin/sh\n\
         echo \"uid=$(id -u) $*\"\n\
         stat -c '%n %u:%g %a' /data /data/db /data/logs /etc/web/tls.key\n\
         ls -A /etc/web | tr '\\n' ' '; echo\n\
         cat /etc/web/app.conf\n\
         ls -A /data/db | tr '\\n' ' '; echo\n\
         echo written > /data/db/table && echo $$ > /data/db/web.pid && echo writable\n",
    )
    .unwrap();
    let app = "localhost/podinit-test-web:latest".to_owned();
    podman_build(&app, &format!("FROM {db}\nCOPY --chmod=755 web /app/web\n"), dir.path());
    let mut cluster = Cluster::new("volume");
    cluster.service("postgres", db.trim_start_matches("localhost/"), "/usr/local/bin/postgres.sh", &[("PG_PASSWORD", "pw")], 5432, "");
    cluster.secret_volume("web-tls", &[("tls.key", "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n")]);
    let images = BTreeMap::from([("registry.example.com/podinit:0.1.0", podinit), ("my-web:latest", app)]);
    let pods = cluster.play("volume-permissions.yaml", &images);
    let want = |db: &str| {
        format!(
            "uid=1001 --config /etc/web/app.conf\n\
             /data 1001:1001 750\n/data/db 1001:1001 750\n/data/logs 1001:1001 750\n/etc/web/tls.key 1001:1001 600\n\
             app.conf mime.types tls.key \n\
             listen 8080\ndata /data/db\n\
             {db}\n\
             writable\n"
        )
    };
    cluster.wait(&pods[0], "web").code(0).stdout_is(&want(""));
    // podman runs init containers once per pod (a `pod restart` starts the app alone), so a
    // new pod on the same claim is what runs them again: as root with three capabilities, on
    // directories that now belong to 1001 with mode 0750.
    cluster.remove(&pods[0]);
    let pods = cluster.play("volume-permissions.yaml", &images);
    let again = cluster.wait(&pods[0], "web");
    // The pid file the first app left is gone (`rm -f /data/db/*.pid`), its table kept.
    again.code(0).stdout_is(&want("table "));
}

#[tokio::test]
async fn kube_play_redis_backed_app() {
    let (podinit, db) = base_images().await;
    // Debian's redis-server and redis-cli (the host's, on the same Debian as the test image)
    // with their libraries. The server starts 3 s late and first loads a 2M-key dataset, so a
    // port check would let the app in while Redis still answers -LOADING.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("ldd").args(["/usr/bin/redis-server", "/usr/bin/redis-cli"]).output().unwrap();
    let libs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("=> ").nth(1)?.split(' ').next().map(str::to_owned))
        .filter(|p| p.starts_with('/'))
        .collect();
    for file in libs.iter().map(String::as_str).chain(["/usr/bin/redis-server", "/usr/bin/redis-cli"]) {
        // Where the file really is (/lib is a link to usr/lib on this Debian: copying onto it
        // would replace the image's link with a directory).
        // Files keep their names (redis-server is a link to redis-check-rdb, which acts by its
        // name; libraries are found by their sonames).
        let file = std::path::Path::new(file);
        let real = std::fs::canonicalize(file.parent().unwrap()).unwrap().join(file.file_name().unwrap());
        let to = dir.path().join("root").join(real.strip_prefix("/").unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(file, &to).unwrap();
    }
    std::fs::write(
        dir.path().join("redis.sh"),
        "#!/bin/sh
set -e
cd /tmp
         redis-server --port 6380 --save '' --enable-debug-command yes --daemonize yes --dbfilename dump.rdb --dir /tmp
         until redis-cli -p 6380 ping >/dev/null 2>&1; do sleep 0.1; done
         redis-cli -p 6380 DEBUG POPULATE 2000000 key 64 >/dev/null && redis-cli -p 6380 SAVE >/dev/null && redis-cli -p 6380 SHUTDOWN NOSAVE || true
         sleep 3
         exec redis-server --bind 0.0.0.0 --protected-mode no --requirepass \"$REDIS_PASSWORD\" --dir /tmp --dbfilename dump.rdb --save '' --appendonly no
",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("web"),
        "#!/bin/sh
REDISCLI_AUTH=$(cat /secrets/redis/password) exec redis-cli -h \"$REDIS_HOST\" DBSIZE
",
    )
    .unwrap();
    let redis = "localhost/podinit-test-redis:latest".to_owned();
    podman_build(
        &redis,
        &format!(
            "FROM {db}\nCOPY root/ /\nCOPY --chmod=755 redis.sh /usr/local/bin/redis.sh\nCOPY --chmod=755 web /app/web\nENTRYPOINT [\"/app/web\"]\n"
        ),
        dir.path(),
    );
    let mut cluster = Cluster::new("redis");
    cluster.service(
        "redis",
        redis.trim_start_matches("localhost/"),
        "/usr/local/bin/redis.sh",
        &[("REDIS_PASSWORD", "r3dis-pw")],
        6379,
        "",
    );
    cluster.secret_volume("redis-auth", &[("password", "r3dis-pw")]);
    let images = BTreeMap::from([("registry.example.com/podinit:0.1.0", podinit), ("my-web:latest", redis)]);
    let pods = cluster.play("redis-app.yaml", &images);
    // The app's first command finds the whole dataset: it started only once Redis served.
    cluster.wait(&pods[0], "web").code(0).stdout_is("2000000\n");
}

#[tokio::test]
async fn kube_play_render_config() {
    let (podinit, db) = base_images().await;
    // The app: what it reads of the rendered config.
    let app = app_image("render", &db, r#"["sh", "-c", "cat /config/nginx.conf /config/app.yaml; stat -c '%n %u %a' /config/app.yaml"]"#);
    let mut cluster = Cluster::new("render");
    cluster.secret("web-db", &[("password", "p@ss word")]);
    let images = BTreeMap::from([("registry.example.com/podinit:0.1.0", podinit), ("my-web:latest", app)]);
    let pods = cluster.play("render-config.yaml", &images);
    cluster.wait(&pods[0], "web").code(0).stdout_is(
        "server {\n  listen 8080;\n  location / { proxy_pass http://api:9000; proxy_set_header Host $host; }\n}\n\
         database:\n  url: postgres://app:p%40ss+word@postgres:5432/app\nreplicas: 1\nfeatures:\n  - \"search\"\n  - \"billing\"\n\
         /config/app.yaml 1001 600\n",
    );
}

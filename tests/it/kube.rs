//! Every manifest of docs/examples/ that podman's `kube play` can express, played by it
//! (support::kube says what is substituted and why): the same outcomes the Docker-based pod
//! simulations (`pods.rs`) assert, from an independent implementation of Pod semantics.
//!
//! Left to the simulation, because podman 4.3's kube play cannot express them:
//! `vault-secrets.yaml` (no API server: no service-account token to log in with, no
//! TokenReview) and `ipc-native-sidecar.yaml` (no native sidecars: an init container with
//! `restartPolicy: Always` would run forever before the app). `plugins-image-volume.yaml`'s
//! image volume is run with podman's image mounts instead (`--mount type=image`), and checked
//! against Kubernetes 1.35's schema.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::support::docker::{db_image, podinit_image, static_binary};
use crate::support::kube::{Cluster, load_into_podman, podman, podman_build};
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

/// An app image made `FROM scratch`: plugins under /app/plugins (two files, a directory, a
/// relative link) and `entrypoint` (exec form); no shell, no cp: nothing in it can copy.
fn scratch_app(tag: &str, entrypoint: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("app/plugins");
    std::fs::create_dir_all(plugins.join("lib")).unwrap();
    std::fs::create_dir_all(plugins.join("conf")).unwrap();
    std::fs::write(plugins.join("lib/a.so"), "plugin a\n").unwrap();
    std::fs::write(plugins.join("conf/b.conf"), "plugin b\n").unwrap();
    std::os::unix::fs::symlink("a.so", plugins.join("lib/current.so")).unwrap();
    let image = format!("localhost/podinit-test-scratch-app:{tag}");
    podman_build(&image, &format!("FROM scratch\nCOPY app/ /app/\nENTRYPOINT {entrypoint}\n"), dir.path());
    image
}

/// What a volume holds, as a Debian container lists it: path, owner, mode, type, link target.
fn volume_listing(db: &str, volume: &str) -> String {
    let out = podman(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/plugins"),
        "--entrypoint",
        "/bin/sh",
        db,
        "-c",
        "cd /plugins && find . -mindepth 1 -printf '%p %u %m %y %l\\n' | sort",
    ]);
    assert_eq!(out.code, 0, "listing {volume}: {}", out.stderr);
    out.stdout
}

const PLUGINS_AS_COPIED: &str =
    "./conf 1000 755 d \n./conf/b.conf 1000 644 f \n./lib 1000 755 d \n./lib/a.so 1000 644 f \n./lib/current.so 1000 777 l a.so\n";

#[tokio::test]
async fn kube_play_plugins_from_the_app_image_through_a_tools_volume() {
    let (podinit, _) = base_images().await;
    // The app's entrypoint checks, with the podinit the tools volume carries, that the
    // plugins arrived (link included).
    let app = scratch_app(
        "tools",
        r#"["/tools/podinit", "wait-for", "--once", "--file-contains", "plugin", "file:///plugins/lib/a.so", "file:///plugins/conf/b.conf", "file:///plugins/lib/current.so"]"#,
    );
    let cluster = Cluster::new("tools");
    let images = BTreeMap::from([("registry.example.com/podinit:0.1.0", podinit), ("registry.example.com/my-app:2.3.0", app)]);
    let pods = cluster.play("plugins-tools-volume.yaml", &images);
    cluster.wait(&pods[0], "app").code(0).stderr_has("3 of 3 ready");
}

#[tokio::test]
async fn plugins_from_the_app_image_through_an_image_volume() {
    let (podinit, db) = base_images().await;
    // The manifest is valid for Kubernetes 1.35, where image volumes are beta and on.
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/plugins-image-volume.yaml");
    let out = std::process::Command::new(crate::manifests::validator())
        .args(["--strict", "--quiet", "-k", "1.35.0"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubernetes-validate -k 1.35.0: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let app = scratch_app("image-volume", r#"["/app/none"]"#);
    let volume = format!("podinit-test-plugins-{}", std::process::id());
    let _ = podman(&["volume", "rm", "-f", &volume]);
    // The manifest's init container as podman runs it: the podinit image mounted read-only at
    // /podinit (kube play cannot express an image volume), uid 1000, read-only root, no capabilities.
    let copy = |volume: &str| {
        podman(&[
            "run",
            "--rm",
            "--user",
            "1000:1000",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--mount",
            &format!("type=image,source={podinit},destination=/podinit"),
            "-v",
            &format!("{volume}:/plugins:U"),
            "--entrypoint",
            "/podinit/podinit",
            &app,
            "cp",
            "-a",
            "/app/plugins/.",
            "/plugins/",
        ])
    };
    let out = copy(&volume);
    assert_eq!(out.code, 0, "the init container: {}", out.stderr);
    assert_eq!(volume_listing(&db, &volume), PLUGINS_AS_COPIED);
    // A restarted pod runs it again: the same tree, nothing to do.
    let again = copy(&volume);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(volume_listing(&db, &volume), PLUGINS_AS_COPIED);
    let _ = podman(&["volume", "rm", "-f", &volume]);
}

#[tokio::test]
async fn plugins_from_the_app_image_with_copy_from() {
    let (podinit, db) = base_images().await;
    let app = scratch_app("copy-from-base", r#"["/app/none"]"#);
    // The app's own build takes the binary from the podinit image (docs/kubernetes.md).
    let dir = tempfile::tempdir().unwrap();
    let image = "localhost/podinit-test-scratch-app:copy-from".to_owned();
    podman_build(&image, &format!("FROM {app}\nCOPY --from={podinit} /podinit /usr/local/bin/podinit\n"), dir.path());
    let volume = format!("podinit-test-plugins-copy-{}", std::process::id());
    let _ = podman(&["volume", "rm", "-f", &volume]);
    let out = podman(&[
        "run",
        "--rm",
        "--user",
        "1000:1000",
        "--read-only",
        "--cap-drop",
        "ALL",
        "-v",
        &format!("{volume}:/plugins:U"),
        "--entrypoint",
        "/usr/local/bin/podinit",
        &image,
        "cp",
        "-a",
        "/app/plugins/.",
        "/plugins/",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(volume_listing(&db, &volume), PLUGINS_AS_COPIED);
    let _ = podman(&["volume", "rm", "-f", &volume]);
}

/// The ELF machine of a binary: 62 x86_64, 183 aarch64.
fn elf_machine(path: &std::path::Path) -> u16 {
    let head = std::fs::read(path).unwrap();
    assert_eq!(&head[..4], b"\x7fELF", "{} is not an ELF file", path.display());
    u16::from_le_bytes([head[18], head[19]])
}

#[test]
fn one_command_builds_the_multi_platform_image() {
    // The README's command with both platforms; the amd64 binary is the one under test
    // (PODINIT_STATIC_BIN), the arm64 one cross-built (cached after scripts/test's build).
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("podinit.tar");
    let tag = format!("localhost/podinit-test-multi:{}", std::process::id());
    let mut build = std::process::Command::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images/podinit/build"));
    build.args(["--platform", "linux/amd64,linux/arm64", "--tag", &tag, "--oci-archive"]).arg(&archive);
    if std::env::var_os("PODINIT_STATIC_BIN").is_none() {
        build.env("PODINIT_STATIC_BIN", static_binary());
    }
    let out = build.output().unwrap();
    assert!(out.status.success(), "images/podinit/build: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), tag);
    // A manifest list of both platforms, and an OCI archive of it.
    let list: serde_json::Value = serde_json::from_str(&podman(&["manifest", "inspect", &tag]).stdout).unwrap();
    let platforms: Vec<String> = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap()))
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // The archive, read as a registry client would: index → each platform's manifest → its
    // layers, where /podinit must be that platform's binary and /bin hold the applet links.
    let mut blobs = std::collections::HashMap::new();
    let mut index = serde_json::Value::Null;
    for entry in tar::Archive::new(std::fs::File::open(&archive).unwrap()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if name == "index.json" {
            index = serde_json::from_slice(&data).unwrap();
        } else if let Some(digest) = name.strip_prefix("blobs/sha256/") {
            blobs.insert(format!("sha256:{digest}"), data);
        }
    }
    let blob = |digest: &serde_json::Value| -> &Vec<u8> { &blobs[digest.as_str().unwrap()] };
    let json = |digest: &serde_json::Value| -> serde_json::Value { serde_json::from_slice(blob(digest)).unwrap() };
    let list = json(&index["manifests"][0]["digest"]);
    let mut seen = Vec::new();
    for manifest in list["manifests"].as_array().unwrap() {
        let arch = manifest["platform"]["architecture"].as_str().unwrap().to_owned();
        let mut podinit = None;
        let mut links = 0;
        for layer in json(&manifest["digest"])["layers"].as_array().unwrap() {
            let data = blob(&layer["digest"]);
            let mut layer_tar = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
            for entry in layer_tar.entries().unwrap() {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().display().to_string();
                if path == "podinit" {
                    let mut head = vec![0; 20];
                    std::io::Read::read_exact(&mut entry, &mut head).unwrap();
                    podinit = Some(u16::from_le_bytes([head[18], head[19]]));
                } else if path.starts_with("bin/") && entry.header().entry_type().is_symlink() {
                    links += 1;
                }
            }
        }
        seen.push((arch, podinit, links > 10));
    }
    assert_eq!(
        seen,
        [("amd64".to_owned(), Some(62), true), ("arm64".to_owned(), Some(183), true)],
        "(architecture, ELF machine of /podinit, applet links)"
    );
    // The amd64 image runs here, through an applet link; the arm64 binary under qemu.
    let run = podman(&["run", "--rm", "--platform", "linux/amd64", "--entrypoint", "/bin/sysctl", &tag, "-n", "kernel.ostype"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, "Linux\n"), "{}", run.stderr);
    let arm = crate::support::docker::repo().join("target/static-aarch64/podinit");
    assert_eq!(elf_machine(&arm), 183);
    crate::support::cmd::tool("qemu-aarch64-static", &[arm.to_str().unwrap(), "--version"])
        .code(0)
        .stdout_is(&format!("podinit {} (aarch64)\n", env!("CARGO_PKG_VERSION")));
    let _ = podman(&["manifest", "rm", &tag]);
}

#[tokio::test]
async fn kube_play_git_dags() {
    let (podinit, db) = base_images().await;
    // The git server: Debian git's `git daemon` (this machine's bookworm binaries, copied onto
    // the test image's bookworm) serving a repository the test makes.
    let dir = tempfile::tempdir().unwrap();
    let srv = dir.path().join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    let repo = crate::support::git::Repo::new(&srv, "dags");
    let main = repo.commit(&[("etl.py", "dag = 'etl'\n"), ("reports/daily.py", "dag = 'daily'\n")], "two dags");
    std::fs::remove_dir_all(&repo.work).unwrap();
    std::fs::create_dir_all(dir.path().join("git-core")).unwrap();
    std::fs::copy("/usr/bin/git", dir.path().join("git")).unwrap();
    std::fs::copy("/usr/lib/git-core/git-daemon", dir.path().join("git-core/git-daemon")).unwrap();
    std::fs::write(
        dir.path().join("git-daemon.sh"),
        "#!/bin/sh\nexec git daemon --verbose --export-all --reuseaddr --base-path=/srv/git /srv/git\n",
    )
    .unwrap();
    let server = "localhost/podinit-test-git:latest";
    podman_build(
        server,
        &format!(
            "FROM {db}\nCOPY git /usr/bin/git\nCOPY git-core/ /usr/lib/git-core/\nCOPY srv/ /srv/git/\n\
             COPY --chmod=755 git-daemon.sh /usr/local/bin/git-daemon.sh\n"
        ),
        dir.path(),
    );
    // The scheduler: what it finds in its DAGs folder.
    let app = app_image(
        "scheduler",
        &db,
        r#"["sh", "-c", "cd \"$AIRFLOW__CORE__DAGS_FOLDER\" && find . -type f | sort && cat etl.py && readlink /git/dags"]"#,
    );
    let mut cluster = Cluster::new("git");
    cluster.service("git", server.trim_start_matches("localhost/"), "/usr/local/bin/git-daemon.sh", &[], 9418, "Ready to rumble");
    let images = BTreeMap::from([("registry.example.com/podinit:0.1.0", podinit), ("my-scheduler:latest", app)]);
    let pods = cluster.play("git-dags.yaml", &images);
    let want = format!("./etl.py\n./reports/daily.py\ndag = 'etl'\n.worktrees/{main}\n");
    cluster.wait(&pods[0], "scheduler").code(0).stdout_is(&want);
    // A restarted pod (its init container runs again; podman removes init containers once they
    // are done, so their logs are gone) reads the same tree.
    cluster.restart(&pods[0]);
    let again = cluster.wait(&pods[0], "scheduler");
    again.code(0);
    assert!(again.stdout.ends_with(&want), "{}", again.stdout);
}

//! The Docker gate and the images tests run.
//!
//! [`require_docker`] fails the test (never skips it) when no engine answers: container
//! tests are part of the suite, and `scripts/test` installs and starts the engine.
//! [`podinit_image`] builds `images/podinit` around the static binary, tagged by a hash of
//! its contents, so a rerun reuses the image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use testcontainers::core::BuildImageOptions;
use testcontainers::core::wait::ExitWaitStrategy;
use testcontainers::runners::{AsyncBuilder as _, AsyncRunner as _};
use testcontainers::{ContainerRequest, GenericBuildableImage, GenericImage, ImageExt as _};
use tokio::sync::OnceCell;

use super::Outcome;

/// Panics with what to do unless a Docker engine answers on its socket.
pub fn require_docker() {
    let socket = Path::new("/var/run/docker.sock");
    let ok = std::os::unix::net::UnixStream::connect(socket).is_ok()
        && Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "this test needs a Docker engine and none answers at {}: run scripts/test, which installs and starts one",
        socket.display()
    );
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static STATIC_BUILD: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The statically linked release binary (what the image ships).
pub fn static_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PODINIT_STATIC_BIN") {
        return PathBuf::from(path);
    }
    let mut slot = STATIC_BUILD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = &*slot {
        return path.clone();
    }
    let target_dir = repo().join("target/static");
    let status = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args(["build", "--release", "--locked", "--target", "x86_64-unknown-linux-gnu", "--bin", "podinit"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static -C relocation-model=static")
        .status()
        .expect("running cargo build for the static binary");
    assert!(status.success(), "building the static binary failed");
    let path = target_dir.join("x86_64-unknown-linux-gnu/release/podinit");
    *slot = Some(path.clone());
    path
}

static IMAGE: OnceCell<GenericImage> = OnceCell::const_new();

/// The build host's CA bundle (Debian's ca-certificates), copied into the image.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The podinit image (`images/podinit`), built once per content hash.
pub async fn podinit_image() -> GenericImage {
    require_docker();
    IMAGE
        .get_or_init(|| async {
            let bin = static_binary();
            let dir = repo().join("images/podinit");
            let ca = PathBuf::from(CA_BUNDLE);
            let mut hash = Sha256::new();
            for file in [bin.clone(), dir.join("Dockerfile"), dir.join("passwd"), dir.join("group"), ca.clone()] {
                hash.update(std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display())));
            }
            let tag = format!("{:x}", hash.finalize())[..16].to_owned();
            GenericBuildableImage::new("podinit-test", &tag)
                .with_dockerfile(dir.join("Dockerfile"))
                .with_file(dir.join("passwd"), "passwd")
                .with_file(dir.join("group"), "group")
                .with_file(ca, "ca-certificates.crt")
                .with_file(bin, "podinit")
                .build_image_with(BuildImageOptions::new().with_skip_if_exists(true))
                .await
                .expect("building images/podinit")
        })
        .await
        .clone()
}

/// Runs a container to completion and collects its exit status and output.
pub async fn run_to_exit(request: ContainerRequest<GenericImage>) -> Outcome {
    let container = request
        .with_ready_conditions(vec![testcontainers::core::WaitFor::exit(ExitWaitStrategy::new())])
        .start()
        .await
        .expect("starting the container");
    let code = container.exit_code().await.expect("reading the exit code").expect("the container has exited");
    let stdout = container.stdout_to_vec().await.expect("reading stdout");
    let stderr = container.stderr_to_vec().await.expect("reading stderr");
    Outcome::new(code, stdout, stderr)
}

static DB_IMAGE: OnceCell<GenericImage> = OnceCell::const_new();
static VAULT_IMAGE: OnceCell<GenericImage> = OnceCell::const_new();

/// The PostgreSQL + MariaDB test image (`images/test/db`), built if missing.
pub async fn db_image() -> GenericImage {
    DB_IMAGE.get_or_init(|| built("images/test/db/build")).await.clone()
}

/// The OpenBao test image (`images/test/vault`), built if missing.
pub async fn vault_image() -> GenericImage {
    VAULT_IMAGE.get_or_init(|| built("images/test/vault/build")).await.clone()
}

/// Runs an image build script (which prints `NAME:TAG`).
pub async fn built(script: &str) -> GenericImage {
    require_docker();
    let out = tokio::process::Command::new(repo().join(script)).output().await.unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let name = String::from_utf8(out.stdout).unwrap();
    let (name, tag) = name.trim().split_once(':').expect("the build script prints NAME:TAG");
    GenericImage::new(name, tag)
}

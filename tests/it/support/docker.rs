//! The Docker gate and the images tests run.
//!
//! [`require_docker`] fails the test (never skips it) when no engine answers: container
//! tests are part of the suite, and `scripts/test` installs and starts the engine.
//! [`podinit_image`] builds the image with `images/podinit/build` around the static binary;
//! an unchanged context is not built again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use testcontainers::core::wait::ExitWaitStrategy;
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerRequest, GenericImage, ImageExt as _};
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

pub fn repo() -> PathBuf {
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
    // What the image ships: scripts/build-static's binary (start-up order, stripped).
    let out = Command::new(repo().join("scripts/build-static"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running scripts/build-static");
    assert!(out.status.success(), "building the static binary failed");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    *slot = Some(path.clone());
    path
}

static IMAGE: OnceCell<GenericImage> = OnceCell::const_new();

/// The podinit image, built by `images/podinit/build` (the command README gives users) around
/// the static binary under test, tagged `podinit-test:latest`; an unchanged context is not
/// built again.
pub async fn podinit_image() -> GenericImage {
    require_docker();
    IMAGE
        .get_or_init(|| async {
            let bin = static_binary();
            let out = tokio::process::Command::new(repo().join("images/podinit/build"))
                .args(["--tag", "podinit-test:latest"])
                .env("PODINIT_STATIC_BIN", &bin)
                .output()
                .await
                .expect("running images/podinit/build");
            assert!(out.status.success(), "images/podinit/build failed:\n{}", String::from_utf8_lossy(&out.stderr));
            let printed = String::from_utf8(out.stdout).unwrap();
            let (name, tag) = printed.trim().split_once(':').expect("the build script prints NAME:TAG");
            GenericImage::new(name, tag)
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

//! Pods simulated with Docker, the way the kubelet runs them.
//!
//! A sandbox container holds the pod's network and IPC namespaces (the kubelet's pause
//! container); every other container joins both. A host directory is the `emptyDir`
//! (mode 0777, or group-owned and setgid with an `fsGroup`), mounted into each container that
//! asks for it. Init containers run one at a time, each to completion; app containers start
//! only when every init container has succeeded ([`Pod::start`] refuses otherwise). Each
//! container gets its own termination-message file at `/dev/termination-log`, as the kubelet
//! mounts it. Containers run with the restricted securityContext unless a test says otherwise:
//! non-root, read-only root filesystem, every capability dropped, no privilege escalation.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use testcontainers::{GenericImage, Image as _};
use tokio::process::Command;

use super::Outcome;

/// One container of a pod: image, command line and securityContext.
#[derive(Debug, Clone)]
pub struct Container {
    name: String,
    image: String,
    entrypoint: Option<String>,
    args: Vec<String>,
    user: String,
    groups: Vec<u32>,
    env: Vec<(String, String)>,
    mounts: Vec<(PathBuf, String, bool)>,
    empty_dir: Option<String>,
    read_only_root: bool,
    /// `securityContext.privileged: true` as far as this engine allows: root, CAP_SYS_ADMIN,
    /// and a writable `/proc/sys`.
    privileged: bool,
}

impl Container {
    /// A container named `name` running `image` as uid/gid 65532 with the restricted profile.
    pub fn new(name: &str, image: &GenericImage) -> Self {
        Self {
            name: name.to_owned(),
            image: format!("{}:{}", image.name(), image.tag()),
            entrypoint: None,
            args: Vec::new(),
            user: "65532:65532".to_owned(),
            groups: Vec::new(),
            env: Vec::new(),
            mounts: Vec::new(),
            empty_dir: None,
            read_only_root: true,
            privileged: false,
        }
    }

    /// `args` (after the image's entrypoint, or after `command`).
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `command`: replaces the image's entrypoint.
    pub fn command(mut self, program: &str) -> Self {
        self.entrypoint = Some(program.to_owned());
        self
    }

    /// `runAsUser`/`runAsGroup`, as `UID:GID`.
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_owned();
        self
    }

    /// The pod's `fsGroup` (or a supplemental group): the process is in this group too.
    pub fn group(mut self, gid: u32) -> Self {
        self.groups.push(gid);
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn envs(mut self, vars: Vec<(String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    /// A volume from the host (a ConfigMap, Secret or projected token), read-only.
    pub fn mount(mut self, host: &Path, path: &str) -> Self {
        self.mounts.push((host.to_owned(), path.to_owned(), true));
        self
    }

    /// Mounts the pod's emptyDir at `path`.
    pub fn empty_dir(mut self, path: &str) -> Self {
        self.empty_dir = Some(path.to_owned());
        self
    }

    /// `securityContext.privileged: true` (root with a writable `/proc/sys`).
    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self.user = "0:0".to_owned();
        self
    }

    fn docker_args(&self, pod: &Pod, termination_log: &Path) -> Vec<String> {
        let mut a = vec![
            "--name".to_owned(),
            format!("{}-{}", pod.name, self.name),
            format!("--network=container:{}", pod.sandbox),
            format!("--ipc=container:{}", pod.sandbox),
            "--user".to_owned(),
            self.user.clone(),
            "--security-opt".to_owned(),
            "no-new-privileges".to_owned(),
            "-v".to_owned(),
            format!("{}:/dev/termination-log", termination_log.display()),
        ];
        if self.privileged {
            a.extend(["--cap-add=SYS_ADMIN".to_owned(), "--security-opt".to_owned(), "systempaths=unconfined".to_owned()]);
        } else {
            a.push("--cap-drop=ALL".to_owned());
        }
        if self.read_only_root {
            a.push("--read-only".to_owned());
        }
        for gid in &self.groups {
            a.push(format!("--group-add={gid}"));
        }
        for (key, value) in &self.env {
            a.extend(["-e".to_owned(), format!("{key}={value}")]);
        }
        for (host, path, read_only) in &self.mounts {
            a.extend(["-v".to_owned(), format!("{}:{path}{}", host.display(), if *read_only { ":ro" } else { "" })]);
        }
        if let Some(path) = &self.empty_dir {
            a.extend(["-v".to_owned(), format!("{}:{path}", pod.empty_dir.path().display())]);
        }
        if let Some(program) = &self.entrypoint {
            a.push(format!("--entrypoint={program}"));
        }
        a.push(self.image.clone());
        a.extend(self.args.iter().cloned());
        a
    }
}

/// What a finished container left: exit status, output, and its termination message.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub termination_message: String,
}

/// An app container that is running.
pub struct Running {
    id: String,
    termination_log: PathBuf,
}

impl Running {
    /// Waits for the container to exit.
    pub async fn wait(self) -> Finished {
        let waited = docker(&["wait", &self.id]).await;
        let code: i64 = waited.stdout.trim().parse().expect("docker wait prints the exit status");
        let logs = Command::new("docker").args(["logs", &self.id]).output().await.expect("docker logs");
        let outcome = Outcome::new(code, logs.stdout, logs.stderr);
        Finished { outcome, termination_message: std::fs::read_to_string(&self.termination_log).unwrap_or_default() }
    }

    /// The output so far (stdout and stderr together).
    pub async fn logs(&self) -> String {
        let logs = Command::new("docker").args(["logs", &self.id]).output().await.expect("docker logs");
        String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr)
    }
}

/// A running pod: the sandbox, the emptyDir, and the containers started so far (removed on drop).
pub struct Pod {
    name: String,
    sandbox: String,
    pub empty_dir: tempfile::TempDir,
    files: tempfile::TempDir,
    containers: Vec<String>,
    init_failed: Option<String>,
    apps_started: bool,
}

impl Pod {
    /// A pod named `name` (unique on the engine), in the `network` namespace if given (where
    /// the test's services answer by their short names), with an emptyDir owned by `fs_group`
    /// if given.
    pub async fn start(name: &str, network: Option<&Network>, fs_group: Option<u32>) -> Self {
        super::docker::require_docker();
        let name = format!("{name}-{}", std::process::id());
        let empty_dir = tempfile::tempdir().unwrap();
        if let Some(gid) = fs_group {
            std::os::unix::fs::chown(empty_dir.path(), Some(0), Some(gid)).unwrap();
            std::fs::set_permissions(empty_dir.path(), std::fs::Permissions::from_mode(0o2777)).unwrap();
        } else {
            std::fs::set_permissions(empty_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let pause = super::docker::db_image().await;
        let mut args: Vec<String> = ["run", "-d", "--ipc=shareable", "--entrypoint=sleep", "--name"].map(str::to_owned).to_vec();
        args.push(format!("{name}-pause"));
        if let Some(network) = network {
            args.push(format!("--network={}", network.name));
            args.extend(network.dns_options());
        }
        args.extend([format!("{}:{}", pause.name(), pause.tag()), "infinity".to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = docker(&args).await;
        let sandbox = started.stdout.trim().to_owned();
        Self {
            name,
            sandbox,
            empty_dir,
            files: tempfile::tempdir().unwrap(),
            containers: Vec::new(),
            init_failed: None,
            apps_started: false,
        }
    }

    /// Runs an init container to completion. A failed one stops the pod from starting apps,
    /// as the kubelet would (it would retry it, which is what rerunning `init` does).
    pub async fn init(&mut self, container: Container) -> Finished {
        assert!(!self.apps_started, "init containers run before the app containers");
        let term = self.termination_log(&container.name);
        let mut args = vec!["run".to_owned()];
        args.extend(container.docker_args(self, &term));
        let out = Command::new("docker").args(&args).output().await.expect("docker run");
        let _ = Command::new("docker").args(["rm", "-f", &format!("{}-{}", self.name, container.name)]).output().await;
        let finished =
            Finished { outcome: Outcome::from_output(out), termination_message: std::fs::read_to_string(&term).unwrap_or_default() };
        self.init_failed = (finished.outcome.code != 0).then(|| container.name.clone());
        finished
    }

    /// Starts a native sidecar (an init container with `restartPolicy: Always`) and returns
    /// once its startup probe `probe` (run in the container every second, as an exec probe)
    /// succeeds; panics after `attempts` failures, as the pod would never start.
    pub async fn start_sidecar(&mut self, container: Container, probe: &[String], attempts: u32) -> Running {
        assert!(!self.apps_started, "init containers run before the app containers");
        let running = self.run_detached(container).await;
        for _ in 0..attempts {
            let mut exec = vec!["exec", &running.id];
            exec.extend(probe.iter().map(String::as_str));
            if docker_unchecked(&exec).await.status.success() {
                return running;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        panic!("the startup probe {probe:?} never succeeded:\n{}", running.logs().await)
    }

    /// Starts an app container in the background.
    pub async fn start_app(&mut self, container: Container) -> Running {
        if let Some(failed) = &self.init_failed {
            panic!("app container {} started although init container {failed} failed", container.name);
        }
        self.apps_started = true;
        self.run_detached(container).await
    }

    async fn run_detached(&mut self, container: Container) -> Running {
        let term = self.termination_log(&container.name);
        let mut args = vec!["run".to_owned(), "-d".to_owned()];
        args.extend(container.docker_args(self, &term));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker(&refs).await.stdout.trim().to_owned();
        self.containers.push(id.clone());
        Running { id, termination_log: term }
    }

    /// A pod restart: the app containers are removed and every init container must run again
    /// (the kubelet reruns them all); the emptyDir is kept.
    pub fn restart(&mut self) {
        for id in self.containers.drain(..) {
            let _ = std::process::Command::new("docker").args(["rm", "-f", &id]).output();
        }
        self.init_failed = None;
        self.apps_started = false;
    }

    /// The file the kubelet would mount at `/dev/termination-log` for `container`: empty,
    /// writable by any user.
    fn termination_log(&self, container: &str) -> PathBuf {
        let path = self.files.path().join(format!("{container}.termination-log"));
        std::fs::File::create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        path
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let mut ids = std::mem::take(&mut self.containers);
        ids.push(self.sandbox.clone());
        let _ = std::process::Command::new("docker").args(["rm", "-f"]).args(&ids).output();
    }
}

/// A Docker network standing in for a namespace of a cluster, removed on drop. Services on it
/// are named like Kubernetes Services (`NAME.NAMESPACE.svc.cluster.local`) and pods on it get
/// the kubelet's resolv.conf (search domains, `ndots:5`), so containers reach them by the short
/// name, as apps in a cluster do.
pub struct Network {
    pub name: String,
    namespace: String,
}

impl Network {
    pub async fn create(name: &str) -> Self {
        let name = format!("{name}-{}", std::process::id());
        let _ = docker_unchecked(&["network", "rm", &name]).await;
        docker(&["network", "create", &name]).await;
        Self { namespace: name.clone(), name }
    }

    /// The container name of the service `short` (its cluster DNS name).
    pub fn service(&self, short: &str) -> String {
        format!("{short}.{}.svc.cluster.local", self.namespace)
    }

    /// What the kubelet writes into a pod's resolv.conf, as docker options.
    fn dns_options(&self) -> Vec<String> {
        let ns = &self.namespace;
        let mut options = Vec::new();
        for domain in [format!("{ns}.svc.cluster.local"), "svc.cluster.local".to_owned(), "cluster.local".to_owned()] {
            options.push(format!("--dns-search={domain}"));
        }
        options.push("--dns-option=ndots:5".to_owned());
        options
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["network", "rm", &self.name]).output();
    }
}

async fn docker_unchecked(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().await.expect("running docker")
}

/// Runs a docker command that must succeed.
async fn docker(args: &[&str]) -> Outcome {
    let out = docker_unchecked(args).await;
    assert!(out.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Outcome::from_output(out)
}

/// A manifest under docs/examples/, so a simulation runs what the docs tell users to deploy.
pub struct Manifest {
    file: &'static str,
    docs: Vec<yaml_rust2::Yaml>,
}

impl Manifest {
    pub fn load(file: &'static str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples").join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        Self { file, docs }
    }

    /// `data[key]` of the ConfigMap `name`.
    pub fn config_map(&self, name: &str, key: &str) -> String {
        let map = self.docs.iter().find(|d| d["kind"].as_str() == Some("ConfigMap") && d["metadata"]["name"].as_str() == Some(name));
        let map = map.unwrap_or_else(|| panic!("{}: no ConfigMap {name}", self.file));
        map["data"][key].as_str().unwrap_or_else(|| panic!("{}: ConfigMap {name} has no {key}", self.file)).to_owned()
    }

    /// `command` followed by `args` of the container (init or app) named `name`.
    pub fn command_line(&self, name: &str) -> Vec<String> {
        let container = self.container(name);
        let strings =
            |v: &yaml_rust2::Yaml| v.as_vec().map(|l| l.iter().map(|s| s.as_str().expect("a string").to_owned()).collect::<Vec<_>>());
        let mut line = strings(&container["command"]).unwrap_or_default();
        line.extend(strings(&container["args"]).unwrap_or_default());
        line
    }

    /// The exec command of the container's startup probe.
    pub fn startup_probe(&self, name: &str) -> Vec<String> {
        let command = &self.container(name)["startupProbe"]["exec"]["command"];
        let list = command.as_vec().unwrap_or_else(|| panic!("{}: {name} has no exec startup probe", self.file));
        list.iter().map(|s| s.as_str().expect("a string").to_owned()).collect()
    }

    /// The plain `value` environment variables of the container `name`.
    pub fn env(&self, name: &str) -> Vec<(String, String)> {
        let container = self.container(name);
        let Some(list) = container["env"].as_vec() else { return Vec::new() };
        list.iter().filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].as_str()?.to_owned()))).collect()
    }

    fn container(&self, name: &str) -> &yaml_rust2::Yaml {
        for doc in &self.docs {
            let spec = if doc["kind"].as_str() == Some("Pod") { &doc["spec"] } else { &doc["spec"]["template"]["spec"] };
            for list in ["initContainers", "containers"] {
                if let Some(found) = spec[list].as_vec().and_then(|l| l.iter().find(|c| c["name"].as_str() == Some(name))) {
                    return found;
                }
            }
        }
        panic!("{}: no container {name}", self.file)
    }
}

//! Kubernetes manifests run by an independent pod engine: `podman kube play` (Debian's podman
//! 4.3, runc, netavark), not a simulation of our own.
//!
//! A manifest from docs/examples/ is played with its image references substituted (the
//! podinit image under test, and test apps for the placeholders `my-app:latest` and the like).
//! Two more changes work around what podman 4.3 cannot do, and nothing else is touched:
//! - a Deployment or StatefulSet is played as its pod template, one Pod per replica, started
//!   at once: podman 4.3 has no StatefulSet, and under the template's `restartPolicy: Always`
//!   its init containers deadlock (the exit command of a once-only init container waits for
//!   the lock `kube play` holds; after 20 s the pod fails). The Pods get `OnFailure`;
//! - Secrets are created as podman secrets beforehand (podman 4.3 reads `secretKeyRef` from
//!   them; a `kind: Secret` document is not understood), in the format each use wants (see
//!   `secret` and `secret_volume`), and a `secret` volume gets `optional: false` (podman 4.3
//!   dereferences the unset field and crashes).
//!
//! podman keeps the volumes it makes for ConfigMaps, Secrets and PersistentVolumeClaims, named
//! after them, between plays: a test's are removed before its first play and when it ends, and
//! kept between its plays (a claim outlives its pods).
//!
//! Services a manifest names (`postgres`, `s3`) run as podman containers on the pod's network
//! under those names (netavark's DNS), from the same test images as the Docker-based tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

use super::Outcome;

/// Panics with what to do unless podman answers.
pub fn require_podman() {
    let ok = Command::new("podman").args(["info", "--format", "{{.Host.OCIRuntime.Name}}"]).output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "these tests need podman (kube play): scripts/ensure-tools installs podman, runc and netavark and writes /etc/containers/containers.conf"
    );
}

fn run(cmd: &mut Command) -> Outcome {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    Outcome::from_output(out)
}

pub fn podman(args: &[&str]) -> Outcome {
    run(Command::new("podman").args(args))
}

static LOADED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Makes Docker images (built by the harness) available to podman, under `localhost/NAME`.
pub fn load_into_podman(images: &[&str]) {
    let mut loaded = LOADED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let missing: Vec<&str> = images.iter().copied().filter(|i| !loaded.iter().any(|l| l == i)).collect();
    // Loaded before (by an earlier run) only if podman's image is Docker's, by ID: a rebuilt
    // image under the same tag must replace the old one.
    let current = |image: &str| {
        let docker = run(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image])).stdout;
        let podman = podman(&["image", "inspect", "--format", "{{.Id}}", &format!("localhost/{image}")]).stdout;
        !podman.trim().is_empty() && docker.trim().trim_start_matches("sha256:") == podman.trim()
    };
    let missing: Vec<&str> = missing.into_iter().filter(|i| !current(i)).collect();
    if !missing.is_empty() {
        let mut save = Command::new("docker").arg("save").args(&missing).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let load = Command::new("podman").args(["load", "-q"]).stdin(save.stdout.take().unwrap()).output().unwrap();
        assert!(save.wait().unwrap().success(), "docker save {missing:?}");
        assert!(load.status.success(), "podman load: {}", String::from_utf8_lossy(&load.stderr));
    }
    loaded.extend(images.iter().map(|i| (*i).to_owned()));
}

/// Builds an image with podman from a Containerfile given as text and a context directory.
pub fn podman_build(tag: &str, containerfile: &str, context: &Path) {
    let file = context.join("Containerfile");
    std::fs::write(&file, containerfile).unwrap();
    let out = podman(&["build", "-q", "-t", tag, "-f", file.to_str().unwrap(), context.to_str().unwrap()]);
    assert_eq!(out.code, 0, "podman build {tag}: {}", out.stderr);
}

/// One test's corner of podman: a network, the services on it, the pods played on it. All
/// removed when dropped.
pub struct Cluster {
    pub network: String,
    prefix: String,
    containers: Vec<String>,
    pods: Mutex<Vec<String>>,
    secrets: Vec<String>,
    volumes: Mutex<Vec<String>>,
    dir: tempfile::TempDir,
}

impl Cluster {
    pub fn new(name: &str) -> Self {
        require_podman();
        let prefix = format!("podinit-{name}-{}", std::process::id());
        let out = podman(&["network", "create", &prefix]);
        assert_eq!(out.code, 0, "podman network create: {}", out.stderr);
        Self {
            network: prefix.clone(),
            prefix,
            containers: Vec::new(),
            pods: Mutex::new(Vec::new()),
            secrets: Vec::new(),
            volumes: Mutex::new(Vec::new()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Starts a service container reachable from the pods as `alias`, with `publish` (a
    /// container port) on 127.0.0.1; returns the host port. `ready` is a log line to wait for.
    pub fn service(&mut self, alias: &str, image: &str, entrypoint: &str, env: &[(&str, &str)], publish: u16, ready: &str) -> u16 {
        let name = format!("{}-{alias}", self.prefix);
        let mut cmd = Command::new("podman");
        cmd.args(["run", "-d", "--name", &name, "--network", &self.network, "--network-alias", alias]);
        cmd.args(["-p", &format!("127.0.0.1::{publish}"), "--entrypoint", entrypoint]);
        for (k, v) in env {
            cmd.args(["-e", &format!("{k}={v}")]);
        }
        cmd.arg(format!("localhost/{image}"));
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "starting {alias}: {}", out.stderr);
        self.containers.push(name.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready.is_empty() && !podman(&["logs", &name]).stdout.contains(ready) && !podman(&["logs", &name]).stderr.contains(ready) {
            assert!(Instant::now() < deadline, "{alias} never logged {ready:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
        let port = podman(&["port", &name, &publish.to_string()]).stdout;
        port.trim().rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("the published port of {alias}: {port}"))
    }

    /// A Secret as podman 4.3's kube play reads it for `secretKeyRef`: a JSON object of
    /// base64 values, named as the manifest names it.
    pub fn secret(&mut self, name: &str, data: &[(&str, &str)]) {
        use base64::Engine as _;
        let map: serde_json::Map<String, serde_json::Value> =
            data.iter().map(|(k, v)| ((*k).to_owned(), base64::engine::general_purpose::STANDARD.encode(v).into())).collect();
        let file = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::Value::Object(map).to_string()).unwrap();
        let _ = podman(&["secret", "rm", name]);
        let out = podman(&["secret", "create", name, file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "podman secret create: {}", out.stderr);
        self.secrets.push(name.to_owned());
    }

    /// A Secret as podman 4.3's kube play reads it for a `secret` volume: a Secret object whose
    /// `data` holds the values as they are (podman writes them to the files without decoding).
    pub fn secret_volume(&mut self, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, serde_json::Value> = data.iter().map(|(k, v)| ((*k).to_owned(), (*v).into())).collect();
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data});
        let file = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, secret.to_string()).unwrap();
        let _ = podman(&["secret", "rm", name]);
        let _ = podman(&["volume", "rm", "-f", name]);
        let out = podman(&["secret", "create", name, file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "podman secret create: {}", out.stderr);
        self.secrets.push(name.to_owned());
    }

    /// Plays `manifest` (a file of docs/examples/) with `images` substituted: every replica of
    /// every controller at once, each pod by its own `kube play`. Returns the pod names.
    pub fn play(&self, manifest: &str, images: &BTreeMap<&str, String>) -> Vec<String> {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples").join(manifest)).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap();
        let mut shared = Vec::new();
        let mut pods: Vec<(String, Yaml)> = Vec::new();
        for doc in docs {
            match doc["kind"].as_str() {
                Some("ConfigMap") => shared.push(doc),
                Some("Pod") => {
                    let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
                    pods.push((name, substitute(doc, images)));
                }
                Some("Deployment" | "StatefulSet") => {
                    let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
                    let replicas = doc["spec"]["replicas"].as_i64().unwrap_or(1);
                    for i in 0..replicas {
                        let pod_name = format!("{name}-{i}");
                        let mut spec = doc["spec"]["template"]["spec"].clone();
                        set(&mut spec, "restartPolicy", Yaml::String("OnFailure".into()));
                        let pod = map(&[
                            ("apiVersion", Yaml::String("v1".into())),
                            ("kind", Yaml::String("Pod".into())),
                            (
                                "metadata",
                                map(&[
                                    ("name", Yaml::String(pod_name.clone())),
                                    ("labels", doc["spec"]["template"]["metadata"]["labels"].clone()),
                                ]),
                            ),
                            ("spec", spec),
                        ]);
                        pods.push((pod_name, substitute(pod, images)));
                    }
                }
                // ServiceAccount: there is no API server to hold one.
                _ => {}
            }
        }
        for (_, pod) in &pods {
            for volume in pod["spec"]["volumes"].as_vec().into_iter().flatten() {
                let name = volume["configMap"]["name"]
                    .as_str()
                    .or(volume["secret"]["secretName"].as_str())
                    .or(volume["persistentVolumeClaim"]["claimName"].as_str());
                let mut ours = self.volumes.lock().unwrap();
                if let Some(name) = name
                    && !ours.iter().any(|v| v == name)
                {
                    let _ = podman(&["volume", "rm", "-f", name]);
                    ours.push(name.to_owned());
                }
            }
        }
        let children: Vec<(String, std::process::Child)> = pods
            .into_iter()
            .map(|(name, pod)| {
                let pod_name = format!("{}-{name}", self.prefix);
                let pod = rename(pod, &pod_name);
                let mut out = String::new();
                for doc in shared.iter().chain(std::iter::once(&pod)) {
                    out.push_str("---\n");
                    YamlEmitter::new(&mut out).dump(doc).unwrap();
                    out.push('\n');
                }
                let file: PathBuf = self.dir.path().join(format!("{pod_name}.yaml"));
                std::fs::write(&file, out.replace("---\n---", "---")).unwrap();
                self.pods.lock().unwrap().push(pod_name.clone());
                let child = Command::new("podman")
                    .args(["kube", "play", "--network", &self.network, file.to_str().unwrap()])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                (pod_name, child)
            })
            .collect();
        children
            .into_iter()
            .map(|(name, child)| {
                let out = Outcome::from_output(child.wait_with_output().unwrap());
                assert_eq!(out.code, 0, "podman kube play {name}: {}{}", out.stdout, out.stderr);
                name
            })
            .collect()
    }

    /// Waits for a container of a played pod to exit; its exit status and logs.
    pub fn wait(&self, pod: &str, container: &str) -> Outcome {
        let name = format!("{pod}-{container}");
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let state = podman(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", &name]);
            let status = state.stdout.trim().to_owned();
            if let Some(code) = status.strip_prefix("exited ") {
                let logs = podman(&["logs", &name]);
                return Outcome::new(code.parse::<i64>().unwrap(), logs.stdout.into_bytes(), logs.stderr.into_bytes());
            }
            assert!(Instant::now() < deadline, "{name} did not exit: {status} {}", state.stderr);
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Removes a played pod (its volumes from claims stay, as a claim outlives its pods).
    pub fn remove(&self, pod: &str) {
        let out = podman(&["pod", "rm", "-f", pod]);
        assert_eq!(out.code, 0, "podman pod rm: {}", out.stderr);
    }

    /// Restarts a pod as a node restart would: its containers start again.
    pub fn restart(&self, pod: &str) {
        let out = podman(&["pod", "restart", pod]);
        assert_eq!(out.code, 0, "podman pod restart: {}", out.stderr);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pod in self.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = podman(&["pod", "rm", "-f", pod]);
        }
        for c in &self.containers {
            let _ = podman(&["rm", "-f", c]);
        }
        for s in &self.secrets {
            let _ = podman(&["secret", "rm", s]);
        }
        for v in self.volumes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = podman(&["volume", "rm", "-f", v]);
        }
        let _ = podman(&["network", "rm", "-f", &self.network]);
    }
}

fn map(pairs: &[(&str, Yaml)]) -> Yaml {
    Yaml::Hash(pairs.iter().map(|(k, v)| (Yaml::String((*k).to_owned()), v.clone())).collect())
}

fn set(yaml: &mut Yaml, key: &str, value: Yaml) {
    if let Yaml::Hash(h) = yaml {
        h.insert(Yaml::String(key.to_owned()), value);
    }
}

fn rename(mut pod: Yaml, name: &str) -> Yaml {
    if let Yaml::Hash(h) = &mut pod
        && let Some(meta) = h.get_mut(&Yaml::String("metadata".into()))
    {
        set(meta, "name", Yaml::String(name.to_owned()));
    }
    pod
}

/// Replaces image references in a pod's containers and init containers; gives `secret`
/// volumes the `optional: false` podman 4.3 needs.
fn substitute(mut pod: Yaml, images: &BTreeMap<&str, String>) -> Yaml {
    if let Yaml::Hash(h) = &mut pod
        && let Some(Yaml::Hash(spec)) = h.get_mut(&Yaml::String("spec".into()))
    {
        if let Some(Yaml::Array(volumes)) = spec.get_mut(&Yaml::String("volumes".into())) {
            for volume in volumes {
                if let Yaml::Hash(v) = volume
                    && let Some(secret) = v.get_mut(&Yaml::String("secret".into()))
                {
                    set(secret, "optional", Yaml::Boolean(false));
                }
            }
        }
        for list in ["containers", "initContainers"] {
            if let Some(Yaml::Array(containers)) = spec.get_mut(&Yaml::String(list.into())) {
                for c in containers {
                    let image = c["image"].as_str().unwrap_or_default().to_owned();
                    let new = images.get(image.as_str()).unwrap_or_else(|| panic!("no substitute for the image {image}"));
                    set(c, "image", Yaml::String(new.clone()));
                }
            }
        }
    }
    pod
}

//! Every manifest of docs/examples/ and every YAML snippet of README.md and docs/ is valid
//! Kubernetes (the schemas of `kubernetes-validate`, strict: no unknown field) and passes Pod
//! Security `restricted`, but for the two documented exceptions: the privileged `sysctl` init
//! container (its namespace needs the `privileged` level, which the docs say) and the root
//! volume-permissions one (`chown`/`chmod`/`mkdir` with CHOWN, FOWNER, DAC_OVERRIDE: `baseline`).
//!
//! A snippet that is not a whole object is completed into one, as a user would paste it: a
//! pod spec or `initContainers:`/`containers:` list into a Pod, a Deployment's `spec:` into a
//! Deployment, container fields (`args:`, `securityContext:`) into a container. Snippets whose
//! first line is `# Before:` show the tool podinit replaces and are left out; a `steps:`
//! document is a podinit steps file, not Kubernetes.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// (where, YAML text) of every example file and snippet.
fn sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("docs/examples")).unwrap().map(|e| e.unwrap().path()).collect();
    examples.sort();
    for path in examples {
        out.push((path.strip_prefix(repo()).unwrap().display().to_string(), std::fs::read_to_string(&path).unwrap()));
    }
    let mut pages = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        let mut rest = text.as_str();
        let mut n = 0;
        while let Some(start) = rest.find("```yaml\n") {
            let body = &rest[start + 8..];
            let end = body.find("```").expect("a closed code block");
            n += 1;
            if !body[..end].starts_with("# Before:") {
                out.push((format!("{name} snippet {n}"), body[..end].to_owned()));
            }
            rest = &body[end + 3..];
        }
    }
    out
}

fn s(text: &str) -> Yaml {
    Yaml::String(text.to_owned())
}

fn hash(pairs: Vec<(&str, Yaml)>) -> Yaml {
    Yaml::Hash(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
}

fn get<'a>(y: &'a Yaml, key: &str) -> &'a Yaml {
    &y[key]
}

/// A restricted container of the completion, where a snippet shows none.
fn filler() -> Yaml {
    YamlLoader::load_from_str(
        "name: app\nimage: registry.example.com/app:1.0.0\nsecurityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: [ALL] }, seccompProfile: { type: RuntimeDefault } }",
    )
    .unwrap()
    .remove(0)
}

/// Completes one YAML document of a snippet into Kubernetes objects (none for a steps file).
fn complete(doc: Yaml) -> Vec<Yaml> {
    if !get(&doc, "kind").is_badvalue() {
        return vec![doc];
    }
    if !get(&doc, "steps").is_badvalue() {
        return Vec::new();
    }
    let pod = |mut spec: Yaml| {
        if let Yaml::Hash(h) = &mut spec
            && !h.contains_key(&s("containers"))
        {
            h.insert(s("containers"), Yaml::Array(vec![filler()]));
        }
        hash(vec![("apiVersion", s("v1")), ("kind", s("Pod")), ("metadata", hash(vec![("name", s("snippet"))])), ("spec", spec)])
    };
    if let Yaml::Hash(h) = &doc
        && let Some(spec) = h.get(&s("spec"))
    {
        if !get(spec, "template").is_badvalue() {
            let mut spec = spec.clone();
            let labels = hash(vec![("app", s("snippet"))]);
            if let Yaml::Hash(sh) = &mut spec {
                sh.insert(s("selector"), hash(vec![("matchLabels", labels.clone())]));
                if let Some(Yaml::Hash(t)) = sh.get_mut(&s("template")) {
                    t.insert(s("metadata"), hash(vec![("labels", labels)]));
                }
            }
            return vec![hash(vec![
                ("apiVersion", s("apps/v1")),
                ("kind", s("Deployment")),
                ("metadata", hash(vec![("name", s("snippet"))])),
                ("spec", spec),
            ])];
        }
        return vec![pod(spec.clone())];
    }
    if !get(&doc, "initContainers").is_badvalue() || !get(&doc, "containers").is_badvalue() {
        return vec![pod(doc)];
    }
    // Fields of one container: complete it with a name and an image, restricted unless the
    // snippet says otherwise.
    let mut container = filler();
    if let (Yaml::Hash(c), Yaml::Hash(fields)) = (&mut container, &doc) {
        c.insert(s("name"), s("snippet"));
        for (k, v) in fields {
            c.insert(k.clone(), v.clone());
        }
    }
    vec![pod(hash(vec![("initContainers", Yaml::Array(vec![container]))]))]
}

/// The pod specs of an object.
fn pod_specs(object: &Yaml) -> Vec<&Yaml> {
    match get(object, "kind").as_str() {
        Some("Pod") => vec![get(object, "spec")],
        Some("Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job") => vec![get(get(get(object, "spec"), "template"), "spec")],
        _ => Vec::new(),
    }
}

/// Pod Security `restricted` for one container (with its pod's securityContext); the
/// privileged `sysctl` or `sysfs` init container and a root `chown`/`chmod`/`mkdir`/`rm` one
/// (`baseline`: capabilities CHOWN, FOWNER, DAC_OVERRIDE only) are the documented exceptions.
fn restricted(spec: &Yaml, container: &Yaml) -> Result<(), String> {
    let pod = get(spec, "securityContext");
    let own = get(container, "securityContext");
    let either = |key: &str| if get(own, key).is_badvalue() { get(pod, key).clone() } else { get(own, key).clone() };
    let line: Vec<&str> =
        ["command", "args"].iter().flat_map(|k| get(container, k).as_vec().into_iter().flatten()).filter_map(Yaml::as_str).collect();
    if get(own, "privileged").as_bool() == Some(true) {
        return if matches!(line.first(), Some(&("sysctl" | "sysfs"))) {
            Ok(())
        } else {
            Err(format!("privileged, and not the sysctl or sysfs applet: {line:?}"))
        };
    }
    // The second exception: a root container whose every step is chown, chmod, mkdir or rm, with
    // no capability but those they need (Pod Security `baseline`).
    let volume_steps = !line.is_empty()
        && std::iter::once(line[0])
            .chain(line.windows(2).filter(|w| w[0] == "&&").map(|w| w[1]))
            .all(|applet| matches!(applet, "chown" | "chmod" | "mkdir" | "rm"));
    let root = either("runAsUser").as_i64() == Some(0);
    let mut wrong = Vec::new();
    if root && volume_steps {
        let added = get(get(own, "capabilities"), "add").as_vec().cloned().unwrap_or_default();
        if added.iter().any(|c| !matches!(c.as_str(), Some("CHOWN" | "FOWNER" | "DAC_OVERRIDE"))) {
            wrong.push("no added capability but CHOWN, FOWNER, DAC_OVERRIDE");
        }
    } else {
        if either("runAsNonRoot").as_bool() != Some(true) {
            wrong.push("runAsNonRoot: true");
        }
        if root {
            wrong.push("runAsUser not 0");
        }
        if get(get(own, "capabilities"), "add").as_vec().is_some_and(|a| a.iter().any(|c| c.as_str() != Some("NET_BIND_SERVICE"))) {
            wrong.push("no added capability but NET_BIND_SERVICE");
        }
    }
    if !matches!(get(&either("seccompProfile"), "type").as_str(), Some("RuntimeDefault" | "Localhost")) {
        wrong.push("seccompProfile: RuntimeDefault");
    }
    if get(own, "allowPrivilegeEscalation").as_bool() != Some(false) {
        wrong.push("allowPrivilegeEscalation: false");
    }
    let drops = get(get(own, "capabilities"), "drop").as_vec().is_some_and(|d| d.iter().any(|c| c.as_str() == Some("ALL")));
    if !drops {
        wrong.push("capabilities.drop: [ALL]");
    }
    if wrong.is_empty() { Ok(()) } else { Err(format!("lacks {}", wrong.join(", "))) }
}

pub fn validator() -> PathBuf {
    let path = std::env::var_os("PODINIT_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/podinit/kubernetes-validate/bin/kubernetes-validate"));
    assert!(path.exists(), "{} is missing: scripts/ensure-tools installs kubernetes-validate from PyPI", path.display());
    path
}

#[test]
fn every_manifest_and_snippet_is_valid_and_restricted() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut violations = Vec::new();
    for (n, (place, text)) in sources().into_iter().enumerate() {
        let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{place}: not YAML: {e}"));
        let objects: Vec<Yaml> = docs.into_iter().flat_map(complete).collect();
        for object in &objects {
            for spec in pod_specs(object) {
                for host in ["hostNetwork", "hostPID", "hostIPC"] {
                    if get(spec, host).as_bool() == Some(true) {
                        violations.push(format!("{place}: {host}"));
                    }
                }
                for list in ["initContainers", "containers"] {
                    for container in get(spec, list).as_vec().into_iter().flatten() {
                        if let Err(why) = restricted(spec, container) {
                            violations.push(format!("{place}: container {}: {why}", get(container, "name").as_str().unwrap_or("?")));
                        }
                    }
                }
            }
        }
        let mut out = String::new();
        for object in &objects {
            out.push_str("---\n");
            YamlEmitter::new(&mut out).dump(object).unwrap();
            out.push('\n');
        }
        if !objects.is_empty() {
            let file = dir.path().join(format!("{n:02}.yaml"));
            std::fs::write(&file, out.replace("---\n---", "---")).unwrap();
            files.push((file, place));
        }
    }
    assert!(violations.is_empty(), "Pod Security restricted:\n{}", violations.join("\n"));
    assert!(files.len() >= 20, "only {} manifests and snippets found", files.len());
    let out = std::process::Command::new(validator()).args(["--strict", "--quiet"]).args(files.iter().map(|(f, _)| f)).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let report = files.iter().fold(report, |r, (file, place)| r.replace(&file.display().to_string(), place));
    assert!(out.status.success(), "kubernetes-validate --strict:\n{report}");
}

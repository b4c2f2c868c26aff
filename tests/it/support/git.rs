//! Git repositories and servers for the git-clone tests, made with Debian's git: bare
//! repositories under a root, a work tree to commit and push from, `git daemon` on a free port,
//! and listings of checked-out trees to compare podinit's with git's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Runs git in `dir` with a fixed identity and no user or system configuration; panics with
/// its message on failure; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().expect("git (scripts/ensure-tools installs it)");
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// A git command in `dir` with the tests' environment.
pub fn git_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main"]);
    cmd
}

/// A bare repository `NAME.git` under a root, with a work tree beside it to commit from.
pub struct Repo {
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Repo {
    /// Makes `root/NAME.git` (default branch main) and a clone of it in `root/NAME.work`.
    pub fn new(root: &Path, name: &str) -> Self {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(format!("{name}.work"));
        git(root, &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
        // Fetching a commit by id (submodules) from git daemon and http-backend.
        git(&bare, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        git(root, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Self { bare, work }
    }

    /// Writes `files` (path, content; a content starting with `->` makes a symlink to the
    /// rest), commits everything with `message` and pushes the current branch; returns the
    /// commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let file = self.work.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            let _ = std::fs::remove_file(&file);
            match content.strip_prefix("->") {
                Some(target) => std::os::unix::fs::symlink(target, &file).unwrap(),
                None => std::fs::write(&file, content).unwrap(),
            }
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "HEAD"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// `git daemon` serving the repositories below a root on a free port of 127.0.0.1.
pub struct Daemon {
    child: Child,
    pub port: u16,
}

impl Daemon {
    pub fn start(root: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = git_cmd(root)
            .args(["daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1", &format!("--port={port}")])
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon (Debian's git)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "git daemon never listened on {port}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self { child, port }
    }

    /// `git://127.0.0.1:PORT/NAME.git`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every entry below `dir` except `.git`, sorted: path, kind (file with its executable bit,
/// link with its target, directory) and a file's content, one line each.
pub fn listing(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if rel == ".git" || rel.ends_with("/.git") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.push(format!("{rel} -> {}", std::fs::read_link(&path).unwrap().display()));
            } else if meta.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(path);
            } else {
                let exec = if meta.permissions().mode() & 0o111 != 0 { " (x)" } else { "" };
                out.push(format!("{rel}{exec}: {}", String::from_utf8_lossy(&std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// What `git clone --depth 1 --branch REF` (or the default branch) checks out of `url`.
pub fn git_checkout(url: &str, git_ref: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["clone", "-q", "--depth", "1", "--recurse-submodules", "--shallow-submodules"];
    if let Some(r) = git_ref {
        args.extend(["--branch", r]);
    }
    args.extend([url, "out"]);
    git(dir.path(), &args);
    listing(&dir.path().join("out"))
}

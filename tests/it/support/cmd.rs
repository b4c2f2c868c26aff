//! `Podinit`: runs the binary under test with a cleared environment, like a container would.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The binary cargo built for this test run, or the one `PODINIT_TEST_BIN` names (e.g. the
/// static build, or a copy when two worktrees share one target directory).
pub fn bin() -> PathBuf {
    std::env::var_os("PODINIT_TEST_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_podinit")), PathBuf::from)
}

/// A path as the `&str` a command line takes (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs another program (a peer such as openssl or keytool), with its outcome; a missing
/// program panics with where it comes from.
pub fn tool(program: &str, args: &[&str]) -> Outcome {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} (scripts/ensure-tools installs it): {e}"));
    Outcome::from_output(out)
}

/// Runs `script` with `sh` inside `unshare FLAGS` (fresh namespaces: net, IPC, mount...), `$0`
/// being the podinit binary, with a cleared environment.
pub fn unshared(flags: &[&str], script: &str) -> Outcome {
    let out = Command::new("/usr/bin/unshare")
        .args(flags)
        .args(["--", "/bin/sh", "-c", script])
        .arg(bin())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    Outcome::from_output(out)
}

/// Runs podinit with `args` in a private mount namespace whose /etc/hosts says `hosts`: names
/// with the addresses a test chooses, the machine's own file untouched.
pub fn with_hosts(hosts: &str, args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, hosts).unwrap();
    let out = Command::new("/usr/bin/unshare")
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c", "mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"", "sh"])
        .arg(&file)
        .arg(bin())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    Outcome::from_output(out)
}

/// A command line for podinit, with nothing inherited from the test's environment.
pub struct Podinit {
    program: PathBuf,
    argv0: Option<OsString>,
    wrapper: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
}

impl Podinit {
    /// `podinit` with no arguments yet.
    pub fn new() -> Self {
        Self::program(bin())
    }

    /// Another program path, e.g. a link made by `--install`.
    pub fn program(path: impl Into<PathBuf>) -> Self {
        Self { program: path.into(), argv0: None, wrapper: Vec::new(), args: Vec::new(), env: Vec::new(), stdin: None }
    }

    /// Runs it inside a wrapper such as `unshare --net`.
    pub fn wrapped(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(OsString::from).collect();
        self
    }

    /// Sets argv[0] (busybox-style dispatch).
    pub fn argv0(mut self, name: &str) -> Self {
        self.argv0 = Some(name.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// The prepared std `Command` (for tests that need the child, e.g. to signal it).
    pub fn command(&self) -> Command {
        let mut cmd = if self.wrapper.is_empty() {
            Command::new(&self.program)
        } else {
            let mut c = Command::new(&self.wrapper[0]);
            c.args(&self.wrapper[1..]).arg("--").arg(&self.program);
            c
        };
        if let Some(argv0) = &self.argv0 {
            use std::os::unix::process::CommandExt as _;
            cmd.arg0(argv0);
        }
        cmd.args(&self.args).env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Runs to completion, or until `limit` has passed: then it is killed (SIGKILL) and the
    /// outcome's code is -1, so a regression that hangs fails its test instead of the run.
    pub fn run_within(self, limit: std::time::Duration) -> Outcome {
        let mut child = self.command().spawn().unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        if let Some(data) = &self.stdin {
            child.stdin.take().unwrap().write_all(data).unwrap();
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(limit).is_err() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        });
        let out = child.wait_with_output().unwrap();
        let _ = done.send(());
        watchdog.join().unwrap();
        Outcome::from_output(out)
    }

    /// Runs to completion.
    pub fn run(self) -> Outcome {
        let mut child = self.command().spawn().unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        if let Some(data) = &self.stdin {
            child.stdin.take().unwrap().write_all(data).unwrap();
        }
        Outcome::from_output(child.wait_with_output().unwrap())
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn new(code: impl Into<i64>, stdout: Vec<u8>, stderr: Vec<u8>) -> Self {
        Self {
            code: code.into(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// What a finished `std::process::Command` produced (-1 when killed by a signal).
    pub fn from_output(out: std::process::Output) -> Self {
        Self::new(out.status.code().unwrap_or(-1), out.stdout, out.stderr)
    }

    /// Panics, showing the output, unless the exit status is `code`.
    #[track_caller]
    pub fn code(&self, code: i64) -> &Self {
        assert_eq!(self.code, code, "exit status; stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Panics unless stderr contains `text`.
    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}:\n{}", self.stderr);
        self
    }

    /// Panics unless stdout is exactly `text`.
    #[track_caller]
    pub fn stdout_is(&self, text: &str) -> &Self {
        assert_eq!(self.stdout, text, "stdout; stderr:\n{}", self.stderr);
        self
    }

    /// The JSON log lines on stderr (panics on a line that is not JSON).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
    }
}

/// Reads a sysctl of the test process's own namespaces.
pub fn host_sysctl(rel: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(rel)).unwrap().trim_end().to_owned()
}

/// Sends SIGTERM to a child, as the kubelet does to a container it stops.
pub fn sigterm(child: &std::process::Child) -> bool {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok()
}

//! `-- COMMAND ARGS…`: replace podinit with the app once targets are ready (execve: same PID,
//! the app's signals and exit status). The command is resolved before waiting, so a typo
//! fails at once (127/126) instead of after the wait.
//!
//! The exec goes through std's `CommandExt::exec`, which, before `execve`, empties the signal
//! mask and puts SIGPIPE back to its default: the Rust runtime ignores SIGPIPE, and an
//! ignored signal survives exec, so an app exec'd with `execv` directly would never die of
//! a broken pipe (`yes | head` would spin forever).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::AccessFlags;
use podinit_core::{Error, Kind};

/// A command ready to be executed.
#[derive(Debug)]
pub(crate) struct Command {
    program: PathBuf,
    argv: Vec<OsString>,
}

impl Command {
    /// Resolves `argv[0]` (through PATH when it has no `/`) and checks it can be executed.
    pub(crate) fn resolve(argv: &[OsString]) -> Result<Self, Error> {
        let name = &argv[0];
        let shown = name.to_string_lossy();
        let program = if name.as_bytes().contains(&b'/') {
            PathBuf::from(name)
        } else {
            search_path(Path::new(name)).ok_or_else(|| {
                Error::new(Kind::NotFound, anyhow::anyhow!("command '{shown}' not found in PATH"))
                    .with_hint("give the full path, or check the image has it")
            })?
        };
        match nix::unistd::access(&program, AccessFlags::X_OK) {
            Ok(()) if program.is_dir() => return Err(not_executable(&shown, "is a directory")),
            Ok(()) => {}
            Err(Errno::ENOENT) => return Err(Error::new(Kind::NotFound, anyhow::anyhow!("command '{shown}' not found"))),
            Err(err) => return Err(not_executable(&shown, err.desc())),
        }
        if argv.iter().any(|a| a.as_bytes().contains(&0)) {
            return Err(Error::usage(format!("an argument of '{shown}' contains a NUL byte")));
        }
        Ok(Self { program, argv: argv.to_vec() })
    }

    /// Replaces this process. Returns only on failure.
    pub(crate) fn exec(self) -> Error {
        use std::os::unix::process::CommandExt as _;
        let shown = self.program.display().to_string();
        let mut command = std::process::Command::new(&self.program);
        if let Some((first, rest)) = self.argv.split_first() {
            command.arg0(first).args(rest);
        }
        let err = command.exec();
        match err.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENOENT) => Error::new(Kind::NotFound, anyhow::anyhow!("command '{shown}' not found")),
            Some(other) => not_executable(&shown, other.desc()),
            None => not_executable(&shown, &err.to_string()),
        }
    }
}

fn not_executable(shown: &str, why: &str) -> Error {
    Error::new(Kind::CommandNotExecutable, anyhow::anyhow!("command '{shown}' cannot be executed: {why}"))
}

fn search_path(name: &Path) -> Option<PathBuf> {
    #[expect(clippy::disallowed_methods, reason = "PATH is the command search path of exec, not a podinit setting")]
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file() && nix::unistd::access(candidate, AccessFlags::X_OK).is_ok())
}

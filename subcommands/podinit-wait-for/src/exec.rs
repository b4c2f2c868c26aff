//! `-- COMMAND ARGS…`: replace podinit with the app once targets are ready (execve: same PID,
//! the app's signals and exit status). The command is resolved before waiting, so a typo
//! fails at once (127/126) instead of after the wait.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::AccessFlags;
use podinit_core::{Error, Kind};

/// A command ready to be executed.
#[derive(Debug)]
pub(crate) struct Command {
    program: PathBuf,
    argv: Vec<CString>,
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
        let argv = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| Error::usage(format!("an argument of '{shown}' contains a NUL byte"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { program, argv })
    }

    /// Replaces this process. Returns only on failure.
    pub(crate) fn exec(self) -> Error {
        let program = match CString::new(self.program.as_os_str().as_bytes()) {
            Ok(p) => p,
            Err(_) => return Error::usage("the command path contains a NUL byte"),
        };
        let shown = self.program.display().to_string();
        let Err(err) = nix::unistd::execv(&program, &self.argv);
        match err {
            Errno::ENOENT => Error::new(Kind::NotFound, anyhow::anyhow!("command '{shown}' not found")),
            other => not_executable(&shown, other.desc()),
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

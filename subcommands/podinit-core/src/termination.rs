//! The termination message: why the container failed, in `kubectl describe pod`.
//!
//! The kubelet reads `terminationMessagePath` (default `/dev/termination-log`) after the
//! container exits and shows at most 4 KiB of it. podinit writes a summary of at most
//! [`MAX_LEN`] bytes there on failure, best effort: a missing or read-only file is not a
//! second failure. The default path is used only when it already exists (the kubelet
//! creates it); an explicit `--termination-log` path is created.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Longest summary written, in bytes.
pub const MAX_LEN: usize = 1024;

/// The kubelet's default `terminationMessagePath`.
pub const DEFAULT_PATH: &str = "/dev/termination-log";

/// Where the summary goes: `--termination-log`, else the default path if present.
pub fn target(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p.to_owned()),
        None => Path::new(DEFAULT_PATH).exists().then(|| PathBuf::from(DEFAULT_PATH)),
    }
}

/// `podinit <applet>: <error> (exit N)` plus hints, cut to [`MAX_LEN`] bytes.
pub fn summary(applet: &str, err: &Error) -> String {
    let printable = crate::logging::printable;
    let mut text = format!("podinit {applet}: {} (exit {})", printable(&err.message()), err.kind().exit_code());
    for hint in err.hints() {
        text.push_str("\nhint: ");
        text.push_str(&printable(hint));
    }
    truncate(text, MAX_LEN)
}

/// Writes the summary for `err`; failures to write are logged, never raised.
pub fn write(configured: Option<&Path>, applet: &str, err: &Error) {
    let Some(path) = target(configured) else { return };
    let text = summary(applet, err);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(configured.is_some())
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(io) = result {
        tracing::debug!(path = %path.display(), error = %io, "cannot write the termination message");
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max - "…".len();
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use super::*;
    use crate::Kind;

    #[test]
    fn summary_is_bounded_and_names_the_exit_code() {
        let err = Error::new(Kind::NotPermitted, anyhow::anyhow!("ä".repeat(2000))).with_hint("run privileged");
        let s = summary("sysctl", &err);
        assert!(s.len() <= MAX_LEN);
        assert!(s.starts_with("podinit sysctl: ää"));
        assert!(s.ends_with('…'));
        let short = summary("sysctl", &Error::usage("unknown key 'x'").with_hint("check the name"));
        assert_eq!(short, "podinit sysctl: unknown key 'x' (exit 2)\nhint: check the name");
    }

    #[test]
    fn explicit_path_is_created_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("term");
        std::fs::write(&path, "an older and much longer message").unwrap();
        write(Some(&path), "sysctl", &Error::usage("bad"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "podinit sysctl: bad (exit 2)");
        assert_eq!(target(Some(Path::new("none"))), None);
    }
}

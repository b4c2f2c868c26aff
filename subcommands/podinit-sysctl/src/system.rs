//! `--system`: which sysctl.d files procps reads, and in which order.
//!
//! The `*.conf` files of [`DIRS`]; a file name found in an earlier directory hides the same
//! name in later ones (an admin's `/etc/sysctl.d/10-x.conf` overrides the package's
//! `/usr/lib/sysctl.d/10-x.conf`); all of them sorted by file name; then `/etc/sysctl.conf`
//! when it is a file. procps 4.0.2, `PreloadSystem`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directories, in precedence order.
pub(crate) const DIRS: &[&str] = &["etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d"];

/// The files to load below `root` (`/`; another root in tests), in the order to apply them.
pub(crate) fn files(root: &Path) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") && !by_name.contains_key(&name) {
                by_name.insert(name, entry.path());
            }
        }
    }
    let mut files: Vec<PathBuf> = by_name.into_values().collect();
    let conf = root.join("etc/sysctl.conf");
    if conf.is_file() {
        files.push(conf);
    }
    files
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use super::*;

    #[test]
    fn earlier_directories_hide_later_names_and_names_sort_across_directories() {
        let root = tempfile::tempdir().unwrap();
        let put = |rel: &str| {
            let path = root.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        };
        put("usr/lib/sysctl.d/10-a.conf");
        put("etc/sysctl.d/10-a.conf");
        put("usr/lib/sysctl.d/05-b.conf");
        put("run/sysctl.d/20-c.conf");
        put("lib/sysctl.d/README");
        put("etc/sysctl.conf");
        let got: Vec<String> = files(root.path()).iter().map(|p| p.strip_prefix(root.path()).unwrap().display().to_string()).collect();
        assert_eq!(got, ["usr/lib/sysctl.d/05-b.conf", "etc/sysctl.d/10-a.conf", "run/sysctl.d/20-c.conf", "etc/sysctl.conf"]);
    }
}

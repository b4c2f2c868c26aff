//! What sysctl prints on stdout, byte for byte as procps does: reads (`key = value`, one
//! line per line of a multi-line value; `-n` the value, `-b` without newlines, `-N` the
//! name), the echo of writes (`key = value`, nothing with `-q`), `--system`'s `* Applying`
//! lines, and `-a`. podinit's own log stays on stderr.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use podinit_core::Error;

use crate::kernel::{Fault, Tree};
use crate::spec::Key;

/// How to print, from the flags.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Print {
    names_only: bool,
    values_only: bool,
    binary: bool,
    /// `-q`: no echo of writes (reads still print).
    quiet: bool,
}

impl Print {
    pub(crate) fn new(args: &crate::Args, quiet: bool) -> Self {
        Self { names_only: args.names_only, values_only: args.values_only, binary: args.binary, quiet }
    }

    /// A key read: `raw` is the file's content as the kernel gives it.
    pub(crate) fn read(&self, key: &Key, raw: &str) -> Result<(), Error> {
        let mut out = String::new();
        if self.names_only {
            out = format!("{key}\n");
        } else if self.binary {
            out = raw.replace('\n', "");
        } else if self.values_only {
            out.push_str(raw);
        } else {
            for line in raw.split_inclusive('\n') {
                out.push_str(&format!("{key} = {line}"));
            }
            if !raw.is_empty() && !raw.ends_with('\n') {
                out.push('\n');
            }
        }
        emit(&out)
    }

    /// Whether writes print nothing (`-q`).
    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }

    /// A key written (or kept, or found as asked): `value` is what it holds now.
    pub(crate) fn wrote(&self, key: &Key, value: &str) -> Result<(), Error> {
        if self.quiet {
            return Ok(());
        }
        let value = value.trim_end_matches('\n');
        let out = if self.names_only {
            format!("{key}\n")
        } else if self.binary {
            value.to_owned()
        } else if self.values_only {
            format!("{value}\n")
        } else {
            format!("{key} = {value}\n")
        };
        emit(&out)
    }

    /// `--system`: the file about to be applied.
    pub(crate) fn applying(&self, file: &str) -> Result<(), Error> {
        if self.quiet || file == "stdin" {
            return Ok(());
        }
        emit(&format!("* Applying {file} ...\n"))
    }
}

fn emit(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing to stdout")?;
    Ok(())
}

/// Entries `-a` leaves out, as procps does (deprecated ARP timers; `--deprecated` in procps).
const DEPRECATED: &[&str] = &["base_reachable_time", "retrans_time"];

/// `-a`: every key below the root, in name order (the kernel's, as procps reads it), as a
/// read prints it. Write-only keys and unreadable ones (`stable_secret`) are left out.
pub(crate) fn print_all(tree: &Tree, print: &Print) -> Result<(), Error> {
    walk(tree, tree.root(), &mut Vec::new(), print)
}

fn walk(tree: &Tree, dir: &Path, parts: &mut Vec<String>, print: &Print) -> Result<(), Error> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    for name in names {
        if DEPRECATED.contains(&name.as_str()) {
            continue;
        }
        let path = dir.join(&name);
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        parts.push(name);
        if meta.is_dir() {
            walk(tree, &path, parts, print)?;
        } else if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o400 != 0 {
            let key = Key::from_components(parts.clone());
            if print.names_only {
                print.read(&key, "")?;
            } else {
                match tree.read_path(&path) {
                    Ok(raw) => print.read(&key, &raw)?,
                    Err(Fault::NotPermitted(_)) => tracing::warn!("permission denied on key '{key}'"),
                    Err(_) => {}
                }
            }
        }
        parts.pop();
    }
    Ok(())
}

//! `podinit --install [-s] DIR`: one link per applet, pointing at the running binary.
//!
//! DIR is created if missing. Idempotent: a link that already points at this binary is left
//! alone; a link to another podinit (an older one) is replaced atomically (a new link under a
//! temp name, renamed over it); anything else of that name — an app image's own `cp` or
//! `chown` — is kept and reported, unless `--force`.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::Context as _;
use podinit_core::{Error, Kind};

pub(crate) fn install(dir: &Path, symlink: bool, force: bool, names: &[&str]) -> Result<(), Error> {
    let exe = std::env::current_exe().context("finding this binary (/proc/self/exe)")?;
    let exe_meta = std::fs::metadata(&exe).with_context(|| format!("reading {}", exe.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating --install {}", dir.display()))?;
    for name in names {
        let link = dir.join(name);
        let current = std::fs::symlink_metadata(&link).ok();
        let up_to_date = match &current {
            Some(m) if symlink && m.file_type().is_symlink() => std::fs::read_link(&link).is_ok_and(|t| t == exe),
            Some(m) if !symlink && m.is_file() => m.dev() == exe_meta.dev() && m.ino() == exe_meta.ino(),
            _ => false,
        };
        if up_to_date {
            tracing::info!(link = %link.display(), "{}: already linked", link.display());
            continue;
        }
        if current.is_some() && !force && !is_podinit(&link) {
            tracing::warn!(link = %link.display(), "{}: kept (not podinit); --force replaces it", link.display());
            continue;
        }
        let temp = dir.join(format!(".{name}.podinit-{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let made = if symlink { std::os::unix::fs::symlink(&exe, &temp) } else { std::fs::hard_link(&exe, &temp) };
        if let Err(err) = made {
            let kind = if err.kind() == io::ErrorKind::PermissionDenied { Kind::NotPermitted } else { Kind::Failed };
            let mut e = Error::new(kind, anyhow::Error::new(err).context(format!("linking {} to {}", link.display(), exe.display())));
            if !symlink {
                e = e.with_hint("hard links cannot cross filesystems: use -s for symbolic links");
            }
            return Err(e);
        }
        std::fs::rename(&temp, &link).with_context(|| format!("renaming into place {}", link.display()))?;
        let how = if symlink { "symlink" } else { "hard link" };
        let _ = podinit_core::fs::sync_dir(dir);
        tracing::info!(link = %link.display(), target = %exe.display(), "{} → {} ({how})", link.display(), exe.display());
    }
    Ok(())
}

/// Whether `path` is a podinit (a link to one, or its binary): it may be replaced by this one.
fn is_podinit(path: &Path) -> bool {
    if std::fs::read_link(path).is_ok_and(|t| t.file_name().is_some_and(|n| n.to_string_lossy().starts_with("podinit"))) {
        return true;
    }
    // A hard link or a copy: the binary carries SIGNATURE. Read as podinit reads any file it
    // finds in a volume: no FIFO to hang on, no link to /dev/zero to fill memory with.
    podinit_core::fs::read_capped(path, MAX_BINARY).is_ok_and(|bytes| bytes.windows(SIGNATURE.len()).any(|w| w == SIGNATURE))
}

/// The largest file `--install` reads to tell a podinit: far above podinit's own size.
const MAX_BINARY: u64 = 256 << 20;

/// Bytes every podinit binary carries, so `--install` can tell an older podinit (replaced)
/// from an app's own tool of the same name (kept).
#[used]
static SIGNATURE: [u8; 27] = *b"\0podinit multi-call binary\0";

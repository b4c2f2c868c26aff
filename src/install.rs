//! `podinit --install [-s] DIR`: one link per applet, pointing at the running binary.
//!
//! DIR is created if missing. Idempotent: a link that already points at this binary is left alone; anything else at
//! that name is replaced atomically (a new link under a temp name, renamed over it).

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::Context as _;
use podinit_core::{Error, Kind};

pub(crate) fn install(dir: &Path, symlink: bool, names: &[&str]) -> Result<(), Error> {
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
        tracing::info!(link = %link.display(), target = %exe.display(), "{} → {} ({how})", link.display(), exe.display());
    }
    Ok(())
}

//! The migration directory, read exactly as sqlx reads it, plus what podinit adds: file names
//! for messages, duplicate detection, and line-ending/BOM diagnosis for changed files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use podinit_core::Error;
use sqlx::migrate::{MigrationType, Migrator};

/// One migration to apply (never a `.down.sql`).
#[derive(Clone, Debug)]
pub(crate) struct Local {
    pub(crate) version: i64,
    pub(crate) description: String,
    pub(crate) file: String,
    pub(crate) sql: String,
    pub(crate) checksum: Vec<u8>,
    pub(crate) no_tx: bool,
}

/// Reads `dir` with sqlx's own resolver, so versions, descriptions, checksums and the
/// `-- no-transaction` marker agree with an app that runs `sqlx::migrate!()`. Symlinks are
/// followed (ConfigMap volumes link every file through `..data/`).
pub(crate) async fn load(dir: &Path) -> Result<Vec<Local>, Error> {
    let shown = dir.display();
    if !dir.is_dir() {
        return Err(
            Error::usage(format!("--source {shown}: not a directory")).with_hint("mount the migrations (e.g. a ConfigMap) at that path")
        );
    }
    let names = file_names(dir).map_err(|e| Error::usage(format!("--source {shown}: {e}")))?;
    let migrator = Migrator::new(dir.to_path_buf()).await.map_err(|e| Error::usage(format!("--source {shown}: {e}")))?;
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for m in migrator.iter().filter(|m| m.migration_type != MigrationType::ReversibleDown) {
        let file = names.get(&m.version).cloned().unwrap_or_else(|| format!("{}_{}.sql", m.version, m.description.replace(' ', "_")));
        if let Some(other) = seen.insert(m.version, file.clone()) {
            return Err(Error::usage(format!("--source {shown}: version {} is used by both {other} and {file}", m.version))
                .with_hint("give every migration its own version number"));
        }
        out.push(Local {
            version: m.version,
            description: m.description.to_string(),
            file,
            sql: m.sql.as_str().to_owned(),
            checksum: m.checksum.to_vec(),
            no_tx: m.no_tx,
        });
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
}

/// version → file name (the up or simple file), for messages.
fn file_names(dir: &Path) -> std::io::Result<BTreeMap<i64, String>> {
    let mut names = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".down.sql") || !name.ends_with(".sql") {
            continue;
        }
        if let Some(version) = name.split_once('_').and_then(|(v, _)| v.parse::<i64>().ok()) {
            names.insert(version, name);
        }
    }
    Ok(names)
}

/// Why a local file's checksum differs from the applied one, when the cause is invisible:
/// CRLF line endings or a byte-order mark (sqlx hashes the exact bytes).
pub(crate) fn explain_mismatch(dir: &Path, local: &Local, applied: &[u8]) -> String {
    let path: PathBuf = dir.join(&local.file);
    let Ok(raw) = std::fs::read(&path) else { return String::new() };
    let text = String::from_utf8_lossy(&raw);
    let variants: [(&str, String); 3] = [
        ("its line endings (CRLF here, LF when applied)", text.replace("\r\n", "\n")),
        ("its line endings (LF here, CRLF when applied)", text.replace('\n', "\r\n")),
        ("a byte-order mark at its start", text.trim_start_matches('\u{feff}').to_owned()),
    ];
    for (what, variant) in variants {
        if variant != text && sha384(variant.as_bytes()) == applied {
            return format!(
                " — it differs only in {what}; restore the bytes that were applied (check git's core.autocrlf and the editor's encoding)"
            );
        }
    }
    String::new()
}

fn sha384(data: &[u8]) -> Vec<u8> {
    use sqlx::SqlSafeStr as _;
    use sqlx::migrate::Migration;
    Migration::new(
        0,
        "".into(),
        MigrationType::Simple,
        sqlx::AssertSqlSafe(String::from_utf8_lossy(data).into_owned()).into_sql_str(),
        false,
    )
    .checksum
    .to_vec()
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use super::*;

    #[tokio::test]
    async fn reads_like_sqlx_and_names_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1_create_users.sql"), "CREATE TABLE users (id INT);").unwrap();
        std::fs::write(dir.path().join("2_add_index.up.sql"), "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON users (id);").unwrap();
        std::fs::write(dir.path().join("2_add_index.down.sql"), "DROP INDEX i;").unwrap();
        std::fs::write(dir.path().join("README.md"), "not a migration").unwrap();
        let got = load(dir.path()).await.unwrap();
        assert_eq!(
            got.iter().map(|m| (m.version, m.file.as_str(), m.no_tx)).collect::<Vec<_>>(),
            [(1, "1_create_users.sql", false), (2, "2_add_index.up.sql", true)]
        );
        assert_eq!(got[0].description, "create users");
        assert_eq!(got[0].checksum.len(), 48, "SHA-384 as sqlx");
    }

    #[tokio::test]
    async fn explains_line_ending_and_bom_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1_a.sql"), "CREATE TABLE a (id INT);\nSELECT 1;\n").unwrap();
        let applied = load(dir.path()).await.unwrap()[0].checksum.clone();
        std::fs::write(dir.path().join("1_a.sql"), "CREATE TABLE a (id INT);\r\nSELECT 1;\r\n").unwrap();
        let local = load(dir.path()).await.unwrap().remove(0);
        assert_ne!(local.checksum, applied);
        assert!(explain_mismatch(dir.path(), &local, &applied).contains("line endings (CRLF here"));
        std::fs::write(dir.path().join("1_a.sql"), "\u{feff}CREATE TABLE a (id INT);\nSELECT 1;\n").unwrap();
        let local = load(dir.path()).await.unwrap().remove(0);
        assert!(explain_mismatch(dir.path(), &local, &applied).contains("byte-order mark"));
        std::fs::write(dir.path().join("1_a.sql"), "CREATE TABLE a (id BIGINT);\nSELECT 1;\n").unwrap();
        let local = load(dir.path()).await.unwrap().remove(0);
        assert_eq!(explain_mismatch(dir.path(), &local, &applied), "");
    }

    #[tokio::test]
    async fn bad_directories_are_usage_errors() {
        assert_eq!(load(Path::new("/nonexistent")).await.unwrap_err().kind(), podinit_core::Kind::Usage);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("abc_x.sql"), "SELECT 1;").unwrap();
        assert_eq!(load(dir.path()).await.unwrap_err().kind(), podinit_core::Kind::Usage);
    }
}

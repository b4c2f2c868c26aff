//! The migration directory: sqlx's format read exactly as sqlx reads it, other tools' formats
//! through `formats`; plus what podinit adds: file names for messages, duplicate detection,
//! refusing a sqlx file that carries another tool's down section, and line-ending/BOM
//! diagnosis for changed files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use podinit_core::Error;
use sqlx::migrate::{MigrationType, Migrator};

use crate::formats::{self, File, Format};

/// One migration to apply (never a `.down.sql`).
#[derive(Clone, Debug)]
pub(crate) struct Local {
    pub(crate) version: i64,
    pub(crate) description: String,
    pub(crate) file: String,
    pub(crate) sql: String,
    pub(crate) checksum: Vec<u8>,
    pub(crate) no_tx: bool,
    /// Run one by one (a goose `NO TRANSACTION` file), else the file is one batch.
    pub(crate) statements: Option<Vec<String>>,
}

/// Reads `dir` in `format`. Symlinks are followed (ConfigMap volumes link every file through
/// `..data/`).
pub(crate) async fn load(dir: &Path, format: Format) -> Result<Vec<Local>, Error> {
    let shown = dir.display();
    if !dir.is_dir() {
        return Err(
            Error::usage(format!("--source {shown}: not a directory")).with_hint("mount the migrations (e.g. a ConfigMap) at that path")
        );
    }
    let out = if format == Format::Sqlx { load_sqlx(dir).await? } else { load_foreign(dir, format)? };
    Ok(out)
}

/// Reads `dir` with sqlx's own resolver, so versions, descriptions, checksums and the
/// `-- no-transaction` marker agree with an app that runs `sqlx::migrate!()`. A file with
/// dbmate's or goose's section markers is refused: run as plain SQL, its down section would
/// run right after its up section.
async fn load_sqlx(dir: &Path) -> Result<Vec<Local>, Error> {
    let shown = dir.display();
    let names = file_names(dir).map_err(|e| Error::usage(format!("--source {shown}: {e}")))?;
    let migrator = Migrator::new(dir.to_path_buf()).await.map_err(|e| Error::usage(format!("--source {shown}: {e}")))?;
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for m in migrator.iter().filter(|m| m.migration_type != MigrationType::ReversibleDown) {
        let file = names.get(&m.version).cloned().unwrap_or_else(|| format!("{}_{}.sql", m.version, m.description.replace(' ', "_")));
        if let Some(other) = seen.insert(m.version, file.clone()) {
            return Err(duplicate(dir, m.version, &other, &file));
        }
        if let Some(tool) = formats::foreign_markers(m.sql.as_str()) {
            return Err(Error::usage(format!(
                "--source {shown}: {file} has {tool}'s up/down section markers; run as plain SQL, its down section would run too"
            ))
            .with_hint(format!("read the directory as {tool} reads it: add --format {tool} (or --adopt {tool})")));
        }
        out.push(Local {
            version: m.version,
            description: m.description.to_string(),
            file,
            sql: m.sql.as_str().to_owned(),
            checksum: m.checksum.to_vec(),
            no_tx: m.no_tx,
            statements: None,
        });
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
}

fn duplicate(dir: &Path, version: i64, one: &str, other: &str) -> Error {
    Error::usage(format!("--source {}: version {version} is used by both {one} and {other}", dir.display()))
        .with_hint("give every migration its own version number")
}

/// Reads `dir` as `format`'s tool does (`formats::parse`); the checksum is SHA-384 of the
/// whole file, as sqlx computes it, so editing any part of an applied file is noticed.
fn load_foreign(dir: &Path, format: Format) -> Result<Vec<Local>, Error> {
    let shown = dir.display();
    let tool = format.name();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::usage(format!("--source {shown}: {}", podinit_core::redact::io_reason(&e))))? {
        let entry = entry.map_err(|e| Error::usage(format!("--source {shown}: {}", podinit_core::redact::io_reason(&e))))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // ConfigMap volumes: `..data` and the timestamped directory; metadata follows links.
        if name.starts_with('.') || !std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            continue;
        }
        names.push(name);
    }
    names.sort();
    let mut seen: BTreeMap<i64, String> = BTreeMap::new();
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::usage(format!("--source {shown}: reading {name}: {}", podinit_core::redact::io_reason(&e))))?;
        let refuse = |why: String| {
            Error::usage(format!("--source {shown}: {name} cannot be read as a {tool} migration: {why}"))
                .with_hint(format!("fix or remove {name}; podinit never runs a file it cannot read as {tool} means it"))
        };
        let text = String::from_utf8(bytes).map_err(|_| refuse("it is not UTF-8".into()))?;
        let parsed = match formats::parse(format, &name, &text).map_err(refuse)? {
            File::Ignored => continue,
            File::Down => continue,
            File::Up(parsed) => parsed,
        };
        let mut no_tx = parsed.no_tx;
        if format == Format::Flyway {
            let conf = dir.join(format!("{name}.conf"));
            if conf.exists() {
                let conf_text = std::fs::read_to_string(&conf)
                    .map_err(|e| refuse(format!("reading {name}.conf: {}", podinit_core::redact::io_reason(&e))))?;
                no_tx = formats::flyway_conf(&conf_text).map_err(|why| refuse(format!("{name}.conf: {why}")))?;
            }
        }
        if let Some(other) = seen.insert(parsed.version, name.clone()) {
            return Err(duplicate(dir, parsed.version, &other, &name));
        }
        out.push(Local {
            version: parsed.version,
            description: parsed.description,
            checksum: sha384(text.as_bytes()),
            file: name,
            sql: parsed.sql,
            no_tx,
            statements: parsed.statements,
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
        let got = load(dir.path(), Format::Sqlx).await.unwrap();
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
        let applied = load(dir.path(), Format::Sqlx).await.unwrap()[0].checksum.clone();
        std::fs::write(dir.path().join("1_a.sql"), "CREATE TABLE a (id INT);\r\nSELECT 1;\r\n").unwrap();
        let local = load(dir.path(), Format::Sqlx).await.unwrap().remove(0);
        assert_ne!(local.checksum, applied);
        assert!(explain_mismatch(dir.path(), &local, &applied).contains("line endings (CRLF here"));
        std::fs::write(dir.path().join("1_a.sql"), "\u{feff}CREATE TABLE a (id INT);\nSELECT 1;\n").unwrap();
        let local = load(dir.path(), Format::Sqlx).await.unwrap().remove(0);
        assert!(explain_mismatch(dir.path(), &local, &applied).contains("byte-order mark"));
        std::fs::write(dir.path().join("1_a.sql"), "CREATE TABLE a (id BIGINT);\nSELECT 1;\n").unwrap();
        let local = load(dir.path(), Format::Sqlx).await.unwrap().remove(0);
        assert_eq!(explain_mismatch(dir.path(), &local, &applied), "");
    }

    #[tokio::test]
    async fn other_formats_and_down_sections() {
        let dir = tempfile::tempdir().unwrap();
        let dbmate = "-- migrate:up\nCREATE TABLE t (id INT);\n-- migrate:down\nDROP TABLE t;\n";
        std::fs::write(dir.path().join("20240101000000_t.sql"), dbmate).unwrap();
        // As sqlx, the down section would run: refused, naming the file and the fix.
        let err = load(dir.path(), Format::Sqlx).await.unwrap_err();
        assert_eq!(err.kind(), podinit_core::Kind::Usage);
        let text = format!("{err:#}");
        assert!(text.contains("20240101000000_t.sql has dbmate's up/down section markers"), "{text}");
        let got = load(dir.path(), Format::Dbmate).await.unwrap();
        assert_eq!(got[0].sql, "-- migrate:up\nCREATE TABLE t (id INT);\n");
        assert_eq!(got[0].checksum, sha384(dbmate.as_bytes()), "the whole file is checksummed");
        // Flyway: undo files never run, a script configuration is honoured.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("V1__a.sql"), "CREATE TABLE a (id INT);").unwrap();
        std::fs::write(dir.path().join("U1__a.sql"), "DROP TABLE a;").unwrap();
        std::fs::write(dir.path().join("V2__i.sql"), "CREATE INDEX CONCURRENTLY i ON a (id);").unwrap();
        std::fs::write(dir.path().join("V2__i.sql.conf"), "executeInTransaction=false\n").unwrap();
        let got = load(dir.path(), Format::Flyway).await.unwrap();
        assert_eq!(
            got.iter().map(|m| (m.version, m.file.as_str(), m.no_tx)).collect::<Vec<_>>(),
            [(1, "V1__a.sql", false), (2, "V2__i.sql", true)]
        );
        std::fs::write(dir.path().join("R__views.sql"), "CREATE VIEW v AS SELECT 1;").unwrap();
        let err = format!("{:#}", load(dir.path(), Format::Flyway).await.unwrap_err());
        assert!(err.contains("R__views.sql cannot be read as a flyway migration: a repeatable migration"), "{err}");
        // golang-migrate: a duplicate version is named.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1_a.up.sql"), "SELECT 1;").unwrap();
        std::fs::write(dir.path().join("01_b.up.sql"), "SELECT 1;").unwrap();
        assert!(format!("{:#}", load(dir.path(), Format::GolangMigrate).await.unwrap_err()).contains("version 1 is used by both"));
    }

    #[tokio::test]
    async fn bad_directories_are_usage_errors() {
        assert_eq!(load(Path::new("/nonexistent"), Format::Sqlx).await.unwrap_err().kind(), podinit_core::Kind::Usage);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("abc_x.sql"), "SELECT 1;").unwrap();
        assert_eq!(load(dir.path(), Format::Sqlx).await.unwrap_err().kind(), podinit_core::Kind::Usage);
    }
}

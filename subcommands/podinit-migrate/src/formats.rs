//! Pure: other tools' migration files, read as those tools read them. Each parser turns one
//! file name and its text into the SQL that runs (only the "up" part, never a down section),
//! or says the file is not a migration (ignored, as the tool ignores it), or refuses it with
//! the reason: a file podinit cannot read as its tool means it is never run.
//!
//! Sources (read for these rules): golang-migrate v4.19 `source/parse.go`; goose v3.27
//! `internal/sqlparser/parser.go`; dbmate v2.35 `pkg/dbmate/migration.go`
//! (`-- migrate:up`/`-- migrate:down`, `transaction:false`, nothing but comments before the
//! up block); Flyway 10 naming (`V<version>__<description>.sql`, `U…` undo, `R__…` repeatable).

/// The file format of a migration directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// sqlx: `<VERSION>_<NAME>.sql` or `.up.sql`/`.down.sql`, `-- no-transaction` first line.
    Sqlx,
    /// golang-migrate: `<VERSION>_<NAME>.up.sql` (and `.down.sql`, never run).
    #[value(name = "golang-migrate")]
    GolangMigrate,
    /// goose: `<VERSION>_<NAME>.sql` with `-- +goose Up` / `-- +goose Down`.
    Goose,
    /// dbmate: `<VERSION>_<NAME>.sql` with `-- migrate:up` / `-- migrate:down`.
    Dbmate,
    /// Flyway: `V<VERSION>__<NAME>.sql` (undo `U…` files are never run; `R__` repeatable refused).
    Flyway,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sqlx => "sqlx",
            Self::GolangMigrate => "golang-migrate",
            Self::Goose => "goose",
            Self::Dbmate => "dbmate",
            Self::Flyway => "flyway",
        }
    }
}

/// One file's migration, as its tool means it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) version: i64,
    pub(crate) description: String,
    /// What runs: the up section only.
    pub(crate) sql: String,
    pub(crate) no_tx: bool,
    /// The statements to run one by one, when the tool ran them so: a goose file with
    /// `NO TRANSACTION` (PostgreSQL runs a multi-statement batch as one implicit transaction,
    /// where `CREATE INDEX CONCURRENTLY` fails).
    pub(crate) statements: Option<Vec<String>>,
}

/// What a file in the directory is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum File {
    /// A migration to apply.
    Up(Parsed),
    /// A down or undo file: podinit never runs it (but its version is taken).
    Down,
    /// Not a migration file of this tool (its tool ignores it too).
    Ignored,
}

/// Reads one file of a `format` directory (not `Format::Sqlx`, which sqlx's resolver reads).
/// The error is the reason, without the file name.
pub(crate) fn parse(format: Format, name: &str, text: &str) -> Result<File, String> {
    match format {
        Format::Sqlx => Err("sqlx files are read by sqlx's resolver".into()),
        Format::GolangMigrate => golang_migrate(name, text),
        Format::Goose => goose(name, text),
        Format::Dbmate => dbmate(name, text),
        Format::Flyway => flyway(name, text),
    }
}

/// In a sqlx directory, a file that another tool would read with a down section: run as plain
/// SQL, the down section would run too (drop what the up section made).
pub(crate) fn foreign_markers(text: &str) -> Option<&'static str> {
    text.lines().find_map(|line| {
        let line = line.trim_start();
        if dbmate_marker(line, "migrate:down").is_some() || dbmate_marker(line, "migrate:up").is_some() {
            Some("dbmate")
        } else if goose_annotation(line).is_some() {
            Some("goose")
        } else {
            None
        }
    })
}

fn version_of(digits: &str) -> Result<i64, String> {
    digits.parse::<i64>().map_err(|_| format!("version {digits} does not fit a 64-bit integer"))
}

fn leading_digits(name: &str) -> &str {
    let end = name.find(|c: char| !c.is_ascii_digit()).unwrap_or(name.len());
    &name[..end]
}

/// golang-migrate: `^([0-9]+)_(.*)\.(down|up)\.(.*)$`; files that do not match are ignored by
/// golang-migrate, but a `.sql` file that does not is refused here (it would never run).
/// The file runs as golang-migrate runs it: one batch, no transaction added.
fn golang_migrate(name: &str, text: &str) -> Result<File, String> {
    let Some(stem) = name.strip_suffix(".sql") else { return Ok(File::Ignored) };
    let digits = leading_digits(stem);
    let rest = &stem[digits.len()..];
    let (Some(rest), false) = (rest.strip_prefix('_'), digits.is_empty()) else {
        return Err("not a golang-migrate file name: expected <VERSION>_<NAME>.up.sql or .down.sql".into());
    };
    let version = version_of(digits)?;
    if rest.ends_with(".down") {
        return Ok(File::Down);
    }
    let Some(description) = rest.strip_suffix(".up") else {
        return Err("not a golang-migrate file name: expected <VERSION>_<NAME>.up.sql or .down.sql".into());
    };
    Ok(File::Up(Parsed { version, description: description.replace('_', " "), sql: text.to_owned(), no_tx: true, statements: None }))
}

/// `-- +goose X` (goose trims the line and compares the annotation case-insensitively).
fn goose_annotation(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("--")?.trim_start().strip_prefix("+goose")?;
    Some(rest.trim())
}

/// goose: `<VERSION>_<NAME>.sql`, a `-- +goose Up` annotation before any statement, the up
/// section until `-- +goose Down`. `StatementBegin`/`StatementEnd` only delimit statements
/// (podinit sends the section as one batch, which the server splits); `NO TRANSACTION` runs
/// it outside a transaction, statement by statement as goose does ([`goose_statements`]).
/// `ENVSUB ON` (environment substitution) is refused.
fn goose(name: &str, text: &str) -> Result<File, String> {
    if name.ends_with(".go") {
        return Err("a Go migration: podinit runs SQL files only; port it to SQL".into());
    }
    let Some(stem) = name.strip_suffix(".sql") else { return Ok(File::Ignored) };
    let digits = leading_digits(stem);
    if digits.is_empty() || !stem[digits.len()..].starts_with('_') {
        return Err("not a goose file name: expected <VERSION>_<NAME>.sql".into());
    }
    let version = version_of(digits)?;
    if version < 1 {
        return Err("goose versions start at 1".into());
    }
    let description = stem[digits.len() + 1..].replace('_', " ");
    if !text.lines().any(|l| goose_annotation(l).is_some_and(|a| a.eq_ignore_ascii_case("up"))) {
        return Err("no -- +goose Up annotation (goose requires one)".into());
    }
    let mut up = None::<String>;
    let mut no_tx = false;
    let mut in_down = false;
    for line in text.split_inclusive('\n') {
        if let Some(annotation) = goose_annotation(line) {
            match annotation.to_ascii_lowercase().as_str() {
                "up" if up.is_none() && !in_down => up = Some(String::new()),
                "up" => return Err("a second -- +goose Up, or one after -- +goose Down".into()),
                "down" if up.is_some() => in_down = true,
                "down" => return Err("-- +goose Down before -- +goose Up".into()),
                "statementbegin" | "statementend" => {}
                "no transaction" => no_tx = true,
                "envsub off" => {}
                "envsub on" => return Err("uses -- +goose ENVSUB ON (environment substitution), which podinit does not do".into()),
                other => return Err(format!("unknown goose annotation '-- +goose {other}'")),
            }
        } else if let (Some(up), false) = (&mut up, in_down) {
            up.push_str(line);
        } else if up.is_none() && !is_blank_or_comment(line) {
            return Err("a statement before -- +goose Up (goose refuses it too)".into());
        }
    }
    let Some(sql) = up else { return Err("no -- +goose Up annotation (goose requires one)".into()) };
    let statements = if no_tx { Some(goose_statements(text)?) } else { None };
    Ok(File::Up(Parsed { version, description, sql, no_tx, statements }))
}

/// The up section's statements as goose v3 splits them (`internal/sqlparser/parser.go`,
/// `ParseSQLMigration`): blank and comment lines before a statement are dropped; a statement
/// ends at a line whose last word before any `--` word ends with `;`, or, between
/// `StatementBegin` and `StatementEnd`, at `StatementEnd`; each is trimmed (goose ≥ 3.15).
/// An unfinished statement at the end, or a `StatementBegin` never ended, is an error there.
fn goose_statements(text: &str) -> Result<Vec<String>, String> {
    let (mut statements, mut buf) = (Vec::new(), String::new());
    let (mut in_up, mut in_block) = (false, false);
    for line in text.lines() {
        if let Some(annotation) = goose_annotation(line) {
            match annotation.to_ascii_lowercase().as_str() {
                "up" => in_up = true,
                "down" => break,
                "statementbegin" if in_up => in_block = true,
                "statementend" if in_up && in_block => {
                    in_block = false;
                    statements.push(cleanup_statement(&buf));
                    buf.clear();
                }
                "statementend" if in_up => return Err("-- +goose StatementEnd without a StatementBegin".into()),
                _ => {}
            }
            continue;
        }
        if !in_up || (buf.is_empty() && (line.trim_start().starts_with("--") || line.is_empty())) {
            continue;
        }
        buf.push_str(line);
        buf.push('\n');
        if !in_block && ends_with_semicolon(line) {
            statements.push(cleanup_statement(&buf));
            buf.clear();
        }
    }
    if in_block {
        return Err("-- +goose StatementBegin without a StatementEnd".into());
    }
    if !buf.trim().is_empty() {
        return Err(format!(
            "an unfinished statement at the end of the up section (missing semicolon?): {}",
            buf.trim().lines().next().unwrap_or("")
        ));
    }
    Ok(statements)
}

/// goose's `endsWithSemicolon`: the last word before a word starting with `--` ends with `;`.
fn ends_with_semicolon(line: &str) -> bool {
    line.split_whitespace().take_while(|w| !w.starts_with("--")).last().is_some_and(|w| w.ends_with(';'))
}

/// goose's `cleanupStatement` since v3.15 (commit d67f26c, "avoid trimming on last
/// semicolon"): the statement trimmed, nothing cut (a block's last `;` is optional, and
/// cutting after it broke `$$ … END; $$` bodies).
fn cleanup_statement(statement: &str) -> String {
    statement.trim().to_owned()
}

fn is_blank_or_comment(line: &str) -> bool {
    let line = line.trim();
    line.is_empty() || line.starts_with("--")
}

/// `-- migrate:up` or `-- migrate:down` at the start of `line` (dbmate's `^--\s*migrate:up`);
/// returns what follows on the line (the options).
fn dbmate_marker<'a>(line: &'a str, which: &str) -> Option<&'a str> {
    let rest = line.strip_prefix("--")?.trim_start().strip_prefix(which)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest.trim())
}

/// dbmate: `^(\d+).*\.sql$`; `-- migrate:up [transaction:false]` with nothing but comments
/// and blank lines before it, the up block until `-- migrate:down`. Only the up block runs.
fn dbmate(name: &str, text: &str) -> Result<File, String> {
    let Some(stem) = name.strip_suffix(".sql") else { return Ok(File::Ignored) };
    let digits = leading_digits(stem);
    if digits.is_empty() {
        return Ok(File::Ignored);
    }
    let version = version_of(digits)?;
    let description = stem[digits.len()..].trim_start_matches('_').replace('_', " ");
    if !text.lines().any(|l| dbmate_marker(l.trim_end_matches('\r'), "migrate:up").is_some()) {
        return Err("no -- migrate:up line (dbmate requires one)".into());
    }
    let mut up = None::<(String, bool)>;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if let Some(options) = dbmate_marker(bare, "migrate:up") {
            if up.is_some() {
                return Err("a second -- migrate:up".into());
            }
            let no_tx = options.split_whitespace().any(|o| o == "transaction:false");
            up = Some((line.to_owned(), no_tx));
        } else if dbmate_marker(bare, "migrate:down").is_some() {
            if up.is_none() {
                return Err("-- migrate:down before -- migrate:up (dbmate refuses it too)".into());
            }
            break;
        } else if let Some((sql, _)) = &mut up {
            sql.push_str(line);
        } else if !is_blank_or_comment(line) {
            return Err("a statement before -- migrate:up (dbmate refuses it too)".into());
        }
    }
    let Some((sql, no_tx)) = up else { return Err("no -- migrate:up line (dbmate requires one)".into()) };
    Ok(File::Up(Parsed { version, description, sql, no_tx, statements: None }))
}

/// Flyway: `V<VERSION>__<NAME>.sql` runs; `U<VERSION>__…` (undo) never runs; `R__…`
/// (repeatable) and `B…` (baseline migrations) are refused: podinit has no equivalent.
/// Versions must be whole numbers (`V1.1__` is refused: podinit's history holds integers).
/// Flyway replaces `${placeholders}`; podinit does not, so a file using one is refused.
fn flyway(name: &str, text: &str) -> Result<File, String> {
    let Some(stem) = name.strip_suffix(".sql") else { return Ok(File::Ignored) };
    let Some((head, description)) = stem.split_once("__") else {
        return Err("not a Flyway file name: expected V<VERSION>__<NAME>.sql".into());
    };
    let (kind, version) = head.split_at(head.chars().next().map_or(0, char::len_utf8));
    match kind {
        "R" if version.is_empty() => return Err("a repeatable migration (R__): podinit does not run repeatable migrations".into()),
        "B" => return Err("a baseline migration (B…): podinit does not run baseline migrations".into()),
        "V" | "U" => {}
        _ => return Err("not a Flyway file name: expected V<VERSION>__<NAME>.sql".into()),
    }
    let version = flyway_version(version)?;
    if kind == "U" {
        return Ok(File::Down);
    }
    if text.lines().any(|l| l.trim_start().get(..10).is_some_and(|w| w.eq_ignore_ascii_case("delimiter "))) {
        return Err(
            "uses DELIMITER, which Flyway's parser handles and the server does not; remove it (the server reads BEGIN … END bodies whole)"
                .into(),
        );
    }
    if let Some(at) = text.find("${") {
        let placeholder: String = text[at..].chars().take_while(|&c| c != '}').chain(['}']).take(60).collect();
        return Err(format!("uses the Flyway placeholder {placeholder}, which podinit does not replace"));
    }
    Ok(File::Up(Parsed { version, description: description.replace('_', " "), sql: text.to_owned(), no_tx: false, statements: None }))
}

/// A Flyway version (`1`, `001`, `2.0`, `3_0`) as a whole number; `1.1` is refused.
pub(crate) fn flyway_version(text: &str) -> Result<i64, String> {
    let mut parts = text.split(['.', '_']);
    let first = parts.next().unwrap_or("");
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("version '{text}' is not a Flyway version"));
    }
    if !parts.all(|p| !p.is_empty() && p.bytes().all(|b| b == b'0')) {
        return Err(format!("version {text} is not a whole number: podinit's history holds integer versions"));
    }
    version_of(first)
}

/// Flyway's checksum of a script (`ChecksumCalculator`, Flyway 9/10): CRC-32 over the UTF-8
/// bytes of each line as `BufferedReader.readLine` gives them (no `\n`, `\r` or `\r\n`), a
/// byte-order mark left off the first line, kept as a signed 32-bit number. So it is the
/// CRC-32 of the text without its line breaks: line endings do not change it.
pub(crate) fn flyway_checksum(text: &str) -> i32 {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut crc = crc32fast::Hasher::new();
    for piece in text.split(['\r', '\n']) {
        crc.update(piece.as_bytes());
    }
    i32::from_ne_bytes(crc.finalize().to_ne_bytes())
}

/// A Flyway `V…sql.conf` script configuration beside the file: `executeInTransaction=false`
/// is understood; anything else is refused.
pub(crate) fn flyway_conf(text: &str) -> Result<bool, String> {
    let mut no_tx = false;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("executeInTransaction", "false")) => no_tx = true,
            Some(("executeInTransaction", "true")) => no_tx = false,
            _ => return Err(format!("script configuration '{line}' is not supported (only executeInTransaction)")),
        }
    }
    Ok(no_tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(format: Format, name: &str, text: &str) -> Parsed {
        match parse(format, name, text) {
            Ok(File::Up(p)) => p,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn dbmate_runs_only_the_up_section() {
        let text = "-- a comment\n\n-- migrate:up\nCREATE TABLE t (id INT);\n\n-- migrate:down\nDROP TABLE t;\n";
        let p = up(Format::Dbmate, "20240101120000_create_t.sql", text);
        assert_eq!(p.version, 20_240_101_120_000);
        assert_eq!(p.description, "create t");
        assert_eq!(p.sql, "-- migrate:up\nCREATE TABLE t (id INT);\n\n");
        assert!(!p.sql.contains("DROP"));
        assert!(!p.no_tx);
        let p =
            up(Format::Dbmate, "2_idx.sql", "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (id);\n-- migrate:down\n");
        assert!(p.no_tx);
        // No down section: everything after the up line.
        assert_eq!(up(Format::Dbmate, "3.sql", "--migrate:up\nSELECT 1;").sql, "--migrate:up\nSELECT 1;");
        assert_eq!(parse(Format::Dbmate, "README.md", "x"), Ok(File::Ignored));
        assert_eq!(parse(Format::Dbmate, "schema.sql", "x"), Ok(File::Ignored));
        for (text, why) in [
            ("CREATE TABLE t (id INT);\n-- migrate:up\nSELECT 1;\n", "a statement before -- migrate:up"),
            ("-- migrate:down\nDROP TABLE t;\n-- migrate:up\nSELECT 1;\n", "-- migrate:down before -- migrate:up"),
            ("CREATE TABLE t (id INT);\n", "no -- migrate:up line"),
            ("-- migrate:up\nSELECT 1;\n-- migrate:up\n", "a second -- migrate:up"),
        ] {
            assert!(parse(Format::Dbmate, "1_x.sql", text).unwrap_err().contains(why), "{text}");
        }
        // "-- migrate:upgrade" is not a marker.
        assert!(parse(Format::Dbmate, "1_x.sql", "-- migrate:upgrade\nSELECT 1;\n").is_err());
    }

    #[test]
    fn goose_annotations() {
        let text = "-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS INT AS $$ SELECT 1; $$ LANGUAGE sql;\n-- +goose StatementEnd\n\n-- +goose Down\nDROP FUNCTION f;\n";
        let p = up(Format::Goose, "00002_add_f.sql", text);
        assert_eq!((p.version, p.description.as_str(), p.no_tx), (2, "add f", false));
        assert!(p.sql.contains("CREATE FUNCTION") && !p.sql.contains("DROP"));
        let p = up(Format::Goose, "3_i.sql", "-- +goose NO TRANSACTION\n-- +goose up\nCREATE INDEX CONCURRENTLY i ON t (id);\n");
        assert!(p.no_tx);
        for (name, text, why) in [
            ("1_x.sql", "SELECT 1;\n", "no -- +goose Up"),
            ("1_x.sql", "SELECT 1;\n-- +goose Up\n", "a statement before -- +goose Up"),
            ("1_x.sql", "-- +goose Up\n-- +goose ENVSUB ON\nSELECT '${X}';\n", "ENVSUB ON"),
            ("1_x.sql", "-- +goose Up\n-- +goose Sideways\n", "unknown goose annotation"),
            ("1_x.go", "package migrations", "a Go migration"),
            ("x.sql", "-- +goose Up\n", "not a goose file name"),
            ("0_x.sql", "-- +goose Up\n", "start at 1"),
        ] {
            assert!(parse(Format::Goose, name, text).unwrap_err().contains(why), "{name}: {text}");
        }
    }

    #[test]
    fn golang_migrate_names() {
        let p = up(Format::GolangMigrate, "000001_create_users.up.sql", "BEGIN; CREATE TABLE users (id INT); COMMIT;");
        assert_eq!((p.version, p.description.as_str(), p.no_tx), (1, "create users", true));
        assert_eq!(parse(Format::GolangMigrate, "000001_create_users.down.sql", "DROP TABLE users;"), Ok(File::Down));
        assert_eq!(parse(Format::GolangMigrate, "notes.txt", ""), Ok(File::Ignored));
        assert!(parse(Format::GolangMigrate, "1_plain.sql", "").unwrap_err().contains("expected <VERSION>_<NAME>.up.sql"));
        assert!(parse(Format::GolangMigrate, "99999999999999999999_x.up.sql", "").unwrap_err().contains("64-bit"));
    }

    #[test]
    fn flyway_names_and_refusals() {
        let p = up(Format::Flyway, "V2__add_email.sql", "ALTER TABLE users ADD email TEXT;");
        assert_eq!((p.version, p.description.as_str()), (2, "add email"));
        assert_eq!(up(Format::Flyway, "V003.0__x.sql", "").version, 3);
        assert_eq!(parse(Format::Flyway, "U2__add_email.sql", "ALTER TABLE users DROP email;"), Ok(File::Down));
        assert_eq!(parse(Format::Flyway, "V1__x.sql.conf", ""), Ok(File::Ignored));
        for (name, text, why) in [
            ("R__views.sql", "", "repeatable"),
            ("V1.1__x.sql", "", "not a whole number"),
            ("V1__x.sql", "INSERT INTO t VALUES ('${user}');", "placeholder ${user}"),
            ("1_x.sql", "", "expected V<VERSION>__<NAME>.sql"),
            ("B5__base.sql", "", "baseline"),
            ("V2__p.sql", "DELIMITER $$\nCREATE PROCEDURE p() BEGIN SELECT 1; END$$\nDELIMITER ;\n", "uses DELIMITER"),
        ] {
            assert!(parse(Format::Flyway, name, text).unwrap_err().contains(why), "{name}");
        }
        assert_eq!(flyway_conf("# c\nexecuteInTransaction=false\n"), Ok(true));
        assert!(flyway_conf("encoding=ISO-8859-1").is_err());
    }

    #[test]
    fn foreign_markers_in_a_sqlx_directory() {
        assert_eq!(foreign_markers("-- migrate:up\nCREATE TABLE t (id INT);\n-- migrate:down\nDROP TABLE t;"), Some("dbmate"));
        assert_eq!(foreign_markers("-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;"), Some("goose"));
        assert_eq!(foreign_markers("-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (id);"), None);
        assert_eq!(foreign_markers("SELECT '-- migrate:down';"), None);
    }

    #[test]
    fn flyway_checksums_are_flywayss_crc32_of_the_lines() {
        // zlib.crc32(b"CREATE TABLE a (id INTEGER);"), as a signed 32-bit number.
        assert_eq!(flyway_checksum("CREATE TABLE a (id INTEGER);"), -59_897_099);
        for same in ["CREATE TABLE a (id INTEGER);\n", "CREATE TABLE a (id INTEGER);\r\n", "\u{feff}CREATE TABLE a (id INTEGER);\n"] {
            assert_eq!(flyway_checksum(same), -59_897_099, "{same:?}: line endings and a BOM do not count");
        }
        // zlib.crc32(b"SELECT 1;SELECT 2;"): lines joined without their breaks.
        assert_eq!(flyway_checksum("SELECT 1;\r\nSELECT 2;\n"), -1_665_099_012);
        assert_ne!(flyway_checksum("SELECT 1;\nSELECT 2;\n"), flyway_checksum("SELECT 1; SELECT 2;\n"), "a space counts");
    }

    #[test]
    fn goose_no_transaction_files_are_split_as_goose_splits_them() {
        let text = "-- +goose NO TRANSACTION\n-- +goose Up\n-- a comment before\n\nCREATE TABLE t (id INT);\n\
                    CREATE INDEX CONCURRENTLY t_id\n    ON t (id); -- trailing words\n\
                    -- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$\nBEGIN RETURN 1; END;\n$$ LANGUAGE plpgsql;\n\
                    -- +goose StatementEnd\nSELECT 1; SELECT 2;\n\
                    -- +goose StatementBegin\nDO $$ BEGIN PERFORM 1; END $$\n-- +goose StatementEnd\n-- +goose Down\nDROP TABLE t;\n";
        let parsed = up(Format::Goose, "1_idx.sql", text);
        assert!(parsed.no_tx);
        assert_eq!(
            parsed.statements.unwrap(),
            [
                "CREATE TABLE t (id INT);",
                "CREATE INDEX CONCURRENTLY t_id\n    ON t (id); -- trailing words",
                "CREATE FUNCTION f() RETURNS int AS $$\nBEGIN RETURN 1; END;\n$$ LANGUAGE plpgsql;",
                "SELECT 1; SELECT 2;",
                // A block's last `;` is optional (goose ≥ 3.15 only trims): not cut after END;.
                "DO $$ BEGIN PERFORM 1; END $$",
            ]
        );
        // In a transaction the section stays one batch, as before.
        assert_eq!(up(Format::Goose, "2_t.sql", "-- +goose Up\nSELECT 1;\nSELECT 2;\n").statements, None);
        for (bad, why) in [
            ("-- +goose NO TRANSACTION\n-- +goose Up\nSELECT 1\n", "missing semicolon"),
            ("-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n", "without a StatementEnd"),
            ("-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementEnd\n", "without a StatementBegin"),
        ] {
            let err = parse(Format::Goose, "3_x.sql", bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}

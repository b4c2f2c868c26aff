//! Turning fetched secrets into files: one file per key (the layout of a Kubernetes Secret
//! volume), one key, JSON, or dotenv; then writing the whole set so it appears together or
//! not at all.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use podinit_core::Error;
use podinit_core::fs::{AtomicFile, FileOptions};
use serde_json::{Map, Value};

use crate::spec::{SecretSpec, is_file_name};

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A directory `<name>/` with one file per key holding its raw value.
    #[default]
    Files,
    /// `<name>.json`: the secret's data as a JSON object.
    Json,
    /// `<name>.env`: `KEY='value'` lines, keys made valid variable names.
    Env,
}

/// A file to produce, relative to `--out`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) rel: PathBuf,
    pub(crate) bytes: Vec<u8>,
}

/// The files for one secret. Errors name the secret and the key, never a value.
pub(crate) fn render(spec: &SecretSpec, data: &Map<String, Value>, format: Format) -> Result<Vec<Planned>, Error> {
    let fail = |message: String| Error::new(podinit_core::Kind::Failed, anyhow::anyhow!(message));
    if let Some(key) = &spec.key {
        let Some(value) = data.get(key) else {
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            let known = if keys.is_empty() { "it has no keys".to_owned() } else { format!("its keys: {}", keys.join(", ")) };
            return Err(fail(format!("{}: the secret has no key '{key}' ({known})", spec.path)));
        };
        let rel = match &spec.out {
            Some(out) => out.clone(),
            None if is_file_name(key) => PathBuf::from(key),
            None => return Err(fail(format!("{}: key '{key}' cannot be a file name; choose one with '#{key}=FILE'", spec.path))),
        };
        return Ok(vec![Planned { rel, bytes: raw(value) }]);
    }
    let name = spec.name();
    match format {
        Format::Files => {
            let dir = spec.out.clone().unwrap_or_else(|| PathBuf::from(name));
            data.iter()
                .map(|(key, value)| {
                    if !is_file_name(key) {
                        return Err(fail(format!(
                            "{}: key '{}' cannot be a file name (it would leave the secret's directory); \
                             take it with '{}#KEY=FILE' or use --format json",
                            spec.path,
                            key.escape_debug(),
                            spec.path
                        )));
                    }
                    Ok(Planned { rel: dir.join(key), bytes: raw(value) })
                })
                .collect()
        }
        Format::Json => {
            let rel = spec.out.clone().unwrap_or_else(|| PathBuf::from(format!("{name}.json")));
            let mut bytes = serde_json::to_vec_pretty(data).map_err(|e| fail(format!("{}: {e}", spec.path)))?;
            bytes.push(b'\n');
            Ok(vec![Planned { rel, bytes }])
        }
        Format::Env => {
            let rel = spec.out.clone().unwrap_or_else(|| PathBuf::from(format!("{name}.env")));
            Ok(vec![Planned { rel, bytes: dotenv(&spec.path, data).map_err(fail)?.into_bytes() }])
        }
    }
}

/// A value as file content: a string as it is, anything else as JSON.
fn raw(value: &Value) -> Vec<u8> {
    match value {
        Value::String(text) => text.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// `KEY='value'` lines, single-quoted so a shell or a dotenv loader takes the value literally.
fn dotenv(path: &str, data: &Map<String, Value>) -> Result<String, String> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = String::new();
    for (key, value) in data {
        let name = variable_name(key);
        if let Some(other) = seen.insert(name.clone(), key) {
            return Err(format!(
                "{path}: keys '{other}' and '{key}' both become the variable {name}; take them one by one with '#KEY=FILE'"
            ));
        }
        let text = String::from_utf8_lossy(&raw(value)).replace('\'', r"'\''");
        out.push_str(&format!("{name}='{text}'\n"));
    }
    Ok(out)
}

/// A valid shell variable name: `[A-Za-z_][A-Za-z0-9_]*`, other characters replaced by `_`.
fn variable_name(key: &str) -> String {
    let mut name: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// What [`write_set`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) changed: Vec<PathBuf>,
    pub(crate) unchanged: usize,
}

/// Writes every planned file under `out`, all or nothing: each changed file is staged as a
/// temp file beside its destination first; only when all are staged are they renamed into
/// place. A failure while staging removes the temp files and any directory created for
/// them, so the old state stays. Files already holding the same bytes, mode and owner are
/// left alone (same inode).
pub(crate) fn write_set(out: &Path, planned: &[Planned], options: FileOptions, dir_mode: u32) -> Result<Written, Error> {
    let mut dests = BTreeSet::new();
    let mut resolved = Vec::with_capacity(planned.len());
    for file in planned {
        let dest = podinit_core::fs::resolve_inside(out, &file.rel)
            .map_err(|e| Error::new(podinit_core::Kind::Failed, e.context(format!("refusing to write {}", file.rel.display()))))?;
        if !dests.insert(dest.clone()) {
            return Err(Error::usage(format!("two secrets would write {}; give one of them '=FILE'", file.rel.display())));
        }
        resolved.push((dest, file));
    }
    let mut created_dirs = Vec::new();
    let staged = stage(out, &resolved, options, dir_mode, &mut created_dirs);
    let staged = match staged {
        Ok(staged) => staged,
        Err(err) => {
            for dir in created_dirs.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(err);
        }
    };
    let unchanged = resolved.len() - staged.len();
    let mut changed = Vec::with_capacity(staged.len());
    for file in staged {
        let rel = file.dest().strip_prefix(out).unwrap_or(file.dest()).to_owned();
        file.commit().map_err(|e| Error::new(podinit_core::Kind::Failed, e))?;
        changed.push(rel);
    }
    Ok(Written { changed, unchanged })
}

fn stage(
    out: &Path,
    files: &[(PathBuf, &Planned)],
    options: FileOptions,
    dir_mode: u32,
    created_dirs: &mut Vec<PathBuf>,
) -> Result<Vec<AtomicFile>, Error> {
    let io = |e: anyhow::Error| Error::new(podinit_core::Kind::Failed, e);
    let mut staged = Vec::new();
    for (dest, file) in files {
        if let Some(parent) = dest.parent() {
            make_dirs(out, parent, options, dir_mode, created_dirs).map_err(io)?;
        }
        if std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
            return Err(io(anyhow::anyhow!("{} is a directory; a file cannot replace it", dest.display())));
        }
        if podinit_core::fs::unchanged(dest, &file.bytes, options) {
            continue;
        }
        let mut temp = AtomicFile::create(dest, options).map_err(io)?;
        temp.write_all(&file.bytes)
            .map_err(|e| io(anyhow::anyhow!("writing {}: {}", dest.display(), podinit_core::redact::io_reason(&e))))?;
        staged.push(temp);
    }
    Ok(staged)
}

/// Creates the directories between `out` and `dir`, recording the ones it made.
fn make_dirs(out: &Path, dir: &Path, options: FileOptions, mode: u32, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let rel = dir.strip_prefix(out).unwrap_or(Path::new(""));
    let mut current = out.to_owned();
    for part in rel.components() {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => anyhow::bail!("{} exists and is not a directory", current.display()),
            Err(_) => {}
        }
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(&current)
            .map_err(|e| anyhow::anyhow!("creating {}: {}", current.display(), podinit_core::redact::io_reason(&e)))?;
        created.push(current.clone());
        // The umask may have narrowed the mode. The setgid bit a directory inherits from a
        // setgid parent (an emptyDir with `fsGroup`) is kept: without it the files below get
        // podinit's group instead of the pod's, and an app in that group cannot read them.
        let inherited = std::fs::metadata(&current)?.permissions().mode() & 0o2000;
        std::fs::set_permissions(&current, std::fs::Permissions::from_mode(mode | inherited))?;
        if options.uid.is_some() || options.gid.is_some() {
            std::os::unix::fs::chown(&current, options.uid, options.gid)
                .map_err(|e| anyhow::anyhow!("setting the owner of {}: {}", current.display(), podinit_core::redact::io_reason(&e)))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn data(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    fn spec(text: &str) -> SecretSpec {
        SecretSpec::parse(text).unwrap()
    }

    #[test]
    fn whole_secret_as_files_json_and_env() {
        let d = data(r#"{"user":"app","password":"it's","port":5432}"#);
        let files = render(&spec("secret/db"), &d, Format::Files).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.rel.to_str().unwrap()).collect();
        assert_eq!(names, ["db/password", "db/port", "db/user"]);
        assert_eq!(files[0].bytes, b"it's");
        assert_eq!(files[1].bytes, b"5432");
        let json = render(&spec("secret/db"), &d, Format::Json).unwrap();
        assert_eq!(json[0].rel, Path::new("db.json"));
        assert_eq!(serde_json::from_slice::<Value>(&json[0].bytes).unwrap(), Value::Object(d.clone()));
        let env = render(&spec("secret/db=conf/app.env"), &d, Format::Env).unwrap();
        assert_eq!(env[0].rel, Path::new("conf/app.env"));
        assert_eq!(String::from_utf8_lossy(&env[0].bytes), "password='it'\\''s'\nport='5432'\nuser='app'\n");
    }

    #[test]
    fn one_key_and_missing_keys() {
        let d = data(r#"{"password":"s3cret","user":"app"}"#);
        let one = render(&spec("secret/db#password=db-password"), &d, Format::Files).unwrap();
        assert_eq!(one, [Planned { rel: "db-password".into(), bytes: b"s3cret".to_vec() }]);
        let err = render(&spec("secret/db#passwd"), &d, Format::Files).unwrap_err();
        assert_eq!(err.message(), "secret/db: the secret has no key 'passwd' (its keys: password, user)");
        assert!(!err.message().contains("s3cret"));
    }

    #[test]
    fn keys_that_would_escape_are_refused() {
        let d = data(r#"{"../../etc/passwd":"x"}"#);
        let err = render(&spec("secret/evil"), &d, Format::Files).unwrap_err();
        assert!(err.message().contains("key '../../etc/passwd' cannot be a file name"), "{}", err.message());
        assert!(render(&spec("secret/evil#../../etc/passwd"), &d, Format::Files).is_err());
        assert!(render(&spec("secret/evil#../../etc/passwd=passwd"), &d, Format::Files).is_ok());
    }

    #[test]
    fn variable_names_are_sanitised_and_collisions_refused() {
        assert_eq!(variable_name("db-password"), "db_password");
        assert_eq!(variable_name("1st"), "_1st");
        assert_eq!(variable_name(""), "_");
        let err = render(&spec("secret/x"), &data(r#"{"a-b":"1","a_b":"2"}"#), Format::Env).unwrap_err();
        assert!(err.message().contains("both become the variable a_b"));
    }

    #[test]
    fn the_set_is_all_or_nothing_and_reruns_keep_inodes() {
        let out = tempfile::tempdir().unwrap();
        let options = FileOptions { mode: 0o400, uid: None, gid: None };
        let good = vec![Planned { rel: "a/one".into(), bytes: b"1".to_vec() }, Planned { rel: "two".into(), bytes: b"2".to_vec() }];
        let written = write_set(out.path(), &good, options, 0o755).unwrap();
        assert_eq!(written.changed.len(), 2);
        let inode = std::fs::metadata(out.path().join("a/one")).unwrap().ino();
        assert_eq!(std::fs::metadata(out.path().join("a/one")).unwrap().mode() & 0o777, 0o400);
        let again = write_set(out.path(), &good, options, 0o755).unwrap();
        assert_eq!(again, Written { changed: vec![], unchanged: 2 });
        assert_eq!(std::fs::metadata(out.path().join("a/one")).unwrap().ino(), inode);

        // The third file cannot be staged (its parent is a file): nothing new appears.
        std::fs::File::create(out.path().join("blocker")).unwrap();
        let bad = vec![
            Planned { rel: "new/x".into(), bytes: b"x".to_vec() },
            Planned { rel: "two".into(), bytes: b"changed".to_vec() },
            Planned { rel: "blocker/y".into(), bytes: b"y".to_vec() },
        ];
        assert!(write_set(out.path(), &bad, options, 0o755).is_err());
        assert!(!out.path().join("new").exists());
        assert_eq!(std::fs::read(out.path().join("two")).unwrap(), b"2");
        let leftovers: Vec<_> = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 3, "{leftovers:?}");
    }

    #[test]
    fn directories_keep_the_setgid_bit_of_an_fsgroup_volume() {
        let out = tempfile::tempdir().unwrap();
        std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o2777)).unwrap();
        let options = FileOptions { mode: 0o440, uid: None, gid: None };
        write_set(out.path(), &[Planned { rel: "db/password".into(), bytes: b"pw".to_vec() }], options, 0o755).unwrap();
        assert_eq!(std::fs::metadata(out.path().join("db")).unwrap().mode() & 0o7777, 0o2755);
        // Without setgid on the volume, none is added.
        let plain = tempfile::tempdir().unwrap();
        write_set(plain.path(), &[Planned { rel: "db/password".into(), bytes: b"pw".to_vec() }], options, 0o755).unwrap();
        assert_eq!(std::fs::metadata(plain.path().join("db")).unwrap().mode() & 0o7777, 0o755);
    }
}

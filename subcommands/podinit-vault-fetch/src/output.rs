//! Turning fetched secrets into files: one file per key (the layout of a Kubernetes Secret
//! volume), one key, JSON, or dotenv; then writing the whole set so it appears together or
//! not at all.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use podinit_core::fs::FileOptions;
use podinit_core::fs::root::{Dir, Kind as FileKind, components};
use podinit_core::fs::set::DataSet;
use podinit_core::{Error, Kind};
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
    let fail = |message: String| Error::new(Kind::Failed, anyhow::anyhow!(message));
    let raw = |key: &str, value: &Value| -> Result<Vec<u8>, Error> {
        if !spec.decode_base64 {
            return Ok(raw(value));
        }
        decode_base64(value).ok_or_else(|| {
            fail(format!("{}: the value of '{key}' is not base64 text (asked by ?decode=base64)", spec.path))
                .with_hint("drop ?decode=base64 for this secret, or store the value base64-encoded (base64 -w0 FILE)")
        })
    };
    if spec.decode_base64 && spec.key.is_none() && format != Format::Files {
        return Err(Error::usage(format!("'{}': ?decode=base64 writes raw files; it needs #KEY or --format files", spec.text)));
    }
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
        return Ok(vec![Planned { rel, bytes: raw(key, value)? }]);
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
                    Ok(Planned { rel: dir.join(key), bytes: raw(key, value)? })
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

/// The bytes of base64 text (standard alphabet, padding optional, line breaks ignored).
fn decode_base64(value: &Value) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text: String = value.as_str()?.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT.decode(text).ok()
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

/// Writes every planned file under `out` as one set ([`DataSet`]: the kubelet's AtomicWriter
/// layout): a new version in a directory of its own, synced, then switched to in one rename,
/// so readers see the old secrets or the new ones, never a mix, and a killed run leaves the
/// old set (its temp directory is removed by the next run). When every file already holds
/// the same bytes, mode and owner and no file left the set, nothing is written (same inodes).
pub(crate) fn write_set(set: &DataSet, out: &Path, planned: &[Planned], options: FileOptions, dir_mode: u32) -> Result<Written, Error> {
    let mut seen = BTreeSet::new();
    for file in planned {
        let parts =
            components(&file.rel).map_err(|e| Error::new(Kind::Failed, e.context(format!("refusing to write {}", file.rel.display()))))?;
        if parts[0].as_encoded_bytes().starts_with(b"..") {
            return Err(Error::usage(format!("{}: names starting with '..' are reserved for the layout of --out", file.rel.display())));
        }
        if !seen.insert(parts.iter().collect::<PathBuf>()) {
            return Err(Error::usage(format!(
                "two outputs would write {}; give one of them another name ('=FILE', --template SRC=NAME)",
                file.rel.display()
            )));
        }
    }
    let explain = |e: anyhow::Error| podinit_core::fs::explain_write(e, out);
    let current = set.current().map_err(explain)?;
    let mut changed = Vec::new();
    for file in planned {
        if !current.as_ref().is_some_and(|dir| holds(dir, file, options)) {
            changed.push(file.rel.clone());
        }
    }
    let unchanged = planned.len() - changed.len();
    let left = match &current {
        Some(dir) => files_below(dir, Path::new("")).map_err(explain)?.into_iter().filter(|rel| !seen.contains(rel)).count(),
        None => 0,
    };
    if changed.is_empty() && left == 0 && current.is_some() {
        set.ensure_visible().map_err(explain)?;
        return Ok(Written { changed, unchanged });
    }
    let staged = set.stage(dir_mode, options.uid, options.gid).map_err(explain)?;
    for file in planned {
        let root = staged.dir().try_clone().map_err(|e| explain(e.into()))?.shown_as(out);
        write_one(&root, file, options, dir_mode).map_err(explain)?;
    }
    staged.commit().map_err(explain)?;
    Ok(Written { changed, unchanged })
}

/// Whether `dir` (the current set) holds `file` with the same bytes, mode and owner.
fn holds(dir: &Dir, file: &Planned, options: FileOptions) -> bool {
    let Ok(parts) = components(&file.rel) else { return false };
    let Some((name, parent)) = parts.split_last() else { return false };
    let Ok(Some(stat)) = dir.open_dir(parent).and_then(|d| Ok(d.stat(name)?)) else { return false };
    stat.st_mode & 0o170_000 == 0o100_000
        && stat.st_mode & 0o7777 == options.mode
        && options.uid.is_none_or(|u| u == stat.st_uid)
        && options.gid.is_none_or(|g| g == stat.st_gid)
        && u64::try_from(stat.st_size).is_ok_and(|size| size == file.bytes.len() as u64)
        && dir.open_dir(parent).ok().and_then(|d| d.open_file(name).ok()).is_some_and(|mut f| {
            let mut old = Vec::with_capacity(file.bytes.len());
            f.read_to_end(&mut old).is_ok() && old == file.bytes
        })
}

/// The files below `dir`, relative to the set's root.
fn files_below(dir: &Dir, rel: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for name in dir.names()? {
        if rel.as_os_str().is_empty() && name.as_encoded_bytes().starts_with(b"..") {
            continue;
        }
        match dir.stat(&name)?.map(|s| FileKind::of(&s)) {
            Some(FileKind::Dir) => files.extend(files_below(&dir.sub(&name)?, &rel.join(&name))?),
            Some(_) => files.push(rel.join(&name)),
            None => {}
        }
    }
    Ok(files)
}

/// Writes one file into the new version, creating its directories (with `dir_mode`, keeping
/// an inherited setgid bit, and the owner of `options`).
fn write_one(root: &Dir, file: &Planned, options: FileOptions, dir_mode: u32) -> anyhow::Result<()> {
    let parts = components(&file.rel)?;
    let Some((name, parent)) = parts.split_last() else { anyhow::bail!("'{}' names no file", file.rel.display()) };
    let mut dir = root.try_clone()?;
    for part in parent {
        dir = match dir.sub(part) {
            Ok(sub) => sub,
            Err(_) => {
                let sub = dir.mkdir(part, dir_mode)?;
                chown(&sub, options, sub.path())?;
                sub
            }
        };
    }
    let mut out = dir.create_file(name)?;
    out.write_all(&file.bytes).map_err(|e| podinit_core::fs::io_error(e, format!("writing {}", dir.path().join(name).display())))?;
    out.set_permissions(std::fs::Permissions::from_mode(options.mode))?;
    chown(&out, options, &dir.path().join(name))
}

fn chown(fd: &impl std::os::fd::AsFd, options: FileOptions, shown: &Path) -> anyhow::Result<()> {
    if options.uid.is_none() && options.gid.is_none() {
        return Ok(());
    }
    std::os::unix::fs::fchown(fd, options.uid, options.gid).map_err(|e| {
        podinit_core::fs::io_error(e, format!("setting the owner {}:{} of {}", fmt_id(options.uid), fmt_id(options.gid), shown.display()))
    })
}

fn fmt_id(id: Option<u32>) -> String {
    id.map_or_else(|| "-".to_owned(), |i| i.to_string())
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
    fn base64_values_are_decoded_on_request() {
        let d = data(r#"{"keystore":"AAEC/w==","wrapped":"AAEC\n/w","text":"not base64!"}"#);
        let one = render(&spec("secret/app?decode=base64#keystore=ks.jks"), &d, Format::Files).unwrap();
        assert_eq!(one[0].bytes, [0, 1, 2, 255]);
        let one = render(&spec("secret/app?decode=base64#wrapped"), &d, Format::Files).unwrap();
        assert_eq!(one[0].bytes, [0, 1, 2, 255]);
        let err = render(&spec("secret/app?decode=base64#text"), &d, Format::Files).unwrap_err();
        assert!(err.message().contains("the value of 'text' is not base64") && !err.message().contains("not base64!"), "{}", err.message());
        assert_eq!(render(&spec("secret/app?decode=base64"), &d, Format::Json).unwrap_err().kind(), Kind::Usage);
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

    fn ctx() -> podinit_core::Context {
        podinit_core::Context::for_tests(&podinit_core::GlobalArgs::default()).0
    }

    async fn write_set(
        ctx: &podinit_core::Context,
        out: &Path,
        planned: &[Planned],
        options: FileOptions,
        dir_mode: u32,
    ) -> Result<Written, Error> {
        let set = DataSet::open(ctx, out, dir_mode).await?;
        super::write_set(&set, out, planned, options, dir_mode)
    }

    #[tokio::test]
    async fn the_set_is_all_or_nothing_and_reruns_keep_inodes() {
        let out = tempfile::tempdir().unwrap();
        let options = FileOptions { mode: 0o400, uid: None, gid: None };
        let good = vec![Planned { rel: "a/one".into(), bytes: b"1".to_vec() }, Planned { rel: "two".into(), bytes: b"2".to_vec() }];
        let written = write_set(&ctx(), out.path(), &good, options, 0o755).await.unwrap();
        assert_eq!(written.changed.len(), 2);
        let inode = std::fs::metadata(out.path().join("a/one")).unwrap().ino();
        assert_eq!(std::fs::metadata(out.path().join("a/one")).unwrap().mode() & 0o777, 0o400);
        let again = write_set(&ctx(), out.path(), &good, options, 0o755).await.unwrap();
        assert_eq!(again, Written { changed: vec![], unchanged: 2 });
        assert_eq!(std::fs::metadata(out.path().join("a/one")).unwrap().ino(), inode);

        // Two files of one set may not share a path: refused before anything is written.
        let twice = vec![Planned { rel: "x".into(), bytes: b"1".to_vec() }, Planned { rel: "./x".into(), bytes: b"2".to_vec() }];
        assert_eq!(write_set(&ctx(), out.path(), &twice, options, 0o755).await.unwrap_err().kind(), Kind::Usage);
        // A changed set replaces the old one whole: `a/one` leaves, `two` changes.
        let next = vec![Planned { rel: "two".into(), bytes: b"22".to_vec() }];
        let written = write_set(&ctx(), out.path(), &next, options, 0o755).await.unwrap();
        assert_eq!(written.changed, [PathBuf::from("two")]);
        assert!(std::fs::symlink_metadata(out.path().join("a")).is_err());
        assert_eq!(std::fs::read(out.path().join("two")).unwrap(), b"22");
    }

    #[tokio::test]
    async fn directories_keep_the_setgid_bit_of_an_fsgroup_volume() {
        let out = tempfile::tempdir().unwrap();
        std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o2777)).unwrap();
        let options = FileOptions { mode: 0o440, uid: None, gid: None };
        let planned = [Planned { rel: "db/password".into(), bytes: b"pw".to_vec() }];
        write_set(&ctx(), out.path(), &planned, options, 0o755).await.unwrap();
        assert_eq!(std::fs::metadata(out.path().join("db")).unwrap().mode() & 0o7777, 0o2755);
        assert_eq!(std::fs::metadata(out.path()).unwrap().mode() & 0o7777, 0o2777, "the volume's own mode is kept");
        // Without setgid on the volume, none is added.
        let plain = tempfile::tempdir().unwrap();
        write_set(&ctx(), plain.path(), &planned, options, 0o755).await.unwrap();
        assert_eq!(std::fs::metadata(plain.path().join("db")).unwrap().mode() & 0o7777, 0o755);
    }
}

//! The `SECRET` argument: `PATH[?version=N&decode=base64][#KEY][=OUT]` (either query item or
//! both), parsed without touching the network.

use std::path::{Component, Path, PathBuf};

/// One requested secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecretSpec {
    /// As given, for messages.
    pub(crate) text: String,
    /// Vault path without leading or trailing `/`, e.g. `secret/app/db`.
    pub(crate) path: String,
    /// A KV v2 version to read instead of the latest.
    pub(crate) version: Option<u64>,
    /// Values are base64 text to be written decoded (`?decode=base64`).
    pub(crate) decode_base64: bool,
    /// Take only this key.
    pub(crate) key: Option<String>,
    /// Output path relative to `--out`, instead of the default name.
    pub(crate) out: Option<PathBuf>,
}

impl SecretSpec {
    /// Parses `secret/db#password=db-password`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let path_end = text.find(['?', '#', '=']).unwrap_or(text.len());
        let path = text[..path_end].trim_matches('/');
        if path.is_empty() {
            return Err(format!("'{text}': the secret path is empty (e.g. secret/app/db)"));
        }
        if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(format!("'{text}': the path has an empty, '.' or '..' segment"));
        }
        let mut rest = &text[path_end..];
        let mut version = None;
        let mut decode_base64 = false;
        if let Some(mut query) = rest.strip_prefix('?') {
            // `name=value` items joined by `&`, up to the `#KEY` or `=FILE` that follows.
            loop {
                let (name, after) = query.split_once('=').ok_or_else(|| bad_query(text))?;
                let end = after.find(['&', '#', '=']).unwrap_or(after.len());
                let value = &after[..end];
                match name {
                    "version" if version.is_some() => return Err(format!("'{text}': version= is given twice")),
                    "decode" if decode_base64 => return Err(format!("'{text}': decode= is given twice")),
                    "version" => {
                        version = Some(value.parse::<u64>().map_err(|_| format!("'{text}': ?version= takes a number, not '{value}'"))?);
                    }
                    "decode" if value == "base64" => decode_base64 = true,
                    "decode" => return Err(format!("'{text}': ?decode= takes base64, not '{value}'")),
                    _ => return Err(bad_query(text)),
                }
                query = &after[end..];
                match query.strip_prefix('&') {
                    Some(next) => query = next,
                    None => break,
                }
            }
            rest = query;
        }
        let mut key = None;
        if let Some(after) = rest.strip_prefix('#') {
            let end = after.find('=').unwrap_or(after.len());
            if end == 0 {
                return Err(format!("'{text}': '#' needs a key name after it"));
            }
            key = Some(after[..end].to_owned());
            rest = &after[end..];
        }
        let mut out = None;
        if let Some(target) = rest.strip_prefix('=') {
            out = Some(output_path(text, target)?);
            rest = "";
        }
        debug_assert!(rest.is_empty());
        Ok(Self { text: text.to_owned(), path: path.to_owned(), version, decode_base64, key, out })
    }

    /// The last path segment: the default output name (`secret/app/db` → `db`).
    pub(crate) fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

fn bad_query(text: &str) -> String {
    format!("'{text}': the query takes version=N (a KV v2 version) and decode=base64, joined by '&'")
}

pub(crate) fn output_path(text: &str, target: &str) -> Result<PathBuf, String> {
    let path = Path::new(target);
    if target.is_empty() || target.ends_with('/') {
        return Err(format!("'{text}': '=' needs a file path after it, relative to --out"));
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(format!("'{text}': the output path must stay inside --out (no leading '/', no '..')")),
        }
    }
    Ok(path.to_owned())
}

/// Whether `name` can be one file name: not empty, no `/`, not `.` or `..`, no NUL.
pub(crate) fn is_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> SecretSpec {
        SecretSpec::parse(text).unwrap()
    }

    #[test]
    fn path_key_and_output() {
        let s = spec("secret/db#password=db-password");
        assert_eq!((s.path.as_str(), s.key.as_deref(), s.out.as_deref()), ("secret/db", Some("password"), Some(Path::new("db-password"))));
        assert_eq!(s.name(), "db");
        let s = spec("/secret/app/db/");
        assert_eq!((s.path.as_str(), s.key, s.out, s.version), ("secret/app/db", None, None, None));
        assert_eq!(spec("secret/db=conf/db").out.as_deref(), Some(Path::new("conf/db")));
    }

    #[test]
    fn versions() {
        let s = spec("secret/db?version=3#password=pw");
        assert_eq!((s.version, s.key.as_deref(), s.out.as_deref()), (Some(3), Some("password"), Some(Path::new("pw"))));
        assert_eq!(spec("secret/db?version=2=out").out.as_deref(), Some(Path::new("out")));
        assert_eq!(spec("secret/db?version=2").version, Some(2));
        assert!(SecretSpec::parse("secret/db?version=x").unwrap_err().contains("takes a number"));
        assert!(SecretSpec::parse("secret/db?ver=1").unwrap_err().contains("version=N"));
        assert!(SecretSpec::parse("secret/db?version").is_err());
    }

    #[test]
    fn decoding() {
        let s = spec("secret/app?decode=base64#keystore=keystore.jks");
        assert!(s.decode_base64);
        assert_eq!((s.key.as_deref(), s.out.as_deref()), (Some("keystore"), Some(Path::new("keystore.jks"))));
        let s = spec("secret/app?version=2&decode=base64");
        assert_eq!((s.version, s.decode_base64), (Some(2), true));
        let s = spec("secret/app?decode=base64&version=4#k");
        assert_eq!((s.version, s.decode_base64, s.key.as_deref()), (Some(4), true, Some("k")));
        assert!(!spec("secret/app#k").decode_base64);
        assert!(SecretSpec::parse("secret/app?decode=hex").unwrap_err().contains("takes base64"));
        assert!(SecretSpec::parse("secret/app?version=1&version=2").unwrap_err().contains("given twice"));
    }

    #[test]
    fn refuses_what_could_escape_or_is_empty() {
        for bad in [
            "",
            "/",
            "secret//db",
            "secret/../db",
            "secret/db#",
            "secret/db=",
            "secret/db=/etc/passwd",
            "secret/db=../x",
            "secret/db=a/../../x",
        ] {
            assert!(SecretSpec::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn file_names() {
        assert!(is_file_name("password") && is_file_name(".env") && is_file_name("tls.crt"));
        for bad in ["", ".", "..", "../../etc/passwd", "a/b", "nul\0"] {
            assert!(!is_file_name(bad), "{bad:?}");
        }
    }
}

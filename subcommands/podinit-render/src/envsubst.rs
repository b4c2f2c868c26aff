//! `podinit envsubst` (and a link named `envsubst`): GNU gettext's envsubst, byte for byte, with
//! one deliberate difference: a variable that is not set is an error (exit 2, nothing written)
//! instead of an empty string, unless `--allow-missing`.
//!
//! GNU's rules (gettext-runtime/src/envsubst.c): only `$NAME` and `${NAME}` with NAME of ASCII
//! letters, digits and `_`, not starting with a digit, are variables; anything else, `$$`,
//! `${}`, `${ NAME }`, `${1A}`, a `$` before a non-ASCII letter, an unclosed `${NAME`, bytes that
//! are not UTF-8, passes through unchanged. With SHELL-FORMAT, only the variables it names
//! (`$NAME` or `${NAME}` in it; words without `$` name none) are replaced. `podinit render
//! --syntax envsubst` keeps its shell extensions (`${V:-default}`…); this applet has none.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};

use podinit_core::{Context, Error, Kind};

/// Largest input read (the whole output is made before anything is written).
const MAX_INPUT: u64 = 64 << 20;

/// Substitute environment variables in standard input, as GNU envsubst does.
///
/// Reads stdin, writes stdout. `$NAME` and `${NAME}` are replaced by the variable's value;
/// with SHELL-FORMAT ('$HOST ${PORT}') only those. The one difference from GNU envsubst: a
/// variable that is not set is an error (exit 2, nothing written), not an empty string;
/// --allow-missing gives GNU's empty string.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  podinit envsubst < nginx.conf.template > /etc/nginx/nginx.conf
  podinit envsubst '$BACKEND ${PORT}' < default.conf.template     (nginx's own $host stays)
  podinit envsubst -v '$BACKEND ${PORT}'                          (prints BACKEND and PORT)")]
pub struct Args {
    /// Only the variables named in it (`$NAME` or `${NAME}`) are replaced.
    #[arg(value_name = "SHELL-FORMAT")]
    pub shell_format: Option<OsString>,

    /// Print the variables SHELL-FORMAT names, one per line, and read nothing.
    #[arg(short = 'v', long, requires = "shell_format")]
    pub variables: bool,

    /// A variable that is not set becomes empty, as GNU envsubst makes it.
    #[arg(long, env = "PODINIT_ENVSUBST_ALLOW_MISSING")]
    pub allow_missing: bool,
}

/// Runs `podinit envsubst`.
pub fn run(_ctx: &Context, args: Args) -> Result<(), Error> {
    let only = args.shell_format.as_deref().map(|f| names(f.as_bytes()));
    let mut stdout = std::io::stdout().lock();
    let write_error =
        |e: std::io::Error| Error::new(Kind::Failed, anyhow::anyhow!("writing to stdout: {}", podinit_core::redact::io_reason(&e)));
    if args.variables {
        for name in only.iter().flatten() {
            stdout.write_all(name).and_then(|()| stdout.write_all(b"\n")).map_err(write_error)?;
        }
        return stdout.flush().map_err(write_error);
    }
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut input)
        .map_err(|e| Error::new(Kind::Failed, anyhow::anyhow!("reading stdin: {}", podinit_core::redact::io_reason(&e))))?;
    if input.len() as u64 > MAX_INPUT {
        return Err(Error::usage(format!("stdin is larger than {} MiB", MAX_INPUT >> 20))
            .with_hint("render larger files with podinit render SRC DEST"));
    }
    let env: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::env::vars_os().map(|(k, v)| (k.into_vec(), v.into_vec())).collect();
    let lookup = |name: &[u8]| env.get(name).cloned();
    let (output, missing) = substitute(&input, only.as_ref(), lookup);
    if let Some((line, name)) = missing.first().filter(|_| !args.allow_missing) {
        let more = if missing.len() > 1 { format!(" (and {} more)", missing.len() - 1) } else { String::new() };
        return Err(Error::usage(format!("stdin:{line}: {} is not set{more}; nothing written", String::from_utf8_lossy(name)))
            .with_hint("set it, or add --allow-missing for GNU envsubst's empty value"));
    }
    stdout.write_all(&output).and_then(|()| stdout.flush()).map_err(write_error)
}

/// The variables SHELL-FORMAT names, in order (a name given twice is listed twice, as GNU's
/// `-v` prints it).
fn names(format: &[u8]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < format.len() {
        if format[i] == b'$'
            && let Some((name, used)) = variable(&format[i + 1..])
        {
            found.push(name.to_vec());
            i += 1 + used;
        } else {
            i += 1;
        }
    }
    found
}

/// After a `$`: `NAME` or `{NAME}`, and how many bytes that took.
fn variable(after: &[u8]) -> Option<(&[u8], usize)> {
    let start = |b: &u8| b.is_ascii_alphabetic() || *b == b'_';
    let rest = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    match after.first()? {
        b'{' => {
            let body = &after[1..];
            if !body.first().is_some_and(start) {
                return None;
            }
            let len = body.iter().position(|b| !rest(b)).unwrap_or(body.len());
            (body.get(len) == Some(&b'}')).then(|| (&body[..len], len + 2))
        }
        b if start(b) => {
            let len = after.iter().position(|b| !rest(b)).unwrap_or(after.len());
            Some((&after[..len], len))
        }
        _ => None,
    }
}

/// GNU envsubst over `input`; also the variables that were not set, with their lines.
fn substitute(input: &[u8], only: Option<&Vec<Vec<u8>>>, lookup: impl Fn(&[u8]) -> Option<Vec<u8>>) -> (Vec<u8>, Vec<(usize, Vec<u8>)>) {
    let mut out = Vec::with_capacity(input.len());
    let mut missing = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'$'
            && let Some((name, used)) = variable(&input[i + 1..])
            && only.is_none_or(|only| only.iter().any(|n| n == name))
        {
            match lookup(name) {
                Some(value) => out.extend_from_slice(&value),
                None => missing.push((line, name.to_vec())),
            }
            i += 1 + used;
            continue;
        }
        if b == b'\n' {
            line += 1;
        }
        out.push(b);
        i += 1;
    }
    (out, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], only: Option<&str>) -> (String, Vec<String>) {
        let only = only.map(|f| names(f.as_bytes()));
        let env = |name: &[u8]| match name {
            b"HOST" => Some(b"db".to_vec()),
            b"PORT" => Some(b"5432".to_vec()),
            b"EMPTY" => Some(Vec::new()),
            _ => None,
        };
        let (out, missing) = substitute(input, only.as_ref(), env);
        (
            String::from_utf8_lossy(&out).into_owned(),
            missing.into_iter().map(|(l, n)| format!("{l}:{}", String::from_utf8_lossy(&n))).collect(),
        )
    }

    #[test]
    fn gnu_forms() {
        assert_eq!(run(b"$HOST:${PORT}/$EMPTY.", None).0, "db:5432/.");
        for literal in ["a ${HOST b", "${}", "${ HOST }", "${1A}", "$$", "$", "a$", "$-x", "$\u{e9}t\u{e9}", "${HOST:-x}"] {
            assert_eq!(run(literal.as_bytes(), None).0, literal, "{literal}");
        }
        assert_eq!(run(b"\xff$HOST\xfe", None).0.as_bytes(), b"\xef\xbf\xbddb\xef\xbf\xbd", "non-UTF-8 bytes pass (shown lossily here)");
        assert_eq!(run(b"x\n$NOPE y $NOPE2", None).1, ["2:NOPE", "2:NOPE2"]);
    }

    #[test]
    fn shell_format_lists_what_is_replaced() {
        assert_eq!(run(b"$HOST $PORT $host $$", Some("$HOST")).0, "db $PORT $host $$");
        assert_eq!(run(b"$HOST ${PORT}", Some("HOST PORT")).0, "$HOST ${PORT}", "words without $ name nothing");
        assert_eq!(names(b"$A ${B}, $A $1 ${C"), [b"A".to_vec(), b"B".to_vec(), b"A".to_vec()]);
    }
}

//! The functions templates call: Go's builtins (`and`, `or` and the lazy parts live in
//! `exec`), then the Sprig and consul-template functions charts and Vault Agent templates use,
//! under both spellings where the two differ (`b64enc` and `base64Encode`, `toYaml` and
//! `toYAML`). Argument order follows Sprig, which is also consul-template's for the shared
//! names: the piped value comes last (`.X | default "a"` is `default "a" .X`).

use std::fmt::Write as _;

use base64::Engine as _;

use crate::value::format_float_g;
use crate::{Engine, Value};

/// Functions that take a missing value as an argument instead of failing on it.
const TAKE_MISSING: &[&str] = &["default", "required", "empty", "not", "coalesce", "hasKey", "ternary"];

type Res = Result<Value, String>;

/// The largest width, precision, indent or count a template may ask for.
pub(crate) const MAX_COUNT: usize = 65_535;
/// The largest string `repeat` makes.
const MAX_OUTPUT: usize = 64 << 20;

impl Engine {
    pub(crate) fn call(&self, name: &str, args: &[Value]) -> Res {
        if !TAKE_MISSING.contains(&name)
            && let Some(Value::Missing(what)) = args.iter().find(|a| matches!(a, Value::Missing(_)))
        {
            return Err(what.to_string());
        }
        if let Some(function) = self.functions.get(name) {
            return function(args);
        }
        let n = args.len();
        let want = |count: usize| -> Result<(), String> {
            if n == count { Ok(()) } else { Err(format!("wrong number of args for {name}: want {count} got {n}")) }
        };
        Ok(match name {
            // Go's builtins.
            "not" => {
                want(1)?;
                Value::Bool(!args[0].truth())
            }
            "len" => {
                want(1)?;
                Value::Int(match &args[0] {
                    Value::Str(s) => s.len(),
                    Value::List(l) => l.len(),
                    Value::Map(m) => m.len(),
                    Value::Nil => return Err("error calling len: len of nil (a null value: test it with `if` first)".into()),
                    other => return Err(format!("len of type {}", other.kind())),
                } as i64)
            }
            "index" => {
                let Some((first, keys)) = args.split_first() else { return Err("index needs a value".into()) };
                let mut v = first.clone();
                for key in keys {
                    v = index(&v, key)?;
                    if let Value::Missing(what) = v {
                        return Ok(if self.missing_ok { Value::Nil } else { Value::Missing(what) });
                    }
                }
                v
            }
            "slice" => slice(args)?,
            "print" => Value::str(sprint(args, false)),
            "println" => Value::str(sprint(args, true)),
            "printf" => {
                let Some((Value::Str(format), rest)) = args.split_first() else { return Err("printf needs a format string".into()) };
                Value::str(printf(format, rest))
            }
            "eq" => {
                let Some((first, rest)) = args.split_first().filter(|(_, r)| !r.is_empty()) else {
                    return Err("eq needs at least two arguments".into());
                };
                let mut any = false;
                for other in rest {
                    any |= equal(first, other).map_err(|e| format!("error calling eq: {e}"))?;
                }
                Value::Bool(any)
            }
            "ne" => {
                want(2)?;
                Value::Bool(!equal(&args[0], &args[1]).map_err(|e| format!("error calling ne: {e}"))?)
            }
            "lt" | "le" | "gt" | "ge" => {
                want(2)?;
                let order = order(&args[0], &args[1]).map_err(|e| format!("error calling {name}: {e}"))?;
                use std::cmp::Ordering::*;
                Value::Bool(match name {
                    "lt" => order == Less,
                    "le" => order != Greater,
                    "gt" => order == Greater,
                    _ => order != Less,
                })
            }
            // A null argument is Go's "<no value>" here (its printableValue), escaped.
            "html" => Value::str(html_escape(&sprint_no_value(args))),
            "urlquery" => Value::str(query_escape(&sprint_no_value(args))),
            "js" => Value::str(js_escape(&sprint_no_value(args))),

            // The environment and files.
            "env" => {
                want(1)?;
                let key = string(&args[0], name)?;
                match self.env.get(key) {
                    Some(v) => Value::str(v.as_str()),
                    None if self.missing_ok => Value::str(""),
                    None => Value::Missing(format!("environment variable {key:?} is not set (in env {key:?})").into()),
                }
            }
            "file" => {
                want(1)?;
                let path = string(&args[0], name)?;
                self.read_file(path)?
            }

            // Missing values and defaults.
            "default" => {
                want(2)?;
                if args[1].truth() { args[1].clone() } else { args[0].clone() }
            }
            "required" => {
                want(2)?;
                match &args[1] {
                    Value::Missing(_) | Value::Nil => return Err(string(&args[0], name)?.to_owned()),
                    Value::Str(s) if s.is_empty() => return Err(string(&args[0], name)?.to_owned()),
                    v => v.clone(),
                }
            }
            "empty" => {
                want(1)?;
                Value::Bool(!args[0].truth())
            }
            "coalesce" => args.iter().find(|v| v.truth()).cloned().unwrap_or(Value::Nil),
            "ternary" => {
                want(3)?;
                if args[2].truth() { args[0].clone() } else { args[1].clone() }
            }

            // Encodings.
            "toJSON" | "toJson" | "toJSONPretty" | "toPrettyJson" => {
                want(1)?;
                let json = args[0].to_json().map_err(|w| w.to_string())?;
                let text = if name.contains("retty") { serde_json::to_string_pretty(&json) } else { serde_json::to_string(&json) };
                Value::str(text.map_err(|e| e.to_string())?)
            }
            "toYAML" | "toYaml" => {
                want(1)?;
                let mut out = String::new();
                yaml(&args[0], 0, &mut out);
                Value::str(out.trim_end_matches('\n'))
            }
            "parseJSON" | "fromJSON" | "fromJson" => {
                want(1)?;
                let json: serde_json::Value =
                    serde_json::from_str(string(&args[0], name)?).map_err(|e| format!("{name}: not JSON: {e}"))?;
                Value::from_json(&json)
            }
            "b64enc" | "base64Encode" => {
                want(1)?;
                Value::str(base64::engine::general_purpose::STANDARD.encode(text(&args[0]).as_bytes()))
            }
            "base64URLEncode" => {
                want(1)?;
                Value::str(base64::engine::general_purpose::URL_SAFE.encode(text(&args[0]).as_bytes()))
            }
            "b64dec" | "base64Decode" | "base64URLDecode" => {
                want(1)?;
                let engine = if name == "base64URLDecode" {
                    base64::engine::general_purpose::URL_SAFE
                } else {
                    base64::engine::general_purpose::STANDARD
                };
                // Line-wrapped base64 (`base64`, `openssl base64`) decodes, as with Go's decoder.
                let packed: String = string(&args[0], name)?.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                let bytes = engine.decode(packed).map_err(|_| format!("{name}: the value is not base64"))?;
                Value::str(String::from_utf8(bytes).map_err(|_| format!("{name}: the decoded bytes are not UTF-8 text"))?)
            }
            "quote" | "squote" => {
                let q = if name == "quote" { '"' } else { '\'' };
                let parts: Vec<String> = args
                    .iter()
                    .filter(|a| !matches!(a, Value::Nil))
                    .map(|a| if q == '"' { go_quote(&text(a)) } else { format!("'{}'", text(a)) })
                    .collect();
                Value::str(parts.join(" "))
            }

            // Strings.
            "upper" | "toUpper" => Value::str(text1(name, args)?.to_uppercase()),
            "lower" | "toLower" => Value::str(text1(name, args)?.to_lowercase()),
            "title" | "toTitle" => Value::str(title(&text1(name, args)?)),
            "trim" | "trimSpace" => Value::str(text1(name, args)?.trim()),
            "trimPrefix" | "trimSuffix" => {
                want(2)?;
                let (affix, s) = (text(&args[0]), text(&args[1]));
                let out = if name == "trimPrefix" { s.strip_prefix(affix.as_str()) } else { s.strip_suffix(affix.as_str()) };
                Value::str(out.unwrap_or(&s))
            }
            "trimAll" => {
                want(2)?;
                let cut = text(&args[0]);
                Value::str(text(&args[1]).trim_matches(|c| cut.contains(c)))
            }
            "hasPrefix" | "hasSuffix" => {
                want(2)?;
                let (affix, s) = (text(&args[0]), text(&args[1]));
                Value::Bool(if name == "hasPrefix" { s.starts_with(&affix) } else { s.ends_with(&affix) })
            }
            "contains" => {
                want(2)?;
                match &args[1] {
                    Value::List(list) => Value::Bool(list.iter().any(|v| v == &args[0])),
                    Value::Map(map) => Value::Bool(map.contains_key(&text(&args[0]))),
                    other => Value::Bool(text(other).contains(&text(&args[0]))),
                }
            }
            "replace" | "replaceAll" => {
                want(3)?;
                let (from, to, s) = (text(&args[0]), text(&args[1]), text(&args[2]));
                let grows = to.len().saturating_sub(from.len());
                if grows > 0 && s.len().saturating_add(s.matches(from.as_str()).count().saturating_mul(grows)) > MAX_OUTPUT {
                    return Err(format!("{name}: the result would be over {MAX_OUTPUT} bytes"));
                }
                Value::str(s.replace(&from, &to))
            }
            "split" | "splitList" => {
                want(2)?;
                let (sep, s) = (text(&args[0]), text(&args[1]));
                if s.is_empty() {
                    Value::list(Vec::new())
                } else {
                    let items: Vec<Value> = s.split(sep.as_str()).take(crate::exec::MAX_ITEMS + 1).map(Value::str).collect();
                    if items.len() > crate::exec::MAX_ITEMS {
                        return Err(format!("{name}: more than {} items", crate::exec::MAX_ITEMS));
                    }
                    Value::list(items)
                }
            }
            "join" => {
                want(2)?;
                let sep = text(&args[0]);
                match &args[1] {
                    Value::List(list) => {
                        let parts: Vec<String> = list.iter().map(text).collect();
                        let len = parts.iter().map(String::len).sum::<usize>() + sep.len() * parts.len();
                        if len > MAX_OUTPUT {
                            return Err(format!("join: the result would be over {MAX_OUTPUT} bytes"));
                        }
                        Value::str(parts.join(&sep))
                    }
                    other => Value::str(text(other)),
                }
            }
            "indent" | "nindent" => {
                want(2)?;
                let width = int(&args[0], name)?;
                let width = usize::try_from(width).ok().filter(|w| *w <= MAX_COUNT).ok_or_else(|| format!("{name}: width out of range"))?;
                let pad = " ".repeat(width);
                let body = text(&args[1]);
                let indented = format!("{pad}{}", body.replace('\n', &format!("\n{pad}")));
                Value::str(if name == "nindent" { format!("\n{indented}") } else { indented })
            }
            "repeat" => {
                want(2)?;
                let count = usize::try_from(int(&args[0], name)?).map_err(|_| "repeat: negative count".to_owned())?;
                let piece = text(&args[1]);
                if count.saturating_mul(piece.len()) > MAX_OUTPUT {
                    return Err(format!("repeat: the result would be over {MAX_OUTPUT} bytes"));
                }
                Value::str(piece.repeat(count))
            }
            "toString" => {
                want(1)?;
                Value::str(text(&args[0]))
            }
            "atoi" | "parseInt" => {
                want(1)?;
                Value::Int(text(&args[0]).trim().parse().map_err(|_| format!("{name}: the value is not an integer"))?)
            }
            "parseBool" => {
                want(1)?;
                Value::Bool(match text(&args[0]).as_str() {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => false,
                    _ => return Err("parseBool: the value is not a boolean".to_owned()),
                })
            }

            // Lists and maps.
            "list" => Value::list(args.to_vec()),
            "dict" => {
                if !n.is_multiple_of(2) {
                    return Err("dict needs key and value pairs".into());
                }
                Value::map(args.chunks(2).map(|kv| (text(&kv[0]), kv[1].clone())).collect())
            }
            "keys" => {
                let mut keys = Vec::new();
                for arg in args {
                    let Value::Map(m) = arg else { return Err(format!("keys of type {}", arg.kind())) };
                    keys.extend(m.keys().map(|k| Value::str(k.as_str())));
                }
                Value::list(keys)
            }
            "hasKey" => {
                want(2)?;
                Value::Bool(matches!(&args[0], Value::Map(m) if m.contains_key(&text(&args[1]))))
            }
            _ => return Err(format!("function {name:?} not defined")),
        })
    }
}

fn string<'a>(value: &'a Value, func: &str) -> Result<&'a str, String> {
    match value {
        Value::Str(s) => Ok(s),
        other => Err(format!("{func}: expected a string, got a {}", other.kind())),
    }
}

fn text(value: &Value) -> String {
    value.to_string()
}

fn text1(name: &str, args: &[Value]) -> Result<String, String> {
    match args {
        [one] => Ok(text(one)),
        _ => Err(format!("wrong number of args for {name}: want 1 got {}", args.len())),
    }
}

fn int(value: &Value, func: &str) -> Result<i64, String> {
    match value {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        Value::Str(s) => s.trim().parse().map_err(|_| format!("{func}: the value is not an integer")),
        other => Err(format!("{func}: expected an integer, got {}", other.kind())),
    }
}

impl Engine {
    /// `file PATH`: a regular file (links followed, as the operator's paths are), never a
    /// FIFO to hang on, at most [`MAX_OUTPUT`] bytes; nothing on a pseudo-file system
    /// (`/proc/self/environ` holds the process's credentials, whatever `env` hides), and
    /// none of the files the caller named with [`Engine::deny_files`] (the credentials it
    /// logs in with), by whatever name or link they are reached.
    fn read_file(&self, path: &str) -> Res {
        use std::io::Read as _;
        use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
        let failed = |why: String| format!("file {path:?}: {why}");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path)
            .map_err(|e| failed(io_reason(&e)))?;
        let meta = file.metadata().map_err(|e| failed(io_reason(&e)))?;
        if !meta.is_file() {
            return Err(failed("not a regular file".into()));
        }
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| failed(e.desc().into()))?.filesystem_type();
        if [nix::sys::statfs::PROC_SUPER_MAGIC, nix::sys::statfs::SYSFS_MAGIC].contains(&fs) {
            return Err(failed("templates do not read /proc or /sys".into()));
        }
        let id = (meta.dev(), meta.ino());
        if self.denied.iter().filter_map(|p| std::fs::metadata(p).ok()).any(|m| (m.dev(), m.ino()) == id) {
            return Err(failed("a credential podinit logs in with; templates cannot read it".into()));
        }
        if meta.len() > MAX_OUTPUT as u64 {
            return Err(failed(format!("larger than {} MiB", MAX_OUTPUT >> 20)));
        }
        let mut text = String::new();
        file.take(MAX_OUTPUT as u64).read_to_string(&mut text).map_err(|e| failed(io_reason(&e)))?;
        Ok(Value::str(text))
    }
}

fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_lowercase()
}

fn index(value: &Value, key: &Value) -> Result<Value, String> {
    match (value, key) {
        (Value::Map(m), key) => {
            let key = text(key);
            Ok(m.get(&key).cloned().unwrap_or_else(|| Value::Missing(format!("map has no entry for key {key:?} (in index)").into())))
        }
        (Value::List(l), Value::Int(i)) => {
            usize::try_from(*i).ok().and_then(|i| l.get(i)).cloned().ok_or_else(|| format!("index out of range: {i}"))
        }
        (Value::Str(s), Value::Int(i)) => usize::try_from(*i)
            .ok()
            .and_then(|i| s.as_bytes().get(i))
            .map(|b| Value::Int(i64::from(*b)))
            .ok_or_else(|| format!("index out of range: {i}")),
        (Value::Nil, _) => Err("index of untyped nil".into()),
        (v, k) => Err(format!("can't index item of type {} with {}", v.kind(), k.kind())),
    }
}

fn slice(args: &[Value]) -> Res {
    let Some((value, bounds)) = args.split_first() else { return Err("slice needs a value".into()) };
    let mut idx = Vec::new();
    for b in bounds {
        let Value::Int(i) = b else { return Err(format!("slice: index of type {}", b.kind())) };
        idx.push(usize::try_from(*i).map_err(|_| format!("slice: negative index {i}"))?);
    }
    let len = match value {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        other => return Err(format!("can't slice item of type {}", other.kind())),
    };
    let lo = idx.first().copied().unwrap_or(0);
    let hi = idx.get(1).copied().unwrap_or(len);
    if lo > hi || hi > len || idx.len() > 2 {
        return Err(format!("slice: index out of range [{lo}:{hi}] with length {len}"));
    }
    Ok(match value {
        Value::Str(s) => Value::str(s.get(lo..hi).ok_or("slice: not on a character boundary")?),
        Value::List(l) => Value::list(l[lo..hi].to_vec()),
        _ => Value::Nil,
    })
}

/// `eq` for two values: values of one kind compare; ints and floats compare as numbers (Go
/// refuses `eq 2 2.0`, but there the author's Go types decide, here the data file's spelling:
/// Helm's values are all float64, so `gt .Values.cpu 0.5` must work with `cpu: 1`); null
/// equals only null and is unequal to anything else without an error; lists and maps are not
/// comparable; other mixes are an error, as in Go.
fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::List(_) | Value::Map(_), _) | (_, Value::List(_) | Value::Map(_)) => {
            return Err(format!("non-comparable type {}", if matches!(a, Value::List(_) | Value::Map(_)) { a.kind() } else { b.kind() }));
        }
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => order(a, b)? == std::cmp::Ordering::Equal,
        (x, y) => return Err(format!("incompatible types for comparison: {} and {}", x.kind(), y.kind())),
    })
}

/// `lt` and friends: numbers (ints and floats together, as `equal` compares them) and strings;
/// anything else (booleans, null, lists, maps, a number with a string) is an error, as in Go.
fn order(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    let nan = || "NaN cannot be ordered".to_owned();
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).ok_or_else(nan),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y).ok_or_else(nan),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)).ok_or_else(nan),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Int(_) | Value::Float(_) | Value::Str(_), Value::Int(_) | Value::Float(_) | Value::Str(_)) => {
            Err(format!("incompatible types for comparison: {} and {}", a.kind(), b.kind()))
        }
        _ => Err(format!("invalid type for comparison: {} and {}", a.kind(), b.kind())),
    }
}

/// `fmt.Sprint` (spaces between operands when neither is a string) or `fmt.Sprintln`; null is
/// `<nil>`, as fmt prints a nil interface.
fn sprint(args: &[Value], line: bool) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && (line || !(matches!(a, Value::Str(_)) || matches!(args[i - 1], Value::Str(_)))) {
            out.push(' ');
        }
        let _ = write!(out, "{}", a.go());
    }
    if line {
        out.push('\n');
    }
    out
}

/// The text `html`, `js` and `urlquery` escape: Go's `evalArgs`, where a null argument is
/// `<no value>` and the rest is `fmt.Sprint`.
fn sprint_no_value(args: &[Value]) -> String {
    if args.iter().any(|a| matches!(a, Value::Nil)) {
        let shown: Vec<Value> = args.iter().map(|a| if matches!(a, Value::Nil) { Value::str("<no value>") } else { a.clone() }).collect();
        return sprint(&shown, false);
    }
    sprint(args, false)
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %f %F %e %g %x %X %o %b %t %c %%`,
/// with flags `- + 0 space #`, width and precision.
fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
                chars.next();
            }
            n
        };
        // `%[n]v`: argument n (1-based) next; `*`: the width or precision from an argument.
        let explicit = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, next: &mut usize| -> bool {
            if chars.peek() != Some(&'[') {
                return true;
            }
            chars.next();
            let n = number(chars);
            if chars.next() != Some(']') {
                return false;
            }
            match n {
                Some(n) if n >= 1 && n <= args.len() => {
                    *next = n - 1;
                    true
                }
                _ => false,
            }
        };
        let star = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, next: &mut usize| -> Option<Option<usize>> {
            if chars.peek() == Some(&'*') {
                chars.next();
                let n = match args.get(*next) {
                    Some(Value::Int(i)) => usize::try_from(*i).ok(),
                    _ => None,
                };
                *next += 1;
                return n.map(Some);
            }
            Some(number(chars))
        };
        if !explicit(&mut chars, &mut next) {
            out.push_str("%!(BADINDEX)");
            continue;
        }
        let Some(width) = star(&mut chars, &mut next) else {
            out.push_str("%!(BADWIDTH)");
            continue;
        };
        let precision = if chars.peek() == Some(&'.') {
            chars.next();
            match star(&mut chars, &mut next) {
                Some(p) => Some(p.unwrap_or(0)),
                None => {
                    out.push_str("%!(BADPREC)");
                    continue;
                }
            }
        } else {
            None
        };
        if !explicit(&mut chars, &mut next) {
            out.push_str("%!(BADINDEX)");
            continue;
        }
        if width.is_some_and(|w| w > MAX_COUNT) || precision.is_some_and(|p| p > MAX_COUNT) {
            // The verb and its argument are used up, so the rest of the format lines up.
            out.push_str(if width.is_some_and(|w| w > MAX_COUNT) { "%!(BADWIDTH)" } else { "%!(BADPREC)" });
            chars.next();
            next += 1;
            continue;
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let sign = |s: String, neg: bool| {
            if neg || !(plus || space) {
                s
            } else if plus {
                format!("+{s}")
            } else {
                format!(" {s}")
            }
        };
        let body = match (verb, arg) {
            ('d', Value::Int(i)) => sign(i.to_string(), *i < 0),
            ('x', Value::Int(i)) => format!("{i:x}"),
            ('X', Value::Int(i)) => format!("{i:X}"),
            ('o', Value::Int(i)) => format!("{i:o}"),
            ('b', Value::Int(i)) => format!("{i:b}"),
            ('c', Value::Int(i)) => u32::try_from(*i).ok().and_then(char::from_u32).map_or_else(|| "\u{fffd}".into(), String::from),
            ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('X', Value::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
            ('f' | 'F', Value::Float(x)) => sign(format!("{x:.*}", precision.unwrap_or(6)), *x < 0.0),
            ('f' | 'F', Value::Int(i)) => format!("%!{verb}(int={i})"),
            ('e', Value::Float(x)) => sign(go_exp(*x, precision.unwrap_or(6)), *x < 0.0),
            ('g', Value::Float(x)) => sign(format_float_g(*x), *x < 0.0),
            ('q', Value::Str(s)) => go_quote(s),
            ('t', Value::Bool(b)) => b.to_string(),
            ('s' | 'v', Value::Str(s)) => match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s.to_string(),
            },
            ('v' | 'd', Value::Float(x)) if verb == 'v' => sign(format_float_g(*x), *x < 0.0),
            ('v', Value::Int(i)) => sign(i.to_string(), *i < 0),
            ('T', v) => v.go_type().to_owned(),
            ('v', Value::Nil) => "<nil>".to_owned(),
            (verb, Value::Nil) => format!("%!{verb}(<nil>)"),
            ('v' | 's', v) => v.to_string(),
            (verb, v) => format!("%!{verb}({}={v})", v.go_type()),
        };
        let pad = width.unwrap_or(0).saturating_sub(body.chars().count());
        if minus {
            out.push_str(&body);
            out.push_str(&" ".repeat(pad));
        } else if zero && matches!(arg, Value::Int(_) | Value::Float(_)) {
            let (s, digits) = if body.starts_with(['-', '+', ' ']) { body.split_at(1) } else { ("", body.as_str()) };
            out.push_str(s);
            out.push_str(&"0".repeat(pad));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&body);
        }
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| if matches!(a, Value::Nil) { "<nil>".to_owned() } else { format!("{}={a}", a.go_type()) })
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn go_exp(x: f64, precision: usize) -> String {
    let text = format!("{x:.precision$e}");
    match text.split_once('e') {
        Some((m, e)) if e.starts_with('-') => format!("{m}e-{:0>2}", &e[1..]),
        Some((m, e)) => format!("{m}e+{e:0>2}"),
        None => text,
    }
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace() || c == '-' || c == '_';
    }
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            // Go writes every other control character as \u00XX (a newline too), and the
            // non-ASCII characters unicode.IsPrint refuses as \uXXXX.
            c if (c as u32) < 0x20 || (!c.is_ascii() && !go_printable(c)) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `unicode.IsPrint` for non-ASCII characters: not a space other than U+0020 (Zs, Zl,
/// Zp), a control or format character (Cc, Cf), private use (Co) or a noncharacter. Other
/// code points a Unicode version leaves unassigned pass (Go's answer for those changes with
/// its Unicode tables: U+FDFF is escaped by Go 1.19, not by Go 1.21).
fn go_printable(c: char) -> bool {
    const NOT_PRINT: &[(u32, u32)] = &[
        (0x80, 0x9F),
        (0xA0, 0xA0),
        (0xAD, 0xAD),
        (0x600, 0x605),
        (0x61C, 0x61C),
        (0x6DD, 0x6DD),
        (0x70F, 0x70F),
        (0x8E2, 0x8E2),
        (0x1680, 0x1680),
        (0x180E, 0x180E),
        (0x2000, 0x200F),
        (0x2028, 0x202F),
        (0x205F, 0x2064),
        (0x2066, 0x206F),
        (0x3000, 0x3000),
        (0xE000, 0xF8FF),
        (0xFDD0, 0xFDEF),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x13438),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
        (0xF0000, 0x10FFFF),
    ];
    let c = c as u32;
    c & 0xFFFE != 0xFFFE && !NOT_PRINT.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Block-style YAML: what `toYAML` prints (maps sorted by key; strings quoted when YAML would
/// read them as something else).
fn yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Map(m) if !m.is_empty() => {
            for (k, v) in m.iter() {
                let _ = write!(out, "{pad}{}:", yaml_scalar(k));
                yaml_child(v, indent, out);
            }
        }
        Value::List(l) if !l.is_empty() => {
            for v in l.iter() {
                let _ = write!(out, "{pad}-");
                match v {
                    Value::Map(m) if !m.is_empty() => {
                        // The first key on the dash's line, the rest below it.
                        let mut inner = String::new();
                        yaml(v, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(inner.trim_start());
                    }
                    Value::List(inner) if !inner.is_empty() => {
                        out.push('\n');
                        yaml(v, indent + 2, out);
                    }
                    _ => yaml_child(v, indent, out),
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", yaml_inline(scalar));
        }
    }
}

fn yaml_child(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            yaml(value, indent + 2, out);
        }
        Value::List(l) if !l.is_empty() => {
            out.push('\n');
            yaml(value, indent, out);
        }
        // A block scalar, unless YAML could not read it back as the same text (a first line
        // that starts with a space, or more than one trailing newline): then quoted.
        Value::Str(s) if s.contains('\n') && !s.starts_with([' ', '\t']) && !s.ends_with("\n\n") => {
            let _ = writeln!(out, " |{}", if s.ends_with('\n') { "" } else { "-" });
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                let _ = writeln!(out, "{}{line}", " ".repeat(indent + 2));
            }
        }
        scalar => {
            let _ = writeln!(out, " {}", yaml_inline(scalar));
        }
    }
}

fn yaml_inline(value: &Value) -> String {
    match value {
        Value::Nil | Value::Missing(_) => "null".into(),
        Value::Str(s) => yaml_scalar(s),
        Value::Map(_) => "{}".into(),
        Value::List(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// What YAML would read as a number, a date or a time (`1`, `0x1f`, `1e3`, `2024-01-01`, `1:20`).
fn looks_numeric(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    s.parse::<f64>().is_ok()
        || (body.starts_with(|c: char| c.is_ascii_digit()) && body.chars().all(|c| c.is_ascii_hexdigit() || "._:-+xXoO".contains(c)))
}

fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with([' ', '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', '.', '+'])
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.chars().any(|c| c.is_control())
        && !looks_numeric(s)
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~" | ".inf" | ".nan"
        );
    if plain { s.to_owned() } else { serde_json::Value::String(s.to_owned()).to_string() }
}

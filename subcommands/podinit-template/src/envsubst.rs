//! envsubst's `$VAR` forms, strict about unset variables.
//!
//! `$NAME`, `${NAME}`, and the POSIX shell forms charts lean on: `${NAME:-default}` and
//! `${NAME-default}`, `${NAME:?message}` and `${NAME?message}`, `${NAME:+alt}` and
//! `${NAME+alt}` (the word may itself hold `$VAR`s). `$$` is a literal `$`. A `$` that starts
//! none of these stays as it is.
//!
//! With a [`Variables`] list (GNU envsubst's SHELL-FORMAT argument, `'$HOST ${PORT}'`), only
//! the variables listed are replaced and everything else, `$$` included, is left exactly as
//! written: an nginx or shell config's own `$host` and `$$` survive.

use std::collections::{BTreeMap, BTreeSet};

use crate::TemplateError;

/// The variables to replace (GNU envsubst's SHELL-FORMAT).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables(BTreeSet<String>);

impl Variables {
    /// Reads `'$A ${B}, $C'`: every `$NAME` or `${NAME}` in it.
    pub fn parse(format: &str) -> Result<Self, String> {
        let mut names = BTreeSet::new();
        let mut rest = format;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let braced = rest.starts_with('{');
            let body = if braced { &rest[1..] } else { rest };
            let len = name_len(body);
            if len == 0 || (braced && !body[len..].starts_with('}')) {
                return Err(format!("{format:?}: expected $NAME or ${{NAME}} after the $"));
            }
            names.insert(body[..len].to_owned());
            rest = &body[len..];
        }
        if names.is_empty() {
            return Err(format!("{format:?} names no variable (write them as '$NAME ${{OTHER}}')"));
        }
        Ok(Self(names))
    }

    /// Whether `name` is listed.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

fn name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if !bytes.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
        return 0;
    }
    bytes.iter().position(|b| !(b.is_ascii_alphanumeric() || *b == b'_')).unwrap_or(bytes.len())
}

/// Replaces the variables of `text` (the template `name`, for errors) from `env`. Unset
/// variables are an error naming the line and the variable, unless `allow_missing` (then
/// empty, as GNU envsubst).
pub fn envsubst(
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
    only: Option<&Variables>,
    allow_missing: bool,
) -> Result<String, TemplateError> {
    let sub = Subst { name, env, only, allow_missing };
    let mut out = String::with_capacity(text.len());
    sub.run(text, 1, &mut out)?;
    Ok(out)
}

struct Subst<'a> {
    name: &'a str,
    env: &'a BTreeMap<String, String>,
    only: Option<&'a Variables>,
    allow_missing: bool,
}

impl Subst<'_> {
    fn run(&self, text: &str, first_line: usize, out: &mut String) -> Result<(), TemplateError> {
        let mut rest = text;
        let mut line = first_line;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            line += rest[..at].matches('\n').count();
            let after = &rest[at + 1..];
            let taken = self.one(after, line, out)?;
            line += after[..taken].matches('\n').count();
            rest = &after[taken..];
        }
        out.push_str(rest);
        Ok(())
    }

    /// What follows one `$`: writes its expansion, returns how much of `after` it used.
    fn one(&self, after: &str, line: usize, out: &mut String) -> Result<usize, TemplateError> {
        let err = |message: String| TemplateError::new(self.name, line, message);
        if after.starts_with('$') && self.only.is_none() {
            out.push('$');
            return Ok(1);
        }
        let listed = |name: &str| self.only.is_none_or(|only| only.contains(name));
        let Some(body) = after.strip_prefix('{') else {
            let len = name_len(after);
            if len == 0 || !listed(&after[..len]) {
                out.push('$');
                return Ok(0);
            }
            out.push_str(&self.value(&after[..len], line)?);
            return Ok(len);
        };
        let len = name_len(body);
        if len == 0 {
            if self.only.is_some() {
                out.push('$');
                return Ok(0);
            }
            return Err(err(format!("${{{}: bad substitution (expected ${{NAME}})", body.chars().take(10).collect::<String>())));
        }
        let var = &body[..len];
        if !listed(var) {
            out.push('$');
            return Ok(0);
        }
        let close = closing_brace(body).ok_or_else(|| err(format!("${{{var}: no closing }}")))?;
        let op_and_word = &body[len..close];
        let used = 1 + close + 1;
        let value = self.env.get(var);
        if op_and_word.is_empty() {
            out.push_str(&self.value(var, line)?);
            return Ok(used);
        }
        let (colon, rest) = match op_and_word.strip_prefix(':') {
            Some(rest) => (true, rest),
            None => (false, op_and_word),
        };
        let mut chars = rest.chars();
        let op = chars.next();
        let word = chars.as_str();
        // `:` tests "unset or empty"; without it, only "unset".
        let set = value.is_some_and(|v| !(colon && v.is_empty()));
        match op {
            Some('-') if set => out.push_str(value.map_or("", String::as_str)),
            Some('-') => self.run(word, line, out)?,
            Some('+') if set => self.run(word, line, out)?,
            Some('+') => {}
            Some('?') if set => out.push_str(value.map_or("", String::as_str)),
            Some('?') => {
                let mut message = String::new();
                self.run(word, line, &mut message)?;
                if message.is_empty() {
                    message = if colon { "is not set or empty".into() } else { "is not set".into() };
                }
                return Err(err(format!("{var}: {message}")));
            }
            _ => return Err(err(format!("${{{var}{op_and_word}}}: unsupported substitution (podinit knows -, :-, ?, :?, + and :+)"))),
        }
        Ok(used)
    }

    fn value(&self, var: &str, line: usize) -> Result<String, TemplateError> {
        match self.env.get(var) {
            Some(v) => Ok(v.clone()),
            None if self.allow_missing => Ok(String::new()),
            None => Err(TemplateError::new(self.name, line, format!("variable {var:?} is not set"))),
        }
    }
}

/// Where the `}` closing a `${` is, in `body` (after the `{`), counting nested `${…}`.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

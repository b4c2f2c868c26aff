//! `--template SRC=NAME`: Vault Agent / consul-template templates rendered into the set.
//!
//! Rendering runs in rounds, as consul-template does: a round renders every template with
//! the answers known so far; `secret` and `secrets` calls without an answer are recorded
//! and give nothing (so `with secret …` skips its body); then every recorded call is made
//! at once, and the next round renders again. When a round records no new call, its output
//! (or its first error) is the result. Each distinct call is made once for all templates,
//! which is what makes two templates of one PKI `issue` (certificate and key) agree.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;

use podinit_core::{Error, Kind};
use podinit_template::{Engine, TemplateError, Value};

use crate::output::Planned;
use crate::spec;

/// At most this many rounds: each round follows secrets whose paths came from other secrets.
pub(crate) const MAX_ROUNDS: usize = 8;

/// One `--template SRC=NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TemplateArg {
    pub(crate) src: PathBuf,
    pub(crate) out: PathBuf,
}

impl TemplateArg {
    /// Parses `SRC=NAME`: a template file and the file it becomes, relative to `--out`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let Some((src, out)) = text.split_once('=') else {
            return Err(format!("'{text}': expected SRC=NAME, e.g. /templates/db.tmpl=db.env"));
        };
        if src.is_empty() {
            return Err(format!("'{text}': the template file is empty"));
        }
        Ok(Self { src: PathBuf::from(src), out: spec::output_path(text, out)? })
    }
}

/// A call a template makes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Query {
    /// `secret "PATH"`.
    Read(String),
    /// `secret "PATH" "k=v" …`: a write whose answer is the secret (PKI `issue`).
    Write(String, BTreeMap<String, String>),
    /// `secrets "PATH/"`.
    List(String),
}

impl Query {
    /// `reading secret/app/db` (never a written value).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Read(path) => format!("reading {path}"),
            Self::Write(path, data) => format!("writing {path} ({})", data.keys().cloned().collect::<Vec<_>>().join(", ")),
            Self::List(path) => format!("listing {path}"),
        }
    }
}

#[derive(Default)]
struct Answers {
    known: BTreeMap<Query, Value>,
    pending: BTreeSet<Query>,
}

/// The templates of one run, parsed, with the answers they have had. Each template has an
/// engine of its own (Vault Agent renders each alone: two files may `define` one name), all
/// sharing the answers.
pub(crate) struct Templates {
    /// Template name (the SRC as given), its engine and its output.
    outputs: Vec<(String, Engine, PathBuf)>,
    answers: Rc<RefCell<Answers>>,
}

/// Variables a template may read with `env`: the environment without the credentials
/// vault-fetch itself reads (a template must not copy the token or a secret id into a file;
/// `--write-token` is the way to hand the token over).
fn template_env(vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>) -> BTreeMap<String, String> {
    const CREDENTIALS: [&str; 3] = ["TOKEN", "SECRET_ID", "ROLE_ID"];
    vars.filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| !["VAULT_", "BAO_"].iter().any(|prefix| k.strip_prefix(prefix).is_some_and(|rest| CREDENTIALS.contains(&rest))))
        .collect()
}

impl Templates {
    /// Reads and parses every template: a missing file or a syntax error is bad input.
    /// `stop` ends a render at the deadline or on SIGTERM; `credentials` are the files the
    /// login reads, which `file` refuses.
    pub(crate) fn load(ctx: &podinit_core::Context, args: &[TemplateArg], credentials: &[PathBuf]) -> Result<Self, Error> {
        let answers = Rc::new(RefCell::new(Answers::default()));
        let env = template_env(std::env::vars_os());
        let mut outputs = Vec::new();
        for arg in args {
            let name = arg.src.display().to_string();
            let source = std::fs::read_to_string(&arg.src).map_err(|e| {
                Error::usage(format!("--template {name}: {}", podinit_core::redact::io_reason(&e)))
                    .with_hint("mount the ConfigMap holding the template at that path")
            })?;
            let mut engine = Engine::new(env.clone());
            engine.stop_check(ctx.stop_check());
            engine.deny_files(credentials.iter().map(PathBuf::as_path));
            let known = Rc::clone(&answers);
            engine.function("secret", Box::new(move |args| secret(&known, args)));
            let known = Rc::clone(&answers);
            engine.function("secrets", Box::new(move |args| secrets(&known, args)));
            engine.add(&name, &source).map_err(|e| Error::usage(format!("template {e}")))?;
            outputs.push((name, engine, arg.out.clone()));
        }
        Ok(Self { outputs, answers })
    }

    /// Renders every template with the answers known; returns the outputs (or errors) and
    /// the calls still to make. The outputs are final only when no call is left.
    pub(crate) fn round(&self) -> (Vec<Result<Planned, TemplateError>>, Vec<Query>) {
        self.answers.borrow_mut().pending.clear();
        let data = Value::Nil;
        let rendered = self
            .outputs
            .iter()
            .map(|(name, engine, out)| engine.render(name, &data).map(|text| Planned { rel: out.clone(), bytes: text.into_bytes() }))
            .collect();
        let pending = std::mem::take(&mut self.answers.borrow_mut().pending).into_iter().collect();
        (rendered, pending)
    }

    /// Records the answer to a call.
    pub(crate) fn answer(&self, query: Query, value: Value) {
        self.answers.borrow_mut().known.insert(query, value);
    }
}

/// A template error as podinit reports it (names the template, the line and the key).
pub(crate) fn failed(err: &TemplateError) -> Error {
    Error::new(Kind::Failed, anyhow::anyhow!("template {err}"))
}

fn strings<'a>(args: &'a [Value], function: &str) -> Result<Vec<&'a str>, String> {
    args.iter()
        .map(|a| match a {
            Value::Str(s) => Ok(&**s),
            other => Err(format!("{function}: arguments must be strings, not {}", other.kind())),
        })
        .collect()
}

/// `secret "PATH"` reads; `secret "PATH" "k=v" …` writes (consul-template's rule).
fn secret(answers: &RefCell<Answers>, args: &[Value]) -> Result<Value, String> {
    let args = strings(args, "secret")?;
    let Some((path, rest)) = args.split_first() else { return Err("secret: needs a path".into()) };
    let path = clean(path).ok_or_else(|| format!("secret: {path:?} is not a secret path"))?;
    let mut data = BTreeMap::new();
    for (i, pair) in rest.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            // The pair may hold a secret: name only its position.
            return Err(format!("secret {path:?}: argument {} is not a k=v pair", i + 2));
        };
        data.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let query = if data.is_empty() { Query::Read(path) } else { Query::Write(path, data) };
    Ok(recall(answers, query, Value::Nil))
}

/// `secrets "PATH/"`: the names under a path (KV v2: its metadata), sorted.
fn secrets(answers: &RefCell<Answers>, args: &[Value]) -> Result<Value, String> {
    let args = strings(args, "secrets")?;
    let [path] = args[..] else { return Err("secrets: takes one path".into()) };
    let path = clean(path).ok_or_else(|| format!("secrets: {path:?} is not a secret path"))?;
    Ok(recall(answers, Query::List(path), Value::list(Vec::new())))
}

fn recall(answers: &RefCell<Answers>, query: Query, unknown: Value) -> Value {
    let mut answers = answers.borrow_mut();
    if let Some(value) = answers.known.get(&query) {
        return value.clone();
    }
    answers.pending.insert(query);
    unknown
}

/// A path without surrounding `/`, with no empty, `.` or `..` segment (a `?version=N`
/// query is kept).
fn clean(path: &str) -> Option<String> {
    let path = path.trim().trim_matches('/');
    let bare = path.split('?').next().unwrap_or_default();
    (!bare.is_empty() && bare.split('/').all(|s| !s.is_empty() && s != "." && s != "..")).then(|| path.to_owned())
}

/// What a template sees for an answer: consul-template's `Secret` (`.Data`, `.LeaseID`,
/// `.LeaseDuration`, `.Renewable`, `.RequestID`, `.Warnings`).
pub(crate) fn secret_value(body: &serde_json::Value) -> Value {
    let get = |key: &str, default: serde_json::Value| body.get(key).filter(|v| !v.is_null()).cloned().unwrap_or(default);
    Value::from_json(&serde_json::json!({
        "RequestID": get("request_id", "".into()),
        "LeaseID": get("lease_id", "".into()),
        "LeaseDuration": get("lease_duration", 0.into()),
        "Renewable": get("renewable", false.into()),
        "Data": get("data", serde_json::Value::Null),
        "Warnings": get("warnings", serde_json::json!([])),
    }))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::disallowed_methods, reason = "fixtures are written plainly")]

    use super::*;

    fn templates(sources: &[(&str, &str)]) -> (tempfile::TempDir, Templates) {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<TemplateArg> = sources
            .iter()
            .map(|(name, source)| {
                std::fs::write(dir.path().join(name), source).unwrap();
                TemplateArg::parse(&format!("{}={name}.out", dir.path().join(name).display())).unwrap()
            })
            .collect();
        let (ctx, _signal) = podinit_core::Context::for_tests(&podinit_core::GlobalArgs::default());
        let templates = Templates::load(&ctx, &args, &[]).unwrap();
        (dir, templates)
    }

    #[test]
    fn rounds_find_every_call_and_share_answers() {
        let cert = r#"{{ with secret "pki/issue/web" "common_name=web.shop.svc" "ttl=24h" }}{{ .Data.certificate }}{{ end }}"#;
        let key = r#"{{ with secret "pki/issue/web" "common_name=web.shop.svc" "ttl=24h" }}{{ .Data.private_key }}{{ end }}"#;
        let db = r#"{{ with secret "secret/app/db" }}{{ with secret (printf "database/creds/%s" .Data.data.role) }}{{ .Data.username }}{{ end }}{{ end }}"#;
        let list = r#"{{ range secrets "secret/app/" }}{{ . }},{{ end }}"#;
        let (_dir, t) = templates(&[("cert", cert), ("key", key), ("db", db), ("list", list)]);
        let (_, pending) = t.round();
        let issue = Query::Write(
            "pki/issue/web".into(),
            [("common_name", "web.shop.svc"), ("ttl", "24h")].map(|(k, v)| (k.into(), v.into())).into(),
        );
        assert_eq!(pending, [Query::Read("secret/app/db".into()), issue.clone(), Query::List("secret/app".into())]);
        t.answer(issue, secret_value(&serde_json::json!({"data": {"certificate": "CERT", "private_key": "KEY"}})));
        t.answer(Query::Read("secret/app/db".into()), secret_value(&serde_json::json!({"data": {"data": {"role": "app"}}})));
        t.answer(Query::List("secret/app".into()), Value::list(vec![Value::str("a"), Value::str("b")]));
        // The second round follows the path that came from the first secret.
        let (_, pending) = t.round();
        assert_eq!(pending, [Query::Read("database/creds/app".into())]);
        t.answer(
            Query::Read("database/creds/app".into()),
            secret_value(&serde_json::json!({"lease_id": "x", "data": {"username": "v-app"}})),
        );
        let (out, pending) = t.round();
        assert!(pending.is_empty());
        let out: Vec<String> = out.into_iter().map(|r| String::from_utf8(r.unwrap().bytes).unwrap()).collect();
        assert_eq!(out, ["CERT", "KEY", "v-app", "a,b,"]);
    }

    #[test]
    fn errors_name_the_template_line_and_key_never_a_value() {
        let source = "a\n{{ with secret \"secret/app/db\" }}{{ .Data.data.pasword }}{{ end }}";
        let (_dir, t) = templates(&[("env", source)]);
        t.round();
        t.answer(Query::Read("secret/app/db".into()), secret_value(&serde_json::json!({"data": {"data": {"password": "hunter2"}}})));
        let (out, _) = t.round();
        let err = out.into_iter().next().unwrap().unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("pasword") && !err.message.contains("hunter2"), "{err}");
        // A bad k=v pair names its position, not its text.
        let (_dir, t) = templates(&[("w", "{{ secret \"pki/issue/web\" \"hunter2\" }}")]);
        let err = t.round().0.into_iter().next().unwrap().unwrap_err();
        assert!(err.message.contains("argument 2 is not a k=v pair") && !err.message.contains("hunter2"), "{err}");
    }

    #[test]
    fn each_template_has_its_own_defines_and_no_credentials() {
        let (_dir, t) = templates(&[
            ("a", "{{ define \"x\" }}A{{ end }}{{ template \"x\" }}"),
            ("b", "{{ define \"x\" }}B{{ end }}{{ template \"x\" }}"),
        ]);
        let (out, pending) = t.round();
        assert!(pending.is_empty());
        let out: Vec<String> = out.into_iter().map(|r| String::from_utf8(r.unwrap().bytes).unwrap()).collect();
        assert_eq!(out, ["A", "B"]);
        let vars = ["VAULT_TOKEN", "BAO_TOKEN", "VAULT_SECRET_ID", "BAO_ROLE_ID", "VAULT_ADDR", "APP_TOKEN", "PATH"];
        let env = template_env(vars.iter().map(|k| ((*k).into(), "v".into())));
        assert_eq!(env.keys().map(String::as_str).collect::<Vec<_>>(), ["APP_TOKEN", "PATH", "VAULT_ADDR"]);
    }

    #[test]
    fn bad_arguments() {
        assert!(TemplateArg::parse("a.tmpl").is_err());
        assert!(TemplateArg::parse("a.tmpl=../x").is_err());
        assert!(TemplateArg::parse("=x").is_err());
        assert_eq!(TemplateArg::parse("/t/a.tmpl=conf/a").unwrap().out, PathBuf::from("conf/a"));
        assert_eq!(clean("/secret/app/"), Some("secret/app".into()));
        assert_eq!(clean("secret/../x"), None);
        assert_eq!(clean("secret/app?version=2"), Some("secret/app?version=2".into()));
    }
}

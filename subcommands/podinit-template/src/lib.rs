//! podinit's template engines, shared by `render` and `vault-fetch` (applets never depend on
//! each other): Go's text/template syntax, as Helm, consul-template, Vault Agent, dockerize and
//! gomplate users write it, and envsubst's `$VAR` forms.
//!
//! Both are strict by default: a missing key or an unset variable is an error naming the
//! template, the line and the name, never an empty string in a config file.
//!
//! - [`Engine`]: a set of Go templates (files share their `define`s, as in Helm), rendered
//!   against a [`Value`]; [`parse`] reads them, [`exec`] runs them, [`funcs`] holds Go's
//!   builtins and the Sprig and consul-template functions charts use.
//! - [`envsubst()`]: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:?message}`, `$$`, and GNU
//!   envsubst's list of the variables to replace.
//!
//! The engine is our own (about 1,500 lines) rather than a crate: see ARCHITECTURE.md.

mod check;
mod envsubst;
mod exec;
mod funcs;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

pub use crate::envsubst::{Variables, envsubst};
pub use crate::value::Value;

/// A template that does not parse or does not render: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The template's name (its file).
    pub template: String,
    /// The line (1-based) of the action that failed.
    pub line: usize,
    /// What went wrong, e.g. `map has no entry for key "DB_HOST" (in .Env.DB_HOST)`.
    pub message: String,
}

impl TemplateError {
    pub(crate) fn new(template: &str, line: usize, message: impl Into<String>) -> Self {
        Self { template: template.to_owned(), line, message: message.into() }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.template, self.line, self.message)
    }
}

impl std::error::Error for TemplateError {}

/// A function a caller adds to the engine (vault-fetch's `secret`).
pub type Function = Box<dyn Fn(&[Value]) -> Result<Value, String>>;

/// A set of Go templates and what they render with.
pub struct Engine {
    templates: BTreeMap<String, parse::Parsed>,
    /// `define`d (and `block`) templates of every file, with the file that defines them.
    defines: BTreeMap<String, (String, Vec<parse::Node>)>,
    /// Names in `defines` that are a `block`'s default (another file's `define` replaces it).
    block_defaults: std::collections::BTreeSet<String>,
    env: BTreeMap<String, String>,
    functions: BTreeMap<String, Function>,
    delims: (String, String),
    pub(crate) missing_ok: bool,
    /// Asked every few thousand steps whether to go on (the caller's deadline and stop
    /// signals): an `Err` ends the render with its text.
    pub(crate) stop: Option<StopCheck>,
    /// Files the `file` function refuses (the caller's credentials), looked up at each call
    /// (a projected token is replaced by the kubelet, with a new inode).
    pub(crate) denied: Vec<std::path::PathBuf>,
}

/// See [`Engine::stop_check`].
pub type StopCheck = std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

impl Engine {
    /// An engine whose `env` function reads `env` (the caller's environment).
    pub fn new(env: BTreeMap<String, String>) -> Self {
        Self {
            templates: BTreeMap::new(),
            defines: BTreeMap::new(),
            block_defaults: Default::default(),
            env,
            functions: BTreeMap::new(),
            delims: ("{{".into(), "}}".into()),
            missing_ok: false,
            stop: None,
            denied: Vec::new(),
        }
    }

    /// Files the `file` function must never read (the token, secret id or key files the
    /// caller logs in with), by whatever path or link a template names them: refused by
    /// identity (device and inode, looked up at each call). Paths that do not exist are
    /// ignored.
    pub fn deny_files<'p>(&mut self, paths: impl IntoIterator<Item = &'p std::path::Path>) {
        self.denied.extend(paths.into_iter().map(std::path::Path::to_path_buf));
    }

    /// A check the render calls every few thousand steps: the caller's `--timeout` and
    /// SIGTERM end a template that would otherwise run on (besides the step, output and
    /// nesting budgets every render has).
    pub fn stop_check(&mut self, check: StopCheck) {
        self.stop = Some(check);
    }

    /// Action delimiters other than `{{` and `}}` (e.g. for a template that is itself a
    /// Helm or Go template). Applies to templates added after.
    pub fn delims(&mut self, left: &str, right: &str) {
        self.delims = (left.to_owned(), right.to_owned());
    }

    /// With `true`, a missing key renders as nothing (Go's `missingkey=zero` for our maps)
    /// instead of failing.
    pub fn allow_missing(&mut self, allow: bool) {
        self.missing_ok = allow;
    }

    /// Adds (or replaces) a function.
    pub fn function(&mut self, name: &str, function: Function) {
        self.functions.insert(name.to_owned(), function);
    }

    /// Parses `source` as the template `name`. Its `define`s join the set; a `define` of a name
    /// another file defined replaces it (the later file wins, as in Go's `ParseFiles` and
    /// Helm's named templates), and a `block` never replaces a `define`.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), TemplateError> {
        let parsed = parse::parse(name, source, (&self.delims.0, &self.delims.1))?;
        for (define, body) in &parsed.defines {
            let is_block = parsed.blocks.contains(define);
            if let Some((other, _)) = self.defines.get(define)
                && other != name
            {
                // A block default where another file's define exists: the define stays.
                // Otherwise the later definition wins.
                if !self.block_defaults.contains(define) && is_block {
                    continue;
                }
            }
            if is_block {
                self.block_defaults.insert(define.clone());
            } else {
                self.block_defaults.remove(define);
            }
            self.defines.insert(define.clone(), (name.to_owned(), body.clone()));
        }
        self.templates.insert(name.to_owned(), parsed);
        Ok(())
    }

    /// What Go's parser refuses (functions not defined, variables not declared), looked for in
    /// every template added and every define, in every branch, before anything runs.
    pub fn check(&self) -> Result<(), TemplateError> {
        for (name, parsed) in &self.templates {
            self.check_nodes(name, &parsed.nodes)?;
        }
        self.check_defines()
    }

    fn check_defines(&self) -> Result<(), TemplateError> {
        for (file, body) in self.defines.values() {
            self.check_nodes(file, body)?;
        }
        Ok(())
    }

    /// Renders the template `name` with `data` as `.` (and `$`).
    pub fn render(&self, name: &str, data: &Value) -> Result<String, TemplateError> {
        let Some(parsed) = self.templates.get(name) else {
            return Err(TemplateError::new(name, 0, "no such template"));
        };
        // What Go's parser refuses, refused before anything runs: in every branch and every
        // define (functions added after `add` count, so the check is made here).
        self.check_nodes(name, &parsed.nodes)?;
        self.check_defines()?;
        let meter = exec::Meter::default();
        let mut exec =
            exec::Exec { engine: self, meter: &meter, name, vars: vec![("$".into(), data.clone())], out: String::new(), depth: 0 };
        exec.walk(&parsed.nodes, data)?;
        Ok(exec.out)
    }

    pub(crate) fn define(&self, name: &str) -> Option<(&str, &[parse::Node])> {
        self.defines.get(name).map(|(file, body)| (file.as_str(), body.as_slice()))
    }
}

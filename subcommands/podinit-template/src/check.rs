//! The checks Go's parser makes before anything runs (text/template/parse): every function a
//! template names exists and every variable it uses is declared where it is used, in every
//! branch and every `define`, taken or not. A typo then fails on every run, before anything is
//! written, not only on the run whose data takes that branch.

use crate::parse::{Arg, Node, Pipe};
use crate::{Engine, TemplateError};

/// The functions `Engine::call` (and `and`/`or`, which the executor evaluates lazily) knows,
/// besides those added with `Engine::function`. A unit test keeps the list and `call` in step.
pub(crate) const BUILTINS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "slice",
    "print",
    "println",
    "printf",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "urlquery",
    "js",
    "env",
    "file",
    "default",
    "required",
    "empty",
    "coalesce",
    "ternary",
    "toJSON",
    "toJson",
    "toJSONPretty",
    "toPrettyJson",
    "toYAML",
    "toYaml",
    "parseJSON",
    "fromJSON",
    "fromJson",
    "b64enc",
    "base64Encode",
    "base64URLEncode",
    "b64dec",
    "base64Decode",
    "base64URLDecode",
    "quote",
    "squote",
    "upper",
    "toUpper",
    "lower",
    "toLower",
    "title",
    "toTitle",
    "trim",
    "trimSpace",
    "trimPrefix",
    "trimSuffix",
    "trimAll",
    "hasPrefix",
    "hasSuffix",
    "contains",
    "replace",
    "replaceAll",
    "split",
    "splitList",
    "join",
    "indent",
    "nindent",
    "repeat",
    "toString",
    "atoi",
    "parseInt",
    "parseBool",
    "list",
    "dict",
    "keys",
    "hasKey",
];

impl Engine {
    /// Checks the nodes of the template (or `define`) `file`.
    pub(crate) fn check_nodes(&self, file: &str, nodes: &[Node]) -> Result<(), TemplateError> {
        let mut scope = vec!["$".to_owned()];
        self.check_list(file, nodes, &mut scope)
    }

    /// A list of nodes: variables declared in it are visible to its end (Go: to the `end` of
    /// the enclosing control structure).
    fn check_list(&self, file: &str, nodes: &[Node], scope: &mut Vec<String>) -> Result<(), TemplateError> {
        let mark = scope.len();
        for node in nodes {
            match node {
                Node::Text(_) | Node::Break | Node::Continue => {}
                Node::Action { line, pipe } => self.check_pipe(file, *line, pipe, scope)?,
                Node::If { line, pipe, then: body, otherwise }
                | Node::Range { line, pipe, body, otherwise }
                | Node::With { line, pipe, body, otherwise } => {
                    let outer = scope.len();
                    self.check_pipe(file, *line, pipe, scope)?;
                    self.check_list(file, body, scope)?;
                    self.check_list(file, otherwise, scope)?;
                    scope.truncate(outer);
                }
                Node::Template { line, pipe, .. } => {
                    if let Some(pipe) = pipe {
                        self.check_pipe(file, *line, pipe, scope)?;
                    }
                }
            }
        }
        scope.truncate(mark);
        Ok(())
    }

    fn check_pipe(&self, file: &str, line: usize, pipe: &Pipe, scope: &mut Vec<String>) -> Result<(), TemplateError> {
        for arg in pipe.cmds.iter().flatten() {
            match arg {
                Arg::Func(name) if !self.functions.contains_key(name) && !BUILTINS.contains(&name.as_str()) => {
                    return Err(TemplateError::new(file, line, format!("function {name:?} not defined")));
                }
                Arg::Var(name, _) if !scope.contains(name) => {
                    return Err(TemplateError::new(file, line, format!("undefined variable {name:?}")));
                }
                Arg::Sub(inner, _) => self.check_pipe(file, line, inner, scope)?,
                _ => {}
            }
        }
        if pipe.assign {
            if let Some(name) = pipe.decl.iter().find(|n| !scope.contains(n)) {
                return Err(TemplateError::new(file, line, format!("undefined variable {name:?}")));
            }
        } else {
            scope.extend(pipe.decl.iter().cloned());
        }
        Ok(())
    }
}

//! Runs a parsed template against data, as Go's text/template executes it.

use std::fmt::Write as _;

use crate::parse::{Arg, Node, Pipe};
use crate::{Engine, TemplateError, Value};

/// How deep `template` calls may nest (a template that includes itself ends here).
const MAX_DEPTH: usize = 64;

/// Steps (nodes walked, commands run) one render may take: far beyond real templates (the
/// nginx example takes a few hundred), while two `template` calls per level of 40 levels
/// (2^40 renders) stop within a second or two.
pub(crate) const MAX_STEPS: u64 = 20_000_000;

/// Bytes one render may write (counted where text and values are written, so a `range`
/// over a huge value stops at once).
pub(crate) const MAX_OUTPUT: usize = 64 << 20;

/// Items a list or map made by a function may hold.
pub(crate) const MAX_ITEMS: usize = 1 << 20;

/// How often (in steps) the deadline and stop signals are checked.
const CHECK_EVERY: u64 = 4096;

/// What one render has used, shared by the nested executions of `template` calls.
#[derive(Default)]
pub(crate) struct Meter {
    steps: std::cell::Cell<u64>,
    written: std::cell::Cell<usize>,
    /// The line of the last action, for a budget error met in text (which has no line).
    line: std::cell::Cell<usize>,
    /// Lists of nodes being walked, across `template` calls: the executor's recursion.
    nest: std::cell::Cell<usize>,
}

/// How deep the executor may recurse in one render (actions in actions, across `template`
/// calls): each template's nesting is bounded when parsed (100) and calls nest 64 deep, but
/// the two multiply; far above real templates, far below the stack's end.
pub(crate) const MAX_EXEC_NESTING: usize = 1000;

/// The output, refusing to grow past the room left in the budget while a value is printed
/// (a list nested in itself prints 4^k bytes from a few steps).
struct Bounded<'a> {
    out: &'a mut String,
    room: usize,
    over: bool,
}

impl std::fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if s.len() > self.room {
            self.over = true;
            return Err(std::fmt::Error);
        }
        self.room -= s.len();
        self.out.push_str(s);
        Ok(())
    }
}

pub(crate) struct Exec<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) meter: &'a Meter,
    /// The template file being executed, for errors.
    pub(crate) name: &'a str,
    pub(crate) vars: Vec<(String, Value)>,
    pub(crate) out: String,
    pub(crate) depth: usize,
}

pub(crate) enum Flow {
    Normal,
    Break,
    Continue,
}

impl Exec<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> TemplateError {
        TemplateError::new(self.name, line, message)
    }

    /// One more step; an error past the budget, or when the engine's stop check says so
    /// (the deadline, SIGTERM), looked at every [`CHECK_EVERY`] steps.
    fn step(&self, line: usize) -> Result<(), TemplateError> {
        let line = if line == 0 { self.meter.line.get() } else { line };
        self.meter.line.set(line);
        let steps = self.meter.steps.get() + 1;
        self.meter.steps.set(steps);
        if steps > MAX_STEPS {
            return Err(self.err(line, format!("the template takes more than {MAX_STEPS} steps to render: stopped")));
        }
        if steps.is_multiple_of(CHECK_EVERY)
            && let Some(check) = &self.engine.stop
        {
            check().map_err(|why| self.err(line, why))?;
        }
        Ok(())
    }

    /// A function's result within the budgets: a string of at most [`MAX_OUTPUT`] bytes, a
    /// list or map of at most [`MAX_ITEMS`] items (a value doubled in a loop, `split` of a
    /// huge string, would otherwise fill memory without writing a byte).
    fn fits(&self, value: &Value, name: &str, line: usize) -> Result<(), TemplateError> {
        let too_big = match value {
            Value::Str(s) => s.len() > MAX_OUTPUT,
            Value::List(items) => items.len() > MAX_ITEMS,
            Value::Map(items) => items.len() > MAX_ITEMS,
            _ => false,
        };
        if too_big {
            return Err(self.err(line, format!("{name}: the result is over {} MiB or {MAX_ITEMS} items: stopped", MAX_OUTPUT >> 20)));
        }
        Ok(())
    }

    /// Counts `n` bytes written; an error past [`MAX_OUTPUT`].
    fn wrote(&self, n: usize, line: usize) -> Result<(), TemplateError> {
        let line = if line == 0 { self.meter.line.get() } else { line };
        let written = self.meter.written.get().saturating_add(n);
        self.meter.written.set(written);
        if written > MAX_OUTPUT {
            return Err(self.err(line, format!("the template writes more than {} MiB: stopped", MAX_OUTPUT >> 20)));
        }
        Ok(())
    }

    pub(crate) fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        let depth = self.meter.nest.get() + 1;
        if depth > MAX_EXEC_NESTING {
            return Err(self.err(self.meter.line.get(), format!("actions and template calls nest deeper than {MAX_EXEC_NESTING}")));
        }
        self.meter.nest.set(depth);
        let flow = self.walk_nodes(nodes, dot);
        self.meter.nest.set(depth - 1);
        flow
    }

    fn walk_nodes(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        for node in nodes {
            self.step(node.line())?;
            match node {
                Node::Text(text) => {
                    self.wrote(text.len(), 0)?;
                    self.out.push_str(text);
                }
                Node::Action { line, pipe } => {
                    let value = self.pipe(pipe, dot, *line, true)?;
                    if pipe.decl.is_empty() {
                        self.print(&value, *line)?;
                    }
                }
                Node::If { line, pipe, then, otherwise } => {
                    let mark = self.vars.len();
                    let value = self.pipe(pipe, dot, *line, true)?;
                    let flow = self.walk(if value.truth() { then } else { otherwise }, dot)?;
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With { line, pipe, body, otherwise } => {
                    let mark = self.vars.len();
                    let value = self.pipe(pipe, dot, *line, true)?;
                    let flow = if value.truth() { self.walk(body, &value)? } else { self.walk(otherwise, dot)? };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range { line, pipe, body, otherwise } => {
                    let value = self.pipe(pipe, dot, *line, false)?;
                    let items: Vec<(Value, Value)> = match &value {
                        Value::List(list) => list.iter().enumerate().map(|(i, v)| (Value::Int(i as i64), v.clone())).collect(),
                        Value::Map(map) => map.iter().map(|(k, v)| (Value::str(k.as_str()), v.clone())).collect(),
                        Value::Int(n) if *n > crate::funcs::MAX_COUNT as i64 * 16 => {
                            return Err(self.err(*line, format!("range over {n}: at most {} iterations", crate::funcs::MAX_COUNT * 16)));
                        }
                        Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
                        Value::Nil => Vec::new(),
                        Value::Missing(what) => return Err(self.err(*line, what.to_string())),
                        other => return Err(self.err(*line, format!("range can't iterate over a {}", other.kind()))),
                    };
                    if items.is_empty() {
                        let flow = self.walk(otherwise, dot)?;
                        if !matches!(flow, Flow::Normal) {
                            return Ok(flow);
                        }
                        continue;
                    }
                    for (key, item) in items {
                        let mark = self.vars.len();
                        match pipe.decl.as_slice() {
                            [] => {}
                            [one] => self.vars.push((one.clone(), item.clone())),
                            [k, v, ..] => {
                                self.vars.push((k.clone(), key));
                                self.vars.push((v.clone(), item.clone()));
                            }
                        }
                        let flow = self.walk(body, &item)?;
                        self.vars.truncate(mark);
                        if matches!(flow, Flow::Break) {
                            break;
                        }
                    }
                }
                Node::Template { line, name, pipe } => {
                    let Some((file, body)) = self.engine.define(name) else {
                        return Err(self.err(*line, format!("no such template {name:?}")));
                    };
                    let value = match pipe {
                        Some(pipe) => self.pipe(pipe, dot, *line, true)?,
                        None => Value::Nil,
                    };
                    if self.depth >= MAX_DEPTH {
                        return Err(self.err(*line, format!("template {name:?} nests deeper than {MAX_DEPTH} (does it include itself?)")));
                    }
                    let mut inner = Exec {
                        engine: self.engine,
                        meter: self.meter,
                        name: file,
                        vars: vec![("$".into(), value.clone())],
                        out: String::new(),
                        depth: self.depth + 1,
                    };
                    inner.walk(body, &value)?;
                    self.out.push_str(&inner.out);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn print(&mut self, value: &Value, line: usize) -> Result<(), TemplateError> {
        if let Value::Missing(what) = value {
            return Err(self.err(line, what.to_string()));
        }
        let before = self.out.len();
        let room = MAX_OUTPUT.saturating_sub(self.meter.written.get());
        let mut bounded = Bounded { out: &mut self.out, room, over: false };
        let _ = write!(bounded, "{value}");
        if bounded.over {
            return Err(self.err(line, format!("the template writes more than {} MiB: stopped", MAX_OUTPUT >> 20)));
        }
        self.wrote(self.out.len() - before, line)
    }

    /// Evaluates a pipeline; with `declare`, its variables are declared (or assigned).
    fn pipe(&mut self, pipe: &Pipe, dot: &Value, line: usize, declare: bool) -> Result<Value, TemplateError> {
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(cmd, dot, value, line)?);
        }
        let value = value.unwrap_or(Value::Nil);
        if declare {
            for name in &pipe.decl {
                if pipe.assign {
                    let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) else {
                        return Err(self.err(line, format!("undefined variable: {name}")));
                    };
                    slot.1 = value.clone();
                } else {
                    self.vars.push((name.clone(), value.clone()));
                }
            }
        }
        Ok(value)
    }

    fn command(&mut self, args: &[Arg], dot: &Value, piped: Option<Value>, line: usize) -> Result<Value, TemplateError> {
        self.step(line)?;
        if let Arg::Func(name) = &args[0] {
            if name == "and" || name == "or" {
                return self.and_or(name == "and", &args[1..], dot, piped, line);
            }
            let mut values = Vec::with_capacity(args.len());
            for arg in &args[1..] {
                values.push(self.arg(arg, dot, line)?);
            }
            values.extend(piped);
            let value = self.engine.call(name, &values).map_err(|m| self.err(line, m))?;
            self.fits(&value, name, line)?;
            return Ok(value);
        }
        if let Arg::Lit(Value::Nil) = &args[0] {
            return Err(self.err(line, "nil is not a command"));
        }
        if args.len() > 1 || piped.is_some() {
            return Err(self.err(line, "can't give argument to non-function"));
        }
        self.arg(&args[0], dot, line)
    }

    /// `and` and `or` stop at the first argument that decides, as in Go.
    fn and_or(&mut self, and: bool, args: &[Arg], dot: &Value, piped: Option<Value>, line: usize) -> Result<Value, TemplateError> {
        if args.is_empty() && piped.is_none() {
            return Err(self.err(line, format!("{} needs at least one argument", if and { "and" } else { "or" })));
        }
        let mut last = Value::Nil;
        for arg in args {
            last = self.arg(arg, dot, line)?;
            if last.truth() != and {
                return Ok(last);
            }
        }
        Ok(piped.unwrap_or(last))
    }

    fn arg(&mut self, arg: &Arg, dot: &Value, line: usize) -> Result<Value, TemplateError> {
        match arg {
            Arg::Field(names) => self.chain(dot.clone(), names, String::new(), line),
            Arg::Var(name, names) => {
                let Some((_, value)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return Err(self.err(line, format!("undefined variable: {name}")));
                };
                self.chain(value.clone(), names, name.clone(), line)
            }
            Arg::Func(name) => self.engine.call(name, &[]).map_err(|m| self.err(line, m)),
            Arg::Sub(pipe, names) => {
                let value = self.pipe(pipe, dot, line, true)?;
                self.chain(value, names, "(…)".into(), line)
            }
            Arg::Lit(value) => Ok(value.clone()),
        }
    }

    /// `.A.B` from `value`; `path` is what `value` was reached by, for messages.
    fn chain(&self, mut value: Value, names: &[String], mut path: String, line: usize) -> Result<Value, TemplateError> {
        for name in names {
            value = match value {
                Value::Map(map) => match map.get(name) {
                    Some(v) => v.clone(),
                    None if self.engine.missing_ok => Value::Nil,
                    None => Value::Missing(format!("map has no entry for key {name:?} (in {path}.{name})").into()),
                },
                missing @ Value::Missing(_) => missing,
                Value::Nil if self.engine.missing_ok => Value::Nil,
                Value::Nil => Value::Missing(format!("nil has no field {name:?} (in {path}.{name})").into()),
                other => return Err(self.err(line, format!("can't evaluate field {name} in type {} (in {path}.{name})", other.kind()))),
            };
            path.push('.');
            path.push_str(name);
        }
        Ok(value)
    }
}

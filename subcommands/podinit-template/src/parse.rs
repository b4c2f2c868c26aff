//! Go's text/template syntax, read into a tree: the lexer and parser.
//!
//! Text and actions (`{{ … }}`, trimmed with `{{- ` and ` -}}`), comments, pipelines with
//! `|`, variables (`$x := …`, `$x = …`, `$i, $e := range …`), parenthesised pipelines with
//! field chains, and the actions `if`/`else if`/`else`, `range` (with `else`, `break`,
//! `continue`), `with` (with `else with`), `define`, `template`, `block` and `end`. Every
//! node keeps its line for errors.

use std::collections::BTreeMap;

use crate::TemplateError;

/// A parsed template: its nodes and the `define`d templates it carries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parsed {
    pub(crate) nodes: Vec<Node>,
    pub(crate) defines: BTreeMap<String, Vec<Node>>,
    /// The names of `defines` that come from a `block`: defaults a `define` may replace.
    pub(crate) blocks: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Action { line: usize, pipe: Pipe },
    If { line: usize, pipe: Pipe, then: Vec<Node>, otherwise: Vec<Node> },
    Range { line: usize, pipe: Pipe, body: Vec<Node>, otherwise: Vec<Node> },
    With { line: usize, pipe: Pipe, body: Vec<Node>, otherwise: Vec<Node> },
    Template { line: usize, name: String, pipe: Option<Pipe> },
    Break,
    Continue,
}

impl Node {
    /// The line an action is on (0 for text and `break`/`continue`).
    pub(crate) fn line(&self) -> usize {
        match self {
            Self::Action { line, .. }
            | Self::If { line, .. }
            | Self::Range { line, .. }
            | Self::With { line, .. }
            | Self::Template { line, .. } => *line,
            Self::Text(_) | Self::Break | Self::Continue => 0,
        }
    }
}

/// `$a, $b := cmd | cmd …`
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub(crate) decl: Vec<String>,
    /// `=` rather than `:=`.
    pub(crate) assign: bool,
    pub(crate) cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `.A.B` (empty: `.` itself).
    Field(Vec<String>),
    /// `$x.A.B` (`$` alone is named `$`).
    Var(String, Vec<String>),
    /// A function name.
    Func(String),
    /// `(pipeline).A.B`
    Sub(Box<Pipe>, Vec<String>),
    Lit(crate::Value),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Dot,
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(String),
    Char(char),
    LParen,
    RParen(Vec<String>),
    Bar,
    Declare,
    Assign,
    Comma,
    /// Between two operands with no space between them (`"a"3`, `true.E`, `(x).`), which Go
    /// refuses; or a function's name and a field chain (`fn.Field`: the field of its result).
    Glue,
}

impl Tok {
    /// Whether the token ends an operand (a following operand needs a space before it).
    fn ends_operand(&self) -> bool {
        matches!(
            self,
            Self::Field(_) | Self::Dot | Self::Var(..) | Self::Ident(_) | Self::Str(_) | Self::Num(_) | Self::Char(_) | Self::RParen(_)
        )
    }

    /// Whether the token starts an operand.
    fn starts_operand(&self) -> bool {
        matches!(
            self,
            Self::Field(_) | Self::Dot | Self::Var(..) | Self::Ident(_) | Self::Str(_) | Self::Num(_) | Self::Char(_) | Self::LParen
        )
    }

    /// As Go's parser names it in "unexpected … in operand".
    fn shown(&self) -> String {
        match self {
            Self::Field(names) => format!("<.{}>", names.join(".")),
            Self::Dot => "<.>".into(),
            Self::Var(name, names) => format!("{name}{}", names.iter().map(|n| format!(".{n}")).collect::<String>()),
            Self::Ident(word) | Self::Num(word) => format!("{word:?}"),
            Self::Str(text) => crate::funcs::go_quote(text),
            Self::Char(c) => format!("'{c}'"),
            Self::LParen => "<(>".into(),
            Self::RParen(_) => "<)>".into(),
            Self::Bar => "<|>".into(),
            Self::Declare => "<:=>".into(),
            Self::Assign => "<=>".into(),
            Self::Comma => "<,>".into(),
            Self::Glue => String::new(),
        }
    }
}

/// Words that start an action; an operand may follow them with no space (`{{if.X}}`).
const KEYWORDS: [&str; 10] = ["if", "range", "with", "else", "end", "define", "block", "template", "break", "continue"];

/// One piece of source: text, or an action's tokens.
enum Item {
    Text(String),
    Action { line: usize, toks: Vec<Tok> },
}

/// Parses `source`; `name` is used in errors (`name:LINE: …`).
pub(crate) fn parse(name: &str, source: &str, delims: (&str, &str)) -> Result<Parsed, TemplateError> {
    let items = lex(name, source, delims)?;
    let mut parser = Parser {
        name,
        items: items.into_iter(),
        defines: BTreeMap::new(),
        blocks: Default::default(),
        pending_else: None,
        loops: 0,
        nesting: 0,
    };
    let (nodes, end) = parser.list()?;
    if let Some((line, word)) = end {
        return Err(TemplateError::new(name, line, format!("unexpected {{{{{word}}}}}")));
    }
    Ok(Parsed { nodes, defines: parser.defines, blocks: parser.blocks })
}

fn lex(name: &str, source: &str, (left, right): (&str, &str)) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = source;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(at) = rest.find(left) else {
            push_text(&mut items, rest, trim_next, false);
            break;
        };
        let after = &rest[at + left.len()..];
        let trim_left = after.starts_with('-') && after[1..].starts_with([' ', '\t', '\r', '\n']);
        push_text(&mut items, &rest[..at], trim_next, trim_left);
        line += rest[..at].matches('\n').count();
        let start_line = line;
        let mut body = if trim_left { &after[2..] } else { after };
        // A comment: `/* … */` directly after the delimiter (and its trim marker).
        let trimmed = body.trim_start();
        if trimmed.starts_with("/*") && (trim_left || body.starts_with("/*")) {
            let Some(close) = trimmed.find("*/") else {
                return Err(TemplateError::new(name, start_line, "unclosed comment"));
            };
            let tail = &trimmed[close + 2..];
            let (trim_right, tail) =
                close_delim(tail, right).ok_or_else(|| TemplateError::new(name, start_line, "comment ends before closing delimiter"))?;
            line += rest[at..rest.len() - tail.len()].matches('\n').count();
            trim_next = trim_right;
            rest = tail;
            continue;
        }
        let mut toks = Vec::new();
        loop {
            let skipped = body.trim_start_matches([' ', '\t', '\r', '\n']);
            let had_space = skipped.len() != body.len();
            body = skipped;
            if let Some(tail) = body.strip_prefix(right) {
                trim_next = false;
                body = tail;
                break;
            }
            if had_space && let Some(tail) = body.strip_prefix('-').and_then(|t| t.strip_prefix(right)) {
                trim_next = true;
                body = tail;
                break;
            }
            let Some(c) = body.chars().next() else {
                return Err(TemplateError::new(name, start_line, format!("unclosed action (no {right})")));
            };
            let (tok, len) = lex_token(body, c).map_err(|m| TemplateError::new(name, start_line, m))?;
            // Go needs no space after a keyword, nor after the name of `template` and `block`
            // (`{{template "x".}}`).
            let after_keyword = match toks.as_slice() {
                [Tok::Ident(k)] => KEYWORDS.contains(&k.as_str()),
                [Tok::Ident(e), Tok::Ident(k)] => e == "else" && KEYWORDS.contains(&k.as_str()),
                [Tok::Ident(k), Tok::Str(_)] => k == "template" || k == "block",
                _ => false,
            };
            if !had_space && !after_keyword && tok.starts_operand() && toks.last().is_some_and(Tok::ends_operand) {
                toks.push(Tok::Glue);
            }
            toks.push(tok);
            body = &body[len..];
        }
        line += rest[at..rest.len() - body.len()].matches('\n').count();
        items.push(Item::Action { line: start_line, toks });
        rest = body;
    }
    Ok(items)
}

fn close_delim<'a>(tail: &'a str, right: &str) -> Option<(bool, &'a str)> {
    if let Some(t) = tail.strip_prefix(right) {
        return Some((false, t));
    }
    let t = tail.strip_prefix([' ', '\t', '\r', '\n'])?.strip_prefix('-')?.strip_prefix(right)?;
    Some((true, t))
}

fn push_text(items: &mut Vec<Item>, text: &str, trim_start: bool, trim_end: bool) {
    let mut text = text;
    if trim_start {
        text = text.trim_start_matches([' ', '\t', '\r', '\n']);
    }
    if trim_end {
        text = text.trim_end_matches([' ', '\t', '\r', '\n']);
    }
    if !text.is_empty() {
        items.push(Item::Text(text.to_owned()));
    }
}

fn is_ident(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// `.A.B` at the start of `s` (which starts with `.`): the names and the length taken.
fn chain(s: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut at = 0;
    while s[at..].starts_with('.') {
        let len = s[at + 1..].find(|c: char| !is_ident(c)).unwrap_or(s.len() - at - 1);
        if len == 0 {
            break;
        }
        names.push(s[at + 1..at + 1 + len].to_owned());
        at += 1 + len;
    }
    (names, at)
}

fn lex_token(s: &str, c: char) -> Result<(Tok, usize), String> {
    Ok(match c {
        '.' => {
            let (names, len) = chain(s);
            if names.is_empty() {
                if s[1..].starts_with(|c: char| c.is_ascii_digit()) {
                    return number(s);
                }
                (Tok::Dot, 1)
            } else {
                (Tok::Field(names), len)
            }
        }
        '$' => {
            let len = s[1..].find(|c: char| !is_ident(c)).unwrap_or(s.len() - 1);
            let name = s[..1 + len].to_owned();
            let (names, more) = chain(&s[1 + len..]);
            (Tok::Var(name, names), 1 + len + more)
        }
        '"' => {
            let mut out = String::new();
            let mut chars = s[1..].char_indices();
            loop {
                match chars.next() {
                    None | Some((_, '\n')) => return Err("unterminated quoted string".into()),
                    Some((i, '"')) => return Ok((Tok::Str(out), i + 2)),
                    Some((_, '\\')) => out.push(escape(&mut chars)?),
                    Some((_, c)) => out.push(c),
                }
            }
        }
        '`' => {
            let end = s[1..].find('`').ok_or("unterminated raw quoted string")?;
            (Tok::Str(s[1..1 + end].to_owned()), end + 2)
        }
        '\'' => {
            let mut chars = s[1..].char_indices();
            let c = match chars.next() {
                Some((_, '\\')) => escape(&mut chars)?,
                Some((_, c)) => c,
                None => return Err("unterminated character constant".into()),
            };
            match chars.next() {
                Some((i, '\'')) => (Tok::Char(c), i + 2),
                _ => return Err("unterminated character constant".into()),
            }
        }
        '(' => (Tok::LParen, 1),
        ')' => {
            let (names, len) = chain(&s[1..]);
            (Tok::RParen(names), 1 + len)
        }
        '|' => (Tok::Bar, 1),
        ',' => (Tok::Comma, 1),
        ':' if s[1..].starts_with('=') => (Tok::Declare, 2),
        '=' => (Tok::Assign, 1),
        '-' | '+' | '0'..='9' => number(s)?,
        c if is_ident(c) => {
            let len = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
            (Tok::Ident(s[..len].to_owned()), len)
        }
        c => return Err(format!("unexpected {c:?} in action")),
    })
}

fn number(s: &str) -> Result<(Tok, usize), String> {
    // An exponent's sign follows `p` in hexadecimal (where `e` is a digit), `e` otherwise.
    let hex = s.trim_start_matches(['-', '+']).get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"));
    let len = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_alphanumeric()
                || c == '.'
                || c == '_'
                || (i == 0 && (c == '-' || c == '+'))
                || ((c == '-' || c == '+') && s[..i].ends_with(if hex { ['p', 'P'] } else { ['e', 'E'] })))
        })
        .map_or(s.len(), |(i, _)| i);
    if len == 1 && (s.starts_with('-') || s.starts_with('+')) {
        return Err(format!("unexpected {:?} in action", &s[..1]));
    }
    Ok((Tok::Num(s[..len].to_owned()), len))
}

fn escape(chars: &mut std::str::CharIndices<'_>) -> Result<char, String> {
    let Some((_, c)) = chars.next() else { return Err("unterminated escape".into()) };
    let hex = |chars: &mut std::str::CharIndices<'_>, n: usize| -> Result<char, String> {
        let digits: String = chars.take(n).map(|(_, c)| c).collect();
        u32::from_str_radix(&digits, 16).ok().and_then(char::from_u32).ok_or_else(|| format!("bad escape \\{c}{digits}"))
    };
    Ok(match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        '\\' => '\\',
        '"' => '"',
        '\'' => '\'',
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'v' => '\x0b',
        '0' => '\0',
        'x' => hex(chars, 2)?,
        'u' => hex(chars, 4)?,
        'U' => hex(chars, 8)?,
        c => return Err(format!("unknown escape \\{c}")),
    })
}

fn parse_number(text: &str) -> Result<crate::Value, String> {
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let radix = [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)]
        .iter()
        .find_map(|(p, r)| digits.strip_prefix(p).map(|d| (d, *r)));
    let int = match radix {
        Some((d, r)) => i64::from_str_radix(d, r).ok(),
        None if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) => {
            i64::from_str_radix(&digits[1..], 8).ok()
        }
        None => digits.parse::<i64>().ok(),
    };
    if let Some(i) = int {
        return Ok(crate::Value::Int(if neg { -i } else { i }));
    }
    if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        let x = hex_float(hex).ok_or_else(|| format!("bad number syntax: {text:?}"))?;
        return Ok(crate::Value::Float(if neg { -x } else { x }));
    }
    clean.parse::<f64>().map(crate::Value::Float).map_err(|_| format!("bad number syntax: {text:?}"))
}

/// A hexadecimal floating-point literal after its `0x`: `1.ep+2` is 1.875 × 2² = 7.5.
fn hex_float(text: &str) -> Option<f64> {
    let (mantissa, exponent) = text.split_once(['p', 'P'])?;
    let exponent: i32 = exponent.parse().ok()?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in whole.chars().chain(fraction.chars()) {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let scale = exponent.checked_sub(4 * i32::try_from(fraction.len()).ok()?)?;
    // In two steps, so a small scale does not underflow before the mantissa is applied.
    Some(value * 2f64.powi(scale / 2) * 2f64.powi(scale - scale / 2))
}

struct Parser<'a> {
    name: &'a str,
    items: std::vec::IntoIter<Item>,
    defines: BTreeMap<String, Vec<Node>>,
    blocks: std::collections::BTreeSet<String>,
    /// The tokens after an `else` that ended the last list (`if …` of an `else if`).
    pending_else: Option<Vec<Tok>>,
    /// How many `range`s enclose the current list (`break` and `continue` need one).
    loops: usize,
    /// How many `if`/`range`/`with`/`define`/`block` (and `else if`) enclose it.
    nesting: usize,
}

/// The deepest nesting of actions (`if` in `if`…, `else if` chains) and of parentheses a
/// template may have: far beyond real templates, far below what would overflow the stack of
/// the recursive parser and executor (20,000 parentheses did).
pub(crate) const MAX_NESTING: usize = 100;

/// How a list ended: `{{end}}`, `{{else …}}` (with the tokens after `else`), or the source's end.
type End = Option<(usize, String)>;

impl Parser<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> TemplateError {
        TemplateError::new(self.name, line, message)
    }

    /// Nodes up to an `end` or `else` (returned, with the `else`'s tokens put back).
    fn list(&mut self) -> Result<(Vec<Node>, End), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (line, toks) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action { line, toks } => (line, toks),
            };
            let keyword = match toks.first() {
                Some(Tok::Ident(word)) => word.as_str(),
                None => return Err(self.err(line, "missing value for command")),
                _ => "",
            };
            let rest = || toks[1..].to_vec();
            match keyword {
                "end" => {
                    if toks.len() > 1 {
                        return Err(self.err(line, "unexpected tokens after end"));
                    }
                    return Ok((nodes, Some((line, "end".into()))));
                }
                "else" => {
                    // Put the rest back as the action that starts the else branch.
                    self.pending_else = Some(rest());
                    return Ok((nodes, Some((line, "else".into()))));
                }
                "if" | "range" | "with" => nodes.push(self.control(keyword, line, rest())?),
                "define" | "block" => {
                    let (name, pipe) = self.template_args(line, keyword, &toks[1..])?;
                    let (body, end) = self.nested(line, Self::list)?;
                    if !matches!(end, Some((_, ref w)) if w == "end") {
                        return Err(self.err(line, format!("unexpected EOF: {{{{{keyword}}}}} without {{{{end}}}}")));
                    }
                    // A `block` is a default: a `define` of the same name (before or after it)
                    // wins; two `define`s or two `block`s of one name are an error.
                    let is_block = keyword == "block";
                    match self.defines.get(&name) {
                        Some(_) if self.blocks.contains(&name) == is_block => {
                            return Err(self.err(line, format!("template {name:?} defined twice")));
                        }
                        Some(_) if is_block => {}
                        _ => {
                            self.defines.insert(name.clone(), body);
                            if is_block {
                                self.blocks.insert(name.clone());
                            } else {
                                self.blocks.remove(&name);
                            }
                        }
                    }
                    if keyword == "block" {
                        nodes.push(Node::Template { line, name, pipe });
                    } else if pipe.is_some() {
                        return Err(self.err(line, "define takes only a name"));
                    }
                }
                "template" => {
                    let (name, pipe) = self.template_args(line, keyword, &toks[1..])?;
                    nodes.push(Node::Template { line, name, pipe });
                }
                "break" | "continue" if toks.len() == 1 => {
                    if self.loops == 0 {
                        return Err(self.err(line, format!("{{{{{keyword}}}}} outside {{{{range}}}}")));
                    }
                    nodes.push(if keyword == "break" { Node::Break } else { Node::Continue });
                }
                _ => {
                    let pipe = self.pipe(line, &toks, true)?;
                    // Go: only `range` declares two variables.
                    if pipe.decl.len() > 1 {
                        return Err(self.err(line, "too many declarations in command"));
                    }
                    nodes.push(Node::Action { line, pipe });
                }
            }
        }
        Ok((nodes, None))
    }

    /// `if`, `range` or `with` whose action (after the keyword) is `toks`, up to its `end`.
    fn control(&mut self, keyword: &str, line: usize, toks: Vec<Tok>) -> Result<Node, TemplateError> {
        self.nested(line, |p| p.control_inner(keyword, line, toks))
    }

    /// Runs `inner` one level of nesting deeper, refused past [`MAX_NESTING`].
    fn nested<T>(&mut self, line: usize, inner: impl FnOnce(&mut Self) -> Result<T, TemplateError>) -> Result<T, TemplateError> {
        if self.nesting >= MAX_NESTING {
            return Err(self.err(line, format!("actions nest deeper than {MAX_NESTING}")));
        }
        self.nesting += 1;
        let result = inner(self);
        self.nesting -= 1;
        result
    }

    fn control_inner(&mut self, keyword: &str, line: usize, toks: Vec<Tok>) -> Result<Node, TemplateError> {
        let pipe = self.pipe(line, &toks, true)?;
        if pipe.decl.len() > 1 && keyword != "range" {
            return Err(self.err(line, format!("too many declarations in {keyword}")));
        }
        let looping = keyword == "range";
        self.loops += usize::from(looping);
        let (body, end) = self.list()?;
        self.loops -= usize::from(looping);
        let otherwise = match end {
            Some((_, word)) if word == "end" => Vec::new(),
            Some((else_line, _)) => {
                let rest = self.pending_else.take().unwrap_or_default();
                match rest.first() {
                    None => {
                        let (otherwise, end) = self.list()?;
                        match end {
                            Some((_, word)) if word == "end" => otherwise,
                            Some((l, _)) => {
                                return Err(self.err(l, format!("expected {{{{end}}}} after {{{{else}}}} of {{{{{keyword}}}}}")));
                            }
                            None => return Err(self.err(line, format!("unexpected EOF: {{{{{keyword}}}}} without {{{{end}}}}"))),
                        }
                    }
                    Some(Tok::Ident(chained)) if chained == keyword && keyword != "range" => {
                        // `else if` / `else with`: a nested action that takes the same `end`.
                        vec![self.control(keyword, else_line, rest[1..].to_vec())?]
                    }
                    Some(_) => return Err(self.err(else_line, format!("unexpected tokens after {{{{else}}}} in {{{{{keyword}}}}}"))),
                }
            }
            None => return Err(self.err(line, format!("unexpected EOF: {{{{{keyword}}}}} without {{{{end}}}}"))),
        };
        Ok(match keyword {
            "if" => Node::If { line, pipe, then: body, otherwise },
            "range" => Node::Range { line, pipe, body, otherwise },
            _ => Node::With { line, pipe, body, otherwise },
        })
    }

    /// `"name" [pipeline]` of `template`, `define` and `block`.
    fn template_args(&self, line: usize, keyword: &str, toks: &[Tok]) -> Result<(String, Option<Pipe>), TemplateError> {
        let Some(Tok::Str(name)) = toks.first() else {
            return Err(self.err(line, format!("{{{{{keyword}}}}} needs a quoted template name")));
        };
        // Go: a block's pipeline is required (`{{block "name" .}}`); a template call's is not.
        if keyword == "block" && toks.len() == 1 {
            return Err(self.err(line, "missing value for block"));
        }
        // Go: `{{template "x" $v := .}}` declares $v where the action is.
        let pipe = if toks.len() > 1 { Some(self.pipe(line, &toks[1..], true)?) } else { None };
        if pipe.as_ref().is_some_and(|p| p.decl.len() > 1) {
            return Err(self.err(line, format!("too many declarations in {keyword}")));
        }
        Ok((name.clone(), pipe))
    }

    /// A whole action's pipeline.
    fn pipe(&self, line: usize, toks: &[Tok], allow_decl: bool) -> Result<Pipe, TemplateError> {
        let mut open = 0usize;
        for tok in toks {
            match tok {
                Tok::LParen => {
                    open += 1;
                    if open > MAX_NESTING {
                        return Err(self.err(line, format!("parentheses nest deeper than {MAX_NESTING}")));
                    }
                }
                Tok::RParen(_) => open = open.saturating_sub(1),
                _ => {}
            }
        }
        let mut pos = 0;
        let pipe = self.pipeline(line, toks, &mut pos, false).map_err(|m| self.err(line, m))?;
        if !allow_decl && !pipe.decl.is_empty() {
            return Err(self.err(line, "a variable cannot be declared here"));
        }
        Ok(pipe)
    }

    fn pipeline(&self, line: usize, toks: &[Tok], pos: &mut usize, in_paren: bool) -> Result<Pipe, String> {
        let mut decl = Vec::new();
        let mut assign = false;
        if let Some(Tok::Var(first, chain)) = toks.get(*pos)
            && chain.is_empty()
        {
            let mut names = vec![first.clone()];
            let mut at = *pos + 1;
            if let (Some(Tok::Comma), Some(Tok::Var(second, c))) = (toks.get(at), toks.get(at + 1))
                && c.is_empty()
            {
                names.push(second.clone());
                at += 2;
            }
            if let Some(tok @ (Tok::Declare | Tok::Assign)) = toks.get(at) {
                assign = *tok == Tok::Assign;
                decl = names;
                *pos = at + 1;
            }
        }
        let mut cmds = Vec::new();
        loop {
            let mut cmd = Vec::new();
            loop {
                match toks.get(*pos) {
                    None if in_paren => return Err("unclosed left paren".into()),
                    None | Some(Tok::Bar) => break,
                    Some(Tok::RParen(_)) if in_paren => break,
                    Some(Tok::RParen(_)) => return Err("unexpected right paren".into()),
                    Some(Tok::Glue) => {
                        let next = toks.get(*pos + 1).map(Tok::shown).unwrap_or_default();
                        match (cmd.pop(), toks.get(*pos + 1)) {
                            // `fn.Field`: the field of the function's result, as in Go.
                            (Some(Arg::Func(name)), Some(Tok::Field(names))) => {
                                let call = Pipe { decl: Vec::new(), assign: false, cmds: vec![vec![Arg::Func(name)]] };
                                cmd.push(Arg::Sub(Box::new(call), names.clone()));
                                *pos += 2;
                            }
                            (Some(Arg::Lit(_) | Arg::Field(_)), Some(Tok::Field(_))) => {
                                return Err(format!(
                                    "unexpected {next} after a term: a field of a literal or of dot needs a variable or parentheses"
                                ));
                            }
                            _ => return Err(format!("unexpected {next} in operand: separate arguments with a space")),
                        }
                    }
                    Some(_) => cmd.push(self.operand(line, toks, pos)?),
                }
            }
            if cmd.is_empty() {
                return Err("missing value for command".into());
            }
            // Go: only the first command may start with a value that cannot be called.
            if !cmds.is_empty()
                && (matches!(cmd.first(), Some(Arg::Lit(_))) || matches!(cmd.first(), Some(Arg::Field(names)) if names.is_empty()))
            {
                return Err(format!("non executable command in pipeline stage {}", cmds.len() + 1));
            }
            cmds.push(cmd);
            if toks.get(*pos) == Some(&Tok::Bar) {
                *pos += 1;
            } else {
                break;
            }
        }
        Ok(Pipe { decl, assign, cmds })
    }

    fn operand(&self, line: usize, toks: &[Tok], pos: &mut usize) -> Result<Arg, String> {
        let tok = &toks[*pos];
        *pos += 1;
        Ok(match tok {
            Tok::Field(names) => Arg::Field(names.clone()),
            Tok::Dot => Arg::Field(Vec::new()),
            Tok::Var(name, chain) => Arg::Var(name.clone(), chain.clone()),
            Tok::Ident(word) => match word.as_str() {
                "true" => Arg::Lit(crate::Value::Bool(true)),
                "false" => Arg::Lit(crate::Value::Bool(false)),
                "nil" => Arg::Lit(crate::Value::Nil),
                _ => Arg::Func(word.clone()),
            },
            Tok::Str(s) => Arg::Lit(crate::Value::str(s.as_str())),
            Tok::Num(text) => Arg::Lit(parse_number(text)?),
            Tok::Char(c) => Arg::Lit(crate::Value::Int(i64::from(u32::from(*c)))),
            Tok::LParen => {
                let inner = self.pipeline(line, toks, pos, true)?;
                let Some(Tok::RParen(chain)) = toks.get(*pos) else { return Err("unclosed left paren".into()) };
                *pos += 1;
                Arg::Sub(Box::new(inner), chain.clone())
            }
            Tok::Comma => return Err("unexpected \",\" in operand".into()),
            Tok::Declare | Tok::Assign => return Err("unexpected assignment in operand".into()),
            Tok::Bar | Tok::RParen(_) => return Err("missing value for command".into()),
            Tok::Glue => return Err("unexpected operand: separate arguments with a space".into()),
        })
    }
}

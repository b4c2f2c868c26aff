//! The values templates compute with: what Go's `interface{}` holds in a template's data.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::rc::Rc;

/// A template value. Maps keep their keys sorted, as Go's `range` and `toJSON` visit them.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Go's `nil`.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(Rc<str>),
    /// A list (Go's slice).
    List(Rc<Vec<Value>>),
    /// A map with string keys.
    Map(Rc<BTreeMap<String, Value>>),
    /// What a missing key or an unset variable evaluates to: false in `if` and `with`, accepted
    /// by `default`, `required`, `empty`, `and`, `or`, `not` and `coalesce`, and an error
    /// naming the key anywhere else (printed, piped, compared). The text says what was missing.
    Missing(Rc<str>),
}

impl Value {
    /// A string value.
    pub fn str(text: impl Into<Rc<str>>) -> Self {
        Self::Str(text.into())
    }

    /// A map value.
    pub fn map(entries: BTreeMap<String, Value>) -> Self {
        Self::Map(Rc::new(entries))
    }

    /// A list value.
    pub fn list(items: Vec<Value>) -> Self {
        Self::List(Rc::new(items))
    }

    /// Go's notion of truth: false, 0, nil, and empty strings, lists and maps are false.
    pub fn truth(&self) -> bool {
        match self {
            Self::Nil | Self::Missing(_) => false,
            Self::Bool(b) => *b,
            Self::Int(i) => *i != 0,
            Self::Float(f) => *f != 0.0,
            Self::Str(s) => !s.is_empty(),
            Self::List(l) => !l.is_empty(),
            Self::Map(m) => !m.is_empty(),
        }
    }

    /// The Go kind's name, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Nil => "nil",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float64",
            Self::Str(_) => "string",
            Self::List(_) => "list",
            Self::Map(_) => "map",
            Self::Missing(_) => "missing value",
        }
    }

    /// Go's name of the type the value has when decoded from JSON (`printf "%T"`).
    pub fn go_type(&self) -> &'static str {
        match self {
            Self::Nil | Self::Missing(_) => "<nil>",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float64",
            Self::Str(_) => "string",
            Self::List(_) => "[]interface {}",
            Self::Map(_) => "map[string]interface {}",
        }
    }

    /// The value as Go's fmt prints it (`print`, `printf "%v"`): as `Display`, and null as
    /// `<nil>`, which `Display` writes only inside lists and maps (an action printing a null
    /// value alone writes nothing, as Helm does).
    pub fn go(&self) -> impl fmt::Display + '_ {
        struct Go<'a>(&'a Value);
        impl fmt::Display for Go<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    Value::Nil => f.write_str("<nil>"),
                    other => write!(f, "{other}"),
                }
            }
        }
        Go(self)
    }

    /// From parsed JSON (`parseJSON`, data files).
    pub fn from_json(json: &serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Self::Nil,
            serde_json::Value::Bool(b) => Self::Bool(*b),
            serde_json::Value::Number(n) => n.as_i64().map_or_else(|| Self::Float(n.as_f64().unwrap_or(f64::NAN)), Self::Int),
            serde_json::Value::String(s) => Self::str(s.as_str()),
            serde_json::Value::Array(a) => Self::list(a.iter().map(Self::from_json).collect()),
            serde_json::Value::Object(o) => Self::map(o.iter().map(|(k, v)| (k.clone(), Self::from_json(v))).collect()),
        }
    }

    /// As JSON (`toJSON`); the missing value's text when one is inside.
    pub fn to_json(&self) -> Result<serde_json::Value, Rc<str>> {
        Ok(match self {
            Self::Nil => serde_json::Value::Null,
            Self::Bool(b) => serde_json::Value::Bool(*b),
            Self::Int(i) => serde_json::Value::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number),
            Self::Str(s) => serde_json::Value::String(s.to_string()),
            Self::List(l) => serde_json::Value::Array(l.iter().map(Self::to_json).collect::<Result<_, _>>()?),
            Self::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| Ok::<_, Rc<str>>((k.clone(), v.to_json()?))).collect::<Result<_, _>>()?)
            }
            Self::Missing(what) => return Err(what.clone()),
        })
    }
}

/// Printed as Go's `fmt.Print` prints an `interface{}` (`[a b]`, `map[k:v]`), except that nil
/// prints as nothing rather than `<nil>` (only reachable with missing values allowed).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nil | Self::Missing(_) => Ok(()),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => f.write_str(&format_float_g(*x)),
            Self::Str(s) => f.write_str(s),
            Self::List(l) => {
                f.write_char('[')?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_char(' ')?;
                    }
                    write!(f, "{}", v.go())?;
                }
                f.write_char(']')
            }
            Self::Map(m) => {
                f.write_str("map[")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_char(' ')?;
                    }
                    write!(f, "{k}:{}", v.go())?;
                }
                f.write_char(']')
            }
        }
    }
}

/// A float as Go's `%v` (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest digits, with an
/// exponent when it is below -4 or at least 6 (`1e+06`, `1.5e-07`, `123456.7`).
pub(crate) fn format_float_g(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    // Rust's `{:e}` is the shortest round-trip digits too: `1.2345675e6`.
    let sci = format!("{x:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else { return sci };
    let exp: i32 = exp.parse().unwrap_or(0);
    if x != 0.0 && !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.unsigned_abs());
    }
    format!("{x}")
}

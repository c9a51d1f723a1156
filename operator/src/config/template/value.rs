//! Template values with Go's semantics where templates can see them: maps are shared
//! references (Sprig's `set` changes the map in place, as in Go), keys print and iterate
//! sorted, a missing map key is "no value" (printed `<no value>`), a nil is `<nil>`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

/// A shared, mutable map (Go's `map[string]interface{}`).
pub type Map = Rc<RefCell<BTreeMap<String, Value>>>;

/// A template value.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// A missing map key or field (Go's invalid `reflect.Value`): prints `<no value>`.
    #[default]
    Missing,
    /// Go's `nil`.
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int`/`int64`.
    Int(i64),
    /// `float64`.
    Float(f64),
    /// `string`.
    Str(Rc<str>),
    /// `[]interface{}`.
    List(Rc<Vec<Value>>),
    /// `map[string]interface{}`.
    Map(Map),
    /// werf's `.Files` object (methods `Get`, `Glob`, `Exists`, `IsDir`).
    Files,
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s.into())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.into())
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::List(Rc::new(v))
    }
}

impl From<BTreeMap<String, Value>> for Value {
    fn from(m: BTreeMap<String, Value>) -> Value {
        Value::Map(Rc::new(RefCell::new(m)))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Missing | Value::Nil, Value::Missing | Value::Nil) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => {
                (*a as f64) == *b
            }
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::List(a), Value::List(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => Rc::ptr_eq(a, b) || *a.borrow() == *b.borrow(),
            (Value::Files, Value::Files) => true,
            _ => false,
        }
    }
}

impl Value {
    /// Go template truth: false, 0, nil, and empty strings, lists and maps are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Missing | Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.borrow().is_empty(),
            Value::Files => true,
        }
    }

    /// A function argument: a missing value is passed as nil (Go's zero interface).
    pub fn arg(self) -> Value {
        match self {
            Value::Missing => Value::Nil,
            v => v,
        }
    }

    /// The Go kind name Sprig's `kindOf` reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Missing => "invalid",
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Files => "struct",
        }
    }

    /// The Go type name Sprig's `typeOf` reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Missing | Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Files => "config.files",
        }
    }

    /// The string inside a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `fmt.Sprint(v)`: what `{{ v }}` prints.
    pub fn print(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            _ => {
                let mut out = String::new();
                self.write_go(&mut out);
                out
            }
        }
    }

    /// Go's `%v` formatting, appended to `out`.
    pub fn write_go(&self, out: &mut String) {
        match self {
            Value::Missing => out.push_str("<no value>"),
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&go_float(*f)),
            Value::Str(s) => out.push_str(s),
            Value::List(items) => {
                out.push('[');
                for (k, item) in items.iter().enumerate() {
                    if k > 0 {
                        out.push(' ');
                    }
                    item.write_go(out);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (k, (key, item)) in m.borrow().iter().enumerate() {
                    if k > 0 {
                        out.push(' ');
                    }
                    out.push_str(key);
                    out.push(':');
                    item.write_go(out);
                }
                out.push(']');
            }
            Value::Files => out.push_str("{}"),
        }
    }

    /// A copy that shares nothing with `self` (Sprig's `deepCopy`).
    pub fn deep_copy(&self) -> Value {
        match self {
            Value::List(items) => {
                Value::from(items.iter().map(Value::deep_copy).collect::<Vec<_>>())
            }
            Value::Map(m) => Value::from(
                m.borrow()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.deep_copy()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            v => v.clone(),
        }
    }

    /// Converts a YAML value (`fromYaml`); non-string keys are printed as strings.
    pub fn from_yaml(v: &serde_yaml_ng::Value) -> Value {
        use serde_yaml_ng::Value as Y;
        match v {
            Y::Null => Value::Nil,
            Y::Bool(b) => Value::Bool(*b),
            Y::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            Y::String(s) => Value::from(s.as_str()),
            Y::Sequence(items) => {
                Value::from(items.iter().map(Value::from_yaml).collect::<Vec<_>>())
            }
            Y::Mapping(m) => Value::from(
                m.iter()
                    .map(|(k, v)| (Value::from_yaml(k).print(), Value::from_yaml(v)))
                    .collect::<BTreeMap<_, _>>(),
            ),
            Y::Tagged(t) => Value::from_yaml(&t.value),
        }
    }

    /// Converts a JSON value (`fromJson`).
    pub fn from_json(v: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Nil,
            J::Bool(b) => Value::Bool(*b),
            // Go decodes every JSON number into float64.
            J::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
            J::String(s) => Value::from(s.as_str()),
            J::Array(items) => Value::from(items.iter().map(Value::from_json).collect::<Vec<_>>()),
            J::Object(m) => Value::from(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect::<BTreeMap<_, _>>(),
            ),
        }
    }

    /// The YAML form of the value (`toYaml`).
    pub fn to_yaml(&self) -> serde_yaml_ng::Value {
        use serde_yaml_ng::Value as Y;
        match self {
            Value::Missing | Value::Nil | Value::Files => Y::Null,
            Value::Bool(b) => Y::Bool(*b),
            Value::Int(i) => Y::Number((*i).into()),
            Value::Float(f) => Y::Number((*f).into()),
            Value::Str(s) => Y::String(s.to_string()),
            Value::List(items) => Y::Sequence(items.iter().map(Value::to_yaml).collect()),
            Value::Map(m) => Y::Mapping(
                m.borrow()
                    .iter()
                    .map(|(k, v)| (Y::String(k.clone()), v.to_yaml()))
                    .collect(),
            ),
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): shortest digits, with an
/// exponent when it is below -4 or at least 6 (`1e+06`).
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Shortest round-trip digits and decimal exponent from Rust's `{:e}`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1;
    let body = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point as usize >= digits.len() {
        format!("{}{}", digits, "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    format!("{sign}{body}")
}

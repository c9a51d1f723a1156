//! Go's `fmt.Sprintf` for template values: verbs `v s d q t f F e g x X o b c %` with the
//! flags `-+# 0`, width and precision. A verb that does not fit its operand prints Go's
//! `%!d(string=abc)` form; missing operands print `%!d(MISSING)`.

use super::funcs::go_quote;
use super::value::{Value, go_float};

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// Formats `args` by `format` as Go's `fmt.Sprintf` does.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec {
            minus: false,
            plus: false,
            zero: false,
            space: false,
            sharp: false,
            width: None,
            precision: None,
        };
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = number(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(number(&mut chars).unwrap_or(0));
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
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let body = format_one(verb, arg, &spec);
        pad(
            &mut out,
            &body,
            &spec,
            matches!(arg, Value::Int(_) | Value::Float(_)),
        );
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.print()))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(n.unwrap_or(0) * 10 + d as usize);
        chars.next();
    }
    n
}

fn pad(out: &mut String, body: &str, spec: &Spec, numeric: bool) {
    let len = body.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        out.push_str(body);
        return;
    }
    let fill = width - len;
    if spec.minus {
        out.push_str(body);
        out.push_str(&" ".repeat(fill));
    } else if spec.zero && numeric {
        let (sign, digits) = match body.strip_prefix(['-', '+']) {
            Some(rest) => (&body[..1], rest),
            None => ("", body),
        };
        out.push_str(sign);
        out.push_str(&"0".repeat(fill));
        out.push_str(digits);
    } else {
        out.push_str(&" ".repeat(fill));
        out.push_str(body);
    }
}

fn bad(verb: char, arg: &Value) -> String {
    format!("%!{verb}({}={})", arg.type_name(), arg.print())
}

fn signed(s: String, spec: &Spec, negative: bool) -> String {
    if negative {
        s
    } else if spec.plus {
        format!("+{s}")
    } else if spec.space {
        format!(" {s}")
    } else {
        s
    }
}

fn format_one(verb: char, arg: &Value, spec: &Spec) -> String {
    match (verb, arg) {
        ('v', Value::Float(f)) | ('g', Value::Float(f)) => signed(go_float(*f), spec, *f < 0.0),
        ('v', Value::Int(i)) | ('d', Value::Int(i)) => signed(i.to_string(), spec, *i < 0),
        ('v', v) => {
            let s = v.print();
            match spec.precision {
                Some(p) if matches!(v, Value::Str(_)) => s.chars().take(p).collect(),
                _ => s,
            }
        }
        (
            's',
            v @ (Value::Str(_)
            | Value::List(_)
            | Value::Map(_)
            | Value::Nil
            | Value::Missing
            | Value::Bool(_)),
        ) => {
            let s = match v {
                Value::Nil => "%!s(<nil>)".to_string(),
                Value::Bool(b) => format!("%!s(bool={b})"),
                other => other.print(),
            };
            match spec.precision {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            }
        }
        ('s', Value::Int(i)) => format!("%!s(int={i})"),
        ('s', Value::Float(f)) => format!("%!s(float64={})", go_float(*f)),
        ('q', Value::Str(s)) => go_quote(s),
        ('q', Value::Int(i)) => match char::from_u32(*i as u32) {
            Some(c) => format!("'{c}'"),
            None => bad(verb, arg),
        },
        ('t', Value::Bool(b)) => b.to_string(),
        ('f' | 'F', Value::Float(_) | Value::Int(_)) => {
            let f = float_of(arg);
            signed(
                format!("{:.*}", spec.precision.unwrap_or(6), f),
                spec,
                f < 0.0,
            )
        }
        ('e', Value::Float(_) | Value::Int(_)) => {
            let f = float_of(arg);
            let s = format!("{:.*e}", spec.precision.unwrap_or(6), f);
            signed(go_exponent(&s), spec, f < 0.0)
        }
        ('x', Value::Int(i)) => signed(
            if *i < 0 {
                format!("-{:x}", i.unsigned_abs())
            } else {
                format!("{i:x}")
            },
            spec,
            *i < 0,
        ),
        ('X', Value::Int(i)) => signed(
            if *i < 0 {
                format!("-{:X}", i.unsigned_abs())
            } else {
                format!("{i:X}")
            },
            spec,
            *i < 0,
        ),
        ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
        ('X', Value::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
        ('o', Value::Int(i)) => {
            let body = format!("{:o}", i.unsigned_abs());
            let body = if spec.sharp { format!("0{body}") } else { body };
            if *i < 0 { format!("-{body}") } else { body }
        }
        ('b', Value::Int(i)) => {
            let body = format!("{:b}", i.unsigned_abs());
            if *i < 0 { format!("-{body}") } else { body }
        }
        ('c', Value::Int(i)) => char::from_u32(*i as u32)
            .map(String::from)
            .unwrap_or_else(|| "\u{FFFD}".into()),
        _ => bad(verb, arg),
    }
}

fn float_of(v: &Value) -> f64 {
    match v {
        Value::Float(f) => *f,
        Value::Int(i) => *i as f64,
        _ => 0.0,
    }
}

/// Rust's `1.5e3` → Go's `1.5e+03`.
fn go_exponent(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s.to_string(),
    }
}

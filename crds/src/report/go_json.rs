//! JSON text exactly as Go's `json.MarshalIndent(v, "", "\t")` writes it, which is how
//! werf writes its build report.
//!
//! serde_json's pretty printer already matches Go's layout (`"key": value`, one member
//! per line, `{}` and `[]` for empty containers). Three things differ and are fixed
//! here:
//! - Go escapes `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026` (HTML-safe output) and
//!   U+2028/U+2029 as `\u2028`/`\u2029`;
//! - Go writes floats with `strconv.FormatFloat(f, 'f', -1, 64)`, switching to `'e'`
//!   below 1e-6 and from 1e21 on, exponent `e-7`/`e+21` style; serde_json writes
//!   `3.0` where Go writes `3`;
//! - Go refuses NaN and infinities; serde_json writes `null` for them without asking
//!   the formatter, so callers check their floats first (see `BuildReport::to_json`).

use std::io::{self, Write};

use serde_json::ser::{Formatter, PrettyFormatter};

/// A serde_json formatter producing Go `MarshalIndent` output with a tab indent.
pub(crate) struct GoIndentFormatter {
    pretty: PrettyFormatter<'static>,
}

impl GoIndentFormatter {
    pub(crate) fn new() -> Self {
        GoIndentFormatter {
            pretty: PrettyFormatter::with_indent(b"\t"),
        }
    }
}

/// Writes a JSON string fragment (already escaped by serde_json for quotes, backslashes and
/// control characters) with the extra escapes Go's `encoding/json` applies by default:
/// `<` `>` `&` as `\u003c` `\u003e` `\u0026` and U+2028/U+2029 as `\u2028`/`\u2029`.
pub fn write_go_escaped<W: ?Sized + Write>(writer: &mut W, fragment: &str) -> io::Result<()> {
    let mut start = 0;
    for (i, c) in fragment.char_indices() {
        let escaped = match c {
            '<' => "\\u003c",
            '>' => "\\u003e",
            '&' => "\\u0026",
            '\u{2028}' => "\\u2028",
            '\u{2029}' => "\\u2029",
            _ => continue,
        };
        writer.write_all(&fragment.as_bytes()[start..i])?;
        writer.write_all(escaped.as_bytes())?;
        start = i + c.len_utf8();
    }
    writer.write_all(&fragment.as_bytes()[start..])
}

/// A serde_json formatter producing Go `json.Marshal` output: compact, with Go's string
/// escaping ([`write_go_escaped`]). lockgate's lease records are written this way.
pub struct GoCompactFormatter;

impl Formatter for GoCompactFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        write_go_escaped(writer, fragment)
    }
}

/// Go's `strconv.FormatFloat(f, fmt, -1, 64)` as `encoding/json` picks `fmt`.
///
/// Both Go and Rust print the shortest digit string that reads back to the same
/// float, so only the notation needs translating. Returns `None` for NaN and
/// infinities, which Go's encoder rejects.
pub(crate) fn go_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust: "1.5e-7" / "1e21". Go: exponent with sign and at least two digits,
        // then encoding/json shortens "e-07" to "e-7" (negative one-digit exponents
        // only), giving "1.5e-7" and "1e+21".
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e')?;
        let exp: i32 = exp.parse().ok()?;
        Some(if exp < 0 {
            format!("{mantissa}e-{}", -exp)
        } else {
            format!("{mantissa}e+{exp:02}")
        })
    } else {
        // Rust's Display is the shortest round-trip digits without an exponent, as
        // Go's 'f' with precision -1: 3.0 → "3", 0.25 → "0.25", 1e20 → "1000...0".
        Some(format!("{f}"))
    }
}

impl Formatter for GoIndentFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        match go_float(value) {
            Some(text) => writer.write_all(text.as_bytes()),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unsupported value {value} (Go's JSON encoder rejects NaN and infinities)"),
            )),
        }
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        write_go_escaped(writer, fragment)
    }

    // Layout: delegate to serde_json's pretty printer.
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(w)
    }
}

/// Serializes `value` the way Go's `json.MarshalIndent(value, "", "\t")` does, plus the
/// trailing newline werf appends.
pub(crate) fn to_go_indented_json<T: serde::Serialize>(
    value: &T,
) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoIndentFormatter::new());
    value.serialize(&mut ser)?;
    out.push(b'\n');
    // The formatter writes only UTF-8 (serde_json's own output plus ASCII escapes).
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn floats_use_go_notation() {
        // Values and expected strings from Go's strconv.FormatFloat rules:
        // 'f' with shortest digits in [1e-6, 1e21), else 'e' with e-N / e+NN.
        let cases = [
            (3.0, "3"),
            (0.0, "0"),
            (-0.0, "-0"),
            (0.25, "0.25"),
            (12.5, "12.5"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e22, "1.5e+22"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (2.5e-10, "2.5e-10"),
            (1.5e300, "1.5e+300"),
            (-4.25e-8, "-4.25e-8"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float(f).as_deref(), Some(want), "{f:e}");
        }
        assert_eq!(go_float(f64::NAN), None);
        assert_eq!(go_float(f64::INFINITY), None);
    }

    #[test]
    fn strings_are_html_escaped_like_go() {
        let v = BTreeMap::from([("k", "<a & b>\u{2028}\"\\\n\t\u{1}é")]);
        assert_eq!(
            to_go_indented_json(&v).unwrap(),
            "{\n\t\"k\": \"\\u003ca \\u0026 b\\u003e\\u2028\\\"\\\\\\n\\t\\u0001é\"\n}\n"
        );
    }

    #[test]
    fn layout_matches_marshal_indent() {
        #[derive(serde::Serialize)]
        struct S {
            #[serde(rename = "A")]
            a: Vec<i32>,
            #[serde(rename = "B")]
            b: Vec<i32>,
            #[serde(rename = "C")]
            c: BTreeMap<String, i32>,
            #[serde(rename = "D")]
            d: Option<Vec<i32>>,
            #[serde(rename = "E")]
            e: f64,
        }
        let s = S {
            a: vec![1, 2],
            b: vec![],
            c: BTreeMap::new(),
            d: None,
            e: 2.0,
        };
        let want = "{\n\t\"A\": [\n\t\t1,\n\t\t2\n\t],\n\t\"B\": [],\n\t\"C\": {},\n\t\"D\": null,\n\t\"E\": 2\n}\n";
        assert_eq!(to_go_indented_json(&s).unwrap(), want);
    }
}

//! Table tests of Go template semantics; expected outputs are what Go's `text/template`
//! with Sprig prints for the same input.

use std::collections::BTreeMap;

use super::{Host, Phase, TemplateSet, Value};

struct NoHost;

impl Host for NoHost {
    fn env(&self, name: &str, fallback: Option<&str>) -> Result<String, String> {
        match name {
            "SET" => Ok("value".into()),
            _ => fallback
                .map(str::to_string)
                .ok_or_else(|| format!("{name} unset")),
        }
    }

    fn files(&self, method: &str, path: &str) -> Result<Value, String> {
        match (method, path) {
            ("Get", "snippet.txt") => Ok(Value::from("RUN true")),
            ("Exists", p) => Ok(Value::Bool(p == "snippet.txt")),
            _ => Err(format!("{path} not found")),
        }
    }
}

fn data() -> Value {
    let mut m = BTreeMap::new();
    m.insert("Name".to_string(), Value::from("api"));
    m.insert("Count".to_string(), Value::Int(3));
    m.insert("Empty".to_string(), Value::from(""));
    m.insert(
        "List".to_string(),
        Value::from(vec![Value::from("a"), Value::from("b"), Value::from("c")]),
    );
    let mut inner = BTreeMap::new();
    inner.insert("z".to_string(), Value::Int(1));
    inner.insert("a".to_string(), Value::Int(2));
    m.insert("Map".to_string(), Value::from(inner));
    m.insert("Files".to_string(), Value::Files);
    Value::from(m)
}

fn render(src: &str) -> Result<String, Box<super::TemplateError>> {
    let set = TemplateSet::new();
    set.add("werfConfig", src)?;
    set.execute("werfConfig", data(), &NoHost)
}

#[test]
fn go_template_semantics() {
    let cases: &[(&str, &str)] = &[
        ("plain text", "plain text"),
        ("{{ .Name }}", "api"),
        ("{{ .Missing }}", "<no value>"),
        (
            "{{ index .Map \"nokey\" }} {{ first (list) }} {{ list nil }} {{ print nil }}",
            "<no value> <no value> [<nil>] <nil>",
        ),
        ("a  {{- .Name -}}  b", "aapib"),
        ("a\n{{- /* comment */ -}}\nb", "ab"),
        ("{{/* c */}}x", "x"),
        ("{{ if .Name }}yes{{ else }}no{{ end }}", "yes"),
        (
            "{{ if .Empty }}yes{{ else if .Count }}count{{ else }}no{{ end }}",
            "count",
        ),
        ("{{ with .Name }}{{ . }}!{{ end }}", "api!"),
        ("{{ with .Empty }}x{{ else }}empty{{ end }}", "empty"),
        ("{{ range .List }}{{ . }},{{ end }}", "a,b,c,"),
        (
            "{{ range $i, $v := .List }}{{ $i }}={{ $v }} {{ end }}",
            "0=a 1=b 2=c ",
        ),
        (
            "{{ range $k, $v := .Map }}{{ $k }}{{ $v }}{{ end }}",
            "a2z1",
        ),
        ("{{ range .Nothing }}x{{ else }}none{{ end }}", "none"),
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        (
            "{{ range .List }}{{ if eq . \"b\" }}{{ break }}{{ end }}{{ . }}{{ end }}",
            "a",
        ),
        (
            "{{ range .List }}{{ if eq . \"b\" }}{{ continue }}{{ end }}{{ . }}{{ end }}",
            "ac",
        ),
        (
            "{{ $x := 1 }}{{ range .List }}{{ $x = 2 }}{{ end }}{{ $x }}",
            "2",
        ),
        ("{{ range .List }}{{ $.Name }}{{ end }}", "apiapiapi"),
        (
            "{{ define \"t\" }}[{{ . }}]{{ end }}{{ template \"t\" .Name }}",
            "[api]",
        ),
        ("{{ block \"b\" .Count }}<{{ . }}>{{ end }}", "<3>"),
        (
            "{{ define \"t\" }}{{ .Name }}{{ end }}{{ include \"t\" . | upper }}",
            "API",
        ),
        ("{{ tpl \"{{ .Name }}-x\" . }}", "api-x"),
        ("{{ .Name | printf \"%s-%02d\" }}", "api-%!d(MISSING)"),
        ("{{ printf \"%s-%02d\" .Name .Count }}", "api-03"),
        (
            "{{ printf \"%v %q %5s|%-4d|\" .List .Name \"ab\" 7 }}",
            "[a b c] \"api\"    ab|7   |",
        ),
        (
            "{{ and 1 0 }} {{ or 0 \"\" 5 }} {{ not true }}",
            "0 5 false",
        ),
        ("{{ and false (fail \"not evaluated\") }}", "false"),
        (
            "{{ len .List }} {{ index .List 1 }} {{ index .Map \"a\" }}",
            "3 b 2",
        ),
        ("{{ slice .List 1 }}", "[b c]"),
        (
            "{{ eq .Count 3 }} {{ ne .Name \"x\" }} {{ lt 1 2 }} {{ ge \"b\" \"a\" }}",
            "true true true true",
        ),
        ("{{ eq .Name \"x\" \"api\" }}", "true"),
        ("{{ print 1 2 \"a\" 3 }}|{{ println \"x\" }}", "1 2a3|x\n"),
        ("{{ .Map }}", "map[a:2 z:1]"),
        (
            "{{ 1.5 }} {{ 1e6 }} {{ 0x10 }} {{ -3 }} {{ 'a' }}",
            "1.5 1e+06 16 -3 97",
        ),
        ("{{ `raw {{ }}` }}", "raw {{ }}"),
        ("{{ \"a\\tb\" }}", "a\tb"),
        (
            "{{ html \"<a&b>\" }} {{ urlquery \"a b&c\" }}",
            "&lt;a&amp;b&gt; a+b%26c",
        ),
    ];
    for (src, want) in cases {
        match render(src) {
            Ok(got) => assert_eq!(got, *want, "{src}"),
            Err(e) => panic!("{src}: {e}"),
        }
    }
}

#[test]
fn sprig_functions() {
    let cases: &[(&str, &str)] = &[
        (
            "{{ $_ := set . \"Base\" \"node:20\" }}{{ .Base }}",
            "node:20",
        ),
        (
            "{{ $d := dict \"a\" 1 \"b\" 2 }}{{ $d.b }} {{ hasKey $d \"a\" }} {{ keys $d }}",
            "2 true [a b]",
        ),
        (
            "{{ $d := dict \"a\" 1 }}{{ $_ := unset $d \"a\" }}{{ len $d }}",
            "0",
        ),
        (
            "{{ get (dict \"a\" \"x\") \"a\" }}{{ get (dict) \"b\" }}.",
            "x.",
        ),
        ("{{ pluck \"a\" (dict \"a\" 1) (dict \"a\" 2) }}", "[1 2]"),
        (
            "{{ merge (dict \"a\" 1) (dict \"a\" 2 \"b\" 3) }}",
            "map[a:1 b:3]",
        ),
        (
            "{{ mergeOverwrite (dict \"a\" 1) (dict \"a\" 2) }}",
            "map[a:2]",
        ),
        (
            "{{ pick (dict \"a\" 1 \"b\" 2) \"a\" }} {{ omit (dict \"a\" 1 \"b\" 2) \"a\" }}",
            "map[a:1] map[b:2]",
        ),
        (
            "{{ dig \"a\" \"b\" \"def\" (dict \"a\" (dict \"b\" \"x\")) }} {{ dig \"a\" \"c\" \"def\" (dict \"a\" (dict)) }}",
            "x def",
        ),
        ("{{ list 1 2 | append .List | len }}", "4"),
        (
            "{{ first .List }}{{ last .List }} {{ rest .List }} {{ initial .List }} {{ reverse .List }}",
            "ac [b c] [a b] [c b a]",
        ),
        (
            "{{ uniq (list 1 1 2) }} {{ without (list 1 2 3) 2 }} {{ has \"b\" .List }} {{ compact (list \"\" \"a\") }}",
            "[1 2] [1 3] true [a]",
        ),
        (
            "{{ concat (list 1) (list 2 3) }} {{ until 3 }} {{ untilStep 1 7 3 }} {{ seq 3 }}",
            "[1 2 3] [0 1 2] [1 4] 1 2 3",
        ),
        (
            "{{ prepend .List \"z\" }} {{ sortAlpha (list \"b\" \"a\") }}",
            "[z a b c] [a b]",
        ),
        (
            "{{ default \"d\" .Empty }} {{ default \"d\" .Name }} {{ .Missing | default \"m\" }}",
            "d api m",
        ),
        (
            "{{ empty .Empty }} {{ empty .List }} {{ coalesce .Empty \"\" \"c\" }} {{ ternary \"y\" \"n\" true }}",
            "true false c y",
        ),
        (
            "{{ trim \"  x \" }}|{{ trimPrefix \"a-\" \"a-b\" }}|{{ trimSuffix \"-b\" \"a-b\" }}|{{ trimAll \"$\" \"$x$\" }}",
            "x|b|a|x",
        ),
        (
            "{{ upper \"a\" }}{{ lower \"B\" }} {{ title \"hello world\" }} {{ untitle \"Hello World\" }}",
            "Ab Hello World hello world",
        ),
        (
            "{{ repeat 3 \"ab\" }} {{ substr 1 3 \"hello\" }} {{ trunc 3 \"hello\" }} {{ trunc -2 \"hello\" }} {{ abbrev 5 \"hello world\" }}",
            "ababab el hel lo he...",
        ),
        (
            "{{ contains \"ell\" \"hello\" }} {{ hasPrefix \"he\" \"hello\" }} {{ hasSuffix \"lo\" \"hello\" }}",
            "true true true",
        ),
        (
            "{{ quote \"a\" 1 }} {{ squote \"b\" }} {{ cat \"a\" 1 nil \"b\" }}",
            "\"a\" \"1\" 'b' a 1 b",
        ),
        (
            "{{ \"a\\nb\" | indent 2 }}|{{ \"a\" | nindent 2 }}",
            "  a\n  b|\n  a",
        ),
        (
            "{{ replace \"-\" \"_\" \"a-b-c\" }} {{ snakecase \"FooBar\" }} {{ kebabcase \"fooBar\" }} {{ camelcase \"foo_bar\" }}",
            "a_b_c foo_bar foo-bar FooBar",
        ),
        (
            "{{ join \",\" .List }} {{ splitList \",\" \"a,b\" }} {{ (split \",\" \"a,b\")._1 }}",
            "a,b,c [a b] b",
        ),
        (
            "{{ regexMatch \"^a.c$\" \"abc\" }} {{ regexFind \"[0-9]+\" \"ab12c\" }} {{ regexReplaceAll \"(b+)\" \"abbc\" \"<${1}>\" }}",
            "true 12 a<bb>c",
        ),
        (
            "{{ regexFindAll \"[a-c]\" \"abcd\" 2 }} {{ regexSplit \",\" \"a,b,c\" -1 }}",
            "[a b] [a b c]",
        ),
        (
            "{{ b64enc \"hi\" }} {{ b64dec \"aGk=\" }} {{ sha256sum \"\" | trunc 8 }} {{ adler32sum \"abc\" }}",
            "aGk= hi e3b0c442 38600999",
        ),
        (
            "{{ toJson (dict \"b\" (list 1 \"<x>\") \"a\" nil) }}",
            "{\"a\":null,\"b\":[1,\"\\u003cx\\u003e\"]}",
        ),
        (
            "{{ toPrettyJson (dict \"a\" (list 1)) }}",
            "{\n  \"a\": [\n    1\n  ]\n}",
        ),
        ("{{ (fromJson \"{\\\"a\\\": 1}\").a }}", "1"),
        ("{{ (fromYaml \"a:\\n  b: [1, 2]\").a.b }}", "[1 2]"),
        (
            "{{ toYaml (dict \"b\" (list 1 2) \"a\" \"x\") }}",
            "a: x\nb:\n- 1\n- 2",
        ),
        (
            "{{ add 1 2 \"3\" }} {{ add1 1 }} {{ sub 5 2 }} {{ mul 2 3 }} {{ div 7 2 }} {{ mod 7 2 }} {{ max 1 5 2 }} {{ min 3 1 }}",
            "6 2 3 6 3 1 5 1",
        ),
        (
            "{{ int \"12\" }} {{ float64 \"1.5\" }} {{ atoi \"7\" }} {{ floor 1.7 }} {{ ceil 1.2 }} {{ round 1.256 2 }}",
            "12 1.5 7 1 2 1.26",
        ),
        (
            "{{ kindOf .List }} {{ typeOf .Name }} {{ kindIs \"map\" .Map }} {{ deepEqual (list 1) (list 1) }}",
            "slice string true true",
        ),
        (
            "{{ base \"a/b.txt\" }} {{ dir \"a/b.txt\" }} {{ ext \"a/b.txt\" }} {{ clean \"a//b/../c\" }}",
            "b.txt a .txt a/c",
        ),
        ("{{ required \"x\" .Name }}", "api"),
        (
            "{{ env \"SET\" }} {{ env \"UNSET\" \"fallback\" }}",
            "value fallback",
        ),
        (
            "{{ .Files.Get \"snippet.txt\" }} {{ .Files.Exists \"nope\" }}",
            "RUN true false",
        ),
    ];
    for (src, want) in cases {
        match render(src) {
            Ok(got) => assert_eq!(got, *want, "{src}"),
            Err(e) => panic!("{src}: {e}"),
        }
    }
}

#[test]
fn errors_name_template_line_column_function_and_value() {
    // (template, phase, line, column, failing function, message part)
    type Case<'a> = (&'a str, Phase, usize, usize, Option<&'a str>, &'a str);
    let cases: &[Case] = &[
        (
            "a\n  {{ required \"BaseImage is required\" .Base }}",
            Phase::Execute,
            2,
            6,
            Some("required"),
            "BaseImage is required",
        ),
        (
            "{{ nosuch 1 }}",
            Phase::Parse,
            1,
            4,
            None,
            "function \"nosuch\" not defined",
        ),
        (
            "x\n{{ if .Name }}",
            Phase::Parse,
            2,
            4,
            None,
            "unexpected EOF",
        ),
        ("{{ end }}", Phase::Parse, 1, 4, None, "unexpected {{end}}"),
        ("{{ .Name", Phase::Parse, 1, 9, None, "unclosed action"),
        (
            "{{ .Missing.Deeper }}",
            Phase::Execute,
            1,
            4,
            None,
            "nil pointer evaluating interface {}.Deeper",
        ),
        (
            "{{ (list 1 2).Missing }}",
            Phase::Execute,
            1,
            4,
            None,
            "can't evaluate field Missing in type []interface {}",
        ),
        (
            "{{ env \"UNSET\" }}",
            Phase::Execute,
            1,
            4,
            Some("env"),
            "UNSET unset",
        ),
        (
            "{{ .Files.Get \"nope\" }}",
            Phase::Execute,
            1,
            4,
            Some("Get"),
            "nope not found",
        ),
        (
            "{{ include \"nope\" . }}",
            Phase::Execute,
            1,
            4,
            Some("include"),
            "no template \"nope\"",
        ),
        (
            "{{ template \"nope\" . }}",
            Phase::Execute,
            1,
            4,
            None,
            "template \"nope\" not defined",
        ),
        (
            "{{ fail \"stop\" }}",
            Phase::Execute,
            1,
            4,
            Some("fail"),
            "stop",
        ),
        (
            "{{ $x }}",
            Phase::Execute,
            1,
            4,
            None,
            "undefined variable: $x",
        ),
        (
            "{{ break }}",
            Phase::Parse,
            1,
            4,
            None,
            "{{break}} outside {{range}}",
        ),
        (
            "{{ \"a\" | \"b\" }}",
            Phase::Parse,
            1,
            10,
            None,
            "non executable command",
        ),
    ];
    for (src, phase, line, column, function, message) in cases {
        let err = render(src).expect_err(src);
        assert_eq!(err.phase, *phase, "{src}: {err}");
        assert_eq!((err.line, err.column), (*line, *column), "{src}: {err}");
        assert_eq!(err.function.as_deref(), *function, "{src}: {err}");
        assert!(err.message.contains(message), "{src}: {err}");
    }
}

#[test]
fn errors_in_included_templates_point_into_the_partial() {
    let set = TemplateSet::new();
    set.add(
        "_helpers.tmpl",
        "{{ define \"image\" }}\nfrom: {{ required \"base missing\" .Base }}\n{{ end }}",
    )
    .unwrap();
    set.add("werfConfig", "project: x\n{{ include \"image\" . }}")
        .unwrap();
    let err = set.execute("werfConfig", data(), &NoHost).unwrap_err();
    assert_eq!(err.template, "_helpers.tmpl");
    assert_eq!(err.executing.as_deref(), Some("image"));
    assert_eq!((err.line, err.column), (2, 10));
    assert_eq!(err.function.as_deref(), Some("required"));
    assert_eq!(
        err.via,
        vec!["werfConfig:2:4: include (include \"image\" .)".to_string()]
    );
    let text = err.to_string();
    assert!(
        text.starts_with("template: _helpers.tmpl:2:10: executing \"image\" at <required \"base missing\" .Base>: error calling required: base missing"),
        "{text}"
    );
}

#[test]
fn later_definitions_replace_earlier_ones_but_empty_bodies_do_not() {
    let set = TemplateSet::new();
    set.add("a.tmpl", "{{ define \"x\" }}first{{ end }}")
        .unwrap();
    set.add("b.tmpl", "{{ define \"x\" }}second{{ end }}")
        .unwrap();
    set.add("werfConfig", "{{ template \"x\" }}").unwrap();
    assert_eq!(
        set.execute("werfConfig", data(), &NoHost).unwrap(),
        "second"
    );
}

#[test]
fn deep_recursion_is_an_error_not_a_crash() {
    let set = TemplateSet::new();
    set.add(
        "werfConfig",
        "{{ define \"loop\" }}{{ include \"loop\" . }}{{ end }}{{ include \"loop\" . }}",
    )
    .unwrap();
    let err = set.execute("werfConfig", data(), &NoHost).unwrap_err();
    assert!(
        err.message.contains("exceeded maximum template depth"),
        "{err}"
    );
}

#[test]
fn map_iteration_and_printing_are_sorted_so_output_is_deterministic() {
    let src = "{{ $m := dict }}{{ range $k := list \"q\" \"b\" \"x\" \"a\" }}{{ $_ := set $m $k 1 }}{{ end }}{{ range $k, $_ := $m }}{{ $k }}{{ end }} {{ $m }} {{ toJson $m }}";
    let first = render(src).unwrap();
    assert_eq!(
        first,
        "abqx map[a:1 b:1 q:1 x:1] {\"a\":1,\"b\":1,\"q\":1,\"x\":1}"
    );
    for _ in 0..5 {
        assert_eq!(render(src).unwrap(), first);
    }
}

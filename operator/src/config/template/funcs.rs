//! The functions templates can call: Go's builtins (`len`, `index`, `printf`, `eq`...),
//! the Sprig library (minus `expandenv`, as werf removes it) and werf's `required`,
//! `fromYaml`, `toYaml`. `and`/`or`, `include`, `tpl` and `env` need the executor and are
//! handled there; [`is_func`] knows them too.
//!
//! Sprig functions not provided (rejected at parse time like any unknown function): the
//! nondeterministic ones (`now`, `date*`, `rand*`, `uuidv4`, `shuffle`), cryptography
//! (`genPrivateKey`, `derivePassword`, `htpasswd`, `encryptAES`...), `semver*`,
//! `getHostByName`, and most `must*` variants.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::OnceLock;

use base64::Engine as _;
use sha2::Digest as _;

use super::printf::sprintf;
use super::value::{Value, go_float};

type Func = fn(&[Value]) -> Result<Value, String>;

/// `(name, minimum args, maximum args or None for variadic, function)`.
type Entry = (&'static str, usize, Option<usize>, Func);

/// Functions the executor implements itself.
const EXEC_FUNCS: &[&str] = &["and", "or", "include", "tpl", "env"];

/// Arity bounds and the function, by name.
type Table = HashMap<&'static str, (usize, Option<usize>, Func)>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        ENTRIES
            .iter()
            .map(|(n, min, max, f)| (*n, (*min, *max, *f)))
            .collect()
    })
}

/// Whether `name` is a function templates may call.
pub(crate) fn is_func(name: &str) -> bool {
    EXEC_FUNCS.contains(&name) || table().contains_key(name)
}

/// Calls function `name` (not one of the executor's own) with `args`.
pub(crate) fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    let Some((min, max, f)) = table().get(name) else {
        return Err(format!("function {name:?} not defined"));
    };
    let n = args.len();
    if n < *min || max.is_some_and(|m| n > m) {
        let want = match max {
            Some(m) if m == min => format!("{m}"),
            Some(m) => format!("{min} to {m}"),
            None => format!("at least {min}"),
        };
        return Err(format!(
            "wrong number of args for {name}: want {want} got {n}"
        ));
    }
    f(args)
}

const ENTRIES: &[Entry] = &[
    // Go builtins.
    ("not", 1, Some(1), |a| Ok(Value::Bool(!a[0].truthy()))),
    ("len", 1, Some(1), len),
    ("index", 1, None, index),
    ("slice", 1, Some(3), slice),
    ("print", 0, None, |a| Ok(Value::from(go_sprint(a)))),
    ("println", 0, None, |a| {
        Ok(Value::from(format!(
            "{}\n",
            a.iter().map(Value::print).collect::<Vec<_>>().join(" ")
        )))
    }),
    ("printf", 1, None, |a| {
        Ok(Value::from(sprintf(&a[0].print(), &a[1..])))
    }),
    ("eq", 1, None, eq),
    ("ne", 2, Some(2), |a| {
        eq(a).map(|v| Value::Bool(!v.truthy()))
    }),
    ("lt", 2, Some(2), |a| {
        compare(a).map(|o| Value::Bool(o.is_lt()))
    }),
    ("le", 2, Some(2), |a| {
        compare(a).map(|o| Value::Bool(o.is_le()))
    }),
    ("gt", 2, Some(2), |a| {
        compare(a).map(|o| Value::Bool(o.is_gt()))
    }),
    ("ge", 2, Some(2), |a| {
        compare(a).map(|o| Value::Bool(o.is_ge()))
    }),
    ("html", 0, None, |a| {
        Ok(Value::from(html_escape(&go_sprint(a))))
    }),
    ("urlquery", 0, None, |a| {
        Ok(Value::from(query_escape(&go_sprint(a))))
    }),
    ("js", 0, None, |a| Ok(Value::from(js_escape(&go_sprint(a))))),
    // werf.
    ("required", 2, Some(2), required),
    ("fromYaml", 1, Some(1), from_yaml),
    ("toYaml", 1, Some(1), to_yaml),
    // Sprig: strings.
    ("trim", 1, Some(1), |a| s1(a, |s| s.trim().to_string())),
    ("trimAll", 2, Some(2), |a| {
        let cut = strval(&a[0]);
        Ok(Value::from(
            strval(&a[1]).trim_matches(|c| cut.contains(c)).to_string(),
        ))
    }),
    ("trimPrefix", 2, Some(2), |a| {
        let s = strval(&a[1]);
        Ok(Value::from(
            s.strip_prefix(strval(&a[0]).as_str())
                .unwrap_or(&s)
                .to_string(),
        ))
    }),
    ("trimSuffix", 2, Some(2), |a| {
        let s = strval(&a[1]);
        Ok(Value::from(
            s.strip_suffix(strval(&a[0]).as_str())
                .unwrap_or(&s)
                .to_string(),
        ))
    }),
    ("upper", 1, Some(1), |a| s1(a, |s| s.to_uppercase())),
    ("lower", 1, Some(1), |a| s1(a, |s| s.to_lowercase())),
    ("title", 1, Some(1), |a| s1(a, title)),
    ("untitle", 1, Some(1), |a| s1(a, untitle)),
    ("repeat", 2, Some(2), |a| {
        Ok(Value::from(
            strval(&a[1]).repeat(to_i64(&a[0]).max(0) as usize),
        ))
    }),
    ("substr", 3, Some(3), substr),
    ("nospace", 1, Some(1), |a| {
        s1(a, |s| s.chars().filter(|c| !c.is_whitespace()).collect())
    }),
    ("trunc", 2, Some(2), trunc),
    ("abbrev", 2, Some(2), abbrev),
    ("initials", 1, Some(1), |a| {
        s1(a, |s| {
            s.split_whitespace()
                .filter_map(|w| w.chars().next())
                .collect()
        })
    }),
    ("contains", 2, Some(2), |a| {
        Ok(Value::Bool(strval(&a[1]).contains(strval(&a[0]).as_str())))
    }),
    ("hasPrefix", 2, Some(2), |a| {
        Ok(Value::Bool(
            strval(&a[1]).starts_with(strval(&a[0]).as_str()),
        ))
    }),
    ("hasSuffix", 2, Some(2), |a| {
        Ok(Value::Bool(strval(&a[1]).ends_with(strval(&a[0]).as_str())))
    }),
    ("quote", 0, None, |a| {
        Ok(Value::from(
            non_nil(a)
                .map(|v| go_quote(&strval(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ))
    }),
    ("squote", 0, None, |a| {
        Ok(Value::from(
            non_nil(a)
                .map(|v| format!("'{}'", strval(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ))
    }),
    ("cat", 0, None, |a| {
        Ok(Value::from(
            non_nil(a).map(Value::print).collect::<Vec<_>>().join(" "),
        ))
    }),
    ("indent", 2, Some(2), |a| {
        Ok(Value::from(indent(to_i64(&a[0]), &strval(&a[1]))))
    }),
    ("nindent", 2, Some(2), |a| {
        Ok(Value::from(format!(
            "\n{}",
            indent(to_i64(&a[0]), &strval(&a[1]))
        )))
    }),
    ("replace", 3, Some(3), |a| {
        Ok(Value::from(
            strval(&a[2]).replace(strval(&a[0]).as_str(), &strval(&a[1])),
        ))
    }),
    ("plural", 3, Some(3), |a| {
        Ok(if to_i64(&a[2]) == 1 {
            a[0].clone()
        } else {
            a[1].clone()
        })
    }),
    ("snakecase", 1, Some(1), |a| s1(a, |s| words(s).join("_"))),
    ("kebabcase", 1, Some(1), |a| s1(a, |s| words(s).join("-"))),
    ("camelcase", 1, Some(1), |a| {
        s1(a, |s| s.split(['_', '-', ' ']).map(title).collect())
    }),
    ("swapcase", 1, Some(1), |a| {
        s1(a, |s| {
            s.chars()
                .map(|c| {
                    if c.is_uppercase() {
                        c.to_lowercase().next().unwrap_or(c)
                    } else {
                        c.to_uppercase().next().unwrap_or(c)
                    }
                })
                .collect()
        })
    }),
    ("toString", 1, Some(1), |a| Ok(Value::from(strval(&a[0])))),
    ("toStrings", 1, Some(1), |a| {
        Ok(Value::from(
            list_of(&a[0])?
                .iter()
                .map(|v| Value::from(strval(v)))
                .collect::<Vec<_>>(),
        ))
    }),
    ("join", 2, Some(2), |a| {
        Ok(Value::from(string_list(&a[1]).join(strval(&a[0]).as_str())))
    }),
    ("split", 2, Some(2), |a| {
        let sep = strval(&a[0]);
        let parts = strval(&a[1])
            .split(sep.as_str())
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), Value::from(p)))
            .collect::<BTreeMap<_, _>>();
        Ok(Value::from(parts))
    }),
    ("splitList", 2, Some(2), |a| {
        let sep = strval(&a[0]);
        Ok(Value::from(
            strval(&a[1])
                .split(sep.as_str())
                .map(Value::from)
                .collect::<Vec<_>>(),
        ))
    }),
    ("splitn", 3, Some(3), |a| {
        let sep = strval(&a[0]);
        let n = to_i64(&a[1]).max(0) as usize;
        let parts = strval(&a[2])
            .splitn(n, sep.as_str())
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), Value::from(p)))
            .collect::<BTreeMap<_, _>>();
        Ok(Value::from(parts))
    }),
    ("sortAlpha", 1, Some(1), |a| {
        let mut items = string_list(&a[0]);
        items.sort();
        Ok(Value::from(
            items.into_iter().map(Value::from).collect::<Vec<_>>(),
        ))
    }),
    ("regexMatch", 2, Some(2), |a| {
        Ok(Value::Bool(regex(&a[0])?.is_match(&strval(&a[1]))))
    }),
    ("mustRegexMatch", 2, Some(2), |a| {
        Ok(Value::Bool(regex(&a[0])?.is_match(&strval(&a[1]))))
    }),
    ("regexFind", 2, Some(2), |a| {
        Ok(Value::from(
            regex(&a[0])?
                .find(&strval(&a[1]))
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
        ))
    }),
    ("regexFindAll", 3, Some(3), |a| {
        let n = to_i64(&a[2]);
        let s = strval(&a[1]);
        let found = regex(&a[0])?
            .find_iter(&s)
            .take(if n < 0 { usize::MAX } else { n as usize })
            .map(|m| Value::from(m.as_str()))
            .collect::<Vec<_>>();
        Ok(Value::from(found))
    }),
    ("regexReplaceAll", 3, Some(3), |a| {
        // Go's `${1}` and `$1` expansion matches the regex crate's.
        Ok(Value::from(
            regex(&a[0])?
                .replace_all(&strval(&a[1]), strval(&a[2]).as_str())
                .into_owned(),
        ))
    }),
    ("regexReplaceAllLiteral", 3, Some(3), |a| {
        Ok(Value::from(
            regex(&a[0])?
                .replace_all(&strval(&a[1]), regex::NoExpand(&strval(&a[2])))
                .into_owned(),
        ))
    }),
    ("regexSplit", 3, Some(3), |a| {
        let n = to_i64(&a[2]);
        let s = strval(&a[1]);
        let re = regex(&a[0])?;
        let parts: Vec<Value> = if n < 0 {
            re.split(&s).map(Value::from).collect()
        } else {
            re.splitn(&s, n as usize).map(Value::from).collect()
        };
        Ok(Value::from(parts))
    }),
    ("regexQuoteMeta", 1, Some(1), |a| s1(a, regex::escape)),
    ("b64enc", 1, Some(1), |a| {
        s1(a, |s| base64::engine::general_purpose::STANDARD.encode(s))
    }),
    ("b64dec", 1, Some(1), |a| {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(strval(&a[0]))
            .map_err(|e| e.to_string())?;
        Ok(Value::from(String::from_utf8_lossy(&decoded).into_owned()))
    }),
    ("sha256sum", 1, Some(1), |a| {
        s1(a, |s| hex(&sha2::Sha256::digest(s.as_bytes())))
    }),
    ("adler32sum", 1, Some(1), |a| {
        s1(a, |s| adler32(s.as_bytes()).to_string())
    }),
    ("toJson", 1, Some(1), |a| {
        Ok(Value::from(json(&a[0], true, None)))
    }),
    ("mustToJson", 1, Some(1), |a| {
        Ok(Value::from(json(&a[0], true, None)))
    }),
    ("toRawJson", 1, Some(1), |a| {
        Ok(Value::from(json(&a[0], false, None)))
    }),
    ("toPrettyJson", 1, Some(1), |a| {
        Ok(Value::from(json(&a[0], true, Some(0))))
    }),
    ("fromJson", 1, Some(1), |a| {
        // Sprig's fromJson gives an empty map for invalid JSON.
        Ok(serde_json::from_str::<serde_json::Value>(&strval(&a[0]))
            .map(|j| Value::from_json(&j))
            .unwrap_or_else(|_| Value::from(BTreeMap::new())))
    }),
    // Sprig: defaults and flow.
    ("default", 1, Some(2), |a| {
        Ok(if a.len() < 2 || empty(&a[1]) {
            a[0].clone()
        } else {
            a[1].clone()
        })
    }),
    ("empty", 1, Some(1), |a| Ok(Value::Bool(empty(&a[0])))),
    ("coalesce", 0, None, |a| {
        Ok(a.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Nil))
    }),
    ("all", 0, None, |a| {
        Ok(Value::Bool(a.iter().all(|v| !empty(v))))
    }),
    ("any", 0, None, |a| {
        Ok(Value::Bool(a.iter().any(|v| !empty(v))))
    }),
    ("ternary", 3, Some(3), |a| {
        Ok(if a[2].truthy() {
            a[0].clone()
        } else {
            a[1].clone()
        })
    }),
    ("fail", 1, Some(1), |a| Err(strval(&a[0]))),
    ("kindOf", 1, Some(1), |a| Ok(Value::from(a[0].kind()))),
    ("kindIs", 2, Some(2), |a| {
        Ok(Value::Bool(strval(&a[0]) == a[1].kind()))
    }),
    ("typeOf", 1, Some(1), |a| Ok(Value::from(a[0].type_name()))),
    ("typeIs", 2, Some(2), |a| {
        Ok(Value::Bool(strval(&a[0]) == a[1].type_name()))
    }),
    ("deepEqual", 2, Some(2), |a| Ok(Value::Bool(a[0] == a[1]))),
    // Sprig: lists.
    ("list", 0, None, |a| Ok(Value::from(a.to_vec()))),
    ("append", 2, Some(2), append),
    ("push", 2, Some(2), append),
    ("mustAppend", 2, Some(2), append),
    ("prepend", 2, Some(2), |a| {
        let mut items = vec![a[1].clone()];
        items.extend(list_of(&a[0])?.iter().cloned());
        Ok(Value::from(items))
    }),
    ("first", 1, Some(1), |a| {
        Ok(list_of(&a[0])?.first().cloned().unwrap_or(Value::Nil))
    }),
    ("last", 1, Some(1), |a| {
        Ok(list_of(&a[0])?.last().cloned().unwrap_or(Value::Nil))
    }),
    ("rest", 1, Some(1), |a| {
        Ok(Value::from(
            list_of(&a[0])?.iter().skip(1).cloned().collect::<Vec<_>>(),
        ))
    }),
    ("initial", 1, Some(1), |a| {
        let l = list_of(&a[0])?;
        Ok(Value::from(l[..l.len().saturating_sub(1)].to_vec()))
    }),
    ("reverse", 1, Some(1), |a| {
        Ok(Value::from(
            list_of(&a[0])?.iter().rev().cloned().collect::<Vec<_>>(),
        ))
    }),
    ("uniq", 1, Some(1), |a| {
        let mut out: Vec<Value> = Vec::new();
        for v in list_of(&a[0])?.iter() {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        Ok(Value::from(out))
    }),
    ("without", 1, None, |a| {
        Ok(Value::from(
            list_of(&a[0])?
                .iter()
                .filter(|v| !a[1..].contains(v))
                .cloned()
                .collect::<Vec<_>>(),
        ))
    }),
    ("has", 2, Some(2), |a| {
        Ok(Value::Bool(list_of(&a[1])?.contains(&a[0])))
    }),
    ("compact", 1, Some(1), |a| {
        Ok(Value::from(
            list_of(&a[0])?
                .iter()
                .filter(|v| !empty(v))
                .cloned()
                .collect::<Vec<_>>(),
        ))
    }),
    ("concat", 0, None, |a| {
        let mut out = Vec::new();
        for l in a {
            out.extend(list_of(l)?.iter().cloned());
        }
        Ok(Value::from(out))
    }),
    ("until", 1, Some(1), |a| Ok(int_range(0, to_i64(&a[0]), 1))),
    ("untilStep", 3, Some(3), |a| {
        Ok(int_range(to_i64(&a[0]), to_i64(&a[1]), to_i64(&a[2])))
    }),
    ("seq", 1, Some(3), seq),
    // Sprig: dictionaries.
    ("dict", 0, None, |a| {
        let mut m = BTreeMap::new();
        for pair in a.chunks(2) {
            m.insert(
                strval(&pair[0]),
                pair.get(1).cloned().unwrap_or(Value::from("")),
            );
        }
        Ok(Value::from(m))
    }),
    ("get", 2, Some(2), |a| {
        Ok(map_of(&a[0])?
            .borrow()
            .get(&strval(&a[1]))
            .cloned()
            .unwrap_or(Value::from("")))
    }),
    ("set", 3, Some(3), |a| {
        map_of(&a[0])?
            .borrow_mut()
            .insert(strval(&a[1]), a[2].clone());
        Ok(a[0].clone())
    }),
    ("unset", 2, Some(2), |a| {
        map_of(&a[0])?.borrow_mut().remove(&strval(&a[1]));
        Ok(a[0].clone())
    }),
    ("hasKey", 2, Some(2), |a| {
        Ok(Value::Bool(
            map_of(&a[0])?.borrow().contains_key(&strval(&a[1])),
        ))
    }),
    ("pluck", 1, None, |a| {
        let key = strval(&a[0]);
        let mut out = Vec::new();
        for d in &a[1..] {
            if let Some(v) = map_of(d)?.borrow().get(&key) {
                out.push(v.clone());
            }
        }
        Ok(Value::from(out))
    }),
    // Go's map order is random; sorted keys are one of its orders and deterministic.
    ("keys", 0, None, |a| {
        let mut out = Vec::new();
        for d in a {
            out.extend(map_of(d)?.borrow().keys().map(|k| Value::from(k.as_str())));
        }
        Ok(Value::from(out))
    }),
    ("values", 1, Some(1), |a| {
        Ok(Value::from(
            map_of(&a[0])?
                .borrow()
                .values()
                .cloned()
                .collect::<Vec<_>>(),
        ))
    }),
    ("pick", 1, None, |a| {
        let names: Vec<String> = a[1..].iter().map(strval).collect();
        let picked = map_of(&a[0])?
            .borrow()
            .iter()
            .filter(|(k, _)| names.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>();
        Ok(Value::from(picked))
    }),
    ("omit", 1, None, |a| {
        let names: Vec<String> = a[1..].iter().map(strval).collect();
        let kept = map_of(&a[0])?
            .borrow()
            .iter()
            .filter(|(k, _)| !names.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>();
        Ok(Value::from(kept))
    }),
    ("merge", 1, None, |a| merge(a, false)),
    ("mergeOverwrite", 1, None, |a| merge(a, true)),
    ("deepCopy", 1, Some(1), |a| Ok(a[0].deep_copy())),
    ("dig", 3, None, |a| {
        let n = a.len();
        let mut current = a[n - 1].clone();
        for key in &a[..n - 2] {
            let next = match &current {
                Value::Map(m) => m.borrow().get(&strval(key)).cloned(),
                _ => None,
            };
            match next {
                Some(v) => current = v,
                None => return Ok(a[n - 2].clone()),
            }
        }
        Ok(current)
    }),
    // Sprig: math (integers as Sprig converts them, via cast.ToInt64).
    ("add", 0, None, |a| {
        Ok(Value::Int(
            a.iter().map(to_i64).fold(0i64, i64::wrapping_add),
        ))
    }),
    ("add1", 1, Some(1), |a| {
        Ok(Value::Int(to_i64(&a[0]).wrapping_add(1)))
    }),
    ("sub", 2, Some(2), |a| {
        Ok(Value::Int(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
    }),
    ("mul", 1, None, |a| {
        Ok(Value::Int(
            a.iter().map(to_i64).fold(1i64, i64::wrapping_mul),
        ))
    }),
    ("div", 2, Some(2), |a| {
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int(to_i64(&a[0]).wrapping_div(d)))
    }),
    ("mod", 2, Some(2), |a| {
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int(to_i64(&a[0]).wrapping_rem(d)))
    }),
    ("max", 1, None, |a| {
        Ok(Value::Int(a.iter().map(to_i64).max().unwrap_or(0)))
    }),
    ("min", 1, None, |a| {
        Ok(Value::Int(a.iter().map(to_i64).min().unwrap_or(0)))
    }),
    ("floor", 1, Some(1), |a| {
        Ok(Value::Float(to_f64(&a[0]).floor()))
    }),
    ("ceil", 1, Some(1), |a| {
        Ok(Value::Float(to_f64(&a[0]).ceil()))
    }),
    ("round", 2, Some(3), |a| {
        let p = 10f64.powi(to_i64(&a[1]) as i32);
        Ok(Value::Float((to_f64(&a[0]) * p).round() / p))
    }),
    ("int", 1, Some(1), |a| Ok(Value::Int(to_i64(&a[0])))),
    ("int64", 1, Some(1), |a| Ok(Value::Int(to_i64(&a[0])))),
    ("float64", 1, Some(1), |a| Ok(Value::Float(to_f64(&a[0])))),
    ("atoi", 1, Some(1), |a| {
        Ok(Value::Int(strval(&a[0]).parse().unwrap_or(0)))
    }),
    // Sprig: paths.
    ("base", 1, Some(1), |a| s1(a, path_base)),
    ("dir", 1, Some(1), |a| s1(a, path_dir)),
    ("ext", 1, Some(1), |a| {
        s1(a, |s| {
            let b = s.rsplit('/').next().unwrap_or("");
            b.rfind('.').map(|i| b[i..].to_string()).unwrap_or_default()
        })
    }),
    ("clean", 1, Some(1), |a| s1(a, path_clean)),
    ("isAbs", 1, Some(1), |a| {
        Ok(Value::Bool(strval(&a[0]).starts_with('/')))
    }),
];

fn s1(a: &[Value], f: impl Fn(&str) -> String) -> Result<Value, String> {
    Ok(Value::from(f(&strval(&a[0]))))
}

fn non_nil(a: &[Value]) -> impl Iterator<Item = &Value> {
    a.iter()
        .filter(|v| !matches!(v, Value::Nil | Value::Missing))
}

/// Sprig's `strval`: strings as they are, everything else as `%v`.
pub(crate) fn strval(v: &Value) -> String {
    v.print()
}

/// Sprig's `strslice`: a list's items as strings, nil items dropped; a non-list is one item.
fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::List(items) => non_nil(items).map(strval).collect(),
        Value::Nil | Value::Missing => Vec::new(),
        other => vec![strval(other)],
    }
}

/// `cast.ToInt64`: numbers truncated, booleans 0/1, strings parsed (base prefixes), else 0.
pub(crate) fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => {
            let t = s.trim();
            let (neg, body) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
            let parsed = if let Some(h) = body.strip_prefix("0x") {
                i64::from_str_radix(h, 16).ok()
            } else {
                body.parse::<i64>().ok()
            };
            parsed.map_or(0, |n| if neg { -n } else { n })
        }
        _ => 0,
    }
}

fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Sprig's `empty`.
pub(crate) fn empty(v: &Value) -> bool {
    !v.truthy()
}

fn list_of(v: &Value) -> Result<Rc<Vec<Value>>, String> {
    match v {
        Value::List(l) => Ok(l.clone()),
        Value::Nil | Value::Missing => Ok(Rc::new(Vec::new())),
        other => Err(format!("cannot use type {} as a list", other.type_name())),
    }
}

fn map_of(v: &Value) -> Result<super::value::Map, String> {
    match v {
        Value::Map(m) => Ok(m.clone()),
        other => Err(format!(
            "wrong type for value; expected map[string]interface {{}}; got {}",
            other.type_name()
        )),
    }
}

fn regex(v: &Value) -> Result<regex::Regex, String> {
    regex::Regex::new(&strval(v)).map_err(|e| format!("error parsing regexp: {e}"))
}

fn len(a: &[Value]) -> Result<Value, String> {
    Ok(Value::Int(match &a[0] {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.borrow().len(),
        other => return Err(format!("len of type {}", other.type_name())),
    } as i64))
}

fn index(a: &[Value]) -> Result<Value, String> {
    let mut current = a[0].clone();
    for key in &a[1..] {
        current = match &current {
            Value::Map(m) => m.borrow().get(&strval(key)).cloned().unwrap_or(Value::Nil),
            Value::List(l) => {
                let i = match key {
                    Value::Int(i) => *i,
                    other => {
                        return Err(format!(
                            "cannot index slice/array with type {}",
                            other.type_name()
                        ));
                    }
                };
                l.get(usize::try_from(i).map_err(|_| format!("index out of range: {i}"))?)
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i}"))?
            }
            Value::Str(s) => {
                let i = to_i64(key);
                Value::Int(i64::from(
                    *s.as_bytes()
                        .get(i as usize)
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                ))
            }
            Value::Nil | Value::Missing => return Err("index of untyped nil".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(current)
}

fn slice(a: &[Value]) -> Result<Value, String> {
    let bounds: Vec<i64> = a[1..].iter().map(to_i64).collect();
    let len = match &a[0] {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    } as i64;
    let start = bounds.first().copied().unwrap_or(0);
    let end = bounds.get(1).copied().unwrap_or(len);
    if start < 0 || end < start || end > len {
        return Err(format!(
            "index out of range: [{start}:{end}] with length {len}"
        ));
    }
    Ok(match &a[0] {
        Value::Str(s) => Value::from(
            s.get(start as usize..end as usize)
                .ok_or("slice splits a character")?,
        ),
        Value::List(l) => Value::from(l[start as usize..end as usize].to_vec()),
        _ => unreachable!("checked above"),
    })
}

fn eq(a: &[Value]) -> Result<Value, String> {
    if a.len() < 2 {
        return Err("missing argument for comparison".into());
    }
    Ok(Value::Bool(a[1..].iter().any(|b| a[0] == *b)))
}

fn compare(a: &[Value]) -> Result<std::cmp::Ordering, String> {
    match (&a[0], &a[1]) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (x @ (Value::Int(_) | Value::Float(_)), y @ (Value::Int(_) | Value::Float(_))) => to_f64(x)
            .partial_cmp(&to_f64(y))
            .ok_or_else(|| "invalid comparison of NaN".to_string()),
        (x, y) if x.kind() != y.kind() => Err("incompatible types for comparison".into()),
        _ => Err("invalid type for comparison".into()),
    }
}

fn required(a: &[Value]) -> Result<Value, String> {
    match &a[1] {
        Value::Nil | Value::Missing => Err(strval(&a[0])),
        Value::Str(s) if s.is_empty() => Err(strval(&a[0])),
        v => Ok(v.clone()),
    }
}

fn from_yaml(a: &[Value]) -> Result<Value, String> {
    let text = strval(&a[0]);
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    match Value::from_yaml(&parsed) {
        Value::Map(m) => Ok(Value::Map(m)),
        Value::Nil => Ok(Value::from(BTreeMap::new())),
        other => Err(format!(
            "yaml: unmarshal errors:\n  cannot unmarshal {} into map[string]interface {{}}",
            other.type_name()
        )),
    }
}

fn to_yaml(a: &[Value]) -> Result<Value, String> {
    let text = serde_yaml_ng::to_string(&a[0].to_yaml()).map_err(|e| e.to_string())?;
    Ok(Value::from(
        text.strip_suffix('\n').unwrap_or(&text).to_string(),
    ))
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

fn untitle(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lower-case words of a camelCase/snake_case/kebab-case string.
fn words(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if c == '_' || c == '-' || c.is_whitespace() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn substr(a: &[Value]) -> Result<Value, String> {
    let s = strval(&a[2]);
    let (start, end) = (to_i64(&a[0]), to_i64(&a[1]));
    let len = s.len() as i64;
    let (from, to) = if start < 0 {
        (0, end.clamp(0, len))
    } else if end < 0 || end > len {
        (start.min(len), len)
    } else {
        (start.min(end), end)
    };
    Ok(Value::from(
        String::from_utf8_lossy(&s.as_bytes()[from as usize..to as usize]).into_owned(),
    ))
}

fn trunc(a: &[Value]) -> Result<Value, String> {
    let n = to_i64(&a[0]);
    let s = strval(&a[1]);
    let len = s.len() as i64;
    let bytes = s.as_bytes();
    let out = if n < 0 && len + n > 0 {
        &bytes[(len + n) as usize..]
    } else if n >= 0 && len > n {
        &bytes[..n as usize]
    } else {
        bytes
    };
    Ok(Value::from(String::from_utf8_lossy(out).into_owned()))
}

fn abbrev(a: &[Value]) -> Result<Value, String> {
    let width = to_i64(&a[0]);
    let s = strval(&a[1]);
    if width < 4 || (s.len() as i64) <= width {
        return Ok(Value::from(s));
    }
    let keep = (width - 3) as usize;
    Ok(Value::from(format!(
        "{}...",
        String::from_utf8_lossy(&s.as_bytes()[..keep])
    )))
}

fn indent(n: i64, s: &str) -> String {
    let pad = " ".repeat(n.max(0) as usize);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn append(a: &[Value]) -> Result<Value, String> {
    let mut items = list_of(&a[0])?.as_ref().clone();
    items.push(a[1].clone());
    Ok(Value::from(items))
}

fn int_range(start: i64, stop: i64, step: i64) -> Value {
    let mut out = Vec::new();
    if step == 0 {
        return Value::from(out);
    }
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(Value::Int(i));
        i += step;
    }
    Value::from(out)
}

/// Sprig's `seq`: like the `seq` command, as a space-separated string.
fn seq(a: &[Value]) -> Result<Value, String> {
    let p: Vec<i64> = a.iter().map(to_i64).collect();
    let (start, step, end) = match p.len() {
        1 => (1, 1, p[0]),
        2 => (p[0], if p[1] >= p[0] { 1 } else { -1 }, p[1]),
        _ => (p[0], p[1], p[2]),
    };
    let mut out = Vec::new();
    if step != 0 {
        let mut i = start;
        while (step > 0 && i <= end) || (step < 0 && i >= end) {
            out.push(i.to_string());
            i += step;
        }
    }
    Ok(Value::from(out.join(" ")))
}

/// Sprig's `merge` (destination wins) and `mergeOverwrite` (sources win), recursively
/// into nested maps; changes and returns the first map.
fn merge(a: &[Value], overwrite: bool) -> Result<Value, String> {
    fn into(dst: &super::value::Map, src: &BTreeMap<String, Value>, overwrite: bool) {
        for (k, v) in src {
            let existing = dst.borrow().get(k).cloned();
            match (existing, v) {
                (Some(Value::Map(d)), Value::Map(s)) if !Rc::ptr_eq(&d, s) => {
                    let s = s.borrow().clone();
                    into(&d, &s, overwrite);
                }
                (Some(existing), _) if !overwrite && !empty(&existing) => {}
                (_, v) => {
                    dst.borrow_mut().insert(k.clone(), v.clone());
                }
            }
        }
    }
    let dst = map_of(&a[0])?;
    for src in &a[1..] {
        let src = map_of(src)?.borrow().clone();
        into(&dst, &src, overwrite);
    }
    Ok(a[0].clone())
}

fn path_base(s: &str) -> String {
    let t = s.trim_end_matches('/');
    if s.is_empty() {
        return ".".into();
    }
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn path_dir(s: &str) -> String {
    match s.rfind('/') {
        Some(i) => path_clean(&s[..=i]),
        None => ".".into(),
    }
}

/// Go's `path.Clean`.
fn path_clean(s: &str) -> String {
    if s.is_empty() {
        return ".".into();
    }
    let rooted = s.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// `fmt.Sprint`: a space between operands when neither is a string.
pub(crate) fn go_sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !matches!(v, Value::Str(_)) && !matches!(a[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        v.write_go(&mut out);
    }
    out
}

/// `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `encoding/json` output: sorted keys, `<>&` escaped when `html`, indented by two spaces
/// per level when `indent` is set (`json.MarshalIndent(v, "", "  ")`).
fn json(v: &Value, html: bool, indent: Option<usize>) -> String {
    let mut out = String::new();
    write_json(v, html, indent, &mut out);
    out
}

fn write_json(v: &Value, html: bool, indent: Option<usize>, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(level));
    };
    match v {
        Value::Missing | Value::Nil | Value::Files => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&json_float(*f)),
        Value::Str(s) => json_string(s, html, out),
        Value::List(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                if let Some(level) = indent {
                    newline(out, level + 1);
                }
                write_json(item, html, indent.map(|l| l + 1), out);
            }
            if let Some(level) = indent {
                newline(out, level);
            }
            out.push(']');
        }
        Value::Map(m) => {
            let m = m.borrow();
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (k, (key, item)) in m.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                if let Some(level) = indent {
                    newline(out, level + 1);
                }
                json_string(key, html, out);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_json(item, html, indent.map(|l| l + 1), out);
            }
            if let Some(level) = indent {
                newline(out, level);
            }
            out.push('}');
        }
    }
}

fn json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Go: 'e' format with a two-digit exponent (`1e-07`, `1e+21`).
        return go_float(f);
    }
    // Go: shortest 'f' format.
    let s = format!("{f}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn json_string(s: &str, html: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if html => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

//! werf's path matchers (`werf: pkg/path_matcher`), which decide which git tree entries enter a
//! files checksum.
//!
//! A matcher answers two questions about a repo-relative, `/`-separated path:
//! - [`PathMatcher::is_path_matched`]: the path (file, or a whole directory) is selected;
//! - [`PathMatcher::should_go_through`]: the directory is not selected as a whole, but entries
//!   below it may be, so the tree walk must descend into it.
//!
//! The tree walk ([`super::ls_tree`]) adds a whole directory entry (its tree object id) when the
//! directory is matched and need not be gone through; this is why the exact answers matter: they
//! decide which object ids are hashed, and so whether Kiln's digests equal werf's.
//!
//! Globs use the `bmatcuk/doublestar` v1 rules werf uses: `*`, `?`, `[...]`, `{a,b}`, `\`
//! escapes within one path component, and a `**` component for zero or more components.

use crate::dockerfile::dockerignore::DockerIgnore;

/// A path selector with werf's two-question interface; see the module docs.
pub trait PathMatcher {
    /// The path is selected as a whole (a file, or a directory with everything below it).
    fn is_path_matched(&self, path: &str) -> bool;
    /// The directory is not selected as a whole but entries below it may be.
    fn should_go_through(&self, path: &str) -> bool;
    /// A string identifying the matcher's behaviour (cache key).
    fn id(&self) -> String;
}

/// werf's `formatPath`: `""` and `.` become `""`, anything else is cleaned.
fn format_path(path: &str) -> String {
    if path.is_empty() || path == "." {
        return String::new();
    }
    super::clean_repo_path(path)
}

fn split(path: &str) -> Vec<&str> {
    path.split('/').collect()
}

/// `path` lies strictly below `base` (werf's `util.IsSubpathOfBasePath`; `""` is the root).
fn is_subpath(base: &str, path: &str) -> bool {
    if base == path {
        return false;
    }
    if base.is_empty() {
        return !path.is_empty();
    }
    path.len() > base.len() && path.starts_with(base) && path.as_bytes()[base.len()] == b'/'
}

/// `path` relative to `base`, `.` when equal (Go's `filepath.Rel` for paths below `base`); a
/// path outside `base` gets `..` components, as `filepath.Rel` gives them.
fn rel(base: &str, path: &str) -> String {
    if base == path {
        return ".".to_string();
    }
    if base.is_empty() {
        return path.to_string();
    }
    if is_subpath(base, path) {
        return path[base.len() + 1..].to_string();
    }
    let b = split(base);
    let p: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        split(path)
    };
    let common = b.iter().zip(p.iter()).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&str> = vec![".."; b.len() - common];
    parts.extend_from_slice(&p[common..]);
    parts.join("/")
}

/// Selects everything.
#[derive(Debug, Clone, Default)]
pub struct TrueMatcher;

impl PathMatcher for TrueMatcher {
    fn is_path_matched(&self, _: &str) -> bool {
        true
    }
    fn should_go_through(&self, _: &str) -> bool {
        false
    }
    fn id(&self) -> String {
        "true".into()
    }
}

/// Restricts an inner matcher to paths at or below `base`, giving it base-relative paths
/// (werf's `basePathMatcher`).
pub struct BasePathMatcher {
    base: String,
    inner: Box<dyn PathMatcher + Send + Sync>,
}

impl BasePathMatcher {
    /// `base` is repo-relative (`""` = root).
    pub fn new(base: &str, inner: Box<dyn PathMatcher + Send + Sync>) -> Self {
        BasePathMatcher {
            base: format_path(base),
            inner,
        }
    }
}

impl PathMatcher for BasePathMatcher {
    fn is_path_matched(&self, path: &str) -> bool {
        let path = format_path(path);
        if !(is_subpath(&self.base, &path) || self.base == path) {
            return false;
        }
        self.inner.is_path_matched(&rel(&self.base, &path))
    }
    fn should_go_through(&self, path: &str) -> bool {
        let path = format_path(path);
        if is_subpath(&path, &self.base) {
            return true;
        }
        self.inner.should_go_through(&rel(&self.base, &path))
    }
    fn id(&self) -> String {
        format!("base({}:{})", self.base, self.inner.id())
    }
}

/// All inner matchers must select a path (werf's `MultiPathMatcher`).
pub struct MultiMatcher {
    matchers: Vec<Box<dyn PathMatcher + Send + Sync>>,
}

impl MultiMatcher {
    /// An empty list selects everything.
    pub fn new(mut matchers: Vec<Box<dyn PathMatcher + Send + Sync>>) -> Self {
        if matchers.is_empty() {
            matchers.push(Box::new(TrueMatcher));
        }
        MultiMatcher { matchers }
    }
}

impl PathMatcher for MultiMatcher {
    fn is_path_matched(&self, path: &str) -> bool {
        self.matchers.iter().all(|m| m.is_path_matched(path))
    }
    /// True when one matcher wants to go through and every other one at least selects the path.
    fn should_go_through(&self, path: &str) -> bool {
        let mut go = false;
        for m in &self.matchers {
            if m.should_go_through(path) {
                go = true;
            } else if !m.is_path_matched(path) {
                return false;
            }
        }
        go
    }
    fn id(&self) -> String {
        let ids: Vec<String> = self.matchers.iter().map(|m| m.id()).collect();
        format!("multi({})", ids.join(","))
    }
}

/// Include globs (werf's `includePathMatcher`): a path is selected when a glob matches it, or
/// matches one of its parent directories (globs with trailing `*`/`**` components also select
/// the directory they end in).
#[derive(Debug, Clone)]
pub struct IncludeMatcher {
    globs: Vec<String>,
    /// Per glob, the three whole-path patterns of werf's `isPathMatched`, pre-split.
    forms: Vec<[Vec<String>; 3]>,
}

impl IncludeMatcher {
    /// Globs relative to the matcher's base; they are cleaned (`./a/` → `a`, `.` stays `""`).
    pub fn new(globs: &[String]) -> Self {
        let globs: Vec<String> = globs.iter().map(|g| format_path(g)).collect();
        let forms = globs
            .iter()
            .map(|g| {
                let trimmed = trim_trailing_star_components(g);
                let below = if trimmed.is_empty() {
                    "**/*".to_string()
                } else {
                    format!("{trimmed}/**/*")
                };
                let split = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
                [split(g), split(&trimmed), split(&below)]
            })
            .collect();
        IncludeMatcher { globs, forms }
    }
}

impl PathMatcher for IncludeMatcher {
    fn is_path_matched(&self, path: &str) -> bool {
        if self.globs.is_empty() {
            return true;
        }
        let path = format_path(path);
        let name: Vec<&str> = path.split('/').collect();
        self.forms.iter().any(|forms| {
            forms.iter().any(|pat| {
                let pat: Vec<&str> = pat.iter().map(String::as_str).collect();
                match_components(&pat, &name)
            })
        })
    }
    fn should_go_through(&self, path: &str) -> bool {
        let path = format_path(path);
        if self.globs.is_empty() || has_universal_glob(&self.globs) {
            return false;
        }
        if path.is_empty() {
            return true;
        }
        let mut in_progress: Vec<String> = self.globs.clone();
        for part in split(&path) {
            if in_progress.is_empty() {
                break;
            }
            in_progress = in_progress
                .iter()
                .filter_map(|g| match match_glob(part, g) {
                    GlobStep::InProgress(rest) => Some(rest),
                    _ => None,
                })
                .collect();
        }
        !in_progress.is_empty() && !has_universal_glob(&in_progress)
    }
    fn id(&self) -> String {
        let mut g = self.globs.clone();
        g.sort();
        format!("include({})", g.join(":::"))
    }
}

/// `.dockerignore` patterns (werf's `dockerfileIgnorePathMatcher`): a path is selected when
/// Docker's matcher does not exclude it.
pub struct DockerignoreMatcher {
    ignore: DockerIgnore,
}

impl DockerignoreMatcher {
    /// Wraps parsed patterns; paths given to it are relative to the build context.
    pub fn new(ignore: DockerIgnore) -> Self {
        DockerignoreMatcher { ignore }
    }
}

impl PathMatcher for DockerignoreMatcher {
    fn is_path_matched(&self, path: &str) -> bool {
        !self.ignore.matches(&format_path(path))
    }
    fn should_go_through(&self, path: &str) -> bool {
        let path = format_path(path);
        let patterns = self.ignore.patterns();
        if patterns.is_empty() {
            return false;
        }
        if path.is_empty() {
            return true;
        }
        // Per pattern: still in progress (may match something below), fully matched, or out.
        let mut state: Vec<(String, bool, bool)> = patterns
            .iter()
            .map(|p| (p.text.clone(), false, true))
            .collect();
        for part in split(&path) {
            for (glob, matched, in_progress) in state.iter_mut() {
                if !*in_progress {
                    continue;
                }
                match match_glob(part, glob) {
                    GlobStep::InProgress(rest) => *glob = rest,
                    GlobStep::Matched => {
                        *matched = true;
                        *in_progress = false;
                    }
                    GlobStep::NoMatch => *in_progress = false,
                }
            }
        }
        let mut go = false;
        for (_, matched, in_progress) in &state {
            if *matched {
                go = false;
            } else if *in_progress {
                go = true;
            }
        }
        go
    }
    fn id(&self) -> String {
        let mut p: Vec<String> = self
            .ignore
            .patterns()
            .iter()
            .map(|p| format!("{}{}", if p.exclusion { "!" } else { "" }, p.text))
            .collect();
        p.sort();
        format!("dockerignore({})", p.join(":::"))
    }
}

/// The result of matching one path component against the first component of a glob
/// (werf's `matchGlob`).
#[derive(Debug, PartialEq, Eq)]
enum GlobStep {
    /// The component matched and the glob continues (the rest, or the whole glob for `**`).
    InProgress(String),
    /// The component matched the glob's last component.
    Matched,
    NoMatch,
}

fn match_glob(part: &str, glob: &str) -> GlobStep {
    let parts = split(glob);
    if !match_component(parts[0], part) {
        return GlobStep::NoMatch;
    }
    if parts[0].contains("**") {
        return GlobStep::InProgress(glob.to_string());
    }
    if parts.len() > 1 {
        return GlobStep::InProgress(super::clean_repo_path(&parts[1..].join("/")));
    }
    GlobStep::Matched
}

/// werf's `hasUniversalGlob`: `.` or a glob made only of `*`/`**` components.
fn has_universal_glob(globs: &[String]) -> bool {
    globs
        .iter()
        .any(|g| g == "." || trim_trailing_star_components(g).is_empty())
}

/// werf's `SafeTrimGlobsAndSlashesFromPath`: drops trailing components made only of `*`.
fn trim_trailing_star_components(glob: &str) -> String {
    let mut parts: Vec<&str> = glob.split('/').filter(|p| !p.is_empty()).collect();
    while let Some(last) = parts.last() {
        if last.trim_end_matches('*').is_empty() {
            parts.pop();
        } else {
            break;
        }
    }
    parts.join("/")
}

/// `doublestar.PathMatch` (v1): whole-path glob match, `/`-separated.
pub fn doublestar_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').collect();
    let name: Vec<&str> = path.split('/').collect();
    match_components(&pat, &name)
}

fn match_components(pat: &[&str], name: &[&str]) -> bool {
    if pat.is_empty() {
        return name.is_empty();
    }
    if pat[0] == "**" {
        // `**` needs at least one name component left; as the last pattern component it takes
        // all of them, otherwise the rest of the pattern must match some suffix.
        if name.is_empty() {
            return false;
        }
        if pat.len() == 1 {
            return true;
        }
        return (0..name.len()).any(|i| match_components(&pat[1..], &name[i..]));
    }
    if name.is_empty() {
        return false;
    }
    match_component(pat[0], name[0]) && match_components(&pat[1..], &name[1..])
}

/// Matches one path component against one glob component: `*` (any run), `?` (one char),
/// `[...]`/`[^...]`/`[!...]` classes with ranges, `{a,b}` alternatives, `\` escapes.
pub fn match_component(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_chars(&p, &n)
}

fn match_chars(p: &[char], n: &[char]) -> bool {
    if p.is_empty() {
        return n.is_empty();
    }
    match p[0] {
        '*' => {
            let rest = {
                let mut i = 0;
                while i < p.len() && p[i] == '*' {
                    i += 1;
                }
                &p[i..]
            };
            (0..=n.len()).any(|i| match_chars(rest, &n[i..]))
        }
        '?' => !n.is_empty() && match_chars(&p[1..], &n[1..]),
        '[' => {
            if n.is_empty() {
                return false;
            }
            match parse_class(&p[1..]) {
                Some((matches, used)) => matches(n[0]) && match_chars(&p[1 + used..], &n[1..]),
                None => n[0] == '[' && match_chars(&p[1..], &n[1..]),
            }
        }
        '{' => {
            // Find the matching `}` and try each alternative.
            let mut depth = 0;
            let mut end = None;
            for (i, c) in p.iter().enumerate() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                return !n.is_empty() && n[0] == '{' && match_chars(&p[1..], &n[1..]);
            };
            let inner = &p[1..end];
            let rest = &p[end + 1..];
            let mut alts: Vec<Vec<char>> = vec![Vec::new()];
            let mut depth = 0;
            for c in inner {
                match c {
                    '{' => {
                        depth += 1;
                        alts.last_mut().expect("alt").push(*c);
                    }
                    '}' => {
                        depth -= 1;
                        alts.last_mut().expect("alt").push(*c);
                    }
                    ',' if depth == 0 => alts.push(Vec::new()),
                    _ => alts.last_mut().expect("alt").push(*c),
                }
            }
            alts.iter().any(|a| {
                let mut joined = a.clone();
                joined.extend_from_slice(rest);
                match_chars(&joined, n)
            })
        }
        '\\' if p.len() > 1 => !n.is_empty() && n[0] == p[1] && match_chars(&p[2..], &n[1..]),
        c => !n.is_empty() && n[0] == c && match_chars(&p[1..], &n[1..]),
    }
}

type ClassFn = Box<dyn Fn(char) -> bool>;

/// Parses a class body after `[`; returns the predicate and the chars consumed incl. `]`.
fn parse_class(p: &[char]) -> Option<(ClassFn, usize)> {
    let mut i = 0;
    let negate = i < p.len() && (p[i] == '^' || p[i] == '!');
    if negate {
        i += 1;
    }
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            let ranges2 = ranges.clone();
            return Some((
                Box::new(move |c| ranges2.iter().any(|(a, b)| *a <= c && c <= *b) != negate),
                i + 1,
            ));
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' && i + 1 < p.len() {
            i += 1;
            lo = p[i];
        }
        i += 1;
        let mut hi = lo;
        if i + 1 < p.len() && p[i] == '-' && p[i + 1] != ']' {
            hi = p[i + 1];
            if hi == '\\' && i + 2 < p.len() {
                hi = p[i + 2];
                i += 1;
            }
            i += 2;
        }
        ranges.push((lo, hi));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(globs: &[&str]) -> IncludeMatcher {
        IncludeMatcher::new(&globs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn doublestar_rules() {
        assert!(doublestar_match("*.txt", "a.txt"));
        assert!(!doublestar_match("*.txt", "d/a.txt"));
        assert!(doublestar_match("**/*.txt", "a.txt"));
        assert!(doublestar_match("**/*.txt", "d/e/a.txt"));
        assert!(doublestar_match("src/**", "src/a/b"));
        assert!(!doublestar_match("src/**", "src"));
        assert!(doublestar_match("**/*", ""));
        assert!(doublestar_match("{a,b}.rs", "b.rs"));
        assert!(doublestar_match("[a-c]?.go", "bx.go"));
        assert!(!doublestar_match("[^a-c]?.go", "bx.go"));
        assert!(doublestar_match("a\\*", "a*"));
        assert!(!doublestar_match("a\\*", "ab"));
    }

    #[test]
    fn include_matcher_uses_werf_is_path_matched_forms() {
        // The glob itself, the glob without trailing `*` components, or anything below it.
        let m = inc(&["src/*/**"]);
        assert!(m.is_path_matched("src/x"));
        assert!(m.is_path_matched("src/x/y/z"));
        assert!(m.is_path_matched("src"));
        assert!(!m.is_path_matched("lib/x"));
        // A leading `*` glob selects only its level.
        let m = inc(&["*.txt"]);
        assert!(m.is_path_matched("a.txt"));
        assert!(!m.is_path_matched("d/a.txt"));
        assert!(
            m.is_path_matched("d.txt/inner"),
            "a directory named like the glob is selected whole"
        );
    }

    #[test]
    fn include_matcher_selects_files_and_directories_below_a_glob() {
        let m = inc(&["src"]);
        assert!(m.is_path_matched("src"));
        assert!(m.is_path_matched("src/a/b.rs"));
        assert!(!m.is_path_matched("srcx"));
        assert!(m.should_go_through(""));
        assert!(!m.should_go_through("src"));
        assert!(!m.should_go_through("other"));

        let m = inc(&["src/*.rs"]);
        assert!(m.should_go_through("src"));
        assert!(!m.is_path_matched("src"));
        assert!(m.is_path_matched("src/a.rs"));
        assert!(!m.is_path_matched("src/a.go"));

        // `.` (COPY . .) is universal: everything is matched, nothing needs going through.
        let m = inc(&["."]);
        assert!(m.is_path_matched(""));
        assert!(!m.should_go_through(""));
        assert!(m.is_path_matched("x/y"));
    }

    #[test]
    fn base_path_matcher_scopes_to_the_context() {
        let m = BasePathMatcher::new("ctx", Box::new(inc(&["a"])));
        assert!(m.should_go_through(""));
        assert!(m.should_go_through("ctx"));
        assert!(m.is_path_matched("ctx/a"));
        assert!(m.is_path_matched("ctx/a/b"));
        assert!(!m.is_path_matched("a"));
        assert!(!m.is_path_matched("ctx/b"));
    }

    #[test]
    fn rel_matches_filepath_rel() {
        assert_eq!(rel("a", "a"), ".");
        assert_eq!(rel("a", "a/b"), "b");
        assert_eq!(rel("", "a/b"), "a/b");
        assert_eq!(rel("a/b", "a/c"), "../c");
        assert_eq!(rel("a/b", ""), "../..");
    }

    #[test]
    fn dockerignore_matcher_goes_through_directories_with_partial_patterns() {
        let ig = DockerIgnore::parse(".dockerignore", "node_modules\n*.log\n!keep.log\n").unwrap();
        let m = DockerignoreMatcher::new(ig);
        assert!(m.should_go_through(""));
        assert!(!m.is_path_matched("node_modules"));
        assert!(!m.is_path_matched("node_modules/x/y.js"));
        assert!(!m.is_path_matched("a.log"));
        assert!(m.is_path_matched("keep.log"));
        assert!(m.is_path_matched("src/a.log"));
    }
}

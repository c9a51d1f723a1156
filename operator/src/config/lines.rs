//! Line numbers for errors found after deserialization (duplicate names, bad platforms,
//! unknown images, cycles). serde gives no positions for valid values, so the parser finds
//! document boundaries (`---` at column 0) and looks up top-level keys and values by text.
//! When the boundaries found this way disagree with the YAML parser's document count, no line
//! is reported rather than a wrong one.

/// Line ranges of the documents of one YAML text.
#[derive(Debug)]
pub(crate) struct DocumentLines<'a> {
    lines: Vec<&'a str>,
    /// Per document: first line index (0-based) and one past the last.
    ranges: Vec<(usize, usize)>,
}

fn is_separator(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !(t.is_empty() || t.starts_with('#') || line.starts_with('%') || t == "...")
}

impl<'a> DocumentLines<'a> {
    /// Splits `text` into documents; `expected_documents` is the YAML parser's count, or
    /// `None` when the parser stopped early (a syntax error) and the count is unknown.
    pub(crate) fn new(text: &'a str, expected_documents: Option<usize>) -> DocumentLines<'a> {
        let lines: Vec<&str> = text.lines().collect();
        let mut starts = Vec::new();
        let first_separator = lines.iter().position(|l| is_separator(l));
        let content_before = lines[..first_separator.unwrap_or(lines.len())]
            .iter()
            .any(|l| is_content(l));
        if content_before {
            starts.push(0);
        }
        starts.extend(
            lines
                .iter()
                .enumerate()
                .filter(|(_, l)| is_separator(l))
                .map(|(i, _)| i),
        );
        let mut ranges: Vec<(usize, usize)> = starts
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, starts.get(i + 1).copied().unwrap_or(lines.len())))
            .collect();
        if expected_documents.is_some_and(|n| n != ranges.len()) {
            ranges.clear();
        }
        DocumentLines { lines, ranges }
    }

    /// The 1-based document holding 1-based `line`.
    pub(crate) fn document_of_line(&self, line: usize) -> Option<usize> {
        let index = line.checked_sub(1)?;
        self.ranges
            .iter()
            .position(|&(s, e)| index >= s && index < e)
            .map(|i| i + 1)
    }

    /// The 1-based line of top-level `key:` in 1-based `document`.
    pub(crate) fn key_line(&self, document: usize, key: &str) -> Option<usize> {
        self.find(document, |line| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
    }

    /// The 1-based line of the first line of 1-based `document` containing `needle`.
    pub(crate) fn line_containing(&self, document: usize, needle: &str) -> Option<usize> {
        self.find(document, |line| line.contains(needle))
    }

    /// The 1-based line of the first content line of 1-based `document`.
    pub(crate) fn first_content_line(&self, document: usize) -> Option<usize> {
        self.find(document, |line| is_content(line) && !is_separator(line))
    }

    /// The 1-based line of the first line of 1-based `document` for which `pred` holds.
    pub(crate) fn find_pub(&self, document: usize, pred: impl Fn(&str) -> bool) -> Option<usize> {
        self.find(document, pred)
    }

    fn find(&self, document: usize, pred: impl Fn(&str) -> bool) -> Option<usize> {
        let &(start, end) = self.ranges.get(document.checked_sub(1)?)?;
        (start..end).find(|&i| pred(self.lines[i])).map(|i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_documents_and_keys() {
        let text = "# comment\nproject: x\nconfigVersion: 1\n---\nimage: a\nfrom: alpine\n---\nimage: b\ndockerfile: D\n";
        let lines = DocumentLines::new(text, Some(3));
        assert_eq!(lines.key_line(1, "project"), Some(2));
        assert_eq!(lines.key_line(2, "image"), Some(5));
        assert_eq!(lines.key_line(3, "dockerfile"), Some(9));
        assert_eq!(lines.key_line(3, "from"), None);
        assert_eq!(lines.document_of_line(6), Some(2));
        assert_eq!(lines.line_containing(3, "b"), Some(8));
    }

    #[test]
    fn leading_separator_starts_the_first_document() {
        let text = "---\nproject: x\n---\nimage: a\n";
        let lines = DocumentLines::new(text, Some(2));
        assert_eq!(lines.key_line(1, "project"), Some(2));
        assert_eq!(lines.key_line(2, "image"), Some(4));
    }

    #[test]
    fn disagreement_gives_no_lines() {
        let lines = DocumentLines::new("a: 1\n---\nb: 2\n", Some(3));
        assert_eq!(lines.key_line(1, "a"), None);
    }
}

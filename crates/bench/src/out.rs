//! Writing results: Markdown tables (stdout and the docs), CSV and JSON files.
//!
//! No serialisation crate: the records are flat, and a few dozen lines keep
//! the benchmark's dependencies to the allocators it measures.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// A table of strings with a header row, rendered as GitHub Markdown.
#[derive(Debug, Clone)]
pub struct Table {
    /// Column titles.
    pub header: Vec<String>,
    /// Rows; each as long as `header`.
    pub rows: Vec<Vec<String>>,
    /// How many leading columns are text (left-aligned); the rest are
    /// figures (right-aligned).
    pub text_cols: usize,
}

impl Table {
    /// An empty table with these column titles.
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Table {
            header: header.iter().map(|s| s.as_ref().to_string()).collect(),
            rows: Vec::new(),
            text_cols: 1,
        }
    }

    /// Left-align the first `n` columns.
    pub fn text_cols(mut self, n: usize) -> Self {
        self.text_cols = n;
        self
    }

    /// Append a row (padded or cut to the header's width).
    pub fn push(&mut self, mut row: Vec<String>) {
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// The table as Markdown, columns padded so it also reads as plain text.
    pub fn to_markdown(&self) -> String {
        let n = self.header.len();
        let mut w = vec![3usize; n];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |row: &[String]| {
            let mut s = String::from("|");
            for (i, c) in row.iter().enumerate() {
                let pad = w[i] - c.chars().count();
                if i < self.text_cols {
                    let _ = write!(s, " {c}{} |", " ".repeat(pad));
                } else {
                    let _ = write!(s, " {}{c} |", " ".repeat(pad));
                }
            }
            s.push('\n');
            s
        };
        let mut s = line(&self.header);
        s.push('|');
        for (i, wi) in w.iter().enumerate() {
            if i < self.text_cols {
                let _ = write!(s, " {} |", "-".repeat(*wi));
            } else {
                let _ = write!(s, " {}: |", "-".repeat(wi - 1));
            }
        }
        s.push('\n');
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }
}

/// Quote a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Write `header` and `rows` as a CSV file.
pub fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut s = String::new();
    s.push_str(
        &header
            .iter()
            .map(|h| csv_field(h))
            .collect::<Vec<_>>()
            .join(","),
    );
    s.push('\n');
    for r in rows {
        s.push_str(&r.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        s.push('\n');
    }
    std::fs::write(path, s)
}

/// A JSON value, enough for flat result records.
#[derive(Debug, Clone)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number; non-finite values are written as `null`.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, keys in the order given.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// An object from `(key, value)` pairs.
    pub fn obj<K: Into<String>>(pairs: Vec<(K, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    fn write_to(&self, out: &mut String, indent: usize) {
        let pad = "  ".repeat(indent + 1);
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(x) if x.is_finite() => {
                if x.fract() == 0.0 && x.abs() < 1e15 {
                    let _ = write!(out, "{}", *x as i64);
                } else {
                    let _ = write!(out, "{x}");
                }
            }
            Json::Num(_) => out.push_str("null"),
            Json::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Arr(v) => {
                if v.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push_str("[\n");
                for (i, x) in v.iter().enumerate() {
                    out.push_str(&pad);
                    x.write_to(out, indent + 1);
                    out.push_str(if i + 1 < v.len() { ",\n" } else { "\n" });
                }
                out.push_str(&"  ".repeat(indent));
                out.push(']');
            }
            Json::Obj(v) => {
                if v.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push_str("{\n");
                for (i, (k, x)) in v.iter().enumerate() {
                    out.push_str(&pad);
                    Json::Str(k.clone()).write_to(out, indent + 1);
                    out.push_str(": ");
                    x.write_to(out, indent + 1);
                    out.push_str(if i + 1 < v.len() { ",\n" } else { "\n" });
                }
                out.push_str(&"  ".repeat(indent));
                out.push('}');
            }
        }
    }

    /// The value as pretty-printed JSON text.
    pub fn to_pretty(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s, 0);
        s.push('\n');
        s
    }
}

/// Format a ratio as `1.23x`, or `-` when it is not a number.
pub fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}x")
    } else {
        "-".to_string()
    }
}

/// Format a rate with an SI suffix (`12.3 M`).
pub fn si(x: f64) -> String {
    if !x.is_finite() {
        "-".to_string()
    } else if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_csv_json() {
        let mut t = Table::new(&["a", "bb"]);
        t.push(vec!["x".into(), "1".into()]);
        let md = t.to_markdown();
        assert_eq!(md.lines().count(), 3);
        assert!(md.lines().nth(1).unwrap().starts_with("| ---"));
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        let j = Json::obj(vec![
            ("n", Json::Num(1.5)),
            ("s", Json::str("q\"")),
            ("z", Json::Num(f64::NAN)),
            (
                "a",
                Json::Arr(vec![Json::Num(2.0), Json::Bool(true), Json::Null]),
            ),
        ]);
        let s = j.to_pretty();
        assert!(s.contains("\"n\": 1.5"));
        assert!(s.contains("\"s\": \"q\\\"\""));
        assert!(s.contains("\"z\": null"));
        assert_eq!(ratio(1.234), "1.23x");
        assert_eq!(si(2.5e6), "2.50 M");
    }
}

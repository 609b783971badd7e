//! Environment files (`circuit spawn --env-file`, a manifest's `env-file`): `KEY=VALUE` lines
//! read by the CLI and sent as the worker's `env`, so a changed file is a changed spec.
//!
//! The format: one `KEY=VALUE` per line, an optional `export ` before the key; blank lines and
//! lines starting with `#` are skipped. The value is the rest of the line as written, except
//! that one pair of matching quotes around all of it (`"..."` or `'...'`) is removed; nothing
//! else is interpreted (no escapes, no `$VAR`, no comment after a value). A later line wins.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A line that is not `KEY=VALUE`, or a file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    /// The file as it was named.
    pub file: String,
    /// The line, from 1, when the problem is in one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for EnvFileError {}

/// Reads and parses the file at `path`; errors name it as `shown`.
pub fn read(path: &Path, shown: &str) -> Result<BTreeMap<String, String>, EnvFileError> {
    let error = |line, message: String| EnvFileError {
        file: shown.to_string(),
        line,
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        let text = e.to_string();
        let text = text
            .split(" (os error")
            .next()
            .unwrap_or(&text)
            .to_lowercase();
        error(None, format!("cannot read the environment file: {text}"))
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| error(None, "the environment file is not UTF-8 text".into()))?;
    parse(&text).map_err(|(line, message)| error(Some(line), message))
}

/// Parses the text of an environment file: the variables, or the first bad line (from 1) and
/// what is wrong with it.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (key, value) = assignment(trimmed).map_err(|why| (i + 1, why))?;
        vars.insert(key.to_string(), unquote(value).to_string());
    }
    Ok(vars)
}

/// `KEY=VALUE` or `export KEY=VALUE`, split.
fn assignment(line: &str) -> Result<(&str, &str), String> {
    let bare = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    };
    let Some((key, value)) = bare.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got \"{line}\""));
    };
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, but \"{line}\" has no key"));
    }
    if key.contains(|c: char| c.is_whitespace() || c == '\0') {
        return Err(format!(
            "expected KEY=VALUE, but the key \"{key}\" contains whitespace (write KEY=VALUE \
             without spaces around =)"
        ));
    }
    if value.contains('\0') {
        return Err(format!("the value of {key} contains a NUL byte"));
    }
    Ok((key, value))
}

/// The value without one pair of matching quotes around all of it.
fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn comments_blank_lines_export_and_quotes() {
        let text = "# the app\n\nA=1\n  # indented comment\nexport B=two words\r\nC=\"x=y\"\n\
                    D='q'\nE=\nF=\"unbalanced\nA=again\n";
        assert_eq!(
            parse(text).expect("parse"),
            vars(&[
                ("A", "again"),
                ("B", "two words"),
                ("C", "x=y"),
                ("D", "q"),
                ("E", ""),
                ("F", "\"unbalanced"),
            ])
        );
        assert_eq!(
            parse("exporter=1\n").expect("a key named exporter"),
            vars(&[("exporter", "1")])
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        for (text, line, want) in [
            (
                "A=1\njust words\n",
                2,
                "expected KEY=VALUE, got \"just words\"",
            ),
            ("=1\n", 1, "has no key"),
            (
                "A=1\n\nKEY = v\n",
                3,
                "the key \"KEY \" contains whitespace",
            ),
            ("export\n", 1, "expected KEY=VALUE, got \"export\""),
            ("A=x\0y\n", 1, "contains a NUL byte"),
        ] {
            let (at, why) = parse(text).expect_err(text);
            assert_eq!(at, line, "{text:?}");
            assert!(why.contains(want), "{text:?}: {why}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = read(Path::new("/definitely/not/here.env"), "here.env").expect_err("missing");
        assert_eq!(
            err.to_string(),
            "here.env: cannot read the environment file: no such file or directory"
        );
    }
}

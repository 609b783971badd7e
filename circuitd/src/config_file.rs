//! `--config FILE`: a TOML file whose keys are circuitd's long flags (`name = "a"`,
//! `join = ["10.0.0.1:7711"]`). Its entries become command-line words placed before the real
//! ones, so clap checks and parses them; flags on the command line win.

use std::ffi::OsString;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command, ValueHint};
use toml::de::{DeTable, DeValue};

/// The id and long name of the flag that names the file.
const CONFIG: &str = "config";

/// Why the command line (with its config file) could not be parsed.
#[derive(Debug)]
pub enum ParseError {
    /// A usage error on the command line, or `--help` and `--version`: clap prints and exits.
    Usage(clap::Error),
    /// The config file is unreadable or wrong.
    Config(ConfigError),
}

/// What is wrong with a config file, and where.
#[derive(Debug, PartialEq)]
pub struct ConfigError {
    file: PathBuf,
    /// 1-based line and column (in characters), when the error is at one place in the file.
    at: Option<(usize, usize)>,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.file.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Parses `argv` into `A`, with the entries of `--config FILE` (or its `env`) as flags given
/// before the command line's: the command line's own flags replace the file's (a repeatable
/// flag's values replace the file's whole list). Relative paths in the file are relative to
/// its directory.
pub fn parse<A: clap::Parser>(argv: Vec<OsString>) -> Result<A, ParseError> {
    let cmd = A::command();
    let matches = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(ParseError::Usage)?;
    let file = matches
        .get_one::<PathBuf>(CONFIG)
        .filter(|f| !f.as_os_str().is_empty());
    let Some(file) = file else {
        return A::from_arg_matches(&matches).map_err(ParseError::Usage);
    };
    let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
    let text = std::fs::read_to_string(&file).map_err(|e| {
        ParseError::Config(ConfigError {
            file: file.clone(),
            at: None,
            message: format!("cannot read it: {e}"),
        })
    })?;
    let given =
        |arg: &Arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine);
    let words = words(&cmd, &file, &text, given).map_err(ParseError::Config)?;
    let mut full = Vec::with_capacity(argv.len() + words.len());
    full.extend(argv.first().cloned());
    full.extend(words);
    full.extend(argv.into_iter().skip(1));
    let merged = cmd.try_get_matches_from(full).map_err(|e| {
        ParseError::Config(ConfigError {
            file: file.clone(),
            at: None,
            message: clap_message(&e),
        })
    })?;
    A::from_arg_matches(&merged).map_err(ParseError::Usage)
}

/// The command-line words for the entries of config file `file` (its text), in file order,
/// each value checked by clap on its own so an error points at it. Entries whose flag
/// `given(arg)` (on the command line) are checked but left out.
fn words(
    cmd: &Command,
    file: &Path,
    text: &str,
    given: impl Fn(&Arg) -> bool,
) -> Result<Vec<OsString>, ConfigError> {
    let error = |span: Option<Range<usize>>, message: String| ConfigError {
        file: file.to_path_buf(),
        at: span.map(|s| line_col(text, s.start)),
        message,
    };
    let table = DeTable::parse(text).map_err(|e| {
        error(
            e.span(),
            format!("invalid TOML: {}", e.message().trim_end()),
        )
    })?;
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let dir = file.parent().unwrap_or(Path::new("/"));
    let mut words = Vec::new();
    for (key, value) in entries {
        let name: &str = key.get_ref();
        if name == CONFIG {
            return Err(error(
                Some(key.span()),
                "a config file cannot name another one: give --config on the command line".into(),
            ));
        }
        let Some(arg) = settable(cmd).find(|a| a.get_long() == Some(name)) else {
            return Err(error(Some(key.span()), unknown_key(cmd, name)));
        };
        for (word, span) in arg_words(arg, value.get_ref(), value.span(), dir)
            .map_err(|(message, span)| error(Some(span), message))?
        {
            let checked = cmd
                .clone()
                .try_get_matches_from([OsString::from(cmd.get_name()), word.clone()]);
            if let Err(e) = checked {
                return Err(error(Some(span), clap_message(&e)));
            }
            if !given(arg) {
                words.push(word);
            }
        }
    }
    Ok(words)
}

/// The flags a config file may set: every long flag that is not `--config`, help or version.
fn settable(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| {
        a.get_long().is_some_and(|l| l != CONFIG)
            && !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

/// An error message and the span of the value it is about.
type Misplaced = (String, Range<usize>);

/// The words for one entry, each with the span of its value: `--key=value`, one per element
/// for a repeatable flag, `--key` for a flag set to `true`. Err: the type it should have had,
/// and where.
fn arg_words(
    arg: &Arg,
    value: &DeValue<'_>,
    span: Range<usize>,
    dir: &Path,
) -> Result<Vec<(OsString, Range<usize>)>, Misplaced> {
    let long = arg.get_long().unwrap_or_default();
    let is_path = matches!(
        arg.get_value_hint(),
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
    );
    let word = |value: &str| {
        let mut word = OsString::from(format!("--{long}="));
        if is_path && !value.is_empty() && Path::new(value).is_relative() {
            word.push(dir.join(value));
        } else {
            word.push(value);
        }
        word
    };
    let wrong = |what: String, expected: &str, found: &DeValue<'_>| {
        let found = found.type_str();
        let article = if found.starts_with(['a', 'i']) {
            "an"
        } else {
            "a"
        };
        format!("{what} must be {expected}, not {article} {found}")
    };
    let key = format!("\"{long}\"");
    let one = |word: OsString| Ok(vec![(word, span.clone())]);
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, DeValue::Boolean(true)) => one(OsString::from(format!("--{long}"))),
        (ArgAction::SetTrue, DeValue::Boolean(false)) => Ok(Vec::new()),
        (ArgAction::SetTrue, _) => Err((wrong(key, "true or false", value), span)),
        (ArgAction::Append, DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Ok((word(s), item.span())),
                other => Err((wrong(format!("each {key}"), "a string", other), item.span())),
            })
            .collect(),
        (_, DeValue::String(s)) => one(word(s)),
        (ArgAction::Append, _) => Err((wrong(key, "a string or an array of strings", value), span)),
        (_, DeValue::Integer(i)) => {
            let digits = i.as_str().replace('_', "");
            let decimal =
                i128::from_str_radix(&digits, i.radix()).map_or(digits, |n| n.to_string());
            one(word(&decimal))
        }
        _ => Err((wrong(key, "a string or an integer", value), span)),
    }
}

/// `unknown key "x"`, with the nearest valid key if one is close, else the list of them.
fn unknown_key(cmd: &Command, name: &str) -> String {
    let keys: Vec<&str> = settable(cmd).filter_map(Arg::get_long).collect();
    let wanted = name.replace('_', "-").to_lowercase();
    let nearest = keys
        .iter()
        .map(|k| (edit_distance(&wanted, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 4));
    match nearest {
        Some((_, key)) => format!("unknown key \"{name}\" (did you mean \"{key}\"?)"),
        None => {
            let mut sorted = keys;
            sorted.sort_unstable();
            format!(
                "unknown key \"{name}\"; the keys are circuitd's long flags: {}",
                sorted.join(", ")
            )
        }
    }
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// circuitd's own flags.
    type Args = crate::Args;

    /// Writes `text` as `dir/circuitd.toml` and parses `circuitd --config FILE args...`.
    fn parse_with(text: &str, args: &[&str]) -> (tempfile::TempDir, Result<Args, ParseError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("circuitd.toml");
        std::fs::write(&file, text).expect("write config");
        let mut argv: Vec<OsString> = vec!["circuitd".into(), "--config".into(), file.into()];
        argv.extend(args.iter().map(OsString::from));
        let parsed = parse::<Args>(argv);
        (dir, parsed)
    }

    fn ok(text: &str, args: &[&str]) -> (tempfile::TempDir, Args) {
        match parse_with(text, args) {
            (dir, Ok(args)) => (dir, args),
            (_, Err(e)) => panic!("{text:?} {args:?} did not parse: {e:?}"),
        }
    }

    /// The error's one line, with the temp dir's path replaced by `DIR`.
    fn error(text: &str, args: &[&str]) -> String {
        match parse_with(text, args) {
            (dir, Err(ParseError::Config(e))) => e
                .to_string()
                .replace(dir.path().to_str().expect("utf-8"), "DIR"),
            (_, other) => panic!("{text:?} {args:?}: expected a config error, got {other:?}"),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_kind_of_key_takes_effect() {
        let text = r#"
name = "web-1"
listen = "10.0.0.5:7711"
join = ["10.0.0.1:7711", "10.0.0.2"]
label = "zone=a"
max-connections = 2_048
idle-timeout = "90s"
log-max-files = 0x10
"#;
        let (_dir, args) = ok(text, &[]);
        assert_eq!(args.name.as_deref(), Some("web-1"));
        assert_eq!(args.listen.as_deref(), Some("10.0.0.5:7711"));
        assert_eq!(args.join, ["10.0.0.1:7711", "10.0.0.2"]);
        assert_eq!(args.labels, labels(&[("zone", "a")]));
        assert_eq!(args.max_connections, 2048);
        assert_eq!(args.idle_timeout, std::time::Duration::from_secs(90));
        assert_eq!(args.log_max_files, 16);
    }

    #[test]
    fn the_command_line_wins_and_replaces_repeatable_lists() {
        let text =
            "name = \"a\"\nlabel = [\"zone=a\", \"disk=ssd\"]\njoin = [\"h1\"]\nmax-workers = 7\n";
        let (_dir, args) = ok(text, &["--name", "b", "--label", "zone=b"]);
        assert_eq!(args.name.as_deref(), Some("b"));
        assert_eq!(args.labels, labels(&[("zone", "b")]), "not appended");
        assert_eq!(args.join, ["h1"], "the file's list stays when not given");
        assert_eq!(args.max_workers, 7);
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let text = "key-file = \"cluster.key\"\ndata-dir = \"data\"\nsocket = \"/run/c.sock\"\npidfile = \"run/circuitd.pid\"\nname = \"data\"\n";
        let (dir, args) = ok(text, &[]);
        assert_eq!(args.key_file, Some(dir.path().join("cluster.key")));
        assert_eq!(args.data_dir, Some(dir.path().join("data")));
        assert_eq!(args.socket, Some(PathBuf::from("/run/c.sock")));
        assert_eq!(args.pidfile, Some(dir.path().join("run/circuitd.pid")));
        assert_eq!(args.name.as_deref(), Some("data"), "not a path");
    }

    #[test]
    fn no_file_is_the_plain_command_line() {
        let args = parse::<Args>(vec!["circuitd".into(), "--name".into(), "x".into()]).unwrap();
        assert_eq!(args.name.as_deref(), Some("x"));
        let usage = parse::<Args>(vec!["circuitd".into(), "--nmae".into()]);
        assert!(matches!(usage, Err(ParseError::Usage(_))), "{usage:?}");
    }

    #[test]
    fn unknown_keys_point_at_the_key_and_suggest_the_nearest() {
        assert_eq!(
            error("name = \"a\"\n  nmae = \"b\"\n", &[]),
            "config file DIR/circuitd.toml:2:3: unknown key \"nmae\" (did you mean \"name\"?)"
        );
        assert_eq!(
            error("data_dir = \"/x\"\n", &[]),
            "config file DIR/circuitd.toml:1:1: unknown key \"data_dir\" (did you mean \"data-dir\"?)"
        );
        let listed = error("[daemon]\nname = \"a\"\n", &[]);
        assert!(
            listed.starts_with("config file DIR/circuitd.toml:1:2: unknown key \"daemon\"; the keys are circuitd's long flags: advertise, data-dir, "),
            "{listed}"
        );
        assert!(
            !listed.contains("help") && !listed.contains(" config,"),
            "{listed}"
        );
        assert_eq!(
            error("config = \"other.toml\"\n", &[]),
            "config file DIR/circuitd.toml:1:1: a config file cannot name another one: give --config on the command line"
        );
    }

    #[test]
    fn wrong_types_point_at_the_value() {
        assert_eq!(
            error("name = [\"a\"]\n", &[]),
            "config file DIR/circuitd.toml:1:8: \"name\" must be a string or an integer, not an array"
        );
        assert_eq!(
            error("join = [\"h1\", 7]\n", &[]),
            "config file DIR/circuitd.toml:1:15: each \"join\" must be a string, not an integer"
        );
        assert_eq!(
            error("\nmax-workers = true\n", &[]),
            "config file DIR/circuitd.toml:2:15: \"max-workers\" must be a string or an integer, not a boolean"
        );
        assert_eq!(
            error("label = { zone = \"a\" }\n", &[]),
            "config file DIR/circuitd.toml:1:9: \"label\" must be a string or an array of strings, not a table"
        );
    }

    #[test]
    fn bad_values_get_clap_s_message_at_the_value() {
        assert_eq!(
            error("# limits\nmax-connections = \"many\"\n", &[]),
            "config file DIR/circuitd.toml:2:19: invalid value 'many' for '--max-connections <N>': invalid digit found in string"
        );
        assert_eq!(
            error("label = [\"zone=a\", \"ssd\"]\n", &[]),
            "config file DIR/circuitd.toml:1:20: invalid value 'ssd' for '--label <K=V>': expected K=V, got \"ssd\""
        );
        // Checked even when the command line overrides it: the file is wrong either way.
        assert_eq!(
            error("idle-timeout = \"0s\"\n", &["--idle-timeout", "1m"]),
            "config file DIR/circuitd.toml:1:16: invalid value '0s' for '--idle-timeout <DURATION>': must be between 1s and 1day"
        );
    }

    #[test]
    fn invalid_toml_and_unreadable_files_are_named() {
        assert_eq!(
            error("name = \"a\"\nlisten = \n", &[]),
            "config file DIR/circuitd.toml:2:10: invalid TOML: string values must be quoted, expected literal string"
        );
        let missing = parse::<Args>(vec![
            "circuitd".into(),
            "--config".into(),
            "/nonexistent/circuitd.toml".into(),
        ]);
        match missing {
            Err(ParseError::Config(e)) => assert_eq!(
                e.to_string(),
                "config file /nonexistent/circuitd.toml: cannot read it: No such file or directory (os error 2)"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = \"é\"\nbb = 1";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, text.find("bb").unwrap()), (2, 1));
        assert_eq!(line_col(text, text.find('1').unwrap()), (2, 6));
        assert_eq!(line_col(text, text.find('"').unwrap() + 3), (1, 7));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("nmae", "name"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("lable", "label"), 2);
    }

    #[test]
    fn every_flag_but_config_is_a_key() {
        let cmd = Args::command();
        let keys: Vec<&str> = settable(&cmd).filter_map(Arg::get_long).collect();
        for key in [
            "name", "listen", "join", "label", "key-file", "data-dir", "pidfile",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert!(!keys.contains(&"config"));
    }
}

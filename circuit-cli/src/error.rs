//! What the user sees when a command fails: one line, `error: <message> — <hint>`, never a
//! `Debug` dump. Hints are attached here by error class, or by a command that knows better;
//! a message that already carries a hint (the daemon's often do) gets no second one.

use std::fmt;
use std::io::{self, Write};

use circuit_sdk::chan::ChanError;
use circuit_sdk::proto::ErrorCode;
use circuit_sdk::Error as SdkError;

/// A failure with a message for a person and, optionally, what to do about it.
#[derive(Debug)]
pub struct CliError {
    message: String,
    hint: Option<String>,
}

impl CliError {
    /// A failure with only a message.
    pub fn plain(err: impl fmt::Display) -> anyhow::Error {
        anyhow::Error::new(Self {
            message: err.to_string(),
            hint: None,
        })
    }

    /// A failure with a hint; `err` gives the message. The hint is dropped if the message
    /// has one already.
    pub fn hinted(err: impl fmt::Display, hint: impl Into<String>) -> anyhow::Error {
        let message = err.to_string();
        let hint = (!has_hint(&message)).then(|| hint.into());
        anyhow::Error::new(Self { message, hint })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " — {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

/// True when `message` ends with a hint of its own (`no node named "h9" — see \`circuit nodes\``).
fn has_hint(message: &str) -> bool {
    message.contains(" — ")
}

/// The one line (without `error: `) that describes `err`.
pub fn render(err: &anyhow::Error) -> String {
    if let Some(e) = err.downcast_ref::<CliError>() {
        return e.to_string();
    }
    if let Some(e) = err.downcast_ref::<SdkError>() {
        return render_sdk(e);
    }
    if let Some(e) = err.downcast_ref::<ChanError>() {
        return render_chan(e);
    }
    format!("{err:#}")
}

/// A failed operation on the channel `name`. The daemon's messages already name the channel;
/// the SDK's own ones (closed, too large) do not, so those get the name here.
pub fn chan(err: ChanError, name: &str) -> anyhow::Error {
    match err {
        ChanError::Closed => CliError::plain(format!("channel \"{name}\" is closed")),
        ChanError::TooLarge { size, max } => CliError::plain(format!(
            "a value of {size} bytes is larger than channel \"{name}\" accepts ({max} bytes)"
        )),
        other => anyhow::Error::new(other),
    }
}

/// Prints `error: <message>` on stderr. A closed stderr is ignored: there is nowhere left to
/// say anything.
pub fn print(err: &anyhow::Error) {
    let _ = writeln!(io::stderr().lock(), "error: {}", render(err));
}

/// Prints the error a command ended with: as [`print()`] does, or with `json` as one JSON
/// document `{"error": {"code": …, "message": …}}`.
pub fn report(err: &anyhow::Error, json: bool) {
    if json {
        print_json(code(err), &render(err));
    } else {
        print(err);
    }
}

/// Prints `{"error": {"code": code, "message": message}}` on stderr.
pub fn print_json(code: &str, message: &str) {
    let doc = serde_json::json!({ "error": { "code": code, "message": message } });
    let _ = writeln!(io::stderr().lock(), "{doc}");
}

/// A short machine-readable name for what went wrong: the daemon's error code when it said
/// one (`not_found`, `invalid_argument`, …), the channel's (`closed`, `timeout`, …), or
/// `cannot_connect`; `error` otherwise.
pub fn code(err: &anyhow::Error) -> &'static str {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<SdkError>() {
            return match e {
                SdkError::Remote { code, .. } => code.as_str(),
                SdkError::Connect { .. } => "cannot_connect",
                _ => "error",
            };
        }
        if let Some(e) = cause.downcast_ref::<ChanError>() {
            return match e {
                ChanError::Daemon { code, .. } => code.as_str(),
                ChanError::Closed => "closed",
                ChanError::NotFound(_) => "not_found",
                ChanError::OwnerLost(_) => "owner_lost",
                ChanError::Unavailable(_) => "unavailable",
                ChanError::Timeout => "timeout",
                ChanError::TooLarge { .. } => "too_large",
                ChanError::Full => "full",
                ChanError::Empty => "empty",
                ChanError::InvalidName(_) => "invalid_argument",
                ChanError::AlreadyExists(_) => "already_exists",
                _ => "error",
            };
        }
    }
    "error"
}

/// True when writing our own output failed because the reader went away (`| head -1`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Turns a failed connect into a message that says what to check; `tcp` when `--addr` was used.
pub fn connect(err: SdkError, tcp: bool) -> anyhow::Error {
    let SdkError::Connect {
        target,
        reason: source,
    } = &err
    else {
        return err.into();
    };
    let message = format!(
        "cannot connect to circuitd at {target}: {}",
        io_message(source)
    );
    let hint = match (source.kind(), tcp) {
        (io::ErrorKind::PermissionDenied, false) => {
            "the socket belongs to another user (run as that user, or set CIRCUIT_SOCKET)"
        }
        (_, false) => "is circuitd running? (start it with `circuitd`, or set CIRCUIT_SOCKET)",
        (_, true) => "is circuitd running there and listening on that address?",
    };
    CliError::hinted(message, hint)
}

fn render_sdk(err: &SdkError) -> String {
    let hint = match err {
        SdkError::Remote { code, message } => {
            let message = if message.is_empty() {
                code.as_str()
            } else {
                message
            };
            return match remote_hint(*code) {
                Some(hint) if !has_hint(message) => format!("{message} — {hint}"),
                _ => message.to_string(),
            };
        }
        SdkError::Connect {
            target,
            reason: source,
        } => {
            return format!(
                "cannot connect to circuitd at {target}: {}",
                io_message(source)
            );
        }
        SdkError::Handshake { .. } if err.is_auth() => {
            Some("every node and client needs the same cluster key: --key-file or CIRCUIT_KEY_FILE")
        }
        SdkError::NoHandshake { .. } => {
            Some("is a circuitd listening there (its mesh port, 7711 by default)?")
        }
        SdkError::Handshake { .. } | SdkError::Key(_) => None,
        SdkError::Disconnected => Some("did circuitd stop? see its log"),
        SdkError::Protocol(_) => Some("are circuit and circuitd the same version?"),
        SdkError::Frame(_) | SdkError::Io(_) => None,
    };
    match hint {
        Some(hint) => format!("{err} — {hint}"),
        None => err.to_string(),
    }
}

fn render_chan(err: &ChanError) -> String {
    let hint = match err {
        ChanError::Daemon { code, message } => {
            return match remote_hint(*code) {
                Some(hint) if !has_hint(message) => format!("{message} — {hint}"),
                _ => message.clone(),
            };
        }
        ChanError::OwnerLost(_) => Some("did circuitd restart? see its log"),
        ChanError::Protocol(_) => Some("are circuit and circuitd the same version?"),
        _ => None,
    };
    match hint {
        Some(hint) => format!("{err} — {hint}"),
        None => err.to_string(),
    }
}

/// Hints that hold whatever the command was; commands add their own for the rest.
fn remote_hint(code: ErrorCode) -> Option<&'static str> {
    match code {
        ErrorCode::NotFound => Some("see `circuit ps`"),
        ErrorCode::VersionMismatch => Some("install the same version of circuit and circuitd"),
        ErrorCode::ShuttingDown => Some("try again once circuitd is back"),
        ErrorCode::Internal => Some("this is a bug in circuitd; its log has the details"),
        _ => None,
    }
}

/// An I/O error's text without the `(os error 2)` suffix.
fn io_message(err: &io::Error) -> String {
    let mut text = err.to_string();
    if let Some(at) = text.find(" (os error ") {
        text.truncate(at);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failure_names_the_socket_and_what_to_do() {
        let err = SdkError::Connect {
            target: "/run/x.sock".into(),
            reason: io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            render(&connect(err, false)),
            "cannot connect to circuitd at /run/x.sock: No such file or directory — is circuitd \
             running? (start it with `circuitd`, or set CIRCUIT_SOCKET)"
        );
    }

    #[test]
    fn not_found_points_at_ps() {
        let err = anyhow::Error::new(SdkError::Remote {
            code: ErrorCode::NotFound,
            message: "no worker named \"x\"".into(),
        });
        assert_eq!(render(&err), "no worker named \"x\" — see `circuit ps`");
    }

    #[test]
    fn a_message_with_its_own_hint_gets_no_second_one() {
        let message = "no node named \"h9\" in the mesh — see `circuit nodes`";
        let err = SdkError::Remote {
            code: ErrorCode::NotFound,
            message: message.into(),
        };
        assert_eq!(render(&anyhow::Error::new(err)), message);
        assert_eq!(
            render(&CliError::hinted(message, "see `circuit ps`")),
            message
        );
        assert_eq!(
            render(&CliError::hinted(
                "no node named \"h9\"",
                "see `circuit nodes`"
            )),
            "no node named \"h9\" — see `circuit nodes`"
        );
    }

    #[test]
    fn channel_errors_name_the_channel() {
        assert_eq!(
            render(&chan(ChanError::Closed, "jobs")),
            "channel \"jobs\" is closed"
        );
        let refused = ChanError::Daemon {
            code: ErrorCode::InvalidState,
            message: "channel \"jobs\" is already closed".into(),
        };
        assert_eq!(
            render(&chan(refused, "jobs")),
            "channel \"jobs\" is already closed"
        );
        let lost = ChanError::OwnerLost("connection to circuitd lost".into());
        assert!(render(&chan(lost, "jobs")).ends_with("see its log"));
    }
}

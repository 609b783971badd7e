//! The hosts of `circuit install` as typed: `USER@HOST[:PORT]`, with `[v6]` for IPv6 hosts
//! that take a port. The user defaults to the local user, as with `ssh`.

use std::fmt;

/// The SSH port when none is given.
pub const SSH_PORT: u16 = 22;

/// One host to install on, parsed from `USER@HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The remote user; `None` when the argument named none (the local user is used).
    pub user: Option<String>,
    /// The host name or address, without brackets.
    pub host: String,
    /// The SSH port.
    pub port: u16,
    /// The argument as the user typed it: how the host is named in progress and the summary.
    pub typed: String,
}

impl SshTarget {
    /// The user to log in as: the one named, else `default`.
    pub fn user_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.user.as_deref().unwrap_or(default)
    }

    /// `host:port` for connecting, with brackets around an IPv6 host.
    pub fn connect_addr(&self) -> String {
        host_port(&self.host, self.port)
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.typed)
    }
}

/// `host:port`, bracketing a host that is an IPv6 address.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses `USER@HOST[:PORT]` (`root@10.0.0.1`, `h1:2222`, `admin@[fe80::1]:22`, `::1`).
/// The user is everything before the last `@`, as `ssh` reads it.
pub fn parse(s: &str) -> Result<SshTarget, String> {
    let bad =
        |why: &str| format!("expected USER@HOST[:PORT] (like root@10.0.0.1), got \"{s}\": {why}");
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(bad("it contains whitespace or a slash"));
    }
    let (user, rest) = match s.rsplit_once('@') {
        Some(("", _)) => return Err(bad("the user is empty")),
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, s),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| bad("a \"[\" without \"]\""))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("expected :PORT after \"]\""))?,
            ),
        };
        (host, port)
    } else {
        match rest.split_once(':') {
            // One colon: `host:port`; more: a bare IPv6 address without a port.
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    if host.starts_with('-') {
        return Err(bad("a host cannot start with \"-\""));
    }
    let port = match port {
        None => SSH_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(port @ 1..) => port,
            _ => return Err(bad("the port is not a number from 1 to 65535")),
        },
    };
    Ok(SshTarget {
        user,
        host: host.to_string(),
        port,
        typed: s.to_string(),
    })
}

/// The local user name (`$USER`, else `$LOGNAME`), the default remote user as for `ssh`.
pub fn local_user() -> Option<String> {
    ["USER", "LOGNAME"]
        .into_iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: Option<&str>, host: &str, port: u16, typed: &str) -> SshTarget {
        SshTarget {
            user: user.map(String::from),
            host: host.into(),
            port,
            typed: typed.into(),
        }
    }

    #[test]
    fn users_hosts_and_ports() {
        let cases = [
            (
                "root@10.0.0.1",
                target(Some("root"), "10.0.0.1", 22, "root@10.0.0.1"),
            ),
            ("h1:2222", target(None, "h1", 2222, "h1:2222")),
            ("a@b@h1", target(Some("a@b"), "h1", 22, "a@b@h1")),
            (
                "admin@[fe80::1]:22",
                target(Some("admin"), "fe80::1", 22, "admin@[fe80::1]:22"),
            ),
            ("[::1]", target(None, "::1", 22, "[::1]")),
            ("::1", target(None, "::1", 22, "::1")),
        ];
        for (typed, want) in cases {
            assert_eq!(parse(typed).as_ref(), Ok(&want), "{typed}");
        }
        assert_eq!(parse("[::1]:2222").unwrap().connect_addr(), "[::1]:2222");
        assert_eq!(parse("root@h1").unwrap().connect_addr(), "h1:22");
        assert_eq!(parse("h1").unwrap().user_or("me"), "me");
    }

    #[test]
    fn bad_targets_say_why() {
        for (bad, why) in [
            ("", "host is empty"),
            ("root@", "host is empty"),
            ("@h1", "user is empty"),
            ("h1:", "port"),
            ("h1:0", "port"),
            ("h1:70000", "port"),
            ("h1:ssh", "port"),
            ("[::1", "without"),
            ("[::1]22", "after"),
            ("[]:22", "host is empty"),
            ("root@h 1", "whitespace"),
            ("root@h1/x", "slash"),
            ("-oProxyCommand=x", "\"-\""),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains(why) && err.contains("USER@HOST"),
                "{bad:?}: {err}"
            );
        }
    }
}

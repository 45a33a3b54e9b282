//! `HOST[:PORT]` as typed by users: a DNS name, an IPv4 address or a bracketed IPv6 address.

use std::{fmt, net::Ipv6Addr, str::FromStr};

use ft_protocol::DEFAULT_PORT;

/// Where the server is. Resolution happens at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// Host name or IP address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Why a server address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid server address '{input}': {reason} (expected HOST:PORT, e.g. example.org:{DEFAULT_PORT}, 10.0.0.5:{DEFAULT_PORT} or [::1]:{DEFAULT_PORT})")]
pub struct AddressError {
    input: String,
    reason: &'static str,
}

impl FromStr for ServerAddress {
    type Err = AddressError;

    /// The port may be omitted, in which case [`DEFAULT_PORT`] is used. A bare IPv6 address
    /// without brackets is accepted only when it carries no port.
    fn from_str(input: &str) -> Result<Self, AddressError> {
        let error = |reason| AddressError {
            input: input.to_owned(),
            reason,
        };
        if input.parse::<Ipv6Addr>().is_ok() {
            return Ok(Self {
                host: input.to_owned(),
                port: DEFAULT_PORT,
            });
        }
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| error("missing ']'"))?;
            host.parse::<Ipv6Addr>()
                .map_err(|_| error("not an IPv6 address inside [ ]"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| error("expected ':' after ']'"))?,
                    ),
                ),
            }
        } else {
            match input.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (input, None),
            }
        };
        if host.is_empty() {
            return Err(error("the host is empty"));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(error("the host contains a space or '/'"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => match port.parse::<u16>() {
                Ok(0) | Err(_) => return Err(error("the port must be a number from 1 to 65535")),
                Ok(port) => port,
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> (String, u16) {
        let address: ServerAddress = input.parse().unwrap();
        (address.host, address.port)
    }

    #[test]
    fn names_ipv4_and_bracketed_ipv6_parse() {
        assert_eq!(parse("example.org:9000"), ("example.org".into(), 9000));
        assert_eq!(parse("127.0.0.1:1"), ("127.0.0.1".into(), 1));
        assert_eq!(parse("[::1]:7000"), ("::1".into(), 7000));
        assert_eq!(parse("[fe80::1]"), ("fe80::1".into(), DEFAULT_PORT));
        assert_eq!(parse("::1"), ("::1".into(), DEFAULT_PORT));
        assert_eq!(parse("host"), ("host".into(), DEFAULT_PORT));
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            ":80",
            "host:",
            "host:0",
            "host:70000",
            "[::1",
            "[nope]:1",
            "[::1]80",
            "a b:1",
        ] {
            assert!(bad.parse::<ServerAddress>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(parse_display("[::1]:5"), "[::1]:5");
        assert_eq!(parse_display("h:5"), "h:5");
    }

    fn parse_display(input: &str) -> String {
        input.parse::<ServerAddress>().unwrap().to_string()
    }
}

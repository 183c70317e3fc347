//! Port forwards (`-p`): parsing the little-vm-helper syntax into validated
//! forwards and turning them into QEMU user-network `hostfwd=` rules.
//!
//! Accepted forms: `N` (host N to guest N), `H:V`, `H:V:tcp|udp`, and the same
//! with a leading IPv4 bind address (`ADDR:H:V[:proto]`). Without an address a
//! forward binds 127.0.0.1 only (little-vm-helper bound every interface).

use std::fmt;
use std::net::Ipv4Addr;

use crate::error::InvalidInput;

/// The transport protocol of a forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// One validated forward: `addr:host_port` on the host to `guest_port` in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortForward {
    pub addr: Ipv4Addr,
    pub host_port: u16,
    pub guest_port: u16,
    pub proto: Proto,
}

/// What every bad `-p` value's error ends with.
const SYNTAX: &str = "expected hostport[:vmport[:tcp|udp]] or addr:hostport:vmport[:tcp|udp]";

fn bad(value: &str, reason: &str) -> InvalidInput {
    InvalidInput::value(
        "--port",
        value,
        format!("invalid port forward: {reason}; {SYNTAX}"),
    )
}

fn port(value: &str, field: &str, what: &str) -> Result<u16, InvalidInput> {
    let n: u32 = field
        .parse()
        .map_err(|_| bad(value, &format!("{what} {field:?} is not a number")))?;
    if n == 0 || n > 65535 {
        return Err(bad(value, &format!("{what} {n} is out of range 1-65535")));
    }
    Ok(n as u16)
}

impl PortForward {
    /// Parses one `-p` value.
    pub fn parse(value: &str) -> Result<PortForward, InvalidInput> {
        let err = |reason: &str| bad(value, reason);
        let parts: Vec<&str> = value.trim().split(':').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err("empty field"));
        }
        // A leading field with a dot is a bind address.
        let (addr, rest) = if parts.len() >= 3 && parts[0].contains('.') {
            let a: Ipv4Addr = parts[0]
                .parse()
                .map_err(|_| err(&format!("{:?} is not an IPv4 address", parts[0])))?;
            (a, &parts[1..])
        } else {
            (Ipv4Addr::LOCALHOST, &parts[..])
        };
        let (host, guest, proto) = match rest {
            [h] => (*h, *h, Proto::Tcp),
            [h, g] => (*h, *g, Proto::Tcp),
            [h, g, p] => {
                let proto = Proto::parse(p)
                    .ok_or_else(|| err(&format!("protocol {p:?} is not tcp or udp")))?;
                (*h, *g, proto)
            }
            _ => return Err(err("too many fields")),
        };
        Ok(PortForward {
            addr,
            host_port: port(value, host, "host port")?,
            guest_port: port(value, guest, "guest port")?,
            proto,
        })
    }

    /// The `hostfwd=` rule for QEMU's user network.
    pub fn hostfwd(&self) -> String {
        format!(
            "hostfwd={}:{}:{}-:{}",
            self.proto.as_str(),
            self.addr,
            self.host_port,
            self.guest_port
        )
    }
}

impl fmt::Display for PortForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} -> guest {}/{}",
            self.addr,
            self.host_port,
            self.guest_port,
            self.proto.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(addr: [u8; 4], h: u16, g: u16, proto: Proto) -> PortForward {
        PortForward {
            addr: Ipv4Addr::from(addr),
            host_port: h,
            guest_port: g,
            proto,
        }
    }

    #[test]
    fn parses_every_form() {
        let lo = [127, 0, 0, 1];
        for (input, want) in [
            ("2222", fwd(lo, 2222, 2222, Proto::Tcp)),
            ("2222:22", fwd(lo, 2222, 22, Proto::Tcp)),
            ("2222:22:tcp", fwd(lo, 2222, 22, Proto::Tcp)),
            ("5353:53:udp", fwd(lo, 5353, 53, Proto::Udp)),
            ("5353:53:UDP", fwd(lo, 5353, 53, Proto::Udp)),
            ("0.0.0.0:8080:80", fwd([0, 0, 0, 0], 8080, 80, Proto::Tcp)),
            ("10.1.2.3:53:53:udp", fwd([10, 1, 2, 3], 53, 53, Proto::Udp)),
            (" 80:8080 ", fwd(lo, 80, 8080, Proto::Tcp)),
        ] {
            assert_eq!(PortForward::parse(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_values_naming_them() {
        for (input, reason) in [
            ("", "empty field"),
            ("22:", "empty field"),
            ("abc", "\"abc\" is not a number"),
            ("0:22", "host port 0 is out of range"),
            ("70000:22", "host port 70000 is out of range"),
            ("22:99999", "guest port 99999 is out of range"),
            ("22:22:sctp", "protocol \"sctp\" is not tcp or udp"),
            ("1.2.3:22:22", "\"1.2.3\" is not an IPv4 address"),
            ("1.2.3.4:1:2:tcp:x", "too many fields"),
            ("1:2:3", "protocol \"3\" is not tcp or udp"),
        ] {
            let e = PortForward::parse(input).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(reason), "{input}: {msg}");
            assert!(msg.contains(&format!("{input:?}")), "{input}: {msg}");
        }
    }

    #[test]
    fn hostfwd_binds_loopback_unless_told() {
        assert_eq!(
            PortForward::parse("2222:22").unwrap().hostfwd(),
            "hostfwd=tcp:127.0.0.1:2222-:22"
        );
        assert_eq!(
            PortForward::parse("0.0.0.0:5353:53:udp").unwrap().hostfwd(),
            "hostfwd=udp:0.0.0.0:5353-:53"
        );
    }

    #[test]
    fn parsing_stops_at_the_first_error() {
        use super::super::options::parse_ports;
        let ok = parse_ports(&["1:2".into(), "3".into()]).unwrap();
        assert_eq!(ok.len(), 2);
        let e = parse_ports(&["1:2".into(), "x".into()]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--port \"x\": invalid port forward"),
            "{e}"
        );
    }
}

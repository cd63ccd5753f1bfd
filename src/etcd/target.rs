//! `etcd://HOST:PORT[,HOST:PORT...]/NAME`: which cluster, which lock; and the base64 that
//! etcd's JSON gateway uses for keys and values.

use std::fmt::Write as _;

use super::http::Endpoint;

/// The scheme that selects the etcd kind.
pub const SCHEME: &str = "etcd://";

/// etcd's own default client port, used when a member is given without one.
pub const DEFAULT_PORT: u16 = 2379;

/// A parsed etcd LOCK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoints: Vec<Endpoint>,
    /// The lock's name, as `etcdctl lock NAME` takes it.
    pub name: String,
    /// LOCK as given, for messages and `FLOCKRUN_LOCK`.
    pub text: String,
}

impl Target {
    /// Parses LOCK; the error says what is wrong and how a correct one looks.
    ///
    /// ```
    /// use flockrun::etcd::Target;
    /// let t = Target::parse("etcd://10.0.0.5:2379,10.0.0.6/nightly").unwrap();
    /// assert_eq!(t.endpoints.len(), 2);
    /// assert_eq!(t.endpoints[1].port, 2379);
    /// assert_eq!(t.name, "nightly");
    /// ```
    ///
    /// # Errors
    /// A missing NAME, an empty member, a bad port or bracket.
    pub fn parse(text: &str) -> Result<Target, String> {
        const SHAPE: &str = "expected etcd://HOST:PORT[,HOST:PORT...]/NAME";
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("{text:?} does not start with {SCHEME}; {SHAPE}"))?;
        let (members, name) = rest
            .split_once('/')
            .ok_or_else(|| format!("{text:?} names no lock; {SHAPE}"))?;
        if name.is_empty() {
            return Err(format!("{text:?} names no lock after the members; {SHAPE}"));
        }
        let endpoints = members
            .split(',')
            .map(|member| parse_member(member).map_err(|why| format!("{text:?}: {why}; {SHAPE}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Target {
            endpoints,
            name: name.to_owned(),
            text: text.to_owned(),
        })
    }

    /// `parse` for LOCK on the command line: a malformed one is a usage error.
    ///
    /// # Errors
    /// As `parse`, as `Error::Usage`.
    pub fn parse_lock(text: &str) -> Result<Target, crate::error::Error> {
        Target::parse(text).map_err(|m| crate::error::Error::Usage {
            message: format!("bad LOCK: {m}"),
        })
    }

    /// A stable 64-bit identity of the lock: its name and its set of members, in any order
    /// (FNV-1a). Used to recognise the same lock held by an ancestor flockrun.
    #[must_use]
    pub fn identity(&self) -> u64 {
        let mut members: Vec<String> = self.endpoints.iter().map(ToString::to_string).collect();
        members.sort();
        members.dedup();
        let text = format!("{}\0{}", self.name, members.join(","));
        crate::nested::name_hash(text.as_bytes())
    }

    /// The prefix under which `etcdctl lock NAME` puts its keys: `NAME/`.
    #[must_use]
    pub fn prefix(&self) -> String {
        format!("{}/", self.name)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_member(member: &str) -> Result<Endpoint, String> {
    if member.is_empty() {
        return Err("an empty member".to_owned());
    }
    let (host, port) = if let Some(bracketed) = member.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("member {member:?} lacks a closing ]"))?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("member {member:?}: expected :PORT after ]"))?,
                ),
            ),
        }
    } else {
        match member.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (member, None),
        }
    };
    if host.is_empty() || host.contains(['[', ']', ' ', '@']) {
        return Err(format!("member {member:?} has no usable host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("member {member:?} has a bad port (1-65535)"))?,
    };
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as protobuf's JSON mapping writes `bytes`.
#[must_use]
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard or URL-safe base64, padded or not; `None` on anything else.
#[must_use]
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits & 0xff).ok()?);
        }
    }
    // A single leftover character cannot encode a byte.
    (bits < 6).then_some(out)
}

/// The end of the range of all keys starting with `prefix`: the prefix with its last byte
/// that is not 0xff incremented (etcd's `GetPrefixRangeEnd`).
#[must_use]
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: the range runs to the end of the key space.
    vec![0]
}

/// Hex of a lease id as etcdctl writes it into the key (`%x` of an int64).
#[must_use]
pub fn lease_hex(lease: i64) -> String {
    let mut out = String::new();
    let _ = write!(out, "{lease:x}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("etcd://127.0.0.1:23790,[::1]:2380,db/a/b").unwrap();
        assert_eq!(t.endpoints[0].to_string(), "127.0.0.1:23790");
        assert_eq!(t.endpoints[1].to_string(), "[::1]:2380");
        assert_eq!(t.endpoints[2].to_string(), "db:2379");
        assert_eq!(t.name, "a/b");
        assert_eq!(t.prefix(), "a/b/");
        let same = Target::parse("etcd://db,[::1]:2380,127.0.0.1:23790/a/b").unwrap();
        assert_eq!(same.identity(), t.identity());
        let other = Target::parse("etcd://127.0.0.1:23790/a/b").unwrap();
        assert_ne!(other.identity(), t.identity());
        for bad in [
            "etcd://",
            "etcd://h:1",
            "etcd://h:1/",
            "etcd://,h/x",
            "etcd://h:0/x",
            "etcd://h:70000/x",
            "etcd://[::1/x",
            "etcd://[::1]2379/x",
            "etcd:///x",
            "http://h/x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64(b"demo/"), "ZGVtby8=");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            unbase64("ZGVtby8yMDQwYTIwYTUzMzE2OTA3").unwrap(),
            b"demo/2040a20a53316907"
        );
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(97).wrapping_add(len))
                .collect();
            assert_eq!(unbase64(&base64(&data)).unwrap(), data);
        }
        assert!(unbase64("a").is_none());
        assert!(unbase64("ab$c").is_none());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"demo/"), b"demo0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        assert_eq!(lease_hex(0x2040_a20a_5331_6907), "2040a20a53316907");
    }
}

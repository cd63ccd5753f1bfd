//! `etcd://HOST:PORT[,HOST:PORT...]/NAME` (or `etcds://` for TLS, or no members to take them
//! from `ETCDCTL_ENDPOINTS`): which cluster, which lock; and the base64 that etcd's JSON
//! gateway uses for keys and values.

use std::fmt::{self, Write as _};

/// One cluster member as given in LOCK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The scheme that selects the etcd kind, over plain HTTP.
pub const SCHEME: &str = "etcd://";
/// The same over TLS (as https is to http).
pub const TLS_SCHEME: &str = "etcds://";

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
    /// Whether the members are spoken to over TLS.
    pub tls: bool,
    /// Whether LOCK itself lists the members (else they came from `ETCDCTL_ENDPOINTS`).
    pub members_given: bool,
}

const SHAPE: &str = "expected etcd://HOST:PORT[,HOST:PORT...]/NAME, etcds://... for TLS, or \
                     etcd:///NAME with the members in ETCDCTL_ENDPOINTS";

impl Target {
    /// Parses a LOCK that lists its members; the error says what is wrong and how a correct
    /// one looks.
    ///
    /// ```
    /// use flockrun::kind::etcd::target::Target;
    /// let t = Target::parse("etcd://10.0.0.5:2379,10.0.0.6/nightly").unwrap();
    /// assert_eq!(t.endpoints.len(), 2);
    /// assert_eq!(t.endpoints[1].port, 2379);
    /// assert_eq!(t.name, "nightly");
    /// assert!(!t.tls);
    /// assert!(Target::parse("etcds://etcd-0.etcd:2379/nightly").unwrap().tls);
    /// ```
    ///
    /// # Errors
    /// A missing NAME, an empty member, a bad port or bracket, no members.
    pub fn parse(text: &str) -> Result<Target, String> {
        Target::parse_with(text, None, false)
    }

    /// Parses LOCK; with no members in it, they come from `env_endpoints` (the value of
    /// `ETCDCTL_ENDPOINTS`), each `http://`, `https://` or bare, a bare one spoken to over
    /// TLS when the LOCK says `etcds://` or `tls_files` (any of `--cacert`, `--cert`,
    /// `--key`) is true, as etcdctl does.
    ///
    /// # Errors
    /// As `parse`; also members of mixed schemes, an `http://` member in an `etcds://` LOCK,
    /// or no members anywhere.
    pub fn parse_with(
        text: &str,
        env_endpoints: Option<&str>,
        tls_files: bool,
    ) -> Result<Target, String> {
        let (rest, tls_scheme) = if let Some(rest) = text.strip_prefix(SCHEME) {
            (rest, false)
        } else if let Some(rest) = text.strip_prefix(TLS_SCHEME) {
            (rest, true)
        } else {
            return Err(format!(
                "{text:?} does not start with {SCHEME} or {TLS_SCHEME}; {SHAPE}"
            ));
        };
        let (members, name) = rest
            .split_once('/')
            .ok_or_else(|| format!("{text:?} names no lock; {SHAPE}"))?;
        if name.is_empty() {
            return Err(format!("{text:?} names no lock after the members; {SHAPE}"));
        }
        let (endpoints, tls) =
            if members.is_empty() {
                let listed = env_endpoints.filter(|e| !e.trim().is_empty()).ok_or_else(|| {
                format!(
                    "{text:?} lists no members and ETCDCTL_ENDPOINTS is not set: name them in \
                     LOCK or in ETCDCTL_ENDPOINTS"
                )
            })?;
                from_env(listed, tls_scheme, tls_files)
                    .map_err(|why| format!("ETCDCTL_ENDPOINTS={listed:?}: {why}"))?
            } else {
                let endpoints = members
                    .split(',')
                    .map(|member| {
                        parse_member(member).map_err(|why| format!("{text:?}: {why}; {SHAPE}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (endpoints, tls_scheme)
            };
        Ok(Target {
            endpoints,
            name: name.to_owned(),
            text: text.to_owned(),
            tls,
            members_given: !members.is_empty(),
        })
    }

    /// `parse_with` for LOCK on the command line: a malformed one is a usage error.
    ///
    /// # Errors
    /// As `parse_with`, as `Error::Usage`.
    pub fn parse_lock(
        text: &str,
        env_endpoints: Option<&str>,
        tls_files: bool,
    ) -> Result<Target, crate::error::Error> {
        Target::parse_with(text, env_endpoints, tls_files).map_err(|m| crate::error::Error::Usage {
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

/// The members `ETCDCTL_ENDPOINTS` lists (comma-separated, as etcdctl reads it) and whether
/// they speak TLS.
fn from_env(
    listed: &str,
    tls_scheme: bool,
    tls_files: bool,
) -> Result<(Vec<Endpoint>, bool), String> {
    let mut endpoints = Vec::new();
    let mut schemes = Vec::new();
    for member in listed.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (scheme, bare) = match member.split_once("://") {
            Some(("http", rest)) => (Some(false), rest),
            Some(("https", rest)) => (Some(true), rest),
            Some((other, _)) => {
                return Err(format!(
                    "member {member:?} has the scheme {other}://; flockrun speaks http:// and \
                     https://"
                ));
            }
            None => (None, member),
        };
        let bare = bare.trim_end_matches('/');
        endpoints.push(parse_member(bare)?);
        schemes.push(scheme.unwrap_or(tls_scheme || tls_files));
    }
    let Some(&tls) = schemes.first() else {
        return Err("no members".to_owned());
    };
    if schemes.iter().any(|&s| s != tls) {
        return Err("its members mix http and https; list members of one kind".to_owned());
    }
    if tls_scheme && !tls {
        return Err("an etcds:// LOCK needs TLS members, but these are http://".to_owned());
    }
    Ok((endpoints, tls))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_member(member: &str) -> Result<Endpoint, String> {
    if member.is_empty() {
        return Err("an empty member".to_owned());
    }
    let (host, port) = crate::kind::network::socket::host_port(member, DEFAULT_PORT)
        .map_err(|problem| format!("member {member:?}{problem}"))?;
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
    fn members_from_etcdctl_endpoints() {
        let parse = |lock, env, files| Target::parse_with(lock, Some(env), files);
        let t = parse("etcd:///job", "http://a:1, http://b:2/", false).unwrap();
        assert_eq!(t.endpoints.len(), 2);
        assert_eq!(t.endpoints[1].to_string(), "b:2");
        assert!(!t.tls && !t.members_given);
        assert!(
            parse("etcd:///job", "https://a:1,https://b:2", false)
                .unwrap()
                .tls
        );
        // Bare members speak TLS when the LOCK says etcds:// or TLS files are given.
        assert!(!parse("etcd:///job", "a:1", false).unwrap().tls);
        assert!(parse("etcd:///job", "a:1", true).unwrap().tls);
        assert!(parse("etcds:///job", "a:1", false).unwrap().tls);
        for (lock, env) in [
            ("etcd:///job", "http://a:1,https://b:2"),
            ("etcds:///job", "http://a:1"),
            ("etcd:///job", "unix://a:1"),
            ("etcd:///job", " , "),
            ("etcd:///", "a:1"),
        ] {
            assert!(parse(lock, env, false).is_err(), "{lock} {env}");
        }
        // Members in LOCK win over the environment.
        let t = parse("etcds://c:3/job", "http://a:1", false).unwrap();
        assert_eq!(t.endpoints[0].to_string(), "c:3");
        assert!(t.tls && t.members_given);
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

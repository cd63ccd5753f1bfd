//! Who a process is, across hosts and pid reuse, in py-filelock 4.x's terms: the host name
//! it writes into soft-lock markers and the start token that tells a live owner from a
//! recycled pid. Both must match py-filelock byte for byte, or markers of the other side
//! look foreign (held forever) or owned by someone else.

use std::fmt::{self, Write as _};
use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::inspect::process::ProcessInfo;

/// Inode of the initial pid namespace (`PROC_PID_INIT_INO`).
const INITIAL_PID_NS: u64 = 0xEFFF_FFFC;
/// Inode of the initial time namespace (`PROC_TIME_INIT_INO`).
const INITIAL_TIME_NS: u64 = 0xEFFF_FFFA;

/// The host name as py-filelock 4.1+ writes it: the node name with every byte outside
/// `0x21..=0x7e` (and `?` itself) written as `?hh`, plus `?pidns-<inode in hex>` when this
/// process is not in the initial pid namespace (two containers with the same host name
/// then do not judge each other's pids).
///
/// py-filelock also shortens names over 253 characters; a Linux node name has at most 64
/// bytes, so an escaped name with the suffix stays far below that.
#[must_use]
pub fn host_name() -> String {
    let node = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_owned())
        .unwrap_or_default();
    let mut name = escape_host(std::os::unix::ffi::OsStrExt::as_bytes(node.as_os_str()));
    if let Ok(ns) = fs::metadata("/proc/self/ns/pid")
        && ns.ino() != INITIAL_PID_NS
    {
        let _ = write!(name, "?pidns-{:x}", ns.ino());
    }
    name
}

/// A host name as `host_name` writes it, as a person reads it: the `?hh` escapes decoded and
/// a pid-namespace suffix said in words, `host-a (pid namespace f0000151)`.
#[must_use]
pub fn readable_host(written: &str) -> String {
    let (name, namespace) = match written.split_once("?pidns-") {
        Some((name, ns)) => (name, Some(ns)),
        None => (written, None),
    };
    let mut bytes = Vec::with_capacity(name.len());
    let raw = name.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let escaped = (raw[i] == b'?')
            .then(|| name.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = escaped {
            bytes.push(byte);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    let name = String::from_utf8_lossy(&bytes);
    match namespace {
        Some(ns) => format!("{name} (pid namespace {ns})"),
        None => name.into_owned(),
    }
}

fn escape_host(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "?".to_owned();
    }
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'?' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "?{b:02x}");
        }
    }
    out
}

/// A process start token: `(boot_id << 64) | starttime`, up to 192 bits, written in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartToken {
    /// The boot id as a 128-bit number; 0 when it could not be read.
    pub boot: u128,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

impl StartToken {
    /// The token of process `pid`, or `None` when it cannot be proven: the process is gone,
    /// or this process lives in a time namespace with its own boot clock (start times would
    /// not compare), as py-filelock 4.2.1+ decides.
    #[must_use]
    pub fn of(pid: i32) -> Option<StartToken> {
        if !boot_clock_is_the_hosts() {
            return None;
        }
        let (_, start) = ProcessInfo::identity(pid).ok()?;
        Some(StartToken {
            boot: boot_id(),
            start,
        })
    }

    /// Parses the decimal form; `None` for anything else or more than 192 bits.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)] // limb arithmetic keeps the low 64 bits on purpose
    pub fn parse(text: &str) -> Option<StartToken> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Three 64-bit limbs, least significant first.
        let mut limbs = [0u64; 3];
        for digit in text.bytes() {
            let mut carry = u128::from(digit - b'0');
            for limb in &mut limbs {
                let v = u128::from(*limb) * 10 + carry;
                *limb = v as u64; // low 64 bits; the rest carries
                carry = v >> 64;
            }
            if carry != 0 {
                return None;
            }
        }
        Some(StartToken {
            boot: (u128::from(limbs[2]) << 64) | u128::from(limbs[1]),
            start: limbs[0],
        })
    }

    /// py-filelock's comparison: equal, or equal start times when either side could not read
    /// the boot id.
    #[must_use]
    pub fn same_start(self, other: StartToken) -> bool {
        self == other || ((self.boot == 0 || other.boot == 0) && self.start == other.start)
    }
}

impl fmt::Display for StartToken {
    #[allow(clippy::cast_possible_truncation)] // limb arithmetic: every quotient fits in 64 bits
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const TEN_19: u128 = 10_000_000_000_000_000_000;
        let mut limbs = [self.start, self.boot as u64, (self.boot >> 64) as u64];
        let mut chunks = Vec::new();
        while limbs.iter().any(|&l| l != 0) {
            let mut rest: u128 = 0;
            for limb in limbs.iter_mut().rev() {
                let v = (rest << 64) | u128::from(*limb);
                *limb = (v / TEN_19) as u64;
                rest = v % TEN_19;
            }
            chunks.push(rest as u64);
        }
        match chunks.split_last() {
            None => f.write_str("0"),
            Some((first, rest)) => {
                write!(f, "{first}")?;
                for chunk in rest.iter().rev() {
                    write!(f, "{chunk:019}")?;
                }
                Ok(())
            }
        }
    }
}

fn boot_id() -> u128 {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .and_then(|s| u128::from_str_radix(&s.trim().replace('-', ""), 16).ok())
        .unwrap_or(0)
}

/// False inside a time namespace whose boot clock is offset from the host's.
fn boot_clock_is_the_hosts() -> bool {
    let Ok(ns) = fs::metadata("/proc/self/ns/time") else {
        return true; // a kernel without time namespaces
    };
    if ns.ino() == INITIAL_TIME_NS {
        return true;
    }
    let same_for_children =
        fs::metadata("/proc/self/ns/time_for_children").is_ok_and(|c| c.ino() == ns.ino());
    let no_boot_offset = fs::read_to_string("/proc/self/timens_offsets").is_ok_and(|s| {
        s.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            matches!(w.as_slice(), ["boottime" | "7", "0", "0"])
        })
    });
    same_for_children && no_boot_offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_host_names_like_py_filelock() {
        assert_eq!(escape_host(b"vm"), "vm");
        assert_eq!(escape_host(b"my host?x"), "my?20host?3fx");
        assert_eq!(escape_host("ünï".as_bytes()), "?c3?bcn?c3?af");
        assert_eq!(escape_host(b""), "?");
    }

    #[test]
    fn host_names_read_back_for_people() {
        assert_eq!(readable_host("vm"), "vm");
        assert_eq!(
            readable_host("host-a?pidns-f0000151"),
            "host-a (pid namespace f0000151)"
        );
        assert_eq!(
            readable_host(&escape_host("my host?x".as_bytes())),
            "my host?x"
        );
        assert_eq!(readable_host("?"), "?");
    }

    #[test]
    fn tokens_round_trip_through_decimal() {
        let known = "57388187673588313894229794773386246136790339237430980405";
        let token = StartToken::parse(known).unwrap();
        assert_eq!(token.to_string(), known);
        for t in [
            StartToken { boot: 0, start: 0 },
            StartToken {
                boot: 0,
                start: u64::MAX,
            },
            StartToken {
                boot: u128::MAX,
                start: u64::MAX,
            },
            StartToken { boot: 1, start: 7 },
        ] {
            assert_eq!(StartToken::parse(&t.to_string()), Some(t));
        }
        assert_eq!(
            StartToken { boot: 1, start: 0 }.to_string(),
            "18446744073709551616"
        );
        // 2^192 does not fit.
        assert_eq!(
            StartToken::parse("6277101735386680763835789423207666416102355444464034512896"),
            None
        );
        for bad in ["", "-1", "1 ", "0x10", "١"] {
            assert_eq!(StartToken::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn compares_like_py_filelock() {
        let a = StartToken { boot: 5, start: 9 };
        assert!(a.same_start(a));
        assert!(a.same_start(StartToken { boot: 0, start: 9 }));
        assert!(!a.same_start(StartToken { boot: 6, start: 9 }));
        assert!(!a.same_start(StartToken { boot: 5, start: 8 }));
    }

    #[test]
    fn this_process_has_a_token() {
        let me = nix::unistd::getpid().as_raw();
        let token = StartToken::of(me).unwrap();
        assert_eq!(token.boot, boot_id());
        assert!(StartToken::of(me).unwrap().same_start(token));
    }
}

//! Parser for the lock lines the kernel prints in `/proc/locks` and in the `lock:` lines of
//! `/proc/PID/fdinfo/N` (same format). Written by hand because the procfs crate drops the
//! `->` marker that tells a blocked waiter from a holder.

/// One lock line, e.g. `3: -> FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLine {
    /// A request blocked behind a held lock (`->`), not a held lock.
    pub waiter: bool,
    /// `FLOCK`, `POSIX`, `OFDLCK`, `LEASE`, `DELEG`…
    pub class: String,
    /// `WRITE` (exclusive) rather than `READ` (shared).
    pub write: bool,
    /// The pid recorded when the lock was taken; `-1` for OFD locks; may be dead or reused.
    pub pid: i32,
    /// Superblock device, as printed (hex major:minor); may differ from `stat`'s `st_dev` on
    /// btrfs and overlayfs, so matches are confirmed by inode and a stat of the holder's fd.
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
    pub start: u64,
    /// `None` for `EOF` (to the end of the file, however long).
    pub end: Option<u64>,
}

/// Parses one line of `/proc/locks`, or the text after `lock:` in fdinfo. `None` for
/// anything that does not have the expected shape.
#[must_use]
pub fn parse_line(line: &str) -> Option<LockLine> {
    let mut words = line.split_whitespace();
    let id = words.next()?;
    if !id.ends_with(':') || id.len() < 2 || !id[..id.len() - 1].bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut class = words.next()?;
    let waiter = class == "->";
    if waiter {
        class = words.next()?;
    }
    let _advisory = words.next()?;
    let write = match words.next()? {
        "WRITE" => true,
        "READ" | "UNLCK" | "NONE" => false,
        _ => return None,
    };
    let pid: i32 = words.next()?.parse().ok()?;
    let mut dev = words.next()?.split(':');
    let major = u32::from_str_radix(dev.next()?, 16).ok()?;
    let minor = u32::from_str_radix(dev.next()?, 16).ok()?;
    let inode: u64 = dev.next()?.parse().ok()?;
    if dev.next().is_some() {
        return None;
    }
    let start: u64 = words.next()?.parse().ok()?;
    let end = match words.next()? {
        "EOF" => None,
        n => Some(n.parse().ok()?),
    };
    if words.next().is_some() {
        return None;
    }
    Some(LockLine {
        waiter,
        class: class.to_owned(),
        write,
        pid,
        major,
        minor,
        inode,
        start,
        end,
    })
}

/// One reading of `/proc/locks`, shared by everything that inspects a lock at that moment
/// (the file is generated on each read, and costs milliseconds with thousands of locks).
#[derive(Debug, Clone, Default)]
pub struct KernelLocks {
    pub text: String,
    pub lines: Vec<LockLine>,
    /// Why `/proc/locks` could not be read, if it could not.
    pub error: Option<String>,
}

impl KernelLocks {
    #[must_use]
    pub fn read() -> Self {
        match std::fs::read_to_string("/proc/locks") {
            Ok(text) => KernelLocks {
                lines: parse_all(&text),
                text,
                error: None,
            },
            Err(e) => KernelLocks {
                error: Some(format!("cannot read /proc/locks: {e}")),
                ..KernelLocks::default()
            },
        }
    }
}

/// Every parsable line of a `/proc/locks` text.
#[must_use]
pub fn parse_all(text: &str) -> Vec<LockLine> {
    text.lines().filter_map(parse_line).collect()
}

/// The lock lines of an fdinfo text (`lock:\t1: FLOCK …`).
#[must_use]
pub fn parse_fdinfo(text: &str) -> Vec<LockLine> {
    text.lines()
        .filter_map(|l| l.strip_prefix("lock:"))
        .filter_map(parse_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_holders_and_waiters() {
        let text = "1: FLOCK  ADVISORY  WRITE 19682 fe:00:10029302 0 EOF\n\
                    1: -> FLOCK  ADVISORY  READ 19709 fe:00:10029302 0 EOF\n\
                    2: POSIX  ADVISORY  READ 4676 08:11:77 1073741826 1073742335\n\
                    3: OFDLCK ADVISORY  WRITE -1 00:2e:4567 0 EOF\n";
        let lines = parse_all(text);
        assert_eq!(lines.len(), 4);
        assert!(!lines[0].waiter && lines[0].write && lines[0].pid == 19682);
        assert_eq!(
            (lines[0].major, lines[0].minor, lines[0].inode),
            (0xfe, 0, 10_029_302)
        );
        assert!(lines[1].waiter && !lines[1].write && lines[1].class == "FLOCK");
        assert_eq!(
            (lines[2].start, lines[2].end),
            (1_073_741_826, Some(1_073_742_335))
        );
        assert_eq!(lines[2].minor, 0x11);
        assert_eq!((lines[3].class.as_str(), lines[3].pid), ("OFDLCK", -1));
    }

    #[test]
    fn parses_fdinfo_lock_lines() {
        let text = "pos:\t0\nflags:\t0100000\nmnt_id:\t29\nino:\t5678\n\
                    lock:\t1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF\n";
        let lines = parse_fdinfo(text);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].inode, 5678);
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "",
            "garbage",
            "1: FLOCK ADVISORY WRITE",
            "1: FLOCK ADVISORY WRITE x fe:00:1 0 EOF",
            "1: FLOCK ADVISORY WRITE 1 fe:00 0 EOF",
            "1: FLOCK ADVISORY WRITE 1 zz:00:1 0 EOF",
            "1: FLOCK ADVISORY WRITE 1 fe:00:1:2 0 EOF",
            "1: FLOCK ADVISORY SIDEWAYS 1 fe:00:1 0 EOF",
            "1: FLOCK ADVISORY WRITE 1 fe:00:1 0 EOF extra",
            "x: FLOCK ADVISORY WRITE 1 fe:00:1 0 EOF",
            "1: -> ",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }
}

//! What `/proc/PID` says about a process: parent, command, owner, start time. Start times
//! are kept in clock ticks since boot, which together with the pid identifies a process even
//! after its pid is reused.

use std::fs;
use std::io;
use std::time::Duration;

/// Reads a small `/proc` file. `/proc` files report size 0, so `fs::read_to_string` starts
/// with a tiny buffer and grows it over several reads; one page-sized read does it at once.
///
/// # Errors
/// When the file cannot be opened or read.
pub fn read_proc(path: &str) -> io::Result<String> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    // Plain reads until end of file: `read_to_end` would first ask the size (0 for /proc)
    // and the position, two system calls for nothing.
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A process as seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    pub ppid: i32,
    /// The kernel's short name (`comm`), at most 15 bytes.
    pub comm: String,
    /// argv, lossily decoded; empty for kernel threads and zombies.
    pub argv: Vec<String>,
    /// Real uid, when visible.
    pub uid: Option<u32>,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_ticks: u64,
}

impl ProcessInfo {
    /// Reads `/proc/PID`.
    ///
    /// # Errors
    /// When the process is gone or its stat file cannot be read.
    pub fn read(pid: i32) -> io::Result<Self> {
        let stat = read_proc(&format!("/proc/{pid}/stat"))?;
        let (comm, parent, start_ticks) = parse_stat(&stat)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat"))?;
        let argv = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| {
                raw.split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let uid = read_proc(&format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| parse_status_uid(&s));
        Ok(ProcessInfo {
            pid,
            ppid: parent,
            comm,
            argv,
            uid,
            start_ticks,
        })
    }

    /// Parent pid and start time only: one read of `/proc/PID/stat`, for identity checks.
    ///
    /// # Errors
    /// When the process is gone or its stat file cannot be read.
    pub fn identity(pid: i32) -> io::Result<(i32, u64)> {
        let stat = read_proc(&format!("/proc/{pid}/stat"))?;
        parse_stat(&stat)
            .map(|(_, parent, started)| (parent, started))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat"))
    }

    /// The command line for people: argv joined with spaces (or `[comm]` when argv is not
    /// visible), shortened to `max` characters.
    #[must_use]
    pub fn command(&self, max: usize) -> String {
        let full = if self.argv.is_empty() {
            format!("[{}]", self.comm)
        } else {
            self.argv.join(" ")
        };
        if full.chars().count() <= max {
            return full;
        }
        let mut short: String = full.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }

    /// True when this process is a flockrun.
    #[must_use]
    pub fn is_flockrun(&self) -> bool {
        self.comm == "flockrun"
    }

    /// How long the process has been running.
    #[must_use]
    pub fn age(&self) -> Option<Duration> {
        let uptime = fs::read_to_string("/proc/uptime").ok()?;
        let uptime: f64 = uptime.split_whitespace().next()?.parse().ok()?;
        let started = Duration::from_secs_f64(ticks_to_secs(self.start_ticks));
        Duration::from_secs_f64(uptime).checked_sub(started)
    }

    /// When the process started, in seconds since the Unix epoch: the boot time
    /// (`btime` in `/proc/stat`) plus its start ticks.
    #[must_use]
    pub fn started_at(&self) -> Option<u64> {
        let stat = read_proc("/proc/stat").ok()?;
        let boot: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(boot + self.start_ticks / ticks_per_second()?)
    }

    /// Child pids from `/proc/PID/task/PID/children`.
    #[must_use]
    pub fn children(&self) -> Vec<i32> {
        let pid = self.pid;
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Clock ticks per second, the unit of start times in `/proc/PID/stat`.
pub(crate) fn ticks_per_second() -> Option<u64> {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
}

#[allow(clippy::cast_precision_loss)] // tick counts stay far below 2^52
fn ticks_to_secs(ticks: u64) -> f64 {
    ticks as f64 / ticks_per_second().unwrap_or(100) as f64
}

/// `(comm, ppid, starttime)` from a `/proc/PID/stat` line. comm may hold spaces and
/// parentheses, so the fields are counted from the *last* `)`.
#[must_use]
pub fn parse_stat(stat: &str) -> Option<(String, i32, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let parent = rest.get(1)?.parse().ok()?;
    let started = rest.get(19)?.parse().ok()?;
    Some((comm, parent, started))
}

fn parse_status_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The user name for a uid, or the number.
#[must_use]
pub fn user_name(uid: u32) -> String {
    crate::nss::confine();
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        let stat = "4242 (we (ird) name) S 4241 4242 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 0";
        assert_eq!(
            parse_stat(stat),
            Some(("we (ird) name".to_owned(), 4241, 987_654))
        );
        assert_eq!(parse_stat("4242 (x) S"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn reads_this_process() {
        let me = ProcessInfo::read(std::process::id().cast_signed()).unwrap();
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert!(!me.argv.is_empty());
        assert!(me.age().is_some());
        assert_eq!(me.uid, Some(nix::unistd::getuid().as_raw()));
    }

    #[test]
    fn shortens_long_commands() {
        let p = ProcessInfo {
            pid: 1,
            ppid: 0,
            comm: "sh".into(),
            argv: vec!["sh".into(), "-c".into(), "x".repeat(100)],
            uid: None,
            start_ticks: 0,
        };
        assert_eq!(p.command(10).chars().count(), 10);
        assert!(p.command(10).ends_with('…'));
    }
}

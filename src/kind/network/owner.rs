//! Who holds or waits for a network lock, as a flockrun writes itself into the server
//! (etcd: the key's value) and as `status` and busy messages describe it. Other programs
//! leave no such record; each kind says in its own words what it knows of them.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::utc::utc_timestamp;

/// The longest command a record keeps, in characters.
const COMMAND_CHARS: usize = 200;

/// What a flockrun records about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub host: Option<String>,
    pub pid: Option<i32>,
    pub command: Option<String>,
    /// UTC, `2026-11-23T19:00:01Z`: when the hold began (when the wait began, for a waiter).
    pub since: Option<String>,
    /// For a semaphore (`--slots N`): N, and once held, the slot.
    pub slots: Option<u16>,
    pub slot: Option<u16>,
}

impl Owner {
    /// The record of this process running `command`, as of `now`, in JSON.
    #[must_use]
    pub fn mine(command: &str, now: SystemTime) -> Value {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        json!({
            "host": crate::identity::host_name(),
            "pid": std::process::id(),
            "command": command.chars().take(COMMAND_CHARS).collect::<String>(),
            "since": utc_timestamp(secs),
            "by": "flockrun",
        })
    }

    /// As `mine`, for a holder or waiter of a semaphore of `slots` slots holding `slot`.
    #[must_use]
    pub fn mine_in_semaphore(
        command: &str,
        now: SystemTime,
        slots: u16,
        slot: Option<u16>,
    ) -> Value {
        let mut value = Owner::mine(command, now);
        value["slots"] = json!(slots);
        if let Some(slot) = slot {
            value["slot"] = json!(slot);
        }
        value
    }

    /// Reads a JSON record; `None` for an empty value (etcdctl's) or one that is not ours.
    #[must_use]
    pub fn parse(value: &[u8]) -> Option<Owner> {
        let value: Value = serde_json::from_slice(value).ok()?;
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        let number = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
        };
        let owner = Owner {
            host: text("host"),
            pid: value
                .get("pid")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok()),
            command: text("command"),
            since: text("since"),
            slots: number("slots"),
            slot: number("slot"),
        };
        (owner != Owner::default()).then_some(owner)
    }

    /// `pid 4242 on web-1 (./deploy.sh) since …`, as much of it as the record has.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut text = match (self.pid, &self.host) {
            (Some(pid), Some(host)) => format!("pid {pid} on {host}"),
            (Some(pid), None) => format!("pid {pid}"),
            (None, Some(host)) => format!("a process on {host}"),
            (None, None) => "a flockrun".to_owned(),
        };
        if let Some(command) = &self.command {
            let _ = write!(text, " ({command})");
        }
        if let Some(since) = &self.since {
            let _ = write!(text, " since {since}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn records_round_trip_and_describe_what_they_have() {
        let value = Owner::mine(
            "./deploy.sh",
            UNIX_EPOCH + Duration::from_secs(1_795_460_401),
        );
        let owner = Owner::parse(value.to_string().as_bytes()).unwrap();
        assert_eq!(owner.pid, i32::try_from(std::process::id()).ok());
        assert_eq!(owner.command.as_deref(), Some("./deploy.sh"));
        assert_eq!(owner.since.as_deref(), Some("2026-11-23T19:00:01Z"));
        assert_eq!(Owner::parse(b""), None);
        assert_eq!(Owner::parse(b"{}"), None);
        assert_eq!(Owner::parse(b"not json"), None);
        let partial = Owner {
            host: Some("web-1".to_owned()),
            ..Owner::default()
        };
        assert_eq!(partial.describe(), "a process on web-1");
        let long = Owner::mine(&"x".repeat(500), SystemTime::now());
        let kept = Owner::parse(long.to_string().as_bytes()).unwrap();
        assert_eq!(kept.command.unwrap().len(), COMMAND_CHARS);
    }
}

//! What busy messages and `status` say about the marker at a lock path, for both marker
//! kinds: the classic soft lock (py-filelock's `SoftFileLock`) and the soft lease
//! (`SoftFileLease`). The two must never share a path, so each says, when it meets the
//! other's record, that it does and what to do about it.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::duration::format_seconds;
use crate::error::Error;
use crate::identity::readable_host;
use crate::inspect::marker::{self, Content, RecordMode, Verdict};
use crate::inspect::process::ProcessInfo;
use crate::inspect::sighting::{Holder, Sighting, collapse_trees};
use crate::mode::LockMode;
use crate::status::{LockStatus, MarkerReport, State, holder_report};

/// Which kind is looking at the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// The classic soft lock.
    Classic,
    /// A soft lease.
    Lease,
}

/// How long ago the file at `path` was last modified, by the wall clock: what status can say
/// of a lease's last renewal in one look (the holder's and the file server's clocks may
/// disagree with this host's, so it is an estimate).
fn modified_ago(path: &Path) -> Option<Duration> {
    let modified = fs::symlink_metadata(path).ok()?.modified().ok()?;
    SystemTime::now().duration_since(modified).ok()
}

/// Who holds the marker at `path`, for busy and timeout messages.
pub(crate) fn sight(path: &Path, reader: Reader) -> Sighting {
    let mut sighting = Sighting::default();
    match marker::read(path) {
        Ok(Some(content)) => describe(&mut sighting, path, &content, reader),
        Ok(None) => {}
        Err(e) => sighting
            .warnings
            .push(format!("cannot read the marker: {e}")),
    }
    if sighting.described.is_none() && !marker::stranded(path).is_empty() {
        sighting.described =
            Some("held: files of an interrupted takeover are beside it".to_owned());
    }
    sighting
}

/// As `sight`, for one marker or a semaphore's slot markers: then each slot in turn.
pub(crate) fn sight_all(paths: &[std::path::PathBuf], reader: Reader) -> Sighting {
    if let [one] = paths {
        return sight(one, reader);
    }
    let mut all = Sighting::default();
    let mut slots = Vec::new();
    for (slot, path) in paths.iter().enumerate() {
        let one = sight(path, reader);
        slots.push(format!("slot {slot} {one}"));
        all.warnings.extend(one.warnings);
    }
    all.described = Some(format!(
        "all {} slots are held: {}",
        paths.len(),
        slots.join("; ")
    ));
    all
}

fn describe(sighting: &mut Sighting, path: &Path, content: &Content, reader: Reader) {
    let verdict = marker::judge(content);
    let to_ttl = match reader {
        Reader::Classic => "use --soft --ttl SECONDS on every host instead, so that a lock \
                            whose host is gone frees itself"
            .to_owned(),
        Reader::Lease => "every process on this lock must use the same kind".to_owned(),
    };
    match content {
        Content::Owner { pid, host, .. } if verdict == Verdict::ForeignHost => {
            let mut text = format!("held by pid {pid} on host {}", readable_host(host));
            match reader {
                Reader::Classic => {
                    let _ = write!(
                        text,
                        "; a marker from another host is never broken on a guess: if that \
                         host is gone for good, remove {} by hand, and {to_ttl}",
                        path.display()
                    );
                }
                Reader::Lease => {
                    let _ = write!(
                        text,
                        " with a classic soft-lock marker, which no lease ages out; {to_ttl}"
                    );
                }
            }
            sighting.described = Some(text);
        }
        Content::Owner { pid, .. } => {
            if let Ok(process) = ProcessInfo::read(*pid) {
                sighting.holders = collapse_trees(vec![Holder {
                    process,
                    mode: LockMode::Exclusive,
                    child: None,
                }]);
            }
            sighting.recorded_pids.push(*pid);
            if reader != Reader::Classic {
                sighting.note = Some(format!(
                    "it holds a classic soft-lock marker, not a lease; {to_ttl}"
                ));
            }
        }
        Content::Protocol2(record) => {
            let who = match (record.pid, &record.host) {
                (Some(pid), Some(host)) => format!("pid {pid} on host {}", readable_host(host)),
                _ => "a process".to_owned(),
            };
            let text = match &record.mode {
                RecordMode::Lease {
                    duration_text,
                    duration,
                    ..
                } => {
                    let mut text =
                        format!("held by {who} with a soft lease (TTL {duration_text} s");
                    if let Some(ago) = modified_ago(path) {
                        let _ = write!(text, ", renewed {} ago", format_seconds(ago));
                    }
                    text.push(')');
                    if reader == Reader::Classic {
                        let _ = write!(
                            text,
                            "; --soft without --ttl never ages a lease out: use --soft --ttl \
                             {duration} like its holder"
                        );
                    }
                    text
                }
                RecordMode::Exclusive => format!(
                    "held by {who} with a py-filelock MarkerSoftFileLock, freed only when its \
                     owner is provably gone"
                ),
                RecordMode::Unknown(mode) => format!(
                    "held by {who} with a filelock/2 record of mode {mode}, a contract this \
                     flockrun does not know and never takes over; remove {} by hand once its \
                     owner is gone",
                    path.display()
                ),
            };
            sighting.described = Some(text);
        }
        Content::Malformed(why) => {
            sighting.described = Some(format!(
                "held by a malformed marker ({why}), removed once unchanged for 2 s"
            ));
        }
        Content::Empty => {
            sighting.described = Some(format!(
                "held by a marker with no pid in it, which is never taken over; remove {} by \
                 hand if no process is writing it",
                path.display()
            ));
        }
        Content::Strict => {
            sighting.described =
                Some("held by a py-filelock StrictSoftFileLock sentinel".to_owned());
        }
    }
}

/// Fills `status` in for the marker at `path`.
///
/// # Errors
/// When the marker cannot be read.
pub(crate) fn fill(status: &mut LockStatus, path: &Path) -> Result<(), Error> {
    let content = marker::read(path).map_err(|e| Error::Open {
        path: path.to_owned(),
        hint: "cannot read the marker; ask its owner for read access".to_owned(),
        source: e,
    })?;
    let Some(content) = content else {
        return Ok(()); // removed meanwhile: free
    };
    let verdict = marker::judge(&content);
    let mut report = MarkerReport {
        pid: None,
        host: None,
        start_token: None,
        verdict: verdict.name(),
        note: None,
        mode: None,
        ttl: None,
        renewed_ago: None,
    };
    let mut owner = None;
    match &content {
        Content::Owner { pid, host, token } => {
            report.pid = Some(*pid);
            report.host = Some(host.clone());
            report.start_token = token.map(|t| t.to_string());
            owner = Some(*pid);
        }
        Content::Empty => report.note = Some("empty: the owner recorded no pid".into()),
        Content::Strict => report.note = Some("a StrictSoftFileLock sentinel".into()),
        Content::Protocol2(record) => {
            report.pid = record.pid;
            report.host.clone_from(&record.host);
            report.start_token = record.start.map(|t| t.to_string());
            owner = record.pid;
            match &record.mode {
                RecordMode::Lease { duration, .. } => {
                    report.mode = Some("lease".into());
                    report.ttl = Some(*duration);
                    report.renewed_ago = modified_ago(path);
                    let expired = report
                        .renewed_ago
                        .is_some_and(|ago| ago.as_secs_f64() >= *duration);
                    if verdict == Verdict::Held || verdict == Verdict::ForeignHost {
                        if expired {
                            report.verdict = "expired";
                            report.note = Some(
                                "not renewed for its TTL: a contender that sees it unchanged \
                                 for the TTL takes it over"
                                    .into(),
                            );
                        } else if verdict == Verdict::ForeignHost {
                            report.verdict = "held";
                        }
                    }
                }
                RecordMode::Exclusive => report.mode = Some("exclusive".into()),
                RecordMode::Unknown(mode) => {
                    report.mode = Some(mode.clone());
                    report.note = Some("a filelock/2 contract this flockrun does not know".into());
                }
            }
        }
        Content::Malformed(why) => report.note = Some(why.clone()),
    }
    if verdict == Verdict::Held
        && let Some(pid) = owner
        && let Ok(process) = ProcessInfo::read(pid)
    {
        let holders = collapse_trees(vec![Holder {
            process,
            mode: LockMode::Exclusive,
            child: None,
        }]);
        status.holders = holders.iter().map(holder_report).collect();
    }
    status.state = match verdict {
        Verdict::Stale => State::Stale,
        Verdict::Held | Verdict::ForeignHost | Verdict::Malformed => State::Held,
    };
    if verdict == Verdict::Malformed {
        status.warnings.push(
            "the marker is malformed: py-filelock 4.x removes it once it has stayed unchanged \
             for 2 s"
                .into(),
        );
    }
    let stranded = stranded_warnings(path);
    if !stranded.is_empty() && status.state == State::Stale {
        status.state = State::Held;
    }
    status.warnings.extend(stranded);
    status.mode = (status.state == State::Held).then_some("exclusive");
    status.marker = Some(report);
    Ok(())
}

/// Warnings for the leftovers of an interrupted takeover beside `path`.
pub(crate) fn stranded_warnings(path: &Path) -> Vec<String> {
    marker::stranded(path)
        .into_iter()
        .map(|p| {
            format!(
                "{} is left from an interrupted takeover and may hold a live owner's marker: \
                 the lock counts as held",
                p.display()
            )
        })
        .collect()
}

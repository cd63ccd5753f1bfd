//! Property tests for every parser of outside input: durations, exit codes and modes on the
//! command line, soft-lock markers, start tokens, `/proc/locks`, fdinfo and stat lines, and
//! the inherited `FLOCKRUN_HELD` variable. Inputs are random bytes and random mutations of
//! real samples (seeded; the seed is printed so a failure can be replayed with
//! `FLOCKRUN_FUZZ_SEED`). No parser may panic, and the ones with an inverse must agree with it.
// Cutting random numbers down to the width needed is the point of the generator.
#![allow(clippy::cast_possible_truncation)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime};

use crate::cli::Cli;
use clap::Parser;
use flockrun::duration::{format_seconds, parse_seconds};
use flockrun::identity::StartToken;
use flockrun::inspect::marker;
use flockrun::inspect::proc_locks::{parse_all, parse_fdinfo, parse_line};
use flockrun::inspect::process::parse_stat;
use flockrun::inspect::sighting::FileId;
use flockrun::kind::KINDS;
use flockrun::nested::{HeldKey, held_above};

const ROUNDS: usize = 20_000;

/// xorshift64*: small, deterministic for a seed, good enough to shake parsers.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("FLOCKRUN_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("FLOCKRUN_FUZZ_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// Random bytes, biased towards the characters parsers split on.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        const SPECIAL: &[u8] = b"0123456789 :.\n\t-+eE/=?xX\0\xff";
        let len = self.below(max + 1);
        (0..len)
            .map(|_| {
                if self.below(3) == 0 {
                    self.next() as u8
                } else {
                    *self.pick(SPECIAL)
                }
            })
            .collect()
    }
    /// `sample` with a few random edits: flip, insert, delete, duplicate a slice.
    fn mutate(&mut self, sample: &[u8]) -> Vec<u8> {
        let mut out = sample.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(out.len() + 1);
            match self.below(4) {
                0 if at < out.len() => out[at] = self.next() as u8,
                1 => {
                    let extra = self.bytes(6);
                    out.splice(at..at, extra);
                }
                2 if at < out.len() => {
                    let end = (at + 1 + self.below(8)).min(out.len());
                    out.drain(at..end);
                }
                _ => {
                    let end = (at + self.below(8)).min(out.len());
                    let copy = out[at..end].to_vec();
                    out.splice(at..at, copy);
                }
            }
        }
        out
    }
    /// Either fresh random bytes or a mutation of one of `samples`.
    fn input(&mut self, samples: &[&[u8]]) -> Vec<u8> {
        if self.below(4) == 0 {
            self.bytes(64)
        } else {
            let sample = *self.pick(samples);
            self.mutate(sample)
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn durations_never_panic_and_round_trip() {
    let mut rng = Rng::new();
    let samples: &[&[u8]] = &[
        b"0",
        b"0.3",
        b"5",
        b".25",
        b"1e400",
        b"0x10",
        b" 1",
        b"inf",
        b"18446744073709551615.999999999",
    ];
    for _ in 0..ROUNDS {
        let input = text(&rng.input(samples));
        if let Ok(d) = parse_seconds(&input) {
            // Whatever is accepted is digits with at most one point, and means what it says.
            assert!(
                input.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
                "{input:?}"
            );
            let whole: u64 = input.split('.').next().unwrap().parse().unwrap_or(0);
            assert_eq!(d.as_secs(), whole, "{input:?}");
            let _ = format_seconds(d);
        }
    }
    for _ in 0..ROUNDS {
        let d = Duration::new(rng.next() % 100_000, (rng.next() % 1_000_000_000) as u32);
        let printed = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
        assert_eq!(parse_seconds(&printed), Ok(d));
        let _ = format_seconds(d);
    }
}

#[test]
fn command_lines_never_panic() {
    let mut rng = Rng::new();
    let options: &[&[u8]] = &[
        b"-w",
        b"--timeout",
        b"-E",
        b"--conflict-exit-code",
        b"--mode",
        b"-n",
        b"-s",
        b"-o",
        b"--soft",
        b"--fcntl",
        b"-c",
        b"--json",
        b"--kind",
        b"-v",
        b"-q",
        b"--",
    ];
    let values: &[&[u8]] = &[
        b"0", b"255", b"256", b"-1", b"0644", b"0o644", b"999", b"0.3", b"sqlite",
    ];
    for _ in 0..ROUNDS / 4 {
        let mut argv: Vec<Vec<u8>> = vec![b"flockrun".to_vec()];
        argv.push(
            rng.pick(&[&b"exec"[..], b"try", b"read", b"write", b"status", b"bogus"])
                .to_vec(),
        );
        for _ in 0..rng.below(6) {
            match rng.below(3) {
                0 => argv.push(rng.pick(options).to_vec()),
                1 => argv.push(rng.input(values)),
                _ => argv.push(rng.bytes(12)),
            }
        }
        let os_argv: Vec<&OsStr> = argv.iter().map(|a| OsStr::from_bytes(a)).collect();
        if let Ok(cli) = Cli::try_parse_from(&os_argv) {
            let _ = format!("{cli:?}");
        }
    }
}

#[test]
fn markers_and_start_tokens_never_panic() {
    let mut rng = Rng::new();
    let samples: &[&[u8]] = &[
        b"123\nhost\n",
        b"4242\nbuild-7\n57706243225217634129920\n",
        b"1\nfilelock-strict-v1\0\n0\n",
        b"filelock/2\npid=1\nhost=x\nmode=lease\n",
        b"filelock/break\n99\n",
        b"",
        b"12\nhost?pidns-4026531836\n1\n",
    ];
    for _ in 0..ROUNDS {
        let input = rng.input(samples);
        let content = marker::parse(&input);
        // Judging consults the live system (kill(pid, 0), /proc) but must not panic either.
        let _ = marker::judge(&content);
        let as_text = text(&input);
        if let Some(token) = StartToken::parse(&as_text) {
            assert_eq!(StartToken::parse(&token.to_string()), Some(token));
        }
    }
}

#[test]
fn proc_lines_never_panic() {
    let mut rng = Rng::new();
    let lock_lines: &[&[u8]] = &[
        b"1: FLOCK  ADVISORY  WRITE 1234 08:02:131 0 EOF",
        b"2: POSIX  ADVISORY  READ 99 00:2a:7 1073741824 1073742335",
        b"3: OFDLCK ADVISORY  WRITE -1 fd:00:5 0 EOF",
        b"4: -> FLOCK  ADVISORY  WRITE 77 08:02:131 0 EOF",
        b"lock:\t1: FLOCK  ADVISORY  WRITE 1234 08:02:131 0 EOF",
    ];
    let fdinfo: &[&[u8]] = &[
        b"pos:\t0\nflags:\t02100002\nmnt_id:\t29\nino:\t131\nlock:\t1: FLOCK  ADVISORY  WRITE 1234 08:02:131 0 EOF\n",
    ];
    let stats: &[&[u8]] = &[
        b"1234 (sh) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 5000 1000 100",
        b"77 (a) b) c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21",
    ];
    for _ in 0..ROUNDS {
        let line = text(&rng.input(lock_lines));
        let _ = parse_line(&line);
        let _ = parse_all(&line);
        let _ = parse_fdinfo(&text(&rng.input(fdinfo)));
        let _ = parse_stat(&text(&rng.input(stats)));
    }
}

#[test]
fn inherited_held_variable_never_panics() {
    let mut rng = Rng::new();
    let id = FileId {
        dev: 2050,
        ino: 131,
    };
    let me = std::process::id();
    let sample = format!("kernel:exclusive:2050:131:{me}:5000");
    let samples: &[&[u8]] = &[
        sample.as_bytes(),
        b"sqlite:shared:1:2:3:4,soft:exclusive:1:2:3:4",
    ];
    for _ in 0..ROUNDS / 4 {
        let input = rng.input(samples);
        for kind in KINDS {
            let key = HeldKey {
                kind: kind.name(),
                id,
            };
            let _ = held_above(key, Some(OsStr::from_bytes(&input)), None);
        }
    }
}

#[test]
fn etcd_locks_values_and_base64_never_panic_and_round_trip() {
    use flockrun::kind::etcd::target::Target;
    use flockrun::kind::etcd::{Owner, base64, unbase64};
    let mut rng = Rng::new();
    let samples: &[&[u8]] = &[
        b"etcd://127.0.0.1:2379,[::1]:2380,db/nightly/backup",
        b"etcd://10.0.0.5:2379/deploy",
        b"etcd://h/x",
    ];
    let values: &[&[u8]] = &[
        br#"{"host":"web-1","pid":4242,"command":"./deploy.sh","since":"2026-11-23T19:00:01Z","by":"flockrun"}"#,
        b"",
    ];
    for _ in 0..ROUNDS {
        let lock = text(&rng.input(samples));
        if let Ok(target) = Target::parse(&lock) {
            // What was accepted renders back to a LOCK that parses to the same thing.
            let members: Vec<String> = target.endpoints.iter().map(ToString::to_string).collect();
            let again = format!("etcd://{}/{}", members.join(","), target.name);
            let reparsed = Target::parse(&again).expect(&again);
            assert_eq!(reparsed.endpoints, target.endpoints, "{lock:?}");
            assert_eq!(reparsed.name, target.name, "{lock:?}");
            assert_eq!(reparsed.identity(), target.identity(), "{lock:?}");
            assert!(!target.name.is_empty() && target.endpoints.iter().all(|e| e.port != 0));
        }
        let _ = Owner::parse(&rng.input(values));
        let data = rng.bytes(48);
        assert_eq!(unbase64(&base64(&data)).as_deref(), Some(&data[..]));
        let _ = unbase64(&text(&rng.bytes(24)));
    }
}

/// Every file of the committed fuzz corpora (`fuzz/corpus/<target>/`, kept by cargo-fuzz
/// and minimised) goes through the entry point its target fuzzes, on the stable toolchain:
/// an input that once crashed, hung or found new paths must keep passing. Every target has
/// a non-empty corpus and every corpus a target, so a renamed target cannot skip its files.
#[test]
fn fuzz_corpora_replay_through_their_parsers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut on_disk: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut targets: Vec<String> = flockrun::fuzz::TARGETS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    targets.sort();
    assert_eq!(
        on_disk, targets,
        "fuzz/corpus and flockrun::fuzz::TARGETS differ"
    );
    for (name, entry) in flockrun::fuzz::TARGETS {
        let fuzz_target = root.join("../fuzz_targets").join(format!("{name}.rs"));
        assert!(fuzz_target.is_file(), "no {}", fuzz_target.display());
        let mut replayed = 0;
        for file in std::fs::read_dir(root.join(name)).unwrap() {
            let path = file.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| entry(&bytes));
            assert!(outcome.is_ok(), "{name} panicked on {}", path.display());
            replayed += 1;
        }
        assert!(replayed > 0, "the corpus of {name} is empty");
        eprintln!("{name}: {replayed} inputs replayed");
    }
    flockrun::fuzz::remove_scratch();
}

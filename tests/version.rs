//! `flockrun --version`: the version, the commit of the checkout it was built from, and with
//! `--verbose` what was compiled in.

use std::process::Command;

use crate::harness::flockrun;

/// HEAD of the checkout the tests run in, abbreviated as the build abbreviates it; `None`
/// outside a git checkout (an unpacked source archive).
fn head() -> Option<String> {
    let out = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let expected = match head() {
        Some(commit) => format!("flockrun {} (commit {commit})\n", env!("CARGO_PKG_VERSION")),
        None => format!("flockrun {}\n", env!("CARGO_PKG_VERSION")),
    };
    for flag in ["--version", "-V"] {
        let out = flockrun().arg(flag).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{flag}");
        assert!(out.stderr.is_empty());
    }
}

#[test]
fn verbose_version_lists_the_kinds_compiled_in() {
    for args in [["--version", "--verbose"], ["--verbose", "-V"]] {
        let out = flockrun().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("flockrun "), "{text}");
        assert!(
            lines.contains(
                &"kinds: kernel, ofd, sqlite, soft, soft-lease, soft-rw, etcd, postgresql, redis"
            ),
            "{text}"
        );
        assert!(
            lines.contains(
                &"redis transports: tcp, unix socket, tls (rustls); logins: password, acl user, \
                  client certificate"
            ),
            "{text}"
        );
        assert!(
            lines.contains(&"target: x86_64-unknown-linux-gnu, statically linked"),
            "{text}"
        );
    }
}

#[test]
fn version_words_beside_others_are_a_usage_error() {
    // Only `--version` and `--verbose` alone ask for the version; anything else is parsed
    // as a command line, where --verbose is not a top-level option.
    let out = flockrun().args(["--verbose"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("flockrun: "));
}

//! What `flockrun --version` says: the version and the commit the binary was built from,
//! and with `--verbose` what was compiled in (every lock kind, its target and linkage).

use std::ffi::OsString;
use std::fmt::Write as _;

use crate::kind::KINDS;

/// The commit the binary was built from (`build.rs`), when it was built from a git
/// checkout.
pub const COMMIT: Option<&str> = option_env!("BUILT_FROM_COMMIT");

/// Whether the words after the program name ask for the version alone, and if so whether
/// verbosely: `--version` or `-V`, with or without `--verbose`, in either order.
#[must_use]
pub fn asked(args: &[OsString]) -> Option<bool> {
    // One or two words, or not a question about the version: a command line such as
    // `exec LOCK -- COMMAND…` is not scanned further on its way to the lock.
    let words = args
        .get(1..)
        .filter(|words| (1..=2).contains(&words.len()))?;
    let is_version = |w: &OsString| w == "--version" || w == "-V";
    let count = words.iter().filter(|w| is_version(w)).count();
    let verbose = words.iter().filter(|w| *w == "--verbose").count();
    (count == 1 && verbose <= 1 && count + verbose == words.len()).then_some(verbose == 1)
}

/// `flockrun 0.1.0 (commit 0123456789ab)`, or without the commit when there is none.
#[must_use]
pub fn line() -> String {
    let mut line = format!("flockrun {}", env!("CARGO_PKG_VERSION"));
    if let Some(commit) = COMMIT {
        let _ = write!(line, " (commit {commit})");
    }
    line
}

/// The version line, then what the binary holds: its lock kinds, target and linkage.
#[must_use]
pub fn verbose() -> String {
    let kinds: Vec<&str> = KINDS.iter().map(|kind| kind.name()).collect();
    let linkage = if cfg!(target_feature = "crt-static") {
        "statically linked"
    } else {
        "dynamically linked"
    };
    format!(
        "{}\nkinds: {}\nsoft read/write layouts: v1 (py-filelock 3.x), v2 (py-filelock 4.x)\n\
         etcd transports: http, https (rustls)\npostgresql transports: tcp, unix socket, tls \
         (rustls); logins: trust, password, md5, scram-sha-256, client certificate\n\
         redis transports: tcp, unix socket, tls (rustls); logins: password, acl user, \
         client certificate\nfront ends: flockrun, flock (flock(1)'s \
         command line)\ntarget: {}, {linkage}\n",
        line(),
        kinds.join(", "),
        env!("BUILT_FOR_TARGET"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<OsString> {
        std::iter::once("flockrun")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn only_the_version_words_ask_for_it() {
        assert_eq!(asked(&words(&["--version"])), Some(false));
        assert_eq!(asked(&words(&["-V"])), Some(false));
        assert_eq!(asked(&words(&["--version", "--verbose"])), Some(true));
        assert_eq!(asked(&words(&["--verbose", "-V"])), Some(true));
        assert_eq!(asked(&words(&[])), None);
        assert_eq!(asked(&words(&["--verbose"])), None);
        assert_eq!(asked(&words(&["-V", "-V"])), None);
        assert_eq!(asked(&words(&["exec", "--version"])), None);
        assert_eq!(asked(&words(&["--version", "exec"])), None);
    }
}

//! Name lookups (users for `status`, etcd members' host names) from a statically linked
//! binary. glibc's static `getpwuid` and `getaddrinfo` read /etc/nsswitch.conf like any
//! program, but a source other than the built-in `files` and `dns` (`systemd`, `myhostname`,
//! `resolve`, `mdns4_minimal`, `sss`...) makes them load that module's shared library, and
//! a static program that does crashes (a segmentation fault, seen with glibc 2.36 and
//! Debian's default `passwd: files systemd`). So before its first lookup flockrun narrows
//! each database to the sources it can use, in the order and with the actions the system
//! gives them: `files` (and `dns` for hosts). Names only another source knows are not
//! found (a user is then shown by uid); with systemd-resolved, DNS still reaches it through
//! the stub resolver that /etc/resolv.conf names.

use std::sync::Once;

/// The databases flockrun looks names up in, with the sources a static glibc has built in.
const DATABASES: [(&str, &[&str], &str); 2] = [
    ("passwd", &["files"], "files"),
    ("hosts", &["files", "dns"], "files dns"),
];

/// The line to configure for `database` from its line in nsswitch.conf (`None`: absent):
/// the usable sources, each with the `[...]` actions that follow it; `fallback` when none
/// is left.
#[must_use]
pub fn usable_line(line: Option<&str>, usable: &[&str], fallback: &str) -> String {
    let Some(line) = line else {
        return fallback.to_owned();
    };
    let mut kept: Vec<String> = Vec::new();
    let mut keeping = false;
    let mut rest = line.trim();
    while !rest.is_empty() {
        let (token, after) = if rest.starts_with('[') {
            let end = rest.find(']').map_or(rest.len(), |e| e + 1);
            rest.split_at(end)
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '[')
                .unwrap_or(rest.len());
            rest.split_at(end)
        };
        if token.starts_with('[') {
            if keeping {
                kept.push(token.to_owned());
            }
        } else {
            keeping = usable.contains(&token);
            if keeping {
                kept.push(token.to_owned());
            }
        }
        rest = after.trim_start();
    }
    if kept.iter().any(|t| !t.starts_with('[')) {
        kept.join(" ")
    } else {
        fallback.to_owned()
    }
}

/// `database`'s sources in nsswitch.conf's text, if it has a line.
fn line_of<'a>(conf: &'a str, database: &str) -> Option<&'a str> {
    conf.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find_map(|l| {
            let (name, sources) = l.split_once(':')?;
            (name.trim() == database).then_some(sources)
        })
}

/// Narrows glibc's lookups to what a static binary can use; the first call does it, later
/// calls return at once. Call before any user or host name lookup.
pub fn confine() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let conf = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
        for (database, usable, fallback) in DATABASES {
            let line = usable_line(line_of(&conf, database), usable, fallback);
            configure(database, &line);
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn configure(database: &str, line: &str) {
    use std::ffi::{CString, c_char, c_int};
    unsafe extern "C" {
        /// glibc's `<nss.h>`: replaces a database's nsswitch.conf line for this process.
        fn __nss_configure_lookup(dbname: *const c_char, service_line: *const c_char) -> c_int;
    }
    let (Ok(database), Ok(line)) = (CString::new(database), CString::new(line)) else {
        return;
    };
    // SAFETY: two NUL-terminated strings that outlive the call; called under a `Once`,
    // before this process makes any lookup in these databases.
    unsafe {
        __nss_configure_lookup(database.as_ptr(), line.as_ptr());
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn configure(_database: &str, _line: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_usable_sources_stay_with_their_actions() {
        let hosts = |line| usable_line(line, &["files", "dns"], "files dns");
        assert_eq!(hosts(Some(" files myhostname dns")), "files dns");
        assert_eq!(
            hosts(Some("files mdns4_minimal [NOTFOUND=return] dns")),
            "files dns"
        );
        assert_eq!(
            hosts(Some("files resolve [!UNAVAIL=return] dns")),
            "files dns"
        );
        assert_eq!(
            hosts(Some("dns [!UNAVAIL=return] files")),
            "dns [!UNAVAIL=return] files"
        );
        assert_eq!(
            hosts(Some("files[NOTFOUND=return]dns")),
            "files [NOTFOUND=return] dns"
        );
        assert_eq!(hosts(Some("resolve")), "files dns");
        assert_eq!(hosts(None), "files dns");
        let passwd = |line| usable_line(line, &["files"], "files");
        assert_eq!(passwd(Some("files systemd")), "files");
        assert_eq!(passwd(Some("sss files")), "files");
        assert_eq!(passwd(Some("compat")), "files");
    }

    #[test]
    fn lines_are_found_by_database() {
        let conf = "# comment\npasswd:  files systemd # trailing\nhosts: files dns\n";
        assert_eq!(
            line_of(conf, "passwd").map(str::trim),
            Some("files systemd")
        );
        assert_eq!(line_of(conf, "hosts").map(str::trim), Some("files dns"));
        assert_eq!(line_of(conf, "group"), None);
    }
}

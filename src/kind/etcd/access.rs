//! How flockrun reaches a cluster: LOCK's members (or `ETCDCTL_ENDPOINTS`), TLS, and a user
//! to authenticate as, from the command line with etcdctl's `ETCDCTL_*` variables filling
//! in what the options leave out, and the authentication token that every connection of
//! this process shares.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::ClientConfig;

use super::target::{Endpoint, Target};
use super::tls::{self, TlsFiles};
use crate::error::Error;

/// What the command line says about reaching a cluster (`--cacert`, `--cert`, `--key`,
/// `--user`, `--password-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub tls: TlsFiles,
    /// `NAME` or `NAME:PASSWORD`, as etcdctl's `--user`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl Access {
    /// Whether any option was given (they apply to etcd locks only).
    #[must_use]
    pub fn any(&self) -> bool {
        self.tls.any() || self.user.is_some() || self.password_file.is_some()
    }
}

/// The environment variables etcdctl reads that flockrun honours.
pub const ENV_ENDPOINTS: &str = "ETCDCTL_ENDPOINTS";
const ENV_CACERT: &str = "ETCDCTL_CACERT";
const ENV_CERT: &str = "ETCDCTL_CERT";
const ENV_KEY: &str = "ETCDCTL_KEY";
const ENV_USER: &str = "ETCDCTL_USER";
const ENV_PASSWORD: &str = "ETCDCTL_PASSWORD";

/// A user and password to authenticate as. The password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <hidden> }}",
            self.user
        )
    }
}

/// The authentication token of this process, and how many times it was obtained (so that
/// two threads finding the same token expired authenticate once between them).
#[derive(Debug, Default)]
pub struct Token {
    pub value: Option<String>,
    pub generation: u64,
    /// The cluster said authentication is off: calls go without a token, as etcdctl's do.
    pub auth_disabled: bool,
}

/// The token, also after a panic elsewhere poisoned its mutex (it is complete at all times).
pub fn locked_token(cluster: &Cluster) -> std::sync::MutexGuard<'_, Token> {
    cluster
        .token
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything needed to talk to one cluster. Shared (behind an `Arc`) by the calls of the
/// main thread and the renewal thread.
pub struct Cluster {
    pub endpoints: Vec<Endpoint>,
    /// Set for an `etcds://` cluster (or one whose `ETCDCTL_ENDPOINTS` say `https://`).
    pub tls: Option<Arc<ClientConfig>>,
    pub credentials: Option<Credentials>,
    pub token: Mutex<Token>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Reads one environment variable; empty counts as unset, as etcdctl's flags treat it.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The process environment.
#[must_use]
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

fn env_text(env: Env<'_>, name: &str) -> Result<Option<String>, Error> {
    env(name)
        .map(|v| {
            v.into_string().map_err(|_| Error::Usage {
                message: format!("{name} is not valid UTF-8"),
            })
        })
        .transpose()
}

fn env_path(env: Env<'_>, name: &str) -> Option<PathBuf> {
    env(name).map(PathBuf::from)
}

impl Cluster {
    /// Parses LOCK and works out how to reach its cluster: members from LOCK (or from
    /// `ETCDCTL_ENDPOINTS` for `etcd:///NAME`), TLS files and user from the options, else
    /// from etcdctl's variables.
    ///
    /// # Errors
    /// `Usage` for a malformed LOCK or options that contradict it, a user without a
    /// password; `OptionFile` for a certificate, key or password file that cannot be used.
    pub fn resolve(text: &str, access: &Access, env: Env<'_>) -> Result<(Target, Cluster), Error> {
        let files = TlsFiles {
            cacert: access
                .tls
                .cacert
                .clone()
                .or_else(|| env_path(env, ENV_CACERT)),
            cert: access.tls.cert.clone().or_else(|| env_path(env, ENV_CERT)),
            key: access.tls.key.clone().or_else(|| env_path(env, ENV_KEY)),
        };
        let env_endpoints = env_text(env, ENV_ENDPOINTS)?;
        let target = Target::parse_lock(text, env_endpoints.as_deref(), files.any())?;
        if !target.tls && target.members_given && access.tls.any() {
            return Err(Error::Usage {
                message: format!(
                    "--cacert, --cert and --key are for TLS, but {text} names a plain-HTTP \
                     cluster: write LOCK as etcds://... for a cluster that serves TLS"
                ),
            });
        }
        let tls = if target.tls {
            Some(tls::client_config(&files)?)
        } else {
            None
        };
        let credentials = credentials(access, env)?;
        let cluster = Cluster {
            endpoints: target.endpoints.clone(),
            tls,
            credentials,
            token: Mutex::new(Token::default()),
        };
        Ok((target, cluster))
    }

    /// A cluster reached over plain HTTP without authentication (tests, tools).
    #[must_use]
    pub fn plain(endpoints: Vec<Endpoint>) -> Cluster {
        Cluster {
            endpoints,
            tls: None,
            credentials: None,
            token: Mutex::new(Token::default()),
        }
    }
}

/// The user to authenticate as: `--user` (else `ETCDCTL_USER`), with the password from
/// `--password-file` (else `ETCDCTL_PASSWORD`), or after the first `:` of the user when
/// neither is given, as etcdctl splits `--user NAME:PASSWORD` only when `--password` is
/// absent.
fn credentials(access: &Access, env: Env<'_>) -> Result<Option<Credentials>, Error> {
    let user = match &access.user {
        Some(user) => Some(user.clone()),
        None => env_text(env, ENV_USER)?,
    };
    let Some(user) = user else {
        if let Some(file) = &access.password_file {
            return Err(Error::Usage {
                message: format!(
                    "--password-file {} needs --user NAME (or ETCDCTL_USER)",
                    file.display()
                ),
            });
        }
        return Ok(None);
    };
    let separate = match &access.password_file {
        Some(file) => Some(read_password(file)?),
        None => env_text(env, ENV_PASSWORD)?,
    };
    let (user, password) = match separate {
        Some(password) => (user, password),
        None => match user.split_once(':') {
            Some((name, password)) => (name.to_owned(), password.to_owned()),
            None => {
                return Err(Error::Usage {
                    message: format!(
                        "no password for the etcd user {user:?}: give --password-file FILE or \
                         set ETCDCTL_PASSWORD (a password in --user NAME:PASSWORD works too, \
                         but shows in the process list)"
                    ),
                });
            }
        },
    };
    if user.is_empty() {
        return Err(Error::Usage {
            message: "--user names no user".to_owned(),
        });
    }
    Ok(Some(Credentials { user, password }))
}

/// The password in `file`: its first line, without the line end.
pub(crate) fn read_password(file: &Path) -> Result<String, Error> {
    let text = std::fs::read(file).map_err(|e| Error::OptionFile {
        option: "--password-file",
        path: file.to_owned(),
        problem: format!("cannot read it: {e}"),
        unreadable: true,
    })?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8(line.to_vec()).map_err(|_| Error::OptionFile {
        option: "--password-file",
        path: file.to_owned(),
        problem: "its first line is not valid UTF-8".to_owned(),
        unreadable: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_user_and_password_come_as_etcdctl_takes_them() {
        let none = env_of(&[]);
        let user = |u: &str| Access {
            user: Some(u.to_owned()),
            ..Access::default()
        };
        let c = credentials(&user("root:s3:cret"), &none).unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("root", "s3:cret"));
        assert!(matches!(
            credentials(&user("root"), &none),
            Err(Error::Usage { .. })
        ));
        // A separate password takes the whole of --user as the name.
        let env = env_of(&[("ETCDCTL_PASSWORD", "pw")]);
        let c = credentials(&user("ro:ot"), &env).unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("ro:ot", "pw"));
        // The environment fills in what the options leave out; options win.
        let env = env_of(&[("ETCDCTL_USER", "app:envpw")]);
        let c = credentials(&Access::default(), &env).unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("app", "envpw"));
        let c = credentials(&user("ops:optpw"), &env).unwrap().unwrap();
        assert_eq!(c.user, "ops");
        assert_eq!(credentials(&Access::default(), &none).unwrap(), None);
        assert!(!format!("{c:?}").contains("optpw"));
    }

    #[test]
    fn a_password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2\r\nsecond line\n").unwrap();
        assert_eq!(read_password(&file).unwrap(), "hunter2");
        let access = Access {
            password_file: Some(file),
            ..Access::default()
        };
        assert!(matches!(
            credentials(&access, &env_of(&[])),
            Err(Error::Usage { .. })
        ));
        assert!(matches!(
            read_password(&dir.path().join("missing")),
            Err(Error::OptionFile {
                unreadable: true,
                ..
            })
        ));
    }
}

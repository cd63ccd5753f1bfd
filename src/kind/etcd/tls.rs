//! TLS for `etcds://` clusters, through rustls (its ring provider, so the binary stays
//! static and needs no OpenSSL at run time): the client configuration built from
//! `--cacert`, `--cert` and `--key` (as etcdctl names them), and plain words for the ways a
//! handshake fails.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};

use crate::error::Error;

/// The files a TLS client may be given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA bundle that signs the members' certificates; the system's CAs when absent.
    pub cacert: Option<PathBuf>,
    /// The client certificate (chain) for clusters that require one, with its `key`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file was given.
    #[must_use]
    pub fn any(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// A problem with one of the files, named by its option.
fn file_error(option: &'static str, path: &Path, problem: String, unreadable: bool) -> Error {
    Error::OptionFile {
        option,
        path: path.to_owned(),
        problem,
        unreadable,
    }
}

/// How a PEM read failed, for `option`'s file at `path`.
fn pem_error(option: &'static str, path: &Path, e: &pem::Error, what: &str) -> Error {
    match e {
        pem::Error::Io(io) => file_error(option, path, format!("cannot read it: {io}"), true),
        pem::Error::NoItemsFound => file_error(
            option,
            path,
            format!("it holds no PEM {what} (a \"-----BEGIN ...\" block)"),
            false,
        ),
        other => file_error(option, path, format!("it is not valid PEM: {other}"), false),
    }
}

fn certificates(option: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(option, path, &e, "certificate"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(option, path, &e, "certificate"))?;
    if certs.is_empty() {
        return Err(pem_error(
            option,
            path,
            &pem::Error::NoItemsFound,
            "certificate",
        ));
    }
    Ok(certs)
}

/// The rustls client configuration for `files`.
///
/// # Errors
/// `Usage` for `--cert` without `--key` or the reverse; `OptionFile` for a file that cannot be
/// read (66) or holds no usable certificate or key (65).
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, Error> {
    let pair = match (&files.cert, &files.key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(_), None) => {
            return Err(Error::Usage {
                message: "--cert needs --key: the client certificate's private key".to_owned(),
            });
        }
        (None, Some(_)) => {
            return Err(Error::Usage {
                message: "--key needs --cert: the client certificate it belongs to".to_owned(),
            });
        }
    };
    let mut roots = RootCertStore::empty();
    if let Some(path) = &files.cacert {
        for cert in certificates("--cacert", path)? {
            roots.add(cert).map_err(|e| {
                file_error(
                    "--cacert",
                    path,
                    format!("a certificate in it cannot serve as a CA: {e}"),
                    false,
                )
            })?;
        }
    } else {
        // As etcdctl without --cacert: the system's CAs. Unreadable entries are skipped; a
        // member signed by none of the rest fails its handshake with a clear message.
        let found = rustls_native_certs::load_native_certs();
        let _ = roots.add_parsable_certificates(found.certs);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(anyhow::anyhow!("TLS protocol versions: {e}")))?
        .with_root_certificates(roots);
    let config = match pair {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates("--cert", cert)?;
            let private = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| pem_error("--key", key, &e, "private key"))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                file_error(
                    "--key",
                    key,
                    format!(
                        "it does not go with the certificate in {}: {e}",
                        cert.display()
                    ),
                    false,
                )
            })?
        }
    };
    Ok(Arc::new(config))
}

/// How a TLS connection failed, for the member `host`.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The configuration and the member disagree: asking again will not help.
    Settled(String),
    /// The member hung up during or right after the handshake, which is how a server says
    /// it rejected (or missed) the client certificate, and also what a member that is
    /// restarting does. Worth asking another member; settled once every member says it.
    HungUp(String),
}

/// Where in the exchange a TLS connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the member sent a single byte back.
    Silent,
    /// During the handshake, after the member began its part.
    Handshake,
    /// After the handshake, before the first answer.
    Answer,
}

/// What a failed TLS exchange means, or `None` for an error that is not about TLS (a
/// timeout, a refused connection) and gets the usual handling. `client_cert` says whether
/// flockrun offered a client certificate.
#[must_use]
pub fn refusal(e: &io::Error, host: &str, stage: Stage, client_cert: bool) -> Option<Refusal> {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Some(Refusal::Settled(describe(tls, host, client_cert)));
    }
    let hung_up = matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    );
    hung_up.then(|| {
        Refusal::HungUp(match stage {
            // A plain-HTTP listener (etcd's included) drops a TLS hello without a word.
            Stage::Silent => "the member closed the connection without answering the TLS \
                              hello: it seems to serve plain HTTP on this port (use etcd:// for \
                              it), or it is shutting down"
                .to_owned(),
            Stage::Handshake | Stage::Answer => {
                let when = if stage == Stage::Handshake {
                    "during"
                } else {
                    "right after"
                };
                format!(
                    "the member closed the connection {when} the TLS handshake, which is how \
                     etcd rejects {}: give --cert and --key signed by a CA the cluster trusts \
                     (its --trusted-ca-file)",
                    if client_cert {
                        "a client certificate it does not trust"
                    } else {
                        "a client without a certificate"
                    }
                )
            }
        })
    })
}

fn describe(e: &rustls::Error, host: &str, client_cert: bool) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "its certificate is not signed by a CA flockrun trusts: give the cluster's CA \
                 with --cacert"
                    .to_owned()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "its certificate has expired: renew the member's certificate (or check this \
                 host's clock)"
                    .to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "its certificate is not valid yet: check this host's clock and the member's"
                    .to_owned()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "its certificate is not valid for {host:?}: name the member in LOCK as its \
                     certificate does (a DNS name or IP address in its subjectAltName)"
                )
            }
            other => format!("its certificate was refused: {other:?}"),
        },
        E::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied),
        ) => {
            if client_cert {
                format!(
                    "the member rejected the client certificate (TLS alert {alert:?}): give \
                     --cert and --key signed by a CA the cluster trusts"
                )
            } else {
                format!(
                    "the member requires a client certificate (TLS alert {alert:?}): give \
                     --cert and --key signed by a CA the cluster trusts"
                )
            }
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            "the member does not speak TLS on this port (it seems to serve plain HTTP): use \
             etcd:// for it, or the port where it serves TLS"
                .to_owned()
        }
        other => format!("the TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_worded_for_what_to_check() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let said = |e: rustls::Error| match refusal(&wrap(e), "etcd-0", Stage::Handshake, true) {
            Some(Refusal::Settled(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(
            said(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
            .contains("--cacert")
        );
        assert!(
            said(rustls::Error::InvalidCertificate(CertificateError::Expired)).contains("expired")
        );
        assert!(
            said(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName
            ))
            .contains("not valid for \"etcd-0\"")
        );
        assert!(
            said(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            ))
            .contains("--cert and --key")
        );
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        let hung_up = |stage, cert| match refusal(&eof, "h", stage, cert) {
            Some(Refusal::HungUp(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(hung_up(Stage::Silent, true).contains("plain HTTP"));
        assert!(hung_up(Stage::Handshake, true).contains("during the TLS handshake"));
        assert!(hung_up(Stage::Answer, false).contains("without a certificate"));
        let timeout = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(refusal(&timeout, "h", Stage::Silent, false), None);
    }

    #[test]
    fn cert_and_key_go_together() {
        let only_cert = TlsFiles {
            cert: Some("c.pem".into()),
            ..TlsFiles::default()
        };
        assert!(matches!(
            client_config(&only_cert),
            Err(Error::Usage { .. })
        ));
        let missing = TlsFiles {
            cacert: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        assert!(matches!(
            client_config(&missing),
            Err(Error::OptionFile {
                unreadable: true,
                ..
            })
        ));
    }
}

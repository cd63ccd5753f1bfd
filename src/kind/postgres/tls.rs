//! TLS to PostgreSQL as libpq's `sslmode` asks for it, through rustls (the binary stays
//! static, with no OpenSSL): `prefer` and `require` encrypt without checking whom they talk
//! to, unless a root certificate is at hand (`sslrootcert`, or `~/.postgresql/root.crt`), in
//! which case they check the chain as `verify-ca` does; `verify-ca` checks that a trusted CA
//! signed the server's certificate; `verify-full` also checks the certificate's name against
//! the host.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::conninfo::{Conninfo, RootCerts, SslMode};
use crate::error::Error;

/// How a connection should use TLS.
#[derive(Clone)]
pub enum Tls {
    Off,
    /// Ask for TLS; go on in the clear if the server has none (`allow`, `prefer`).
    Preferred(Arc<ClientConfig>),
    /// TLS or nothing.
    Required(Arc<ClientConfig>),
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tls::Off => "Off",
            Tls::Preferred(_) => "Preferred",
            Tls::Required(_) => "Required",
        })
    }
}

fn file_error(option: &'static str, path: &std::path::Path, problem: String, unreadable: bool) -> Error {
    Error::OptionFile {
        option,
        path: path.to_owned(),
        problem,
        unreadable,
    }
}

fn certificates(option: &'static str, path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let read = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>);
    match read {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) | Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(file_error(
            option,
            path,
            "it holds no PEM certificate (a \"-----BEGIN CERTIFICATE-----\" block)".to_owned(),
            false,
        )),
        Err(rustls::pki_types::pem::Error::Io(e)) => {
            Err(file_error(option, path, format!("cannot read it: {e}"), true))
        }
        Err(e) => Err(file_error(option, path, format!("it is not valid PEM: {e}"), false)),
    }
}

/// The TLS `info` asks for.
///
/// # Errors
/// `Usage` for `verify-ca`/`verify-full` without a root certificate, or a certificate
/// without its key; `OptionFile` for a file that cannot be read or used.
pub fn setup(info: &Conninfo) -> Result<Tls, Error> {
    if info.sslmode == SslMode::Disable {
        return Ok(Tls::Off);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &info.rootcert {
        None => None,
        Some(RootCerts::System) => {
            let mut roots = RootCertStore::empty();
            let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Some(roots)
        }
        Some(RootCerts::File(path)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("sslrootcert", path)? {
                roots.add(cert).map_err(|e| {
                    file_error(
                        "sslrootcert",
                        path,
                        format!("a certificate in it cannot serve as a CA: {e}"),
                        false,
                    )
                })?;
            }
            Some(roots)
        }
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (roots, info.sslmode) {
        (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(Error::Usage {
                message: format!(
                    "{}: sslmode={} checks the server's certificate, so it needs the CA that \
                     signed it: give sslrootcert=FILE (or PGSSLROOTCERT), put it in \
                     ~/.postgresql/root.crt, or use sslrootcert=system",
                    info.shown,
                    if info.sslmode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
                ),
            });
        }
        (None, _) => Arc::new(Unchecked(provider.signature_verification_algorithms)),
        (Some(roots), mode) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| Error::Internal(anyhow::anyhow!("TLS verifier: {e}")))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(anyhow::anyhow!("TLS protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&info.cert, &info.key) {
        (Some(cert), Some(key)) => {
            let chain = certificates("sslcert", cert)?;
            let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
                rustls::pki_types::pem::Error::Io(io) => {
                    file_error("sslkey", key, format!("cannot read it: {io}"), true)
                }
                other => file_error("sslkey", key, format!("no usable private key in it: {other}"), false),
            })?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                file_error(
                    "sslkey",
                    key,
                    format!("it does not go with the certificate in {}: {e}", cert.display()),
                    false,
                )
            })?
        }
        (Some(cert), None) if info.ssl_files_given => {
            return Err(Error::Usage {
                message: format!(
                    "{}: sslcert {} needs its private key: give sslkey=FILE (or PGSSLKEY)",
                    info.shown,
                    cert.display()
                ),
            });
        }
        _ => builder.with_no_client_auth(),
    };
    let config = Arc::new(config);
    Ok(match info.sslmode {
        SslMode::Allow | SslMode::Prefer => Tls::Preferred(config),
        _ => Tls::Required(config),
    })
}

/// The server name rustls sends and, for `verify-full`, checks.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} cannot be checked against a TLS certificate"))
}

/// `sslmode=prefer`/`require` without a root certificate: encrypted, but whoever answers
/// is taken at its word (the handshake's signatures are still checked).
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate may be any.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

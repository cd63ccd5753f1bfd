//! Certificates for the TLS tests, made fresh by each test with rcgen: a CA, member
//! certificates (good, expired, for another name) and a client certificate, all as PEM files
//! in a scratch directory, plus an unrelated CA to trust by mistake.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use tempfile::TempDir;

use crate::harness::scratch;

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The names every good member certificate is valid for: loopback addresses (members may
/// listen on any of 127.0.0.1-127.0.0.9), `localhost`, and the names the DNS tests use.
pub const MEMBER_NAMES: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "127.0.0.2",
    "127.0.0.3",
    "127.0.0.4",
    "127.0.0.5",
    "127.0.0.6",
    "127.0.0.7",
    "127.0.0.8",
    "127.0.0.9",
    "etcd.flockrun.test",
    "etcd-0.flockrun.test",
    "etcd-1.flockrun.test",
    "etcd-2.flockrun.test",
];

pub struct Pki {
    pub dir: TempDir,
    /// The CA that signs everything below.
    pub ca: PathBuf,
    /// A CA that signs nothing here.
    pub other_ca: PathBuf,
    pub member: Pair,
    /// Valid only in 2020.
    pub expired_member: Pair,
    /// Valid only for `elsewhere.example`.
    pub misnamed_member: Pair,
    /// For flockrun and etcdctl (CN `root`).
    pub client: Pair,
    /// Signed by `other_ca`: a client certificate the cluster does not trust.
    pub stranger: Pair,
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    dir: &Path,
    file: &str,
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    common_name: &str,
    tweak: impl FnOnce(&mut CertificateParams),
) -> Pair {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // etcd uses its member certificate as a client too (for its own gateway), so both.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    tweak(&mut params);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let pair = Pair {
        cert: dir.join(format!("{file}.pem")),
        key: dir.join(format!("{file}-key.pem")),
    };
    fs::write(&pair.cert, cert.pem()).unwrap();
    fs::write(&pair.key, key.serialize_pem()).unwrap();
    pair
}

impl Pki {
    pub fn new() -> Pki {
        let dir = scratch();
        let d = dir.path();
        let (ca_pem, ca) = new_ca("flockrun test CA");
        let (other_pem, other) = new_ca("some other CA");
        let ca_path = d.join("ca.pem");
        let other_path = d.join("other-ca.pem");
        fs::write(&ca_path, ca_pem).unwrap();
        fs::write(&other_path, other_pem).unwrap();
        let member = leaf(d, "member", &ca, MEMBER_NAMES, "etcd member", |_| {});
        let expired_member = leaf(d, "expired", &ca, MEMBER_NAMES, "etcd member", |p| {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2020, 12, 31);
        });
        let misnamed_member = leaf(
            d,
            "misnamed",
            &ca,
            &["elsewhere.example"],
            "etcd member",
            |_| {},
        );
        let client = leaf(d, "client", &ca, &["client"], "root", |_| {});
        let stranger = leaf(d, "stranger", &other, &["client"], "root", |_| {});
        Pki {
            dir,
            ca: ca_path,
            other_ca: other_path,
            member,
            expired_member,
            misnamed_member,
            client,
            stranger,
        }
    }

    /// flockrun's and etcdctl's options for the good client certificate.
    pub fn client_args(&self) -> Vec<String> {
        vec![
            "--cacert".to_owned(),
            self.ca.display().to_string(),
            "--cert".to_owned(),
            self.client.cert.display().to_string(),
            "--key".to_owned(),
            self.client.key.display().to_string(),
        ]
    }
}

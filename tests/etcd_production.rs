//! The etcd kind as production clusters run: TLS with client certificates (`etcds://`),
//! authentication, etcdctl's `ETCDCTL_*` variables, and members named through DNS. Real
//! etcd members on loopback, certificates made per test (see `pki`), the real `etcdctl lock`
//! on the other side.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::etcd::{
    Cluster, DEFAULT_TIMINGS, EtcdctlHolder, Setup, holds_through_elections, report_elections,
};
use crate::harness::{FLOCKRUN, Holder, flockrun, scratch};
use crate::pki::Pki;

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A TLS cluster of `size` members that requires client certificates.
fn tls_cluster(pki: &Pki, size: usize) -> Cluster {
    Cluster::start_with(
        size,
        &Setup {
            tls: Some((pki, &pki.member)),
            ..Setup::default()
        },
    )
}

/// `flockrun exec TLS-OPTIONS ARGS... -- sh -c HOLD_SH`.
fn flockrun_holder(cluster: &Cluster, args: &[&str]) -> Holder {
    let tls = cluster.tls_args();
    let mut all = vec!["exec"];
    all.extend(tls.iter().map(String::as_str));
    all.extend(args);
    Holder::flockrun(&all)
}

/// `flockrun try` with the cluster's TLS options and `extra`, on `lock`, running `echo ran`.
fn try_once(cluster: &Cluster, extra: &[&str], lock: &str) -> Output {
    flockrun()
        .arg("try")
        .args(cluster.tls_args())
        .args(extra)
        .args([lock, "--", "echo", "ran"])
        .output()
        .unwrap()
}

#[test]
fn over_mutual_tls_flockrun_and_etcdctl_exclude_each_other_both_ways() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki, 1);
    let lock = cluster.lock("tls-job");
    assert!(lock.starts_with("etcds://"), "{lock}");

    // flockrun holds; etcdctl lock over TLS queues behind it and gets in once it is done.
    let held = flockrun_holder(&cluster, &[&lock]);
    let out = try_once(&cluster, &[], &lock);
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("held by pid"),
        "{}",
        stderr_of(&out)
    );
    let mut etcdctl = cluster.etcdctl();
    etcdctl.args(["lock", "tls-job", "echo", "etcdctl ran"]);
    let waiting = etcdctl
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both keys in the queue, seen through status over TLS.
    let queue = cluster.wait_for_queue("tls-job", 2);
    assert!(queue[0]["pid"].as_i64().is_some(), "{queue:?}");
    held.release();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("etcdctl ran"));

    // etcdctl holds over TLS; flockrun waits for it and gets in once it is done.
    let etcdctl = EtcdctlHolder::start(&cluster, "tls-job");
    let out = try_once(&cluster, &[], &lock);
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    let mut waiter = std::process::Command::new(FLOCKRUN)
        .arg("exec")
        .args(cluster.tls_args())
        .args(["-w", "30", &lock, "--", "echo", "flockrun ran"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    cluster.wait_for_queue("tls-job", 2);
    etcdctl.release();
    let status = crate::harness::wait_with_deadline(&mut waiter);
    assert!(status.success());
    let mut said = String::new();
    std::io::Read::read_to_string(waiter.stdout.as_mut().unwrap(), &mut said).unwrap();
    assert_eq!(said, "flockrun ran\n");
}

#[test]
fn a_three_member_tls_cluster_keeps_serving_with_a_member_gone() {
    let pki = Pki::new();
    let mut cluster = tls_cluster(&pki, 3);
    let lock = cluster.lock("tls-three");
    cluster.stop_member(0);
    let held = flockrun_holder(&cluster, &["--ttl", "3", &lock]);
    let queue = cluster.queue("tls-three");
    assert_eq!(queue.len(), 1, "{queue:?}");
    let out = try_once(&cluster, &[], &lock);
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    held.release();
    let out = try_once(&cluster, &[], &lock);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
}

/// Runs `try` with `args` before LOCK and checks the status, the message and that it came
/// back promptly: a TLS problem is never a hang (etcdctl lock hangs on most of these).
fn refused(args: &[String], lock: &str, status: i32, want: &str) {
    let started = Instant::now();
    let out = flockrun()
        .arg("try")
        .args(["--ttl", "5"])
        .args(args)
        .args([lock, "--", "echo", "ran"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(status), "{args:?} {lock}: {stderr}");
    assert!(
        stderr.contains(want),
        "{args:?} {lock}: wanted {want:?} in {stderr}"
    );
    assert!(out.stdout.is_empty(), "COMMAND ran: {args:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{args:?}: took {:?}",
        started.elapsed()
    );
}

fn args_of(list: &[&std::path::Path], names: &[&str]) -> Vec<String> {
    names
        .iter()
        .zip(list)
        .flat_map(|(n, p)| [(*n).to_owned(), p.display().to_string()])
        .collect()
}

#[test]
fn tls_problems_fail_promptly_with_a_message_that_says_what_to_check() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki, 1);
    let lock = cluster.lock("tls-problems");
    let good = cluster.tls_args();
    let client = [pki.client.cert.as_path(), pki.client.key.as_path()];
    let names = ["--cacert", "--cert", "--key"];
    // A CA that did not sign the member.
    let wrong_ca = args_of(&[&pki.other_ca, client[0], client[1]], &names);
    refused(&wrong_ca, &lock, 76, "not signed by a CA flockrun trusts");
    // No client certificate, and one the cluster does not trust: the member hangs up.
    refused(
        &args_of(&[&pki.ca], &names),
        &lock,
        76,
        "requires a client certificate",
    );
    let stranger = args_of(&[&pki.ca, &pki.stranger.cert, &pki.stranger.key], &names);
    refused(&stranger, &lock, 76, "rejected the client certificate");
    // The member is fine, but LOCK says plain HTTP.
    let plain = lock.replacen("etcds://", "etcd://", 1);
    refused(
        &[],
        &plain,
        76,
        "it seems to serve TLS on this port (write LOCK as etcds://",
    );
    // Files that cannot be used.
    let missing = vec!["--cacert".to_owned(), "/nonexistent/ca.pem".to_owned()];
    refused(
        &missing,
        &lock,
        66,
        "--cacert /nonexistent/ca.pem: cannot read it",
    );
    let not_pem = vec!["--cacert".to_owned(), pki.dir.path().display().to_string()];
    refused(&not_pem, &lock, 66, "cannot read it");
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = args_of(&[&garbage], &names);
    refused(&garbage, &lock, 65, "holds no PEM certificate");
    refused(&good[..4], &lock, 64, "--cert needs --key");
    // The options name a plain-HTTP cluster, or a lock file.
    refused(&good, "etcd://127.0.0.1:1/x", 64, "write LOCK as etcds://");
    let file = scratch();
    let file = file.path().join("l").display().to_string();
    refused(&good, &file, 64, "apply to etcd:// and redis:// locks");
}

#[test]
fn member_certificates_that_are_expired_or_for_another_name_are_refused() {
    let pki = Pki::new();
    for (member, want) in [
        (&pki.expired_member, "its certificate has expired"),
        (&pki.misnamed_member, "not valid for \"127.0.0.1\""),
    ] {
        let cluster = Cluster::start_with(
            1,
            &Setup {
                tls: Some((&pki, member)),
                ..Setup::default()
            },
        );
        refused(&cluster.tls_args(), &cluster.lock("x"), 76, want);
    }
}

#[test]
fn a_plain_member_behind_an_etcds_lock_is_named_as_such() {
    let pki = Pki::new();
    let plain = Cluster::start(1);
    let lock = plain.lock("x").replacen("etcd://", "etcds://", 1);
    refused(
        &pki.client_args(),
        &lock,
        76,
        "it seems to serve plain HTTP on this port",
    );
}

/// A single-member cluster with authentication on and tokens that expire after `token_ttl`
/// seconds without use: users `root` and `app` (allowed to read and write under `auth-`),
/// and `nobody` (allowed nothing).
fn auth_cluster(token_ttl: u32) -> Cluster {
    let ttl = token_ttl.to_string();
    let extra = ["--auth-token", "simple", "--auth-token-ttl", &ttl];
    let cluster = Cluster::start_with(
        1,
        &Setup {
            extra: &extra,
            ..Setup::default()
        },
    );
    for args in [
        &["user", "add", "root:root-secret"][..],
        &["user", "add", "app:app-secret"],
        &["user", "add", "nobody:nobody-secret"],
        &["role", "add", "locker"],
        &[
            "role",
            "grant-permission",
            "locker",
            "--prefix=true",
            "readwrite",
            "auth-",
        ],
        &["user", "grant-role", "app", "locker"],
        &["auth", "enable"],
    ] {
        let out = cluster.etcdctl().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            stderr_of(&out)
        );
    }
    cluster
}

#[test]
fn with_authentication_a_user_locks_and_etcdctl_users_are_excluded_both_ways() {
    let cluster = auth_cluster(300);
    let lock = cluster.lock("auth-job");
    let dir = scratch();
    let password = dir.path().join("password");
    std::fs::write(&password, "app-secret\n").unwrap();
    let password = password.display().to_string();
    let app = ["--user", "app", "--password-file", &password];

    // Without a user, with a wrong password, without any password, without permission.
    refused(
        &[],
        &lock,
        76,
        "this cluster requires authentication: give --user",
    );
    let wrong = ["--user".to_owned(), "app:guess".to_owned()];
    refused(
        &wrong,
        &lock,
        76,
        "etcd does not know the user \"app\" with that password",
    );
    let bare = ["--user".to_owned(), "app".to_owned()];
    refused(&bare, &lock, 64, "no password for the etcd user \"app\"");
    let nobody = ["--user".to_owned(), "nobody:nobody-secret".to_owned()];
    refused(&nobody, &lock, 76, "permission denied");
    let stray = ["--password-file".to_owned(), password.clone()];
    refused(&stray, &lock, 64, "needs --user");

    // flockrun holds as app (password from a file); etcdctl as app waits, then gets in.
    let mut args = vec!["exec"];
    args.extend(app);
    args.push(&lock);
    let held = Holder::flockrun(&args);
    let queue = cluster.wait_for_queue_as("auth-job", 1, &app);
    assert!(queue[0]["pid"].as_i64().is_some(), "{queue:?}");
    let waiting = cluster
        .etcdctl()
        .args([
            "--user",
            "app:app-secret",
            "lock",
            "auth-job",
            "echo",
            "etcdctl ran",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    cluster.wait_for_queue_as("auth-job", 2, &app);
    held.release();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    // etcdctl holds as app; flockrun, as app through etcdctl's variables, finds it busy.
    let etcdctl = EtcdctlHolder::start_as(&cluster, "auth-job", &["--user", "app:app-secret"]);
    let out = flockrun()
        .env("ETCDCTL_USER", "app")
        .env("ETCDCTL_PASSWORD", "app-secret")
        .args(["try", &lock, "--", "echo", "ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    etcdctl.release();
    // NAME:PASSWORD in --user, as etcdctl takes it.
    let out = flockrun()
        .args([
            "try",
            "--user",
            "app:app-secret",
            &lock,
            "--",
            "echo",
            "ran",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
}

/// A simple token expires after its TTL without use; lease renewals need none, so a hold
/// (or a wait) longer than the token's TTL meets an expired token at its next key check,
/// watch or release. Each must authenticate again, not lose the lock.
#[test]
fn an_expired_token_is_replaced_during_a_long_hold_and_a_long_wait() {
    let cluster = auth_cluster(1);
    let lock = cluster.lock("auth-long");
    let user = ["--user", "app:app-secret"];
    // A hold of 4 s with renewals every 2 s (TTL 6): the token expires between them.
    let out = flockrun()
        .args(["exec", "--ttl", "6"])
        .args(user)
        .args([&lock, "--", "sleep", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stderr_of(&out).is_empty(), "{}", stderr_of(&out));
    // Released by revoking the lease (with a new token), not left to expire.
    assert!(cluster.queue_as("auth-long", &user).is_empty());

    // A wait of 3 s behind etcdctl: the watch and the look at the queue after it fire with
    // a token that has expired meanwhile.
    let etcdctl = EtcdctlHolder::start_as(&cluster, "auth-long", &user);
    let mut waiter = std::process::Command::new(FLOCKRUN)
        .args(["exec", "-w", "30"])
        .args(user)
        .args([&lock, "--", "echo", "flockrun ran"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    cluster.wait_for_queue_as("auth-long", 2, &user);
    // The scenario is a wait longer than the token's TTL: 3 s of it, with the waiter queued
    // (seen above). Nothing is awaited here; the time passing is what is under test.
    let sleep = std::process::Command::new("sleep")
        .arg("3")
        .status()
        .unwrap();
    assert!(sleep.success());
    etcdctl.release();
    let status = crate::harness::wait_with_deadline(&mut waiter);
    assert!(status.success());
}

#[test]
fn etcdctl_variables_give_members_tls_files_and_options_win_over_them() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki, 1);
    let endpoints = cluster.endpoints();
    let https = format!("https://{endpoints}");
    let with_env = |lock: &str, endpoints: &str, extra: &[String]| {
        flockrun()
            .env("ETCDCTL_ENDPOINTS", endpoints)
            .env("ETCDCTL_CACERT", &pki.ca)
            .env("ETCDCTL_CERT", &pki.client.cert)
            .env("ETCDCTL_KEY", &pki.client.key)
            .arg("try")
            .args(extra)
            .args([lock, "--", "echo", "ran"])
            .output()
            .unwrap()
    };
    // Members and TLS files from the environment: https:// members, bare members (TLS
    // because files are given, as etcdctl), and etcds:// with bare members.
    for (lock, listed) in [
        ("etcd:///env-job", https.as_str()),
        ("etcd:///env-job", endpoints.as_str()),
        ("etcds:///env-job", endpoints.as_str()),
    ] {
        let out = with_env(lock, listed, &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{lock} {listed}: {}",
            stderr_of(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    }
    // status too, busy and free.
    let held = flockrun_holder(&cluster, &[&cluster.lock("env-job")]);
    let status = flockrun()
        .env("ETCDCTL_ENDPOINTS", &https)
        .env("ETCDCTL_CACERT", &pki.ca)
        .env("ETCDCTL_CERT", &pki.client.cert)
        .env("ETCDCTL_KEY", &pki.client.key)
        .args(["status", "etcd:///env-job"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1), "{}", stderr_of(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains("held"));
    let out = with_env("etcd:///env-job", &https, &[]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    held.release();
    // An option beats its variable: the wrong CA in ETCDCTL_CACERT, the right one given.
    let out = flockrun()
        .env("ETCDCTL_ENDPOINTS", &https)
        .env("ETCDCTL_CACERT", &pki.other_ca)
        .env("ETCDCTL_CERT", &pki.client.cert)
        .env("ETCDCTL_KEY", &pki.client.key)
        .args(["try", "--cacert"])
        .arg(&pki.ca)
        .args(["etcd:///env-job", "--", "echo", "ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let out = with_env(
        "etcd:///env-job",
        &https,
        &["--cacert".to_owned(), pki.other_ca.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(76), "{}", stderr_of(&out));
    // Members in LOCK win over ETCDCTL_ENDPOINTS.
    let out = with_env(&cluster.lock("env-job"), "https://127.0.0.1:1", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // No members anywhere; members of both kinds.
    let out = flockrun()
        .env_remove("ETCDCTL_ENDPOINTS")
        .args(["try", "etcd:///env-job", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("ETCDCTL_ENDPOINTS is not set"));
    let mixed = format!("{https},http://127.0.0.1:1");
    let out = with_env("etcd:///env-job", &mixed, &[]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("mix http and https"));
}

/// Installs Debian's dnsmasq-base when dnsmasq is missing (root only; `.ci/run` does it up
/// front).
fn ensure_dnsmasq() {
    crate::harness::install_missing(&[("dnsmasq", "dnsmasq-base")]);
}

/// A DNS server on 127.0.0.77:53 answering for the given names only.
struct Dns {
    child: std::process::Child,
}

impl Dns {
    fn start(records: &[(&str, &str)]) -> Dns {
        ensure_dnsmasq();
        let mut cmd = std::process::Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.77",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--log-facility=-",
        ]);
        for (name, address) in records {
            cmd.arg(format!("--host-record={name},{address}"));
        }
        let child = cmd
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        Dns { child }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// systemd's `myhostname` NSS module (from Debian's libnss-myhostname, unpacked, not
/// installed): the kind of module a static binary must never load. Downloaded once into
/// `target/`.
fn myhostname_module_dir() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nss-modules");
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    if lib.join("libnss_myhostname.so.2").exists() {
        return lib;
    }
    std::fs::create_dir_all(&root).unwrap();
    // Under the apt lock: a first `apt-get update` may be needed, and must not run beside
    // another test's install.
    let status = std::process::Command::new("flock")
        .arg(crate::harness::APT_LOCK)
        .args(["sh", "-c"])
        .arg(
            "[ -e usr/lib/x86_64-linux-gnu/libnss_myhostname.so.2 ] || { \
             { apt-get download libnss-myhostname >/dev/null 2>&1 || \
               { apt-get update -q && apt-get download libnss-myhostname >/dev/null; }; } && \
             dpkg-deb -x libnss-myhostname_*.deb . && rm -f libnss-myhostname_*.deb; }",
        )
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cannot fetch libnss-myhostname with apt-get download"
    );
    lib
}

/// `program args...` in a mount namespace of its own where /etc/resolv.conf points at the
/// test's DNS server, /etc/hosts is `hosts`, and /etc/nsswitch.conf lists modules beside
/// files and dns, as systemd distributions do, with `myhostname` really there to load.
fn in_namespace(
    dir: &std::path::Path,
    hosts: &str,
    program: &str,
    args: &[String],
) -> std::process::Command {
    let resolv = dir.join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.77\noptions timeout:1 attempts:2\n",
    )
    .unwrap();
    let hosts_file = dir.join("hosts");
    std::fs::write(&hosts_file, hosts).unwrap();
    let nsswitch = dir.join("nsswitch.conf");
    std::fs::write(
        &nsswitch,
        "passwd: files systemd\ngroup: files systemd\nhosts: files myhostname dns\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "sh", "-c"])
        .arg(
            "mount --bind \"$1\" /etc/resolv.conf && mount --bind \"$2\" /etc/hosts && \
             mount --bind \"$3\" /etc/nsswitch.conf && \
             mount -t overlay overlay -o \"lowerdir=$4:/usr/lib/x86_64-linux-gnu\" \
             /usr/lib/x86_64-linux-gnu && shift 4 && exec \"$@\"",
        )
        .arg("sh")
        .arg(&resolv)
        .arg(&hosts_file)
        .arg(&nsswitch)
        .arg(myhostname_module_dir())
        .arg(program)
        .args(args);
    cmd
}

/// Members named through DNS and /etc/hosts, as production clusters name them, from the
/// statically linked binary: a name with an address per member (one of them down), and a
/// name only /etc/hosts knows. nsswitch.conf lists `myhostname` too, which the static
/// binary must skip (loading it crashed flockrun, status 139, before `nss::confine`).
#[test]
fn members_named_in_dns_or_hosts_resolve_and_a_name_with_several_addresses_survives_one_down() {
    if !crate::harness::is_root() {
        eprintln!("NOTE: mount namespaces need root; nothing checked");
        return;
    }
    let pki = Pki::new();
    let addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let mut cluster = Cluster::start_with(
        3,
        &Setup {
            tls: Some((&pki, &pki.member)),
            addresses: Some(&addresses),
            ..Setup::default()
        },
    );
    let port = cluster.client_port();
    let records: Vec<(&str, &str)> = addresses
        .iter()
        .map(|a| ("etcd.flockrun.test", *a))
        .chain([("etcd-0.flockrun.test", "127.0.0.2")])
        .collect();
    let _dns = Dns::start(&records);
    let dir = scratch();
    let hosts = "127.0.0.3 etcd-1.flockrun.test\n";
    crate::harness::wait_until(
        "dnsmasq to answer",
        Instant::now() + crate::harness::PATIENCE,
        || {
            let out = in_namespace(
                dir.path(),
                hosts,
                "getent",
                &["hosts".to_owned(), "etcd-0.flockrun.test".to_owned()],
            )
            .output()
            .unwrap();
            out.status.success().then_some(())
        },
    );
    let run = |lock: String, ttl: &str| {
        let mut args = vec!["try".to_owned(), "--ttl".to_owned(), ttl.to_owned()];
        args.extend(pki.client_args());
        args.extend([lock, "--".to_owned(), "echo".to_owned(), "ran".to_owned()]);
        in_namespace(dir.path(), hosts, FLOCKRUN, &args)
            .output()
            .unwrap()
    };
    for host in [
        "etcd.flockrun.test",
        "etcd-0.flockrun.test",
        "etcd-1.flockrun.test",
    ] {
        let out = run(format!("etcds://{host}:{port}/dns-job"), "10");
        assert_eq!(out.status.code(), Some(0), "{host}: {}", stderr_of(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    }
    // The name's first address stops answering: the next one is asked (while the other two
    // elect a leader, if it was the leader: the TTL bounds that wait).
    cluster.stop_member(0);
    let out = run(format!("etcds://etcd.flockrun.test:{port}/dns-job"), "10");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // A name only myhostname knows (localhost, absent from this /etc/hosts): not found,
    // rather than a crash in the module's code.
    let out = run(format!("etcds://localhost:{port}/dns-job"), "2");
    assert_eq!(out.status.code(), Some(69), "{}", stderr_of(&out));
    // A name nobody knows: unreachable, saying so, within the TTL (2 s).
    let out = run(format!("etcds://missing.flockrun.test:{port}/dns-job"), "2");
    assert_eq!(out.status.code(), Some(69), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("cannot resolve the host name"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn leader_elections_over_tls_decided_in_one_round_end_no_hold_at_ttl_5() {
    // As the 20 elections in etcd.rs, over TLS with client certificates, where every
    // request a renewal sends through an election opens a connection with a handshake.
    let pki = Pki::new();
    let mut cluster = Cluster::start_with(
        3,
        &Setup {
            tls: Some((&pki, &pki.member)),
            extra: DEFAULT_TIMINGS,
            ..Setup::default()
        },
    );
    let elections = holds_through_elections(&mut cluster, 6, &[5, 3]);
    report_elections("over TLS, through 6 leader elections", &[5, 3], &elections);
}

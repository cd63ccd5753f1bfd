//! The etcd kind against a real etcd (Debian's etcd-server): a single member, and a
//! 3-member cluster on loopback ports, each started by the test and killed when it ends.
//! Interop runs the real `etcdctl lock`. Readiness comes from the cluster itself (its
//! /health answer, the lock's queue of keys), never from sleeping.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use tempfile::TempDir;

use crate::harness::{
    FLOCKRUN, HOLD_SH, Holder, PATIENCE, assert_no_overlap, child_of, flockrun, occupy_helper,
    read_load_log, scratch, signal, spawn_flockrun, wait_until, wait_until_exited,
    wait_with_deadline,
};
use crate::pki::{Pair, Pki};

/// Installs etcd-server and etcd-client from Debian when missing (root only); `.ci/run` does
/// the same up front. Fails loudly otherwise.
fn ensure_etcd() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        crate::harness::install_missing(&[("etcd", "etcd-server"), ("etcdctl", "etcd-client")]);
    });
}

struct Member {
    name: String,
    /// The loopback address the member serves clients (and peers) on.
    address: String,
    client: u16,
    peer: u16,
    process: Option<Child>,
    /// How it was started, to start it again after a kill.
    command: Vec<OsString>,
}

/// How a test cluster is set up beyond its size.
#[derive(Default, Clone)]
pub(crate) struct Setup<'a> {
    /// Serve clients over TLS with this member certificate (signed by the `Pki`'s CA or
    /// not), and require client certificates signed by the `Pki`'s CA.
    pub tls: Option<(&'a Pki, &'a Pair)>,
    /// Each member's loopback address, all with one client port (for a DNS name that lists
    /// them all); by default every member is on 127.0.0.1 with a port of its own.
    pub addresses: Option<&'a [&'a str]>,
    /// More etcd options for every member.
    pub extra: &'a [&'a str],
}

/// What a TLS client of the cluster needs.
#[derive(Clone)]
pub(crate) struct TlsClient {
    pub ca: PathBuf,
    pub client: Pair,
}

/// A throw-away etcd cluster on loopback ports.
pub(crate) struct Cluster {
    members: Vec<Member>,
    dir: TempDir,
    pub(crate) tls: Option<TlsClient>,
}

fn free_ports(n: usize) -> Vec<u16> {
    // All bound at once so they differ; released just before etcd binds them.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One client port free on every address, and a peer port for each.
fn ports_on(addresses: &[&str]) -> (u16, Vec<u16>) {
    for _ in 0..100 {
        let first = TcpListener::bind((addresses[0], 0)).expect("a free port");
        let port = first.local_addr().unwrap().port();
        let rest: Vec<_> = addresses[1..]
            .iter()
            .map_while(|a| TcpListener::bind((*a, port)).ok())
            .collect();
        if rest.len() + 1 == addresses.len() {
            let peers: Vec<TcpListener> = addresses
                .iter()
                .map(|a| TcpListener::bind((*a, 0)).expect("a free port"))
                .collect();
            return (
                port,
                peers
                    .iter()
                    .map(|l| l.local_addr().unwrap().port())
                    .collect(),
            );
        }
    }
    panic!("no port free on all of {addresses:?}");
}

/// Starts an etcd member with `args`, its log appended to `log`.
fn spawn_member(args: &[OsString], log: &Path) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new("etcd")
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start etcd")
}

impl Cluster {
    pub(crate) fn start(size: usize) -> Cluster {
        Cluster::start_with(size, &Setup::default())
    }

    pub(crate) fn start_with(size: usize, setup: &Setup<'_>) -> Cluster {
        ensure_etcd();
        let dir = scratch();
        let mut members: Vec<Member> = match setup.addresses {
            None => {
                let ports = free_ports(2 * size);
                (0..size)
                    .map(|i| Member {
                        name: format!("m{i}"),
                        address: "127.0.0.1".to_owned(),
                        client: ports[2 * i],
                        peer: ports[2 * i + 1],
                        process: None,
                        command: Vec::new(),
                    })
                    .collect()
            }
            Some(addresses) => {
                assert_eq!(addresses.len(), size);
                let (client, peers) = ports_on(addresses);
                (0..size)
                    .map(|i| Member {
                        name: format!("m{i}"),
                        address: addresses[i].to_owned(),
                        client,
                        peer: peers[i],
                        process: None,
                        command: Vec::new(),
                    })
                    .collect()
            }
        };
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}=http://{}:{}", m.name, m.address, m.peer))
            .collect();
        let initial = initial.join(",");
        let scheme = if setup.tls.is_some() { "https" } else { "http" };
        for m in &mut members {
            let client = format!("{scheme}://{}:{}", m.address, m.client);
            let peer = format!("http://{}:{}", m.address, m.peer);
            let mut tls_args: Vec<String> = Vec::new();
            if let Some((pki, member)) = setup.tls {
                tls_args = vec![
                    "--cert-file".into(),
                    member.cert.display().to_string(),
                    "--key-file".into(),
                    member.key.display().to_string(),
                    "--client-cert-auth".into(),
                    "--trusted-ca-file".into(),
                    pki.ca.display().to_string(),
                ];
            }
            let mut command = Command::new("etcd");
            command
                .arg("--name")
                .arg(&m.name)
                .arg("--data-dir")
                .arg(dir.path().join(&m.name))
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                ])
                .args([
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                ])
                // Faster elections than the defaults (100 ms / 1 s), so a killed leader is
                // replaced quickly; still far above loopback latency.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                // Authentication tests create users: the cheapest bcrypt etcd accepts.
                .args(["--bcrypt-cost", "4"])
                .args(&tls_args)
                .args(setup.extra);
            m.command = command.get_args().map(OsStr::to_owned).collect();
            m.process = Some(spawn_member(
                &m.command,
                &dir.path().join(format!("{}.log", m.name)),
            ));
        }
        let tls = setup.tls.map(|(pki, _)| TlsClient {
            ca: pki.ca.clone(),
            client: pki.client.clone(),
        });
        let cluster = Cluster { members, dir, tls };
        for i in 0..size {
            wait_until(
                "an etcd member to report itself healthy",
                Instant::now() + PATIENCE,
                || cluster.healthy(i).then_some(()),
            );
        }
        cluster
    }

    fn healthy(&self, i: usize) -> bool {
        let Some(tls) = &self.tls else {
            return http(self.members[i].client, "GET", "/health", "")
                .is_some_and(|v| v["health"] == "true");
        };
        // Any certificate the member serves, good or deliberately broken: the member is up
        // when it answers at all.
        let member = &self.members[i];
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &format!("https://{}:{}", member.address, member.client),
            ])
            .args(["--insecure-skip-tls-verify", "--dial-timeout", "1s"])
            .arg("--cert")
            .arg(&tls.client.cert)
            .arg("--key")
            .arg(&tls.client.key)
            .args(["endpoint", "health"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub(crate) fn endpoints_in(&self, order: &[usize]) -> String {
        let list: Vec<String> = order
            .iter()
            .map(|&i| format!("{}:{}", self.members[i].address, self.members[i].client))
            .collect();
        list.join(",")
    }

    pub(crate) fn endpoints(&self) -> String {
        self.endpoints_in(&(0..self.members.len()).collect::<Vec<_>>())
    }

    /// `etcd://` or `etcds://`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "etcds" } else { "etcd" }
    }

    pub(crate) fn lock(&self, name: &str) -> String {
        format!("{}://{}/{name}", self.scheme(), self.endpoints())
    }

    /// The client port every member shares (clusters started with `addresses`).
    pub(crate) fn client_port(&self) -> u16 {
        self.members[0].client
    }

    /// flockrun's (and etcdctl's) options for the cluster's TLS, if it has any.
    pub(crate) fn tls_args(&self) -> Vec<String> {
        self.tls.as_ref().map_or_else(Vec::new, |tls| {
            vec![
                "--cacert".to_owned(),
                tls.ca.display().to_string(),
                "--cert".to_owned(),
                tls.client.cert.display().to_string(),
                "--key".to_owned(),
                tls.client.key.display().to_string(),
            ]
        })
    }

    pub(crate) fn etcdctl(&self) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoints())
            .args(self.tls_args());
        cmd
    }

    /// Kills member `i` (it is not restarted).
    pub(crate) fn stop_member(&mut self, i: usize) {
        self.kill(i);
    }

    /// Starts member `i` again after a kill, on its own data, and waits until it is healthy.
    pub(crate) fn restart_member(&mut self, i: usize) {
        assert!(self.members[i].process.is_none(), "member {i} still runs");
        let log = self
            .dir
            .path()
            .join(format!("{}.log", self.members[i].name));
        self.members[i].process = Some(spawn_member(&self.members[i].command, &log));
        wait_until(
            "a restarted etcd member to report itself healthy",
            Instant::now() + PATIENCE,
            || self.healthy(i).then_some(()),
        );
    }

    /// The index of the current leader, once one is elected among the living members.
    pub(crate) fn leader(&self) -> usize {
        wait_until("an etcd leader", Instant::now() + PATIENCE, || {
            self.members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.process.is_some())
                .find_map(|(i, m)| self.is_leader(m).then_some(i))
        })
    }

    fn is_leader(&self, m: &Member) -> bool {
        if self.tls.is_none() {
            let Some(status) = http(m.client, "POST", "/v3/maintenance/status", "{}") else {
                return false;
            };
            let leader = status["leader"].as_str().unwrap_or("0");
            return leader != "0" && Some(leader) == status["header"]["member_id"].as_str();
        }
        // Over TLS, etcdctl asks (its JSON has numbers where the gateway has strings).
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &format!("https://{}:{}", m.address, m.client),
            ])
            .args(self.tls_args())
            .args(["--dial-timeout", "1s", "endpoint", "status", "-w", "json"])
            .output()
            .unwrap();
        let Ok(status) = serde_json::from_slice::<Value>(&out.stdout) else {
            return false;
        };
        let status = &status[0]["Status"];
        status["leader"].as_u64().is_some_and(|leader| {
            leader != 0 && Some(leader) == status["header"]["member_id"].as_u64()
        })
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The lock's queue as `flockrun status --json` reports it: holders then waiters.
    pub(crate) fn queue(&self, name: &str) -> Vec<Value> {
        self.queue_as(name, &[])
    }

    /// `queue` with more options for status (`--user ...`).
    pub(crate) fn queue_as(&self, name: &str, extra: &[&str]) -> Vec<Value> {
        let out = flockrun()
            .args(["status", "--json"])
            .args(self.tls_args())
            .args(extra)
            .arg(self.lock(name))
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "status printed no JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let lock = &doc["locks"][0];
        let mut all = lock["holders"].as_array().unwrap().clone();
        all.extend(lock["waiters"].as_array().unwrap().iter().cloned());
        all
    }

    pub(crate) fn wait_for_queue(&self, name: &str, len: usize) -> Vec<Value> {
        self.wait_for_queue_as(name, len, &[])
    }

    pub(crate) fn wait_for_queue_as(&self, name: &str, len: usize, extra: &[&str]) -> Vec<Value> {
        wait_until(
            &format!("{len} keys in the queue of {name}"),
            Instant::now() + PATIENCE,
            || {
                let q = self.queue_as(name, extra);
                (q.len() == len).then_some(q)
            },
        )
    }

    /// Waits until the lease's remaining TTL (in etcd's whole seconds) has risen twice, that
    /// is, two renewals went through; never asks member `skip`. Fails if the lease expires.
    /// Needs a TTL whose renewal period (a quarter) is over a second, or the rounded value
    /// need not move.
    fn wait_for_renewals(&self, lease_hex: &str, skip: usize, when: &str) {
        let mut renewals = 0;
        let mut last = self
            .lease_ttl_skipping(lease_hex, skip)
            .expect("the lease exists");
        wait_until(
            &format!("two lease renewals {when}"),
            Instant::now() + PATIENCE,
            || {
                let now = self
                    .lease_ttl_skipping(lease_hex, skip)
                    .expect("the lease exists");
                assert!(now > 0, "the lease expired");
                if now > last {
                    renewals += 1;
                }
                last = now;
                (renewals >= 2).then_some(())
            },
        );
    }

    /// Remaining TTL of a lease, by its hex id, not asking member `skip`.
    fn lease_ttl_skipping(&self, lease_hex: &str, skip: usize) -> Option<i64> {
        let id = i64::from_str_radix(lease_hex, 16).ok()?;
        self.members
            .iter()
            .enumerate()
            .filter(|(i, m)| m.process.is_some() && *i != skip)
            .map(|(_, m)| m)
            .find_map(|m| {
                let body = format!("{{\"ID\":\"{id}\"}}");
                let reply = http(m.client, "POST", "/v3/kv/lease/timetolive", &body)?;
                reply["TTL"].as_str()?.parse().ok()
            })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for m in &self.members {
                let log = fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- etcd {} log (last lines, newest first) ---", m.name);
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// One HTTP/1.0 request to a loopback port; the JSON body of a 200 reply.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n")?;
    // etcd answers in the request's HTTP version.
    (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"))
        .then(|| serde_json::from_str(body).ok())
        .flatten()
}

/// `etcdctl lock NAME` running a command that says `ready` and holds until released.
/// etcdctl gives its command no stdin, so the hold ends when a FIFO is closed instead.
pub(crate) struct EtcdctlHolder {
    holder: Holder,
    fifo: PathBuf,
    _dir: TempDir,
}

impl EtcdctlHolder {
    pub(crate) fn start(cluster: &Cluster, name: &str) -> EtcdctlHolder {
        EtcdctlHolder::start_as(cluster, name, &[])
    }

    /// `start` with more etcdctl options (`--user ...`).
    pub(crate) fn start_as(cluster: &Cluster, name: &str, extra: &[&str]) -> EtcdctlHolder {
        let dir = scratch();
        let fifo = dir.path().join("release");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let script = format!("echo ready; cat {} >/dev/null", fifo.display());
        let endpoints = cluster.endpoints();
        let tls = cluster.tls_args();
        let mut args = vec!["--endpoints", &endpoints];
        args.extend(tls.iter().map(String::as_str));
        args.extend(extra);
        args.extend(["lock", name, "--", "sh", "-c", &script]);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let holder = Holder::start("etcdctl", &args, "ready");
        EtcdctlHolder {
            holder,
            fifo,
            _dir: dir,
        }
    }

    /// Ends the command (EOF on the FIFO) and waits for etcdctl to exit.
    pub(crate) fn release(self) {
        drop(fs::OpenOptions::new().write(true).open(&self.fifo).unwrap());
        let _ = self.holder.release();
    }
}

fn holder(args: &[&str]) -> Holder {
    Holder::flockrun(args)
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn exec_runs_command_with_the_lock_and_fencing_environment() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("env");
    let out = flockrun()
        .args(["exec", &lock, "--", "sh", "-c"])
        .arg("echo $FLOCKRUN_KIND $FLOCKRUN_MODE $FLOCKRUN_LOCK; echo $FLOCKRUN_FENCE $ETCD_LOCK_REV $ETCD_LOCK_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("etcd exclusive {lock}"));
    let fields: Vec<&str> = lines[1].split(' ').collect();
    let fence: i64 = fields[0].parse().expect("a numeric fencing token");
    assert!(fence > 0);
    assert_eq!(fields[1], fields[0], "ETCD_LOCK_REV is the fencing token");
    assert!(fields[2].starts_with("env/"), "{}", fields[2]);
    // Released: the queue is empty again, at once (the lease was revoked, not left to expire).
    assert!(cluster.queue("env").is_empty());
}

#[test]
fn fencing_tokens_grow_across_holders_flockrun_and_etcdctl() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("fence");
    let mut tokens = Vec::new();
    for round in 0..4 {
        let out = if round == 2 {
            // etcdctl's ETCD_LOCK_REV is the same number: the key's create revision.
            cluster
                .etcdctl()
                .args(["lock", "fence", "--", "sh", "-c", "echo $ETCD_LOCK_REV"])
                .output()
                .unwrap()
        } else {
            Command::new(FLOCKRUN)
                .args(["exec", &lock, "--", "sh", "-c", "echo $FLOCKRUN_FENCE"])
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "{}", stderr_of(&out));
        let token: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        tokens.push(token);
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens must only grow: {tokens:?}"
    );
}

#[test]
fn try_and_timeout_report_busy_with_the_holder() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("busy");
    let held = holder(&["exec", &lock]);
    let out = flockrun()
        .args(["try", &lock, "--", "echo", "ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(out.stdout.is_empty());
    let message = stderr_of(&out);
    assert!(
        message.contains("is busy") && message.contains(&format!("pid {}", held.pid())),
        "{message}"
    );
    // -E and -q as for the other kinds.
    let out = flockrun()
        .args(["try", "-q", "-E", "0", &lock, "--", "echo", "ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty() && out.stdout.is_empty());
    let started = Instant::now();
    let out = flockrun()
        .args(["exec", "-w", "0.5", &lock, "--", "echo", "ran"])
        .output()
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("timed out after"),
        "{}",
        stderr_of(&out)
    );
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    assert!(waited < PATIENCE);
    // The attempts left nothing behind: only the holder is queued.
    assert_eq!(cluster.queue("busy").len(), 1);
    assert!(held.release().success());
}

#[test]
fn waiters_are_served_one_at_a_time_under_load_with_etcdctl() {
    let cluster = Cluster::start(1);
    let work = scratch();
    let helper = occupy_helper();
    let lock = cluster.lock("load");
    let holds = 12;
    let occupy = format!("{} {} x", helper.display(), work.path().display());
    let flockrun_loop =
        format!("for i in $(seq {holds}); do {FLOCKRUN} exec {lock} -- {occupy} || exit 1; done");
    let etcdctl_loop = format!(
        "for i in $(seq {holds}); do ETCDCTL_API=3 etcdctl --endpoints {} lock load -- {occupy} || exit 1; done",
        cluster.endpoints()
    );
    let mut loops = Loops(
        [
            &flockrun_loop,
            &flockrun_loop,
            &flockrun_loop,
            &etcdctl_loop,
        ]
        .iter()
        .map(|script| {
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .process_group(0)
                .spawn()
                .unwrap()
        })
        .collect(),
    );
    for child in &mut loops.0 {
        assert!(wait_with_deadline_long(child).success());
    }
    let (all, gone) = read_load_log(work.path());
    assert!(gone.is_empty());
    assert_eq!(all.len(), 4 * holds);
    assert_no_overlap(&all, &gone);
    let counter = fs::read_to_string(work.path().join("counter")).unwrap();
    assert_eq!(counter.trim(), (4 * holds).to_string());
}

/// Shell loops in process groups of their own; whatever still runs when the test ends
/// (a failure) is killed with its whole group, so no etcdctl or flockrun lingers.
struct Loops(Vec<Child>);

impl Drop for Loops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let group = nix::unistd::Pid::from_raw(-i32::try_from(child.id()).unwrap());
                let _ = nix::sys::signal::kill(group, Signal::SIGKILL);
                let _ = child.wait();
            }
        }
    }
}

fn wait_with_deadline_long(child: &mut Child) -> std::process::ExitStatus {
    // 48 holds, each a few process starts and etcd round trips with an fsync each.
    wait_until("load participants", Instant::now() + 6 * PATIENCE, || {
        child.try_wait().ok().flatten()
    })
}

#[test]
fn flockrun_waits_for_etcdctl_lock_and_etcdctl_for_flockrun() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("interop");
    // etcdctl holds; flockrun sees it busy, then waits its turn.
    let etcdctl_holds = EtcdctlHolder::start(&cluster, "interop");
    let out = flockrun()
        .args(["try", &lock, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(stderr_of(&out).contains("etcdctl"), "{}", stderr_of(&out));
    let mut waiter = spawn_flockrun(&["exec", &lock, "--", "echo", "flockrun ran"]);
    cluster.wait_for_queue("interop", 2);
    assert!(
        waiter.child.try_wait().unwrap().is_none(),
        "flockrun did not wait"
    );
    etcdctl_holds.release();
    assert!(wait_with_deadline(&mut waiter.child).success());
    assert_eq!(waiter.rest_of_output(), "flockrun ran\n");

    // flockrun holds; etcdctl waits its turn.
    let held = holder(&["exec", &lock]);
    let mut etcdctl_waits = cluster
        .etcdctl()
        .args(["lock", "interop", "--", "echo", "etcdctl ran"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cluster.wait_for_queue("interop", 2);
    assert!(
        etcdctl_waits.try_wait().unwrap().is_none(),
        "etcdctl did not wait"
    );
    assert!(held.release().success());
    assert!(wait_with_deadline(&mut etcdctl_waits).success());
    let mut text = String::new();
    etcdctl_waits
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "etcdctl ran\n");
}

#[test]
fn status_shows_holder_and_waiters_with_their_details() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("seen");
    let out = flockrun().args(["status", &lock]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "free: {}", stderr_of(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{lock}: free (etcd)\n")
    );
    let held = holder(&["exec", &lock]);
    let waiter = spawn_flockrun(&["exec", &lock, "--", "echo", "second"]);
    let queue = cluster.wait_for_queue("seen", 2);
    let host = crate::harness::py_identity(held.pid()).0;
    assert_eq!(queue[0]["pid"], held.pid());
    assert_eq!(queue[0]["host"], host.as_str());
    assert_eq!(queue[0]["command"], format!("sh -c {HOLD_SH}").as_str());
    assert_eq!(queue[1]["pid"], waiter.pid());
    assert_eq!(queue[1]["command"], "echo second");
    let (first, second) = (queue[0]["revision"].as_i64(), queue[1]["revision"].as_i64());
    assert!(first < second, "{queue:?}");
    for entry in &queue {
        assert!(entry["key"].as_str().unwrap().starts_with("seen/"));
        let since = entry["since"].as_str().unwrap();
        assert!(since.ends_with('Z') && since.len() == 20, "{since}");
    }
    let out = flockrun().args(["status", &lock]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("{lock}: held (exclusive, etcd)\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("holder   pid {} on {host}", held.pid())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "waiter   pid {} on {host} (echo second)",
            waiter.pid()
        )),
        "{text}"
    );
    assert!(held.release().success());
    drop(waiter);
}

#[test]
fn an_etcdctl_holder_is_shown_by_its_key() {
    let cluster = Cluster::start(1);
    let etcdctl_holds = EtcdctlHolder::start(&cluster, "bare");
    let queue = cluster.wait_for_queue("bare", 1);
    assert!(queue[0]["pid"].is_null() && queue[0]["command"].is_null());
    assert!(queue[0]["key"].as_str().unwrap().starts_with("bare/"));
    let out = flockrun()
        .args(["status", &cluster.lock("bare")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("written by etcdctl lock"));
    etcdctl_holds.release();
}

#[test]
fn a_killed_flockrun_takes_command_with_it_and_the_lock_frees_within_the_ttl() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("killed");
    let held = holder(&["exec", "--ttl", "2", &lock]);
    let command = child_of(held.pid());
    let killed_at = Instant::now();
    signal(held.pid(), Signal::SIGKILL);
    wait_until_exited(command, "COMMAND to die with flockrun");
    let out = flockrun()
        .args(["exec", "-w", "15", &lock, "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Free once the lease expired: within the TTL plus etcd's expiry check, not later.
    let freed = killed_at.elapsed();
    assert!(freed < Duration::from_secs(6), "freed after {freed:?}");
    drop(held);
}

#[test]
fn sigint_while_waiting_revokes_the_lease_at_once() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("interrupted");
    let held = holder(&["exec", &lock]);
    let mut waiter = spawn_flockrun(&["exec", &lock, "--", "echo", "never"]);
    cluster.wait_for_queue("interrupted", 2);
    signal(waiter.pid(), Signal::SIGINT);
    assert_eq!(wait_with_deadline(&mut waiter.child).code(), Some(130));
    // With a 10 s TTL, an abandoned key would linger; a revoked lease takes it at once.
    assert_eq!(cluster.queue("interrupted").len(), 1);
    assert!(waiter.rest_of_output().is_empty());
    assert!(held.release().success());
}

#[test]
fn losing_the_leader_of_three_does_not_disturb_a_holder() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    // The leader first in LOCK: flockrun talks to the member that will die.
    let mut order = vec![leader];
    order.extend((0..3).filter(|&i| i != leader));
    let lock = format!("etcd://{}/fleet", cluster.endpoints_in(&order));
    // TTL 6: renewed every 1.5 s, so the whole seconds etcd reports fall from 5 to 4 and
    // rise again at each renewal (with a TTL of 3, renewed every 0.75 s, they need not move).
    let mut held = holder(&["exec", "--ttl", "6", &lock]);
    let lease = {
        let queue = cluster.wait_for_queue("fleet", 1);
        queue[0]["lease"].as_str().unwrap().to_owned()
    };
    cluster.kill(leader);
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);
    // Renewals go on through the survivors.
    cluster.wait_for_renewals(&lease, usize::MAX, "after the leader died");
    assert!(
        held.child.try_wait().unwrap().is_none(),
        "the holder stopped"
    );
    let others = format!("etcd://{}/fleet", cluster.endpoints_in(&order[1..]));
    let out = flockrun()
        .args(["try", &others, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    assert!(held.release().success());
}

#[test]
fn a_hung_member_of_three_does_not_disturb_a_holder_with_a_short_ttl() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    // A follower that stops answering without closing anything (SIGSTOP), listed first.
    let hung = (0..3).find(|&i| i != leader).unwrap();
    let mut order = vec![hung];
    order.extend((0..3).filter(|&i| i != hung));
    let lock = format!("etcd://{}/hung", cluster.endpoints_in(&order));
    // TTL 4: a renewal every second with 2 s left to get it done; the hung member must
    // not take all of that.
    let mut held = holder(&["exec", "--ttl", "4", &lock]);
    let lease = cluster.wait_for_queue("hung", 1)[0]["lease"]
        .as_str()
        .unwrap()
        .to_owned();
    let pid = cluster.members[hung].process.as_ref().unwrap().id();
    signal(i32::try_from(pid).unwrap(), Signal::SIGSTOP);
    // Renewed every second, the whole seconds etcd reports may never visibly rise, so the
    // proof is survival: a lease of 4 s still there 9 s after the hang was renewed at least
    // once after the first 4 s, and flockrun, which stops COMMAND when 3 s pass without a
    // confirmed renewal, must still be holding.
    let hung_at = Instant::now();
    let outlived = Duration::from_secs(9);
    while hung_at.elapsed() < outlived {
        let ttl = cluster.lease_ttl_skipping(&lease, hung);
        assert!(
            ttl.is_some_and(|t| t > 0),
            "the lease expired {:?} after the member hung",
            hung_at.elapsed()
        );
        assert!(
            held.child.try_wait().unwrap().is_none(),
            "the holder stopped {:?} after the member hung",
            hung_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(i32::try_from(pid).unwrap(), Signal::SIGCONT);
    assert!(held.release().success());
}

/// Runs `script` (which prints `ready` first) under an etcd lock with TTL 2, kills every
/// member of `cluster`, and returns flockrun's status, COMMAND's output after `ready`,
/// flockrun's stderr and how long after the kill flockrun ended.
fn hold_while_the_cluster_dies(
    cluster: &mut Cluster,
    script: &str,
) -> (std::process::ExitStatus, String, String, Duration) {
    let lock = cluster.lock("doomed");
    let mut child = Command::new(FLOCKRUN)
        .args(["exec", "--ttl", "2", &lock, "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let stopped_at = Instant::now();
    for i in 0..cluster.members.len() {
        cluster.kill(i);
    }
    let status = wait_with_deadline(&mut child);
    let took = stopped_at.elapsed();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains(&format!("lost the lock {lock}")) && stderr.contains("COMMAND was stopped"),
        "{stderr}"
    );
    (status, rest, stderr, took)
}

#[test]
fn a_stopped_cluster_stops_command_and_exits_79() {
    let mut cluster = Cluster::start(1);
    let (status, rest, stderr, took) = hold_while_the_cluster_dies(
        &mut cluster,
        "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
    );
    assert_eq!(status.code(), Some(79), "{stderr}");
    assert_eq!(rest, "got TERM\n");
    // COMMAND is gone by the time the lease would have expired (TTL 2 s), give or take
    // one renewal interval.
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[test]
fn a_stopped_three_member_cluster_kills_a_command_that_ignores_sigterm() {
    let mut cluster = Cluster::start(3);
    let (status, _, stderr, took) = hold_while_the_cluster_dies(
        &mut cluster,
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    );
    // flockrun returns only once COMMAND has ended, and this COMMAND ignores SIGTERM: its
    // end is the SIGKILL, sent when the lease would expire (TTL 2 s after the last renewal).
    assert_eq!(status.code(), Some(79), "{stderr}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[test]
fn a_cluster_that_cannot_be_reached_is_69_and_bad_usage_is_64() {
    let port = free_ports(1)[0];
    let lock = format!("etcd://127.0.0.1:{port}/nobody");
    let out = flockrun()
        .args(["try", "--ttl", "1", &lock, "--", "echo", "ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(out.stdout.is_empty());
    let message = stderr_of(&out);
    assert!(
        message.contains(&format!("cannot reach etcd for {lock}")),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    let out = flockrun().args(["status", &lock]).output().unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr_of(&out));

    let dir = scratch();
    let file = dir.path().join("x.lock");
    let file = file.to_str().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["read", &lock, "--", "true"], "use exec or try"),
        (&["write", &lock, "--", "true"], "use exec or try"),
        (
            &["exec", "-s", &lock, "--", "true"],
            "-s/--shared does not apply",
        ),
        (
            &["exec", "--soft", &lock, "--", "true"],
            "--soft does not apply",
        ),
        (
            &["exec", "--mode", "600", &lock, "--", "true"],
            "--mode does not apply",
        ),
        (
            &["exec", "--ttl", "5", file, "--", "true"],
            "--ttl applies to etcd:// locks and to soft leases (--soft --ttl)",
        ),
        (
            &["exec", "etcd://127.0.0.1:2379", "--", "true"],
            "names no lock",
        ),
        (
            &["exec", "etcd://127.0.0.1:99999/x", "--", "true"],
            "bad port",
        ),
    ];
    for (args, want) in cases {
        let out = flockrun().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains(want),
            "{args:?}: {}",
            stderr_of(&out)
        );
        assert!(out.stdout.is_empty());
    }
    let out = flockrun()
        .args(["exec", "--ttl", "0", &lock, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    // A refused --ttl created no lock file.
    assert!(!PathBuf::from(file).exists());
}

#[test]
fn a_nested_flockrun_on_the_same_etcd_lock_runs_under_the_outer_one() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("nested");
    // The same lock with the members listed differently is the same lock.
    let again = format!(
        "etcd://{}/nested",
        cluster.endpoints().replace("127.0.0.1", "localhost")
    );
    let out = flockrun()
        .args([
            "exec", &lock, "--", FLOCKRUN, "exec", "-w", "5", &lock, "--",
        ])
        .args(["sh", "-c", "echo inner $FLOCKRUN_FENCE"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("inner ") && text.trim().len() > "inner ".len(),
        "{text}"
    );
    // Another lock name inside is an ordinary, independent lock.
    let out = flockrun()
        .args([
            "exec",
            &lock,
            "--",
            FLOCKRUN,
            "try",
            &cluster.lock("other"),
            "--",
            "echo",
            "other",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "other\n");
    // The same name on a differently spelled member list is not recognised (localhost may
    // be another machine's name for all flockrun knows): the inner one waits, and times out.
    let out = flockrun()
        .args([
            "exec", &lock, "--", FLOCKRUN, "exec", "-w", "0.3", &again, "--", "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
}

/// A listener on a free loopback port whose every connection gets `reply` (or nothing, if
/// `None`: it is read and left hanging) from a background thread.
fn impostor(reply: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            match reply {
                Some(reply) => {
                    let _ = stream.write_all(reply);
                }
                None => kept.push(stream),
            }
        }
    });
    port
}

#[test]
fn a_port_that_is_not_etcd_gets_a_clear_message() {
    let cases: [(Option<&'static [u8]>, i32, &str); 3] = [
        (Some(b"SSH-2.0-OpenSSH_9.2\r\n"), 76, "not an HTTP reply"),
        (
            Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 18\r\n\r\n404 page not found"),
            76,
            "not an etcd reply",
        ),
        (None, 69, "no answer in time"),
    ];
    for (reply, status, want) in cases {
        let lock = format!("etcd://127.0.0.1:{}/x", impostor(reply));
        let started = Instant::now();
        let out = flockrun()
            .args(["try", "--ttl", "1", &lock, "--", "echo", "ran"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(status), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains(want), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains(&lock), "{}", stderr_of(&out));
        assert!(out.stdout.is_empty());
        // --ttl 1 bounds the attempts; a hanging peer costs no more than one request timeout.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_non_utf8_etcd_lock_is_a_usage_error() {
    use std::os::unix::ffi::OsStrExt;
    let lock = std::ffi::OsStr::from_bytes(b"etcd://127.0.0.1:2379/\xff\xfe");
    let out = flockrun()
        .arg("exec")
        .arg(lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr_of(&out).contains("must be valid UTF-8"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn shell_command_and_verbose_work_as_for_the_other_kinds() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("shell");
    let out = flockrun()
        .args(["exec", "-v", &lock, "-c", "echo fence=$FLOCKRUN_FENCE"])
        .env("SHELL", "/bin/sh")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fence = stdout.trim().strip_prefix("fence=").expect("the shell ran");
    let message = stderr_of(&out);
    assert!(
        message.starts_with(&format!(
            "flockrun: locked {lock} (exclusive, etcd) after waiting "
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("fencing token {fence}")),
        "{message}"
    );
    assert!(message.contains("key shell/"), "{message}");
}

#[test]
fn a_lost_lease_stops_what_command_left_running_in_the_background_too() {
    let mut cluster = Cluster::start(1);
    // A daemon COMMAND double-forked (its parent gone, so it is no child of COMMAND), and a
    // background job that ignores SIGTERM: both are under flockrun, which stops them too.
    // The script says ready only once both have exec'd their sleep.
    let (status, _, stderr, _) = hold_while_the_cluster_dies(
        &mut cluster,
        "d=$( (sleep 1002 >/dev/null 2>&1 & echo $!) ); \
         (trap '' TERM; exec sleep 1003) >/dev/null 2>&1 & \
         until tr '\\0' ' ' </proc/$d/cmdline | grep -q 'sleep 1002'; do :; done; \
         until tr '\\0' ' ' </proc/$!/cmdline | grep -q 'sleep 1003'; do :; done; \
         echo ready; while :; do sleep 0.05; done",
    );
    assert_eq!(status.code(), Some(79), "{stderr}");
    for left in ["sleep 1002", "sleep 1003"] {
        // They ran (the script said ready only then) and were gone when flockrun exited.
        assert!(
            crate::harness::processes_running(left).is_empty(),
            "{left} outlived the lost lease"
        );
    }
}

/// A waiter next in line watches the whole queue, so the deletion of its own key (someone
/// ran `etcdctl del`, or its lease expired) ends its wait at once with 79, and COMMAND
/// never starts; the holder's key going away later is no win for it.
#[test]
fn a_waiter_whose_own_key_is_deleted_gives_up_at_once_with_79() {
    let cluster = Cluster::start(1);
    let lock = cluster.lock("orphan");
    let held = holder(&["exec", &lock]);
    let mut waiter = Command::new(FLOCKRUN)
        .args(["exec", &lock, "--", "echo", "ran"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let queue = cluster.wait_for_queue("orphan", 2);
    let key = queue[1]["key"].as_str().unwrap().to_owned();
    let out = cluster.etcdctl().args(["del", &key]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let deleted = Instant::now();
    let status = wait_with_deadline(&mut waiter);
    // At once, not at the next periodic look at the queue (RECHECK, 5 s).
    assert!(
        deleted.elapsed() < Duration::from_secs(3),
        "{:?}",
        deleted.elapsed()
    );
    let mut stderr = String::new();
    waiter
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut stdout = String::new();
    waiter
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(79), "{stderr}");
    assert!(
        stderr.contains("its key expired or was deleted while waiting"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "COMMAND ran: {stdout}");
    assert!(held.release().success());
}

/// etcd's own default timings (the harness's clusters elect faster).
pub(crate) const DEFAULT_TIMINGS: &[&str] =
    &["--heartbeat-interval", "100", "--election-timeout", "1000"];

/// One leader election with holds of each TTL running through it.
pub(crate) struct Election {
    /// From the kill until a surviving member reported itself leader.
    pub took: Duration,
    /// For each TTL, why its hold ended, if it did.
    pub ended: Vec<Option<String>>,
}

/// The longest an election decided in one round takes with etcd's default timings: a
/// follower campaigns after a randomized 1–2 s without heartbeats. Two followers that time
/// out in the same 100 ms tick split the vote, and the next round takes 1–2 s more.
pub(crate) const ONE_ROUND: Duration = Duration::from_secs(2);

/// `rounds` leader elections of `cluster` (killed at a random point of the holders'
/// renewal cycle, restarted after), each with a holder of every TTL in `ttls` running
/// through it until TTL + 2 s after the kill.
pub(crate) fn holds_through_elections(
    cluster: &mut Cluster,
    rounds: usize,
    ttls: &[u64],
) -> Vec<Election> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        | 1;
    eprintln!("election kill points seeded with {seed}");
    let mut state = u64::from(seed);
    let longest = ttls.iter().copied().max().unwrap();
    let mut elections = Vec::new();
    for round in 0..rounds {
        // One holder per TTL, each on a lock of its own.
        let holders: Vec<Holder> = ttls
            .iter()
            .map(|ttl| {
                let lock = cluster.lock(&format!("election-{ttl}-{round}"));
                let ttl = ttl.to_string();
                let mut args = vec!["exec".to_owned(), "--ttl".to_owned(), ttl];
                args.extend(cluster.tls_args());
                args.extend([lock, "--".into(), "sh".into(), "-c".into(), HOLD_SH.into()]);
                let mut holder =
                    spawn_flockrun(&args.iter().map(String::as_str).collect::<Vec<_>>());
                holder.expect_line("ready");
                holder
            })
            .collect();
        // A random point of the renewal cycle of every holder: up to a quarter of the
        // longest TTL after they began.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let offset = Duration::from_millis(state % (longest * 1000 / 4));
        let kill_at = Instant::now() + offset;
        wait_until("the chosen moment", kill_at + PATIENCE, || {
            (Instant::now() >= kill_at).then_some(())
        });
        let leader = cluster.leader();
        cluster.kill(leader);
        let killed = Instant::now();
        assert_ne!(cluster.leader(), leader);
        let took = killed.elapsed();
        // Every hold must last its TTL and 2 s more after the kill.
        let hold_until = killed + Duration::from_secs(longest + 2);
        wait_until("the holds to run on", hold_until + PATIENCE, || {
            (Instant::now() >= hold_until).then_some(())
        });
        let mut ended = Vec::new();
        for (i, holder) in holders.into_iter().enumerate() {
            let (status, stderr) = holder.release_with_stderr();
            if status.success() {
                ended.push(None);
                continue;
            }
            let reason = stderr.lines().last().unwrap_or_default().to_owned();
            eprintln!(
                "round {round}, TTL {}: leader killed {:.2}s into the hold, new leader {:.2}s \
                 later; the hold ended with {status}: {reason}",
                ttls[i],
                offset.as_secs_f64(),
                took.as_secs_f64()
            );
            ended.push(Some(reason));
        }
        cluster.restart_member(leader);
        elections.push(Election { took, ended });
    }
    elections
}

/// Says how the holds at `ttls` fared through `elections`, and checks the promise: no hold
/// at TTL 5 (`ttls[0]`) ends through an election decided in one round. One that needed a
/// second round may end it (README.md, etcd locks: the default TTL, 10 s, rides that out).
pub(crate) fn report_elections(what: &str, ttls: &[u64], elections: &[Election]) {
    let long = elections.iter().filter(|e| e.took > ONE_ROUND).count();
    for (i, ttl) in ttls.iter().enumerate() {
        let ended = elections.iter().filter(|e| e.ended[i].is_some()).count();
        eprintln!(
            "{what}: {ended} of {} holds at TTL {ttl} ended with 79 ({long} elections took \
             more than {} s)",
            elections.len(),
            ONE_ROUND.as_secs()
        );
    }
    let ended_in_one_round: Vec<&String> = elections
        .iter()
        .filter(|e| e.took <= ONE_ROUND)
        .filter_map(|e| e.ended[0].as_ref())
        .collect();
    assert!(
        ended_in_one_round.is_empty(),
        "holds at TTL {} ended through elections decided in one round: {ended_in_one_round:?}",
        ttls[0]
    );
}

#[test]
fn leader_elections_decided_in_one_round_end_no_hold_at_ttl_5() {
    let mut cluster = Cluster::start_with(
        3,
        &Setup {
            extra: DEFAULT_TIMINGS,
            ..Setup::default()
        },
    );
    // Holders at TTL 5 and 3 side by side, so each election tries both.
    let elections = holds_through_elections(&mut cluster, 20, &[5, 3]);
    report_elections("through 20 leader elections", &[5, 3], &elections);
}

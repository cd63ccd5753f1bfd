//! The PostgreSQL kind against real servers: each test starts its own cluster (Debian's
//! PostgreSQL, `initdb` as the `postgres` user in a scratch directory, on a free loopback
//! port and a private socket directory) and stops it, whatever happens. Peers are `psql`
//! running the advisory-lock idiom by hand and other flockruns.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{
    FLOCKRUN, Holder, PATIENCE, flockrun_out, install_missing, scratch, wait_until,
    wait_with_deadline,
};
use crate::pki::Pki;

/// The directory of the newest PostgreSQL's programs Debian installed.
fn pg_bin() -> PathBuf {
    install_missing(&[("psql", "postgresql")]);
    let newest = fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max();
    if newest.is_none() {
        install_missing(&[("initdb-not-on-path", "postgresql")]);
    }
    let newest = newest.or_else(|| {
        fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .max()
    });
    let dir = PathBuf::from(format!(
        "/usr/lib/postgresql/{}/bin",
        newest.expect("PostgreSQL installed under /usr/lib/postgresql")
    ));
    assert!(
        dir.join("initdb").is_file(),
        "no initdb in {}",
        dir.display()
    );
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `program args` as the `postgres` user, checking that it succeeds.
fn as_postgres(program: &Path, args: &[&str]) -> Output {
    as_postgres_in(None, program, args)
}

/// As `as_postgres`, inside network namespace `netns` if given.
fn as_postgres_in(netns: Option<&str>, program: &Path, args: &[&str]) -> Output {
    let mut cmd = match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, "setpriv"]);
            cmd
        }
        None => Command::new("setpriv"),
    };
    let out = cmd
        .args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn chown_postgres(path: &Path) {
    let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
}

/// How a test server is set up.
#[derive(Default)]
pub(crate) struct Setup {
    /// TLS with the test PKI's member certificate; the role `app` (password `secret`)
    /// logs in over TLS with SCRAM only, and `root` with its client certificate.
    pub tls: bool,
    /// With `tls`: the server's certificate is valid for `elsewhere.example` only.
    pub misnamed: bool,
    /// A streaming standby of this primary.
    pub standby_of: Option<u16>,
    /// The network namespace the server runs in (its socket directory is shared).
    pub netns: Option<String>,
}

/// A throw-away PostgreSQL cluster.
pub(crate) struct Pg {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    pub pki: Option<Pki>,
    netns: Option<String>,
}

impl Pg {
    pub fn start() -> Pg {
        Pg::start_with(&Setup::default())
    }

    pub fn start_with(setup: &Setup) -> Pg {
        let bin = pg_bin();
        let dir = scratch();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        fs::create_dir(&sock).unwrap();
        chown_postgres(&sock);
        let port = free_port();
        if let Some(primary) = setup.standby_of {
            fs::create_dir(&data).unwrap();
            chown_postgres(&data);
            fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
            as_postgres(
                &bin.join("pg_basebackup"),
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                    data.to_str().unwrap(),
                    "-R",
                    "-X",
                    "stream",
                ],
            );
        } else {
            fs::create_dir(&data).unwrap();
            chown_postgres(&data);
            as_postgres(
                &bin.join("initdb"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ],
            );
        }
        let mut conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 100\nwal_level = replica\nmax_wal_senders = 4\n\
             log_connections = on\nlog_disconnections = on\n",
            sock.display()
        );
        let pki = setup.tls.then(|| tls_files(setup, &data, &mut conf));
        if pki.is_some() {
            // `tls_files` wrote pg_hba.conf.
        } else if setup.standby_of.is_none() {
            fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhost all all 127.0.0.1/32 trust\n\
                 host replication all 127.0.0.1/32 trust\n",
            )
            .unwrap();
        }
        let conf_path = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf_path).unwrap_or_default();
        text.push_str(&conf);
        fs::write(&conf_path, text).unwrap();
        let pg = Pg {
            dir,
            bin,
            port,
            pki,
            netns: setup.netns.clone(),
        };
        pg.ctl("start");
        if setup.tls {
            pg.sql(
                "CREATE ROLE app LOGIN PASSWORD 'secret'; CREATE ROLE root LOGIN SUPERUSER; \
                 SET password_encryption = 'md5'; CREATE ROLE old LOGIN PASSWORD 'secret'",
            );
        }
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn ctl(&self, action: &str) {
        let log = self.dir.path().join("server.log");
        if !log.exists() {
            fs::write(&log, "").unwrap();
            chown_postgres(&log);
        }
        as_postgres_in(
            self.netns.as_deref(),
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-m",
                "fast",
                action,
            ],
        );
    }

    pub fn restart(&self) {
        self.ctl("restart");
    }

    /// Runs `sql` through psql over the socket as the superuser; its output, unaligned.
    pub fn sql(&self, sql: &str) -> String {
        let out = self.psql().args(["-c", sql]).output().unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A psql command over the socket as the superuser.
    pub fn psql(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-h")
        .arg(self.socket_dir())
        .args(["-p", &self.port.to_string()])
        .stdin(Stdio::null());
        cmd
    }

    /// LOCK for NAME over TCP as the superuser.
    pub fn lock(&self, name: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres/{name}",
            self.port
        )
    }

    /// The flockrun backends' pids, by their application name.
    pub fn flockrun_backends(&self) -> Vec<i32> {
        self.sql("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'flockrun:%'")
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }

    /// How many sessions hold the advisory lock `key_sql` (`hashtext('x')`, `42`).
    pub fn holders_of(&self, key_sql: &str) -> usize {
        self.sql(&format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND \
             objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = ({key_sql})::bigint"
        ))
        .parse()
        .unwrap()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

/// The TLS files of a `tls` server and its `pg_hba.conf`: SCRAM for `app`, md5 for `old`, a
/// client certificate for `root`, trust for the rest over TCP.
fn tls_files(setup: &Setup, data: &Path, conf: &mut String) -> Pki {
    let pki = Pki::new();
    let pair = if setup.misnamed {
        &pki.misnamed_member
    } else {
        &pki.member
    };
    for (from, name) in [(&pair.cert, "server.crt"), (&pair.key, "server.key")] {
        let to = data.join(name);
        fs::copy(from, &to).unwrap();
        chown_postgres(&to);
        fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let ca = data.join("ca.crt");
    fs::copy(&pki.ca, &ca).unwrap();
    chown_postgres(&ca);
    conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'\npassword_encryption = 'scram-sha-256'\n");
    fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all app 127.0.0.1/32 scram-sha-256\n\
         host all app 127.0.0.1/32 reject\n\
         hostssl all root 127.0.0.1/32 cert\n\
         hostssl all old 127.0.0.1/32 md5\n\
         host all all 127.0.0.1/32 trust\n\
         host replication all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    pki
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("setpriv")
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("--- PostgreSQL log (last lines, newest first) ---");
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// psql holding the lock by hand, as a shell script would, until released.
fn psql_holding(pg: &Pg, lock_sql: &str) -> Holder {
    let script = format!(
        "{} -c \"SELECT {lock_sql}\" -c \"\\echo ready\" -c \"\\! cat >/dev/null\"",
        shell_psql(pg)
    );
    Holder::start("sh", &["-c".as_ref(), script.as_ref()], "ready")
}

fn shell_psql(pg: &Pg) -> String {
    format!(
        "{} -X -q -At -U postgres -d postgres -h {} -p {}",
        pg.bin.join("psql").display(),
        pg.socket_dir().display(),
        pg.port
    )
}

#[test]
fn flockrun_and_psql_exclude_each_other_both_ways() {
    let pg = Pg::start();
    // psql holds hashtext('nightly') as scripts do; flockrun finds it busy and names it.
    let held = psql_holding(&pg, "pg_advisory_lock(hashtext('nightly'))");
    let out = flockrun_out(&["try", &pg.lock("nightly"), "--", "true"], &[]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("application psql"),
        "{}",
        text(&out.stderr)
    );
    drop(held);
    // flockrun holds; psql's try fails until flockrun lets go.
    let try_sql = "SELECT pg_try_advisory_lock(hashtext('nightly'))";
    let out = flockrun_out(
        &[
            "exec",
            &pg.lock("nightly"),
            "--",
            "sh",
            "-c",
            &format!("{} -c \"{try_sql}\"", shell_psql(&pg)),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "f");
    assert_eq!(pg.sql(try_sql), "t", "released after COMMAND");
}

#[test]
fn numeric_names_are_keys_as_given() {
    let pg = Pg::start();
    for (name, psql_key) in [("4242", "4242"), ("-7", "-7::bigint"), ("1,2", "1, 2")] {
        let held = psql_holding(&pg, &format!("pg_advisory_lock({psql_key})"));
        let out = flockrun_out(&["try", &pg.lock(name), "--", "true"], &[]);
        assert_eq!(out.status.code(), Some(75), "{name}: {}", text(&out.stderr));
        drop(held);
        let out = flockrun_out(&["try", &pg.lock(name), "--", "true"], &[]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    }
    // The two-integer key space is not the bigint one.
    let held = psql_holding(&pg, "pg_advisory_lock(1, 2)");
    let bigint = (1_i64 << 32) | 2;
    let out = flockrun_out(&["try", &pg.lock(&bigint.to_string()), "--", "true"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(held);
}

#[test]
fn readers_share_and_a_writer_waits_for_them() {
    let pg = Pg::start();
    let lock = pg.lock("report");
    let reader = Holder::flockrun(&["read", &lock]);
    let out = flockrun_out(&["read", "-n", &lock, "--", "true"], &[]);
    assert!(
        out.status.success(),
        "a second reader: {}",
        text(&out.stderr)
    );
    let out = flockrun_out(&["write", "-n", &lock, "--", "true"], &[]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    // A psql holding it shared is a reader too.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -c \"SELECT pg_try_advisory_lock_shared(hashtext('report'))\"",
            shell_psql(&pg)
        ))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), "t");
    let started = Instant::now();
    let mut writer = Command::new(FLOCKRUN)
        .args(["write", "-w", "30", &lock, "--", "true"])
        .spawn()
        .unwrap();
    wait_until("the writer waits", Instant::now() + PATIENCE, || {
        pg.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            .eq("1")
            .then_some(())
    });
    assert!(reader.release().success());
    let status = wait_with_deadline(&mut writer);
    assert!(status.success());
    assert!(started.elapsed() < PATIENCE);
}

/// Holds `lock` with a COMMAND that starts a grandchild and reports its pid; returns the
/// holder and the grandchild's pid.
fn hold_with_grandchild(
    args: &[&str],
) -> (
    std::process::Child,
    i32,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut child = Command::new(FLOCKRUN)
        .args(args)
        .args(["--", "sh", "-c", "sleep 600 & echo $!; echo ready; wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let grandchild: i32 = line.trim().parse().unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, grandchild, stdout)
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn stderr_of(child: &mut std::process::Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

#[test]
fn a_terminated_backend_stops_the_whole_command_and_exits_79() {
    let pg = Pg::start();
    let lock = pg.lock("terminated");
    let (mut child, grandchild, _out) = hold_with_grandchild(&["exec", "--ttl", "6", &lock]);
    let backends = pg.flockrun_backends();
    assert_eq!(backends.len(), 1, "{backends:?}");
    let killed_at = Instant::now();
    pg.sql(&format!("SELECT pg_terminate_backend({})", backends[0]));
    let status = wait_with_deadline(&mut child);
    let stderr = stderr_of(&mut child);
    assert_eq!(status.code(), Some(79), "{stderr}");
    assert!(
        stderr.contains("lost the lock") && stderr.contains("COMMAND was stopped"),
        "{stderr}"
    );
    // The server's goodbye on the idle connection is noticed at once, not at the next
    // heartbeat (a third of the TTL, 2 s here); then COMMAND's tree is stopped.
    assert!(
        killed_at.elapsed() < Duration::from_millis(1500),
        "{:?}",
        killed_at.elapsed()
    );
    assert!(stderr.contains("the server ended the session"), "{stderr}");
    assert!(!alive(grandchild), "COMMAND's child outlived the lost lock");
}

#[test]
fn a_restarted_server_is_a_lost_lock() {
    let pg = Pg::start();
    let lock = pg.lock("restarted");
    let (mut child, grandchild, _out) = hold_with_grandchild(&["exec", "--ttl", "6", &lock]);
    pg.restart();
    let status = wait_with_deadline(&mut child);
    let stderr = stderr_of(&mut child);
    assert_eq!(status.code(), Some(79), "{stderr}");
    assert!(!alive(grandchild));
    // The lock is free on the restarted server.
    let out = flockrun_out(&["try", &lock, "--", "true"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_silent_holder_is_freed_by_the_server_within_its_ttl() {
    // flockrun stopped dead (SIGSTOP): no heartbeat, no FIN. The server's
    // idle_session_timeout ends the session and frees the lock within the TTL.
    let pg = Pg::start();
    let lock = pg.lock("silent");
    let mut held = Holder::flockrun(&["exec", "--ttl", "4", &lock]);
    assert_eq!(pg.holders_of("hashtext('silent')"), 1);
    let pid = held.pid();
    crate::harness::signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let stopped = Instant::now();
    wait_until(
        "the server frees the lock",
        Instant::now() + PATIENCE,
        || (pg.holders_of("hashtext('silent')") == 0).then_some(()),
    );
    let took = stopped.elapsed();
    // The last heartbeat may have been just before the stop: TTL plus a second at most.
    assert!(
        took > Duration::from_secs(1) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        pg.log().contains("idle-session timeout"),
        "the server's own timeout freed it"
    );
    crate::harness::signal(pid, nix::sys::signal::Signal::SIGCONT);
    let status = wait_with_deadline(&mut held.child);
    assert_eq!(status.code(), Some(79));
}

#[test]
fn a_standby_is_refused_and_the_first_primary_is_taken() {
    let primary = Pg::start();
    let standby = Pg::start_with(&Setup {
        standby_of: Some(primary.port),
        ..Setup::default()
    });
    assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "t");
    let out = flockrun_out(&["try", &standby.lock("job"), "--", "true"], &[]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("hot standby"),
        "{}",
        text(&out.stderr)
    );
    // Standby first, primary second: the lock is taken on the primary.
    let both = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/postgres/job",
        standby.port, primary.port
    );
    let out = flockrun_out(
        &[
            "exec",
            &both,
            "--",
            "sh",
            "-c",
            &format!(
                "{} -c \"SELECT pg_try_advisory_lock(hashtext('job'))\"",
                shell_psql(&primary)
            ),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "f", "held on the primary");
}

/// A TLS server with SCRAM and certificate logins, a scratch home, and flockrun `try` with
/// the server in libpq's variables plus `extra`.
struct Secure {
    pg: Pg,
    home: TempDir,
}

impl Secure {
    fn start() -> Secure {
        Secure {
            pg: Pg::start_with(&Setup {
                tls: true,
                ..Setup::default()
            }),
            home: scratch(),
        }
    }

    fn try_lock(&self, lock: &str, extra: &[(&str, &str)]) -> Output {
        let port = self.pg.port.to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("HOME", self.home.path().to_str().unwrap()),
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &port),
            ("PGDATABASE", "postgres"),
        ];
        env.extend_from_slice(extra);
        flockrun_out(&["try", lock, "--", "true"], &env)
    }

    fn pki(&self) -> &Pki {
        self.pg.pki.as_ref().unwrap()
    }
}

fn assert_status(out: &Output, code: i32, why: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{why}: {}",
        text(&out.stderr)
    );
}

#[test]
fn logins_follow_libpq_settings_and_files() {
    let s = Secure::start();
    let port = s.pg.port.to_string();
    // SCRAM over TLS: the password from the URL, PGPASSWORD, the password file.
    assert_status(
        &s.try_lock("postgresql://app:secret@/postgres/job?sslmode=require", &[]),
        0,
        "URL password",
    );
    assert_status(
        &s.try_lock(
            "postgresql:///job",
            &[("PGUSER", "app"), ("PGPASSWORD", "secret")],
        ),
        0,
        "PGPASSWORD",
    );
    assert_status(
        &s.try_lock("postgresql://old:secret@/postgres/job", &[]),
        0,
        "an md5 password",
    );
    let out = s.try_lock("postgresql://app:wrong@/postgres/job", &[]);
    assert_status(&out, 76, "wrong password");
    assert!(
        text(&out.stderr).contains("password"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("wrong"),
        "the password is not shown"
    );
    let pgpass = s.home.path().join(".pgpass");
    fs::write(&pgpass, format!("127.0.0.1:{port}:*:app:secret\n")).unwrap();
    fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o600)).unwrap();
    assert_status(
        &s.try_lock("postgresql:///job", &[("PGUSER", "app")]),
        0,
        "~/.pgpass",
    );
    // PGPASSFILE names another file; PGCONNECT_TIMEOUT and PGTARGETSESSIONATTRS are taken.
    let elsewhere = s.home.path().join("passwords");
    fs::copy(&pgpass, &elsewhere).unwrap();
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o600)).unwrap();
    let env = [
        ("PGUSER", "app"),
        ("PGPASSFILE", elsewhere.to_str().unwrap()),
        ("PGCONNECT_TIMEOUT", "5"),
        ("PGTARGETSESSIONATTRS", "read-write"),
    ];
    assert_status(&s.try_lock("postgresql:///job", &env), 0, "PGPASSFILE");
    let env = [("PGUSER", "app"), ("PGTARGETSESSIONATTRS", "standby")];
    assert_status(
        &s.try_lock("postgresql:///job", &env),
        64,
        "a standby asked for",
    );
    fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.try_lock("postgresql:///job", &[("PGUSER", "app")]);
    assert_status(&out, 76, "an open ~/.pgpass is ignored");
    assert!(
        text(&out.stderr).contains("group or world access"),
        "{}",
        text(&out.stderr)
    );
    // A service file names the server and the user.
    let services = s.home.path().join("services.conf");
    fs::write(
        &services,
        format!(
            "[locks]\nhost=127.0.0.1\nport={port}\nuser=app\npassword=secret\ndbname=postgres\n"
        ),
    )
    .unwrap();
    let out = flockrun_out(
        &["try", "postgresql:///job", "--", "true"],
        &[
            ("HOME", s.home.path().to_str().unwrap()),
            ("PGSERVICEFILE", services.to_str().unwrap()),
            ("PGSERVICE", "locks"),
        ],
    );
    assert_status(&out, 0, "service file");
    // An unknown database: 76 naming it; nothing listening: 69.
    let out = s.try_lock("postgresql://app:secret@/nosuchdb/job", &[]);
    assert_status(&out, 76, "unknown database");
    assert!(
        text(&out.stderr).contains("nosuchdb"),
        "{}",
        text(&out.stderr)
    );
    let nobody = format!(
        "postgresql://app:secret@127.0.0.1:{}/postgres/job",
        free_port()
    );
    assert_status(&s.try_lock(&nobody, &[]), 69, "nothing listening");
}

#[test]
fn tls_follows_sslmode_and_its_files() {
    let s = Secure::start();
    let ca = s.pki().ca.to_str().unwrap().to_owned();
    let other = s.pki().other_ca.to_str().unwrap().to_owned();
    // pg_hba refuses app without TLS.
    assert_status(
        &s.try_lock("postgresql://app:secret@/postgres/job?sslmode=disable", &[]),
        76,
        "no TLS",
    );
    let full =
        format!("postgresql://app:secret@/postgres/job?sslmode=verify-full&sslrootcert={ca}");
    assert_status(&s.try_lock(&full, &[]), 0, "verify-full");
    let untrusted =
        format!("postgresql://app:secret@/postgres/job?sslmode=verify-ca&sslrootcert={other}");
    assert_status(
        &s.try_lock(&untrusted, &[]),
        76,
        "a CA that signed nothing here",
    );
    assert_status(
        &s.try_lock(
            "postgresql://app:secret@/postgres/job?sslmode=verify-full",
            &[],
        ),
        64,
        "verify-full without a CA",
    );
    let env = [
        ("PGUSER", "app"),
        ("PGPASSWORD", "secret"),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca.as_str()),
    ];
    assert_status(
        &s.try_lock("postgresql:///job", &env),
        0,
        "PGSSLMODE and PGSSLROOTCERT",
    );
    // ~/.postgresql/root.crt is used by default, and makes require check the chain.
    let dot = s.home.path().join(".postgresql");
    fs::create_dir(&dot).unwrap();
    fs::copy(&other, dot.join("root.crt")).unwrap();
    assert_status(
        &s.try_lock("postgresql://app:secret@/postgres/job?sslmode=require", &[]),
        76,
        "require with an unrelated root.crt",
    );
    fs::copy(&ca, dot.join("root.crt")).unwrap();
    assert_status(
        &s.try_lock(
            "postgresql://app:secret@/postgres/job?sslmode=verify-full",
            &[],
        ),
        0,
        "the default root.crt",
    );
    // A client certificate (CN root) logs in without a password.
    let cert = s.pki().client.cert.to_str().unwrap().to_owned();
    let key = s.pki().client.key.to_str().unwrap().to_owned();
    let by_cert = format!(
        "postgresql://root@/postgres/job?sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}"
    );
    assert_status(&s.try_lock(&by_cert, &[]), 0, "client certificate");
    // The same certificate from PGSSLCERT and PGSSLKEY.
    let env = [
        ("PGUSER", "root"),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca.as_str()),
        ("PGSSLCERT", cert.as_str()),
        ("PGSSLKEY", key.as_str()),
    ];
    assert_status(
        &s.try_lock("postgresql:///job", &env),
        0,
        "PGSSLCERT and PGSSLKEY",
    );
}

#[test]
fn status_names_holder_and_waiters_in_text_and_json() {
    let pg = Pg::start();
    let lock = pg.lock("shown");
    let held = Holder::flockrun(&["exec", &lock]);
    let waiter = psql_waiting(&pg, "pg_advisory_lock(hashtext('shown'))");
    wait_until("psql waits", Instant::now() + PATIENCE, || {
        pg.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            .eq("1")
            .then_some(())
    });
    let out = flockrun_out(&["status", &lock], &[]);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "held: {shown}");
    assert!(
        shown.contains(&format!("holder   pid {}", held.pid())),
        "{shown}"
    );
    assert!(
        shown.contains("sh -c echo ready"),
        "the holder's command: {shown}"
    );
    assert!(
        shown.contains("waiter   backend") && shown.contains("application psql"),
        "{shown}"
    );
    assert!(shown.contains("key      hashtext('shown') = "), "{shown}");
    let out = flockrun_out(&["status", "--json", &lock], &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = &json["locks"][0];
    assert_eq!(status["kind"], "postgresql");
    assert_eq!(status["state"], "held");
    assert_eq!(status["holders"][0]["pid"], held.pid());
    assert_eq!(status["waiters"][0]["application"], "psql");
    drop(waiter);
    assert!(held.release().success());
}

/// psql waiting for (and then holding) a lock, until its stdin closes.
fn psql_waiting(pg: &Pg, lock_sql: &str) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -c \"SELECT {lock_sql}\" -c \"\\! cat >/dev/null\"",
            shell_psql(pg)
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// A PgBouncer in front of `pg`, in transaction pooling, run as user postgres (it refuses
/// root), stopped on drop.
pub(crate) struct Bouncer {
    _dir: TempDir,
    child: std::process::Child,
    pub port: u16,
}

impl Bouncer {
    pub fn start(pg: &Pg) -> Bouncer {
        install_missing(&[("pgbouncer", "pgbouncer")]);
        let dir = scratch();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let users = dir.path().join("users.txt");
        fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        fs::write(
            &ini,
            format!(
                "[databases]\npostgres = host=127.0.0.1 port={} dbname=postgres\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = 20\nmax_client_conn = 200\n\
                 ignore_startup_parameters = extra_float_digits,options\n",
                pg.port,
                users.display()
            ),
        )
        .unwrap();
        let child = Command::new("setpriv")
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(on_path_or_sbin("pgbouncer"))
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgbouncer");
        let bouncer = Bouncer {
            _dir: dir,
            child,
            port,
        };
        wait_until("PgBouncer listens", Instant::now() + PATIENCE, || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(drop)
        });
        bouncer
    }

    /// LOCK for NAME through the pooler, with `params` after `?` if any.
    pub fn lock(&self, name: &str, params: &str) -> String {
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{params}")
        };
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres/{name}{query}",
            self.port
        )
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path_or_sbin(tool: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(tool))
}

#[test]
fn a_transaction_pooler_is_refused_and_pooled_locks_work_through_it() {
    let pg = Pg::start();
    let bouncer = Bouncer::start(&pg);
    // A session lock through transaction pooling would be shared and leak: refused.
    let out = flockrun_out(&["try", &bouncer.lock("pooled", ""), "--", "true"], &[]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("pooled=1"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(pg.holders_of("hashtext('pooled')"), 0, "nothing leaked");
    // Held in a transaction, the lock works through the pooler, and excludes psql on the
    // server and other flockruns through the pooler.
    let lock = bouncer.lock("pooled", "pooled=1");
    let held = Holder::flockrun(&["exec", &lock]);
    assert_eq!(pg.holders_of("hashtext('pooled')"), 1);
    assert_eq!(
        pg.sql("SELECT pg_try_advisory_lock(hashtext('pooled'))"),
        "f"
    );
    let out = flockrun_out(&["try", &lock, "--", "true"], &[]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    // The holder keeps no transaction id (it would hold back vacuum).
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'flockrun:%' AND backend_xid IS NOT NULL"),
        "0"
    );
    assert!(held.release().success());
    assert_eq!(pg.holders_of("hashtext('pooled')"), 0, "released");
}

/// A network namespace with its loopback up, deleted on drop; `nft` rules in it cut TCP to
/// a port both ways (the research's partition: packets dropped, nothing closed).
pub(crate) struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        install_missing(&[("nft", "nftables"), ("ip", "iproute2")]);
        let name = format!(
            "flockrun-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec_ok("ip", &["link", "set", "lo", "up"]);
        ns
    }

    fn exec_ok(&self, program: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run_ok("ip", &all);
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Drops every TCP packet to or from `port` inside the namespace.
    pub fn cut(&self, port: u16) {
        let port = port.to_string();
        self.exec_ok("nft", &["add", "table", "inet", "cut"]);
        self.exec_ok(
            "nft",
            &[
                "add",
                "chain",
                "inet",
                "cut",
                "in",
                "{ type filter hook input priority 0; }",
            ],
        );
        self.exec_ok(
            "nft",
            &[
                "add", "rule", "inet", "cut", "in", "tcp", "dport", &port, "drop",
            ],
        );
        self.exec_ok(
            "nft",
            &[
                "add", "rule", "inet", "cut", "in", "tcp", "sport", &port, "drop",
            ],
        );
    }

    pub fn heal(&self) {
        self.exec_ok("nft", &["delete", "table", "inet", "cut"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pg {
    /// LOCK for NAME over the server's Unix socket: reachable from outside its namespace.
    pub fn socket_lock(&self, name: &str) -> String {
        let dir = self.socket_dir().display().to_string().replace('/', "%2F");
        format!("postgresql://postgres@{dir}:{}/postgres/{name}", self.port)
    }
}

/// Seconds since the epoch, as `date +%s.%N` wrote them into a file.
fn stamp(path: &Path) -> f64 {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const WAITING: &str = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted";

#[test]
fn a_cut_off_holder_stops_its_command_before_the_server_hands_the_lock_on() {
    let ns = Netns::new();
    let pg = Pg::start_with(&Setup {
        netns: Some(ns.name.clone()),
        ..Setup::default()
    });
    let dir = scratch();
    let stopped = dir.path().join("stopped");
    let got = dir.path().join("got");
    let ttl = 6.0;
    // The holder talks TCP inside the namespace; COMMAND notes when it is told to stop.
    let script = format!(
        "trap 'date +%s.%N > {}; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        stopped.display()
    );
    let mut holder = ns
        .command(FLOCKRUN)
        .args([
            "exec",
            "--ttl",
            "6",
            &pg.lock("cut"),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // A contender over the Unix socket, which the cut does not touch.
    let mut contender = Command::new(FLOCKRUN)
        .args(["exec", "-w", "60", &pg.socket_lock("cut"), "--", "sh", "-c"])
        .arg(format!("date +%s.%N > {}", got.display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the contender waits", Instant::now() + PATIENCE, || {
        pg.sql(WAITING).eq("1").then_some(())
    });
    let cut_at = now();
    ns.cut(pg.port);
    let status = wait_with_deadline(&mut holder);
    let stderr = stderr_of(&mut holder);
    assert_eq!(status.code(), Some(79), "{stderr}");
    assert!(wait_with_deadline(&mut contender).success());
    let (stopped_at, got_at) = (stamp(&stopped), stamp(&got));
    eprintln!(
        "cut at 0: COMMAND told to stop at {:.2}s, the contender got the lock at {:.2}s",
        stopped_at - cut_at,
        got_at - cut_at
    );
    assert!(
        stopped_at < got_at,
        "COMMAND ran on after the server handed the lock on"
    );
    assert!(
        got_at - cut_at < ttl + 1.0,
        "the server kept the lock {:.2}s",
        got_at - cut_at
    );
    assert!(
        pg.log().contains("idle-session timeout"),
        "freed by the server's timeout"
    );
    ns.heal();
}

#[test]
fn a_cut_off_waiter_is_dropped_from_the_queue_and_never_granted() {
    let ns = Netns::new();
    let pg = Pg::start_with(&Setup {
        netns: Some(ns.name.clone()),
        ..Setup::default()
    });
    let held = Holder::flockrun(&["exec", &pg.socket_lock("queue")]);
    let mut waiter = ns
        .command(FLOCKRUN)
        .args([
            "exec",
            "--ttl",
            "6",
            &pg.lock("queue"),
            "--",
            "echo",
            "WAITER-RAN",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the waiter queues", Instant::now() + PATIENCE, || {
        pg.sql(WAITING).eq("1").then_some(())
    });
    let cut = Instant::now();
    ns.cut(pg.port);
    // Keepalives (a probe after TTL/3, then one a second, three tries) and the connection
    // check take the dead waiter out of the queue.
    wait_until(
        "the server drops the cut-off waiter",
        Instant::now() + PATIENCE,
        || pg.sql(WAITING).eq("0").then_some(()),
    );
    eprintln!(
        "the cut-off waiter left the queue after {:.2?}",
        cut.elapsed()
    );
    assert!(
        cut.elapsed() < Duration::from_secs(10),
        "{:?}",
        cut.elapsed()
    );
    assert!(held.release().success());
    // Nobody holds it: the dead waiter was not granted it as a phantom.
    assert_eq!(pg.holders_of("hashtext('queue')"), 0);
    let out = flockrun_out(&["try", &pg.socket_lock("queue"), "--", "true"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    ns.heal();
    let status = wait_with_deadline(&mut waiter);
    let mut stdout = String::new();
    waiter
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(
        !stdout.contains("WAITER-RAN"),
        "the cut-off waiter ran COMMAND"
    );
    assert!(!status.success(), "{}", stderr_of(&mut waiter));
}

#[test]
fn a_socket_directory_in_pghost_and_a_nested_flockrun_on_the_same_lock() {
    let pg = Pg::start();
    let socket = pg.socket_dir();
    let port = pg.port.to_string();
    let env = [
        ("PGHOST", socket.to_str().unwrap()),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
    ];
    // A nested flockrun on the same lock runs under the outer one (a second session would
    // wait for the first forever); the lock is held once.
    let count = format!(
        "{} -c \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted\"",
        shell_psql(&pg)
    );
    let inner = format!(
        "{FLOCKRUN} exec postgresql:///nested -- sh -c '{}'",
        count.replace('\'', "'\\''")
    );
    let out = flockrun_out(
        &["exec", "postgresql:///nested", "--", "sh", "-c", &inner],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1");
}

#[test]
fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let pg = Pg::start_with(&Setup {
        tls: true,
        misnamed: true,
        ..Setup::default()
    });
    let ca = pg.pki.as_ref().unwrap().ca.to_str().unwrap().to_owned();
    let lock = |mode: &str| {
        format!(
            "postgresql://app:secret@127.0.0.1:{}/postgres/job?sslmode={mode}&sslrootcert={ca}",
            pg.port
        )
    };
    let out = flockrun_out(&["try", &lock("verify-ca"), "--", "true"], &[]);
    assert_status(&out, 0, "verify-ca: a trusted chain is enough");
    let out = flockrun_out(&["try", &lock("verify-full"), "--", "true"], &[]);
    assert_status(
        &out,
        76,
        "verify-full: the certificate names elsewhere.example",
    );
    assert!(text(&out.stderr).contains("TLS"), "{}", text(&out.stderr));
}

#[test]
fn fencing_tokens_grow_from_holder_to_holder() {
    let pg = Pg::start();
    let token = || {
        let out = flockrun_out(
            &[
                "exec",
                &pg.lock("fenced"),
                "--",
                "sh",
                "-c",
                "echo $FLOCKRUN_FENCE",
            ],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().parse::<u64>().unwrap()
    };
    let first = token();
    let second = token();
    assert!(second > first, "{first} then {second}");
}

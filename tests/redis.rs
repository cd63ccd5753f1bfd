//! The Redis kind against real servers: each test starts Debian's `redis-server` (no
//! persistence, a free loopback port, a scratch directory) and stops it, whatever happens.
//! Peers are `redis-cli` running the `SET NX` idiom by hand and other flockruns.

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::harness::{
    FLOCKRUN, Holder, PATIENCE, finish, flockrun_out, install_missing, scratch, signal, wait_until,
    wait_until_exited,
};
use crate::pki::Pki;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How a test server is set up.
#[derive(Default)]
pub(crate) struct Setup {
    /// TLS only, with the test PKI's member certificate; clients must show a certificate
    /// when `client_certs`.
    pub tls: bool,
    pub client_certs: bool,
    /// `requirepass` for the default user.
    pub password: Option<&'static str>,
    /// A replica of the server on this port.
    pub replica_of: Option<u16>,
    /// `notify-keyspace-events` (empty, Redis's default, when `None`).
    pub notify: Option<&'static str>,
    /// The network namespace the server runs in (redis-cli runs there too).
    pub netns: Option<String>,
}

/// A throw-away Redis server.
pub(crate) struct Redis {
    pub dir: TempDir,
    pub port: u16,
    pub pki: Option<Pki>,
    child: Option<Child>,
    args: Vec<String>,
    setup_password: Option<&'static str>,
    netns: Option<String>,
}

/// The ACL user the tests log in as: just what flockrun's README says it needs.
pub const ACL_USER: &str = "locker";
pub const ACL_PASSWORD: &str = "s3cret";

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&Setup::default())
    }

    pub fn start_with(setup: &Setup) -> Redis {
        install_missing(&[
            ("redis-server", "redis-server"),
            ("redis-cli", "redis-tools"),
        ]);
        let dir = scratch();
        let port = free_port();
        let mut conf = format!(
            "bind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\nunixsocket {}\nunixsocketperm 700\n\
             repl-diskless-sync-delay 0\nlogfile {}\n",
            dir.path().display(),
            dir.path().join("redis.sock").display(),
            dir.path().join("log").display()
        );
        let pki = setup.tls.then(Pki::new);
        if let Some(pki) = &pki {
            let _ = write!(
                conf,
                "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                 tls-ca-cert-file {}\ntls-auth-clients {}\n",
                pki.member.cert.display(),
                pki.member.key.display(),
                pki.ca.display(),
                if setup.client_certs { "yes" } else { "no" }
            );
        } else {
            let _ = writeln!(conf, "port {port}");
        }
        if let Some(password) = setup.password {
            let _ = writeln!(conf, "requirepass {password}");
        }
        if let Some(primary) = setup.replica_of {
            let _ = writeln!(conf, "replicaof 127.0.0.1 {primary}");
        }
        if let Some(flags) = setup.notify {
            let _ = writeln!(conf, "notify-keyspace-events {flags}");
        }
        let _ = writeln!(
            conf,
            "user {ACL_USER} on >{ACL_PASSWORD} ~flockrun:* ~flockrun-fence:* \
             &flockrun-released:* &__keyspace@* +eval +get +set +pexpire +pttl +del +incr \
             +publish +subscribe +info +wait +select +ping"
        );
        let conf_path = dir.path().join("redis.conf");
        fs::write(&conf_path, conf).unwrap();
        let mut redis = Redis {
            dir,
            port,
            pki,
            child: None,
            args: vec![conf_path.to_str().unwrap().to_owned()],
            setup_password: setup.password,
            netns: setup.netns.clone(),
        };
        redis.launch();
        redis
    }

    /// `program`, inside the server's network namespace if it has one.
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, program]);
                cmd
            }
            None => Command::new(program),
        }
    }

    fn launch(&mut self) {
        let child = self
            .command("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_until(
            "redis-server to answer PING",
            Instant::now() + PATIENCE,
            || (self.cli(&["PING"]).trim() == "PONG").then_some(()),
        );
    }

    /// Kills the server (SIGKILL) and, if `again`, starts it afresh on the same port.
    pub fn kill(&mut self, again: bool) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if again {
            self.launch();
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().unwrap().id()).unwrap()
    }

    /// redis-cli's connection options for this server, as the default user.
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["-p".to_owned(), self.port.to_string()];
        if let Some(pki) = &self.pki {
            args.extend([
                "--tls".to_owned(),
                "--cacert".to_owned(),
                pki.ca.display().to_string(),
                "--cert".to_owned(),
                pki.client.cert.display().to_string(),
                "--key".to_owned(),
                pki.client.key.display().to_string(),
            ]);
        }
        if let Some(password) = self.setup_password {
            args.extend([
                "-a".to_owned(),
                password.to_owned(),
                "--no-auth-warning".to_owned(),
            ]);
        }
        args
    }

    /// `redis-cli COMMAND…` as the default user: its output.
    pub fn cli(&self, command: &[&str]) -> String {
        let out = self
            .command("redis-cli")
            .args(self.cli_args())
            .args(command)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `redis-cli` reading `commands` from stdin, all on one connection: its output.
    pub fn cli_stdin(&self, commands: &str) -> String {
        let mut child = Command::new("redis-cli")
            .args(self.cli_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run redis-cli");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), commands.as_bytes()).unwrap();
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The shell words of `redis-cli` for this server.
    pub fn shell_cli(&self) -> String {
        format!("redis-cli {}", self.cli_args().join(" "))
    }

    pub fn lock(&self, name: &str) -> String {
        let scheme = if self.pki.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match self.setup_password {
            Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}/{name}", self.port),
            None => format!("{scheme}://127.0.0.1:{}/{name}", self.port),
        }
    }

    pub fn socket_lock(&self, name: &str) -> String {
        format!(
            "unix://{}?name={name}",
            self.dir.path().join("redis.sock").display()
        )
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill(false);
        if std::thread::panicking() {
            let log = self.log();
            eprintln!("--- redis-server log (last lines) ---");
            for line in log
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                eprintln!("{line}");
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_status(out: &Output, code: i32, why: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{why}: stdout {} stderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A flockrun holding `lock` until released (`extra` options before LOCK).
fn hold(lock: &str, extra: &[&str]) -> Holder {
    let mut args: Vec<&str> = vec!["exec"];
    args.extend(extra);
    args.push(lock);
    Holder::flockrun(&args)
}

#[test]
fn flockrun_and_redis_cli_set_nx_exclude_each_other_both_ways() {
    let redis = Redis::start();
    let lock = redis.lock("deploy");
    // redis-cli holds by hand, as a cron script would.
    assert_eq!(
        redis
            .cli(&["SET", "flockrun:deploy", "cron-7", "NX", "PX", "60000"])
            .trim(),
        "OK"
    );
    let out = flockrun_out(&["try", &lock, "--", "true"], &[]);
    assert_status(&out, 75, "busy while redis-cli holds the key");
    let err = text(&out.stderr);
    assert!(
        err.contains("a value flockrun did not write (\"cron-7\")"),
        "{err}"
    );
    redis.cli(&["DEL", "flockrun:deploy"]);
    // flockrun holds: redis-cli's SET NX gets nothing, and sees flockrun's record.
    let holder = hold(&lock, &[]);
    assert_eq!(
        redis
            .cli(&["SET", "flockrun:deploy", "cron-7", "NX", "PX", "60000"])
            .trim(),
        ""
    );
    let value = redis.cli(&["GET", "flockrun:deploy"]);
    assert!(
        value.contains(&format!("\"pid\":{}", holder.pid())) && value.contains("\"token\""),
        "{value}"
    );
    // Over the Unix socket, the same key.
    let out = flockrun_out(&["try", &redis.socket_lock("deploy"), "--", "true"], &[]);
    assert_status(&out, 75, "busy through the Unix socket too");
    assert!(holder.release().success());
    assert_eq!(redis.cli(&["EXISTS", "flockrun:deploy"]).trim(), "0");
    let out = flockrun_out(
        &[
            "exec",
            &redis.socket_lock("deploy"),
            "--",
            "sh",
            "-c",
            "echo $FLOCKRUN_FENCE",
        ],
        &[],
    );
    assert_status(&out, 0, "free again");
    // Two acquisitions so far (the holder, then this one): the fence counter says 2.
    assert_eq!(text(&out.stdout).trim(), "2");
}

#[test]
fn renewals_keep_the_lock_over_many_ttls_and_release_deletes_it() {
    let redis = Redis::start();
    let lock = redis.lock("long");
    let script = format!(
        "i=0; while [ $i -lt 8 ]; do {cli} PTTL flockrun:long; sleep 0.5; i=$((i+1)); done; \
         {cli} GET flockrun:long",
        cli = redis.shell_cli()
    );
    let out = flockrun_out(
        &["exec", "--ttl", "1", &lock, "--", "sh", "-c", &script],
        &[],
    );
    assert_status(&out, 0, "a 4 s job under a 1 s TTL");
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    for pttl in &lines[..8] {
        let ms: i64 = pttl.trim().parse().unwrap();
        assert!((1..=1000).contains(&ms), "PTTL {ms} during the hold");
    }
    assert!(
        lines[8].contains("\"token\""),
        "still our record: {}",
        lines[8]
    );
    assert_eq!(redis.cli(&["EXISTS", "flockrun:long"]).trim(), "0");
}

/// A flockrun holding `lock` whose COMMAND starts a grandchild; returns it and the
/// grandchild's pid.
fn hold_with_grandchild(lock: &str, ttl: &str) -> (Child, i32) {
    hold_with_grandchild_by(Command::new(FLOCKRUN), lock, ttl)
}

/// As `hold_with_grandchild`, with flockrun started by `flockrun` (in a network namespace).
fn hold_with_grandchild_by(mut flockrun: Command, lock: &str, ttl: &str) -> (Child, i32) {
    let mut child = flockrun
        .args([
            "exec",
            "--ttl",
            ttl,
            lock,
            "--",
            "sh",
            "-c",
            "sleep 300 & echo $!; wait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    (child, line.trim().parse().unwrap())
}

fn assert_lost(child: Child, grandchild: i32, says: &str) {
    let out = finish(child);
    assert_status(&out, 79, "a lost lock");
    let err = text(&out.stderr);
    assert!(err.contains(says), "{err}");
    wait_until_exited(grandchild, "COMMAND's background child to be stopped");
}

#[test]
fn a_key_deleted_or_taken_by_another_token_is_a_lost_lock() {
    let redis = Redis::start();
    let lock = redis.lock("stolen");
    let (child, grandchild) = hold_with_grandchild(&lock, "3");
    redis.cli(&["DEL", "flockrun:stolen"]);
    assert_lost(child, grandchild, "the key flockrun:stolen is gone");
    let (child, grandchild) = hold_with_grandchild(&lock, "3");
    redis.cli(&["SET", "flockrun:stolen", "intruder", "PX", "60000"]);
    assert_lost(child, grandchild, "now holds another record");
    assert_eq!(redis.cli(&["GET", "flockrun:stolen"]).trim(), "intruder");
}

#[test]
fn a_restarted_or_killed_server_is_a_lost_lock_before_the_key_could_expire() {
    let mut redis = Redis::start();
    let lock = redis.lock("fragile");
    let (child, grandchild) = hold_with_grandchild(&lock, "3");
    redis.kill(true);
    assert_lost(child, grandchild, "is gone");
    // Killed for good: flockrun gives up before the 4 s TTL would have run out.
    let (child, grandchild) = hold_with_grandchild(&lock, "4");
    let pid = child.id();
    let killed = Instant::now();
    redis.kill(false);
    assert_lost(child, grandchild, "could not be renewed");
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "flockrun {pid} took {took:?}"
    );
}

/// The server cut off (every packet to and from its port dropped) while flockrun holds:
/// flockrun stops COMMAND and exits 79 while the key still has time left, so nobody else
/// could have taken the lock while COMMAND ran.
#[test]
fn a_holder_cut_off_from_the_server_stops_its_command_before_the_key_expires() {
    let ns = crate::postgres::Netns::new();
    let redis = Redis::start_with(&Setup {
        netns: Some(ns.name.clone()),
        ..Setup::default()
    });
    let lock = redis.lock("cut");
    let (child, grandchild) = hold_with_grandchild_by(ns.command(FLOCKRUN), &lock, "3");
    ns.cut(redis.port);
    let cut = Instant::now();
    let out = finish(child);
    let took = cut.elapsed();
    assert_status(&out, 79, "cut off from the server");
    assert!(
        text(&out.stderr).contains("could not be renewed"),
        "{}",
        text(&out.stderr)
    );
    wait_until_exited(grandchild, "COMMAND's background child to be stopped");
    ns.heal();
    let left: i64 = redis.cli(&["PTTL", "flockrun:cut"]).trim().parse().unwrap();
    assert!(
        left > 0,
        "the key had run out ({left}) by the time COMMAND was stopped, {took:?} after the cut"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_waiter_wakes_when_the_holder_releases_and_gets_a_higher_fence() {
    for notify in [None, Some("KEA")] {
        let redis = Redis::start_with(&Setup {
            notify,
            ..Setup::default()
        });
        let lock = redis.lock("queue");
        let holder = hold(&lock, &[]);
        let first: i64 = redis
            .cli(&["GET", "flockrun-fence:queue"])
            .trim()
            .parse()
            .unwrap();
        let waiter = Command::new(FLOCKRUN)
            .args([
                "exec",
                "-v",
                &lock,
                "--",
                "sh",
                "-c",
                "echo $FLOCKRUN_FENCE",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The waiter has tried once and subscribed: two clients besides redis-cli's.
        wait_until("the waiter to subscribe", Instant::now() + PATIENCE, || {
            redis
                .cli(&["PUBSUB", "NUMSUB", "flockrun-released:queue"])
                .lines()
                .nth(1)
                .is_some_and(|n| n.trim() == "1")
                .then_some(())
        });
        let released = Instant::now();
        assert!(holder.release().success());
        let out = finish(waiter);
        assert_status(&out, 0, "the waiter");
        let second: i64 = text(&out.stdout).trim().parse().unwrap();
        assert!(second > first, "fence {second} after {first}");
        // The release woke it; a backoff at its longest (a tenth of the 10 s TTL) would
        // take up to a second.
        assert!(
            released.elapsed() < Duration::from_secs(5),
            "{:?}",
            released.elapsed()
        );
        assert!(
            text(&out.stderr).contains("after waiting"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_holder_that_never_releases_is_outlived_when_its_key_expires() {
    let redis = Redis::start();
    let lock = redis.lock("crashed");
    let holder = hold(&lock, &["--ttl", "2"]);
    let pid = holder.pid();
    // SIGKILL: no release, no renewal; the key runs out within the TTL.
    signal(pid, Signal::SIGKILL);
    let started = Instant::now();
    let out = flockrun_out(&["exec", "-w", "10", &lock, "--", "true"], &[]);
    assert_status(&out, 0, "the lock once the key expired");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(holder);
}

#[test]
fn status_names_the_holder_in_text_and_json_and_shows_foreign_values() {
    let redis = Redis::start();
    let lock = redis.lock("report");
    let out = flockrun_out(&["status", &lock], &[]);
    assert_status(&out, 0, "status of a free lock");
    assert!(
        text(&out.stdout).contains(": free (redis)"),
        "{}",
        text(&out.stdout)
    );
    let holder = hold(&lock, &[]);
    let out = flockrun_out(&["status", &lock], &[]);
    let shown = text(&out.stdout);
    assert!(shown.contains("held (exclusive, redis)"), "{shown}");
    assert!(
        shown.contains(&format!("holder   pid {} on ", holder.pid())) && shown.contains("(sh -c"),
        "{shown}"
    );
    assert!(
        shown.contains("key      flockrun:report, last fencing token 1"),
        "{shown}"
    );
    let out = flockrun_out(&["status", "--json", &lock], &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let h = &json["locks"][0]["holders"][0];
    assert_eq!(h["pid"], holder.pid());
    assert_eq!(h["key"], "flockrun:report");
    assert_eq!(h["flockrun"], true);
    let left = h["ttl_left"].as_f64().unwrap();
    assert!(left > 0.0 && left <= 10.0, "{left}");
    assert!(holder.release().success());
    redis.cli(&["SET", "flockrun:report", "made by hand"]);
    let out = flockrun_out(&["status", "--json", &lock], &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let h = &json["locks"][0]["holders"][0];
    assert_eq!(h["value"], "made by hand");
    assert_eq!(h["flockrun"], false);
    assert!(h["ttl_left"].is_null());
    let out = flockrun_out(&["status", &lock], &[]);
    assert!(
        text(&out.stdout)
            .contains("a value flockrun did not write (\"made by hand\"), with no expiry"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn replace_stops_a_holder_on_this_host_and_leaves_a_foreign_value_alone() {
    let redis = Redis::start();
    let lock = redis.lock("replaced");
    let holder = hold(&lock, &[]);
    let pid = holder.pid();
    let out = flockrun_out(&["exec", "--replace", &lock, "--", "echo", "mine"], &[]);
    assert_status(&out, 0, "replacing a flockrun holder");
    assert_eq!(text(&out.stdout).trim(), "mine");
    wait_until_exited(pid, "the replaced holder to exit");
    drop(holder);
    redis.cli(&["SET", "flockrun:replaced", "cron-7", "PX", "60000"]);
    let out = flockrun_out(&["try", "--replace", &lock, "--", "true"], &[]);
    assert_status(&out, 75, "a value that names no process");
    assert!(
        text(&out.stderr).contains("names no process"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(redis.cli(&["GET", "flockrun:replaced"]).trim(), "cron-7");
}

#[test]
fn bad_locks_and_options_are_usage_errors() {
    for (lock, extra, says) in [
        ("redis://127.0.0.1", &[][..], "names no lock"),
        ("redis://127.0.0.1:70000/x", &[], "bad port"),
        ("unix:///tmp/none.sock", &[], "?name=NAME"),
        (
            "redis://h/x",
            &["--cacert", "/etc/hostname"][..],
            "rediss://",
        ),
        ("redis://h/x", &["--slots", "2"], "Redis semaphores"),
        ("redis://h/x", &["--soft"], "--soft does not apply"),
        ("redis://h/x", &["--ttl", "0.5"], "at least 1 second"),
        ("redis://u@h/x", &["--user", "v"], "give the user once"),
    ] {
        let mut args = vec!["exec"];
        args.extend(extra);
        args.extend([lock, "--", "true"]);
        let out = flockrun_out(&args, &[]);
        assert_status(&out, 64, lock);
        assert!(
            text(&out.stderr).contains(says),
            "{lock}: {}",
            text(&out.stderr)
        );
    }
    let out = flockrun_out(&["read", "redis://h/x", "--", "true"], &[]);
    assert_status(&out, 64, "read on a Redis lock");
    assert!(text(&out.stderr).contains("use exec or try"));
}

#[test]
fn unreachable_servers_exit_69_and_refusals_76() {
    let port = free_port();
    let out = flockrun_out(
        &["exec", &format!("redis://127.0.0.1:{port}/x"), "--", "true"],
        &[],
    );
    assert_status(&out, 69, "nothing listens");
    assert!(
        text(&out.stderr).contains("cannot reach Redis"),
        "{}",
        text(&out.stderr)
    );
    let redis = Redis::start_with(&Setup {
        password: Some("right"),
        ..Setup::default()
    });
    let bare = format!("redis://127.0.0.1:{}/x", redis.port);
    let out = flockrun_out(&["exec", &bare, "--", "true"], &[]);
    assert_status(&out, 76, "no password");
    assert!(
        text(&out.stderr).contains("NOAUTH"),
        "{}",
        text(&out.stderr)
    );
    let wrong = format!("redis://:wrong@127.0.0.1:{}/x", redis.port);
    let out = flockrun_out(&["exec", &wrong, "--", "true"], &[]);
    assert_status(&out, 76, "a wrong password");
    let err = text(&out.stderr);
    assert!(
        err.contains("WRONGPASS") && !err.contains(":wrong@"),
        "{err}"
    );
    // The password from REDISCLI_AUTH, as redis-cli takes it, and from a file.
    let out = flockrun_out(
        &["exec", &bare, "--", "true"],
        &[("REDISCLI_AUTH", "right")],
    );
    assert_status(&out, 0, "REDISCLI_AUTH");
    let file = redis.dir.path().join("password");
    fs::write(&file, "right\n").unwrap();
    let out = flockrun_out(
        &[
            "exec",
            "--password-file",
            file.to_str().unwrap(),
            &bare,
            "--",
            "true",
        ],
        &[],
    );
    assert_status(&out, 0, "--password-file");
}

#[test]
fn an_acl_user_with_only_the_commands_it_needs_locks_and_others_are_refused() {
    let redis = Redis::start();
    let user_lock = format!(
        "redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{}/acl",
        redis.port
    );
    let holder = hold(&user_lock, &[]);
    let out = flockrun_out(&["try", &user_lock, "--", "true"], &[]);
    assert_status(&out, 75, "busy for the ACL user");
    let out = flockrun_out(&["status", &user_lock], &[]);
    assert_status(&out, 1, "status as the ACL user: held");
    assert!(holder.release().success());
    // Its keys are flockrun's only: a NAME it may not touch is refused, not busy.
    let out = flockrun_out(
        &[
            "exec",
            "--user",
            ACL_USER,
            &format!("redis://127.0.0.1:{}/acl", redis.port),
            "--",
            "true",
        ],
        &[("REDISCLI_AUTH", ACL_PASSWORD)],
    );
    assert_status(&out, 0, "--user with REDISCLI_AUTH");
    let out = flockrun_out(
        &[
            "exec",
            &format!("redis://{ACL_USER}:nope@127.0.0.1:{}/acl", redis.port),
            "--",
            "true",
        ],
        &[],
    );
    assert_status(&out, 76, "a wrong password for the ACL user");
    redis.cli(&[
        "ACL", "SETUSER", "narrow", "on", ">pw", "~*", "+get", "+info",
    ]);
    let out = flockrun_out(
        &[
            "exec",
            &format!("redis://narrow:pw@127.0.0.1:{}/acl", redis.port),
            "--",
            "true",
        ],
        &[],
    );
    assert_status(&out, 76, "an ACL user without EVAL");
    assert!(
        text(&out.stderr).contains("NOPERM"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn tls_needs_the_servers_ca_and_a_client_certificate_where_required() {
    let redis = Redis::start_with(&Setup {
        tls: true,
        client_certs: true,
        ..Setup::default()
    });
    let pki = redis.pki.as_ref().unwrap();
    let lock = redis.lock("secure");
    let ca = pki.ca.to_str().unwrap();
    let (cert, key) = (
        pki.client.cert.to_str().unwrap(),
        pki.client.key.to_str().unwrap(),
    );
    let out = flockrun_out(
        &[
            "exec", "--cacert", ca, "--cert", cert, "--key", key, &lock, "--", "true",
        ],
        &[],
    );
    assert_status(&out, 0, "TLS with CA and client certificate");
    let out = flockrun_out(
        &["exec", "--cert", cert, "--key", key, &lock, "--", "true"],
        &[],
    );
    assert_status(&out, 76, "no CA: the server's certificate is not trusted");
    assert!(
        text(&out.stderr).contains("--cacert"),
        "{}",
        text(&out.stderr)
    );
    let out = flockrun_out(&["exec", "--cacert", ca, &lock, "--", "true"], &[]);
    assert_status(&out, 76, "no client certificate");
    assert!(
        text(&out.stderr).contains("client certificate"),
        "{}",
        text(&out.stderr)
    );
    let plain = format!("redis://127.0.0.1:{}/secure", redis.port);
    let out = flockrun_out(&["exec", "-w", "5", &plain, "--", "true"], &[]);
    assert!(
        matches!(out.status.code(), Some(69 | 76)),
        "plain to a TLS port: {}",
        text(&out.stderr)
    );
}

#[test]
fn a_replica_that_does_not_acknowledge_the_lock_draws_a_warning() {
    let primary = Redis::start();
    let replica = Redis::start_with(&Setup {
        replica_of: Some(primary.port),
        ..Setup::default()
    });
    // In sync once a write on one connection is acknowledged by it.
    wait_until(
        "the replica to acknowledge writes",
        Instant::now() + PATIENCE,
        || {
            let out = primary.cli_stdin("SET probe 1\nWAIT 1 200\n");
            (out.lines().nth(1).map(str::trim) == Some("1")).then_some(())
        },
    );
    let lock = primary.lock("replicated");
    let out = flockrun_out(&["exec", &lock, "--", "true"], &[]);
    assert_status(&out, 0, "with an answering replica");
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    // A replica is no place for a lock.
    let out = flockrun_out(&["exec", &replica.lock("replicated"), "--", "true"], &[]);
    assert_status(&out, 65, "taking a lock on the replica");
    assert!(
        text(&out.stderr).contains("read-only replica"),
        "{}",
        text(&out.stderr)
    );
    signal(replica.pid(), Signal::SIGSTOP);
    let out = flockrun_out(&["exec", &lock, "--", "true"], &[]);
    signal(replica.pid(), Signal::SIGCONT);
    assert_status(&out, 0, "with a stopped replica");
    assert!(
        text(&out.stderr).contains("none of the 1 replica(s)"),
        "{}",
        text(&out.stderr)
    );
}

//! Behaviour that depends on a terminal, run in a real pseudo-terminal through script(1):
//! a ^C typed at the terminal reaches COMMAND once (from the terminal, not again from
//! flockrun), and a long wait shows one live line that is erased once the lock is taken.

use std::ffi::OsStr;
use std::io::Write;
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::harness::{FLOCKRUN, Holder, PATIENCE, child_of, scratch, signal};

/// Reports each SIGINT and SIGUSR1 with who sent it (`si_code` 128 = the kernel, i.e. the
/// terminal; 0 = kill(2) from a process), and exits on SIGUSR1.
const SIGNAL_REPORTER: &str = r#"
import signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGUSR1})
print("ready", flush=True)
while True:
    info = signal.sigwaitinfo({signal.SIGINT, signal.SIGUSR1})
    name = signal.Signals(info.si_signo).name
    print(f"{name} code={info.si_code} pid={info.si_pid}", flush=True)
    if info.si_signo == signal.SIGUSR1:
        sys.exit(0)
"#;

fn in_terminal(command_line: &str) -> Holder {
    let args = ["-qfec", command_line, "/dev/null"].map(OsStr::new);
    Holder::start("script", &args, "ready")
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn a_terminal_interrupt_reaches_command_once() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let line = format!(
        "exec {FLOCKRUN} exec {} -- python3 -c {}",
        lock.display(),
        quote(SIGNAL_REPORTER)
    );
    let mut term = in_terminal(&line);
    let flockrun_pid = child_of(term.pid());
    // Type ^C: the terminal sends SIGINT to the foreground group, flockrun and COMMAND.
    term.stdin().write_all(b"\x03").unwrap();
    term.expect_line_containing("SIGINT code=128");
    // A signal sent with kill(2) to flockrun is passed on, after any INT it might have
    // (wrongly) forwarded, since flockrun handles its signals in order.
    signal(flockrun_pid, Signal::SIGUSR1);
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let line = term.read_line_before(deadline).expect("output ended");
        if line.contains("SIGUSR1") {
            assert!(
                line.contains(&format!("code=0 pid={flockrun_pid}")),
                "{line}"
            );
            break;
        }
        seen.push(line);
    }
    assert!(
        !seen.iter().any(|l| l.contains("SIGINT")),
        "the terminal's SIGINT was delivered twice: {seen:?}"
    );
    assert!(crate::harness::wait_with_deadline(&mut term.child).success());
}

#[test]
fn a_long_wait_shows_one_live_line_on_a_terminal() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", l]);
    let line = format!("echo ready; exec {FLOCKRUN} exec {l} -- echo got-lock");
    let mut term = in_terminal(&line);
    // The live line appears after about a second (the feature's own threshold).
    term.expect_line_containing_raw("flockrun: waiting 1.");
    assert!(holder.release().success());
    let mut rest = String::new();
    let deadline = Instant::now() + PATIENCE;
    while let Some(line) = term.read_line_before(deadline) {
        rest.push_str(&line);
    }
    assert!(rest.contains("got-lock"), "{rest:?}");
    // Erased before COMMAND ran: the last thing before COMMAND's output is the erase.
    let erase_then_output = "\r\x1b[2Kgot-lock";
    assert!(rest.contains(erase_then_output), "{rest:?}");
}

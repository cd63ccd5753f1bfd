//! The flock(1) front end: flockrun invoked as `flock` (a link of that name) or as
//! `flockrun flock ARGS` takes util-linux flock(1)'s exact command line (`getopt_long`'s rules:
//! options stop at the first non-option, unambiguous prefixes of long options count), and
//! answers with flock(1)'s exit statuses and messages: a conflict or timeout exits with `-E`
//! (1 by default) and says nothing without `--verbose`; `--verbose` lines go to stdout,
//! buffered as flock(1)'s are (after COMMAND's output when stdout is not a terminal). Usage
//! errors are worded as util-linux HEAD words them.
//!
//! The locking itself takes flockrun's one road (`run::run_locked`), so flockrun's safety
//! stays where flock(1) is unsafe: a symbolic link or FIFO at LOCK is refused, a lock file
//! deleted under a waiter is re-checked, signals reach COMMAND. What flockrun adds for its
//! own command line (recognising an ancestor's hold, `FLOCKRUN_*` variables) is left out:
//! flock(1) has neither. README.md lists every difference.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flockrun::error::Error;
use flockrun::exit;
use flockrun::lock::{ByteRange, Hold, Request, Target, Verb};
use flockrun::mode::LockMode;
use flockrun::road::{self, Voice, say_as};
use flockrun::supervise::Command;
use flockrun::wait::{Deadline, WaitObserver};

const NAME: &str = "flock";

/// flock(1)'s status for a lock conflict or timeout, unless `-E` says otherwise.
const CONFLICT_DEFAULT: u8 = 1;
/// `EX_UNAVAILABLE`: COMMAND could not be executed.
const CANNOT_EXECUTE: i32 = 69;

/// What a long option is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Shared,
    Exclusive,
    Unlock,
    Nonblock,
    Timeout,
    ConflictExitCode,
    Close,
    NoFork,
    Verbose,
    Fcntl,
    Start,
    Length,
    Fd,
    Help,
    Version,
}

impl Opt {
    fn takes_value(self) -> bool {
        matches!(
            self,
            Opt::Timeout | Opt::ConflictExitCode | Opt::Start | Opt::Length | Opt::Fd
        )
    }
}

/// util-linux HEAD's long options, in its order.
const LONG_OPTIONS: &[(&str, Opt)] = &[
    ("shared", Opt::Shared),
    ("exclusive", Opt::Exclusive),
    ("unlock", Opt::Unlock),
    ("nonblocking", Opt::Nonblock),
    ("nb", Opt::Nonblock),
    ("timeout", Opt::Timeout),
    ("wait", Opt::Timeout),
    ("conflict-exit-code", Opt::ConflictExitCode),
    ("close", Opt::Close),
    ("no-fork", Opt::NoFork),
    ("verbose", Opt::Verbose),
    ("fcntl", Opt::Fcntl),
    ("start", Opt::Start),
    ("length", Opt::Length),
    ("fd", Opt::Fd),
    ("help", Opt::Help),
    ("version", Opt::Version),
];

fn short_option(c: u8) -> Option<Opt> {
    Some(match c {
        b's' => Opt::Shared,
        b'e' | b'x' => Opt::Exclusive,
        b'u' => Opt::Unlock,
        b'n' => Opt::Nonblock,
        b'o' => Opt::Close,
        b'F' => Opt::NoFork,
        b'w' => Opt::Timeout,
        b'E' => Opt::ConflictExitCode,
        b'h' => Opt::Help,
        b'V' => Opt::Version,
        _ => return None,
    })
}

/// The long option `name` (the text after `--`, before any `=`) names: an exact match, or the
/// one option it is a prefix of. `Err` when it names none or several.
fn long_option(name: &[u8]) -> Result<Opt, ()> {
    if let Some((_, opt)) = LONG_OPTIONS.iter().find(|(n, _)| n.as_bytes() == name) {
        return Ok(*opt);
    }
    let mut found: Option<Opt> = None;
    for (long, opt) in LONG_OPTIONS {
        if !name.is_empty() && long.as_bytes().starts_with(name) {
            match found {
                // Two names of one option (--nonblocking, --nb) are not ambiguous.
                Some(seen) if seen != *opt => return Err(()),
                _ => found = Some(*opt),
            }
        }
    }
    found.ok_or(())
}

/// A command line that ends flock without locking: `--help`, `--version`, or a usage error
/// (already said).
struct Done(i32);

fn usage_error(message: &str, try_help: bool) -> Done {
    say_as(NAME, message);
    if try_help {
        let _ = writeln!(
            io::stderr().lock(),
            "Try '{NAME} --help' for more information."
        );
    }
    Done(exit::USAGE)
}

/// A number as util-linux's `str2num_or_err` reads it: decimal, optional leading blanks and
/// sign; out of `i32` range is `ERANGE`.
fn number(text: &OsStr, what: &str) -> Result<i64, Done> {
    let shown = text.to_string_lossy();
    let trimmed = shown.trim_start();
    let value: Result<i64, _> = trimmed.strip_prefix('+').unwrap_or(trimmed).parse();
    match value {
        Ok(n) if n <= i64::from(i32::MAX) => Ok(n),
        Ok(_) => Err(usage_error(
            &format!("{what}: '{shown}': Numerical result out of range"),
            false,
        )),
        Err(_) if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) => {
            Err(usage_error(
                &format!("{what}: '{shown}': Numerical result out of range"),
                false,
            ))
        }
        Err(_) => Err(usage_error(&format!("{what}: '{shown}'"), false)),
    }
}

/// A size as util-linux's `strtosize` reads it: a number (decimal, `0x` hex or `0` octal),
/// optionally with a fraction and a suffix K, M, G, T, P, E (×1024, or ×1000 with `B` after
/// it, `iB` for ×1024 again).
fn size(text: &OsStr, what: &str) -> Result<u64, Done> {
    let shown = text.to_string_lossy();
    parse_size(shown.trim_start()).ok_or_else(|| usage_error(&format!("{what}: '{shown}'"), false))
}

fn parse_size(text: &str) -> Option<u64> {
    if text.starts_with('-') {
        return None;
    }
    let digits_end = |s: &str, radix: u32| {
        s.char_indices()
            .find(|(_, c)| !c.is_digit(radix))
            .map_or(s.len(), |(i, _)| i)
    };
    let (radix, body) = if let Some(hex) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
        (16, hex)
    } else if text.len() > 1 && text.starts_with('0') {
        (8, &text[1..])
    } else {
        (10, text)
    };
    let end = digits_end(body, radix);
    if end == 0 && radix != 8 {
        return None;
    }
    let whole = if end == 0 {
        0
    } else {
        u64::from_str_radix(&body[..end], radix).ok()?
    };
    let mut rest = &body[end..];
    let mut fraction = "";
    if let Some(after) = rest.strip_prefix('.') {
        let n = digits_end(after, 10);
        fraction = &after[..n];
        rest = &after[n..];
        if rest.is_empty() {
            return None; // a fraction needs a suffix
        }
    }
    if rest.is_empty() {
        return Some(whole);
    }
    let mut chars = rest.chars();
    let power = "KMGTPE"
        .find(chars.next()?.to_ascii_uppercase())
        .map(|p| u32::try_from(p).unwrap_or(0) + 1)?;
    let base: u64 = match chars.as_str() {
        "" | "iB" | "ib" => 1024,
        "B" | "b" => 1000,
        _ => return None,
    };
    let unit = base.checked_pow(power)?;
    let mut value = whole.checked_mul(unit)?;
    if !fraction.is_empty() {
        let digits = u32::try_from(fraction.len()).ok()?;
        let scale = 10u64.checked_pow(digits)?;
        let part: u64 = fraction.parse().ok()?;
        value = value.checked_add(
            u64::try_from(u128::from(part) * u128::from(unit) / u128::from(scale)).ok()?,
        )?;
    }
    Some(value)
}

/// What the command line asks for, in flock(1)'s terms.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)] // one per option
struct Invocation {
    mode: LockMode,
    unlock: bool,
    nonblock: bool,
    /// `-w` seconds, as given (0 means `-n`).
    timeout: Option<f64>,
    conflict: u8,
    close: bool,
    no_fork: bool,
    verbose: bool,
    fcntl: bool,
    start: u64,
    length: u64,
    /// A path to lock, or else the descriptor in `fd`.
    file: Option<OsString>,
    fd: Option<i64>,
    command: Option<Command>,
}

impl Invocation {
    fn new() -> Self {
        Invocation {
            mode: LockMode::Exclusive,
            unlock: false,
            nonblock: false,
            timeout: None,
            conflict: CONFLICT_DEFAULT,
            close: false,
            no_fork: false,
            verbose: false,
            fcntl: false,
            start: 0,
            length: 0,
            file: None,
            fd: None,
            command: None,
        }
    }

    /// Applies one option (with its value, for those that take one).
    fn apply(&mut self, opt: Opt, value: &OsStr) -> Result<(), Done> {
        match opt {
            Opt::Shared => self.mode = LockMode::Shared,
            Opt::Exclusive => {
                self.mode = LockMode::Exclusive;
                self.unlock = false;
            }
            Opt::Unlock => self.unlock = true,
            Opt::Nonblock => self.nonblock = true,
            Opt::Timeout => {
                let shown = value.to_string_lossy();
                let seconds: f64 = shown
                    .trim_start()
                    .parse()
                    .map_err(|_| usage_error(&format!("invalid timeout: '{shown}'"), false))?;
                self.timeout = Some(seconds);
            }
            Opt::ConflictExitCode => {
                let what = "invalid exit code (allowed values: 0-255)";
                self.conflict = u8::try_from(number(value, what)?).map_err(|_| {
                    let shown = value.to_string_lossy();
                    usage_error(
                        &format!("{what}: '{shown}': Numerical result out of range"),
                        false,
                    )
                })?;
            }
            Opt::Close => self.close = true,
            Opt::NoFork => self.no_fork = true,
            Opt::Verbose => self.verbose = true,
            Opt::Fcntl => self.fcntl = true,
            Opt::Start => {
                self.start = size(value, "invalid as start offset")?;
                self.fcntl = true;
            }
            Opt::Length => {
                self.length = size(value, "invalid as length of lock range")?;
                self.fcntl = true;
            }
            Opt::Fd => self.fd = Some(number(value, "invalid file descriptor")?),
            Opt::Help => {
                help();
                return Err(Done(0));
            }
            Opt::Version => {
                println!("{NAME} (flockrun {})", env!("CARGO_PKG_VERSION"));
                return Err(Done(0));
            }
        }
        Ok(())
    }
}

/// What the options part of a command line said, and where the rest begins.
struct Options {
    inv: Invocation,
    /// Index of the first word after the options.
    rest: usize,
    /// `--fd` was given.
    use_fd: bool,
    /// `-c`/`--command` came among the options (only `--fd` makes sense of it).
    shell_option: bool,
}

/// An option as found in a word, with the value given in the same word, if any.
type Given = (Opt, Option<OsString>);

/// The options of one word: a long option, or a cluster of short ones. `None` for `-c` or
/// `--command`, which are not options to getopt (they come after FILE) and are noted.
fn options_of(arg: &[u8], shown: &str) -> Result<Option<Vec<Given>>, Done> {
    let mut found = Vec::new();
    if let Some(long) = arg.strip_prefix(b"--") {
        let (name, value) = match long.iter().position(|&b| b == b'=') {
            Some(at) => (
                &long[..at],
                Some(OsStr::from_bytes(&long[at + 1..]).to_owned()),
            ),
            None => (long, None),
        };
        let Ok(opt) = long_option(name) else {
            if arg == b"--command" {
                return Ok(None);
            }
            return Err(usage_error(&format!("unrecognized option '{shown}'"), true));
        };
        if value.is_some() && !opt.takes_value() {
            return Err(usage_error(&format!("unrecognized option '{shown}'"), true));
        }
        found.push((opt, value));
        return Ok(Some(found));
    }
    let cluster = &arg[1..];
    for (at, &c) in cluster.iter().enumerate() {
        let Some(opt) = short_option(c) else {
            if arg == b"-c" {
                return Ok(None);
            }
            let c = char::from(c);
            return Err(usage_error(&format!("unrecognized option '-{c}'"), true));
        };
        if opt.takes_value() {
            let rest = &cluster[at + 1..];
            found.push((
                opt,
                (!rest.is_empty()).then(|| OsStr::from_bytes(rest).to_owned()),
            ));
            break;
        }
        found.push((opt, None));
    }
    Ok(Some(found))
}

/// `getopt_long` with flock(1)'s option string `+sexnoFuw:E:hV` and its long options.
fn parse_options(args: &[OsString]) -> Result<Options, Done> {
    let mut options = Options {
        inv: Invocation::new(),
        rest: args.len(),
        use_fd: false,
        shell_option: false,
    };
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].as_bytes();
        if arg == b"--" {
            i += 1;
            break;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            break; // the first non-option ends the options ('+' in getopt's string)
        }
        i += 1;
        let shown = args[i - 1].to_string_lossy().into_owned();
        let Some(found) = options_of(arg, &shown)? else {
            options.shell_option = true;
            continue;
        };
        for (opt, mut value) in found {
            if opt.takes_value() && value.is_none() {
                let Some(next) = args.get(i) else {
                    return Err(usage_error(
                        &format!("option '{shown}' requires an argument"),
                        true,
                    ));
                };
                value = Some(next.clone());
                i += 1;
            }
            options.use_fd |= opt == Opt::Fd;
            options.inv.apply(opt, &value.unwrap_or_default())?;
        }
    }
    options.rest = i;
    Ok(options)
}

fn parse(args: &[OsString]) -> Result<Invocation, Done> {
    if args.len() < 2 {
        return Err(usage_error("not enough arguments", true));
    }
    let Options {
        mut inv,
        rest,
        use_fd,
        shell_option,
    } = parse_options(args)?;
    if inv.no_fork && inv.close {
        return Err(usage_error(
            "the --no-fork and --close options are incompatible",
            false,
        ));
    }
    let rest = &args[rest..];
    let one_command_argument = |option: &OsStr| {
        usage_error(
            &format!(
                "{} requires exactly one command argument",
                option.to_string_lossy()
            ),
            false,
        )
    };
    if shell_option {
        // `--fd N -c STRING`: STRING is the one word left.
        let [script] = rest else {
            return Err(one_command_argument(OsStr::new("-c")));
        };
        inv.command = Some(Command::shell(script.clone()));
    } else if rest.len() > 1 && !use_fd {
        let after = rest[1].as_bytes();
        if after == b"-c" || after == b"--command" {
            let [_, _, script] = rest else {
                return Err(one_command_argument(&rest[1]));
            };
            inv.command = Some(Command::shell(script.clone()));
        } else {
            inv.command = Command::from_argv(rest[1..].to_vec());
        }
        inv.file = Some(rest[0].clone());
    } else if let Some(first) = rest.first() {
        if use_fd {
            inv.command = Command::from_argv(rest.to_vec());
        } else {
            inv.fd = Some(number(first, "invalid file descriptor")?);
        }
    } else if use_fd {
        return Err(usage_error("missing command", false));
    }
    if inv.file.is_none() && inv.fd.is_none_or(|fd| fd < 0) {
        return Err(usage_error(
            "missing file descriptor, file or directory",
            false,
        ));
    }
    Ok(inv)
}

fn help() {
    let text = format!(
        "\nUsage:\n \
         {NAME} [options] <file>|<directory> <command> [<argument>...]\n \
         {NAME} [options] <file>|<directory> -c <command>\n \
         {NAME} [options] <file descriptor number>\n \
         {NAME} [options] --fd <file descriptor number> -c <command>\n \
         {NAME} [options] --fd <file descriptor number> <command> [<argument>...]\n\n\
         Hold a lock while a command runs, or lock a descriptor the shell opened. This is\n\
         flockrun speaking util-linux flock(1)'s command line; see flockrun-flock(1) for\n\
         where it is stricter than flock(1).\n\n\
         Options:\n \
         -s, --shared             take a shared lock\n \
         -x, -e, --exclusive      take an exclusive lock (the default)\n \
         -u, --unlock             remove the lock\n \
         -n, --nb, --nonblocking  do not wait: fail if the lock is busy\n \
         -w, --timeout, --wait <secs>  wait at most this long\n \
         -E, --conflict-exit-code <number>  exit status for a busy lock or a timeout (1)\n \
         -o, --close              do not pass the lock's descriptor to the command\n \
         -c, --command <command>  run the command string with the shell\n \
         -F, --no-fork            replace flock with the command instead of forking\n     \
         --fcntl              take an OFD lock (fcntl F_OFD_SETLK) instead of flock(2)\n     \
         --start <offset>     first byte of a range to lock (implies --fcntl)\n     \
         --length <number>    how many bytes to lock (implies --fcntl; 0: to the end)\n     \
         --fd <number>        lock this descriptor and run the command\n     \
         --verbose            say how long getting the lock took, and what runs\n\n \
         -h, --help               show this help\n \
         -V, --version            show the version\n"
    );
    let _ = io::stdout().lock().write_all(text.as_bytes());
}

/// The flock(1) front end: `args` includes the program name. Returns the exit status, or
/// never returns when a stop signal ended the wait (flockrun then dies of that signal, as
/// flock(1) would).
#[must_use]
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    let inv = match parse(&args) {
        Ok(inv) => inv,
        Err(Done(status)) => return status,
    };
    let deadline = match inv.timeout {
        // -w 0 is -n.
        _ if inv.nonblock => Deadline::after(Duration::ZERO),
        None => Deadline::forever(),
        Some(t) => {
            let Ok(limit) = Duration::try_from_secs_f64(t) else {
                // A negative or endless timeout: flock(1)'s timer refuses it.
                say_as(NAME, "cannot set up timer: Invalid argument");
                return exit::OS_ERROR;
            };
            Deadline::after(limit)
        }
    };
    let mut request = Request::new(Verb::Exec, inv.file.clone().unwrap_or_default());
    request.mode = inv.mode;
    request.unlock = inv.unlock;
    request.fcntl = inv.fcntl;
    request.range = inv.fcntl.then_some(ByteRange {
        start: inv.start,
        length: inv.length,
    });
    request.close = inv.close;
    request.no_fork = inv.no_fork && inv.command.is_some();
    request.deadline = deadline;
    request.refuse_host_local = std::env::var_os("FLOCKRUN_REFUSE_HOST_LOCAL")
        .is_some_and(|v| !matches!(v.to_str(), Some("" | "0" | "no" | "false" | "off")));
    if inv.file.is_none() {
        request.fd = inv.fd.and_then(|fd| i32::try_from(fd).ok());
    }
    let mut voice = FlockVoice::new(inv.verbose);
    let outcome = road::run_locked(&request, inv.command.as_ref(), &mut voice);
    let status = match outcome {
        Ok(status) => status,
        Err(e) => report(&e, &inv),
    };
    voice.flush();
    status
}

/// The status flock(1) exits with for `error`, after saying what it says.
fn report(error: &Error, inv: &Invocation) -> i32 {
    let shown = || -> String {
        match (&inv.file, inv.fd) {
            (Some(file), _) => file.to_string_lossy().into_owned(),
            (None, Some(fd)) => fd.to_string(),
            (None, None) => String::new(),
        }
    };
    match error {
        Error::Busy { .. } => {
            if inv.verbose {
                say_as(NAME, "failed to get lock");
            }
            i32::from(inv.conflict)
        }
        Error::TimedOut { .. } => {
            if inv.verbose {
                say_as(NAME, "timeout while waiting to get lock");
            }
            i32::from(inv.conflict)
        }
        Error::Interrupted { signal } => die_of(*signal),
        // An exclusive OFD lock needs a descriptor open for writing, which a directory
        // cannot give: upstream flock(1) fails at the lock call, not at the open, and says
        // so with the lock call's status.
        Error::Open { source, .. }
            if inv.fcntl
                && inv.mode == LockMode::Exclusive
                && source.raw_os_error() == Some(libc::EISDIR) =>
        {
            say_as(NAME, &format!("{}: {}", shown(), strerror(source)));
            exit::DATA
        }
        Error::Open { source, hint, .. } | Error::CannotCreate { source, hint, .. } => {
            let mut message = format!("cannot open lock file {}: {}", shown(), strerror(source));
            // flock(1) follows a symbolic link; flockrun refuses it, and says why.
            if source.raw_os_error() == Some(libc::ELOOP) && !hint.is_empty() {
                let _ = write!(message, " ({hint})");
            }
            say_as(NAME, &message);
            match source.raw_os_error() {
                Some(libc::EROFS | libc::ENOSPC | libc::EDQUOT) => exit::CANT_CREATE,
                Some(libc::ENOMEM | libc::EMFILE | libc::ENFILE) => exit::OS_ERROR,
                _ => exit::NO_INPUT,
            }
        }
        Error::BadDescriptor { fd, source } => {
            say_as(NAME, &format!("{fd}: {}", strerror(source)));
            exit::DATA
        }
        Error::LockFailed { source, .. } => {
            say_as(NAME, &format!("{}: {}", shown(), strerror(source)));
            match source.raw_os_error() {
                Some(libc::ENOLCK | libc::ENOMEM) => exit::OS_ERROR,
                _ => exit::DATA,
            }
        }
        Error::NotALock { path, reason } => {
            say_as(NAME, &format!("{}: {reason}", path.display()));
            exit::DATA
        }
        Error::Spawn { program, source } => {
            say_as(
                NAME,
                &format!(
                    "failed to execute {}: {}",
                    program.to_string_lossy(),
                    strerror(source)
                ),
            );
            if source.raw_os_error() == Some(libc::ENOMEM) {
                exit::OS_ERROR
            } else {
                CANNOT_EXECUTE
            }
        }
        Error::Usage { message } => {
            say_as(NAME, message);
            exit::USAGE
        }
        Error::System { .. } => {
            say_as(NAME, &error.to_string());
            exit::OS_ERROR
        }
        Error::WouldDeadlock { .. }
        | Error::EtcdUnreachable { .. }
        | Error::EtcdRefused { .. }
        | Error::ServerUnreachable { .. }
        | Error::ServerRefused { .. }
        | Error::ServerUnfit { .. }
        | Error::OptionFile { .. }
        | Error::LockLost { .. }
        // The front end offers no --slots, --run-limit or --replace.
        | Error::RunLimit { .. }
        | Error::SlotsMismatch { .. }
        | Error::NotReplaced { .. }
        | Error::Internal(_) => {
            say_as(NAME, &error.to_string());
            exit::SOFTWARE
        }
    }
}

/// The C library's text for an error (`strerror`), as flock(1)'s `warn` prints it: what std
/// says, without its " (os error N)".
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Dies of `signal`, as flock(1) does when a signal ends its wait (its dispositions are the
/// defaults); exits 128+N should the signal not kill.
#[allow(unsafe_code)]
fn die_of(signal: i32) -> i32 {
    // SAFETY: restoring the default disposition and sending ourselves the signal; nothing
    // here touches memory.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
        libc::raise(signal);
    }
    exit::from_signal(signal)
}

/// flock(1)'s voice: `--verbose` lines on stdout, buffered as C's stdio buffers them (at
/// once on a terminal, at exit otherwise, and lost on `--no-fork`'s exec); warnings on
/// stderr after `flock: `; no live line.
struct FlockVoice {
    verbose: bool,
    started: Instant,
    /// Lines not yet written to a stdout that is not a terminal.
    pending: String,
    terminal: bool,
}

impl FlockVoice {
    fn new(verbose: bool) -> Self {
        FlockVoice {
            verbose,
            started: Instant::now(),
            pending: String::new(),
            terminal: io::stdout().is_terminal(),
        }
    }

    fn print(&mut self, line: &str) {
        if self.terminal {
            let _ = io::stdout().lock().write_all(line.as_bytes());
        } else {
            self.pending.push_str(line);
        }
    }

    fn flush(&mut self) {
        let _ = io::stdout().lock().write_all(self.pending.as_bytes());
        self.pending.clear();
    }
}

impl WaitObserver for FlockVoice {
    fn warn(&mut self, message: &str) {
        say_as(NAME, &format!("warning: {message}"));
    }
}

impl Voice for FlockVoice {
    fn name(&self) -> &'static str {
        NAME
    }

    fn flockrun_additions(&self) -> bool {
        false
    }

    fn verbose(&self) -> bool {
        self.verbose
    }

    fn acquired(&mut self, _target: &Target, _hold: &dyn Hold) {
        if self.verbose {
            let took = self.started.elapsed();
            self.print(&format!(
                "{NAME}: getting lock took {}.{:06} seconds\n",
                took.as_secs(),
                took.subsec_micros()
            ));
        }
    }

    fn launching(&mut self, command: &Command) {
        if self.verbose {
            self.print(&format!(
                "{NAME}: executing {}\n",
                command.program.to_string_lossy()
            ));
        }
    }
}

/// Whether this process was started as `flock` (through a link of that name).
#[must_use]
pub fn invoked_as_flock(argv0: &OsStr) -> bool {
    PathBuf::from(argv0).file_name() == Some(OsStr::new(NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("flock")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn parsed(list: &[&str]) -> Invocation {
        parse(&args(list)).unwrap_or_else(|Done(s)| panic!("{list:?}: status {s}"))
    }

    #[test]
    fn options_stop_at_the_first_non_option() {
        let inv = parsed(&["-n", "lock", "cmd", "-s", "--verbose"]);
        assert!(inv.nonblock);
        assert_eq!(inv.mode, LockMode::Exclusive);
        assert_eq!(inv.file.as_deref(), Some(OsStr::new("lock")));
        let command = inv.command.unwrap();
        assert_eq!(command.program, "cmd");
        assert_eq!(command.args, ["-s", "--verbose"]);
    }

    #[test]
    fn long_options_may_be_abbreviated_when_unambiguous() {
        let inv = parsed(&["--nonblock", "--excl", "--verb", "--wai=5", "9"]);
        assert!(inv.nonblock && inv.verbose);
        assert_eq!(inv.timeout, Some(5.0));
        assert_eq!(inv.fd, Some(9));
        assert_eq!(long_option(b"no"), Err(()));
        assert_eq!(long_option(b"n"), Err(()));
        assert_eq!(long_option(b"nb"), Ok(Opt::Nonblock));
        assert_eq!(long_option(b"non"), Ok(Opt::Nonblock));
    }

    #[test]
    fn shell_commands_and_descriptors() {
        let inv = parsed(&["-s", "lock", "-c", "echo hi"]);
        assert_eq!(inv.mode, LockMode::Shared);
        assert_eq!(inv.command.unwrap().args[1], "echo hi");
        let inv = parsed(&["--fd", "10", "-c", "echo hi"]);
        assert_eq!(inv.fd, Some(10));
        assert!(inv.file.is_none());
        let inv = parsed(&["--fd=3", "true"]);
        assert_eq!(inv.command.unwrap().program, "true");
        let inv = parsed(&["-w5", "-E42", "lock", "true"]);
        assert_eq!((inv.timeout, inv.conflict), (Some(5.0), 42));
    }

    #[test]
    fn usage_errors_are_64() {
        for bad in [
            &[][..],
            &["--bogus", "x", "true"],
            &["-q", "x", "true"],
            &["-w"],
            &["-w", "abc", "x", "true"],
            &["-E", "256", "x", "true"],
            &["-E", "-1", "x", "true"],
            &["-F", "-o", "x", "true"],
            &["x", "-c", "a", "b"],
            &["abc"],
            &["--fd", "3"],
            &["--shared=yes", "x", "true"],
            &["--start", "-5", "x", "true"],
        ] {
            assert!(
                matches!(parse(&args(bad)), Err(Done(64))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn sizes_are_read_as_util_linux_reads_them() {
        for (text, value) in [
            ("0", 0),
            ("100", 100),
            ("0x10", 16),
            ("010", 8),
            ("1K", 1024),
            ("1KiB", 1024),
            ("1KB", 1000),
            ("2M", 2 << 20),
            ("1.5K", 1536),
        ] {
            assert_eq!(parse_size(text), Some(value), "{text}");
        }
        for bad in ["", "-1", "abc", "1X", "1.5", "1KQ"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}

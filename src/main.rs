//! `flockrun`: arguments in, exit status out, for the two command lines; the locking lives
//! in the library. `cli` defines flockrun's own command line and `run` carries it out;
//! started through a link named `flock`, the program is util-linux flock(1)'s front end
//! (`flock`), which parses flock(1)'s arguments by hand as util-linux does.
//!
//! The entry point is the C library's `main`, not std's: std's start-up reads
//! `/proc/self/maps` and sets up a signal stack to report stack overflows, which is a good
//! share of the start-up time of a program that runs once per cron job or script step. Its
//! other duty, ignoring SIGPIPE so that a write to a closed pipe fails rather than kills,
//! is done here.
#![no_main]
#![allow(unsafe_code)]

mod cli;
mod flock;
mod run;

/// The program: called by the C library with the arguments std reads on its own.
#[unsafe(no_mangle)]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    flockrun::nested::note_process_start();
    // SAFETY: setting a signal disposition; nothing else runs yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let status = match args.first() {
        Some(argv0) if flock::invoked_as_flock(argv0) => flock::run(args),
        _ => run::run(args),
    };
    std::process::exit(status);
}

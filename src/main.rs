//! `flockrun`: arguments in, exit status out. Everything else lives in the library. Started
//! through a link named `flock`, it is util-linux flock(1)'s front end.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let status = match args.first() {
        Some(argv0) if flockrun::flock::invoked_as_flock(argv0) => flockrun::flock::run(args),
        _ => flockrun::run::run(args),
    };
    std::process::exit(status);
}

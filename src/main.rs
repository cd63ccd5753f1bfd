//! `flockrun`: arguments in, exit status out. Everything else lives in the library.

fn main() {
    std::process::exit(flockrun::run::run(std::env::args_os()));
}

//! Tells the binary which commit it was built from and for which target, for
//! `flockrun --version`. Outside a git checkout of flockrun itself (a source tarball, a
//! crate from a registry) there is no commit and the version stands alone.

use std::path::{Path, PathBuf};
use std::process::Command;

// The names do not start with FLOCKRUN_: cargo also sets them in the environment of the
// tests it runs, where a FLOCKRUN_ variable would look like one flockrun gave COMMAND.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=BUILT_FOR_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    if let Some((commit, watched)) = commit(&root) {
        println!("cargo:rustc-env=BUILT_FROM_COMMIT={commit}");
        // Built again when HEAD moves: a commit, a checkout, a fetch into packed refs.
        for path in watched.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// The abbreviated commit of HEAD and the git files that move with it, when `root` is the
/// top of a git work tree (not a directory inside some other project's repository).
fn commit(root: &Path) -> Option<(String, Vec<PathBuf>)> {
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let commit = git(root, &["rev-parse", "--short=12", "HEAD"])?;
    let git_dir = root.join(git(root, &["rev-parse", "--git-dir"])?);
    let mut watched = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git_dir.join(branch));
    }
    Some((commit, watched))
}

/// What `git ARGS` printed in `dir`, trimmed, if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

//! man/ and completions/ are generated from the clap definition; this test fails when the
//! committed files are stale. `UPDATE_GENERATED=1` rewrites them.

use std::fs;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

/// A man page: what `clap_mangen` renders from the definition, then the hand-written roff
/// sections clap cannot know (man/extra/*.roff).
fn man_page(cmd: clap::Command, extras: &[&str]) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page).unwrap();
    for extra in extras {
        let path = root.join("man/extra").join(extra);
        page.extend(fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    page
}

fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let cmd = crate::cli::Cli::command();
    let page = man_page(cmd.clone(), &["exit-status.roff", "flockrun.roff"]);
    files.push((root.join("man/flockrun.1"), page));
    for sub in cmd.get_subcommands() {
        let name = format!("flockrun-{}", sub.get_name());
        let sub = sub.clone().name(&*Box::leak(name.clone().into_boxed_str()));
        // The flock(1) front end answers with flock(1)'s statuses, not flockrun's.
        let statuses = if name == "flockrun-flock" {
            "flock-exit-status.roff"
        } else {
            "exit-status.roff"
        };
        let page = man_page(sub, &[statuses, "see-also.roff"]);
        files.push((root.join(format!("man/{name}.1")), page));
    }
    for (shell, file) in [
        (Shell::Bash, "flockrun.bash"),
        (Shell::Zsh, "_flockrun"),
        (Shell::Fish, "flockrun.fish"),
        (Shell::Elvish, "flockrun.elv"),
        (Shell::PowerShell, "_flockrun.ps1"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut crate::cli::Cli::command(), "flockrun", &mut out);
        files.push((root.join("completions").join(file), out));
    }
    files
}

#[test]
fn man_pages_and_completions_are_fresh() {
    let update = std::env::var_os("UPDATE_GENERATED").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (path, content) in generated() {
        if fs::read(&path).ok().as_deref() == Some(content.as_slice()) {
            continue;
        }
        if update {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &content).unwrap();
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale: {stale:?}; run UPDATE_GENERATED=1 cargo nextest run generated"
    );
}

#[test]
fn man_pages_render_without_warnings() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for entry in fs::read_dir(root.join("man"))
        .unwrap()
        .filter_map(Result::ok)
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "1") {
            continue;
        }
        let out = std::process::Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .output()
            .expect("man(1) from man-db must be installed (.ci/run installs it)");
        assert!(out.status.success(), "{}", path.display());
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(warnings.is_empty(), "{}: {warnings}", path.display());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("EXIT STATUS"),
            "{} has no EXIT STATUS",
            path.display()
        );
    }
}

#[test]
fn bash_completion_loads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("completions/flockrun.bash");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p flockrun",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("flockrun"));
}

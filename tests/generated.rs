//! man/ and completions/ are generated from the clap definition; this test fails when the
//! committed files are stale. `UPDATE_GENERATED=1` rewrites them.

use std::fs;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let cmd = flockrun::cli::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .unwrap();
    files.push((root.join("man/flockrun.1"), page));
    for sub in cmd.get_subcommands() {
        let name = format!("flockrun-{}", sub.get_name());
        let sub = sub.clone().name(&*Box::leak(name.clone().into_boxed_str()));
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page).unwrap();
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
        clap_complete::generate(
            shell,
            &mut flockrun::cli::Cli::command(),
            "flockrun",
            &mut out,
        );
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

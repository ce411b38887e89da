//! Records the compiler that built the runner and the ctxtree revision it
//! measures, for the report.
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CTXTREE_BENCH_RUSTC={version}");

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    // An export without .git (e.g. `git archive`) can name its revision.
    let given = std::env::var("CTXTREE_BENCH_REVISION")
        .ok()
        .filter(|r| !r.is_empty());
    let revision =
        match given.or_else(|| output("git", &["-C", root, "rev-parse", "--short", "HEAD"])) {
            Some(rev) => {
                let dirty = output(
                    "git",
                    &[
                        "-C",
                        root,
                        "status",
                        "--porcelain",
                        "--",
                        "src",
                        "Cargo.toml",
                    ],
                )
                .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{rev} + uncommitted changes in src/")
                } else {
                    rev
                }
            }
            None => "unknown".into(),
        };
    println!("cargo:rustc-env=CTXTREE_BENCH_REVISION={revision}");
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-env-changed=CTXTREE_BENCH_REVISION");
    println!("cargo:rerun-if-changed={root}/src");
    // Ask git where its files are: in a worktree `.git` is a file naming
    // the real folder, and a watched path that does not exist makes cargo
    // rerun this script and rebuild the runner on every `cargo run`.
    if let Some(git_dir) = output("git", &["-C", root, "rev-parse", "--absolute-git-dir"]) {
        for file in ["HEAD", "index"] {
            let path = std::path::Path::new(&git_dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

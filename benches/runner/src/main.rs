//! `ctxtree-bench`: the comparison runner. ctxtree, a Go-style mutex tree and
//! tokio-util's `CancellationToken` through the same scenarios in one run;
//! medians, ratios against ctxtree, a markdown report, JSON/CSV and SVG plots.
//!
//! `cargo run --release -p ctxtree-bench -- --help`

mod alloc;
mod churn;
mod cli;
mod machine;
mod measure;
mod progress;
mod report;
mod scenarios;

use ctxtree_bench::{compose, ops, server, tree};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cli::Options;
use progress::Progress;
use report::Report;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// The entry of one of the runner's child processes.
type ChildMain = fn(&[String]) -> Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The runner's own child processes: a scenario run in a fresh process
    // (`__child`) and the instrumented build's probe (`__probe`).
    let child: Option<ChildMain> = match args.first().map(String::as_str) {
        Some("__child") => Some(scenarios::child_main),
        Some("__probe") => Some(scenarios::probe_main),
        _ => None,
    };
    if let Some(child) = child {
        return match child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    match cli::parse(&args) {
        Ok(opts) => run(&opts, &args),
        // Prints the help (status 0) or the error with a usage line (status 2).
        Err(e) => e.exit(),
    }
}

/// How this run was started, for the report.
fn command_line(args: &[String]) -> String {
    let mut cmd = if std::env::var_os("CARGO").is_some() {
        let profile = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        let mut c = format!("cargo run{profile} -p ctxtree-bench");
        if !args.is_empty() {
            c.push_str(" --");
        }
        c
    } else {
        "ctxtree-bench".to_string()
    };
    for a in args {
        cmd.push(' ');
        cmd.push_str(a);
    }
    cmd
}

/// `<workspace>/target/ctxtree-bench/<stamp>`, or relative to the current
/// folder when the workspace is not where the binary was built.
fn default_out(stamp: &str) -> PathBuf {
    // `parent()`, not `join("../..")`: the path is shown to the user.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2);
    let base = match workspace {
        Some(w) if w.join("Cargo.toml").is_file() => w.join("target"),
        _ => PathBuf::from("target"),
    };
    base.join("ctxtree-bench").join(stamp)
}

/// The output folder as the report names it: canonical (no `..`, `.` or
/// symlinks), and relative when it is under the current folder.
fn clean_path(dir: &Path) -> PathBuf {
    let Ok(full) = dir.canonicalize() else {
        return dir.to_path_buf();
    };
    std::env::current_dir()
        .and_then(|cwd| cwd.canonicalize())
        .ok()
        .and_then(|cwd| full.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|rel| !rel.as_os_str().is_empty())
        .unwrap_or(full)
}

fn run(opts: &Options, args: &[String]) -> ExitCode {
    let cfg = opts.config();
    let mut machine = machine::Machine::probe(command_line(args));
    let dir = opts
        .out
        .clone()
        .unwrap_or_else(|| default_out(&machine::utc_now().stamp()));
    // Fail before the benchmarks, not after.
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!(
            "error: cannot create the output folder {}: {e}",
            dir.display()
        );
        return ExitCode::from(1);
    }
    let dir = clean_path(&dir);
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; use `cargo run --release -p ctxtree-bench`");
    }
    eprintln!(
        "ctxtree-bench: {} cores, load average {}; {}",
        machine.cores,
        machine.load_before,
        opts.settings(&cfg)
    );
    let mut progress = if opts.progress {
        Progress::new(cfg.steps())
    } else {
        Progress::hidden(cfg.steps())
    };
    let rows = scenarios::run_all(&cfg, &mut progress);
    progress.finish();
    machine.load_after = machine::load_average();
    let report = Report {
        machine,
        settings: opts.settings(&cfg),
        threads: cfg.threads.clone(),
        rows,
    };
    println!();
    print!("{}", report::console_table(&report));
    println!();
    print!("{}", report::console_targets(&report));
    match report::write_all(&report, &dir, opts.formats) {
        Ok(files) => {
            println!("\nReport written to {}/", dir.display());
            for f in files {
                println!("  {}", f.file_name().unwrap_or_default().to_string_lossy());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: writing the report to {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `--quick --only derive` produces a report folder (with sampling cut
    /// down further so the test takes milliseconds).
    #[test]
    fn quick_only_one_scenario_writes_a_report() {
        let dir = std::env::temp_dir().join(format!("ctxtree-bench-main-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let args: Vec<String> = [
            "--quick",
            "--only",
            "derive",
            "--out",
            dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let opts = cli::parse(&args).expect("parse");
        let mut cfg = opts.config();
        cfg.sampling.samples = 3;
        cfg.sampling.target = Duration::from_micros(200);
        let mut progress = Progress::hidden(cfg.steps());
        let rows = scenarios::run_all(&cfg, &mut progress);
        assert_eq!(rows.len(), 2);
        assert!(rows[0]
            .cells
            .iter()
            .all(|c| c.median().is_some_and(|m| m > 0.0)));
        assert!(rows[1].cells[2].median().is_some_and(|m| m > 0.0));
        let report = Report {
            machine: machine::Machine::probe(command_line(&args)),
            settings: opts.settings(&cfg),
            threads: cfg.threads.clone(),
            rows,
        };
        report::write_all(&report, opts.out.as_ref().unwrap(), opts.formats).unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(
            md.contains("| derive + cancel + drop, 1 thread | ns |"),
            "{md}"
        );
        assert!(md.contains("--quick --only derive"));
        assert!(dir.join("results.json").is_file());
        assert!(!dir.join("results.csv").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn default_out_is_under_target() {
        let p = default_out("20260101-000000");
        assert!(p.ends_with("target/ctxtree-bench/20260101-000000"));
        assert!(!p.components().any(|c| c == std::path::Component::ParentDir));
    }

    #[test]
    fn output_folder_is_shown_clean() {
        let base = std::env::temp_dir().join(format!("ctxtree-bench-path-{}", std::process::id()));
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        let shown = clean_path(&base.join("a/./b/../b"));
        assert_eq!(shown, base.canonicalize().unwrap().join("a/b"));
        // Under the current folder: relative.
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(clean_path(&cwd.join("src/../src")), PathBuf::from("src"));
        // Not created (yet): left as given.
        let missing = base.join("missing/../x");
        assert_eq!(clean_path(&missing), missing);
        let _ = std::fs::remove_dir_all(&base);
    }
}

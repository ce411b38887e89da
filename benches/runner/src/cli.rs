//! Command-line options, on clap: `--help` is generated from the doc comments
//! below, and a bad argument is an error message, never a panic.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::machine;
use crate::report::Formats;
use crate::scenarios::{Config, SCENARIOS};

/// What the runner does, as the rest of the code sees it (clap's [`Cli`]
/// with `--json`/`--csv` resolved and the scenario list defaulted).
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub quick: bool,
    pub threads: Option<Vec<usize>>,
    pub only: Vec<String>,
    pub out: Option<PathBuf>,
    pub formats: Formats,
    pub samples: Option<usize>,
    pub progress: bool,
}

/// ctxtree-bench: ctxtree side by side with a Go-style mutex tree and
/// tokio-util's CancellationToken, in one run, with ratios against ctxtree.
// `::std::vec::Vec` (not `Vec`) keeps clap from reading a list as repeated
// values: each list option takes one comma-separated value, as before.
#[derive(Parser, Debug)]
// `args_override_self`: a repeated option is not an error; the last one
// counts, as with the earlier hand-written parser.
#[command(
    name = "ctxtree-bench",
    override_usage = "cargo run --release -p ctxtree-bench -- [OPTIONS]",
    after_help = after_help(),
    args_override_self = true
)]
struct Cli {
    /// Fewer and shorter samples, and 10^5 instead of 10^6 in the deep-chain
    /// and storm rows (finishes in well under a minute)
    #[arg(long)]
    quick: bool,
    /// Thread counts for the multi-thread scenarios, comma-separated, e.g.
    /// --threads 1,2,4,8 (default: 1, 2, 4, the powers of two up to the core
    /// count, the core count, and 2 x cores)
    #[arg(long, value_name = "LIST", value_parser = parse_threads)]
    threads: Option<::std::vec::Vec<usize>>,
    /// Run only these scenarios, comma-separated (see SCENARIOS below)
    #[arg(long, value_name = "LIST", value_parser = parse_only)]
    only: Option<::std::vec::Vec<String>>,
    /// Output folder (default: target/ctxtree-bench/<UTC timestamp>/)
    #[arg(long, value_name = "DIR", value_parser = parse_out)]
    out: Option<PathBuf>,
    /// Write results.json (the default when --csv is not given)
    #[arg(long)]
    json: bool,
    /// Write results.csv (instead of results.json, unless --json too)
    #[arg(long)]
    csv: bool,
    /// Samples per cell (default 15; 5 with --quick)
    #[arg(long, value_name = "N", value_parser = parse_samples)]
    samples: Option<usize>,
    /// No progress bar on stderr
    #[arg(long)]
    no_progress: bool,
}

/// The OUTPUT and SCENARIOS sections after the options.
fn after_help() -> String {
    let mut s = String::from(
        "OUTPUT:
    A table on stdout (median (min-max) per implementation, ratios against ctxtree)
    and the targets of issue 6; in the output folder: report.md, results.json or
    results.csv, and SVG plots (throughput vs threads, is_done() vs threads,
    time per operation by scenario).

SCENARIOS:
",
    );
    for (id, what) in SCENARIOS {
        s.push_str(&format!("    {id:<12} {what}\n"));
    }
    s
}

/// Parses the arguments (without the program name). `--help` comes back as
/// an error of kind `DisplayHelp`, which `exit()` prints with status 0.
pub fn parse<I, S>(args: I) -> Result<Options, clap::Error>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let program = std::iter::once(std::ffi::OsString::from("ctxtree-bench"));
    let cli = Cli::try_parse_from(program.chain(args.into_iter().map(Into::into)))?;
    Ok(Options {
        quick: cli.quick,
        threads: cli.threads,
        only: cli.only.unwrap_or_default(),
        out: cli.out,
        formats: Formats {
            json: cli.json || !cli.csv,
            csv: cli.csv,
        },
        samples: cli.samples,
        progress: !cli.no_progress,
    })
}

fn parse_threads(v: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim) {
        let n: usize = part
            .parse()
            .map_err(|_| format!("'{part}' is not a thread count (expected e.g. 1,2,4,8)"))?;
        if !(1..=1024).contains(&n) {
            return Err(format!("{n} is out of range (1..=1024)"));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn parse_only(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !SCENARIOS.iter().any(|(id, _)| *id == part) {
            let known: Vec<&str> = SCENARIOS.iter().map(|(id, _)| *id).collect();
            return Err(format!(
                "unknown scenario '{part}' (known: {})",
                known.join(", ")
            ));
        }
        if !out.iter().any(|s| s == part) {
            out.push(part.to_string());
        }
    }
    if out.is_empty() {
        return Err("needs at least one scenario".into());
    }
    Ok(out)
}

fn parse_out(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("needs a non-empty folder".into());
    }
    Ok(PathBuf::from(v))
}

fn parse_samples(v: &str) -> Result<usize, String> {
    let n: usize = v.parse().map_err(|_| format!("'{v}' is not a number"))?;
    if !(1..=1000).contains(&n) {
        return Err(format!("{n} is out of range (1..=1000)"));
    }
    Ok(n)
}

/// 1, 2, 4, the powers of two up to `cores`, `cores`, and `2 × cores`.
pub fn default_threads(cores: usize) -> Vec<usize> {
    let mut t = vec![1, 2, 4, cores, 2 * cores];
    let mut p = 8;
    while p <= cores {
        t.push(p);
        p *= 2;
    }
    t.sort_unstable();
    t.dedup();
    t
}

impl Options {
    pub fn config(&self) -> Config {
        let threads = self
            .threads
            .clone()
            .unwrap_or_else(|| default_threads(machine::cores()));
        let mut cfg = if self.quick {
            Config::quick(threads)
        } else {
            Config::full(threads)
        };
        if let Some(n) = self.samples {
            cfg.sampling.samples = n;
        }
        cfg.only = self.only.clone();
        cfg
    }

    /// One line for the report.
    pub fn settings(&self, cfg: &Config) -> String {
        let t: Vec<String> = cfg.threads.iter().map(usize::to_string).collect();
        format!(
            "{}{} samples per cell, each ≥ {} ms (multi-thread samples {} ms); threads {}",
            if self.quick { "quick mode: " } else { "" },
            cfg.sampling.samples,
            ms(cfg.sampling.target),
            ms(cfg.burst),
            t.join(",")
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{}", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn opts(args: &[&str]) -> Options {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let o = opts(&[]);
        assert!(!o.quick && o.only.is_empty() && o.out.is_none() && o.progress);
        assert_eq!(o.threads, None);
        assert_eq!(o.samples, None);
        assert_eq!(
            o.formats,
            Formats {
                json: true,
                csv: false
            }
        );
        assert_eq!(default_threads(2), vec![1, 2, 4]);
        assert_eq!(default_threads(1), vec![1, 2, 4]);
        assert_eq!(default_threads(16), vec![1, 2, 4, 8, 16, 32]);
        assert_eq!(default_threads(6), vec![1, 2, 4, 6, 12]);
    }

    #[test]
    fn options() {
        let o = opts(&[
            "--quick",
            "--threads",
            "8,1,2,2",
            "--only=derive,shared",
            "--out",
            "x/y",
            "--csv",
            "--no-progress",
        ]);
        assert!(o.quick && !o.progress);
        assert_eq!(o.threads, Some(vec![1, 2, 8]));
        assert_eq!(o.only, vec!["derive", "shared"]);
        assert_eq!(o.out, Some(PathBuf::from("x/y")));
        assert_eq!(
            o.formats,
            Formats {
                json: false,
                csv: true
            }
        );
        assert_eq!(
            opts(&["--csv", "--json"]).formats,
            Formats {
                json: true,
                csv: true
            }
        );
        assert_eq!(opts(&["--samples", "3"]).config().sampling.samples, 3);
        assert_eq!(opts(&["--threads=4"]).threads, Some(vec![4]));
        let again = opts(&["--quick", "--quick", "--threads", "1", "--threads", "2"]);
        assert!(again.quick);
        assert_eq!(again.threads, Some(vec![2]));
        for help in [&["--help"][..], &["--quick", "-h"]] {
            assert_eq!(parse(help).unwrap_err().kind(), ErrorKind::DisplayHelp);
        }
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        for (args, msg) in [
            (
                &["--threads"][..],
                "a value is required for '--threads <LIST>'",
            ),
            (&["--threads", "0"], "out of range"),
            (&["--threads", "a,2"], "'a' is not a thread count"),
            (
                &["--threads", "--quick"],
                "a value is required for '--threads",
            ),
            (&["--only", "nope"], "unknown scenario 'nope'"),
            (&["--only", ","], "at least one scenario"),
            (&["--samples", "-1"], "unexpected argument '-1'"),
            (&["--samples", "x"], "not a number"),
            (&["--samples", "0"], "out of range"),
            (&["--out="], "non-empty"),
            (&["--quick=yes"], "unexpected value 'yes' for '--quick'"),
            (&["--frobnicate"], "unexpected argument '--frobnicate'"),
            (&["extra"], "unexpected argument 'extra'"),
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_ne!(err.kind(), ErrorKind::DisplayHelp);
            let text = err.to_string();
            assert!(text.contains(msg), "{args:?}: {text}");
        }
    }

    #[test]
    fn help_lists_every_option_and_scenario() {
        let help = parse(["--help"]).unwrap_err().to_string();
        for (id, _) in SCENARIOS {
            assert!(help.contains(id), "{id}: {help}");
        }
        for opt in [
            "--quick",
            "--threads <LIST>",
            "--only <LIST>",
            "--out <DIR>",
            "--json",
            "--csv",
            "--samples <N>",
            "--no-progress",
            "-h, --help",
            "OUTPUT:",
        ] {
            assert!(help.contains(opt), "{opt}: {help}");
        }
    }
}

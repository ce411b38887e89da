//! Command-line options: hand-parsed, with clear errors instead of panics.

use std::path::PathBuf;
use std::time::Duration;

use crate::machine;
use crate::report::Formats;
use crate::scenarios::{Config, SCENARIOS};

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

#[derive(Debug, PartialEq)]
pub enum Action {
    Help,
    Run(Options),
}

pub fn usage() -> String {
    let mut s = String::from(
        "ctxtree-bench: ctxtree side by side with a Go-style mutex tree and tokio-util's
CancellationToken, in one run, with ratios against ctxtree.

USAGE:
    cargo run --release -p ctxtree-bench -- [OPTIONS]

OPTIONS:
    --quick            fewer and shorter samples (finishes in well under a minute)
    --threads LIST     thread counts for the multi-thread scenarios, comma-separated,
                       e.g. --threads 1,2,4,8 (default: 1, 2, 4, the powers of two up
                       to the core count, the core count, and 2 x cores)
    --only LIST        run only these scenarios, comma-separated (see below)
    --out DIR          output folder (default: target/ctxtree-bench/<UTC timestamp>/)
    --json             write results.json (the default when --csv is not given)
    --csv              write results.csv (instead of results.json, unless --json too)
    --samples N        samples per cell (default 15; 5 with --quick)
    --no-progress      no progress bar on stderr
    -h, --help         this help

OUTPUT:
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

pub fn parse(args: &[String]) -> Result<Action, String> {
    let mut o = Options {
        quick: false,
        threads: None,
        only: Vec::new(),
        out: None,
        formats: Formats {
            json: false,
            csv: false,
        },
        samples: None,
        progress: true,
    };
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            args.get(i)
                .filter(|v| !v.starts_with("--"))
                .cloned()
                .ok_or_else(|| format!("{name} needs a value ({what})"))
        };
        let takes_value = matches!(name, "--threads" | "--only" | "--out" | "--samples");
        if !takes_value && inline.is_some() {
            return Err(format!("{name} takes no value"));
        }
        match name {
            "-h" | "--help" => return Ok(Action::Help),
            "--quick" => o.quick = true,
            "--json" => o.formats.json = true,
            "--csv" => o.formats.csv = true,
            "--no-progress" => o.progress = false,
            "--threads" => o.threads = Some(parse_threads(&value("e.g. 1,2,4,8")?)?),
            "--only" => o.only = parse_only(&value("scenario names, comma-separated")?)?,
            "--out" => {
                let v = value("a folder")?;
                if v.is_empty() {
                    return Err("--out needs a non-empty folder".into());
                }
                o.out = Some(PathBuf::from(v));
            }
            "--samples" => {
                let v = value("a number")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--samples: '{v}' is not a number"))?;
                if !(1..=1000).contains(&n) {
                    return Err(format!("--samples: {n} is out of range (1..=1000)"));
                }
                o.samples = Some(n);
            }
            other if other.starts_with('-') => return Err(format!("unknown option '{other}'")),
            other => return Err(format!("unexpected argument '{other}'")),
        }
        i += 1;
    }
    if !o.formats.csv {
        o.formats.json = true;
    }
    Ok(Action::Run(o))
}

fn parse_threads(v: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim) {
        let n: usize = part.parse().map_err(|_| {
            format!("--threads: '{part}' is not a thread count (expected e.g. 1,2,4,8)")
        })?;
        if !(1..=1024).contains(&n) {
            return Err(format!("--threads: {n} is out of range (1..=1024)"));
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
                "--only: unknown scenario '{part}' (known: {})",
                known.join(", ")
            ));
        }
        if !out.iter().any(|s| s == part) {
            out.push(part.to_string());
        }
    }
    if out.is_empty() {
        return Err("--only needs at least one scenario".into());
    }
    Ok(out)
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

    fn p(args: &[&str]) -> Result<Action, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn opts(args: &[&str]) -> Options {
        match p(args) {
            Ok(Action::Run(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = opts(&[]);
        assert!(!o.quick && o.only.is_empty() && o.out.is_none());
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
        ]);
        assert!(o.quick);
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
        assert_eq!(p(&["--help"]), Ok(Action::Help));
        assert_eq!(p(&["--quick", "-h"]), Ok(Action::Help));
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        for (args, msg) in [
            (&["--threads"][..], "--threads needs a value"),
            (&["--threads", "0"], "out of range"),
            (&["--threads", "a,2"], "'a' is not a thread count"),
            (&["--threads", "--quick"], "--threads needs a value"),
            (&["--only", "nope"], "unknown scenario 'nope'"),
            (&["--only", ","], "at least one scenario"),
            (&["--samples", "-1"], "not a number"),
            (&["--samples", "x"], "not a number"),
            (&["--samples", "0"], "out of range"),
            (&["--out="], "non-empty"),
            (&["--quick=yes"], "takes no value"),
            (&["--frobnicate"], "unknown option"),
            (&["extra"], "unexpected argument"),
        ] {
            let err = p(args).expect_err(&format!("{args:?} should fail"));
            assert!(err.contains(msg), "{args:?}: {err}");
        }
    }

    #[test]
    fn help_lists_every_scenario() {
        let u = usage();
        for (id, _) in SCENARIOS {
            assert!(u.contains(id));
        }
        for opt in ["--quick", "--threads", "--only", "--out", "--json", "--csv"] {
            assert!(u.contains(opt));
        }
    }
}

//! What ctxtree's optional instrumentation costs (issue 24): its derive,
//! `is_done` and `with_timeout` rows measured in this process, built
//! without `stats` and `tracing`, and in a second build of the runner with
//! both compiled in (`--features instrumented`), run as a child process,
//! alternating with this one's samples, in one run. `tracing` runs with no
//! subscriber, as with one whose level filters ctxtree's events out: what
//! is measured is the callsite check.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::measure::{Sampler, Stats};
use crate::progress::Progress;
use crate::report::{Cell, Row, Unit, IMPLS};
use crate::tree::CtxTree;

use super::samplers::{derive_cancel_drop, is_done, with_timeout};
use super::Config;

/// The operations compared, as (key, row label).
const OPS: [(&str, &str); 3] = [
    ("derive", "derive + cancel + drop, 1 thread"),
    ("is_done", "is_done() on a live context, 1 thread"),
    ("timeout", "with_timeout + cancel + drop, 1 thread"),
];

/// Rounds of alternation between this process and the child.
const ROUNDS: usize = 3;

/// The three samplers, in `OPS` order.
fn samplers(cfg: &Config) -> Vec<Sampler> {
    vec![
        derive_cancel_drop::<CtxTree>(cfg).expect("ctxtree derives"),
        is_done::<CtxTree>(cfg, 1).expect("ctxtree has is_done"),
        with_timeout::<CtxTree>(cfg).expect("ctxtree has deadlines"),
    ]
}

/// `__probe SAMPLES`, in the instrumented build: `SAMPLES` samples of each
/// operation, printed as one JSON object of arrays keyed as in `OPS`.
pub fn probe_main(args: &[String]) -> Result<(), String> {
    if !cfg!(feature = "instrumented") {
        return Err("__probe: this runner was built without `--features instrumented`".into());
    }
    let samples: usize = args
        .first()
        .and_then(|s| s.parse().ok())
        .ok_or("usage: __probe SAMPLES")?;
    let cfg = Config::full(vec![1]);
    let mut out = serde_json::Map::new();
    for ((key, _), mut sampler) in OPS.iter().zip(samplers(&cfg)) {
        let values: Vec<f64> = (0..samples).map(|_| sampler()).collect();
        out.insert((*key).into(), values.into());
    }
    #[cfg(feature = "instrumented")]
    if ctxtree::stats::snapshot().derived == 0 {
        return Err("__probe: the stats feature counted nothing".into());
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// Builds the instrumented runner beside this one; returns its path.
fn build_instrumented() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = root.join("target/ctxtree-bench-instrumented");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", "ctxtree-bench"])
        .args(["--features", "instrumented", "--target-dir"])
        .arg(&target)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<_> = err.lines().rev().take(5).collect();
        return Err(format!(
            "the instrumented build failed: {}",
            tail.join(" / ")
        ));
    }
    Ok(target.join("release/ctxtree-bench"))
}

/// One child run of `samples` samples of each operation.
fn probe(bin: &Path, samples: usize) -> Result<Vec<Vec<f64>>, String> {
    let out = Command::new(bin)
        .args(["__probe", &samples.to_string()])
        .output()
        .map_err(|e| format!("cannot run the instrumented runner: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("probe output: {e}"))?;
    OPS.iter()
        .map(|(key, _)| {
            json[key]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .ok_or_else(|| format!("probe output has no {key}"))
        })
        .collect()
}

/// Samples of each operation here (`off`) and in the child (`on`),
/// alternating for `ROUNDS` rounds.
fn measure(cfg: &Config, bin: &Path) -> Result<[Vec<Vec<f64>>; 2], String> {
    let per_round = cfg.sampling.samples.div_ceil(ROUNDS);
    let mut here = samplers(cfg);
    let (mut off, mut on) = (vec![Vec::new(); OPS.len()], vec![Vec::new(); OPS.len()]);
    for _ in 0..ROUNDS {
        for (samples, sampler) in off.iter_mut().zip(&mut here) {
            samples.extend((0..per_round).map(|_| sampler()));
        }
        for (samples, child) in on.iter_mut().zip(probe(bin, per_round)?) {
            samples.extend(child);
        }
    }
    Ok([off, on])
}

/// The rows: each operation with the features off (this build) and on
/// (the child), ctxtree's column only.
pub(super) fn feature_rows(id: &str, cfg: &Config, p: &mut Progress) -> Vec<Row> {
    p.step("build the runner with stats + tracing (cargo, once)");
    let measured = build_instrumented().and_then(|bin| {
        p.step("stats + tracing: off here, on in the child, alternating");
        measure(cfg, &bin)
    });
    let dash = || Cell::Na("—".into());
    let mut rows = Vec::new();
    for (i, (key, label)) in OPS.iter().enumerate() {
        let [off, on] = match &measured {
            Ok([off, on]) => [
                Stats::from_samples(off[i].clone()),
                Stats::from_samples(on[i].clone()),
            ],
            Err(e) => {
                let mut cells = vec![Cell::Na(format!("not measured: {e}"))];
                cells.extend((1..IMPLS.len()).map(|_| dash()));
                rows.push(Row::new(id, key, label, Unit::Ns, cells));
                continue;
            }
        };
        let overhead = (on.median / off.median - 1.0) * 100.0;
        let mut cells = vec![Cell::Value(off)];
        cells.extend((1..IMPLS.len()).map(|_| dash()));
        rows.push(Row::new(
            id,
            &format!("{key}_off"),
            &format!("{label}, ctxtree without stats, tracing"),
            Unit::Ns,
            cells,
        ));
        let mut cells = vec![Cell::Value(on)];
        cells.extend((1..IMPLS.len()).map(|_| dash()));
        let mut row = Row::new(
            id,
            &format!("{key}_on"),
            &format!("{label}, ctxtree with stats + tracing"),
            Unit::Ns,
            cells,
        );
        row.note = Some(format!(
            "{overhead:+.1} % over the same build without them, alternating in this run; \
             tracing with no subscriber (ctxtree's events filtered at their callsite)"
        ));
        rows.push(row);
    }
    rows
}

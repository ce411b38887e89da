//! The machine-readable outputs: results.json and results.csv.

use std::fmt::Write as _;

use super::targets::targets;
use super::{Cell, Report, IMPLS};

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json_opt(v: Option<f64>) -> String {
    v.map_or("null".into(), json_num)
}

pub fn json(report: &Report) -> String {
    let m = &report.machine;
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"tool\": \"ctxtree-bench\",");
    let _ = writeln!(
        out,
        "  \"machine\": {{\"date\": {}, \"command\": {}, \"cpu\": {}, \"cores\": {}, \"memory\": {}, \"os\": {}, \"rustc\": {}, \"ctxtree_revision\": {}, \"load_before\": {}, \"load_after\": {}}},",
        json_str(&m.date),
        json_str(&m.command),
        json_str(&m.cpu),
        m.cores,
        json_str(&m.memory),
        json_str(&m.os),
        json_str(&m.rustc),
        json_str(&m.revision),
        json_str(&m.load_before),
        json_str(&m.load_after)
    );
    let _ = writeln!(out, "  \"settings\": {},", json_str(&report.settings));
    let threads: Vec<String> = report.threads.iter().map(usize::to_string).collect();
    let _ = writeln!(out, "  \"threads\": [{}],", threads.join(", "));
    let impls: Vec<String> = IMPLS.iter().map(|s| json_str(s)).collect();
    let _ = writeln!(out, "  \"implementations\": [{}],", impls.join(", "));
    out.push_str("  \"rows\": [\n");
    for (n, row) in report.rows.iter().enumerate() {
        let results: Vec<String> = row
            .cells
            .iter()
            .zip(IMPLS)
            .map(|(cell, name)| {
                let body = match cell {
                    Cell::Value(s) => {
                        let samples: Vec<String> = s.samples.iter().map(|v| json_num(*v)).collect();
                        format!(
                            "{{\"median\": {}, \"min\": {}, \"max\": {}, \"q1\": {}, \"q3\": {}, \"samples\": [{}]}}",
                            json_num(s.median),
                            json_num(s.min),
                            json_num(s.max),
                            json_num(s.q1),
                            json_num(s.q3),
                            samples.join(", ")
                        )
                    }
                    Cell::Na(why) => format!("{{\"na\": {}}}", json_str(why)),
                };
                format!("{}: {body}", json_str(name))
            })
            .collect();
        let ratios: Vec<String> = (1..IMPLS.len())
            .map(|i| format!("{}: {}", json_str(IMPLS[i]), json_opt(row.ratio(i))))
            .collect();
        let _ = write!(
            out,
            "    {{\"scenario\": {}, \"case\": {}, \"label\": {}, \"unit\": {}, \"higher_is_better\": {}, \"note\": {}, \"results\": {{{}}}, \"ctxtree_advantage\": {{{}}}}}",
            json_str(&row.scenario),
            json_str(&row.case),
            json_str(&row.label),
            json_str(row.unit.id()),
            row.unit.higher_is_better(),
            row.note.as_deref().map_or("null".into(), json_str),
            results.join(", "),
            ratios.join(", ")
        );
        out.push_str(if n + 1 < report.rows.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    out.push_str("  ],\n  \"targets\": [\n");
    let targets = targets(&report.rows);
    for (n, t) in targets.iter().enumerate() {
        let _ = write!(
            out,
            "    {{\"target\": {}, \"source\": {}, \"goal\": {}, \"measured\": {}, \"met\": {}, \"verdict\": {}}}",
            json_str(t.what.trim_start_matches("  ")),
            json_str(if t.issue { "issue 6" } else { "anchors.md" }),
            json_str(&t.goal_text()),
            json_opt(t.measured),
            t.met().map_or("null".into(), |b| b.to_string()),
            json_str(&t.verdict())
        );
        out.push_str(if n + 1 < targets.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ]\n}\n");
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn csv(report: &Report) -> String {
    let mut out =
        String::from("scenario,case,label,unit,implementation,median,min,max,q1,q3,samples,ctxtree_advantage,na\n");
    for row in &report.rows {
        for (i, (cell, name)) in row.cells.iter().zip(IMPLS).enumerate() {
            let ratio = if i == 0 {
                String::new()
            } else {
                row.ratio(i).map_or(String::new(), |r| format!("{r}"))
            };
            let (stats, na) = match cell {
                Cell::Value(s) => (
                    format!(
                        "{},{},{},{},{},{}",
                        s.median,
                        s.min,
                        s.max,
                        s.q1,
                        s.q3,
                        s.samples.len()
                    ),
                    String::new(),
                ),
                Cell::Na(why) => (",,,,,".into(), csv_field(why)),
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{stats},{ratio},{na}",
                csv_field(&row.scenario),
                csv_field(&row.case),
                csv_field(&row.label),
                row.unit.id(),
                name
            );
        }
    }
    out
}

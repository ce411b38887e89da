//! The machine-readable outputs: results.json ([`Results`], through
//! serde_json) and results.csv ([`CsvRow`], through csv). The structs here are
//! the files' format; both read back with the same derives.

use std::fmt;
use std::io;
use std::marker::PhantomData;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::targets::targets;
use super::{Cell, Report, IMPLS};
use crate::machine::Machine;
use crate::measure::Stats;

/// results.json.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Always "ctxtree-bench".
    pub tool: String,
    pub machine: Machine,
    /// Samples, sample times and thread list, in words.
    pub settings: String,
    pub threads: Vec<usize>,
    /// The column order of `results` in each row; ctxtree first.
    pub implementations: Vec<String>,
    pub rows: Vec<RowData>,
    pub targets: Vec<TargetData>,
}

/// One scenario case.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct RowData {
    pub scenario: String,
    pub case: String,
    pub label: String,
    /// ASCII unit id: ns, us, ms, Mops/s, req/s, MiB, B, allocs.
    pub unit: String,
    pub higher_is_better: bool,
    pub note: Option<String>,
    pub results: PerImpl<CellData>,
    /// How much better ctxtree's median is than each peer's (> 1: ctxtree
    /// faster or smaller); null without two positive medians.
    pub ctxtree_advantage: PerImpl<Option<f64>>,
}

/// An implementation's statistics (every sample included), or why it has none.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CellData {
    Value(Stats),
    Na { na: String },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetData {
    pub target: String,
    /// "issue 6" or "anchors.md".
    pub source: String,
    pub goal: String,
    pub measured: Option<f64>,
    pub met: Option<bool>,
    pub verdict: String,
}

/// One value per implementation: a JSON object keyed by implementation name,
/// kept in column order (a map type would sort or hash the keys).
#[derive(Debug, PartialEq)]
pub struct PerImpl<T>(pub Vec<(String, T)>);

impl<T: Serialize> Serialize for PerImpl<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for PerImpl<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<T> {
            type Value = PerImpl<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object keyed by implementation name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PerImpl<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(PerImpl(entries))
            }
        }
        d.deserialize_map(Entries(PhantomData))
    }
}

impl Results {
    pub fn new(report: &Report) -> Results {
        let rows = report.rows.iter().map(|row| {
            let results = row.cells.iter().zip(IMPLS).map(|(cell, name)| {
                let data = match cell {
                    Cell::Value(s) => CellData::Value(s.clone()),
                    Cell::Na(why) => CellData::Na { na: why.clone() },
                };
                (name.to_string(), data)
            });
            let advantage = (1..IMPLS.len()).map(|i| (IMPLS[i].to_string(), row.ratio(i)));
            RowData {
                scenario: row.scenario.clone(),
                case: row.case.clone(),
                label: row.label.clone(),
                unit: row.unit.id().into(),
                higher_is_better: row.unit.higher_is_better(),
                note: row.note.clone(),
                results: PerImpl(results.collect()),
                ctxtree_advantage: PerImpl(advantage.collect()),
            }
        });
        let targets = targets(&report.rows).into_iter().map(|t| TargetData {
            target: t.what.trim_start_matches("  ").into(),
            source: if t.issue { "issue 6" } else { "anchors.md" }.into(),
            goal: t.goal_text(),
            measured: t.measured,
            met: t.met(),
            verdict: t.verdict(),
        });
        Results {
            tool: "ctxtree-bench".into(),
            machine: report.machine.clone(),
            settings: report.settings.clone(),
            threads: report.threads.clone(),
            implementations: IMPLS.iter().map(|s| s.to_string()).collect(),
            rows: rows.collect(),
            targets: targets.collect(),
        }
    }
}

pub fn json(report: &Report) -> io::Result<String> {
    let mut text = serde_json::to_string_pretty(&Results::new(report))?;
    text.push('\n');
    Ok(text)
}

/// One line of results.csv: one implementation in one scenario case. Empty
/// fields: no statistics (then `na` says why), or no ratio (ctxtree's own).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct CsvRow {
    pub scenario: String,
    pub case: String,
    pub label: String,
    pub unit: String,
    pub implementation: String,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub q1: Option<f64>,
    pub q3: Option<f64>,
    /// The number of samples (every sample is in results.json).
    pub samples: Option<usize>,
    pub ctxtree_advantage: Option<f64>,
    pub na: Option<String>,
}

pub fn csv_rows(report: &Report) -> Vec<CsvRow> {
    let mut out = Vec::new();
    for row in &report.rows {
        for (i, (cell, name)) in row.cells.iter().zip(IMPLS).enumerate() {
            let stats = match cell {
                Cell::Value(s) => Some(s),
                Cell::Na(_) => None,
            };
            out.push(CsvRow {
                scenario: row.scenario.clone(),
                case: row.case.clone(),
                label: row.label.clone(),
                unit: row.unit.id().into(),
                implementation: name.into(),
                median: stats.map(|s| s.median),
                min: stats.map(|s| s.min),
                max: stats.map(|s| s.max),
                q1: stats.map(|s| s.q1),
                q3: stats.map(|s| s.q3),
                samples: stats.map(|s| s.samples.len()),
                ctxtree_advantage: if i == 0 { None } else { row.ratio(i) },
                na: match cell {
                    Cell::Na(why) => Some(why.clone()),
                    Cell::Value(_) => None,
                },
            });
        }
    }
    out
}

pub fn csv(report: &Report) -> io::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in csv_rows(report) {
        w.serialize(row)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    String::from_utf8(bytes).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::super::tiny;
    use super::*;

    #[test]
    fn json_round_trips_through_serde() {
        let report = tiny();
        let text = json(&report).unwrap();
        let back: Results = serde_json::from_str(&text).unwrap();
        assert_eq!(back, Results::new(&report));
        assert_eq!(back.rows.len(), report.rows.len());
        // Column order survives, and the shapes are the documented ones.
        let names: Vec<&str> = back.rows[0].results.0.iter().map(|(k, _)| &**k).collect();
        assert_eq!(names, IMPLS);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let timeout = &value["rows"][4];
        assert_eq!(timeout["results"]["tokio-util"]["na"], "n/a (no deadlines)");
        assert_eq!(timeout["note"], "a \"quoted\" note, with a comma");
        assert_eq!(
            timeout["ctxtree_advantage"]["tokio-util"],
            serde_json::Value::Null
        );
        assert_eq!(value["rows"][0]["results"]["ctxtree"]["median"], 21.0);
        assert_eq!(value["machine"]["cpu"], "Test CPU");
        assert!(value["targets"][0]["met"].is_boolean());
    }

    #[test]
    fn csv_has_a_header_and_a_line_per_implementation_and_case() {
        let report = tiny();
        let text = csv(&report).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("scenario,case,label,unit,implementation,median,min,max,q1,q3,samples,ctxtree_advantage,na")
        );
        assert_eq!(text.lines().count(), 1 + report.rows.len() * IMPLS.len());
        assert!(text.contains(
            "timeout,1,with_timeout + cancel | drop,ns,tokio-util,,,,,,,,n/a (no deadlines)"
        ));
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let back: Vec<CsvRow> = reader.deserialize().collect::<Result<_, _>>().unwrap();
        assert_eq!(back, csv_rows(&report));
        assert_eq!(back[1].ctxtree_advantage, report.rows[0].ratio(1));
    }
}

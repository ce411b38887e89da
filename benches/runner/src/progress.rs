//! Progress on stderr: an indicatif bar with the step's name and an ETA on a
//! terminal; one plain line per step when stderr is not a terminal or `CI` is
//! set (a redrawn bar turns a CI log into noise); nothing with `--no-progress`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    total: usize,
    done: usize,
    mode: Mode,
    start: Instant,
}

enum Mode {
    Bar(ProgressBar),
    Lines,
    Hidden,
}

/// A bar only for a person watching a terminal, never in CI.
fn wants_bar(stderr_is_terminal: bool, ci: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && ci.is_none_or(|v| v.is_empty())
}

fn bar(total: usize) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "[{bar:30}] {pos:>3}/{len} {elapsed:>4} (ETA {eta}) {wide_msg}",
    )
    .expect("the template is valid")
    .progress_chars("#>-");
    // No steady tick: a ticker thread redrawing during a measurement would be
    // one more thread competing for the cores; the bar redraws at each step.
    ProgressBar::new(total as u64).with_style(style)
}

fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        let ci = std::env::var_os("CI");
        let mode = if wants_bar(std::io::stderr().is_terminal(), ci.as_deref()) {
            Mode::Bar(bar(total))
        } else {
            Mode::Lines
        };
        Progress {
            total,
            done: 0,
            mode,
            start: Instant::now(),
        }
    }

    pub fn hidden(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            mode: Mode::Hidden,
            start: Instant::now(),
        }
    }

    #[cfg(test)]
    pub fn done(&self) -> usize {
        self.done
    }

    /// Announces the next step (and counts the previous one as done).
    pub fn step(&mut self, label: &str) {
        let shown = self.done;
        self.done += 1;
        match &self.mode {
            Mode::Bar(bar) => {
                bar.set_message(label.to_string());
                bar.set_position(shown as u64);
            }
            Mode::Lines => eprintln!(
                "[{:>3}/{}] {} {label}",
                shown + 1,
                self.total,
                clock(self.start.elapsed())
            ),
            Mode::Hidden => {}
        }
    }

    /// Clears the bar and prints the total time.
    pub fn finish(&mut self) {
        let secs = self.start.elapsed().as_secs_f64();
        match &self.mode {
            Mode::Bar(bar) => {
                bar.finish_and_clear();
                eprintln!("{} steps done in {secs:.1} s", self.total);
            }
            Mode::Lines => eprintln!("done in {secs:.1} s"),
            Mode::Hidden => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn bar_only_on_a_terminal_outside_ci() {
        assert!(wants_bar(true, None));
        assert!(wants_bar(true, Some(OsStr::new(""))));
        assert!(!wants_bar(true, Some(OsStr::new("true"))));
        assert!(!wants_bar(false, None));
    }

    #[test]
    fn steps_are_counted_in_every_mode() {
        for mut p in [Progress::hidden(2), Progress::new(2)] {
            p.step("one");
            p.step("two");
            assert_eq!(p.done(), 2);
            p.finish();
        }
        assert_eq!(clock(Duration::from_secs(75)), "1:15");
    }
}

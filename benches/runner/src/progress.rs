//! A progress bar on stderr: redrawn in place on a terminal, one line per
//! step otherwise (CI logs), silent when hidden.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    total: usize,
    done: usize,
    mode: Mode,
    start: Instant,
}

#[derive(PartialEq)]
enum Mode {
    Bar,
    Lines,
    Hidden,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        let mode = if std::io::stderr().is_terminal() {
            Mode::Bar
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
            mode: Mode::Hidden,
            ..Progress::new(total)
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
        let secs = self.start.elapsed().as_secs();
        let clock = format!("{}:{:02}", secs / 60, secs % 60);
        let mut err = std::io::stderr().lock();
        match self.mode {
            Mode::Hidden => {}
            Mode::Lines => {
                let _ = writeln!(err, "[{:>3}/{}] {clock} {label}", shown + 1, self.total);
            }
            Mode::Bar => {
                let width = 30;
                let filled = (shown * width)
                    .checked_div(self.total)
                    .unwrap_or(0)
                    .min(width);
                let mut label = label.to_string();
                if label.chars().count() > 60 {
                    label = label.chars().take(59).collect::<String>() + "…";
                }
                let _ = write!(
                    err,
                    "\r\x1b[2K[{}{}] {:>3}/{} {clock} {label}",
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    shown,
                    self.total
                );
                let _ = err.flush();
            }
        }
    }

    /// Clears the bar and prints the total time.
    pub fn finish(&mut self) {
        let secs = self.start.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        match self.mode {
            Mode::Hidden => {}
            Mode::Bar => {
                let _ = writeln!(
                    err,
                    "\r\x1b[2K[{}] {}/{} done in {secs:.1} s",
                    "#".repeat(30),
                    self.total,
                    self.total
                );
            }
            Mode::Lines => {
                let _ = writeln!(err, "done in {secs:.1} s");
            }
        }
    }
}

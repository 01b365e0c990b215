//! A live status line: redrawn in place on a terminal, printed once when done otherwise
//! (so piped output and logs hold the outcome, not hundreds of redraws).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a live line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(80);

/// One status line that changes while something takes time.
pub struct Live {
    tty: bool,
    started: Instant,
    drawn: Option<Instant>,
    width: usize,
}

impl Live {
    /// A live line on standard output.
    pub fn start() -> Self {
        Self { tty: std::io::stdout().is_terminal(), started: Instant::now(), drawn: None, width: 0 }
    }

    /// Time since the line started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Redraws the line (on a terminal, at most every few tens of milliseconds).
    pub fn update(&mut self, text: &str) {
        if !self.tty || self.drawn.is_some_and(|at| at.elapsed() < REDRAW) {
            return;
        }
        self.draw(text);
        self.drawn = Some(Instant::now());
    }

    /// Replaces the line with its final text and ends it.
    pub fn finish(mut self, text: &str) {
        if self.tty {
            self.draw(text);
            println!();
        } else {
            println!("{text}");
        }
    }

    fn draw(&mut self, text: &str) {
        let pad = self.width.saturating_sub(text.chars().count());
        print!("\r{text}{}", " ".repeat(pad));
        self.width = text.chars().count();
        let _ = std::io::stdout().flush();
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

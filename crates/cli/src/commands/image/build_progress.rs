//! How `image build` shows its steps: `plain` lines like Docker's classic builder (`Step 3/7
//! : RUN make`, ` ---> Using cache`, the RUN output, ` ---> done in 0.31s`), or on a terminal
//! (`tty`) one line per step with a running timer that ends as `DONE 0.31s` or `CACHED`, the
//! RUN output printed above the steps as it comes.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Instant;

/// What the node tells about a build, one event at a time.
pub trait Progress {
    fn step(&mut self, text: &str);
    fn cached(&mut self);
    fn output(&mut self, text: &str);
    /// The build ended (with an image or not).
    fn finish(&mut self);
}

/// Docker's classic builder output on stdout.
#[derive(Default)]
pub struct Plain {
    step: Option<(Instant, bool)>,
}

impl Plain {
    fn close(&mut self) {
        if let Some((t, false)) = self.step.take() {
            println!(" ---> done in {:.2}s", t.elapsed().as_secs_f64());
        }
    }
}

impl Progress for Plain {
    fn step(&mut self, text: &str) {
        self.close();
        println!("{text}");
        self.step = Some((Instant::now(), false));
    }
    fn cached(&mut self) {
        println!(" ---> Using cache");
        if let Some(s) = self.step.as_mut() {
            s.1 = true;
        }
    }
    fn output(&mut self, text: &str) {
        print!("{text}");
    }
    fn finish(&mut self) {
        self.close();
    }
}

/// The terminal view: a line per step (spinner and timer while it runs).
pub struct Tty {
    mp: MultiProgress,
    current: Option<(ProgressBar, String, Instant, bool)>,
    /// An output line not yet ended by a newline.
    partial: String,
}

impl Tty {
    pub fn new(target: ProgressDrawTarget) -> Tty {
        Tty {
            mp: MultiProgress::with_draw_target(target),
            current: None,
            partial: String::new(),
        }
    }

    fn close(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.say(&line);
        }
        if let Some((pb, text, started, cached)) = self.current.take() {
            let end = if cached {
                "CACHED".to_string()
            } else {
                format!("DONE {:.2}s", started.elapsed().as_secs_f64())
            };
            pb.set_style(ProgressStyle::with_template("{msg}").expect("template"));
            pb.finish_with_message(format!("✔ {text}  {end}"));
        }
    }

    fn say(&self, line: &str) {
        let _ = self.mp.println(format!("  │ {line}"));
    }
}

impl Progress for Tty {
    fn step(&mut self, text: &str) {
        self.close();
        let pb = self.mp.add(ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg}  {elapsed}")
                .expect("template")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
        );
        pb.set_message(text.to_string());
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        self.current = Some((pb, text.to_string(), Instant::now(), false));
    }
    fn cached(&mut self) {
        if let Some(c) = self.current.as_mut() {
            c.3 = true;
        }
    }
    fn output(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.say(line.trim_end_matches('\n'));
        }
    }
    fn finish(&mut self) {
        let drew = self.current.is_some();
        self.close();
        // indicatif leaves the cursor at the end of the last step's line.
        if drew && !self.mp.is_hidden() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_view_ends_each_step_as_done_or_cached_with_run_output_above() {
        let term = indicatif::InMemoryTerm::new(12, 80);
        let mut p = Tty::new(ProgressDrawTarget::term_like_with_hz(
            Box::new(term.clone()),
            200,
        ));
        p.step("Step 1/3 : FROM busybox");
        p.step("Step 2/3 : RUN echo hi");
        p.output("hi\nthere");
        p.output(" again\n");
        p.step("Step 3/3 : ENV A=1");
        p.cached();
        p.finish();
        let screen = term.contents();
        assert!(screen.contains("  │ hi\n  │ there again"), "{screen}");
        assert!(
            screen.contains("✔ Step 2/3 : RUN echo hi  DONE "),
            "{screen}"
        );
        assert!(screen.contains("✔ Step 3/3 : ENV A=1  CACHED"), "{screen}");
    }
}

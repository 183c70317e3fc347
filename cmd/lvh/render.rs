//! Draws the library's progress events: indicatif bars when stderr is a terminal
//! (and not CI), plain timestamped lines otherwise. Never writes to stdout, which
//! is kept for results.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lvh::progress::{Event, Outcome, Reporter, StageId, Stream, Unit};

/// How often plain mode repeats a progress count for one stage.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

pub struct Renderer {
    fancy: Option<MultiProgress>,
    verbose: u8,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    stages: HashMap<StageId, StageView>,
}

struct StageView {
    name: String,
    bar: Option<ProgressBar>,
    last_print: Instant,
}

/// True when bars make sense: stderr is a terminal and we are not in CI.
pub fn want_fancy() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

impl Renderer {
    pub fn new(fancy: bool, verbose: u8) -> Self {
        let fancy = fancy.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Renderer {
            fancy,
            verbose,
            state: Mutex::new(State::default()),
        }
    }

    /// Prints a line above the bars (or plainly).
    pub fn println(&self, line: &str) {
        match &self.fancy {
            Some(mp) => {
                let _ = mp.println(line);
            }
            None => errln!("{line}"),
        }
    }

    fn spinner_style() -> ProgressStyle {
        ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg:.dim} {elapsed:>4}")
            .expect("valid template")
    }

    fn bytes_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{spinner:.cyan} {prefix:.bold} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template")
        .progress_chars("=> ")
    }

    fn items_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{spinner:.cyan} {prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {wide_msg:.dim}",
        )
        .expect("valid template")
        .progress_chars("=> ")
    }

    fn start(&self, st: &mut State, id: StageId, parent: Option<StageId>, name: String) {
        let depth = parent.map_or(0, |p| if st.stages.contains_key(&p) { 1 } else { 0 });
        let label = format!("{}{}", "  ".repeat(depth), name);
        let bar = match &self.fancy {
            Some(mp) => {
                let pb = mp.add(ProgressBar::new_spinner());
                pb.set_style(Self::spinner_style());
                pb.set_prefix(label.clone());
                pb.enable_steady_tick(Duration::from_millis(120));
                Some(pb)
            }
            None => {
                errln!("==> {label}");
                None
            }
        };
        st.stages.insert(
            id,
            StageView {
                name: label,
                bar,
                last_print: Instant::now(),
            },
        );
    }

    fn progress(&self, st: &mut State, id: StageId, pos: u64, total: Option<u64>, unit: Unit) {
        let Some(v) = st.stages.get_mut(&id) else {
            return;
        };
        match &v.bar {
            Some(pb) => {
                if let Some(t) = total {
                    if pb.length() != Some(t) {
                        pb.set_length(t);
                        pb.set_style(match unit {
                            Unit::Bytes => Self::bytes_style(),
                            Unit::Items => Self::items_style(),
                        });
                    }
                }
                pb.set_position(pos);
            }
            None => {
                if v.last_print.elapsed() >= PLAIN_PROGRESS_EVERY {
                    v.last_print = Instant::now();
                    let fmt = |n: u64| match unit {
                        Unit::Bytes => HumanBytes(n).to_string(),
                        Unit::Items => n.to_string(),
                    };
                    match total {
                        Some(t) => errln!("    {}: {} / {}", v.name, fmt(pos), fmt(t)),
                        None => errln!("    {}: {}", v.name, fmt(pos)),
                    }
                }
            }
        }
    }

    fn end(&self, st: &mut State, id: StageId, outcome: Outcome, elapsed: Duration) {
        let Some(v) = st.stages.remove(&id) else {
            return;
        };
        let what = match outcome {
            Outcome::Done => "done",
            Outcome::Cached => "cached",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "FAILED",
        };
        let text = format!("{what} in {:.1}s", elapsed.as_secs_f64());
        match v.bar {
            Some(pb) => {
                pb.set_style(
                    ProgressStyle::with_template("  {prefix:.bold} {wide_msg}")
                        .expect("valid template"),
                );
                pb.finish_with_message(text);
            }
            None => errln!("<== {}: {text}", v.name),
        }
    }
}

impl Reporter for Renderer {
    fn report(&self, event: Event) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::StageStart { id, parent, name } => self.start(&mut st, id, parent, name),
            Event::Progress {
                id,
                pos,
                total,
                unit,
            } => self.progress(&mut st, id, pos, total, unit),
            Event::Message { id, message } => match st.stages.get(&id) {
                Some(StageView { bar: Some(pb), .. }) => pb.set_message(message),
                Some(v) => errln!("    {}: {message}", v.name),
                None => errln!("{message}"),
            },
            Event::Line {
                stage,
                stream,
                line,
            } => {
                let bar = stage
                    .and_then(|s| st.stages.get(&s))
                    .and_then(|v| v.bar.clone());
                if self.verbose > 0 {
                    let mark = if stream == Stream::Stderr { "!" } else { "|" };
                    self.println(&format!("    {mark} {line}"));
                } else if let Some(pb) = bar {
                    pb.set_message(line);
                }
            }
            Event::StageEnd {
                id,
                outcome,
                elapsed,
            } => self.end(&mut st, id, outcome, elapsed),
            Event::Info(m) => self.println(&m),
            Event::Warning(m) => self.println(&format!("warning: {m}")),
        }
    }
}

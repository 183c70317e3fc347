//! Progress events: the library reports what it is doing here and the binary
//! decides how to draw it (bars on a terminal, plain lines in CI, nothing in tests).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Identifies one stage (a step of work with a start and an end).
pub type StageId = u64;

/// Which output stream of a child a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a progress count measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items,
}

/// How a stage ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Cached,
    Skipped,
    Failed,
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    StageStart {
        id: StageId,
        parent: Option<StageId>,
        name: String,
    },
    Progress {
        id: StageId,
        pos: u64,
        total: Option<u64>,
        unit: Unit,
    },
    Message {
        id: StageId,
        message: String,
    },
    Line {
        stage: Option<StageId>,
        stream: Stream,
        line: String,
    },
    StageEnd {
        id: StageId,
        outcome: Outcome,
        elapsed: Duration,
    },
    Info(String),
    Warning(String),
}

/// Receives events. Implementations must be cheap: they are called from hot loops.
pub trait Reporter: Send + Sync {
    fn report(&self, event: Event);
}

/// Drops every event.
#[derive(Default, Debug, Clone, Copy)]
pub struct NullReporter;

impl Reporter for NullReporter {
    fn report(&self, _event: Event) {}
}

/// Keeps every event, for tests.
#[derive(Default, Debug)]
pub struct RecordingReporter(Mutex<Vec<Event>>);

impl RecordingReporter {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The text of every `Line` event, in order.
    pub fn lines(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Line { line, .. } => Some(line),
                _ => None,
            })
            .collect()
    }
}

impl Reporter for RecordingReporter {
    fn report(&self, event: Event) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

fn next_stage_id() -> StageId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A running stage. Ends as `Failed` when dropped without [`Stage::finish`], so an
/// early return through `?` is reported truthfully.
pub struct Stage<'a> {
    reporter: &'a dyn Reporter,
    id: StageId,
    start: Instant,
    ended: bool,
}

impl<'a> Stage<'a> {
    pub fn start(reporter: &'a dyn Reporter, name: impl Into<String>) -> Self {
        Self::start_under(reporter, None, name)
    }

    pub fn start_under(
        reporter: &'a dyn Reporter,
        parent: Option<StageId>,
        name: impl Into<String>,
    ) -> Self {
        let id = next_stage_id();
        reporter.report(Event::StageStart {
            id,
            parent,
            name: name.into(),
        });
        Stage {
            reporter,
            id,
            start: Instant::now(),
            ended: false,
        }
    }

    /// A sub-stage of this one.
    pub fn child(&self, name: impl Into<String>) -> Stage<'a> {
        Stage::start_under(self.reporter, Some(self.id), name)
    }

    pub fn id(&self) -> StageId {
        self.id
    }

    pub fn reporter(&self) -> &'a dyn Reporter {
        self.reporter
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn progress(&self, pos: u64, total: Option<u64>, unit: Unit) {
        self.reporter.report(Event::Progress {
            id: self.id,
            pos,
            total,
            unit,
        });
    }

    pub fn message(&self, message: impl Into<String>) {
        self.reporter.report(Event::Message {
            id: self.id,
            message: message.into(),
        });
    }

    pub fn line(&self, stream: Stream, line: impl Into<String>) {
        self.reporter.report(Event::Line {
            stage: Some(self.id),
            stream,
            line: line.into(),
        });
    }

    pub fn finish(mut self, outcome: Outcome) -> Duration {
        self.end(outcome)
    }

    fn end(&mut self, outcome: Outcome) -> Duration {
        let elapsed = self.start.elapsed();
        if !self.ended {
            self.ended = true;
            self.reporter.report(Event::StageEnd {
                id: self.id,
                outcome,
                elapsed,
            });
        }
        elapsed
    }
}

impl Drop for Stage<'_> {
    fn drop(&mut self) {
        self.end(Outcome::Failed);
    }
}

/// Reports an informational message not tied to a stage.
pub fn info(reporter: &dyn Reporter, msg: impl Into<String>) {
    reporter.report(Event::Info(msg.into()));
}

/// Reports a warning not tied to a stage.
pub fn warn(reporter: &dyn Reporter, msg: impl Into<String>) {
    reporter.report(Event::Warning(msg.into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_stage_reports_failure() {
        let rec = RecordingReporter::default();
        {
            let _s = Stage::start(&rec, "x");
        }
        let ev = rec.events();
        assert!(matches!(ev[0], Event::StageStart { .. }));
        assert!(matches!(
            ev[1],
            Event::StageEnd {
                outcome: Outcome::Failed,
                ..
            }
        ));
    }

    #[test]
    fn finished_stage_reports_once() {
        let rec = RecordingReporter::default();
        let s = Stage::start(&rec, "x");
        let c = s.child("y");
        c.finish(Outcome::Cached);
        s.finish(Outcome::Done);
        let ends: Vec<_> = rec
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::StageEnd { .. }))
            .collect();
        assert_eq!(ends.len(), 2);
    }
}

//! A small scheduler for a forest of jobs (each item has at most one parent):
//! up to `jobs` items run at once on scoped threads, an item starts only after
//! its parent succeeded, a failure skips only its descendants, and cancellation
//! skips everything not yet started. The decision of what to do next is the
//! pure function [`advance`]; [`run`] only moves items between threads.
//!
//! Every worker is joined explicitly before [`run`] returns. A scope's implicit
//! join only waits for the closure, not for the thread's exit, whose
//! thread-local destructors may still be running C library code (OpenSSL's
//! per-thread cleanup, registered when libguestfs was loaded on a worker):
//! had the caller gone on to exit the process, OpenSSL's exit handler would
//! free that same per-thread state at the same time (a double free that
//! corrupted the heap, found as an abort after `images build`'s summary).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Why an item did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Its parent (this index) failed or was skipped.
    Parent(usize),
    /// Cancellation came before it started.
    Cancelled,
    /// Its ancestors form a cycle, so it can never become ready.
    Cycle,
}

/// How an item ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status<S, F> {
    /// Not asked for (`pending` was false); counts as a success for children.
    NotRun,
    Succeeded(S),
    Failed(F),
    Skipped(Skip),
}

/// One item's progress, as [`advance`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Pending,
    Running,
    Ok,
    Bad(Option<Skip>),
}

/// What a free worker does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start this item (now marked Running).
    Run(usize),
    /// Nothing is ready yet; wait for a running item to end.
    Wait,
    /// Nothing is pending or running: the schedule is complete.
    Done,
}

/// Picks the next item: the lowest-index pending item whose parent succeeded
/// (or that has none). On the way it marks as skipped every pending item whose
/// parent went bad, or every pending item at all when `cancelled`.
pub fn advance(states: &mut [State], parent_of: &[Option<usize>], cancelled: bool) -> Next {
    // Skips propagate down chains whose members may come in any order, so
    // repeat until nothing changes.
    loop {
        let mut changed = false;
        for k in 0..states.len() {
            if states[k] != State::Pending {
                continue;
            }
            let skip = if cancelled {
                Some(Skip::Cancelled)
            } else {
                parent_of[k]
                    .filter(|&p| matches!(states[p], State::Bad(_)))
                    .map(Skip::Parent)
            };
            if let Some(s) = skip {
                states[k] = State::Bad(Some(s));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let ready = (0..states.len()).find(|&k| {
        states[k] == State::Pending && parent_of[k].is_none_or(|p| states[p] == State::Ok)
    });
    if let Some(k) = ready {
        states[k] = State::Running;
        return Next::Run(k);
    }
    if states.contains(&State::Running) {
        return Next::Wait;
    }
    // Pending items with nothing running and nothing ready wait on each other.
    for s in states.iter_mut().filter(|s| **s == State::Pending) {
        *s = State::Bad(Some(Skip::Cycle));
    }
    Next::Done
}

/// How often an idle worker looks at `cancelled` while others run.
const POLL: Duration = Duration::from_millis(200);

/// Runs `work` on every item with `pending[k]`, at most `jobs` at a time, each
/// after its parent (`parent_of[k]`) succeeded or was not pending. `cancelled`
/// is polled between items; running items are not interrupted (their work
/// function watches cancellation itself). Returns each item's status by index.
pub fn run<S, F, W>(
    parent_of: &[Option<usize>],
    pending: &[bool],
    jobs: usize,
    cancelled: &(dyn Fn() -> bool + Sync),
    work: W,
) -> Vec<Status<S, F>>
where
    S: Send,
    F: Send,
    W: Fn(usize) -> Result<S, F> + Sync,
{
    assert_eq!(parent_of.len(), pending.len());
    let n = pending.len();
    let states: Vec<State> = pending
        .iter()
        .map(|&p| if p { State::Pending } else { State::Ok })
        .collect();
    let outcomes: Vec<Option<Result<S, F>>> = (0..n).map(|_| None).collect();
    let shared = Mutex::new((states, outcomes));
    let cv = Condvar::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, n.max(1)))
            .map(|_| {
                scope.spawn(|| loop {
                    let k = {
                        let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                        loop {
                            match advance(&mut g.0, parent_of, cancelled()) {
                                Next::Run(k) => break Some(k),
                                Next::Done => break None,
                                Next::Wait => {
                                    g = cv
                                        .wait_timeout(g, POLL)
                                        .unwrap_or_else(|e| e.into_inner())
                                        .0
                                }
                            }
                        }
                    };
                    let Some(k) = k else {
                        cv.notify_all();
                        return;
                    };
                    let r = work(k);
                    let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                    g.0[k] = if r.is_ok() {
                        State::Ok
                    } else {
                        State::Bad(None)
                    };
                    g.1[k] = Some(r);
                    cv.notify_all();
                })
            })
            .collect();
        // Explicit joins wait for each thread's exit, destructors included
        // (see the module's doc); a worker's panic is the work's own bug.
        let panics: Vec<_> = workers.into_iter().filter_map(|w| w.join().err()).collect();
        if let Some(p) = panics.into_iter().next() {
            std::panic::resume_unwind(p);
        }
    });
    let (states, outcomes) = shared.into_inner().unwrap_or_else(|e| e.into_inner());
    states
        .into_iter()
        .zip(outcomes)
        .map(|(s, o)| match (s, o) {
            (_, Some(Ok(v))) => Status::Succeeded(v),
            (_, Some(Err(e))) => Status::Failed(e),
            (State::Bad(Some(skip)), None) => Status::Skipped(skip),
            _ => Status::NotRun,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    fn never() -> bool {
        false
    }

    #[test]
    fn advance_table() {
        use State::*;
        // (states, parents, cancelled) -> (next, states after)
        type Case = (Vec<State>, Vec<Option<usize>>, bool, Next, Vec<State>);
        let cases: Vec<Case> = vec![
            (
                vec![Pending],
                vec![None],
                false,
                Next::Run(0),
                vec![Running],
            ),
            (
                vec![Pending, Pending],
                vec![Some(1), None],
                false,
                Next::Run(1),
                vec![Pending, Running],
            ),
            (
                vec![Running, Pending],
                vec![None, Some(0)],
                false,
                Next::Wait,
                vec![Running, Pending],
            ),
            (
                vec![Ok, Pending],
                vec![None, Some(0)],
                false,
                Next::Run(1),
                vec![Ok, Running],
            ),
            (
                vec![Bad(None), Pending, Pending, Pending],
                vec![None, Some(0), Some(1), None],
                false,
                Next::Run(3),
                vec![
                    Bad(None),
                    Bad(Some(Skip::Parent(0))),
                    Bad(Some(Skip::Parent(1))),
                    Running,
                ],
            ),
            // a grandchild listed before its parent is still skipped
            (
                vec![Pending, Pending, Bad(None)],
                vec![Some(1), Some(2), None],
                false,
                Next::Done,
                vec![
                    Bad(Some(Skip::Parent(1))),
                    Bad(Some(Skip::Parent(2))),
                    Bad(None),
                ],
            ),
            (
                vec![Running, Pending, Ok],
                vec![None, None, None],
                true,
                Next::Wait,
                vec![Running, Bad(Some(Skip::Cancelled)), Ok],
            ),
            (
                vec![Pending, Pending],
                vec![Some(1), Some(0)],
                false,
                Next::Done,
                vec![Bad(Some(Skip::Cycle)), Bad(Some(Skip::Cycle))],
            ),
            (
                vec![Ok, Bad(None)],
                vec![None, None],
                false,
                Next::Done,
                vec![Ok, Bad(None)],
            ),
        ];
        for (i, (mut states, parents, cancelled, next, after)) in cases.into_iter().enumerate() {
            assert_eq!(advance(&mut states, &parents, cancelled), next, "case {i}");
            assert_eq!(states, after, "case {i}");
        }
    }

    #[test]
    fn one_job_runs_in_index_order_after_parents() {
        // two chains: 0 <- 2 and 1 <- 3 <- 4
        let parents = [None, None, Some(0), Some(1), Some(3)];
        let order = Mutex::new(Vec::new());
        let st = run::<(), (), _>(&parents, &[true; 5], 1, &never, |k| {
            order.lock().unwrap().push(k);
            Ok(())
        });
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert!(st.iter().all(|s| *s == Status::Succeeded(())));
    }

    #[test]
    fn a_child_waits_for_its_parent_even_with_free_workers() {
        let parents = [Some(1), None];
        let done = Mutex::new(Vec::new());
        run::<(), (), _>(&parents, &[true; 2], 4, &never, |k| {
            if k == 1 {
                std::thread::sleep(Duration::from_millis(50));
            }
            done.lock().unwrap().push(k);
            Ok(())
        });
        assert_eq!(*done.lock().unwrap(), vec![1, 0]);
    }

    #[test]
    fn parallelism_is_bounded_by_jobs_and_used() {
        for jobs in [1, 2, 3] {
            let now = AtomicUsize::new(0);
            let max = AtomicUsize::new(0);
            run::<(), (), _>(&[None; 8], &[true; 8], jobs, &never, |_| {
                let c = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(c, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            });
            assert_eq!(max.load(Ordering::SeqCst), jobs, "jobs {jobs}");
        }
    }

    #[test]
    fn a_failure_skips_only_its_descendants() {
        // 0 fails; 1 and 2 descend from it; 3 is independent; 4 is not pending
        // (e.g. cached) and its child 5 runs.
        let parents = [None, Some(0), Some(1), None, None, Some(4)];
        let pending = [true, true, true, true, false, true];
        let st = run(&parents, &pending, 2, &never, |k| {
            if k == 0 {
                Err("boom")
            } else {
                Ok(k)
            }
        });
        assert_eq!(
            st,
            vec![
                Status::Failed("boom"),
                Status::Skipped(Skip::Parent(0)),
                Status::Skipped(Skip::Parent(1)),
                Status::Succeeded(3),
                Status::NotRun,
                Status::Succeeded(5),
            ]
        );
    }

    #[test]
    fn cancellation_skips_what_has_not_started() {
        let cancel = AtomicBool::new(false);
        let is_cancelled = || cancel.load(Ordering::SeqCst);
        let st = run::<usize, (), _>(&[None; 5], &[true; 5], 1, &is_cancelled, |k| {
            if k == 1 {
                cancel.store(true, Ordering::SeqCst);
            }
            Ok(k)
        });
        assert_eq!(
            st,
            vec![
                Status::Succeeded(0),
                Status::Succeeded(1),
                Status::Skipped(Skip::Cancelled),
                Status::Skipped(Skip::Cancelled),
                Status::Skipped(Skip::Cancelled),
            ]
        );
    }

    #[test]
    fn a_child_is_not_started_after_cancellation() {
        // 1 waits for 0; the cancel comes while 0 runs; 1 must not start.
        let cancel = AtomicBool::new(false);
        let is_cancelled = || cancel.load(Ordering::SeqCst);
        let st = run::<(), (), _>(&[None, Some(0)], &[true; 2], 2, &is_cancelled, |k| {
            if k == 0 {
                cancel.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
            }
            Ok(())
        });
        assert_eq!(
            st,
            vec![Status::Succeeded(()), Status::Skipped(Skip::Cancelled)]
        );
    }

    #[test]
    fn nothing_to_do() {
        let st = run::<(), (), _>(&[], &[], 4, &never, |_| Ok(()));
        assert!(st.is_empty());
        let st = run::<(), (), _>(&[None], &[false], 4, &never, |_| panic!("ran"));
        assert_eq!(st, vec![Status::NotRun]);
    }

    /// The rule [`run`] keeps for C libraries' thread-exit cleanup: when it
    /// returns, every worker's thread-local destructors have finished (an
    /// implicit scope join returns before them; this test failed with it).
    #[test]
    fn workers_have_fully_exited_when_run_returns() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CREATED: AtomicUsize = AtomicUsize::new(0);
        static DESTRUCTED: AtomicUsize = AtomicUsize::new(0);
        struct SlowExit;
        impl Drop for SlowExit {
            fn drop(&mut self) {
                std::thread::sleep(Duration::from_millis(300));
                DESTRUCTED.fetch_add(1, Ordering::SeqCst);
            }
        }
        thread_local!(static ON_EXIT: SlowExit = {
            CREATED.fetch_add(1, Ordering::SeqCst);
            SlowExit
        });
        let n = 3;
        let statuses = run::<(), (), _>(&vec![None; n], &vec![true; n], n, &never, |_| {
            ON_EXIT.with(|_| {});
            std::thread::sleep(Duration::from_millis(50));
            Ok(())
        });
        assert!(statuses.iter().all(|s| *s == Status::Succeeded(())));
        let created = CREATED.load(Ordering::SeqCst);
        assert!(created >= 1);
        assert_eq!(DESTRUCTED.load(Ordering::SeqCst), created);
    }
}

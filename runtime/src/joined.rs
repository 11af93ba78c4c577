//! Concurrent requests for one on-demand view, joined into one guest call.
//!
//! Every guest call costs a fresh instance ([`crate::fresh`]). A server
//! answering many requests for the same on-demand view at once pays it once
//! per batch instead: a request that arrives while a call of its view is in
//! flight waits, and the next call runs every waiting request's rows on one
//! fresh instance. Each request gets back its own rows and row errors. No
//! timer is involved: a request that finds no call in flight runs at once,
//! so an idle server adds no latency.
//!
//! Invariants, enforced here:
//! - Only views whose batch invariance was checked at `apply` are joined
//!   ([`JoinedCalls::for_view`]): for them a row's outputs do not depend on
//!   the other rows of its call. That is the guarantee backfill already
//!   relies on; a view allowed with `--allow-batch-dependent` never joins.
//! - At most one joined call per view is in flight: `in_flight` is true
//!   exactly while a [`Leadership`] exists, and there is at most one.
//! - A failed joined call is nobody's answer: every request in it runs
//!   again alone, so a bad request fails with its own error, and the
//!   others get the values they would have got alone. So does a request
//!   with a row error (its message may name the row's place in the call).
//! - A waiting request whose caller went away cannot stall the others:
//!   leadership is a value, and dropping it (delivered or not) hands it on.
//! - A joined call holds at most the view's `max_rows_per_call` rows, so it
//!   is one guest call; a request larger than that runs alone.
//! - A joined call stops at its leader's deadline, so it holds the leader's
//!   thread (an async worker, under the server's inline budget) no longer
//!   than a call of the leader's own would. A request with more time left,
//!   whose joined call ran out of time, runs again alone with its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use futures_channel::oneshot;

use crate::error::TransformError;
use crate::store::{Invariance, ViewRecord};
use crate::transform::{RowError, Transform, TransformOutput};

/// What a joined call runs: a [`Transform`], or a double in unit tests.
pub trait Calls {
    /// [`Transform::run_within`].
    fn run_within(&self, input: &RecordBatch, timeout: Duration) -> Result<TransformOutput, TransformError>;
    /// The most rows one guest call takes.
    fn max_rows_per_call(&self) -> usize;
}

impl Calls for Transform {
    fn run_within(&self, input: &RecordBatch, timeout: Duration) -> Result<TransformOutput, TransformError> {
        Transform::run_within(self, input, timeout)
    }

    fn max_rows_per_call(&self) -> usize {
        self.limits().max_rows_per_call.max(1)
    }
}

/// The joined calls of one on-demand view.
#[derive(Default)]
pub struct JoinedCalls {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A call of this view is running (a [`Leadership`] exists).
    in_flight: bool,
    /// Requests waiting for the next call, oldest first.
    queue: VecDeque<Waiting>,
}

struct Waiting {
    input: RecordBatch,
    reply: oneshot::Sender<Reply>,
}

enum Reply {
    /// The request's share of a joined call.
    Done(TransformOutput),
    /// The joined call failed: run alone, for an answer of your own.
    Alone,
    /// No call is in flight and you are first in line: run the next one.
    Lead(Leadership),
}

/// The right to run this view's next call. Dropping it hands it to the
/// first waiting request, or ends `in_flight` when none waits.
struct Leadership {
    calls: Arc<JoinedCalls>,
    /// False for a leadership that was never delivered (its receiver was
    /// gone): the sender hands it on instead.
    armed: bool,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if self.armed {
            self.calls.hand_off();
        }
    }
}

/// An answer, and whether its call was shared with other requests.
pub struct Joined {
    /// The request's outputs and row errors, as a call of its own would give.
    pub result: Result<TransformOutput, TransformError>,
    /// Other requests' rows were in the same guest call.
    pub shared: bool,
}

impl JoinedCalls {
    /// Joined calls for `record`'s view, if it may be joined: an on-demand
    /// view whose batch invariance was checked at `apply`. Unchecked views
    /// (applied before probing existed) and allowed batch-dependent ones
    /// run each request alone.
    pub fn for_view(record: &ViewRecord) -> Option<Arc<JoinedCalls>> {
        let batch_invariant = match record.invariance {
            Invariance::Checked => true,
            Invariance::Unchecked | Invariance::Allowed(_) => false,
        };
        (batch_invariant && !record.materialized).then(Arc::default)
    }

    /// Runs `input` through `calls`, joined with the other requests for
    /// this view that wait while a call is in flight, by `deadline`. A
    /// joined call stops at its leader's deadline.
    pub async fn run(self: &Arc<Self>, calls: &impl Calls, input: RecordBatch, deadline: Instant) -> Joined {
        let turn = {
            let mut state = self.state.lock().expect("no panic while held");
            if !state.in_flight {
                state.in_flight = true;
                Ok(Leadership {
                    calls: self.clone(),
                    armed: true,
                })
            } else {
                let (reply, answer) = oneshot::channel();
                state.queue.push_back(Waiting {
                    input: input.clone(),
                    reply,
                });
                Err(answer)
            }
        };
        let leadership = match turn {
            Ok(leadership) => leadership,
            Err(answer) => match answer.await {
                Ok(Reply::Done(output)) => {
                    return Joined {
                        result: Ok(output),
                        shared: true,
                    };
                }
                Ok(Reply::Lead(leadership)) => leadership,
                // A sender dropped without a reply is a bug elsewhere;
                // running alone is still a correct answer.
                Ok(Reply::Alone) | Err(oneshot::Canceled) => {
                    return Joined {
                        result: calls.run_within(&input, remaining(deadline)),
                        shared: false,
                    };
                }
            },
        };
        self.lead(calls, input, deadline, leadership)
    }

    /// Runs the leader's rows and every waiting request's that fit in one
    /// guest call, and answers each.
    fn lead(&self, calls: &impl Calls, input: RecordBatch, deadline: Instant, leadership: Leadership) -> Joined {
        let mut members = Vec::new();
        let mut rows = input.num_rows();
        {
            let mut state = self.state.lock().expect("no panic while held");
            while let Some(next) = state.queue.front() {
                if rows + next.input.num_rows() > calls.max_rows_per_call() {
                    break;
                }
                rows += next.input.num_rows();
                members.extend(state.queue.pop_front());
            }
        }
        if members.is_empty() {
            let result = calls.run_within(&input, remaining(deadline));
            drop(leadership);
            return Joined { result, shared: false };
        }
        let inputs = std::iter::once(&input).chain(members.iter().map(|m| &m.input));
        let joined = arrow_select::concat::concat_batches(&input.schema(), inputs)
            .ok()
            .and_then(|joined| calls.run_within(&joined, remaining(deadline)).ok());
        let Some(output) = joined else {
            for member in members {
                let _gone = member.reply.send(Reply::Alone);
            }
            drop(leadership);
            return Joined {
                result: calls.run_within(&input, remaining(deadline)),
                shared: false,
            };
        };
        let mut offset = input.num_rows();
        for member in members {
            let part = share(&output, offset, member.input.num_rows());
            offset += member.input.num_rows();
            // A row error's message may name the row's place in its call:
            // such a request runs alone, for the message it would get alone.
            let reply = match part.row_errors.is_empty() {
                true => Reply::Done(part),
                false => Reply::Alone,
            };
            let _gone = member.reply.send(reply);
        }
        drop(leadership);
        let own = share(&output, 0, input.num_rows());
        match own.row_errors.is_empty() {
            true => Joined {
                result: Ok(own),
                shared: true,
            },
            false => Joined {
                result: calls.run_within(&input, remaining(deadline)),
                shared: false,
            },
        }
    }

    /// Gives the next call to the first waiting request that is still
    /// there, or ends `in_flight`.
    fn hand_off(self: &Arc<Self>) {
        let mut state = self.state.lock().expect("no panic while held");
        while let Some(next) = state.queue.pop_front() {
            let leadership = Leadership {
                calls: self.clone(),
                armed: true,
            };
            match next.reply.send(Reply::Lead(leadership)) {
                Ok(()) => return,
                Err(Reply::Lead(mut undelivered)) => undelivered.armed = false,
                Err(Reply::Done(_) | Reply::Alone) => unreachable!("sent a Lead"),
            }
        }
        state.in_flight = false;
    }

    /// Requests waiting for the next call.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.state.lock().expect("no panic while held").queue.len()
    }
}

/// The rows `offset..offset + rows` of a joined call's output, with their
/// row errors numbered from the request's first row.
fn share(output: &TransformOutput, offset: usize, rows: usize) -> TransformOutput {
    let row_errors = output
        .row_errors
        .iter()
        .filter(|e| (offset..offset + rows).contains(&e.row))
        .map(|e| RowError {
            row: e.row - offset,
            message: e.message.clone(),
        })
        .collect();
    TransformOutput {
        batch: output.batch.slice(offset, rows),
        row_errors,
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{TransformError, TransformErrorKind};
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{ArrayRef, Int64Array};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A double of a transform: `y = 2x`, a row error where `x` is -7, the
    /// whole call fails where `x` is -13. Records each call's row count,
    /// and takes `pause` per call so that requests pile up behind it.
    struct Doubler {
        sizes: Mutex<Vec<usize>>,
        /// The time limit each call was given.
        timeouts: Mutex<Vec<Duration>>,
        pause: Duration,
        max_rows: usize,
        running: AtomicUsize,
        most_running: AtomicUsize,
    }

    impl Doubler {
        fn new(pause: Duration, max_rows: usize) -> Doubler {
            Doubler {
                sizes: Mutex::new(Vec::new()),
                timeouts: Mutex::new(Vec::new()),
                pause,
                max_rows,
                running: AtomicUsize::new(0),
                most_running: AtomicUsize::new(0),
            }
        }
    }

    impl Calls for Doubler {
        fn run_within(&self, input: &RecordBatch, timeout: Duration) -> Result<TransformOutput, TransformError> {
            self.timeouts.lock().unwrap().push(timeout);
            if timeout < self.pause {
                // What the epoch deadline would do.
                self.sizes.lock().unwrap().push(input.num_rows());
                return Err(TransformError {
                    view: "double".into(),
                    kind: TransformErrorKind::Timeout {
                        limit: timeout,
                        caller: true,
                    },
                });
            }
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_running.fetch_max(running, Ordering::SeqCst);
            std::thread::sleep(self.pause);
            self.sizes.lock().unwrap().push(input.num_rows());
            self.running.fetch_sub(1, Ordering::SeqCst);
            let x = input.column(0).as_primitive::<Int64Type>();
            if x.values().contains(&-13) {
                return Err(TransformError {
                    view: "double".into(),
                    kind: TransformErrorKind::Failed("unlucky -13".into()),
                });
            }
            let row_errors = (0..x.len())
                .filter(|&row| x.value(row) == -7)
                .map(|row| RowError {
                    row,
                    message: format!("minus seven at row {row}"),
                })
                .collect();
            let y: Int64Array = x.iter().map(|v| v.map(|v| v * 2)).collect();
            Ok(TransformOutput {
                batch: RecordBatch::try_from_iter([("y", Arc::new(y) as ArrayRef)]).unwrap(),
                row_errors,
            })
        }

        fn max_rows_per_call(&self) -> usize {
            self.max_rows
        }
    }

    fn batch(x: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(x.to_vec())) as ArrayRef)]).unwrap()
    }

    fn ys(output: &TransformOutput) -> Vec<i64> {
        output.batch.column(0).as_primitive::<Int64Type>().values().to_vec()
    }

    /// Sends `requests` at once, each from its own task, and returns their
    /// answers in request order.
    fn concurrently(calls: Arc<Doubler>, requests: Vec<Vec<i64>>) -> Vec<Joined> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let joined = Arc::new(JoinedCalls::default());
        runtime.block_on(async {
            let tasks: Vec<_> = requests
                .into_iter()
                .map(|x| {
                    let (joined, calls) = (joined.clone(), calls.clone());
                    tokio::spawn(async move {
                        let deadline = Instant::now() + Duration::from_secs(5);
                        joined.run(&*calls, batch(&x), deadline).await
                    })
                })
                .collect();
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await.unwrap());
            }
            answers
        })
    }

    #[test]
    fn concurrent_requests_share_calls_and_each_gets_its_own_rows_and_row_errors() {
        let calls = Arc::new(Doubler::new(Duration::from_millis(5), 1_000));
        // Every fourth request has a row error (x = -7 in its third row).
        let requests: Vec<Vec<i64>> = (0..40)
            .map(|i| {
                if i % 4 == 0 {
                    vec![i, 100 + i, -7]
                } else {
                    vec![i, 100 + i]
                }
            })
            .collect();
        let answers = concurrently(calls.clone(), requests.clone());
        for (x, answer) in requests.iter().zip(&answers) {
            let output = answer.result.as_ref().unwrap();
            assert_eq!(ys(output), x.iter().map(|v| v * 2).collect::<Vec<_>>());
            let expected = match x.len() {
                3 => vec![RowError {
                    row: 2,
                    message: "minus seven at row 2".into(),
                }],
                _ => vec![],
            };
            assert_eq!(
                output.row_errors, expected,
                "the row errors a call of its own gives, messages included"
            );
        }
        assert!(
            answers.iter().filter(|a| a.shared).count() >= 10,
            "requests waiting behind a call share the next"
        );
        let sizes = calls.sizes.lock().unwrap().clone();
        assert!(sizes.len() < 40, "fewer calls than requests: {sizes:?}");
    }

    /// A call in flight, held by hand: requests that run now wait.
    fn hold(joined: &Arc<JoinedCalls>) -> Leadership {
        joined.state.lock().unwrap().in_flight = true;
        Leadership {
            calls: joined.clone(),
            armed: true,
        }
    }

    fn poll<F: std::future::Future>(future: &mut std::pin::Pin<Box<F>>) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.as_mut().poll(&mut cx)
    }

    #[test]
    fn a_failing_request_in_a_joined_call_fails_alone_and_the_others_get_their_values() {
        let calls = Doubler::new(Duration::ZERO, 1_000);
        let joined = Arc::new(JoinedCalls::default());
        let deadline = Instant::now() + Duration::from_secs(5);
        let held = hold(&joined);
        let mut first = Box::pin(joined.run(&calls, batch(&[1]), deadline));
        let mut bad = Box::pin(joined.run(&calls, batch(&[-13]), deadline));
        let mut last = Box::pin(joined.run(&calls, batch(&[3]), deadline));
        for waiting in [
            poll(&mut first).is_pending(),
            poll(&mut bad).is_pending(),
            poll(&mut last).is_pending(),
        ] {
            assert!(waiting);
        }
        drop(held);
        // `first` leads the three in one call; it fails, so each runs alone.
        let answers = [poll(&mut first), poll(&mut bad), poll(&mut last)].map(|answer| match answer {
            std::task::Poll::Ready(answer) => answer.result.map(|output| ys(&output)),
            std::task::Poll::Pending => panic!("left waiting"),
        });
        assert_eq!(
            *calls.sizes.lock().unwrap(),
            vec![3, 1, 1, 1],
            "one joined call, then each alone"
        );
        assert_eq!(answers[0].as_ref().unwrap(), &vec![2]);
        let error = answers[1].as_ref().unwrap_err();
        assert!(error.to_string().contains("unlucky -13"), "{error}");
        assert_eq!(answers[2].as_ref().unwrap(), &vec![6]);
        assert!(!joined.state.lock().unwrap().in_flight);
    }

    #[test]
    fn a_joined_call_stops_at_its_leaders_deadline_and_a_request_with_more_time_runs_alone() {
        let calls = Doubler::new(Duration::from_millis(100), 1_000);
        let joined = Arc::new(JoinedCalls::default());
        let held = hold(&joined);
        let mut short = Box::pin(joined.run(&calls, batch(&[1]), Instant::now() + Duration::from_millis(50)));
        let mut long = Box::pin(joined.run(&calls, batch(&[2]), Instant::now() + Duration::from_secs(10)));
        assert!(poll(&mut short).is_pending() && poll(&mut long).is_pending());
        drop(held);
        // `short` leads both, under its own 50 ms: the call runs out of time.
        let std::task::Poll::Ready(answer) = poll(&mut short) else {
            panic!("left waiting");
        };
        let error = answer.result.unwrap_err();
        assert!(matches!(error.kind, TransformErrorKind::Timeout { .. }), "{error}");
        let std::task::Poll::Ready(answer) = poll(&mut long) else {
            panic!("left waiting");
        };
        assert_eq!(ys(&answer.result.unwrap()), vec![4], "alone, with its own time");
        let timeouts = calls.timeouts.lock().unwrap().clone();
        assert!(
            timeouts[0] <= Duration::from_millis(50),
            "the joined call had {:?}",
            timeouts[0]
        );
        assert_eq!(*calls.sizes.lock().unwrap(), vec![2, 1, 1], "joined, then each alone");
    }

    #[test]
    fn no_joined_call_holds_more_than_the_views_rows_per_call() {
        let calls = Arc::new(Doubler::new(Duration::from_millis(2), 4));
        let requests: Vec<Vec<i64>> = (0..30).map(|i| vec![i; 1 + i as usize % 3]).collect();
        let answers = concurrently(calls.clone(), requests.clone());
        for (x, answer) in requests.iter().zip(&answers) {
            assert_eq!(
                ys(answer.result.as_ref().unwrap()),
                x.iter().map(|v| v * 2).collect::<Vec<_>>()
            );
        }
        let sizes = calls.sizes.lock().unwrap().clone();
        assert!(sizes.iter().all(|&rows| rows <= 4), "{sizes:?}");
        // Nothing failed, so nothing ran alone beside a joined call.
        assert_eq!(
            calls.most_running.load(Ordering::SeqCst),
            1,
            "one call in flight at most"
        );
    }

    #[test]
    fn a_waiting_request_that_goes_away_does_not_stall_the_next() {
        let calls = Doubler::new(Duration::ZERO, 1_000);
        let joined = Arc::new(JoinedCalls::default());
        let deadline = Instant::now() + Duration::from_secs(5);
        // Gone before the call in flight ends, and gone after the lead was
        // delivered to it (the leadership is dropped unread in its channel).
        for delivered in [false, true] {
            let held = hold(&joined);
            let mut gone = Box::pin(joined.run(&calls, batch(&[1]), deadline));
            let mut next = Box::pin(joined.run(&calls, batch(&[2]), deadline));
            assert!(poll(&mut gone).is_pending() && poll(&mut next).is_pending());
            assert_eq!(joined.waiting(), 2);
            if delivered {
                drop(held);
                drop(gone);
            } else {
                drop(gone);
                drop(held);
            }
            let std::task::Poll::Ready(answer) = poll(&mut next) else {
                panic!("the next request was left waiting (lead delivered: {delivered})");
            };
            assert_eq!(ys(&answer.result.unwrap()), vec![4]);
            assert!(!joined.state.lock().unwrap().in_flight);
        }
    }
}

//! An in-memory replication log, for the applier's unit tests: messages
//! in a deque, trimmed or taken down with one call.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::log::{Batches, Bounds, Log, LogFault};

/// A log in memory, for unit tests: messages in a deque, and a flag
/// that makes every call fail as an unreachable log would.
#[derive(Clone, Default)]
pub(crate) struct MemoryLog {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// Bumped on every change, to wake readers.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// Sequence of `messages[0]`, minus one.
    trimmed: u64,
    messages: VecDeque<Bytes>,
    ids: HashMap<String, u64>,
    down: bool,
}

impl State {
    fn bounds(&self) -> Bounds {
        Bounds {
            first: self.trimmed + 1,
            last: self.trimmed + self.messages.len() as u64,
        }
    }
}

impl MemoryLog {
    fn change(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.inner.state.lock().unwrap());
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// Appends `body` as a client bypassing the servers would.
    pub(crate) fn append(&self, body: &str) -> u64 {
        let mut sequence = 0;
        self.change(|state| {
            state.messages.push_back(Bytes::from(body.to_string()));
            sequence = state.bounds().last;
        });
        sequence
    }

    /// Removes the messages before `first`, as the stream's limits would.
    pub(crate) fn trim_before(&self, first: u64) {
        self.change(|state| {
            while state.trimmed + 1 < first && state.messages.pop_front().is_some() {
                state.trimmed += 1;
            }
        });
    }

    /// Takes the log down (`true`) or brings it back.
    pub(crate) fn set_down(&self, down: bool) {
        self.change(|state| state.down = down);
    }
}

impl Log for MemoryLog {
    fn describe(&self) -> String {
        "the in-memory log".into()
    }

    fn publish<'a>(&'a self, id: &'a str, body: Bytes) -> BoxFuture<'a, Result<(u64, bool), LogFault>> {
        let mut answer = Err(LogFault::Unavailable("the log is down".into()));
        self.change(|state| {
            if state.down {
                return;
            }
            if let Some(&sequence) = state.ids.get(id) {
                answer = Ok((sequence, true));
                return;
            }
            state.messages.push_back(body);
            let sequence = state.bounds().last;
            state.ids.insert(id.to_string(), sequence);
            answer = Ok((sequence, false));
        });
        async move { answer }.boxed()
    }

    fn bounds(&self) -> BoxFuture<'_, Result<Bounds, String>> {
        let state = self.inner.state.lock().unwrap();
        let answer = if state.down {
            Err("the log is down".into())
        } else {
            Ok(state.bounds())
        };
        async move { answer }.boxed()
    }

    fn read_from(&self, start: u64, max_batch: usize) -> BoxFuture<'_, Result<Batches, String>> {
        let inner = self.inner.clone();
        let changed = inner.changed.subscribe();
        let batches =
            futures_util::stream::unfold((inner, changed, start), move |(inner, mut changed, next)| async move {
                loop {
                    changed.borrow_and_update();
                    {
                        let state = inner.state.lock().unwrap();
                        if state.down {
                            return Some((Err("the log went down".into()), (inner.clone(), changed, next)));
                        }
                        let Bounds { first, last } = state.bounds();
                        let from = next.max(first);
                        if from <= last {
                            let to = last.min(from + max_batch as u64 - 1);
                            let batch = (from..=to)
                                .map(|s| (s, state.messages[(s - first) as usize].clone()))
                                .collect();
                            drop(state);
                            return Some((Ok(batch), (inner, changed, to + 1)));
                        }
                    }
                    changed.changed().await.ok()?;
                }
            });
        async move { Ok(batches.boxed()) }.boxed()
    }
}

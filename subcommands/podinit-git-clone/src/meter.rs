//! gix's progress reduced to the one number a pod's log needs per phase: the bytes of the pack
//! as they arrive, the files as they are written. gix counts into a shared atomic; the async
//! side reads it every second into podinit's [`Progress`](podinit_core::progress::Progress)
//! (a bar on a terminal, a line every 10 s otherwise).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gix::progress::{Count, Id, MessageLevel, NestedProgress, Progress, Step, StepShared, Unit};

/// gix's id of the bytes read from the pack a server sends (gix-pack's `ReadPackBytes`).
pub(crate) const PACK_BYTES: Id = *b"BWRB";

/// A progress tree in which the task with the watched id counts into a shared counter and
/// every other counts privately.
#[derive(Clone)]
pub(crate) struct Tap {
    watched: Option<Id>,
    shared: StepShared,
    id: Id,
    own: StepShared,
}

impl Tap {
    /// A tree whose tasks with id `watched` count into `shared`.
    pub(crate) fn watching(watched: Id, shared: &StepShared) -> Self {
        Self { watched: Some(watched), shared: Arc::clone(shared), id: gix::progress::UNKNOWN, own: StepShared::default() }
    }

    /// One counter: every count goes into `shared`.
    pub(crate) fn counting(shared: &StepShared) -> Self {
        Self { watched: None, shared: Arc::clone(shared), id: gix::progress::UNKNOWN, own: Arc::clone(shared) }
    }
}

impl Count for Tap {
    fn set(&self, step: Step) {
        self.own.store(step, Ordering::Relaxed);
    }

    fn step(&self) -> Step {
        self.own.load(Ordering::Relaxed)
    }

    fn inc_by(&self, step: Step) {
        self.own.fetch_add(step, Ordering::Relaxed);
    }

    fn counter(&self) -> StepShared {
        Arc::clone(&self.own)
    }
}

impl Progress for Tap {
    fn init(&mut self, _max: Option<Step>, _unit: Option<Unit>) {}

    fn set_name(&mut self, _name: String) {}

    fn name(&self) -> Option<String> {
        None
    }

    fn id(&self) -> Id {
        self.id
    }

    fn message(&self, _level: MessageLevel, _message: String) {}
}

impl NestedProgress for Tap {
    type SubProgress = Self;

    fn add_child(&mut self, _name: impl Into<String>) -> Self::SubProgress {
        self.add_child_with_id(String::new(), gix::progress::UNKNOWN)
    }

    fn add_child_with_id(&mut self, _name: impl Into<String>, id: Id) -> Self::SubProgress {
        let own = if self.watched == Some(id) { Arc::clone(&self.shared) } else { StepShared::default() };
        Self { watched: self.watched, shared: Arc::clone(&self.shared), id, own }
    }
}

/// What the async side shows while blocking work runs: the counter and how to name it.
pub(crate) struct Watch {
    pub(crate) counter: StepShared,
    pub(crate) what: String,
    pub(crate) unit: podinit_core::progress::Unit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_watched_task_counts_into_the_shared_counter() {
        let shared = StepShared::default();
        let mut root = Tap::watching(PACK_BYTES, &shared);
        let other = root.add_child_with_id("indexing", *b"BWCI");
        other.inc_by(7);
        let mut read = root.add_child_with_id("read pack", PACK_BYTES);
        read.inc_by(100);
        read.counter().fetch_add(5, Ordering::Relaxed);
        read.add_child("nested").inc_by(1);
        assert_eq!(shared.load(Ordering::Relaxed), 105);
        let files = Tap::counting(&shared);
        files.inc();
        assert_eq!(shared.load(Ordering::Relaxed), 106);
    }
}

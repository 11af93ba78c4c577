//! What a guest may use, in plain sight: the per-call time limit and its
//! clock ([`EPOCH_TICK`]), the memory per instance, the rows per call. The
//! defaults here are the only ones; a view overrides them in
//! `skewless.toml` (`limits = { timeout_ms = 1000, memory_mib = 128 }`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often the epoch advances; time limits are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Guest calls running at once, per process and engine: every call has its
/// own instance, taken from a pool of this many slots (each reserves 4 GiB
/// of address space, not memory). A call beyond it fails with an error that
/// says so, rather than waiting.
pub const MAX_CONCURRENT_CALLS: u32 = 256;

/// Longest error message kept from a guest (a row error, or a failed batch):
/// longer ones are cut, with a marker, so a guest cannot make the host store
/// or send megabytes of text.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4 * 1024;

/// Row-error text kept per guest call, all messages together.
pub const MAX_ROW_ERROR_TEXT_PER_CALL: usize = 64 * 1024;

/// Largest state a user-defined aggregation function may return: states
/// are stored in every tile, so an aggregator whose state grows with its
/// events (a list of every value) is refused rather than filling the store.
/// Bounded sketches fit easily.
pub const MAX_AGGREGATOR_STATE_BYTES: usize = 64 * 1024;

/// Core instances, memories and tables per component: a Python component is
/// several core modules linked together (libc, libpython, the app).
pub(crate) const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;

/// Elements per table (function pointers): Python's is about 20,000 and grows.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Resource limits for one transform call, configurable per view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock limit for one call, in milliseconds.
    #[serde(default = "Limits::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Linear-memory limit per instance, in MiB.
    #[serde(default = "Limits::default_memory_mib")]
    pub memory_mib: u64,
    /// Rows per guest call; larger batches are split (bounds guest memory).
    #[serde(default = "Limits::default_max_rows_per_call")]
    pub max_rows_per_call: usize,
}

impl Limits {
    fn default_timeout_ms() -> u64 {
        5_000
    }
    fn default_memory_mib() -> u64 {
        512
    }
    fn default_max_rows_per_call() -> usize {
        65_536
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize).saturating_mul(1 << 20)
    }

    /// The per-call time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Epoch ticks for a wall-clock limit: one more than fit, so a call is never
/// stopped early (the first tick may come right after the deadline is set).
pub(crate) fn ticks(limit: Duration) -> u64 {
    (limit.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: Limits::default_timeout_ms(),
            memory_mib: Limits::default_memory_mib(),
            max_rows_per_call: Limits::default_max_rows_per_call(),
        }
    }
}

/// How much memory the instance pool keeps mapped between calls: `[runtime]`
/// in `skewless.toml`. A used slot keeps the pages its instance wrote, up to
/// `keep_resident_mib`, and copies them back from the image when the next
/// instance takes it, instead of unmapping them and faulting them in again
/// (an interpreter writes megabytes per call). At most `warm_slots` slots
/// wait with their pages kept; so the pool's resident memory between calls
/// is at most `warm_slots x keep_resident_mib` (plus 1 MiB of tables per
/// slot), besides the instances at work and those made ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// MiB of a slot's linear memory kept mapped between calls.
    pub keep_resident_mib: u32,
    /// Unused slots that keep their memory, at most.
    pub warm_slots: u32,
}

impl Default for PoolSettings {
    /// 32 MiB holds what a Python or JavaScript call writes (a 1-row Python
    /// call: 1.1 ms with 4 MiB kept, 0.3 ms with 32; BENCHMARKS.md); 16
    /// warm slots bound that at 528 MiB.
    fn default() -> Self {
        PoolSettings {
            keep_resident_mib: 32,
            warm_slots: 16,
        }
    }
}

impl PoolSettings {
    /// Whether the settings fit the pool: the key and what to do if not.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        // A 32-bit linear memory holds 4 GiB.
        const MAX_MEMORY_MIB: u32 = 4096;
        if self.keep_resident_mib > MAX_MEMORY_MIB {
            return Err((
                "keep_resident_mib",
                format!(
                    "{} MiB is more than a guest's memory can be ({MAX_MEMORY_MIB} MiB): use at most that",
                    self.keep_resident_mib
                ),
            ));
        }
        if self.warm_slots > MAX_CONCURRENT_CALLS {
            return Err((
                "warm_slots",
                format!(
                    "{} is more than the pool's {MAX_CONCURRENT_CALLS} slots: use at most that",
                    self.warm_slots
                ),
            ));
        }
        Ok(())
    }
}

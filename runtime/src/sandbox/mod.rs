//! The sandbox a guest runs in: its host state (a deny-all WASI, a memory
//! limiter, a captured stderr), one per wasmtime store, and the linker that
//! gives it WASI.
//!
//! WASI is there for guests whose toolchain imports it, and denies every
//! capability: no files, sockets, environment or arguments, a clock stopped
//! at the epoch and a fixed random seed ([`deterministic_wasi`]). Output
//! then depends on input alone. Its waiting calls are answered without
//! blocking the thread ([`nonblocking_io`]), so a guest can be called from a
//! tokio async worker, and a guest that waits is stopped at once.

use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::{Limits, MAX_TABLE_ELEMENTS};

mod nonblocking_io;

/// The linker every transform is instantiated with: WASI (deny-all, see
/// [`HostState`]) with its waiting calls answered without blocking.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    nonblocking_io::shadow_waiting_calls(&mut linker)?;
    Ok(linker)
}

/// How much a guest may write to stderr before writes fail (kept for error messages).
const STDERR_CAPACITY: usize = 16 * 1024;

/// Per-store host state: WASI (deny-all), its resource table, and limits.
///
/// A store lives for one guest call, so the WASI context is made on the
/// guest's first WASI call only: most transforms never make one, and a call
/// then pays nothing for it.
pub(crate) struct HostState {
    wasi: Option<(WasiCtx, MemoryOutputPipe)>,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (ctx, _) = self.wasi.get_or_insert_with(|| {
            let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
            (deterministic_wasi(stderr.clone()), stderr)
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory per instance and remembers when the cap was hit, so a
/// memory bomb is reported as such rather than as the trap it causes.
pub(crate) struct MemoryLimiter {
    pub(crate) max_bytes: usize,
    pub(crate) hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl HostState {
    pub(crate) fn new(limits: &Limits) -> Self {
        HostState {
            wasi: None,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: limits.memory_bytes(),
                hit: false,
            },
        }
    }

    /// What the guest wrote to stderr (a panic message), if anything.
    pub(crate) fn stderr(&self) -> String {
        self.wasi
            .as_ref()
            .map(|(_, stderr)| String::from_utf8_lossy(&stderr.contents()).into_owned())
            .unwrap_or_default()
    }
}

/// A WASI context that grants nothing and answers the same on every call:
/// output then depends on input alone.
fn deterministic_wasi(stderr: MemoryOutputPipe) -> WasiCtx {
    WasiCtx::builder()
        .stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .secure_random(SplitMix64(0x5EED_5EED_5EED_5EED))
        .insecure_random(SplitMix64(0x1D_5EED))
        .insecure_random_seed(0x5EED)
        .build()
}

/// A clock stopped at the Unix epoch.
struct FixedClock;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A seeded generator (SplitMix64): the same bytes on every run.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    /// The next value.
    pub(crate) fn next(&mut self) -> u64 {
        let Ok(value) = rand::TryRng::try_next_u64(self);
        value
    }
}

impl rand::TryRng for SplitMix64 {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.try_next_u64().map(|v| (v >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

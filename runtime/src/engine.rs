//! The WebAssembly host: one wasmtime engine per process (two when a view
//! asks for strict determinism), set up in a straight line, with its limits
//! in plain sight.
//!
//! - Component model on, Cranelift. Float determinism per
//!   [`Determinism`]: NaNs canonicalized at the boundary by default, after
//!   every float operation under `strict`; relaxed SIMD pinned to its
//!   deterministic lowering in both.
//! - The pooling allocator with copy-on-write memory images: every guest call
//!   gets a fresh instance ([`crate::determinism`]), which then costs a few
//!   microseconds, not a fresh `mmap` of a 4 GiB reservation. At most
//!   [`MAX_CONCURRENT_CALLS`] calls run at once.
//! - Epoch interruption on, with a ticker thread advancing the epoch every
//!   [`EPOCH_TICK`]: the per-call time limit is a deadline in ticks.
//! - A linker with the sandbox's deny-all WASI ([`crate::sandbox`]): what a
//!   guest can see of the world, the same on every call.
//! - Compiled components cached on disk under
//!   `<digest>-<determinism>-<engine hash>.cwasm`, so a second load skips
//!   Cranelift.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::aggregator::{Aggregator, AggregatorPre};
use crate::determinism::Determinism;
use crate::digest::Digest;
use crate::error::LoadError;
use crate::fresh::InstanceWorker;
use crate::limits::{
    EPOCH_TICK, Limits, MAX_CONCURRENT_CALLS, MAX_CORE_INSTANCES_PER_COMPONENT, MAX_TABLE_ELEMENTS, PoolSettings,
};
use crate::sandbox::{self, HostState};
use crate::transform::Transform;
use crate::wit;
use crate::wit::Contract;

/// The host runtime: an engine, a linker with deny-all WASI, an epoch
/// ticker and a compile cache. Cheap to share; load transforms through it.
pub struct Runtime {
    default: Host,
    /// Made on the first strict view: most repos never pay for it.
    strict: OnceLock<Host>,
    cache_dir: Option<PathBuf>,
    pool: PoolSettings,
}

/// One engine with its settings, linker and epoch ticker.
struct Host {
    engine: Engine,
    linker: Linker<HostState>,
    determinism: Determinism,
    /// Makes instances ahead and drops used ones, for every view of this engine.
    worker: Arc<InstanceWorker>,
}

impl Host {
    fn new(determinism: Determinism, settings: PoolSettings) -> Result<Host, LoadError> {
        let engine_error = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(OptLevel::Speed);
        config.cranelift_nan_canonicalization(determinism == Determinism::Strict);
        config.relaxed_simd_deterministic(true);
        config.epoch_interruption(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(settings)));
        let capped = address_space_cap();
        if let Some(cap) = capped {
            // A capped address space (`ulimit -v`, Spark's
            // `spark.executor.pyspark.memory`): the pool and wasmtime's
            // default 4 GiB reservation per linear memory do not fit. Each
            // instance then reserves at most the default memory limit, less
            // on a small cap, with a small guard; a memory that outgrows its
            // reservation moves, and the view's limit still caps it.
            let reservation = (Limits::default().memory_bytes() as u64).min(cap / 64);
            tracing::debug!("address space capped at {cap} bytes: reserving {reservation} bytes per memory");
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            config.memory_reservation(reservation);
            config.memory_guard_size(SMALL_GUARD_BYTES);
            config.memory_reservation_for_growth(SMALL_GUARD_BYTES);
            // Compiling on one thread: each of the pool's threads reserves a stack.
            config.parallel_compilation(false);
        }
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            // The pool reserves address space up front; where that is refused
            // (a `ulimit -v`), instances are allocated per call instead.
            Err(e) => {
                tracing::warn!(
                    "the instance pool is unavailable ({e:#}); allocating instances per call, which is slower"
                );
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).map_err(engine_error)?
            }
        };
        let linker = sandbox::linker(&engine).map_err(engine_error)?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("skewless-epoch".into())
            .stack_size(EPOCH_THREAD_STACK)
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        // Under a cap every instance held ahead or queued for dropping keeps
        // its reservation: calls make and drop their own instead.
        let worker = match capped {
            Some(_) => InstanceWorker::inline(),
            None => InstanceWorker::start()
                .map_err(|e| LoadError::Engine(format!("cannot start the instance thread: {e}")))?,
        };
        Ok(Host {
            engine,
            linker,
            determinism,
            worker,
        })
    }
}

/// Slots for [`MAX_CONCURRENT_CALLS`] instances of any component we accept.
/// Memory and table slots reserve address space; the per-view memory limit is
/// enforced by the store's limiter, below the 4 GiB a slot can hold.
fn pooling(settings: PoolSettings) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    let calls = MAX_CONCURRENT_CALLS;
    let per_component = MAX_CORE_INSTANCES_PER_COMPONENT;
    pool.total_component_instances(calls)
        .total_core_instances(calls * per_component)
        .max_core_instances_per_component(per_component)
        .total_memories(calls * 2)
        .max_memories_per_component(per_component)
        .total_tables(calls * per_component)
        .max_tables_per_component(per_component)
        .max_tables_per_module(4)
        .table_elements(MAX_TABLE_ELEMENTS)
        .total_stacks(calls)
        // A slot's dirty pages are found with `PAGEMAP_SCAN` (Linux 6.7+;
        // every one, swapped-out pages included: vendor/wasmtime) and, up to
        // these sizes, copied back from the image rather than unmapped, so
        // the next call does not fault them in again. Without it: 50 us per
        // 1-row call instead of 14 (BENCHMARKS.md).
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(settings.keep_resident_mib as usize * MIB)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .max_unused_warm_slots(settings.warm_slots);
    pool
}

/// The process's address-space limit (`RLIMIT_AS`), when it has one.
fn address_space_cap() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::As).current
}

/// The epoch thread only sleeps and bumps a counter.
const EPOCH_THREAD_STACK: usize = 64 << 10;

/// Guard and growth reservation under a capped address space: wasmtime
/// then bounds-checks explicitly instead of relying on a large guard.
const SMALL_GUARD_BYTES: u64 = 64 << 10;

const MIB: usize = 1 << 20;
/// Bytes of a slot's tables kept mapped between calls.
const TABLE_KEEP_RESIDENT: usize = 1 << 20;

impl Runtime {
    /// Sets up the engine. `cache_dir`, when given, holds compiled components.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Runtime, LoadError> {
        Runtime::with_pool(cache_dir, PoolSettings::default())
    }

    /// [`Runtime::new`] with the instance pool's memory settings.
    pub fn with_pool(cache_dir: Option<PathBuf>, pool: PoolSettings) -> Result<Runtime, LoadError> {
        Ok(Runtime {
            default: Host::new(Determinism::Default, pool)?,
            strict: OnceLock::new(),
            cache_dir,
            pool,
        })
    }

    fn host(&self, determinism: Determinism) -> Result<&Host, LoadError> {
        match determinism {
            Determinism::Default => Ok(&self.default),
            Determinism::Strict => {
                if let Some(host) = self.strict.get() {
                    return Ok(host);
                }
                let host = Host::new(Determinism::Strict, self.pool)?;
                Ok(self.strict.get_or_init(|| host))
            }
        }
    }

    /// Loads the component at `path` for `view`, with `limits`, under the
    /// default [`Determinism`]: compiles it (or takes it from the cache),
    /// checks its WIT version, pre-links it and calls `describe`.
    pub fn load(&self, view: &str, path: &Path, limits: Limits) -> Result<Transform, LoadError> {
        self.load_with(view, path, limits, Determinism::Default)
    }

    /// As [`Runtime::load`], compiled for `determinism`.
    pub fn load_with(
        &self,
        view: &str,
        path: &Path,
        limits: Limits,
        determinism: Determinism,
    ) -> Result<Transform, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            error: source,
        })?;
        self.load_bytes(view, path, &bytes, limits, determinism)
    }

    /// As [`Runtime::load_with`], from bytes already read (`path` is for messages).
    pub fn load_bytes(
        &self,
        view: &str,
        path: &Path,
        bytes: &[u8],
        limits: Limits,
        determinism: Determinism,
    ) -> Result<Transform, LoadError> {
        let (digest, instance_pre, interface, contract) = self.prepare(path, bytes, wit::INTERFACE, determinism)?;
        // The bindings' own check that the exports are the contract's.
        let checked = match contract {
            Contract::V0_2 => wit::TransformerPre::new(instance_pre.clone()).map(drop),
            Contract::V0_1 => wit::v0_1::TransformerPre::new(instance_pre.clone()).map(drop),
        };
        checked.map_err(|e| LoadError::Instantiate {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        let worker = &self.host(determinism)?.worker;
        Transform::new(
            view,
            path,
            digest,
            instance_pre,
            contract,
            worker,
            interface,
            limits,
            determinism,
        )
    }

    /// Loads the user-defined aggregation function at `path` for `label`
    /// (the view and feature it computes), as [`Runtime::load_with`] loads
    /// a transform: the same engine, sandbox, limits and compile cache.
    pub fn load_aggregator(
        &self,
        label: &str,
        path: &Path,
        limits: Limits,
        determinism: Determinism,
    ) -> Result<Aggregator, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            error: source,
        })?;
        let (digest, instance_pre, _, contract) = self.prepare(path, &bytes, wit::AGGREGATOR_INTERFACE, determinism)?;
        let instantiate_error = |e: wasmtime::Error| LoadError::Instantiate {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let pre = match contract {
            Contract::V0_2 => {
                AggregatorPre::V0_2(wit::AggregatorComponentPre::new(instance_pre).map_err(instantiate_error)?)
            }
            Contract::V0_1 => {
                AggregatorPre::V0_1(wit::v0_1::AggregatorComponentPre::new(instance_pre).map_err(instantiate_error)?)
            }
        };
        Aggregator::new(label, path, digest, pre, &self.host(determinism)?.worker, limits)
    }

    /// Compiles (or takes from the cache) and pre-links a component that
    /// must export `interface`; returns its digest, the pre-linked instance,
    /// the exported interface's full name and its contract version.
    fn prepare(
        &self,
        path: &Path,
        bytes: &[u8],
        interface: &str,
        determinism: Determinism,
    ) -> Result<(Digest, wasmtime::component::InstancePre<HostState>, String, Contract), LoadError> {
        let host = self.host(determinism)?;
        let digest = Digest::of(bytes);
        let component = self.compile(host, path, bytes, &digest)?;
        let (interface, contract) = check_contract(&host.engine, &component, path, interface)?;
        let instance_pre = host
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Instantiate {
                path: path.to_path_buf(),
                message: format!("{e:#}"),
            })?;
        Ok((digest, instance_pre, interface, contract))
    }

    /// Where `digest` compiled for `determinism` is cached (the engine's
    /// compatibility hash covers wasmtime's version and settings; the
    /// determinism is spelled out so the two builds of a component are told
    /// apart at a glance).
    pub fn cache_entry(&self, digest: &Digest, determinism: Determinism) -> Result<Option<PathBuf>, LoadError> {
        let host = self.host(determinism)?;
        Ok(self.cache_dir.as_ref().map(|dir| cache_entry(dir, host, digest)))
    }

    /// Compiles, or deserializes from the cache. A cache entry that fails to
    /// load (truncated, other wasmtime) is recompiled and replaced.
    fn compile(&self, host: &Host, path: &Path, bytes: &[u8], digest: &Digest) -> Result<Component, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let Some(dir) = &self.cache_dir else {
            return Component::from_binary(&host.engine, bytes).map_err(invalid);
        };
        let cached = cache_entry(dir, host, digest);
        if cached.is_file() {
            match deserialize_cached(&host.engine, &cached) {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!("recompiling {}: cache entry unusable: {e:#}", path.display()),
            }
        }
        let component = Component::from_binary(&host.engine, bytes).map_err(invalid)?;
        if let Err(e) = write_cache_entry(dir, &cached, &component) {
            tracing::warn!("cannot write compile cache {}: {e:#}", cached.display());
        }
        Ok(component)
    }
}

fn cache_entry(dir: &Path, host: &Host, digest: &Digest) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    host.engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!(
        "{}-{}-{:016x}.cwasm",
        digest.hex(),
        host.determinism,
        hasher.finish()
    ))
}

/// A compiled component from the cache entry at `cached`.
///
/// Not mapped from the entry itself: wasmtime backs code and linear-memory
/// images with the file it maps, so an entry rewritten in place (a `cp` over
/// the cache, a damaged disk) while a server runs would kill it with SIGBUS.
/// On Linux the entry is copied (in the kernel) into a memory file only this
/// process holds, and that is mapped: pages come in as used, and the Python
/// example (36 MB compiled) loads in about 42 ms instead of 76 ms for a read
/// into the heap plus deserialization (`cargo bench --bench languages`).
/// Elsewhere: read.
fn deserialize_cached(engine: &Engine, cached: &Path) -> wasmtime::Result<Component> {
    #[cfg(target_os = "linux")]
    if let Ok(copy) = private_copy(cached) {
        use std::os::fd::AsRawFd;
        // SAFETY: as below; the memory file is written once, here, and no
        // other process can reach it, so the mapping cannot change under us.
        return unsafe { Component::deserialize_file(engine, format!("/proc/self/fd/{}", copy.as_raw_fd())) };
    }
    let serialized = std::fs::read(cached)?;
    // SAFETY: files in the cache directory are written only by
    // `write_cache_entry` (atomically, by rename), and are keyed by this
    // engine's compatibility hash; wasmtime also checks the header and engine
    // settings. The cache directory is as trusted as the binary itself, as
    // with wasmtime's own cache.
    unsafe { Component::deserialize(engine, &serialized) }
}

/// The cache entry copied into an anonymous memory file.
#[cfg(target_os = "linux")]
fn private_copy(cached: &Path) -> std::io::Result<std::fs::File> {
    let memory = rustix::fs::memfd_create("skewless-cwasm", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut copy = std::fs::File::from(memory);
    std::io::copy(&mut std::fs::File::open(cached)?, &mut copy)?;
    Ok(copy)
}

fn write_cache_entry(dir: &Path, target: &Path, component: &Component) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let tmp = target.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, target)?;
    Ok(())
}

/// Refuses a component that does not export `interface` (the transform or
/// the aggregator one) at a version this host runs, naming what it found and
/// what is needed. Returns the exported interface's full name and version.
fn check_contract(
    engine: &Engine,
    component: &Component,
    path: &Path,
    needed: &str,
) -> Result<(String, Contract), LoadError> {
    let ty = component.component_type();
    let mut found = Vec::new();
    for (name, item) in ty.exports(engine) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            continue;
        }
        let (interface, version) = name.split_once('@').unwrap_or((name, ""));
        if interface == needed {
            if let Some(contract) = Contract::ALL.into_iter().find(|c| compatible(version, c.version())) {
                return Ok((name.to_string(), contract));
            }
            return Err(LoadError::WrongVersion {
                path: path.to_path_buf(),
                interface: needed.into(),
                found: name.to_string(),
                needed: supported(),
            });
        }
        found.push(name.to_string());
    }
    Err(LoadError::NotATransform {
        path: path.to_path_buf(),
        interface: format!("{needed}@{}", wit::VERSION),
        found: found.join(", "),
    })
}

/// The versions this host runs, for messages: `0.2.0 (or 0.1.0)`.
fn supported() -> String {
    let [newest, older @ ..] = Contract::ALL;
    let older: Vec<&str> = older.iter().map(|c| c.version()).collect();
    format!("{} (or {})", newest.version(), older.join(", "))
}

/// Semver compatibility as Cargo reads it: same major, and before 1.0 the
/// same minor.
fn compatible(found: &str, needed: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (parse(found), parse(needed)) {
        (Some((fmaj, fmin)), Some((nmaj, nmin))) => fmaj == nmaj && (nmaj > 0 || fmin == nmin),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_compatibility_follows_cargo() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
        assert!(!compatible("", "0.1.0"));
    }

    #[test]
    fn digest_hex_round_trips() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&d.to_string()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }
}

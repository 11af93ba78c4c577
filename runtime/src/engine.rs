//! The WebAssembly host: one wasmtime engine per process, set up in a
//! straight line, with its limits in plain sight.
//!
//! - Component model on, Cranelift, NaN canonicalization on (the same NaN
//!   bits on every CPU, so floats are reproducible).
//! - Epoch interruption on, with a ticker thread advancing the epoch every
//!   [`EPOCH_TICK`]: the per-call time limit is a deadline in ticks.
//! - A linker with the sandbox's deny-all WASI ([`crate::sandbox`]): what a
//!   guest can see of the world, the same on every call.
//! - Compiled components cached on disk under `<digest>-<engine hash>.cwasm`,
//!   so a second load skips Cranelift.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, OptLevel};

use crate::digest::Digest;
use crate::error::LoadError;
use crate::limits::{EPOCH_TICK, Limits};
use crate::sandbox::{self, HostState};
use crate::transform::Transform;
use crate::wit;

/// The host runtime: an engine, a linker with deny-all WASI, an epoch
/// ticker and a compile cache. Cheap to share; load transforms through it.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
}

impl Runtime {
    /// Sets up the engine. `cache_dir`, when given, holds compiled components.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Runtime, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(OptLevel::Speed);
        config.cranelift_nan_canonicalization(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;

        let linker = sandbox::linker(&engine).map_err(|e| LoadError::Engine(format!("{e:#}")))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("skewless-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;

        Ok(Runtime {
            engine,
            linker,
            cache_dir,
        })
    }

    /// Loads the component at `path` for `view`, with `limits`: compiles it
    /// (or takes it from the cache), checks its WIT version, pre-links it
    /// and calls `describe`.
    pub fn load(&self, view: &str, path: &Path, limits: Limits) -> Result<Transform, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            error: source,
        })?;
        self.load_bytes(view, path, &bytes, limits)
    }

    /// As [`Runtime::load`], from bytes already read (`path` is for messages).
    pub fn load_bytes(&self, view: &str, path: &Path, bytes: &[u8], limits: Limits) -> Result<Transform, LoadError> {
        let digest = Digest::of(bytes);
        let component = self.compile(path, bytes, &digest)?;
        let interface = check_contract(&self.engine, &component, path)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Instantiate {
                path: path.to_path_buf(),
                message: format!("{e:#}"),
            })?;
        let pre = wit::TransformerPre::new(instance_pre).map_err(|e| LoadError::Instantiate {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        Transform::new(view, path, digest, self.engine.clone(), pre, interface, limits)
    }

    /// Compiles, or deserializes from the cache. A cache entry that fails to
    /// load (truncated, other wasmtime) is recompiled and replaced.
    fn compile(&self, path: &Path, bytes: &[u8], digest: &Digest) -> Result<Component, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let Some(dir) = &self.cache_dir else {
            return Component::from_binary(&self.engine, bytes).map_err(invalid);
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        let cached = dir.join(format!("{}-{:016x}.cwasm", digest.hex(), hasher.finish()));
        if cached.is_file() {
            match deserialize_cached(&self.engine, &cached) {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!("recompiling {}: cache entry unusable: {e:#}", path.display()),
            }
        }
        let component = Component::from_binary(&self.engine, bytes).map_err(invalid)?;
        if let Err(e) = write_cache_entry(dir, &cached, &component) {
            tracing::warn!("cannot write compile cache {}: {e:#}", cached.display());
        }
        Ok(component)
    }

    /// The engine, for callers that need to compare compatibility.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
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

/// Refuses a component that does not export the transform interface at a
/// compatible version, naming what it found and what is needed. Returns the
/// exported interface's full name.
fn check_contract(engine: &Engine, component: &Component, path: &Path) -> Result<String, LoadError> {
    let ty = component.component_type();
    let mut found = Vec::new();
    for (name, item) in ty.exports(engine) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            continue;
        }
        let (interface, version) = name.split_once('@').unwrap_or((name, ""));
        if interface == wit::INTERFACE {
            if compatible(version, wit::VERSION) {
                return Ok(name.to_string());
            }
            return Err(LoadError::WrongVersion {
                path: path.to_path_buf(),
                interface: wit::INTERFACE.into(),
                found: name.to_string(),
                needed: wit::VERSION.into(),
            });
        }
        found.push(name.to_string());
    }
    Err(LoadError::NotATransform {
        path: path.to_path_buf(),
        interface: format!("{}@{}", wit::INTERFACE, wit::VERSION),
        found: found.join(", "),
    })
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

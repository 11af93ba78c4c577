//! Host bindings generated from `wit/transform.wit`, the same files the
//! guest SDK reads. The rest of the runtime names WIT types through here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transformer",
});

/// The aggregator world's bindings, sharing the column types above.
pub(crate) mod aggregator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "aggregator-component",
        with: {
            "skewless:transform/types": super::skewless::transform::types,
        },
    });
}

pub(crate) use aggregator::{AggregatorComponent, AggregatorComponentPre};

pub(crate) use skewless::transform::types::{Batch, Column, DataType, Field, Output, RowError, Values};

/// The interface every transform exports, without its version.
pub(crate) const INTERFACE: &str = "skewless:transform/transform";
/// The interface every user-defined aggregation function exports.
pub(crate) const AGGREGATOR_INTERFACE: &str = "skewless:transform/aggregator";
/// The WIT package version this host implements (see `wit/transform.wit`).
pub(crate) const VERSION: &str = "0.1.0";

#[cfg(test)]
mod tests {
    /// The host's version constant is the one `wit/` declares: bumping the
    /// contract without the constant (or the other way round) fails here.
    #[test]
    fn contract_version_is_the_one_in_wit() {
        let wit = include_str!("../../wit/transform.wit");
        let declared = wit
            .lines()
            .find_map(|l| l.trim().strip_prefix("package skewless:transform@"))
            .and_then(|v| v.strip_suffix(';'))
            .expect("wit/transform.wit declares `package skewless:transform@VERSION;`");
        assert_eq!(declared, super::VERSION);
        assert!(wit.contains(&format!("interface {}", super::INTERFACE.rsplit('/').next().unwrap())));
    }
}

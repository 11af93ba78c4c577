//! Host bindings generated from `wit/transform.wit`, the same files the
//! guest SDK reads. The rest of the runtime names WIT types through here.
//!
//! The host runs components of two contract versions: 0.2.0 (`wit/`) and
//! 0.1.0 (`wit/0.1.0/`, frozen). Everything past loading speaks 0.2.0; a
//! 0.1.0 component's values are converted at its boundary ([`v0_1`]), which
//! is exact because 0.1.0's types are 0.2.0's scalar ones.

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

pub(crate) use skewless::transform::types::{
    Batch, Column, DataType, Field, ListValues, Output, RowError, ScalarType, ScalarValues, Utf8Values, Values,
};

/// The interface every transform exports, without its version.
pub(crate) const INTERFACE: &str = "skewless:transform/transform";
/// The interface every user-defined aggregation function exports.
pub(crate) const AGGREGATOR_INTERFACE: &str = "skewless:transform/aggregator";
/// The WIT package version this host implements (see `wit/transform.wit`).
pub(crate) const VERSION: &str = "0.2.0";

/// A contract version the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contract {
    /// `wit/0.1.0/`: scalar types only.
    V0_1,
    /// `wit/`: lists and vectors too.
    V0_2,
}

impl Contract {
    /// Every version, newest first (what an error message lists).
    pub(crate) const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// The version as the component model writes it.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => VERSION,
        }
    }
}

/// The 0.1.0 contract's bindings and their one conversion to and from
/// 0.2.0's types. 0.1.0 `data-type` is 0.2.0 `scalar-type` and 0.1.0
/// `values` is 0.2.0 `scalar-values`, case for case.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "transformer",
    });

    /// The aggregator world's bindings at 0.1.0.
    pub(crate) mod aggregator {
        wasmtime::component::bindgen!({
            path: "../wit/0.1.0",
            world: "aggregator-component",
            with: {
                "skewless:transform/types": super::skewless::transform::types,
            },
        });
    }

    use skewless::transform::types as old;

    pub(crate) use aggregator::{AggregatorComponent, AggregatorComponentPre};
    pub(crate) use old::Output;

    /// A 0.1.0 field as 0.2.0 writes it.
    pub(crate) fn field(field: old::Field) -> super::Field {
        super::Field {
            name: field.name,
            data_type: super::DataType::Scalar(scalar_type(field.data_type)),
            nullable: field.nullable,
        }
    }

    fn scalar_type(data_type: old::DataType) -> super::ScalarType {
        match data_type {
            old::DataType::Boolean => super::ScalarType::Boolean,
            old::DataType::Int64 => super::ScalarType::Int64,
            old::DataType::Float32 => super::ScalarType::Float32,
            old::DataType::Float64 => super::ScalarType::Float64,
            old::DataType::Utf8 => super::ScalarType::Utf8,
            old::DataType::Timestamp => super::ScalarType::Timestamp,
        }
    }

    /// A 0.1.0 column as 0.2.0 writes it: its values are scalar values.
    pub(crate) fn column(column: old::Column) -> super::Column {
        use super::ScalarValues as New;
        let values = match column.values {
            old::Values::Boolean(v) => New::Boolean(v),
            old::Values::Int64(v) => New::Int64(v),
            old::Values::Float32(v) => New::Float32(v),
            old::Values::Float64(v) => New::Float64(v),
            old::Values::Utf8(v) => New::Utf8(super::Utf8Values {
                offsets: v.offsets,
                bytes: v.bytes,
            }),
            old::Values::Timestamp(v) => New::Timestamp(v),
        };
        super::Column {
            name: column.name,
            values: super::Values::Scalar(values),
            validity: column.validity,
        }
    }

    /// A 0.1.0 output as 0.2.0 writes it.
    pub(crate) fn output(output: old::Output) -> super::Output {
        super::Output {
            batch: super::Batch {
                num_rows: output.batch.num_rows,
                columns: output.batch.columns.into_iter().map(column).collect(),
            },
            row_errors: output
                .row_errors
                .into_iter()
                .map(|e| super::RowError {
                    row: e.row,
                    message: e.message,
                })
                .collect(),
        }
    }

    /// A 0.2.0 batch for a 0.1.0 component, or the column it cannot carry.
    /// Only scalar columns can occur: a 0.1.0 component declares no other
    /// type, and inputs are checked against its declaration first.
    pub(crate) fn batch(batch: super::Batch) -> Result<old::Batch, String> {
        use super::ScalarValues as New;
        let columns = batch
            .columns
            .into_iter()
            .map(|column| {
                let values = match column.values {
                    super::Values::Scalar(New::Boolean(v)) => old::Values::Boolean(v),
                    super::Values::Scalar(New::Int64(v)) => old::Values::Int64(v),
                    super::Values::Scalar(New::Float32(v)) => old::Values::Float32(v),
                    super::Values::Scalar(New::Float64(v)) => old::Values::Float64(v),
                    super::Values::Scalar(New::Utf8(v)) => old::Values::Utf8(old::Utf8Values {
                        offsets: v.offsets,
                        bytes: v.bytes,
                    }),
                    super::Values::Scalar(New::Timestamp(v)) => old::Values::Timestamp(v),
                    super::Values::List(_) | super::Values::Vector(_) => {
                        return Err(format!(
                            "column `{}` is a list or vector, which a component built for contract 0.1.0 cannot take",
                            column.name
                        ));
                    }
                };
                Ok(old::Column {
                    name: column.name,
                    values,
                    validity: column.validity,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(old::Batch {
            num_rows: batch.num_rows,
            columns,
        })
    }
}

#[cfg(test)]
mod tests {
    /// The host's version constant is the one `wit/` declares: bumping the
    /// contract without the constant (or the other way round) fails here.
    #[test]
    fn contract_version_is_the_one_in_wit() {
        let declared = |wit: &str| {
            wit.lines()
                .find_map(|l| l.trim().strip_prefix("package skewless:transform@"))
                .and_then(|v| v.strip_suffix(';'))
                .expect("the WIT declares `package skewless:transform@VERSION;`")
                .to_string()
        };
        let wit = include_str!("../../wit/transform.wit");
        assert_eq!(declared(wit), super::Contract::V0_2.version());
        assert!(wit.contains(&format!("interface {}", super::INTERFACE.rsplit('/').next().unwrap())));
        assert_eq!(
            declared(include_str!("../../wit/0.1.0/transform.wit")),
            super::Contract::V0_1.version()
        );
    }
}

//! Returns its inputs unchanged: one column of every type, so a batch makes
//! the full round trip Arrow -> WIT -> guest SDK -> WIT -> Arrow.

use skewless_sdk::{Batch, DataType, Error, Output, ScalarType, Schema, Transform};

pub struct Echo;

const COLUMNS: [(&str, DataType); 9] = [
    ("b", DataType::Boolean),
    ("i", DataType::Int64),
    ("f32", DataType::Float32),
    ("f64", DataType::Float64),
    ("s", DataType::Utf8),
    ("t", DataType::Timestamp),
    ("ls", DataType::List(ScalarType::Utf8)),
    ("lb", DataType::List(ScalarType::Boolean)),
    ("v", DataType::Vector(3)),
];

impl Transform for Echo {
    fn schema() -> Schema {
        COLUMNS.iter().fold(Schema::new("echo", "1.0.0"), |s, (n, t)| s.input(n, *t).output(n, *t))
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let mut out = Output::new(input.num_rows());
        for (name, _) in COLUMNS {
            out = out.column(name, input.column(name).ok_or("missing column")?.clone());
        }
        Ok(out)
    }
}

skewless_sdk::export!(Echo);

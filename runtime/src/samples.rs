//! Deterministic sample data for the example repos (`examples/repos/`):
//! the same arguments give the same bytes on every machine.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::types::UTC;

const HOUR: i64 = 3_600_000_000;

/// A small, fast, seeded generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
}

fn ts(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone(UTC))
}

/// Writes `batch` to `path` as Parquet (Snappy, 64k-row row groups).
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), parquet::errors::ParquetError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("parquet.tmp");
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(65_536)
        .build();
    let mut writer = ArrowWriter::try_new(File::create(&tmp)?, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Feast's driver_stats demo data: `drivers` drivers (ids from 1001) with
/// one row per hour for `hours` hours ending at `end` (microseconds UTC,
/// exclusive), in arrival order (by hour, then driver). Columns:
/// driver_id int64, event_timestamp and created timestamp[us, UTC],
/// conv_rate and acc_rate float32, avg_daily_trips int64.
pub fn driver_stats(drivers: usize, hours: usize, end: i64, seed: u64) -> RecordBatch {
    let mut rng = Rng(seed);
    let rows = drivers * hours;
    let (mut id, mut event, mut created) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    let (mut conv, mut acc, mut trips) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    let start = end.div_euclid(HOUR) * HOUR - hours as i64 * HOUR;
    for hour in 0..hours {
        for driver in 0..drivers {
            let t = start + hour as i64 * HOUR;
            id.push(1001 + driver as i64);
            event.push(t);
            created.push(t + rng.below(3_600) as i64 * 1_000_000);
            conv.push(rng.unit() as f32);
            acc.push(rng.unit() as f32);
            trips.push(rng.below(1_000) as i64);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("event_timestamp", ts_type(), false),
        Field::new("created", ts_type(), false),
        Field::new("conv_rate", DataType::Float32, true),
        Field::new("acc_rate", DataType::Float32, true),
        Field::new("avg_daily_trips", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(id)),
            ts(event),
            ts(created),
            Arc::new(Float32Array::from(conv)),
            Arc::new(Float32Array::from(acc)),
            Arc::new(Int64Array::from(trips)),
        ],
    )
    .expect("columns match the schema")
}

/// Card transactions: `rows` rows over `cards` cards (ids `card-0001`...),
/// one every 37 seconds up to `end`. About 1 row in 200 is malformed (a
/// negative amount or an unknown merchant category), 1 in 100 has a null
/// category, and some categories carry stray case and spaces.
pub fn transactions(cards: usize, rows: usize, end: i64, seed: u64) -> RecordBatch {
    const CATEGORIES: [&str; 9] = [
        "grocery",
        "fuel",
        "Restaurant",
        " travel",
        "electronics",
        "jewelry",
        "gift_cards",
        "online_gambling",
        "grocery",
    ];
    let mut rng = Rng(seed);
    let start = end - rows as i64 * 37_000_000;
    let mut card = Vec::with_capacity(rows);
    let mut event = Vec::with_capacity(rows);
    let mut amount = Vec::with_capacity(rows);
    let mut category: Vec<Option<String>> = Vec::with_capacity(rows);
    let mut merchant = Vec::with_capacity(rows);
    for row in 0..rows {
        card.push(format!("card-{:04}", 1 + rng.below(cards as u64)));
        merchant.push(format!("m-{:04}", rng.below(2_000)));
        event.push(start + row as i64 * 37_000_000);
        let roll = rng.below(1_000);
        amount.push(if roll < 3 {
            -(rng.unit() * 100.0)
        } else {
            (rng.unit() * rng.unit() * 2_000.0 * 100.0).round() / 100.0
        });
        category.push(match roll {
            3..=4 => Some("crypto_atm?".to_string()),
            5..=14 => None,
            _ => Some(CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize].to_string()),
        });
    }
    transactions_batch(card, event, amount.into_iter().map(Some).collect(), category, merchant)
}

/// The columns of [`transactions`] and [`card_transactions`].
fn transactions_batch(
    card: Vec<String>,
    event: Vec<i64>,
    amount: Vec<Option<f64>>,
    category: Vec<Option<String>>,
    merchant: Vec<String>,
) -> RecordBatch {
    let created = event.clone();
    let schema = Arc::new(Schema::new(vec![
        Field::new("card_id", DataType::Utf8, false),
        Field::new("event_timestamp", ts_type(), false),
        Field::new("created", ts_type(), false),
        Field::new("amount", DataType::Float64, true),
        Field::new("merchant_category", DataType::Utf8, true),
        Field::new("merchant", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(card)),
            ts(event),
            ts(created),
            Arc::new(Float64Array::from(amount)),
            Arc::new(StringArray::from(category)),
            Arc::new(StringArray::from(merchant)),
        ],
    )
    .expect("columns match the schema")
}

/// Card transactions for windowed features (the fraud example's
/// `card_activity` view and its benchmarks): `rows` events over `cards`
/// cards (ids `card-00001`...) spread over `days` days before `end`, in the
/// same columns as [`transactions`]. Bursty, as fraud is: 1% of the cards
/// take a fifth of the events, in bursts of seconds to minutes. About 1
/// event in 100 is stamped on a whole minute (ties on event time), 1 in
/// 100 has a null amount. Rows are in time order.
pub fn card_transactions(cards: usize, rows: usize, days: i64, end: i64, seed: u64) -> RecordBatch {
    let mut rng = Rng(seed);
    let span = days * 24 * HOUR;
    let bursty = (cards / 100).max(1) as u64;
    let mut events: Vec<(i64, u64)> = Vec::with_capacity(rows);
    while events.len() < rows {
        if rng.below(5) == 0 {
            // A burst: one bursty card, up to 20 events within minutes.
            let card = rng.below(bursty);
            let center = end - 1 - rng.below(span as u64) as i64;
            for _ in 0..(1 + rng.below(20)).min((rows - events.len()) as u64) {
                let t = (center - rng.below(600_000_000) as i64).max(end - span);
                events.push((t, card));
            }
        } else {
            let card = bursty + rng.below(cards as u64 - bursty.min(cards as u64 - 1));
            events.push((end - 1 - rng.below(span as u64) as i64, card));
        }
    }
    events.sort_unstable();
    let mut card = Vec::with_capacity(rows);
    let mut event = Vec::with_capacity(rows);
    let mut amount = Vec::with_capacity(rows);
    let mut category = Vec::with_capacity(rows);
    let mut merchant = Vec::with_capacity(rows);
    const CATEGORIES: [&str; 6] = ["grocery", "fuel", "restaurant", "travel", "electronics", "gift_cards"];
    for (t, c) in events {
        card.push(format!("card-{:05}", 1 + c));
        event.push(if rng.below(100) == 0 {
            t - t.rem_euclid(60_000_000)
        } else {
            t
        });
        amount.push(if rng.below(100) == 0 {
            None
        } else {
            Some((rng.unit() * rng.unit() * 500.0 * 100.0).round() / 100.0)
        });
        category.push(Some(
            CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize].to_string(),
        ));
        merchant.push(format!("m-{:05}", rng.below(20_000)));
    }
    transactions_batch(card, event, amount, category, merchant)
}

/// Completed rides in and around San Francisco: `rows` rides by `riders`
/// riders (ids from 1), one every 11 seconds up to `end`, with pickup and
/// dropoff coordinates and a duration. About 1 in 500 has a bad duration.
pub fn rides(riders: usize, rows: usize, end: i64, seed: u64) -> RecordBatch {
    let mut rng = Rng(seed);
    let start = end - rows as i64 * 11_000_000;
    let mut rider = Vec::with_capacity(rows);
    let mut event = Vec::with_capacity(rows);
    let (mut plat, mut plon, mut dlat, mut dlon) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut duration = Vec::with_capacity(rows);
    for row in 0..rows {
        rider.push(1 + rng.below(riders as u64) as i64);
        event.push(start + row as i64 * 11_000_000);
        let (a, b) = (37.70 + rng.unit() * 0.12, -122.51 + rng.unit() * 0.14);
        let (c, d) = (a + (rng.unit() - 0.5) * 0.2, b + (rng.unit() - 0.5) * 0.2);
        plat.push(a);
        plon.push(b);
        dlat.push(c);
        dlon.push(d);
        duration.push(if rng.below(500) == 0 {
            0
        } else {
            120 + rng.below(3_000) as i64
        });
    }
    let created = event.clone();
    let schema = Arc::new(Schema::new(vec![
        Field::new("rider_id", DataType::Int64, false),
        Field::new("event_timestamp", ts_type(), false),
        Field::new("created", ts_type(), false),
        Field::new("pickup_lat", DataType::Float64, true),
        Field::new("pickup_lon", DataType::Float64, true),
        Field::new("dropoff_lat", DataType::Float64, true),
        Field::new("dropoff_lon", DataType::Float64, true),
        Field::new("duration_s", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(rider)),
            ts(event),
            ts(created),
            Arc::new(Float64Array::from(plat)),
            Arc::new(Float64Array::from(plon)),
            Arc::new(Float64Array::from(dlat)),
            Arc::new(Float64Array::from(dlon)),
            Arc::new(Int64Array::from(duration)),
        ],
    )
    .expect("columns match the schema")
}

/// Product titles for the search example: `products` products (ids from
/// 1), each titled once, a colour, a material and a kind, some with a
/// brand; one row per product, a minute apart up to `end`.
pub fn products(products: usize, end: i64, seed: u64) -> RecordBatch {
    const COLOURS: [&str; 12] = [
        "red", "blue", "green", "black", "white", "grey", "navy", "olive", "yellow", "pink", "brown", "orange",
    ];
    const MATERIALS: [&str; 10] = [
        "wool", "cotton", "linen", "leather", "steel", "oak", "ceramic", "glass", "silk", "bamboo",
    ];
    const KINDS: [&str; 16] = [
        "sweater", "scarf", "shirt", "jacket", "boots", "knife", "table", "chair", "mug", "vase", "lamp", "bag", "hat",
        "socks", "bowl", "desk",
    ];
    const BRANDS: [&str; 6] = ["Acme", "Nordic", "Atelier", "Kestrel", "Lumen", "Orchard"];
    let mut rng = Rng(seed);
    let start = end - products as i64 * 60_000_000;
    let mut id = Vec::with_capacity(products);
    let mut event = Vec::with_capacity(products);
    let mut title = Vec::with_capacity(products);
    for row in 0..products {
        id.push(row as i64 + 1);
        event.push(start + row as i64 * 60_000_000);
        let pick = |rng: &mut Rng, words: &[&'static str]| words[rng.below(words.len() as u64) as usize];
        let (colour, material, kind) = (
            pick(&mut rng, &COLOURS),
            pick(&mut rng, &MATERIALS),
            pick(&mut rng, &KINDS),
        );
        title.push(match rng.below(3) {
            0 => format!("{} {colour} {material} {kind}", pick(&mut rng, &BRANDS)),
            _ => format!("{colour} {material} {kind}"),
        });
    }
    let created = event.clone();
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("event_timestamp", ts_type(), false),
        Field::new("created", ts_type(), false),
        Field::new("title", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(id)),
            ts(event),
            ts(created),
            Arc::new(arrow_array::StringArray::from(title)),
        ],
    )
    .expect("columns match the schema")
}

/// The example repos that have sample data.
pub const EXAMPLES: [&str; 4] = ["driver_stats", "fraud", "rides", "products"];

/// How many bursty card transactions `skewless sample-data fraud --events`
/// writes (the aggregation benchmark's data).
#[derive(Debug, Clone, Copy)]
pub struct CardEvents {
    /// Transactions.
    pub events: usize,
    /// Cards.
    pub cards: usize,
    /// Days of history.
    pub days: i64,
}

/// `skewless sample-data`: `example`'s data into `repo/data/`, ending at
/// `end`; for `fraud` with `events`, that many card transactions instead.
pub fn sample_data(
    example: &str,
    repo: &Path,
    events: Option<CardEvents>,
    end: i64,
) -> Result<Vec<std::path::PathBuf>, String> {
    match (example, events) {
        ("fraud", Some(CardEvents { events, cards, days })) => {
            if cards == 0 || days <= 0 {
                return Err("--cards and --days must be greater than 0".into());
            }
            let batch = card_transactions(cards, events, days, end, 7);
            let path = repo.join("data/transactions.parquet");
            write_parquet(&path, &batch).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(vec![path])
        }
        (_, Some(_)) => Err("--events is for the fraud example".into()),
        (example, None) => generate(example, repo, end),
    }
}

/// Generates the data of an example repo into `repo/data/`, ending at `end`.
/// Knows the [`EXAMPLES`].
pub fn generate(example: &str, repo: &Path, end: i64) -> Result<Vec<std::path::PathBuf>, String> {
    let (file, batch) = match example {
        "driver_stats" => ("driver_stats.parquet", driver_stats(1_000, 720, end, 42)),
        "fraud" => ("transactions.parquet", transactions(500, 200_000, end, 7)),
        "rides" => ("rides.parquet", rides(2_000, 200_000, end, 11)),
        "products" => ("products.parquet", products(20_000, end, 13)),
        other => {
            return Err(format!("no sample data for `{other}` (known: {})", EXAMPLES.join(", ")));
        }
    };
    let path = repo.join("data").join(file);
    write_parquet(&path, &batch).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(vec![path])
}

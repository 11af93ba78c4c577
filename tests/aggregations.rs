//! Windowed aggregation views (`kind = "aggregation"`): exact windows,
//! checked against a brute-force computation over the raw events, at the
//! window edges by name, in any arrival order, and through a real server.

mod common;

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use common::{FIXED_END, TempRepo, read_parquet, split_mix};
use skewless_runtime::samples;

const DAY: i64 = 86_400_000_000;
const MINUTE: i64 = 60_000_000;

/// The fraud example's `card_activity` windows, as (feature, window in
/// micros or None for lifetime).
fn windows() -> Vec<(&'static str, Option<i64>)> {
    let (m10, h1, d1, d7, d30) = (10 * MINUTE, 60 * MINUTE, DAY, 7 * DAY, 30 * DAY);
    vec![
        ("txn_count_10m", Some(m10)),
        ("txn_count_1h", Some(h1)),
        ("txn_count_1d", Some(d1)),
        ("txn_count_30d", Some(d30)),
        ("amount_sum_10m", Some(m10)),
        ("amount_sum_1h", Some(h1)),
        ("amount_sum_1d", Some(d1)),
        ("amount_sum_30d", Some(d30)),
        ("amount_mean_7d", Some(d7)),
        ("amount_stddev_7d", Some(d7)),
        ("merchants_30d", Some(d30)),
        ("first_seen", None),
    ]
}

struct Txn {
    time: i64,
    amount: Option<f64>,
    merchant: String,
}

/// The obvious computation: filter the card's events to the window, then
/// count, add, average... in event-time order.
fn brute_force(events: &[Txn], feature: &str, window: Option<i64>, t: i64) -> Option<f64> {
    let inside: Vec<&Txn> = events
        .iter()
        .filter(|e| e.time < t && window.is_none_or(|w| e.time >= t - w))
        .collect();
    let amounts: Vec<f64> = inside.iter().filter_map(|e| e.amount).collect();
    let n = amounts.len() as f64;
    match feature.split('_').next().unwrap() {
        "txn" => Some(inside.len() as f64),
        "amount" if feature.contains("sum") => Some(amounts.iter().sum()),
        "amount" if feature.contains("mean") => (n > 0.0).then(|| amounts.iter().sum::<f64>() / n),
        "amount" => (n > 1.0).then(|| {
            let mean = amounts.iter().sum::<f64>() / n;
            (amounts.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / (n - 1.0)).sqrt()
        }),
        "merchants" => {
            let distinct: std::collections::HashSet<&str> = inside.iter().map(|e| e.merchant.as_str()).collect();
            (!distinct.is_empty()).then_some(distinct.len() as f64)
        }
        "first" => inside.iter().map(|e| e.time).min().map(|t| t as f64),
        other => panic!("{other}"),
    }
}

fn feature_value(column: &ArrayRef, row: usize) -> Option<f64> {
    if column.is_null(row) {
        return None;
    }
    Some(match column.data_type() {
        arrow_schema::DataType::Int64 => column.as_primitive::<Int64Type>().value(row) as f64,
        arrow_schema::DataType::Float64 => column.as_primitive::<Float64Type>().value(row),
        arrow_schema::DataType::Timestamp(..) => column.as_primitive::<TimestampMicrosecondType>().value(row) as f64,
        other => panic!("{other}"),
    })
}

fn write_spine(repo: &TempRepo, cards: &[String], times: &[i64]) -> std::path::PathBuf {
    let batch = RecordBatch::try_from_iter([
        ("card_id", std::sync::Arc::new(StringArray::from(cards.to_vec())) as ArrayRef),
        (
            "event_timestamp",
            std::sync::Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC")) as ArrayRef,
        ),
    ])
    .unwrap();
    let path = repo.path().join("spine.parquet");
    samples::write_parquet(&path, &batch).unwrap();
    path
}

/// A repo over the example's `card_activity` view alone, with `events`.
fn activity_repo(events: &RecordBatch) -> TempRepo {
    let text = std::fs::read_to_string(common::root().join("examples/repos/fraud/skewless.toml")).unwrap();
    // Keep the entity, the sources and the aggregation view.
    let start = text.find("[views.transaction_features]").unwrap();
    let end = text.find("# Windowed features").unwrap();
    let text = format!("{}{}", &text[..start], &text[end..]).replace("[services.fraud_model]\nfeatures = [\"transaction_features\"]\n", "");
    let repo = TempRepo::from_config(&text);
    samples::write_parquet(&repo.path().join("data/transactions.parquet"), events).unwrap();
    repo
}

#[test]
fn dataset_equals_a_brute_force_computation_over_the_raw_events() {
    let events = samples::card_transactions(1_000, 100_000, 60, FIXED_END, 3);
    let repo = activity_repo(&events);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);

    // The events by card, as the oracle reads them.
    let cards = events.column_by_name("card_id").unwrap().as_string::<i32>().clone();
    let times = events.column_by_name("event_timestamp").unwrap().as_primitive::<TimestampMicrosecondType>().clone();
    let amounts = events.column_by_name("amount").unwrap().as_primitive::<Float64Type>().clone();
    let merchants = events.column_by_name("merchant").unwrap().as_string::<i32>().clone();
    let mut by_card: HashMap<String, Vec<Txn>> = HashMap::new();
    for row in 0..events.num_rows() {
        by_card.entry(cards.value(row).to_string()).or_default().push(Txn {
            time: times.value(row),
            amount: amounts.is_valid(row).then(|| amounts.value(row)),
            merchant: merchants.value(row).to_string(),
        });
    }

    // Spine rows: random instants, and instants on the window edges of
    // real events (exactly at an event, W after it, W plus 1 us after it).
    let mut rng = split_mix(11);
    let (mut spine_cards, mut spine_times) = (Vec::new(), Vec::new());
    let edges = [0, 10 * MINUTE, 10 * MINUTE + 1, DAY, DAY + 1, 30 * DAY, 30 * DAY + 1];
    for i in 0..10_000u64 {
        let row = rng(events.num_rows() as u64) as usize;
        spine_cards.push(cards.value(row).to_string());
        spine_times.push(if i % 2 == 0 {
            times.value(row) + edges[rng(edges.len() as u64) as usize]
        } else {
            FIXED_END - rng(61 * DAY as u64) as i64
        });
    }
    // A card with no event at all: counts and sums 0, the rest null.
    spine_cards.push("card-none".into());
    spine_times.push(FIXED_END);
    let spine = write_spine(&repo, &spine_cards, &spine_times);
    let out = repo.path().join("train.parquet");
    repo.ok(&[
        "dataset",
        "--spine",
        spine.to_str().unwrap(),
        "--features",
        "card_activity",
        "--out",
        out.to_str().unwrap(),
    ]);
    let train = read_parquet(&out);
    assert_eq!(train.num_rows(), spine_cards.len());
    let no_events = Vec::new();
    let mut checked = 0;
    for (feature, window) in windows() {
        let column = train.column_by_name(feature).unwrap_or_else(|| panic!("no column {feature}"));
        for row in 0..train.num_rows() {
            let card_events = by_card.get(&spine_cards[row]).unwrap_or(&no_events);
            let expected = brute_force(card_events, feature, window, spine_times[row]);
            let got = feature_value(column, row);
            let ok = match (expected, got) {
                (None, None) => true,
                // HyperLogLog: within 5%, or 3 for small sets (register collisions).
                (Some(e), Some(g)) if feature.starts_with("merchants") => (g - e).abs() <= (0.05 * e).max(3.0),
                (Some(e), Some(g)) if feature.starts_with("amount") => (g - e).abs() <= 1e-12 * e.abs().max(1e-300) + 1e-9 * (feature.contains("stddev") as u8 as f64),
                (Some(e), Some(g)) => e == g,
                _ => false,
            };
            assert!(ok, "{feature} for {} at {}: dataset {got:?}, brute force {expected:?}", spine_cards[row], spine_times[row]);
            checked += 1;
        }
    }
    assert_eq!(checked, 12 * spine_cards.len());
    // Our own paths agree bit for bit, and the stored tiles are their definition.
    let verified = repo.ok(&["verify", "--seed", "5"]);
    assert!(verified.contains("tiles"), "{verified}");
}

//! Windowed aggregation views (`kind = "aggregation"`): exact windows,
//! checked against a brute-force computation over the raw events, at the
//! window edges by name, in any arrival order, and through a real server.

use skewless_testkit as kit;

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use kit::{FIXED_END, TempRepo, read_parquet, split_mix};
use skewless_runtime::samples;

const DAY: i64 = 86_400_000_000;
const MINUTE: i64 = 60_000_000;

/// (feature, function, input, window) of the example's `card_activity`.
fn example_features() -> Vec<(&'static str, &'static str, &'static str, Option<i64>)> {
    let (m10, h1, d1, d7, d30) = (10 * MINUTE, 60 * MINUTE, DAY, 7 * DAY, 30 * DAY);
    vec![
        ("txn_count_10m", "count", "", Some(m10)),
        ("txn_count_1h", "count", "", Some(h1)),
        ("txn_count_1d", "count", "", Some(d1)),
        ("txn_count_30d", "count", "", Some(d30)),
        ("amount_sum_10m", "sum", "amount", Some(m10)),
        ("amount_sum_1h", "sum", "amount", Some(h1)),
        ("amount_sum_1d", "sum", "amount", Some(d1)),
        ("amount_sum_30d", "sum", "amount", Some(d30)),
        ("amount_mean_7d", "mean", "amount", Some(d7)),
        ("amount_stddev_7d", "stddev_samp", "amount", Some(d7)),
        ("merchants_30d", "approx_count_distinct", "merchant", Some(d30)),
        ("first_seen", "first", "event_timestamp", None),
    ]
}

/// The built-ins the example does not use, in a second view of the test repo.
fn other_features() -> Vec<(&'static str, &'static str, &'static str, Option<i64>)> {
    vec![
        ("amount_n_1d", "count", "amount", Some(DAY)),
        ("amount_min_1d", "min", "amount", Some(DAY)),
        ("amount_max_1d", "max", "amount", Some(DAY)),
        ("amount_first_1d", "first", "amount", Some(DAY)),
        ("amount_last_1h", "last", "amount", Some(60 * MINUTE)),
        ("amount_mean_1h", "mean", "amount", Some(60 * MINUTE)),
        ("amount_var_pop_7d", "var_pop", "amount", Some(7 * DAY)),
        ("amount_var_samp_7d", "var_samp", "amount", Some(7 * DAY)),
        ("amount_stddev_pop_7d", "stddev_pop", "amount", Some(7 * DAY)),
        ("merchant_min_lifetime", "min", "merchant", None),
        ("amount_last_3_7d", "last_n(3)", "amount", Some(7 * DAY)),
        (
            "merchant_recent_3_30d",
            "last_distinct_n(3)",
            "merchant",
            Some(30 * DAY),
        ),
        (
            "category_top_2_1d",
            "most_frequent_n(2)",
            "merchant_category",
            Some(DAY),
        ),
        (
            "category_top_3_lifetime",
            "most_frequent_n(3)",
            "merchant_category",
            None,
        ),
    ]
}

struct Txn {
    time: i64,
    amount: Option<f64>,
    merchant: String,
    category: String,
}

/// What the oracle expects of one value.
#[derive(Debug)]
enum Expected {
    Null,
    /// Integers, extremes, times: exactly.
    Exact(f64),
    /// Float sums, means, variances: within 1e-12 relative.
    Close(f64),
    /// HyperLogLog: within 5%, or 3 for small sets.
    Approx(f64),
    /// first or last with ties on event time: one of the tied values.
    OneOf(Vec<f64>),
    /// A string.
    Text(String),
    /// A list, exactly (JSON values, as the server answers).
    List(Vec<serde_json::Value>),
    /// A list whose members depend on the order of events tied on time
    /// (the event id decides, which the oracle does not compute): its length.
    ListOfLength(usize),
}

/// The k values of the latest events in `ordered` (oldest first, by
/// time), latest first; only the length when ties on time could change
/// which values or their order.
fn latest_first(ordered: &[(i64, serde_json::Value)], k: usize) -> Expected {
    if ordered.is_empty() {
        return Expected::Null;
    }
    let tail = &ordered[ordered.len().saturating_sub(k + 1)..];
    if tail.windows(2).any(|w| w[0].0 == w[1].0) {
        return Expected::ListOfLength(k.min(ordered.len()));
    }
    Expected::List(ordered.iter().rev().take(k).map(|(_, v)| v.clone()).collect())
}

/// The obvious computation: filter the card's events to the window, then
/// count, add, average... in event-time order.
fn brute_force(events: &[Txn], function: &str, input: &str, window: Option<i64>, t: i64) -> Expected {
    let inside: Vec<&Txn> = events
        .iter()
        .filter(|e| e.time < t && window.is_none_or(|w| e.time >= t - w))
        .collect();
    let with_amount: Vec<&&Txn> = inside.iter().filter(|e| e.amount.is_some()).collect();
    let amounts: Vec<f64> = with_amount.iter().map(|e| e.amount.unwrap()).collect();
    let n = amounts.len() as f64;
    let mean = amounts.iter().sum::<f64>() / n;
    let m2 = amounts.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>();
    let some = |ok: bool, v: f64| if ok { Expected::Close(v) } else { Expected::Null };
    let k = || -> usize {
        let (_, k) = function.split_once('(').unwrap();
        k.trim_end_matches(')').parse().unwrap()
    };
    let mut by_time: Vec<&Txn> = inside.clone();
    by_time.sort_by_key(|e| e.time);
    match (function.split('(').next().unwrap(), input) {
        ("last_n", "amount") => {
            let ordered: Vec<(i64, serde_json::Value)> = by_time
                .iter()
                .filter_map(|e| Some((e.time, serde_json::json!(e.amount?))))
                .collect();
            latest_first(&ordered, k())
        }
        ("last_distinct_n", "merchant") => {
            // Each merchant at its latest event, oldest first.
            let mut latest: HashMap<&str, i64> = HashMap::new();
            for e in &by_time {
                latest.insert(&e.merchant, e.time);
            }
            let mut ordered: Vec<(i64, serde_json::Value)> =
                latest.into_iter().map(|(m, t)| (t, serde_json::json!(m))).collect();
            ordered.sort_by_key(|(t, _)| *t);
            latest_first(&ordered, k())
        }
        ("most_frequent_n", "merchant_category") => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for e in &inside {
                *counts.entry(&e.category).or_default() += 1;
            }
            let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.as_bytes().cmp(b.0.as_bytes())));
            if ranked.is_empty() {
                Expected::Null
            } else {
                Expected::List(ranked.iter().take(k()).map(|(c, _)| serde_json::json!(c)).collect())
            }
        }
        ("count", "") => Expected::Exact(inside.len() as f64),
        ("count", _) => Expected::Exact(n),
        ("sum", _) => Expected::Close(amounts.iter().sum()),
        ("mean", _) => some(n > 0.0, mean),
        ("var_pop", _) => some(n > 0.0, m2 / n),
        ("var_samp", _) => some(n > 1.0, m2 / (n - 1.0)),
        ("stddev_pop", _) => some(n > 0.0, (m2 / n).sqrt()),
        ("stddev_samp", _) => some(n > 1.0, (m2 / (n - 1.0)).sqrt()),
        ("min", "amount") => amounts
            .iter()
            .copied()
            .reduce(f64::min)
            .map_or(Expected::Null, Expected::Exact),
        ("max", "amount") => amounts
            .iter()
            .copied()
            .reduce(f64::max)
            .map_or(Expected::Null, Expected::Exact),
        ("min", "merchant") => inside
            .iter()
            .map(|e| &e.merchant)
            .min()
            .map_or(Expected::Null, |m| Expected::Text(m.clone())),
        ("first", "event_timestamp") => inside
            .iter()
            .map(|e| e.time)
            .min()
            .map_or(Expected::Null, |t| Expected::Exact(t as f64)),
        ("first" | "last", "amount") => {
            let edge = if function == "first" {
                with_amount.iter().map(|e| e.time).min()
            } else {
                with_amount.iter().map(|e| e.time).max()
            };
            match edge {
                None => Expected::Null,
                Some(edge) => Expected::OneOf(
                    with_amount
                        .iter()
                        .filter(|e| e.time == edge)
                        .map(|e| e.amount.unwrap())
                        .collect(),
                ),
            }
        }
        ("approx_count_distinct", _) => {
            let distinct: std::collections::HashSet<&str> = inside.iter().map(|e| e.merchant.as_str()).collect();
            if distinct.is_empty() {
                Expected::Null
            } else {
                Expected::Approx(distinct.len() as f64)
            }
        }
        other => panic!("{other:?}"),
    }
}

fn matches(expected: &Expected, column: &ArrayRef, row: usize) -> bool {
    match (
        expected,
        skewless_runtime::codec::json::value_json(column.as_ref(), row),
    ) {
        (Expected::List(values), serde_json::Value::Array(got)) => return *values == got,
        (Expected::ListOfLength(n), serde_json::Value::Array(got)) => return got.len() == *n,
        (Expected::List(_) | Expected::ListOfLength(_), _) => return false,
        _ => {}
    }
    if let Expected::Text(text) = expected {
        let c = column.as_string::<i32>();
        return c.is_valid(row) && c.value(row) == text;
    }
    match (expected, feature_value(column, row)) {
        (Expected::Null, None) => true,
        (Expected::Exact(e), Some(g)) => *e == g,
        (Expected::Close(e), Some(g)) => (g - e).abs() <= 1e-12 * e.abs() || (g - e).abs() < 1e-9 && e.abs() < 1e-3,
        (Expected::Approx(e), Some(g)) => (g - e).abs() <= (0.05 * e).max(3.0),
        (Expected::OneOf(values), Some(g)) => values.contains(&g),
        _ => false,
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

/// A spine of (card, time) rows, with an `amount` request column if given.
fn write_spine_with(repo: &TempRepo, cards: &[String], times: &[i64], amounts: Option<Vec<f64>>) -> std::path::PathBuf {
    let mut columns = vec![
        (
            "card_id",
            std::sync::Arc::new(StringArray::from(cards.to_vec())) as ArrayRef,
        ),
        (
            "event_timestamp",
            std::sync::Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC")) as ArrayRef,
        ),
    ];
    if let Some(amounts) = amounts {
        columns.push((
            "amount",
            std::sync::Arc::new(arrow_array::Float64Array::from(amounts)) as ArrayRef,
        ));
    }
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let path = repo.path().join("spine.parquet");
    samples::write_parquet(&path, &batch).unwrap();
    path
}

/// The fraud example repo with `events` as its transactions.
fn activity_repo(events: &RecordBatch) -> TempRepo {
    let repo = TempRepo::new("fraud");
    samples::write_parquet(&repo.path().join("data/transactions.parquet"), events).unwrap();
    repo
}

#[test]
fn dataset_equals_a_brute_force_computation_over_the_raw_events() {
    let events = samples::card_transactions(10_000, 1_000_000, 60, FIXED_END, 3);
    let repo = activity_repo(&events);
    // Every other built-in, in a second view over the same events.
    let mut config = std::fs::read_to_string(repo.path().join("skewless.toml")).unwrap();
    config.push_str("\n[views.card_other]\nkind = \"aggregation\"\nentities = [\"card\"]\nsource = \"transactions\"\naggregations = [\n");
    for (name, function, input, window) in other_features() {
        let window = match window {
            None => "lifetime".to_string(),
            Some(w) if w % DAY == 0 => format!("{}d", w / DAY),
            Some(w) => format!("{}m", w / MINUTE),
        };
        config.push_str(&format!(
            "  {{ name = \"{name}\", function = \"{function}\", input = \"{input}\", window = \"{window}\" }},\n"
        ));
    }
    config.push_str("]\n");
    std::fs::write(repo.path().join("skewless.toml"), config).unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill", "--view", "card_activity"]);
    repo.ok(&["backfill", "--view", "card_other"]);

    // The events by card, as the oracle reads them.
    let cards = events.column_by_name("card_id").unwrap().as_string::<i32>().clone();
    let times = events
        .column_by_name("event_timestamp")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>()
        .clone();
    let amounts = events
        .column_by_name("amount")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let merchants = events.column_by_name("merchant").unwrap().as_string::<i32>().clone();
    let categories = events
        .column_by_name("merchant_category")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let mut by_card: HashMap<String, Vec<Txn>> = HashMap::new();
    for row in 0..events.num_rows() {
        by_card.entry(cards.value(row).to_string()).or_default().push(Txn {
            time: times.value(row),
            amount: amounts.is_valid(row).then(|| amounts.value(row)),
            merchant: merchants.value(row).to_string(),
            category: categories.value(row).to_string(),
        });
    }

    // Spine rows on random cards (bursty ones included): random instants,
    // and instants on the window edges of the card's real events (exactly
    // at an event, W after it, W plus 1 us after it).
    let mut rng = split_mix(11);
    let mut card_names: Vec<&String> = by_card.keys().collect();
    card_names.sort();
    let (mut spine_cards, mut spine_times) = (Vec::new(), Vec::new());
    let edges = [0, 10 * MINUTE, 10 * MINUTE + 1, DAY, DAY + 1, 30 * DAY, 30 * DAY + 1];
    for i in 0..100_000u64 {
        let card = card_names[rng(card_names.len() as u64) as usize];
        let card_events = &by_card[card];
        spine_cards.push(card.clone());
        spine_times.push(if i % 2 == 0 {
            card_events[rng(card_events.len() as u64) as usize].time + edges[rng(edges.len() as u64) as usize]
        } else {
            FIXED_END - rng(61 * DAY as u64) as i64
        });
    }
    // A card with no event at all: counts and sums 0, the rest null.
    spine_cards.push("card-none".into());
    spine_times.push(FIXED_END);
    let train = dataset(&repo, "card_activity,card_other", &spine_cards, &spine_times, None);
    assert_eq!(train.num_rows(), spine_cards.len());
    let no_events = Vec::new();
    let (mut checked, mut lists, mut lists_in_full) = (0, 0, 0);
    for (feature, function, input, window) in example_features().into_iter().chain(other_features()) {
        let column = train
            .column_by_name(feature)
            .unwrap_or_else(|| panic!("no column {feature}"));
        for row in 0..train.num_rows() {
            let card_events = by_card.get(&spine_cards[row]).unwrap_or(&no_events);
            let expected = brute_force(card_events, function, input, window, spine_times[row]);
            if function.contains('(') {
                lists += 1;
                lists_in_full += matches!(expected, Expected::List(_) | Expected::Null) as usize;
            }
            assert!(
                matches(&expected, column, row),
                "{feature} for {} at {}: dataset {:?}, brute force {expected:?}",
                spine_cards[row],
                spine_times[row],
                skewless_runtime::codec::json::value_json(column.as_ref(), row)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 26 * spine_cards.len());
    // Ties on event time are rare: nearly every list was checked value by value.
    assert!(lists_in_full * 100 >= lists * 99, "{lists_in_full} of {lists}");
    // Our own paths agree bit for bit, and the stored tiles are their definition.
    let verified = repo.ok(&["verify", "--seed", "5"]);
    assert!(verified.contains("tiles"), "{verified}");
}

const EDGES_REPO: &str = r#"project = "edges"

[entities.card]
join_keys = { card_id = "utf8" }

[sources.events]
type = "file"
path = "data/events.parquet"

[sources.events_push]
type = "push"
batch_source = "events"

[views.w]
kind = "aggregation"
entities = ["card"]
source = "events_push"
inputs = { amount = "float64", merchant = "utf8" }
aggregations = [
  { name = "n_1h",     function = "count", window = "1h" },
  { name = "sum_1h",   function = "sum",   input = "amount", window = "1h" },
  { name = "min_1h",   function = "min",   input = "amount", window = "1h" },
  { name = "mean_1h",  function = "mean",  input = "amount", window = "1h" },
  { name = "first_1h", function = "first", input = "merchant", window = "1h" },
  { name = "last_1h",  function = "last",  input = "merchant", window = "1h" },
  { name = "n_life",   function = "count", window = "lifetime" },
]
"#;

fn events_batch(rows: &[(&str, i64, Option<f64>, &str)]) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "card_id",
            std::sync::Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        (
            "event_timestamp",
            std::sync::Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1)).with_timezone("UTC"),
            ) as ArrayRef,
        ),
        (
            "amount",
            std::sync::Arc::new(arrow_array::Float64Array::from_iter(rows.iter().map(|r| r.2))) as ArrayRef,
        ),
        (
            "merchant",
            std::sync::Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// `skewless dataset` of `features` at (card, time) spine rows, with an
/// `amount` request column if given.
fn dataset(repo: &TempRepo, features: &str, cards: &[String], times: &[i64], amounts: Option<Vec<f64>>) -> RecordBatch {
    let spine = write_spine_with(repo, cards, times, amounts);
    let out = repo.path().join("train.parquet");
    repo.ok(&kit::dataset_args(&spine, features, &out));
    read_parquet(&out)
}

#[test]
fn window_edges_by_name() {
    // Pre-1970 on purpose: 1,000 days before the epoch, off the hour.
    let t = -1_000 * DAY + 17 * MINUTE + 123_456;
    let h = 60 * MINUTE;
    let events = events_batch(&[
        ("a", t - h, Some(1.5), "at t - W: included"),
        ("a", t - h - 1, Some(100.0), "1 us older: excluded"),
        ("a", t, Some(1000.0), "at t: excluded"),
        ("a", t - 10 * MINUTE, None, "tie x"),
        ("a", t - 10 * MINUTE, Some(2.25), "tie y"),
    ]);
    let repo = TempRepo::from_config(EDGES_REPO);
    samples::write_parquet(&repo.path().join("data/events.parquet"), &events).unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    let cards: Vec<String> = ["a", "a", "b"].map(String::from).into();
    let train = dataset(&repo, "w", &cards, &[t, t - 5 * h, t], None);
    let int = |name: &str, row: usize| feature_value(train.column_by_name(name).unwrap(), row);
    let text = |name: &str, row: usize| {
        let c = train.column_by_name(name).unwrap().as_string::<i32>();
        c.is_valid(row).then(|| c.value(row).to_string())
    };
    // At t: the event at t - W and the two tied ones; not t - W - 1us, not t.
    assert_eq!(int("n_1h", 0), Some(3.0));
    assert_eq!(int("sum_1h", 0), Some(1.5 + 2.25), "the null amount is skipped");
    assert_eq!(int("min_1h", 0), Some(1.5));
    assert_eq!(int("mean_1h", 0), Some((1.5 + 2.25) / 2.0));
    assert_eq!(text("first_1h", 0).as_deref(), Some("at t - W: included"));
    let last = text("last_1h", 0).unwrap();
    assert!(last == "tie x" || last == "tie y", "{last}");
    assert_eq!(int("n_life", 0), Some(4.0), "lifetime: everything before t");
    // An empty window: count and sum 0, the others null; and a card never seen.
    for row in [1, 2] {
        assert_eq!(int("n_1h", row), Some(0.0));
        assert_eq!(int("sum_1h", row), Some(0.0));
        assert_eq!(int("min_1h", row), None);
        assert_eq!(int("mean_1h", row), None);
        assert_eq!(text("first_1h", row), None);
        assert_eq!(int("n_life", row), Some(0.0));
    }

    // The tie is broken by the event order, not by arrival: pushing the
    // events in the other order gives the same `last`.
    let pushed = TempRepo::from_config(EDGES_REPO);
    pushed.ok(&["apply"]);
    let server = pushed.serve(&[]);
    for row in (0..events.num_rows()).rev() {
        push_rows_to(&server, &events.slice(row, 1), "events_push");
    }
    server.stop();
    let again = dataset(&pushed, "w", &cards, &[t, t - 5 * h, t], None);
    kit::assert_bit_identical(&train, &again);
}

#[test]
fn any_arrival_order_gives_the_same_bits_and_the_server_answers_as_dataset() {
    // Events from the generator up to now, so the server's windows hold some.
    let end = skewless_runtime::time::now_micros();
    let events = samples::card_transactions(50, 3_000, 40, end, 9);
    let events = arrow_select::concat::concat_batches(
        &events.schema(),
        // Exact duplicates stay two events.
        &[events.clone(), events.slice(100, 20)],
    )
    .unwrap();
    let backfilled = activity_repo(&events);
    backfilled.ok(&["apply"]);
    backfilled.ok(&["backfill", "--view", "card_activity"]);
    // The user-defined function (a Wasm component) too, and the list functions.
    backfilled.ok(&["backfill", "--view", "card_amount_median"]);
    backfilled.ok(&["backfill", "--view", "card_recent"]);

    // The same events pushed in shuffled order, in batches of 1 to 50 rows
    // (so later batches hold late events).
    let pushed = activity_repo(&events);
    std::fs::remove_file(pushed.path().join("data/transactions.parquet")).unwrap();
    pushed.ok(&["apply"]);
    let server = pushed.serve(&[]);
    let mut rng = split_mix(4);
    let mut order: Vec<u32> = (0..events.num_rows() as u32).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng(i as u64 + 1) as usize);
    }
    let shuffled = arrow_select::take::take_record_batch(&events, &arrow_array::UInt32Array::from(order)).unwrap();
    let mut at = 0;
    while at < shuffled.num_rows() {
        let n = (1 + rng(50) as usize).min(shuffled.num_rows() - at);
        push_rows_to(&server, &shuffled.slice(at, n), "transactions_push");
        at += n;
    }

    // The stored events and tiles are the same bytes.
    let dump = |repo: &TempRepo| -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let store = skewless_runtime::Store::open_existing(&repo.store()).unwrap();
        store
            .dump()
            .unwrap()
            .into_iter()
            .filter(|(table, _, _)| table == "aggregates")
            .collect()
    };
    // Online, through the socket: the answer at the server's `now`, which
    // it returns as the features' event timestamp; with the on-demand view
    // over the windowed features.
    let cards = ["card-00001", "card-00007", "card-00033", "card-99999"];
    let mut nows = Vec::new();
    let mut online = Vec::new();
    for card in cards {
        let (status, answer) = server.post(
            "/get-online-features",
            &format!(
                r#"{{"features": ["card_activity", "amount_vs_usual", "card_amount_median", "card_recent"], "entities": {{"card_id": ["{card}"], "amount": [250.0]}}}}"#
            ),
        );
        assert_eq!(status, 200, "{answer}");
        let names: Vec<String> = answer["metadata"]["feature_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        let results = answer["results"].as_array().unwrap();
        let at = names.iter().position(|n| n == "txn_count_1h").unwrap();
        let stamp = results[at]["event_timestamps"][0].as_str().unwrap();
        nows.push(skewless_runtime::time::parse_timestamp(stamp).unwrap());
        online.push(
            names
                .into_iter()
                .zip(results)
                .filter(|(name, _)| name != "card_id" && name != "amount")
                .map(|(name, r)| (name, r["values"][0].clone()))
                .collect::<Vec<_>>(),
        );
    }
    server.stop();
    assert_eq!(dump(&backfilled), dump(&pushed), "backfilled and pushed stores differ");
    assert!(!dump(&pushed).is_empty());

    let spine_cards: Vec<String> = cards.iter().map(|c| c.to_string()).collect();
    let amounts = Some(vec![250.0; cards.len()]);
    let train = dataset(
        &pushed,
        "card_activity,amount_vs_usual,card_amount_median,card_recent",
        &spine_cards,
        &nows,
        amounts,
    );
    for (row, values) in online.iter().enumerate() {
        assert_eq!(values.len(), 19);
        for (name, value) in values {
            let column = train.column_by_name(name).unwrap();
            let offline = skewless_runtime::codec::json::value_json(column.as_ref(), row);
            assert_eq!(&offline, value, "{name} for {} at {}", cards[row], nows[row]);
        }
    }
    // The on-demand view read the windowed features: a card with history has a ratio.
    assert!(
        online[0].iter().any(|(n, v)| n == "amount_to_mean_7d" && v.is_f64()),
        "{:?}",
        online[0]
    );
    // The user function's median is within its sketch's 1/64 of the exact
    // lower median of the window's amounts.
    let (cards_col, times_col, amount_col) = (
        events.column_by_name("card_id").unwrap().as_string::<i32>(),
        events
            .column_by_name("event_timestamp")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>(),
        events.column_by_name("amount").unwrap().as_primitive::<Float64Type>(),
    );
    for (row, card) in cards.iter().enumerate() {
        for (feature, window) in [("amount_median_1d", DAY), ("amount_median_7d", 7 * DAY)] {
            let t = nows[row];
            let mut inside: Vec<f64> = (0..events.num_rows())
                .filter(|&e| cards_col.value(e) == *card && amount_col.is_valid(e))
                .filter(|&e| times_col.value(e) < t && times_col.value(e) >= t - window)
                .map(|e| amount_col.value(e))
                .collect();
            inside.sort_by(f64::total_cmp);
            let got = online[row].iter().find(|(n, _)| n == feature).unwrap().1.as_f64();
            match inside.get(inside.len().wrapping_sub(1) / 2) {
                None => assert_eq!(got, None, "{feature} of {card}"),
                Some(&exact) => {
                    let got = got.unwrap();
                    assert!(
                        (got - exact).abs() <= exact.abs() / 64.0,
                        "{feature} of {card}: {got} vs {exact}"
                    );
                }
            }
        }
    }
    assert!(online[0].iter().any(|(n, v)| n == "amount_median_7d" && v.is_f64()));
    // A card with history has its lists, latest first.
    for list in ["last_amounts_7d", "recent_merchants", "top_categories_30d"] {
        let (_, value) = online[0].iter().find(|(n, _)| n == list).unwrap();
        assert!(value.as_array().is_some_and(|a| !a.is_empty()), "{list}: {value}");
    }
    // And `verify` agrees, in both stores.
    backfilled.ok(&["verify", "--seed", "1"]);
    pushed.ok(&["verify", "--seed", "2"]);
}

/// Pushes `rows` (every column) to push source `source` through the server.
fn push_rows_to(server: &kit::ServerProcess, rows: &RecordBatch, source: &str) {
    let column = |name: &str| -> Vec<serde_json::Value> {
        let array = rows.column_by_name(name).unwrap();
        (0..rows.num_rows())
            .map(|r| skewless_runtime::codec::json::value_json(array.as_ref(), r))
            .collect()
    };
    let df: serde_json::Map<String, serde_json::Value> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), serde_json::Value::Array(column(f.name()))))
        .collect();
    let body = serde_json::json!({ "push_source_name": source, "df": df });
    let (status, answer) = server.post("/push", &body.to_string());
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn a_row_transform_runs_on_each_event_before_aggregating() {
    // The fraud example's transform prepares each event; the windows read
    // its outputs, and `amount` straight from the source.
    let events = samples::card_transactions(100, 5_000, 10, FIXED_END, 5);
    let repo = activity_repo(&events);
    let mut config = std::fs::read_to_string(repo.path().join("skewless.toml")).unwrap();
    let component = kit::example_components().join("fraud_features.wasm");
    config.push_str(&format!(
        r#"
[views.card_prepared]
kind = "aggregation"
entities = ["card"]
source = "transactions"
transform = "{}"
aggregations = [
  {{ name = "log_sum_1d",    function = "sum",   input = "amount_log", window = "1d" }},
  {{ name = "risky_1d",      function = "count", input = "is_high_risk_merchant", window = "1d" }},
  {{ name = "hour_max_7d",   function = "max",   input = "hour_of_day", window = "7d" }},
  {{ name = "amount_mean_1d", function = "mean", input = "amount", window = "1d" }},
]
"#,
        component.display()
    ));
    std::fs::write(repo.path().join("skewless.toml"), config).unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill", "--view", "card_prepared"]);

    // The oracle runs the same component on every event, then aggregates.
    let runtime = kit::runtime();
    let transform = kit::example(&runtime, "fraud_features");
    let input = RecordBatch::try_from_iter(
        ["amount", "merchant_category", "event_timestamp"].map(|c| (c, events.column_by_name(c).unwrap().clone())),
    )
    .unwrap();
    let output = transform.run(&input).unwrap().batch;
    let log = output
        .column_by_name("amount_log")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let risky = output
        .column_by_name("is_high_risk_merchant")
        .unwrap()
        .as_boolean()
        .clone();
    let hour = output
        .column_by_name("hour_of_day")
        .unwrap()
        .as_primitive::<Int64Type>()
        .clone();
    let amount = events
        .column_by_name("amount")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let cards = events.column_by_name("card_id").unwrap().as_string::<i32>().clone();
    let times = events
        .column_by_name("event_timestamp")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>()
        .clone();

    let mut rng = split_mix(8);
    let spine_cards: Vec<String> = (0..500).map(|_| format!("card-{:05}", 1 + rng(100))).collect();
    let spine_times: Vec<i64> = (0..500).map(|_| FIXED_END - rng(11 * DAY as u64) as i64).collect();
    let train = dataset(&repo, "card_prepared", &spine_cards, &spine_times, None);
    for row in 0..spine_cards.len() {
        let (card, t) = (&spine_cards[row], spine_times[row]);
        let (cards, times) = (&cards, &times);
        let inside = |w: i64| -> Vec<usize> {
            (0..events.num_rows())
                .filter(|&e| cards.value(e) == card && times.value(e) < t && times.value(e) >= t - w)
                .collect()
        };
        let log_sum: f64 = inside(DAY)
            .into_iter()
            .filter(|&e| log.is_valid(e))
            .map(|e| log.value(e))
            .sum();
        let risky_n = inside(DAY).into_iter().filter(|&e| risky.is_valid(e)).count() as f64;
        let hour_max = inside(7 * DAY)
            .into_iter()
            .filter(|&e| hour.is_valid(e))
            .map(|e| hour.value(e))
            .max();
        let amounts: Vec<f64> = inside(DAY)
            .into_iter()
            .filter(|&e| amount.is_valid(e))
            .map(|e| amount.value(e))
            .collect();
        let got = |name: &str| feature_value(train.column_by_name(name).unwrap(), row);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
        assert!(close(got("log_sum_1d").unwrap(), log_sum), "{card} at {t}");
        assert_eq!(got("risky_1d"), Some(risky_n), "{card} at {t}");
        assert_eq!(got("hour_max_7d"), hour_max.map(|h| h as f64), "{card} at {t}");
        match got("amount_mean_1d") {
            None => assert!(amounts.is_empty()),
            Some(mean) => assert!(close(mean, amounts.iter().sum::<f64>() / amounts.len() as f64)),
        }
    }
    repo.ok(&["verify", "--seed", "3"]);
}

#[test]
fn an_event_id_column_makes_retried_pushes_idempotent() {
    let config = EDGES_REPO
        .replace(
            "path = \"data/events.parquet\"",
            "path = \"data/events.parquet\"\nevent_id_column = \"txn_id\"",
        )
        .replace(
            "inputs = { amount = \"float64\", merchant = \"utf8\" }",
            "inputs = { amount = \"float64\", merchant = \"utf8\", txn_id = \"utf8\" }",
        );
    let repo = TempRepo::from_config(&config);
    repo.ok(&["apply"]);
    let server = repo.serve(&[]);
    let t = FIXED_END - 30 * MINUTE;
    let push_at = |id: &str, amount: f64, at: i64| {
        let body = serde_json::json!({
            "push_source_name": "events_push",
            "df": {
                "card_id": ["a"], "txn_id": [id], "amount": [amount], "merchant": ["m"],
                "event_timestamp": [skewless_runtime::time::format_timestamp(at)],
            },
        });
        let (status, answer) = server.post("/push", &body.to_string());
        assert_eq!(status, 200, "{answer}");
    };
    let push = |id: &str, amount: f64| push_at(id, amount, t);
    push("t-1", 10.0);
    push("t-1", 10.0); // a retry: the same event
    push("t-2", 5.0);
    push("t-2", 7.0); // a correction: replaces t-2's amount
    // A row without an id is refused by name, and nothing of it is stored.
    let body = r#"{"push_source_name": "events_push", "df": {"card_id": ["a"], "txn_id": [null],
        "amount": [1.0], "merchant": ["m"], "event_timestamp": ["2025-12-31T23:40:00Z"]}}"#;
    let (status, answer) = server.post("/push", body);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("null_key")),
        "{answer}"
    );
    assert!(answer.to_string().contains("txn_id"), "{answer}");
    let cards = vec!["a".to_string()];
    let train = dataset(&repo, "w", &cards, &[FIXED_END], None);
    assert_eq!(feature_value(train.column_by_name("n_1h").unwrap(), 0), Some(2.0));
    assert_eq!(feature_value(train.column_by_name("sum_1h").unwrap(), 0), Some(17.0));

    // Corrections that move an event: t-1 to three hours earlier (out of
    // the hour's window, and out of its hour entry), t-2 by a minute within
    // its hour. Each is still one event.
    push_at("t-1", 10.0, FIXED_END - 3 * 60 * MINUTE);
    push_at("t-2", 7.0, t + MINUTE);
    server.stop();
    let train = dataset(&repo, "w", &cards, &[FIXED_END], None);
    assert_eq!(feature_value(train.column_by_name("n_1h").unwrap(), 0), Some(1.0));
    assert_eq!(feature_value(train.column_by_name("sum_1h").unwrap(), 0), Some(7.0));
    assert_eq!(feature_value(train.column_by_name("n_life").unwrap(), 0), Some(2.0));
    let before = dataset(&repo, "w", &cards, &[t + MINUTE], None);
    assert_eq!(feature_value(before.column_by_name("n_life").unwrap(), 0), Some(1.0));
    repo.ok(&["verify", "--seed", "4"]);

    // A source column that is not int64 or utf8 is refused at apply, by line.
    let bad = config.replace("txn_id = \"utf8\"", "txn_id = \"float64\"");
    let error = TempRepo::from_config(&bad).fails(&["apply"]);
    assert!(error.contains("event_id_column `txn_id` is float64"), "{error}");
}

#[test]
fn apply_names_a_list_function_written_wrong_with_its_line() {
    let events = samples::card_transactions(20, 500, 5, FIXED_END, 3);
    let repo = activity_repo(&events);
    let base = std::fs::read_to_string(repo.path().join("skewless.toml")).unwrap();
    for (function, says) in [
        ("last_n", "`last_n` needs its k, as in `last_n(5)`"),
        ("last_n(0)", "k must be a whole number from 1 to 1000"),
        ("last_distinct_n(5000)", "k must be a whole number from 1 to 1000"),
        (
            "first_n(3)",
            "unknown function `first_n(3)` (functions: count, sum, mean",
        ),
        ("sum(2)", "`sum(2)` takes no k: write `sum`"),
    ] {
        let config = format!(
            "{base}\n[views.card_lists]\nkind = \"aggregation\"\nentities = [\"card\"]\nsource = \"transactions\"\n\
             aggregations = [\n  {{ name = \"lists_1d\", function = \"{function}\", input = \"merchant\", window = \"1d\" }},\n]\n"
        );
        std::fs::write(repo.path().join("skewless.toml"), &config).unwrap();
        let refused = repo.fails(&["apply"]);
        let line = format!("skewless.toml:{}", config.lines().count() - 1);
        for needed in [says, "views.card_lists.aggregations.lists_1d", &line] {
            assert!(
                refused.contains(needed),
                "{function}: `{needed}` missing from: {refused}"
            );
        }
    }
}

#[test]
fn apply_refuses_a_user_aggregation_that_breaks_the_fold_laws_or_its_input_type() {
    let events = samples::card_transactions(20, 500, 5, FIXED_END, 3);
    let repo = activity_repo(&events);
    let base = std::fs::read_to_string(repo.path().join("skewless.toml")).unwrap();
    let with_view = |function: &std::path::Path, input: &str| {
        let config = format!(
            "{base}\n[views.card_custom]\nkind = \"aggregation\"\nentities = [\"card\"]\nsource = \"transactions\"\n\
             aggregations = [\n  {{ name = \"custom_1d\", function = \"{}\", input = \"{input}\", window = \"1d\" }},\n]\n",
            function.display()
        );
        std::fs::write(repo.path().join("skewless.toml"), &config).unwrap();
        config.lines().count() - 1
    };

    // A mean whose merge averages the two means: updating at once and in
    // two parts disagree, so the fold's fixed tile order would show.
    with_view(&kit::test_components().join("split_sensitive.wasm"), "amount");
    let refused = repo.fails(&["apply"]);
    for needed in [
        "card_custom",
        "custom_1d",
        "split_sensitive.wasm",
        "is refused",
        "in two parts",
        "expected Float64(",
    ] {
        assert!(refused.contains(needed), "`{needed}` missing from: {refused}");
    }
    assert!(
        !skewless_runtime::Store::open_existing(&repo.store())
            .map(|s| s.registry().unwrap().views.contains_key("card_custom"))
            .unwrap_or(false),
        "a refused view must not reach the registry"
    );

    // The approx_median example takes float64: a utf8 input is named, with its line.
    let line = with_view(&kit::example_components().join("approx_median.wasm"), "merchant");
    let wrong = repo.fails(&["apply"]);
    for needed in [
        format!("skewless.toml:{line}"),
        "views.card_custom.aggregations.custom_1d".to_string(),
        "takes float64 inputs, not utf8".to_string(),
    ] {
        assert!(wrong.contains(&needed), "`{needed}` missing from: {wrong}");
    }

    // The example itself is accepted, and its values verify.
    with_view(&kit::example_components().join("approx_median.wasm"), "amount");
    repo.ok(&["apply"]);
    repo.ok(&["backfill", "--view", "card_custom"]);
    repo.ok(&["verify", "--seed", "5"]);
}

#[test]
fn a_user_aggregation_that_traps_fails_the_write_clearly_and_stores_nothing_of_it() {
    // A count that panics on the amount 13.0, beside a built-in count.
    let component = kit::test_components().join("trap_aggregator.wasm");
    let config = EDGES_REPO.replace(
        "  { name = \"n_life\",   function = \"count\", window = \"lifetime\" },",
        &format!(
            "  {{ name = \"n_life\",   function = \"count\", window = \"lifetime\" }},\n  \
             {{ name = \"lucky_1h\", function = \"{}\", input = \"amount\", window = \"1h\" }},",
            component.display()
        ),
    );
    let repo = TempRepo::from_config(&config);
    let t = FIXED_END - 30 * MINUTE;
    let good = events_batch(&[("a", t, Some(5.0), "m"), ("a", t + MINUTE, Some(6.0), "m")]);
    samples::write_parquet(&repo.path().join("data/events.parquet"), &good).unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    let dump = || {
        skewless_runtime::Store::open_existing(&repo.store())
            .unwrap()
            .dump()
            .unwrap()
    };
    let stored = dump();

    // A backfill that reaches 13.0 fails, naming the view, the feature and the guest's panic.
    let bad = events_batch(&[("a", t + 2 * MINUTE, Some(7.0), "m"), ("b", t, Some(13.0), "m")]);
    samples::write_parquet(&repo.path().join("data/events.parquet"), &bad).unwrap();
    let error = repo.fails(&["backfill"]);
    for needed in ["w.lucky_1h", "trapped", "unlucky amount 13"] {
        assert!(error.contains(needed), "`{needed}` missing from: {error}");
    }
    assert_eq!(dump(), stored, "a failed backfill left something behind");

    // A push of it answers with the transform error and changes nothing; the server goes on.
    let server = repo.serve(&[]);
    let push = |amount: f64| {
        let body = serde_json::json!({
            "push_source_name": "events_push",
            "df": {"card_id": ["a"], "amount": [amount], "merchant": ["m"],
                   "event_timestamp": [skewless_runtime::time::format_timestamp(t + 3 * MINUTE)]},
        });
        server.post("/push", &body.to_string())
    };
    let (status, answer) = push(13.0);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (500, Some("transform_failed")),
        "{answer}"
    );
    assert!(answer.to_string().contains("unlucky amount 13"), "{answer}");
    let (status, answer) = push(8.0);
    assert_eq!(status, 200, "{answer}");
    // Pushed at once, so the server commits them together: the poison one
    // fails alone, the others are stored.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let pushes: Vec<_> = [1.0, 2.0, 13.0, 3.0, 4.0, 13.0, 5.0, 6.0]
            .into_iter()
            .map(|amount| scope.spawn(move || push(amount).0))
            .collect();
        pushes.into_iter().map(|p| p.join().unwrap()).collect()
    });
    assert_eq!(statuses, [200, 200, 500, 200, 200, 500, 200, 200]);
    server.stop();
    let train = dataset(&repo, "w", &["a".to_string()], &[FIXED_END], None);
    assert_eq!(feature_value(train.column_by_name("lucky_1h").unwrap(), 0), Some(9.0));
    repo.ok(&["verify", "--seed", "6"]);
}

#[test]
fn a_version_1_store_is_refused_with_the_commands_that_rebuild_it() {
    // Written by the last version-1 build (tests/fixtures/store_v1/README.md).
    let fixture = kit::root().join("tests/fixtures/store_v1/store.redb");
    let repo = TempRepo::new("fraud");
    samples::write_parquet(
        &repo.path().join("data/transactions.parquet"),
        &samples::card_transactions(20, 300, 60, skewless_runtime::time::now_micros(), 7),
    )
    .unwrap();
    std::fs::create_dir_all(repo.store().parent().unwrap()).unwrap();
    std::fs::copy(&fixture, repo.store()).unwrap();
    // What the file holds, read with redb itself: this build refuses to open it.
    let contents = |path: &std::path::Path| {
        use redb::{ReadableDatabase, ReadableTable};
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        let version = txn
            .open_table(meta)
            .unwrap()
            .get("format_version")
            .unwrap()
            .map(|g| g.value());
        let mut entries = Vec::new();
        for name in ["history", "latest", "aggregates"] {
            let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
            for item in txn.open_table(table).unwrap().iter().unwrap() {
                let (key, value) = item.unwrap();
                entries.push((name, key.value().to_vec(), value.value().to_vec()));
            }
        }
        (version, entries)
    };
    let before = contents(&repo.store());
    assert_eq!(before.0, Some(1), "the fixture is a version-1 store");
    assert!(!before.1.is_empty());
    for args in [
        &["apply"][..],
        &["backfill", "--view", "card_activity"],
        &["get", "--features", "card_activity", "--entity", "card_id=card-00001"],
    ] {
        let said = repo.fails(args);
        assert!(
            said.contains("format version 1")
                && said.contains("reads version 2")
                && said.contains("skewless apply")
                && said.contains("skewless backfill"),
            "skewless {args:?}: {said}"
        );
        assert!(said.contains(repo.store().to_str().unwrap()), "names the file: {said}");
    }
    assert!(contents(&repo.store()) == before, "the refused store is left as it was");

    // The commands it names rebuild it.
    std::fs::rename(repo.store(), repo.path().join("store-v1.redb")).unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill", "--view", "card_activity"]);
    let got = repo.ok(&["get", "--features", "card_activity", "--entity", "card_id=card-00001"]);
    assert!(got.contains("txn_count_30d"), "{got}");
}

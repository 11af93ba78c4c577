//! An aggregator that keeps the fold laws (a count) but panics on the input
//! 13.0: a bug that only some events reach. Backfill and push must fail with
//! a clear error and store nothing of the failed write.

use skewless_sdk::Aggregate;

pub struct CountButThirteen;

impl Aggregate for CountButThirteen {
    const NAME: &'static str = "count_but_thirteen";
    const VERSION: &'static str = "0.1.0";
    type Input = f64;
    type Output = i64;
    type State = u64;

    fn update(state: &mut u64, value: f64) {
        if value == 13.0 {
            panic!("unlucky amount 13");
        }
        *state += 1;
    }

    fn merge(state: &mut u64, later: u64) {
        *state += later;
    }

    fn finalize(state: u64) -> Option<i64> {
        Some(state as i64)
    }
}

skewless_sdk::export_aggregator!(CountButThirteen);

//! An aggregator whose merge is wrong on purpose: a mean whose merge
//! averages the two means, ignoring their counts. Folding events at once
//! and in two parts then disagree, so `skewless apply` must refuse it.

use serde::{Deserialize, Serialize};
use skewless_sdk::Aggregate;

#[derive(Default, Serialize, Deserialize)]
pub struct Mean {
    n: u64,
    mean: f64,
}

pub struct MeanOfMeans;

impl Aggregate for MeanOfMeans {
    const NAME: &'static str = "mean_of_means";
    const VERSION: &'static str = "0.1.0";
    type Input = f64;
    type Output = f64;
    type State = Mean;

    fn update(state: &mut Mean, value: f64) {
        state.n += 1;
        state.mean += (value - state.mean) / state.n as f64;
    }

    fn merge(state: &mut Mean, later: Mean) {
        if later.n == 0 {
            return;
        }
        if state.n == 0 {
            *state = later;
            return;
        }
        state.mean = (state.mean + later.mean) / 2.0;
        state.n += later.n;
    }

    fn finalize(state: Mean) -> Option<f64> {
        (state.n > 0).then_some(state.mean)
    }
}

skewless_sdk::export_aggregator!(MeanOfMeans);

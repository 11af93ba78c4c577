//! `ride_eta`: trip features of the kind Uber's Michelangelo team built the
//! first feature store for: great-circle (haversine) distance, initial
//! bearing, average speed and a speed bucket. Coordinates out of range or a
//! non-positive duration become per-row errors.
//!
//! Trigonometry comes from the pure-Rust `libm` crate rather than the
//! platform's C library, so the same source gives the same bits compiled to
//! Wasm or natively, on any machine.

use libm::{asin, atan2, cos, sin, sqrt};
use skewless_sdk::{Batch, DataType, Error, Float64Builder, Output, Schema, Transform, Utf8Builder};

/// Trip geometry and speed features.
pub struct RideEta;

const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Great-circle distance in kilometres between two (lat, lon) points in degrees.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let (sin_dp, sin_dl) = (sin(dp / 2.0), sin(dl / 2.0));
    let a = sin_dp * sin_dp + cos(p1) * cos(p2) * sin_dl * sin_dl;
    2.0 * EARTH_RADIUS_KM * asin(sqrt(a).min(1.0))
}

/// Initial bearing in degrees, 0 = north, clockwise, in [0, 360).
pub fn bearing_deg(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dl = (lon2 - lon1).to_radians();
    let y = sin(dl) * cos(p2);
    let x = cos(p1) * sin(p2) - sin(p1) * cos(p2) * cos(dl);
    atan2(y, x).to_degrees().rem_euclid(360.0)
}

fn speed_bucket(kmh: f64) -> &'static str {
    match kmh {
        s if s < 15.0 => "congested",
        s if s < 40.0 => "urban",
        s if s < 80.0 => "arterial",
        _ => "highway",
    }
}

impl Transform for RideEta {
    fn schema() -> Schema {
        Schema::new("ride_eta", "1.0.0")
            .input("pickup_lat", DataType::Float64)
            .input("pickup_lon", DataType::Float64)
            .input("dropoff_lat", DataType::Float64)
            .input("dropoff_lon", DataType::Float64)
            .input("duration_s", DataType::Int64)
            .output("distance_km", DataType::Float64)
            .output("bearing_deg", DataType::Float64)
            .output("avg_speed_kmh", DataType::Float64)
            .output("speed_bucket", DataType::Utf8)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let rows = input.num_rows();
        let (lat1, lon1) = (input.float64("pickup_lat")?, input.float64("pickup_lon")?);
        let (lat2, lon2) = (input.float64("dropoff_lat")?, input.float64("dropoff_lon")?);
        let duration = input.int64("duration_s")?;

        let mut distance = Float64Builder::with_capacity(rows);
        let mut bearing = Float64Builder::with_capacity(rows);
        let mut speed = Float64Builder::with_capacity(rows);
        let mut bucket = Utf8Builder::with_capacity(rows, rows * 8);
        let mut output_errors = Vec::new();

        for row in 0..rows {
            let point = (lat1.get(row), lon1.get(row), lat2.get(row), lon2.get(row));
            let (Some(a), Some(b), Some(c), Some(d)) = point else {
                distance.push_null();
                bearing.push_null();
                speed.push_null();
                bucket.push_null();
                continue;
            };
            if !(-90.0..=90.0).contains(&a) || !(-90.0..=90.0).contains(&c) {
                output_errors.push((row, format!("latitude out of range [-90, 90]: pickup {a}, dropoff {c}")));
            } else if !(-180.0..=180.0).contains(&b) || !(-180.0..=180.0).contains(&d) {
                output_errors.push((
                    row,
                    format!("longitude out of range [-180, 180]: pickup {b}, dropoff {d}"),
                ));
            }
            let km = haversine_km(a, b, c, d);
            distance.push(km);
            bearing.push(bearing_deg(a, b, c, d));
            match duration.get(row) {
                Some(s) if s > 0 => {
                    let kmh = km / (s as f64 / 3600.0);
                    speed.push(kmh);
                    bucket.push(speed_bucket(kmh));
                }
                Some(s) => {
                    output_errors.push((row, format!("duration_s must be > 0, got {s}")));
                    speed.push_null();
                    bucket.push_null();
                }
                None => {
                    speed.push_null();
                    bucket.push_null();
                }
            }
        }

        let mut output = Output::new(rows)
            .column("distance_km", distance)
            .column("bearing_deg", bearing)
            .column("avg_speed_kmh", speed)
            .column("speed_bucket", bucket);
        for (row, message) in output_errors {
            output.row_error(row, message);
        }
        Ok(output)
    }
}

skewless_sdk::export!(RideEta);

//! Built for skewless:transform@0.2.0, which this host does not implement.

wit_bindgen::generate!({ path: "wit", world: "transformer" });

struct Future;

impl exports::skewless::transform::transform::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(Future);

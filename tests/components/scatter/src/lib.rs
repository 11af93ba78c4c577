//! Written against the WIT directly (no SDK): dirties one byte in every
//! other 4 KiB page of a 2 MiB array on each call (256 separate dirty
//! regions, far more than the 32 that wasmtime 48's page reset looks at
//! per scan), after counting the pages it finds already dirty (`stale`).
//! A host that resets a used slot's memory fully answers 0 on every call;
//! one that misses pages (an early stop in the scan, or swapped-out pages
//! it never saw) answers more.

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "transformer" });

use exports::skewless::transform::transform::Guest;
use skewless::transform::types::{Batch, Column, DataType, Description, Field, Output, Values};

const HOST_PAGE: usize = 4096;
const PAGES: usize = 512;

/// In the module's zero-initialized data: every page starts as zeros.
static mut SCATTER: [u8; PAGES * HOST_PAGE] = [0; PAGES * HOST_PAGE];

struct Scatter;

impl Guest for Scatter {
    fn describe() -> Description {
        Description {
            name: "scatter".into(),
            version: "1.0.0".into(),
            inputs: vec![Field { name: "x".into(), data_type: DataType::Int64, nullable: true }],
            outputs: vec![Field { name: "stale".into(), data_type: DataType::Int64, nullable: true }],
        }
    }

    fn run(input: Batch) -> Result<Output, String> {
        // SAFETY: one thread; the array is only touched here.
        let memory = unsafe { &mut *std::ptr::addr_of_mut!(SCATTER) };
        let stale = memory.chunks(HOST_PAGE).filter(|page| page.iter().any(|&b| b != 0)).count() as i64;
        for page in (0..PAGES).step_by(2) {
            // Volatile, so the writes are not folded away.
            unsafe { std::ptr::write_volatile(&mut memory[page * HOST_PAGE + 17], 0xA5) };
        }
        let column = Column { name: "stale".into(), values: Values::Int64(vec![stale; input.num_rows as usize]), validity: None };
        Ok(Output { batch: Batch { num_rows: input.num_rows, columns: vec![column] }, row_errors: vec![] })
    }
}

export!(Scatter);

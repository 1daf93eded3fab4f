use std::collections::HashMap;

use iproto::{IprotoPack, IprotoUnpack};

// Each unsupported field type is reported at that field, with the fix in words.
#[derive(IprotoPack, IprotoUnpack)]
struct Stats {
    count: usize,
    ratio: f64,
    ok: u32,
    by_name: HashMap<String, u32>,
}

fn main() {}

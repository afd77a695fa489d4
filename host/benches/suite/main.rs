//! Every benchmark of the host, in one binary (so the test command links it once):
//!
//! ```sh
//! cargo bench -p pods --bench suite -- latency          # one benchmark, in full
//! cargo bench -p pods --bench suite -- queue --backend redis
//! cargo bench -p pods --bench suite                     # all of them, in full
//! ```
//!
//! Under `cargo test` (no `--bench` argument) each makes a short run, so the test command keeps
//! them working. Each module's doc says what it measures and its target.

mod common;
mod door;
mod hotload;
mod latency;
mod peers;
mod plugins;
mod queue;
mod runs;
mod scrape;
mod usage;
mod websocket;

/// Every benchmark: its name and its entry point.
const BENCHES: [(&str, fn()); 10] = [
    ("plugins", plugins::main),
    ("latency", latency::main),
    ("queue", queue::main),
    ("runs", runs::main),
    ("websocket", websocket::main),
    ("hotload", hotload::main),
    ("peers", peers::main),
    ("door", door::main),
    ("scrape", scrape::main),
    ("usage", usage::main),
];

fn main() {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| BENCHES.iter().any(|(name, _)| name == a))
        .collect();
    for (name, run) in BENCHES {
        if named.is_empty() || named.iter().any(|n| n == name) {
            run();
        }
    }
}

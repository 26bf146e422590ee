//! What the `histograms` of a blast report cost: encoding the three HDR
//! histograms (V2-deflate + base64, once per run), decoding them (once per
//! report in `merge`), and their size in the JSON. Run by `bench/report.sh`
//! (`cargo bench --bench report_cost`); prints medians, never asserts.

use std::time::{Duration, Instant};

use lsbaws::blast::histogram::{self, Histogram};

/// Deterministic latencies (µs): `n` samples, log-uniform between `lo` and `hi`.
fn filled(n: usize, lo: f64, hi: f64, seed: u64) -> Histogram<u64> {
    let mut h = histogram::new();
    let mut x = seed;
    for _ in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let v = (lo.ln() + u * (hi.ln() - lo.ln())).exp();
        h.record(v as u64).expect("in range");
    }
    h
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn main() {
    let shapes = [
        // A loopback run: 0.05–20 ms, 100k responses.
        (
            "typical (100k samples, 0.05-20 ms)",
            filled(100_000, 50.0, 20_000.0, 1),
        ),
        // A long run against a slow server: 10M samples over 0.02 ms-10 s.
        (
            "wide (10M samples, 0.02 ms-10 s)",
            filled(10_000_000, 20.0, 10_000_000.0, 2),
        ),
        ("empty", histogram::new()),
    ];
    println!("shape | encoded bytes (base64) | encode median | decode median");
    for (name, h) in &shapes {
        let text = histogram::encode(h).expect("encode");
        let (mut enc, mut dec) = (Vec::new(), Vec::new());
        for _ in 0..31 {
            let t = Instant::now();
            let e = histogram::encode(h).expect("encode");
            enc.push(t.elapsed());
            let t = Instant::now();
            let back = histogram::decode(&e).expect("decode");
            dec.push(t.elapsed());
            assert!(back == *h);
        }
        println!(
            "{name} | {} | {:.1} µs | {:.1} µs",
            text.len(),
            median(enc).as_secs_f64() * 1e6,
            median(dec).as_secs_f64() * 1e6
        );
    }
}

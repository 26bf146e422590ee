//! The latency histogram for people: log-scale buckets read from an HDR
//! histogram, one row and one bar each.
//!
//! Bucket edges grow geometrically (1, 1.2, 1.5, 2, 2.5... ms, or 1-2-5 steps
//! for a wide range), so a tail ten times the median gets rows of its own
//! where linear buckets would lump it into one.
//! Every recorded value falls in exactly one bucket (edges are exact up to the
//! histogram's own 0.1% precision), so the rows add up to the count. Must
//! never compute anything but the layout of what the histogram holds.

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Widest bar, in characters.
const BAR_WIDTH: u64 = 40;

/// One row: values in `[low_us, high_us)` and how many there were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub low_us: u64,
    pub high_us: u64,
    pub count: u64,
}

/// Bucket edges per decade, in tenths: each ladder is roughly geometric, with
/// labels people read at a glance. The finest ladder that fits in
/// [`MAX_ROWS`] is used, so a tight run gets detail and a run with a
/// ten-second tail still fits on a screen.
const LADDERS: [&[u64]; 3] = [
    &[10, 12, 15, 20, 25, 30, 40, 50, 60, 80],
    &[10, 15, 25, 40, 60],
    &[10, 20, 50],
];

/// Most rows a histogram gets (unless even 1-2-5 steps need more).
const MAX_ROWS: usize = 24;

/// The edges of `ladder` from the one at or below `min` to the first above
/// `max` (1 ≤ min ≤ max), strictly increasing.
fn edges(ladder: &[u64], min: u64, max: u64) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    let mut decade = 1u64;
    // Bounded: at most 20 decades in a u64, each with ≤ 10 edges.
    'decades: for _ in 0..20 {
        for &tenths in ladder {
            let edge = tenths.saturating_mul(decade) / 10;
            if out.last().is_some_and(|&last| edge <= last) {
                continue; // below 10 µs some tenths round to the same integer
            }
            if edge <= min {
                out.clear(); // only the last edge at or below min is kept
            }
            out.push(edge);
            if edge > max {
                break 'decades;
            }
        }
        match decade.checked_mul(10) {
            Some(d) => decade = d,
            None => {
                out.push(u64::MAX);
                break;
            }
        }
    }
    out
}

/// The buckets from the one holding the smallest value to the one holding
/// the largest, empty ones in between included (a gap is part of the shape);
/// none for an empty histogram.
pub fn log_buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let min = h.median_equivalent(h.min()).max(1);
    let max = h.median_equivalent(h.max()).max(min);
    let mut chosen = Vec::new();
    for ladder in LADDERS {
        chosen = edges(ladder, min, max);
        if chosen.len() <= MAX_ROWS + 1 {
            break;
        }
    }
    let mut buckets: Vec<Bucket> = chosen
        .windows(2)
        .map(|w| Bucket {
            low_us: w[0],
            high_us: w[1],
            count: 0,
        })
        .collect();
    for v in h.iter_recorded() {
        // The middle of HDR's own bucket (0.1% wide): an edge value such as
        // 1 s lands above its edge, not in the row below.
        let value = h.median_equivalent(v.value_iterated_to()).max(1);
        // The last bucket starting at or below the value (the list is sorted).
        let i = buckets
            .partition_point(|b| b.low_us <= value)
            .saturating_sub(1);
        if let Some(b) = buckets.get_mut(i) {
            b.count += v.count_at_value();
        }
    }
    buckets
}

/// Microseconds as milliseconds, without trailing zeros: 100 → `0.1`, 2000 → `2`.
fn ms(us: u64) -> String {
    let text = format!("{}.{:03}", us / 1000, us % 1000);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `count` of `total` as a percentage; a non-zero share too small for one
/// decimal is `<0.1%`, not a misleading `0.0%`.
fn share(count: u64, total: u64) -> String {
    let pct = count as f64 * 100.0 / total as f64;
    if count > 0 && pct < 0.05 {
        "<0.1%".to_string()
    } else {
        format!("{pct:.1}%")
    }
}

/// The titled table, or nothing for an empty histogram.
pub fn table(title: &str, h: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    let buckets = log_buckets(h);
    let Some(peak) = buckets.iter().map(|b| b.count).max() else {
        return Ok(());
    };
    let total = h.len().max(1);
    let mut t = super::table();
    t.set_header(["ms", "count", "share", ""]);
    for b in &buckets {
        // At least one mark for any non-zero count, so a lone outlier shows.
        let width = match b.count {
            0 => 0,
            n => (n * BAR_WIDTH / peak.max(1)).max(1),
        };
        t.add_row([
            format!("{} – {}", ms(b.low_us), ms(b.high_us)),
            b.count.to_string(),
            share(b.count, total),
            "#".repeat(usize::try_from(width).unwrap_or(0)),
        ]);
    }
    writeln!(out, "{title}")?;
    writeln!(out, "{t}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blast::histogram;

    #[test]
    fn edges_follow_the_ladders() {
        assert_eq!(edges(LADDERS[2], 1, 1), [1, 2]);
        assert_eq!(edges(LADDERS[2], 3, 7), [2, 5, 10]);
        assert_eq!(
            edges(LADDERS[2], 499, 123_456),
            [
                200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000
            ]
        );
        assert_eq!(
            edges(LADDERS[0], 1000, 2100),
            [1000, 1200, 1500, 2000, 2500]
        );
        assert_eq!(edges(LADDERS[0], 1, 3), [1, 2, 3, 4]);
        assert_eq!(edges(LADDERS[1], 100, 100), [100, 150]);
    }

    #[test]
    fn rows_add_up_to_the_count_and_keep_the_tail_apart() {
        let mut h = histogram::new();
        // A body near 1 ms and a tail near 1 s: linear buckets would put the
        // body in one row; here the tail has rows of its own.
        let mut seed = 7u64;
        for _ in 0..10_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            h.record(800 + (seed >> 33) % 600).expect("in range");
        }
        h.record_n(1_000_000, 3).expect("in range");
        h.record(2_999_999).expect("in range");
        let buckets = log_buckets(&h);
        assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), h.len());
        // 3.5 decades: too many rows at 10 a decade, so 5 a decade.
        assert_eq!(buckets.first().map(|b| b.low_us), Some(600));
        assert_eq!(
            buckets.last().map(|b| (b.low_us, b.high_us)),
            Some((2_500_000, 4_000_000))
        );
        assert!(buckets.len() <= MAX_ROWS, "{buckets:?}");
        let at = |low: u64| buckets.iter().find(|b| b.low_us == low).map(|b| b.count);
        assert_eq!(
            (at(1_000_000), at(1_500_000), at(2_500_000)),
            (Some(3), Some(0), Some(1))
        );
        for pair in buckets.windows(2) {
            assert_eq!(pair[0].high_us, pair[1].low_us, "contiguous");
        }

        let mut out = Vec::new();
        table("Latency histogram", &h, &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("Latency histogram\n"), "{text}");
        assert!(text.contains("| 1 – 1.5 "), "{text}");
        assert!(text.contains("| 3     | <0.1% | # "), "{text}");
        assert!(text.contains("| 600 – 1000 "), "{text}");
        // The count column of the rows adds up to the count, as printed.
        let printed: u64 = text
            .lines()
            .filter_map(|l| l.split('|').nth(2)?.trim().parse::<u64>().ok())
            .sum();
        assert_eq!(printed, h.len(), "{text}");
    }

    #[test]
    fn one_value_is_one_row_and_empty_is_nothing() {
        let mut h = histogram::new();
        h.record(1000).expect("in range");
        assert_eq!(
            log_buckets(&h),
            [Bucket {
                low_us: 1000,
                high_us: 1200,
                count: 1
            }]
        );
        let mut out = Vec::new();
        table("t", &histogram::new(), &mut out).expect("render");
        assert!(out.is_empty());
        assert_eq!(ms(100), "0.1");
        assert_eq!(ms(2000), "2");
        assert_eq!(ms(1), "0.001");
    }
}

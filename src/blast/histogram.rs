//! The latency histograms' one shape and their wire form: every histogram of
//! every run has the same bounds and precision ([`new`]), so any two reports
//! can be added exactly; [`encode`] and [`decode`] are the standard
//! HdrHistogram V2-deflate encoding in base64 (what HdrHistogram's log writers
//! produce, so other tools read it).
//!
//! Owns the settings (unit: microseconds) and the codec. Must never change the
//! settings without changing the report's schema (`report::SCHEMA`): reports
//! with other settings could no longer be merged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
pub use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

/// Lowest discernible value: one microsecond.
pub const LOWEST_US: u64 = 1;
/// Highest trackable value: an hour covers any `--timeout` anyone sets.
pub const HIGHEST_US: u64 = 3_600_000_000;
/// Significant decimal digits: 0.1% resolution, each histogram near 190 kB in
/// memory and a few hundred bytes encoded.
pub const SIGFIG: u8 = 3;

/// An empty histogram with the settings every report shares.
pub fn new() -> Histogram<u64> {
    // Constant bounds the crate accepts; a failure is a bug here.
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Whether `h` has the shared settings (so it can be added to any report's).
pub fn has_shared_settings(h: &Histogram<u64>) -> bool {
    (h.low(), h.high(), h.sigfig()) == (LOWEST_US, HIGHEST_US, SIGFIG)
}

/// `h` as base64 of its V2-deflate encoding.
pub fn encode(h: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| format!("cannot encode a histogram: {e}"))?;
    Ok(STANDARD.encode(bytes))
}

/// A histogram from base64 of its V2 encoding (deflated or not).
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not an HdrHistogram V2 encoding: {e:?}"))
}

/// Serializes a histogram as its encoded string (for `#[serde(serialize_with)]`).
pub fn serialize<S: serde::Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode(h).map_err(serde::ser::Error::custom)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_exactly() {
        let mut h = new();
        for v in [1, 2, 999, 1000, 1001, 123_456, HIGHEST_US] {
            h.record(v).expect("in range");
        }
        h.record_n(5_000, 7).expect("in range");
        let text = encode(&h).expect("encode");
        let back = decode(&text).expect("decode");
        assert!(back == h);
        assert!(has_shared_settings(&back));
        assert_eq!(back.len(), 14);
        // The wire form starts with the V2 compressed cookie 0x1c849314
        // ("HISTF" in base64, as in HdrHistogram's logs).
        assert!(text.starts_with("HISTF"), "{text}");
    }

    #[test]
    fn bad_encodings_are_errors_not_panics() {
        assert!(decode("not base64 !").is_err());
        assert!(decode(&STANDARD.encode(b"short")).is_err());
        let mut h = new();
        h.record(42).expect("in range");
        let text = encode(&h).expect("encode");
        let truncated = STANDARD.encode(&STANDARD.decode(&text).expect("b64")[..12]);
        assert!(decode(&truncated).is_err());
    }
}

//! The latency histograms' one shape and their wire form: every histogram of
//! every run has the same bounds and precision ([`new`]), so any two reports
//! can be added exactly; [`encode`] and [`decode`] are the standard
//! HdrHistogram V2-deflate encoding in base64 (what HdrHistogram's log writers
//! produce, so other tools read it).
//!
//! Owns the settings (unit: microseconds) and the codec. Must never change the
//! settings without changing the report's schema (`report::SCHEMA`): reports
//! with other settings could no longer be merged. Must never let an input
//! decide how much [`decode`] allocates: the settings are fixed, so the
//! largest valid encoding is known, and anything larger is refused before it
//! is inflated or read. The payload is read here ([`decode_counts`]), into
//! the slots that hold a count, so that `merge` adds each report without a
//! full counts array of its own.

use std::io::Read;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
pub use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

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

/// The V2 encoding's cookies (HdrHistogram's `V2_COOKIE` and
/// `V2_COMPRESSED_COOKIE`): plain, and zlib-deflated.
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;
/// Cookie, payload length, normalizing offset, digits, lowest, highest, ratio.
const V2_HEADER: usize = 40;

/// The longest V2 payload a histogram of the shared settings can need: each
/// counts slot takes at most 9 bytes (LEB128-64b9B), zero runs fewer.
fn max_payload() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| new().distinct_values() * 9)
}

/// The longest base64 text [`decode`] reads: the plain encoding of the
/// largest payload, or its deflated form with room for any sane compressor's
/// worst case (stored blocks cost 5 bytes per 64 kB; an eighth is generous).
fn max_text() -> usize {
    let plain = V2_HEADER + max_payload();
    let deflated = 8 + plain + plain / 8 + 64;
    deflated.div_ceil(3) * 4
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The value each counts slot stands for, in slot order: recording it lands
/// in that slot.
fn slot_values() -> &'static [u64] {
    static VALUES: OnceLock<Vec<u64>> = OnceLock::new();
    VALUES.get_or_init(|| new().iter_all().map(|v| v.value_iterated_to()).collect())
}

/// A decoded histogram as the slots that hold a count: what `merge` adds
/// (a report's few hundred, not an array of 23 552).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    slots: Vec<(u32, u64)>,
    total: u64,
}

impl Counts {
    /// Samples in all.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds these counts to `h`, a histogram of the shared settings.
    pub fn add_to(&self, h: &mut Histogram<u64>) {
        let values = slot_values();
        for &(slot, n) in &self.slots {
            // In range (a slot of these settings); counts cannot overflow
            // where the report's own sums did not (merge checks them).
            h.saturating_record_n(values[slot as usize], n);
        }
    }
}

/// A histogram from base64 of its V2 encoding (deflated or not), with the
/// shared settings (see [`decode_counts`]).
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let counts = decode_counts(text)?;
    let mut h = new();
    counts.add_to(&mut h);
    Ok(h)
}

/// The counts of a histogram from base64 of its V2 encoding (deflated or
/// not), with the shared settings. Every size is checked before it is
/// allocated: the text against the largest valid encoding, the deflated
/// stream inflated no further than the largest valid payload, and the
/// header's settings and payload length against the shared ones. (The
/// crate's deserializer allocates whatever length a header claims: 4 GiB
/// from 300 bytes.)
pub fn decode_counts(text: &str) -> Result<Counts, String> {
    let text = text.trim();
    if text.len() > max_text() {
        return Err(format!(
            "{} bytes of text, more than any histogram of lsbaws's settings takes ({})",
            text.len(),
            max_text()
        ));
    }
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    let plain = match be_u32(&bytes, 0) {
        Some(V2_COOKIE) => bytes,
        Some(V2_DEFLATE_COOKIE) => inflate(&bytes)?,
        _ => return Err("not an HdrHistogram V2 encoding (unknown cookie)".into()),
    };
    if be_u32(&plain, 0) != Some(V2_COOKIE) || plain.len() < V2_HEADER {
        return Err("not an HdrHistogram V2 encoding (no V2 header inside)".into());
    }
    let (digits, low, high) = (
        be_u32(&plain, 12).unwrap_or(0),
        be_u64(&plain, 16).unwrap_or(0),
        be_u64(&plain, 24).unwrap_or(0),
    );
    if (low, high, digits) != (LOWEST_US, HIGHEST_US, u32::from(SIGFIG)) {
        return Err(format!(
            "other settings (lowest {low}, highest {high}, {digits} digits) than lsbaws's \
             ({LOWEST_US}, {HIGHEST_US}, {SIGFIG}): it cannot be added exactly"
        ));
    }
    let ratio = be_u64(&plain, 32).map(f64::from_bits);
    if be_u32(&plain, 8) != Some(0) || ratio != Some(1.0) {
        return Err("a normalizing offset or a value ratio: not supported".into());
    }
    let declared = be_u32(&plain, 4).map_or(usize::MAX, |n| n as usize);
    if declared > max_payload() {
        return Err(format!(
            "the header declares a payload of {declared} bytes; a histogram of lsbaws's \
             settings takes at most {}",
            max_payload()
        ));
    }
    if plain.len() != V2_HEADER + declared {
        return Err(format!(
            "the header declares a payload of {declared} bytes, but {} follow it",
            plain.len() - V2_HEADER
        ));
    }
    payload_counts(&plain[V2_HEADER..])
}

/// The counts of a V2 payload: zigzag LEB128-64b9B numbers, each a slot's
/// count, or (negative) a run of empty slots.
fn payload_counts(mut p: &[u8]) -> Result<Counts, String> {
    let slots = slot_values().len();
    let mut out = Counts::default();
    let mut slot = 0usize;
    // Bounded: each turn consumes 1 to 9 bytes.
    while !p.is_empty() {
        let (raw, used) = varint(p).ok_or("the payload ends inside a number")?;
        p = &p[used..];
        let n = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
        if n < 0 {
            slot = slot.saturating_add(usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX));
            continue;
        }
        if n > 0 {
            if slot >= slots {
                return Err(format!("a count in slot {slot}, past the last ({slots})"));
            }
            let n = n.unsigned_abs();
            out.slots.push((slot as u32, n));
            out.total = out.total.checked_add(n).ok_or("the counts overflow")?;
        }
        slot = slot.saturating_add(1);
    }
    Ok(out)
}

/// One LEB128-64b9B number (HdrHistogram's: at most 9 bytes, the ninth
/// whole) and the bytes it took.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (k, byte) in b.iter().take(8).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * k);
        if byte & 0x80 == 0 {
            return Some((v, k + 1));
        }
    }
    let last = *b.get(8)?;
    Some((v | u64::from(last) << 56, 9))
}

/// The V2 encoding inside a V2-deflate one, inflated no further than the
/// largest valid one.
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let limit = V2_HEADER + max_payload();
    let declared = be_u32(bytes, 4).map_or(usize::MAX, |n| n as usize);
    let stream = bytes.get(8..).unwrap_or_default();
    if declared != stream.len() {
        return Err(format!(
            "the header declares {declared} deflated bytes, but {} follow it",
            stream.len()
        ));
    }
    let mut out = Vec::new();
    let mut inflater = flate2::read::ZlibDecoder::new(stream);
    (&mut inflater)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the deflated stream does not inflate: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "inflates to more than {limit} bytes, the most a histogram of lsbaws's \
             settings takes"
        ));
    }
    Ok(out)
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

    /// A V2 header with these settings and declared payload length, then
    /// `payload`.
    fn v2(low: u64, high: u64, digits: u32, declared: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(V2_COOKIE.to_be_bytes());
        b.extend(declared.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        b.extend(digits.to_be_bytes());
        b.extend(low.to_be_bytes());
        b.extend(high.to_be_bytes());
        b.extend(1.0f64.to_be_bytes());
        b.extend(payload);
        b
    }

    fn deflated(plain: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(plain).expect("deflate");
        let z = z.finish().expect("deflate");
        let mut b = Vec::new();
        b.extend(V2_DEFLATE_COOKIE.to_be_bytes());
        b.extend((z.len() as u32).to_be_bytes());
        b.extend(z);
        b
    }

    /// Regression (attack 3, F4): 300 bytes whose header claimed a 4 GiB
    /// payload made the decoder allocate 4 GiB; a deflated payload of zeros
    /// (counts of 0 never fail) decoded 1 GiB. Both are refused by their
    /// size, before anything that size exists.
    #[test]
    fn sizes_beyond_the_shared_settings_are_refused_before_allocating() {
        let s = (LOWEST_US, HIGHEST_US, u32::from(SIGFIG));
        let bomb = STANDARD.encode(v2(s.0, s.1, s.2, 0xFFFF_FFF0, &[0; 260]));
        let err = decode(&bomb).expect_err("4 GiB claimed");
        assert!(
            err.contains("declares a payload of 4294967280 bytes"),
            "{err}"
        );
        // 16 MiB of zero counts: 80 times the most a valid one takes.
        let zeros = vec![0u8; 16 << 20];
        let inflating = STANDARD.encode(deflated(&v2(s.0, s.1, s.2, 16 << 20, &zeros)));
        assert!(inflating.len() < (16 << 20) / 100, "{}", inflating.len());
        let err = decode(&inflating).expect_err("16 MiB inflated");
        assert!(err.starts_with("inflates to more than"), "{err}");
        // Other settings are refused from the header (a histogram up to
        // u64::MAX would allocate megabytes before any check after it).
        let huge = STANDARD.encode(v2(1, u64::MAX, 5, 0, &[]));
        let err = decode(&huge).expect_err("settings");
        assert!(
            err.starts_with("other settings (lowest 1, highest 18446744073709551615"),
            "{err}"
        );
        // Lengths that do not match what follows, and text too long to be one.
        let short = STANDARD.encode(v2(s.0, s.1, s.2, 10, &[2; 4]));
        assert!(
            decode(&short)
                .expect_err("short")
                .contains("but 4 follow it")
        );
        let long = "A".repeat(max_text() + 4);
        assert!(decode(&long).expect_err("long").contains("bytes of text"));
        // The control: an empty histogram written by hand decodes.
        let empty = decode(&STANDARD.encode(v2(s.0, s.1, s.2, 0, &[]))).expect("empty");
        assert!(empty.is_empty() && has_shared_settings(&empty));
    }

    /// Each slot's value lands in that slot: the values are distinct, one
    /// per slot, in order, and each is its slot's highest equivalent.
    #[test]
    fn slot_values_name_every_slot_once() {
        let h = new();
        let values = slot_values();
        assert_eq!(values.len(), h.distinct_values());
        assert!(values.windows(2).all(|w| w[0] < w[1]));
        assert!(values.iter().all(|v| h.highest_equivalent(*v) == *v));
        // The last bucket's slots run past the highest trackable value.
        assert!(values.last().is_some_and(|v| *v >= HIGHEST_US));
    }

    /// What this decoder reads is what hdrhistogram's own deserializer
    /// reads, for histograms of every shape.
    #[test]
    fn decoding_agrees_with_the_crates_deserializer() {
        use hdrhistogram::serialization::Deserializer;
        for seed in 0..20u64 {
            let mut h = new();
            let mut x = seed + 1;
            for _ in 0..(seed * 300) {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                h.record_n(1 + (x >> 20) % (HIGHEST_US >> (seed % 20)), 1 + (x >> 60))
                    .expect("in range");
            }
            let text = encode(&h).expect("encode");
            let bytes = STANDARD.decode(&text).expect("b64");
            let theirs: Histogram<u64> = Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .expect("theirs");
            let ours = decode(&text).expect("ours");
            assert!(ours == theirs && ours == h, "seed {seed}");
            assert_eq!(decode_counts(&text).expect("counts").len(), h.len());
        }
    }

    /// The bounds hold every valid histogram: one with a large count in every
    /// slot (the longest payload there is), plain or deflated.
    #[test]
    fn the_largest_valid_histograms_decode() {
        let mut h = new();
        let values: Vec<u64> = new().iter_all().map(|v| v.value_iterated_to()).collect();
        for (i, v) in values.iter().enumerate() {
            h.record_n(*v, (1 << 48) + i as u64).expect("in range");
        }
        let text = encode(&h).expect("encode");
        assert!(decode(&text).expect("deflated") == h);
        let mut plain = Vec::new();
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&h, &mut plain)
            .expect("encode");
        assert!(plain.len() > 150_000, "{}", plain.len());
        assert!(decode(&STANDARD.encode(&plain)).expect("plain") == h);
    }
}

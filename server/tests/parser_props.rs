//! Property tests of the request parser (cargo-fuzz needs a nightly toolchain,
//! which this project's machines do not have): it never panics on any bytes, and a
//! valid request split anywhere is never rejected before it is whole.

use lsbaws_server::http::{MAX_HEAD, Parse, parse};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn request() -> impl Strategy<Value = (String, String, Vec<u8>)> {
    (
        token(),
        "/[!-~]{0,40}",
        prop::collection::vec((token(), "[ -~]{0,40}"), 0..12),
        any::<bool>(),
    )
        .prop_map(|(method, target, headers, crlf)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut req = format!("{method} {target} HTTP/1.1{eol}");
            for (name, value) in headers {
                req.push_str(&format!("{name}: {}{eol}", value.trim()));
            }
            req.push_str(eol);
            (method, target, req.into_bytes())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn never_panics_and_stays_in_bounds(bytes in prop::collection::vec(any::<u8>(), 0..(MAX_HEAD + 512))) {
        if let Parse::Complete(req) = parse(&bytes) {
            prop_assert!(req.head_len <= bytes.len());
            prop_assert!(req.head_len <= MAX_HEAD);
        }
    }

    #[test]
    fn valid_requests_parse_and_their_prefixes_wait((method, target, bytes) in request()) {
        match parse(&bytes) {
            Parse::Complete(req) => {
                prop_assert_eq!(req.method, method.as_bytes());
                prop_assert_eq!(req.target, target.as_bytes());
                prop_assert_eq!(req.head_len, bytes.len());
            }
            other => prop_assert!(false, "{:?} → {:?}", String::from_utf8_lossy(&bytes), other),
        }
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse(&bytes[..cut]), Parse::Incomplete, "cut at {}", cut);
        }
    }

    #[test]
    fn junk_after_a_valid_prefix_never_panics((_, _, mut bytes) in request(), junk in prop::collection::vec(any::<u8>(), 0..64), at in any::<prop::sample::Index>()) {
        let at = at.index(bytes.len());
        bytes.splice(at..at, junk);
        let _ = parse(&bytes);
    }
}

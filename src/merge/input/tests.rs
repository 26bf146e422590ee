//! The splitter on whole inputs and on inputs that arrive a byte at a time.

use super::*;

fn lines(s: &Split) -> Vec<usize> {
    s.documents.iter().map(|d| d.at.line).collect()
}

fn values(s: &Split) -> Vec<i64> {
    s.documents
        .iter()
        .map(|d| d.value["a"].as_i64().expect("a"))
        .collect()
}

/// The same input fed in pieces of `n` bytes.
fn split_in_pieces(text: &str, n: usize) -> anyhow::Result<Split> {
    let mut s = Splitter::new("stdin");
    let mut documents = Vec::new();
    for piece in text.as_bytes().chunks(n) {
        documents.extend(s.feed(piece)?);
    }
    documents.extend(s.finish()?);
    Ok(Split {
        documents,
        skipped: s.skipped,
        first_skipped: s.first_skipped,
        cut_inside: s.cut_inside,
    })
}

#[test]
fn documents_among_noise_with_their_lines() {
    let text = "lsbaws: a warning on stderr\n\
                {\"a\": 1}\n\
                \n\
                [pod/job-1-x/blast] {\"a\": 2}\n\
                {\"a\":\n  3}  {\"a\": 4}\n\
                trailing noise\n\
                {\"a\": 5}";
    for pieces in [text.len(), 1, 2, 7] {
        let s = split_in_pieces(text, pieces).expect("split");
        assert_eq!(values(&s), [1, 2, 3, 4, 5], "in pieces of {pieces}");
        assert_eq!(lines(&s), [2, 4, 5, 6, 8], "in pieces of {pieces}");
        assert_eq!(s.skipped, 2);
        let (at, first) = s.first_skipped.expect("first");
        assert_eq!(
            (at.to_string(), first.as_str()),
            ("stdin line 1".into(), "lsbaws: a warning on stderr")
        );
        assert!(!s.cut_inside);
    }
}

/// Regression (attack 3, F6): a report after a BOM, or after kubectl's
/// `--timestamps` time, or in a JSON array, was skipped as a line that is
/// not JSON, and a failing run vanished from the total.
#[test]
fn bom_timestamps_and_arrays_are_documents() {
    let text = "\u{feff}{\"a\": 1}\n\
                2026-11-30T01:00:00.000000000Z {\"a\": 2}\n\
                [pod/x/blast] 2026-11-30T01:00:00.5+01:00 \u{feff}{\"a\": 3}\n\
                2026-11-30t01:00:00z [{\"a\": 4}, {\"a\": 5}]\n\
                [\n  {\"a\": 6}\n]\n\
                \u{feff}[pod/y/blast] {\"a\": 7}\n";
    for pieces in [text.len(), 1, 3] {
        let s = split_in_pieces(text, pieces).expect("split");
        assert_eq!(values(&s), [1, 2, 3, 4, 5, 6, 7], "in pieces of {pieces}");
        assert_eq!(lines(&s), [1, 2, 3, 4, 4, 5, 8]);
        let at: Vec<String> = s.documents.iter().map(|d| d.at.to_string()).collect();
        assert_eq!(
            at[3..6],
            [
                "stdin line 4 item 1",
                "stdin line 4 item 2",
                "stdin line 5 item 1"
            ]
        );
        assert_eq!(s.skipped, 0);
    }
}

#[test]
fn what_is_not_a_document_stays_noise() {
    let text = "[INFO] starting\n[] \n[1, 2]\n2026-11-30T01:00:00Z started\n\
                2026-11-30T01:00Z {\"a\": 1}\n[pod/x] noise\n[\n";
    let s = split("f", text, false).expect("split");
    assert!(s.documents.is_empty(), "{:?}", s.documents);
    assert_eq!(s.skipped, 7);
}

#[test]
fn a_report_behind_an_unknown_prefix_is_an_error_not_noise() {
    for line in [
        "svc_1  | {\"schema\":\"lsbaws-blast/1\",\"tag\":\"a\"}",
        "Nov 30 01:00:00 host lsbaws[42]: {\"tag\": \"a\", \"schema\" : \"lsbaws-blast/1\"}",
        // Regression (attack 4, F3): JSON may write `/` as `\/` (PHP, some
        // log shippers) and any letter as `\uXXXX`; the report was noise.
        "svc-1  | {\"schema\":\"lsbaws-blast\\/1\",\"tag\":\"a\"}",
        "svc-1  | {\"\\u0073chema\": \"lsbaws\\u002dblast/1\"}",
    ] {
        let err = split("f", &format!("{line}\n"), false).expect_err(line);
        let msg = err.to_string();
        assert!(
            msg.starts_with("f line 1: a blast report behind text merge does not know"),
            "{msg}"
        );
    }
    // Merge's own messages about a schema are noise as before.
    let s = split("f", "lsbaws: schema \"lsbaws-blast/2\" is not it\n", false).expect("noise");
    assert_eq!(s.skipped, 1);
}

#[test]
fn truncated_objects_are_errors_naming_the_line() {
    let err = split("r.json", "{\"a\": 1}\n{\"a\": [1, 2", false).expect_err("eof");
    assert!(
        err.to_string().starts_with("r.json line 2: truncated JSON"),
        "{err}"
    );
    // A report cut off and followed by another pod's output.
    let err = split("stdin", "{\"a\": 1,\n{\"b\": 2}\n", false).expect_err("cut");
    let msg = err.to_string();
    assert!(
        msg.starts_with("stdin line 1: this JSON object does not parse"),
        "{msg}"
    );
    assert!(msg.ends_with("at line 2"), "{msg}");
    let err = split("stdin", "{not json}\n", false).expect_err("junk");
    assert!(err.to_string().starts_with("stdin line 1:"), "{err}");
    let err = split("a.json", "[{\"a\": 1},\n", false).expect_err("array");
    assert!(
        err.to_string()
            .starts_with("a.json line 1: truncated JSON: the input ends inside this array"),
        "{err}"
    );
}

/// Regression (attack 3, F5): `"ok":150,"ok":9999` was read as 9999.
#[test]
fn a_repeated_key_is_an_error_naming_the_line() {
    let err = split("f", "\n{\"ok\": 150, \"ok\": 9999}\n", false).expect_err("dup");
    assert_eq!(
        err.to_string(),
        "f line 2: the key \"ok\" appears twice in one object"
    );
}

#[test]
fn a_cut_input_leaves_its_unfinished_object_out() {
    let s = split("stdin", "{\"a\": 1}\n{\"a\": ", true).expect("cut is fine");
    assert_eq!(s.documents.len(), 1);
    assert!(s.cut_inside);
}

#[test]
fn nothing_but_noise_is_no_document() {
    let s = split("f", "\n\nhello\n[not a prefix] x\n", false).expect("split");
    assert!(s.documents.is_empty());
    assert_eq!(s.skipped, 2);
}

/// A long document arriving in small pieces is parsed a bounded number of
/// times, and the buffer holds no more than what is not consumed: a
/// document is tried again once half as much again waits, so at most one
/// and a half documents and a piece.
#[test]
fn the_buffer_keeps_only_what_is_unfinished() {
    let doc = format!("{{\"a\": 1, \"pad\": \"{}\"}}\n", "x".repeat(100_000));
    let mut s = Splitter::new("stdin");
    let mut found = 0;
    for _ in 0..3 {
        for piece in doc.as_bytes().chunks(1000) {
            found += s.feed(piece).expect("feed").len();
            let most = doc.len() * 3 / 2 + 1000;
            assert!(s.buf.len() - s.pos <= most, "{}", s.buf.len());
        }
    }
    found += s.finish().expect("finish").len();
    assert_eq!(found, 3);
    assert!(s.buf.len() <= doc.len(), "{}", s.buf.len());
}

/// Regression (attack 4, F4): a JSON array of reports was parsed whole, so
/// an array on one line (`json.dump` of a list) took about seven times its
/// size. Its items now come out as they arrive, and the buffer holds about
/// one item.
#[test]
fn an_array_on_one_line_is_read_item_by_item() {
    let item = |a: usize| format!("{{\"a\": {a}, \"pad\": \"{}\"}}", "x".repeat(1000));
    let items: Vec<String> = (1..=200).map(item).collect();
    let text = format!("[{}]\n", items.join(", "));
    let mut s = Splitter::new("stdin");
    let mut found = Vec::new();
    for (n, piece) in text.as_bytes().chunks(4096).enumerate() {
        found.extend(s.feed(piece).expect("feed"));
        let most = items[0].len() * 3 / 2 + 4096;
        assert!(s.buf.len() - s.pos <= most, "{}", s.buf.len() - s.pos);
        assert!(s.buf.len() <= 2 * most, "{}", s.buf.len());
        // Every item whose bytes have all come is out, but the last.
        let whole = ((n + 1) * 4096).saturating_sub(1) / (items[0].len() + 2);
        assert!(found.len() + 1 >= whole, "{} of {whole}", found.len());
    }
    found.extend(s.finish().expect("finish"));
    let a: Vec<i64> = found
        .iter()
        .map(|d| d.value["a"].as_i64().expect("a"))
        .collect();
    assert_eq!(a, (1..=200).collect::<Vec<i64>>());
    assert_eq!(found[199].at.to_string(), "stdin line 1 item 200");
    assert_eq!(s.skipped, 0);
}

/// Regression (attack 4, F5): after a `[` line, every chunk of blank lines
/// made the splitter look again from the `[` for the byte that tells an
/// array from noise, keeping all of them: quadratic (64 MB, 15 s). Blanks
/// are consumed as they come, whatever follows.
#[test]
fn blank_lines_after_a_bracket_are_consumed_as_they_come() {
    for after in ["hello\n{\"a\": 1}\n", "{\"a\": 1}]\n"] {
        let mut s = Splitter::new("f");
        let mut found = s.feed(b"[\n").expect("feed");
        let blanks = vec![b'\n'; 64 * 1024];
        for _ in 0..32 {
            found.extend(s.feed(&blanks).expect("feed"));
            assert!(s.buf.len() <= 2 * blanks.len(), "{}", s.buf.len());
        }
        found.extend(s.feed(after.as_bytes()).expect("feed"));
        found.extend(s.finish().expect("finish"));
        assert_eq!(found.len(), 1, "{after:?}");
        assert_eq!(found[0].value["a"], 1);
        let lines = 2 + 32 * blanks.len();
        if after.starts_with("hello") {
            // The `[` and `hello` are noise, the object a line of its own.
            assert_eq!(s.skipped, 2);
            let (at, text) = s.first_skipped.clone().expect("first");
            assert_eq!((at.line, text.as_str()), (1, "["));
            assert_eq!(found[0].at.to_string(), format!("f line {}", lines + 1));
        } else {
            assert_eq!(s.skipped, 0);
            assert_eq!(found[0].at.to_string(), "f line 1 item 1");
        }
    }
}

/// Regression (attack 5, G3): a long line that begins with `{` made every
/// chunk search the whole line again for its newline (200 MB: 97 s). Each
/// shape here is 16 MB in 1 kB pieces: linear it takes about a second,
/// quadratic it would take many minutes, so the loop gives up at a deadline
/// far above the linear time and fails, rather than running on.
#[test]
fn long_lines_in_small_pieces_are_linear() {
    let mb = 8 << 20;
    let x = "x".repeat(mb);
    let digits = "1".repeat(2 * mb);
    let shapes = [
        // One line that never ends: an unfinished object.
        (format!("{{\"a\": \"{x}{x}"), 0),
        // A long first line, then more of the same object.
        (
            format!("{{\"a\": 1, \"b\": \"{x}\",\n\"c\": \"{x}\"}}\n"),
            1,
        ),
        // An array item that is one long number.
        (format!("[{{\"a\": 1}}, 0.{digits}]\n"), 2),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for (text, want) in shapes {
        let mut s = Splitter::new("f");
        let mut found = 0;
        for piece in text.as_bytes().chunks(1024) {
            found += s.feed(piece).expect("feed").len();
            assert!(
                std::time::Instant::now() < deadline,
                "not linear: 60 s and not through {} MB",
                text.len() >> 20
            );
        }
        match s.finish() {
            Ok(docs) => assert_eq!(found + docs.len(), want),
            Err(e) => {
                assert_eq!(want, 0);
                assert!(e.to_string().contains("truncated JSON"), "{e}");
            }
        }
    }
}

/// Regression (attack 5, G2): a report that is the value of a JSON string
/// in another format (fluentd's stdout, logfmt `msg=`, a shipper's line
/// wrapped again) read `\"schema\"` as no key, and was skipped as noise.
#[test]
fn a_report_escaped_inside_another_format_is_an_error_not_noise() {
    let report = r#"{"schema":"lsbaws-blast/1","tag":"a"}"#;
    let once = serde_json::to_string(report).expect("encode");
    let twice = serde_json::to_string(&format!("{{\"log\":{once}}}")).expect("encode");
    for line in [
        format!("2026-11-30 01:02:03.0 +0000 pod.blast: {{\"log\":{once},\"stream\":\"stdout\"}}"),
        format!("level=info msg={once}"),
        format!("x | {{\"outer\":{twice}}}"),
        r"svc | {\u0022schema\u0022: \u0022lsbaws-blast\/1\u0022}".to_string(),
    ] {
        let err = split("f", &format!("noise\n{line}\n"), false).expect_err(&line);
        let msg = err.to_string();
        assert!(
            msg.starts_with("f line 2: a blast report JSON-escaped inside another format"),
            "{msg}"
        );
    }
    // Escapes with no report in them are noise as before.
    let s = split(
        "f",
        "msg=\"{\\\"a\\\":1} \\x \\u12\"\nc:\\\\path\\\\\n",
        false,
    )
    .expect("noise");
    assert_eq!(s.skipped, 2);
}

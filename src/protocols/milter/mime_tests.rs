use proptest::prelude::*;

use super::*;

fn walk(message: &str) -> AttachmentSummary {
    let mut w = MimeWalker::new();
    w.feed(message.replace('\n', "\r\n").as_bytes());
    w.finish()
}

fn count(message: &str) -> u32 {
    walk(message).count
}

/// A multipart/mixed message with a text body and `parts` extra parts.
fn mixed(parts: &[String]) -> String {
    let mut m = String::from("From: a@example.com\nContent-Type: multipart/mixed; boundary=\"=b1\"\n\n");
    m.push_str("preamble\n--=b1\nContent-Type: text/plain\n\nHello\n");
    for p in parts {
        m.push_str("--=b1\n");
        m.push_str(p);
    }
    m.push_str("--=b1--\nepilogue\n");
    m
}

fn file(name: &str, body: &str) -> String {
    format!(
        "Content-Type: application/pdf; name=\"{name}\"\nContent-Disposition: attachment; filename=\"{name}\"\nContent-Transfer-Encoding: base64\n\n{body}\n"
    )
}

#[test]
fn plain_text_has_no_attachment() {
    assert_eq!(walk("Subject: hi\n\nHello\n"), AttachmentSummary { count: 0, largest: 0 });
    assert_eq!(count("Content-Type: text/html; charset=utf-8\n\n<p>Hello</p>\n"), 0);
    assert_eq!(count(&mixed(&[])), 0);
}

#[test]
fn the_attachment_rule() {
    let part = |headers: &str| count(&mixed(&[format!("{headers}\n\nxyz\n")]));
    // 1. a disposition other than inline
    assert_eq!(part("Content-Type: text/plain\nContent-Disposition: attachment"), 1);
    assert_eq!(part("Content-Type: text/plain\nContent-Disposition: x-unknown"), 1);
    // 2. named, unless text/image explicitly inline
    assert_eq!(part("Content-Type: text/plain; name=a.txt"), 1);
    assert_eq!(part("Content-Type: image/png; name=logo.png"), 1);
    assert_eq!(part("Content-Type: image/png; name=logo.png\nContent-Disposition: inline; filename=logo.png"), 0);
    assert_eq!(part("Content-Type: text/plain\nContent-Disposition: inline; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"), 0);
    assert_eq!(part("Content-Type: application/pdf\nContent-Disposition: inline; filename=a.pdf"), 1);
    assert_eq!(
        part("Content-Type: text/plain\nContent-Disposition: attachment; filename*0=\"a\"; filename*1=\"b\""),
        1
    );
    // 3. not text or image
    assert_eq!(part("Content-Type: application/octet-stream"), 1);
    assert_eq!(part("Content-Type: audio/ogg\nContent-Disposition: inline"), 1);
    // shown in the body
    assert_eq!(part("Content-Type: image/png\nContent-ID: <logo>"), 0);
    assert_eq!(part("Content-Type: text/calendar; method=REQUEST"), 0);
    // Case, comments and folding in headers.
    assert_eq!(part("content-type: TEXT/PLAIN\ncontent-disposition:\n ATTACHMENT (yes)"), 1);
    // A single-part message that is a file.
    assert_eq!(count("Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n"), 1);
}

#[test]
fn counts_through_nested_multiparts_and_attached_messages() {
    let inner = "Content-Type: multipart/alternative; boundary=alt\n\n--alt\nContent-Type: text/plain\n\nhi\n--alt\nContent-Type: text/html\n\n<p>hi</p>\n--alt--\n".to_string();
    let related = "Content-Type: multipart/related; boundary=\"rel\"\n\n--rel\nContent-Type: text/html\n\n<img src=cid:x>\n--rel\nContent-Type: image/png\nContent-Disposition: inline\n\nPNG\n--rel\nContent-Type: application/zip; name=deep.zip\n\nPK\n--rel--\n".to_string();
    let forwarded = format!(
        "Content-Type: message/rfc822\nContent-Disposition: attachment\n\nFrom: x@example.com\nSubject: fwd\nContent-Type: multipart/mixed; boundary=\"fwd\"\n\n--fwd\nContent-Type: text/plain\n\nbody\n--fwd\n{}--fwd--\n",
        file("inner.pdf", "QUJD")
    );
    let m = mixed(&[inner, related, file("a.pdf", "QUJDRA=="), forwarded]);
    // deep.zip, a.pdf, the forwarded message, inner.pdf
    assert_eq!(count(&m), 4);
}

#[test]
fn digest_children_are_messages() {
    let m = "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nbody\n--d\n\nSubject: two\n\nbody\n--d--\n";
    assert_eq!(count(m), 2);
}

#[test]
fn boundaries_match_exactly_and_outer_ones_close_inner_parts() {
    // "--b1x" is text, not the boundary "b1"; transport padding is allowed.
    let m = "Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: multipart/mixed; boundary=b2\n\n--b2\nContent-Type: application/pdf\n\n--b1x\n--b1  \nContent-Type: application/pdf\n\nPDF\n--b1--\n";
    // The first pdf's part ends at the outer boundary (b2 never closed).
    assert_eq!(count(m), 2);
    // After the close delimiter, the epilogue's lookalike lines are text.
    let m = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--b\nContent-Type: application/pdf\n\nPDF\n";
    assert_eq!(count(m), 0);
}

#[test]
fn sizes_are_estimated_decoded() {
    let b64 = "QUJD".repeat(19); // 76 chars = 57 bytes decoded
    let body = vec![b64.as_str(); 100].join("\n");
    let s = walk(&mixed(&[file("big.pdf", &body), file("small.pdf", "QUJD")]));
    assert_eq!(s.count, 2);
    assert_eq!(s.largest, 5700);
    let s = walk(&mixed(&["Content-Type: text/plain; name=a.txt\n\n0123456789\n0123456789\n".into()]));
    assert_eq!(s.largest, 24);
}

#[test]
fn opaque_multiparts_count_as_one_attachment() {
    assert_eq!(count("Content-Type: multipart/mixed\n\nno boundary\n"), 1);
    let long = "x".repeat(MAX_BOUNDARY + 1);
    assert_eq!(count(&format!("Content-Type: multipart/mixed; boundary={long}\n\n--{long}\n\nx\n")), 1);
    // Nesting beyond the cap: walked to the cap, then one opaque attachment.
    let mut m = String::new();
    for i in 0..(MAX_DEPTH + 5) {
        m.push_str(&format!("Content-Type: multipart/mixed; boundary=n{i}\n\n--n{i}\n"));
    }
    m.push_str("Content-Type: application/pdf\n\nPDF\n");
    assert_eq!(count(&m), 1);
}

#[test]
fn milter_style_feeding_matches_whole_message() {
    let m = mixed(&[file("a.pdf", "QUJD"), file("b.pdf", "QUJD")]).replace('\n', "\r\n");
    let whole = {
        let mut w = MimeWalker::new();
        w.feed(m.as_bytes());
        w.finish()
    };
    let (head, body) = m.split_once("\r\n\r\n").unwrap();
    let mut w = MimeWalker::new();
    for line in head.split("\r\n") {
        let (n, v) = line.split_once(':').unwrap();
        w.header(n, v.trim_start());
    }
    w.end_of_headers();
    w.feed(body.as_bytes());
    assert_eq!(w.finish(), whole);
    assert_eq!(whole.count, 2);
}

#[test]
fn memory_is_flat_as_the_message_grows() {
    // 100 KiB and 50 MiB messages, attachments as base64 lines, plus one
    // endless line and one endless header: the walker's heap stays within
    // the same fixed bound.
    let bound = MAX_LINE + MAX_HEADER + (MAX_DEPTH + 2) * (std::mem::size_of::<Frame>() + MAX_BOUNDARY) + 4096;
    let line = format!("{}\r\n", "QUJD".repeat(19));
    for size in [100 * 1024, 50 * 1024 * 1024] {
        let mut w = MimeWalker::new();
        w.feed(mixed(&[]).replace("--=b1--\nepilogue\n", "").replace('\n', "\r\n").as_bytes());
        w.feed(b"--=b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        let chunk = line.repeat(65_535 / line.len());
        let mut fed = 0;
        let mut peak = 0;
        while fed < size {
            w.feed(chunk.as_bytes());
            fed += chunk.len();
            peak = peak.max(w.footprint());
        }
        w.feed(b"--=b1\r\nContent-Type: text/plain\r\nX-Long: ");
        w.feed(&vec![b'h'; 1 << 20]);
        w.feed(b"\r\n\r\n");
        w.feed(&vec![b'x'; 1 << 20]);
        peak = peak.max(w.footprint());
        assert!(peak < bound, "{size}: {peak} >= {bound}");
        let s = w.finish();
        assert_eq!(s.count, 1);
        assert!(s.largest as usize > size * 3 / 4 * 95 / 100, "{size}: {}", s.largest);
    }
}

fn sample() -> String {
    let related = "Content-Type: multipart/related; boundary=\"rel\"\n\n--rel\nContent-Type: text/html\n\n<img>\n--rel\nContent-Type: image/png; name=x.png\n\nPNG\n--rel--\n".to_string();
    let fwd = "Content-Type: message/rfc822\n\nSubject: x\nContent-Type: multipart/mixed; boundary=f\n\n--f\nContent-Type: application/zip\n\nPK\n--f--\n".to_string();
    mixed(&[related, file("a.pdf", "QUJD\nQUJD"), fwd]).replace('\n', "\r\n")
}

proptest! {
    #[test]
    fn summary_does_not_depend_on_chunking(cuts in proptest::collection::vec(0usize..2000, 0..40)) {
        let m = sample();
        let whole = {
            let mut w = MimeWalker::new();
            w.feed(m.as_bytes());
            w.finish()
        };
        prop_assert_eq!(whole.count, 4);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (m.len() + 1)).collect();
        cuts.sort_unstable();
        let mut w = MimeWalker::new();
        let mut at = 0;
        for c in cuts {
            w.feed(&m.as_bytes()[at..c]);
            at = c;
        }
        w.feed(&m.as_bytes()[at..]);
        prop_assert_eq!(w.finish(), whole);
    }

    #[test]
    fn random_input_never_panics_and_chunking_is_invariant(
        bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'-'), Just(b'\r'), any::<u8>()], 0..2000),
        cut in 0usize..2000,
    ) {
        let mut prefix = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n".to_vec();
        prefix.extend_from_slice(&bytes);
        let whole = {
            let mut w = MimeWalker::new();
            w.feed(&prefix);
            w.finish()
        };
        let cut = cut.min(prefix.len());
        let mut w = MimeWalker::new();
        w.feed(&prefix[..cut]);
        w.feed(&prefix[cut..]);
        prop_assert_eq!(w.finish(), whole);
    }
}

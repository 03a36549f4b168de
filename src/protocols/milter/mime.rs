//! A streaming MIME walker: counts and sizes the attachments of a message
//! fed in chunks of any size, in bounded memory.
//!
//! # What counts as an attachment
//!
//! Every part that is not `multipart/*` (the top-level body included) is
//! looked at once its headers end. It is an **attachment** when any of:
//!
//! 1. it has a `Content-Disposition` whose type is not `inline`
//!    (`attachment`, or an unknown type, which RFC 2183 §2.8 says to treat
//!    as `attachment`);
//! 2. it carries a file name (`filename`/`filename*` on
//!    `Content-Disposition`, `name`/`name*` on `Content-Type`), unless it is
//!    a `text/*` or `image/*` part explicitly marked `Content-Disposition:
//!    inline` (a signature logo embedded in the HTML);
//! 3. its media type is neither `text/*` nor `image/*` (`application/pdf`,
//!    `audio/*`, `video/*`, an attached `message/rfc822`, …): a reader gets
//!    it as a file whatever the headers say.
//!
//! So the only parts that are *not* attachments are text and images shown
//! in the body: unnamed (with no disposition or `inline`), or named and
//! explicitly `inline`.
//!
//! Containers: `multipart/*` parts are walked, never counted. An attached
//! `message/rfc822` (7bit/8bit/binary) counts as one attachment **and** is
//! walked: attachments inside the forwarded message count too. A
//! multipart without a usable boundary, or one nested deeper than
//! [`MAX_DEPTH`], cannot be inspected and counts as one attachment (a
//! policy that forbids attachments must not be evaded by hiding them).
//!
//! Not attachments: data pasted into a text part (uuencode), the preamble
//! and epilogue of a multipart (readers never show them), and a part cut
//! short by the next boundary before its headers ended (it has no body).
//! A boundary given only as RFC 2231 continuations (`boundary*0=`) is not
//! assembled: that multipart is opaque and counts as one attachment.
//!
//! Size: the encoded bytes of the part's body; base64 bodies are
//! estimated as ¾ of their encoded bytes without line ends. An attached
//! message's size is all of it, headers included.
//!
//! # Bounds (attack input)
//!
//! Input is processed line by line as it arrives; nothing of the message
//! is kept but the current line's first [`MAX_LINE`] bytes, the current
//! header field's first [`MAX_HEADER`] bytes, and one frame per open
//! nesting level (at most [`MAX_DEPTH`], each holding a boundary of at most
//! [`MAX_BOUNDARY`] bytes). Memory does not grow with the message.

use crate::policy::AttachmentSummary;

/// Nesting levels walked (multiparts and attached messages).
pub const MAX_DEPTH: usize = 32;
/// Bytes of one line kept (enough for any boundary or header line).
pub const MAX_LINE: usize = 8 * 1024;
/// Bytes of one unfolded header field kept.
pub const MAX_HEADER: usize = 8 * 1024;
/// Longest boundary accepted (RFC 2046 says 70).
pub const MAX_BOUNDARY: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Headers,
    Body,
}

/// The headers of the part being read, as far as the walk cares.
#[derive(Clone, Debug, Default)]
struct PartHeaders {
    content_type: Option<String>,
    disposition: Option<String>,
    encoding: Option<String>,
}

/// One open entity.
#[derive(Clone, Debug)]
struct Frame {
    phase: Phase,
    /// Set while this multipart's body is open (cleared by its close
    /// delimiter: the epilogue follows).
    boundary: Option<Vec<u8>>,
    /// `multipart/digest`: children default to `message/rfc822`.
    digest: bool,
    default_rfc822: bool,
    attachment: Option<Size>,
}

#[derive(Clone, Copy, Debug)]
struct Size {
    bytes: u64,
    base64: bool,
}

impl Size {
    fn add_line(&mut self, len: u64) {
        self.bytes = self.bytes.saturating_add(if self.base64 { len } else { len + 2 });
    }

    fn decoded(self) -> u64 {
        if self.base64 {
            self.bytes / 4 * 3
        } else {
            self.bytes
        }
    }
}

/// The walker; feed it with [`feed`](Self::feed) (a whole message, headers
/// first) or, when the headers arrive parsed (the milter), with
/// [`header`](Self::header), [`end_of_headers`](Self::end_of_headers) and
/// then [`feed`](Self::feed) for the body.
#[derive(Clone, Debug)]
pub struct MimeWalker {
    line: Vec<u8>,
    line_len: u64,
    last_cr: bool,
    frames: Vec<Frame>,
    field: Vec<u8>,
    part: PartHeaders,
    summary: AttachmentSummary,
}

impl Default for MimeWalker {
    fn default() -> Self {
        Self::new()
    }
}

impl MimeWalker {
    pub fn new() -> Self {
        MimeWalker {
            line: Vec::with_capacity(256),
            line_len: 0,
            last_cr: false,
            frames: vec![Frame::new(false)],
            field: Vec::new(),
            part: PartHeaders::default(),
            summary: AttachmentSummary::default(),
        }
    }

    /// One top-level header, already parsed. Ignored after the headers.
    pub fn header(&mut self, name: &str, value: &str) {
        if self.frames.len() == 1 && self.frames[0].phase == Phase::Headers {
            self.flush_field();
            self.field.clear();
            let mut f = Vec::with_capacity(name.len() + value.len() + 2);
            f.extend_from_slice(name.as_bytes());
            f.extend_from_slice(b": ");
            f.extend_from_slice(value.as_bytes());
            f.retain(|b| *b != b'\r' && *b != b'\n');
            f.truncate(MAX_HEADER);
            self.field = f;
        }
    }

    /// The top-level headers ended; the body follows.
    pub fn end_of_headers(&mut self) {
        if self.frames.len() == 1 && self.frames[0].phase == Phase::Headers {
            self.headers_done();
        }
    }

    /// More bytes of the message (or body), cut anywhere.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            self.extend(&bytes[..nl]);
            self.end_line();
            bytes = &bytes[nl + 1..];
        }
        self.extend(bytes);
    }

    /// The attachments found; a last line without a line end counts.
    pub fn finish(mut self) -> AttachmentSummary {
        if self.line_len > 0 || !self.line.is_empty() {
            self.end_line();
        }
        if self.frames.last().is_some_and(|f| f.phase == Phase::Headers) {
            self.headers_done();
        }
        self.close_to(0);
        if let Some(size) = self.frames[0].attachment.take() {
            self.summary.largest = self.summary.largest.max(size.decoded());
        }
        self.summary
    }

    /// The summary so far (attachments counted as soon as their headers end).
    pub fn count(&self) -> u32 {
        self.summary.count
    }

    /// Heap bytes held now: the bound the module doc promises, for tests.
    pub fn footprint(&self) -> usize {
        self.line.capacity()
            + self.field.capacity()
            + self.frames.capacity() * std::mem::size_of::<Frame>()
            + self.frames.iter().map(|f| f.boundary.as_ref().map_or(0, Vec::capacity)).sum::<usize>()
            + [&self.part.content_type, &self.part.disposition, &self.part.encoding]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::capacity))
                .sum::<usize>()
    }

    fn extend(&mut self, segment: &[u8]) {
        if segment.is_empty() {
            return;
        }
        self.last_cr = segment.last() == Some(&b'\r');
        let room = MAX_LINE - self.line.len();
        self.line.extend_from_slice(&segment[..room.min(segment.len())]);
        self.line_len = self.line_len.saturating_add(segment.len() as u64);
    }

    fn end_line(&mut self) {
        let mut len = self.line_len;
        if self.last_cr {
            len -= 1;
            if self.line.len() as u64 == self.line_len {
                self.line.pop();
            }
        }
        let line = std::mem::take(&mut self.line);
        self.on_line(&line, len);
        self.line = line;
        self.line.clear();
        self.line_len = 0;
        self.last_cr = false;
    }

    fn on_line(&mut self, line: &[u8], len: u64) {
        if let Some((level, close)) = self.delimiter(line) {
            self.close_to(level + 1);
            self.add_to_sizes(len);
            let parent = &mut self.frames[level];
            if close {
                parent.boundary = None;
            } else {
                let rfc822 = parent.digest;
                self.frames.push(Frame::new(rfc822));
                self.part = PartHeaders::default();
                self.field.clear();
            }
            return;
        }
        let top = self.frames.len() - 1;
        match self.frames[top].phase {
            Phase::Body => self.add_to_sizes(len),
            Phase::Headers => {
                self.add_to_sizes(len);
                if len == 0 {
                    self.headers_done();
                } else if matches!(line.first(), Some(b' ' | b'\t')) {
                    let room = MAX_HEADER.saturating_sub(self.field.len());
                    self.field.extend_from_slice(&line[..room.min(line.len())]);
                } else {
                    self.flush_field();
                    self.field.clear();
                    self.field.extend_from_slice(&line[..MAX_HEADER.min(line.len())]);
                }
            }
        }
    }

    /// Adds a line to every open attachment whose body it is in.
    fn add_to_sizes(&mut self, len: u64) {
        for f in self.frames.iter_mut().filter(|f| f.phase == Phase::Body) {
            if let Some(size) = &mut f.attachment {
                size.add_line(len);
            }
        }
    }

    /// The innermost open multipart whose boundary this line is, and
    /// whether it is the close delimiter.
    fn delimiter(&self, line: &[u8]) -> Option<(usize, bool)> {
        let rest = line.strip_prefix(b"--")?;
        self.frames.iter().enumerate().rev().find_map(|(i, f)| {
            let b = f.boundary.as_deref()?;
            let after = rest.strip_prefix(b)?;
            let (close, tail) = match after.strip_prefix(b"--") {
                Some(t) => (true, t),
                None => (false, after),
            };
            tail.iter().all(|c| *c == b' ' || *c == b'\t').then_some((i, close))
        })
    }

    /// Closes every frame at `level` and deeper.
    fn close_to(&mut self, level: usize) {
        while self.frames.len() > level.max(1) {
            if let Some(f) = self.frames.pop() {
                if let Some(size) = f.attachment {
                    self.summary.largest = self.summary.largest.max(size.decoded());
                }
            }
        }
    }

    fn flush_field(&mut self) {
        let Some(colon) = self.field.iter().position(|&b| b == b':') else {
            return;
        };
        let name = String::from_utf8_lossy(&self.field[..colon]).trim().to_ascii_lowercase();
        let value = || String::from_utf8_lossy(&self.field[colon + 1..]).into_owned();
        // The first of each wins, as most readers do.
        match name.as_str() {
            "content-type" if self.part.content_type.is_none() => self.part.content_type = Some(value()),
            "content-disposition" if self.part.disposition.is_none() => self.part.disposition = Some(value()),
            "content-transfer-encoding" if self.part.encoding.is_none() => self.part.encoding = Some(value()),
            _ => {}
        }
    }

    /// The innermost frame's headers ended: decide what it is.
    fn headers_done(&mut self) {
        self.flush_field();
        self.field.clear();
        let part = std::mem::take(&mut self.part);
        let depth = self.frames.len();
        let top = depth - 1;
        let default_type = if self.frames[top].default_rfc822 { "message/rfc822" } else { "text/plain" };
        let (media, params) = match part.content_type.as_deref().map(parse_header_value) {
            Some((m, p)) if m.contains('/') => (m, p),
            _ => (default_type.to_owned(), Vec::new()),
        };
        let (disposition, disp_params) = match part.disposition.as_deref().map(parse_header_value) {
            Some((d, p)) if !d.is_empty() => (Some(d), p),
            _ => (None, Vec::new()),
        };
        let encoding = part.encoding.as_deref().map(|e| e.trim().to_ascii_lowercase()).unwrap_or_default();
        let base64 = encoding == "base64";
        let frame = &mut self.frames[top];
        frame.phase = Phase::Body;

        if let Some(subtype) = media.strip_prefix("multipart/") {
            let boundary = params
                .iter()
                .find(|(n, _)| n == "boundary")
                .map(|(_, v)| v.as_bytes().to_vec())
                .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY);
            match boundary {
                Some(b) if depth <= MAX_DEPTH => {
                    frame.boundary = Some(b);
                    frame.digest = subtype == "digest";
                }
                // Cannot be walked: one opaque attachment.
                _ => self.start_attachment(base64),
            }
            return;
        }
        let named = params.iter().chain(disp_params.iter()).any(|(n, _)| is_name_param(n));
        let displayed = media.starts_with("text/") || media.starts_with("image/");
        let is_attachment = match disposition.as_deref() {
            Some("inline") => !displayed,
            Some(_) => true,
            None => named || !displayed,
        };
        if is_attachment {
            self.start_attachment(base64);
        }
        let encapsulated = matches!(media.as_str(), "message/rfc822" | "message/global")
            && matches!(encoding.as_str(), "" | "7bit" | "8bit" | "binary");
        if encapsulated && depth <= MAX_DEPTH {
            self.frames.push(Frame::new(false));
        }
    }

    fn start_attachment(&mut self, base64: bool) {
        self.summary.count = self.summary.count.saturating_add(1);
        if let Some(f) = self.frames.last_mut() {
            f.attachment = Some(Size { bytes: 0, base64 });
        }
    }
}

impl Frame {
    fn new(default_rfc822: bool) -> Self {
        Frame { phase: Phase::Headers, boundary: None, digest: false, default_rfc822, attachment: None }
    }
}

fn is_name_param(name: &str) -> bool {
    let base = name.split('*').next().unwrap_or("");
    base == "name" || base == "filename"
}

/// `type/subtype; a=b; c="d"` → (lower-cased value, lower-cased names
/// with their values). Comments are dropped; quoted strings unquoted.
pub fn parse_header_value(raw: &str) -> (String, Vec<(String, String)>) {
    let mut items: Vec<String> = vec![String::new()];
    let (mut quoted, mut depth, mut escaped) = (false, 0usize, false);
    for c in raw.chars() {
        let cur = items.last_mut().expect("never empty");
        if escaped {
            if depth == 0 {
                cur.push(c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            ';' if !quoted => {
                if items.len() < 64 {
                    items.push(String::new());
                }
            }
            '\r' | '\n' => {}
            _ => cur.push(c),
        }
    }
    let mut it = items.into_iter();
    let value = it.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = it
        .filter_map(|p| {
            let (n, v) = p.split_once('=')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    (value, params)
}

#[cfg(test)]
#[path = "mime_tests.rs"]
mod tests;

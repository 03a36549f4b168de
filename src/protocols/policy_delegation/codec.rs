//! Bytes ⇄ policy requests and replies. No I/O.
//!
//! A request is `name=value` lines ended by an empty line; names never hold
//! `=`, NUL or LF, values never hold NUL or LF (SMTPD_POLICY_README).
//! The decoder tells "need more bytes" (`Ok(None)`) from invalid input and
//! from input over the size caps.

use memchr::{memchr, memmem, memrchr};

/// Longest attribute line accepted, without its LF.
pub const MAX_LINE: usize = 8192;
/// Largest request accepted, terminator included.
pub const MAX_REQUEST: usize = 65_536;
/// Most attributes in one request (Postfix 3.7 sends about 30).
pub const MAX_ATTRIBUTES: usize = 256;
/// Longest reply text sent back; Postfix passes it into an SMTP reply line.
pub const MAX_REPLY_TEXT: usize = 480;

/// Postfix actions (access(5)) this server answers with.
pub const ACTION_DUNNO: &str = "DUNNO";
pub const ACTION_PREPEND: &str = "PREPEND";

/// Why the bytes are not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    #[error(
        "request over the size limits ({MAX_LINE} bytes a line, {MAX_REQUEST} a request, {MAX_ATTRIBUTES} attributes)"
    )]
    TooLarge,
}

/// One decoded request: its attributes in order, as one text with the
/// places of each name and value (two allocations per request, not two
/// per attribute).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The `name=value` lines, each ending in LF.
    text: String,
    /// Per attribute: where its name starts, its `=`, and where its value
    /// ends, in `text`.
    spans: Vec<(u32, u32, u32)>,
}

impl Request {
    pub fn new(attributes: Vec<(String, String)>) -> Self {
        let mut r = Request::default();
        for (name, value) in attributes {
            let start = r.text.len() as u32;
            r.text.push_str(&name);
            let eq = r.text.len() as u32;
            r.text.push('=');
            r.text.push_str(&value);
            r.spans.push((start, eq, r.text.len() as u32));
            r.text.push('\n');
        }
        r
    }

    /// The first value of an attribute (Postfix never repeats one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// `(name, value)` pairs in order.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|&(start, eq, end)| {
            (&self.text[start as usize..eq as usize], &self.text[eq as usize + 1..end as usize])
        })
    }

    /// The request as Postfix would send it: the attribute lines, which
    /// `text` already is, and the empty line.
    pub fn encode(&self) -> Vec<u8> {
        [self.text.as_bytes(), b"\n"].concat()
    }
}

/// Takes one complete request off the front of `buf`. `Ok(None)`: more
/// bytes are needed. On `Err` the connection must be closed.
pub fn decode(buf: &mut Vec<u8>) -> Result<Option<Request>, CodecError> {
    let end = if buf.first() == Some(&b'\n') { Some(0) } else { memmem::find(buf, b"\n\n").map(|p| p + 1) };
    let Some(end) = end else {
        let line_start = memrchr(b'\n', buf).map_or(0, |p| p + 1);
        if buf.len() > MAX_REQUEST || buf.len() - line_start > MAX_LINE {
            return Err(CodecError::TooLarge);
        }
        return Ok(None);
    };
    if end + 1 > MAX_REQUEST {
        return Err(CodecError::TooLarge);
    }
    let block = &buf[..end];
    if memchr(0, block).is_some() {
        return Err(CodecError::Invalid("NUL byte"));
    }
    // Values may carry 8-bit text (SMTPUTF8 addresses, odd HELO names):
    // decoded lossily, so they can never match a directory address by
    // accident. A replacement character is never `\n` or `=`, so the
    // lines and names of the text are those of the bytes. Valid UTF-8,
    // nearly every request, is copied as it is.
    let text = match std::str::from_utf8(block) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(block).into_owned(),
    };
    let bytes = text.as_bytes();
    let mut spans = Vec::with_capacity(32);
    let mut start = 0usize;
    while start < bytes.len() {
        let line_end = memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |p| start + p);
        let line = &bytes[start..line_end];
        if !line.is_empty() {
            if line.len() > MAX_LINE || spans.len() == MAX_ATTRIBUTES {
                return Err(CodecError::TooLarge);
            }
            let eq = memchr(b'=', line).ok_or(CodecError::Invalid("line without '='"))?;
            if eq == 0 {
                return Err(CodecError::Invalid("empty attribute name"));
            }
            spans.push((start as u32, (start + eq) as u32, line_end as u32));
        }
        start = line_end + 1;
    }
    buf.drain(..=end);
    Ok(Some(Request { text, spans }))
}

/// Appends `action=<action>\n\n` to `out` (a buffer the connection
/// reuses), with the text capped and its control characters made spaces,
/// so a reply can never carry a second line.
pub fn encode_reply(action: &str, out: &mut Vec<u8>) {
    let mut cut = action.len().min(MAX_REPLY_TEXT);
    while !action.is_char_boundary(cut) {
        cut -= 1;
    }
    let text = &action[..cut];
    out.extend_from_slice(b"action=");
    if text.chars().any(char::is_control) {
        for c in text.chars() {
            let c = if c.is_control() { ' ' } else { c };
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    } else {
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

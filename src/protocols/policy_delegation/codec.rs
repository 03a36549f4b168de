//! Bytes ⇄ policy requests and replies. No I/O.
//!
//! A request is `name=value` lines ended by an empty line; names never hold
//! `=`, NUL or LF, values never hold NUL or LF (SMTPD_POLICY_README).
//! The decoder tells "need more bytes" (`Ok(None)`) from invalid input and
//! from input over the size caps.

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

/// One decoded request: its attributes in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    attributes: Vec<(String, String)>,
}

impl Request {
    pub fn new(attributes: Vec<(String, String)>) -> Self {
        Self { attributes }
    }

    /// The first value of an attribute (Postfix never repeats one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn attributes(&self) -> &[(String, String)] {
        &self.attributes
    }

    /// The request as Postfix would send it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in &self.attributes {
            out.extend_from_slice(n.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }
}

/// Takes one complete request off the front of `buf`. `Ok(None)`: more
/// bytes are needed. On `Err` the connection must be closed.
pub fn decode(buf: &mut Vec<u8>) -> Result<Option<Request>, CodecError> {
    let end =
        if buf.first() == Some(&b'\n') { Some(0) } else { buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 1) };
    let Some(end) = end else {
        let line_start = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if buf.len() > MAX_REQUEST || buf.len() - line_start > MAX_LINE {
            return Err(CodecError::TooLarge);
        }
        return Ok(None);
    };
    if end + 1 > MAX_REQUEST {
        return Err(CodecError::TooLarge);
    }
    let mut attributes = Vec::new();
    for line in buf[..end].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if line.len() > MAX_LINE || attributes.len() == MAX_ATTRIBUTES {
            return Err(CodecError::TooLarge);
        }
        if line.contains(&0) {
            return Err(CodecError::Invalid("NUL byte"));
        }
        let eq = line.iter().position(|&b| b == b'=').ok_or(CodecError::Invalid("line without '='"))?;
        if eq == 0 {
            return Err(CodecError::Invalid("empty attribute name"));
        }
        // Values may carry 8-bit text (SMTPUTF8 addresses, odd HELO names):
        // decoded lossily, so they can never match a directory address by
        // accident.
        let name = String::from_utf8_lossy(&line[..eq]).into_owned();
        let value = String::from_utf8_lossy(&line[eq + 1..]).into_owned();
        attributes.push((name, value));
    }
    buf.drain(..=end);
    Ok(Some(Request { attributes }))
}

/// `action=<action>\n\n`, with control characters in the text made
/// spaces and the text capped.
pub fn encode_reply(action: &str) -> Vec<u8> {
    let mut clean: String = action.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.len() > MAX_REPLY_TEXT {
        let mut cut = MAX_REPLY_TEXT;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
    }
    let mut out = Vec::with_capacity(clean.len() + 9);
    out.extend_from_slice(b"action=");
    out.extend_from_slice(clean.as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

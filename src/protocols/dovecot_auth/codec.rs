//! Lines of the Dovecot auth protocol: bytes → [`Command`], [`Reply`] → bytes.
//!
//! LF-terminated, TAB-separated fields, at most [`MAX_LINE`] bytes. The
//! decoder tells "need more bytes" ([`DecodeError::Incomplete`]) from a
//! line that is too long ([`DecodeError::TooLarge`]: the connection cannot
//! resynchronise) and a complete line that makes no sense
//! ([`DecodeError::Invalid`], with the bytes to skip and the request id
//! when one could be read, so that request alone can fail). Nothing here
//! panics on input; a proptest feeds it random bytes.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Dovecot's `AUTH_CLIENT_MAX_LINE_LENGTH`, including the LF.
pub const MAX_LINE: usize = 16384;
pub const VERSION_MAJOR: u32 = 1;
/// What we speak: 1.2 (Dovecot 2.3). Clients (Postfix, Exim) send 1.0.
pub const VERSION_MINOR: u32 = 2;

const LF: u8 = b'\n';
const CR: u8 = b'\r';
const TAB: u8 = b'\t';

/// Client command words.
pub const CMD_VERSION: &str = "VERSION";
pub const CMD_CPID: &str = "CPID";
pub const CMD_AUTH: &str = "AUTH";
pub const CMD_CONT: &str = "CONT";

/// AUTH parameters we read; the rest are ignored, as the spec requires.
const PARAM_SERVICE: &str = "service=";
const PARAM_REMOTE_IP: &str = "rip=";
const PARAM_RESPONSE: &str = "resp=";

/// `FAIL … code=` values (Dovecot `auth-client-interface.h`).
pub mod fail_code {
    pub const TEMP_FAIL: &str = "temp_fail";
    pub const AUTHZ_FAIL: &str = "authz_fail";
    pub const USER_DISABLED: &str = "user_disabled";
    pub const PASS_EXPIRED: &str = "pass_expired";
    pub const INVALID_BASE64: &str = "invalid_base64";
}

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Version { major: u32, minor: u32 },
    Cpid(String),
    Auth(AuthCommand),
    Cont { id: u32, data: String },
}

#[derive(Clone, PartialEq, Eq)]
pub struct AuthCommand {
    pub id: u32,
    pub mechanism: String,
    pub service: Option<String>,
    pub remote_ip: Option<IpAddr>,
    /// The initial response, base64 as sent. `resp=` with nothing after
    /// it (Exim always sends one) counts as absent.
    pub response: Option<String>,
}

// The initial response holds the password: never printed.
impl std::fmt::Debug for AuthCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCommand")
            .field("id", &self.id)
            .field("mechanism", &self.mechanism)
            .field("service", &self.service)
            .field("remote_ip", &self.remote_ip)
            .field("response", &self.response.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Why a complete line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    NotUtf8,
    ControlCharacter,
    UnknownCommand,
    MissingField,
    BadId,
    BadVersion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// No complete line yet: read more.
    Incomplete,
    /// No LF within [`MAX_LINE`] bytes: close the connection.
    TooLarge,
    /// A complete but unusable line of `consumed` bytes; `id` when the
    /// line was an AUTH or CONT whose id could be read.
    Invalid { consumed: usize, id: Option<u32>, why: Invalid },
}

/// Decodes the first line of `buf`; returns it and the bytes it used.
pub fn decode(buf: &[u8]) -> Result<(Command, usize), DecodeError> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    let Some(end) = window.iter().position(|&b| b == LF) else {
        return Err(if buf.len() >= MAX_LINE { DecodeError::TooLarge } else { DecodeError::Incomplete });
    };
    let consumed = end + 1;
    let mut line = &buf[..end];
    if line.last() == Some(&CR) {
        line = &line[..line.len() - 1];
    }
    parse(line).map(|c| (c, consumed)).map_err(|(id, why)| DecodeError::Invalid { consumed, id, why })
}

fn parse(line: &[u8]) -> Result<Command, (Option<u32>, Invalid)> {
    let text = std::str::from_utf8(line).map_err(|_| (peek_id(line), Invalid::NotUtf8))?;
    if text.bytes().any(|b| b < 0x20 && b != TAB || b == 0x7f) {
        return Err((peek_id(line), Invalid::ControlCharacter));
    }
    let mut fields = text.split('\t');
    let word = fields.next().unwrap_or_default();
    match word {
        CMD_VERSION => {
            let major = number(fields.next()).ok_or((None, Invalid::BadVersion))?;
            let minor = number(fields.next()).ok_or((None, Invalid::BadVersion))?;
            Ok(Command::Version { major, minor })
        }
        CMD_CPID => Ok(Command::Cpid(fields.next().ok_or((None, Invalid::MissingField))?.to_owned())),
        CMD_AUTH => {
            let id = number(fields.next()).ok_or((None, Invalid::BadId))?;
            let mechanism = fields.next().filter(|m| !m.is_empty()).ok_or((Some(id), Invalid::MissingField))?;
            let mut auth = AuthCommand {
                id,
                mechanism: mechanism.to_ascii_uppercase(),
                service: None,
                remote_ip: None,
                response: None,
            };
            // `resp=` is last by the spec; anything after it is ignored.
            for field in fields {
                if let Some(v) = field.strip_prefix(PARAM_RESPONSE) {
                    auth.response = (!v.is_empty()).then(|| v.to_owned());
                    break;
                } else if let Some(v) = field.strip_prefix(PARAM_SERVICE) {
                    auth.service = Some(v.to_owned());
                } else if let Some(v) = field.strip_prefix(PARAM_REMOTE_IP) {
                    auth.remote_ip = v.parse().ok();
                }
            }
            Ok(Command::Auth(auth))
        }
        CMD_CONT => {
            let id = number(fields.next()).ok_or((None, Invalid::BadId))?;
            let data = fields.next().unwrap_or_default().to_owned();
            Ok(Command::Cont { id, data })
        }
        _ => Err((None, Invalid::UnknownCommand)),
    }
}

/// A request id or version number: ASCII digits only, fits in u32.
fn number(field: Option<&str>) -> Option<u32> {
    let f = field?;
    if f.is_empty() || f.len() > 10 || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    f.parse().ok()
}

/// The id of an AUTH/CONT line that failed later checks.
fn peek_id(line: &[u8]) -> Option<u32> {
    let mut fields = line.split(|&b| b == TAB);
    let word = fields.next()?;
    if word != CMD_AUTH.as_bytes() && word != CMD_CONT.as_bytes() {
        return None;
    }
    number(std::str::from_utf8(fields.next()?).ok())
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Version,
    Mech { name: &'static str, params: &'static [&'static str] },
    Spid(u32),
    Cuid(u32),
    Cookie([u8; 16]),
    Done,
    Ok { id: u32, user: String },
    Cont { id: u32, data: String },
    Fail { id: u32, user: Option<String>, code: Option<&'static str>, reason: Option<String> },
}

/// Appends one encoded line to `out`.
pub fn encode(reply: &Reply, out: &mut Vec<u8>) {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = match reply {
        Reply::Version => write!(s, "VERSION\t{VERSION_MAJOR}\t{VERSION_MINOR}"),
        Reply::Mech { name, params } => {
            s.push_str("MECH\t");
            s.push_str(name);
            for p in *params {
                s.push('\t');
                s.push_str(p);
            }
            Ok(())
        }
        Reply::Spid(pid) => write!(s, "SPID\t{pid}"),
        Reply::Cuid(n) => write!(s, "CUID\t{n}"),
        Reply::Cookie(c) => {
            s.push_str("COOKIE\t");
            c.iter().for_each(|b| {
                let _ = write!(s, "{b:02x}");
            });
            Ok(())
        }
        Reply::Done => write!(s, "DONE"),
        Reply::Ok { id, user } => {
            let _ = write!(s, "OK\t{id}\tuser=");
            escape_into(&mut s, user);
            Ok(())
        }
        Reply::Cont { id, data } => {
            let _ = write!(s, "CONT\t{id}\t");
            escape_into(&mut s, data);
            Ok(())
        }
        Reply::Fail { id, user, code, reason } => {
            let _ = write!(s, "FAIL\t{id}");
            if let Some(user) = user {
                s.push_str("\tuser=");
                escape_into(&mut s, user);
            }
            if let Some(code) = code {
                let _ = write!(s, "\tcode={code}");
            }
            if let Some(reason) = reason {
                s.push_str("\treason=");
                escape_into(&mut s, reason);
            }
            Ok(())
        }
    };
    out.extend_from_slice(s.as_bytes());
    out.push(LF);
}

/// v1.3 value escaping (`\001` + a letter), so a value can never split a
/// field or a line.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\u{0}' => out.push_str("\u{1}0"),
            '\u{1}' => out.push_str("\u{1}1"),
            '\t' => out.push_str("\u{1}t"),
            '\r' => out.push_str("\u{1}r"),
            '\n' => out.push_str("\u{1}n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

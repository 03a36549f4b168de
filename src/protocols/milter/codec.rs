//! Milter protocol version 6 framing: bytes ↔ commands and replies, no I/O.
//!
//! Every packet is a 4-byte big-endian length (counting the command byte),
//! one command byte, then the command's data. Constants are those of
//! sendmail's `include/libmilter/mfdef.h` (checked against Postfix's
//! `src/milter/milter8.c`, which defines its own copy).
//!
//! Why our own codec and not `miltr-server` (MIT, evaluated): its
//! `Server::handle_connection` owns the whole read/dispatch loop over
//! `futures::io` streams (tokio sockets need `tokio-util`'s compat layer,
//! plus `asynchronous-codec` in the build) and calls a callback trait per
//! stage; the idle timeout and graceful shutdown that the shared accept
//! loop gives every other front end would have to wrap it from outside,
//! and its Postfix preset treats `abort` as `quit`, where we keep the
//! connection and reset only the message. The part we need — a dozen fixed
//! packet layouts — is small enough to own, to test without sockets, and
//! to pin byte for byte.
//!
//! Limits: a frame longer than [`MAX_FRAME`] (1 MiB; Postfix never sends a
//! body chunk over 65,535 bytes) is refused with [`CodecError::FrameTooLarge`]
//! before anything is buffered, and the connection closes.

/// Protocol version spoken (sendmail 8.14 / Postfix `milter_protocol = 6`).
pub const VERSION: u32 = 6;
/// Largest frame accepted.
pub const MAX_FRAME: usize = 1 << 20;

// Commands from the MTA (SMFIC_*).
pub const SMFIC_ABORT: u8 = b'A';
pub const SMFIC_BODY: u8 = b'B';
pub const SMFIC_CONNECT: u8 = b'C';
pub const SMFIC_MACRO: u8 = b'D';
pub const SMFIC_BODYEOB: u8 = b'E';
pub const SMFIC_HELO: u8 = b'H';
pub const SMFIC_QUIT_NC: u8 = b'K';
pub const SMFIC_HEADER: u8 = b'L';
pub const SMFIC_MAIL: u8 = b'M';
pub const SMFIC_EOH: u8 = b'N';
pub const SMFIC_OPTNEG: u8 = b'O';
pub const SMFIC_QUIT: u8 = b'Q';
pub const SMFIC_RCPT: u8 = b'R';
pub const SMFIC_DATA: u8 = b'T';
pub const SMFIC_UNKNOWN: u8 = b'U';

// Replies to the MTA (SMFIR_*).
pub const SMFIR_ACCEPT: u8 = b'a';
pub const SMFIR_CONTINUE: u8 = b'c';
pub const SMFIR_REJECT: u8 = b'r';
pub const SMFIR_TEMPFAIL: u8 = b't';
pub const SMFIR_REPLYCODE: u8 = b'y';

// Protocol flags (SMFIP_*): stages the filter does not want, replies it
// will not send.
pub const SMFIP_NOCONNECT: u32 = 0x0000_0001;
pub const SMFIP_NOHELO: u32 = 0x0000_0002;
pub const SMFIP_NOMAIL: u32 = 0x0000_0004;
pub const SMFIP_NORCPT: u32 = 0x0000_0008;
pub const SMFIP_NOBODY: u32 = 0x0000_0010;
pub const SMFIP_NOHDRS: u32 = 0x0000_0020;
pub const SMFIP_NOEOH: u32 = 0x0000_0040;
pub const SMFIP_NR_HDR: u32 = 0x0000_0080;
pub const SMFIP_NOUNKNOWN: u32 = 0x0000_0100;
pub const SMFIP_NODATA: u32 = 0x0000_0200;
pub const SMFIP_SKIP: u32 = 0x0000_0400;
pub const SMFIP_RCPT_REJ: u32 = 0x0000_0800;
pub const SMFIP_NR_CONN: u32 = 0x0000_1000;
pub const SMFIP_NR_HELO: u32 = 0x0000_2000;
pub const SMFIP_NR_MAIL: u32 = 0x0000_4000;
pub const SMFIP_NR_RCPT: u32 = 0x0000_8000;
pub const SMFIP_NR_DATA: u32 = 0x0001_0000;
pub const SMFIP_NR_UNKN: u32 = 0x0002_0000;
pub const SMFIP_NR_EOH: u32 = 0x0004_0000;
pub const SMFIP_NR_BODY: u32 = 0x0008_0000;
pub const SMFIP_HDR_LEADSPC: u32 = 0x0010_0000;

// Actions (SMFIF_*) the filter may take at end of message.
pub const SMFIF_ADDHDRS: u32 = 0x0000_0001;
pub const SMFIF_SETSYMLIST: u32 = 0x0000_0100;

// Macro stages for the symbol list (SMFIM_*).
pub const SMFIM_CONNECT: u32 = 0;
pub const SMFIM_HELO: u32 = 1;
pub const SMFIM_ENVFROM: u32 = 2;
pub const SMFIM_ENVRCPT: u32 = 3;
pub const SMFIM_DATA: u32 = 4;
pub const SMFIM_EOM: u32 = 5;
pub const SMFIM_EOH: u32 = 6;

/// One command from the MTA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// Macros for the command `stage` that follows.
    Macro {
        stage: u8,
        pairs: Vec<(String, String)>,
    },
    /// Host name and, for IPv4/IPv6, the address.
    Connect {
        hostname: String,
        address: Option<String>,
    },
    Helo(String),
    /// The sender (`<a@b>`) then ESMTP arguments.
    Mail(Vec<String>),
    Rcpt(Vec<String>),
    Data,
    Header {
        name: String,
        value: String,
    },
    EndOfHeaders,
    Body(Vec<u8>),
    /// End of body; may carry a last chunk.
    EndOfBody(Vec<u8>),
    Abort,
    Quit,
    /// Quit this SMTP session; the MTA reuses the connection for another.
    QuitNewConnection,
    Unknown(Vec<u8>),
}

/// A reply to the MTA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
        macros: Vec<(u32, String)>,
    },
    Continue,
    Accept,
    Reject,
    Tempfail,
    /// `550 5.7.1 text`: a full SMTP reply line.
    ReplyCode(String),
}

/// Input that is not a milter packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    FrameTooLarge(usize),
    #[error("empty frame (length 0)")]
    EmptyFrame,
    #[error("unknown milter command {0:#04x}")]
    UnknownCommand(u8),
    #[error("malformed {command:?} packet: {why}")]
    Malformed { command: char, why: &'static str },
}

/// The length of the frame at the front of `buf` (command byte and
/// data) once all of it is there; `None` while bytes are missing.
fn complete_frame(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    let Some(header) = buf.first_chunk::<4>() else { return Ok(None) };
    let len = u32::from_be_bytes(*header) as usize;
    if len == 0 {
        return Err(CodecError::EmptyFrame);
    }
    if len > MAX_FRAME {
        return Err(CodecError::FrameTooLarge(len));
    }
    Ok((buf.len() >= 4 + len).then_some(len))
}

/// Takes one complete packet off the front of `buf`. `Ok(None)`: more
/// bytes needed. An error leaves the stream unusable (close it).
pub fn decode(buf: &mut Vec<u8>) -> Result<Option<Command>, CodecError> {
    let Some(len) = complete_frame(buf)? else { return Ok(None) };
    let command = parse(buf[4], &buf[5..4 + len]);
    buf.drain(..4 + len);
    command.map(Some)
}

/// How many more bytes the packet at the front of `buf` needs (for
/// reserving the read buffer); 0 when unknown or complete.
pub fn missing(buf: &[u8]) -> usize {
    if buf.len() < 4 {
        return 0;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    (4 + len.min(MAX_FRAME)).saturating_sub(buf.len())
}

fn parse(cmd: u8, data: &[u8]) -> Result<Command, CodecError> {
    let bad = |why| CodecError::Malformed { command: cmd as char, why };
    Ok(match cmd {
        SMFIC_OPTNEG => {
            if data.len() < 12 {
                return Err(bad("shorter than three 32-bit words"));
            }
            let word = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            Command::OptNeg { version: word(0), actions: word(4), protocol: word(8) }
        }
        SMFIC_MACRO => {
            let (&stage, rest) = data.split_first().ok_or_else(|| bad("no stage"))?;
            let strings = strings(rest).ok_or_else(|| bad("unterminated string"))?;
            let mut pairs = Vec::with_capacity(strings.len() / 2);
            let mut it = strings.into_iter();
            while let Some(name) = it.next() {
                pairs.push((name, it.next().unwrap_or_default()));
            }
            Command::Macro { stage, pairs }
        }
        SMFIC_CONNECT => {
            let end = nul(data).ok_or_else(|| bad("unterminated host name"))?;
            let hostname = text(&data[..end]);
            let rest = &data[end + 1..];
            let address = match rest.first() {
                Some(b'4' | b'6') if rest.len() >= 3 => {
                    let a = strings(&rest[3..]).ok_or_else(|| bad("unterminated address"))?;
                    a.into_iter().next()
                }
                Some(b'L') => strings(&rest[3.min(rest.len())..]).and_then(|a| a.into_iter().next()),
                Some(b'U') | None => None,
                Some(_) => return Err(bad("unknown address family")),
            };
            Command::Connect { hostname, address }
        }
        SMFIC_HELO => Command::Helo(strings(data).and_then(|s| s.into_iter().next()).unwrap_or_default()),
        SMFIC_MAIL => Command::Mail(strings(data).ok_or_else(|| bad("unterminated argument"))?),
        SMFIC_RCPT => Command::Rcpt(strings(data).ok_or_else(|| bad("unterminated argument"))?),
        SMFIC_HEADER => {
            let mut s = strings(data).ok_or_else(|| bad("unterminated header"))?.into_iter();
            match (s.next(), s.next()) {
                (Some(name), Some(value)) => Command::Header { name, value },
                _ => return Err(bad("needs a name and a value")),
            }
        }
        SMFIC_DATA => Command::Data,
        SMFIC_EOH => Command::EndOfHeaders,
        SMFIC_BODY => Command::Body(data.to_vec()),
        SMFIC_BODYEOB => Command::EndOfBody(data.to_vec()),
        SMFIC_ABORT => Command::Abort,
        SMFIC_QUIT => Command::Quit,
        SMFIC_QUIT_NC => Command::QuitNewConnection,
        SMFIC_UNKNOWN => Command::Unknown(data.to_vec()),
        other => return Err(CodecError::UnknownCommand(other)),
    })
}

fn nul(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == 0)
}

/// Header values and macros may carry 8-bit text; keep it readable.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// NUL-terminated strings filling `data` exactly; `None` if the last one
/// is not terminated.
fn strings(mut data: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let end = nul(data)?;
        out.push(text(&data[..end]));
        data = &data[end + 1..];
    }
    Some(out)
}

/// The packet for a reply.
pub fn encode(reply: &Reply) -> Vec<u8> {
    let mut data = Vec::new();
    let cmd = match reply {
        Reply::OptNeg { version, actions, protocol, macros } => {
            for w in [version, actions, protocol] {
                data.extend_from_slice(&w.to_be_bytes());
            }
            for (stage, names) in macros {
                data.extend_from_slice(&stage.to_be_bytes());
                data.extend_from_slice(names.as_bytes());
                data.push(0);
            }
            SMFIC_OPTNEG
        }
        Reply::Continue => SMFIR_CONTINUE,
        Reply::Accept => SMFIR_ACCEPT,
        Reply::Reject => SMFIR_REJECT,
        Reply::Tempfail => SMFIR_TEMPFAIL,
        Reply::ReplyCode(line) => {
            // One line, no NUL: the MTA reads a C string.
            data.extend(line.bytes().filter(|&b| b != 0 && b != b'\r' && b != b'\n'));
            data.push(0);
            SMFIR_REPLYCODE
        }
    };
    frame(cmd, &data)
}

/// The packet for a command: the MTA side, for tests and the benchmark's
/// load client.
pub fn encode_command(command: &Command) -> Vec<u8> {
    let mut d = Vec::new();
    let push = |d: &mut Vec<u8>, s: &str| {
        d.extend_from_slice(s.as_bytes());
        d.push(0);
    };
    let cmd = match command {
        Command::OptNeg { version, actions, protocol } => {
            for w in [version, actions, protocol] {
                d.extend_from_slice(&w.to_be_bytes());
            }
            SMFIC_OPTNEG
        }
        Command::Macro { stage, pairs } => {
            d.push(*stage);
            for (n, v) in pairs {
                push(&mut d, n);
                push(&mut d, v);
            }
            SMFIC_MACRO
        }
        Command::Connect { hostname, address } => {
            push(&mut d, hostname);
            match address {
                Some(a) => {
                    d.push(if a.contains(':') { b'6' } else { b'4' });
                    d.extend_from_slice(&25u16.to_be_bytes());
                    push(&mut d, a);
                }
                None => d.push(b'U'),
            }
            SMFIC_CONNECT
        }
        Command::Helo(h) => {
            push(&mut d, h);
            SMFIC_HELO
        }
        Command::Mail(args) | Command::Rcpt(args) => {
            for a in args {
                push(&mut d, a);
            }
            if matches!(command, Command::Mail(_)) {
                SMFIC_MAIL
            } else {
                SMFIC_RCPT
            }
        }
        Command::Data => SMFIC_DATA,
        Command::Header { name, value } => {
            push(&mut d, name);
            push(&mut d, value);
            SMFIC_HEADER
        }
        Command::EndOfHeaders => SMFIC_EOH,
        Command::Body(b) => {
            d.extend_from_slice(b);
            SMFIC_BODY
        }
        Command::EndOfBody(b) => {
            d.extend_from_slice(b);
            SMFIC_BODYEOB
        }
        Command::Abort => SMFIC_ABORT,
        Command::Quit => SMFIC_QUIT,
        Command::QuitNewConnection => SMFIC_QUIT_NC,
        Command::Unknown(b) => {
            d.extend_from_slice(b);
            SMFIC_UNKNOWN
        }
    };
    frame(cmd, &d)
}

/// Takes one reply off the front of `buf` (the MTA side).
pub fn decode_reply(buf: &mut Vec<u8>) -> Result<Option<Reply>, CodecError> {
    let Some(len) = complete_frame(buf)? else { return Ok(None) };
    let cmd = buf[4];
    let data = buf[5..4 + len].to_vec();
    buf.drain(..4 + len);
    let bad = |why| CodecError::Malformed { command: cmd as char, why };
    Ok(Some(match cmd {
        SMFIC_OPTNEG => {
            if data.len() < 12 {
                return Err(bad("shorter than three 32-bit words"));
            }
            let word = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            let mut macros = Vec::new();
            let mut rest = &data[12..];
            while rest.len() >= 4 {
                let stage = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let end = nul(&rest[4..]).ok_or_else(|| bad("unterminated symbol list"))?;
                macros.push((stage, text(&rest[4..4 + end])));
                rest = &rest[4 + end + 1..];
            }
            Reply::OptNeg { version: word(0), actions: word(4), protocol: word(8), macros }
        }
        SMFIR_CONTINUE => Reply::Continue,
        SMFIR_ACCEPT => Reply::Accept,
        SMFIR_REJECT => Reply::Reject,
        SMFIR_TEMPFAIL => Reply::Tempfail,
        SMFIR_REPLYCODE => Reply::ReplyCode(text(data.strip_suffix(&[0]).unwrap_or(&data))),
        other => return Err(CodecError::UnknownCommand(other)),
    }))
}

/// A packet: length, command, data.
pub fn frame(cmd: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + data.len());
    out.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
    out.push(cmd);
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

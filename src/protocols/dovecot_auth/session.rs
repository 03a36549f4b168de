//! One client connection's protocol state, without a socket.
//!
//! Takes decoded commands, returns what to do: send replies, ask the core
//! to authenticate, or close. The listener owns the stream; this owns the
//! rules (VERSION first, ids unique, `CONT` only for a pending request,
//! PLAIN and LOGIN exchanges). Protocol violations close the connection;
//! a bad request (bad base64, unknown mechanism) fails that request only.

use std::collections::HashMap;
use std::net::IpAddr;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::codec::{fail_code, AuthCommand, Command, Invalid, Reply, VERSION_MAJOR};
use crate::auth::{AuthDecision, AuthRequest, DecisionKind, Protocol};
use crate::config::auth::TempFailStyle;

pub const MECH_PLAIN: &str = "PLAIN";
pub const MECH_LOGIN: &str = "LOGIN";
/// Both send the password in clear (inside TLS): Postfix filters
/// mechanisms by these flags against `smtpd_sasl_security_options`.
pub const PARAM_PLAINTEXT: &str = "plaintext";
/// LOGIN's challenges: base64 of `Username:` and `Password:`.
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";
/// Requests waiting for a `CONT` on one connection (Postfix has one).
pub const MAX_PENDING: usize = 16;

const INVALID_BASE64_TEXT: &str = "Invalid base64 data in response";
const UNSUPPORTED_MECH_TEXT: &str = "Unsupported authentication mechanism";
const BAD_REQUEST_TEXT: &str = "Invalid request";

/// Base64 as Postfix validates it, tolerant of missing padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the listener must do next.
pub enum Step {
    Send(Reply),
    Authenticate { id: u32, request: AuthRequest },
    Close(&'static str),
    Nothing,
}

enum Pending {
    /// PLAIN without initial response: waiting for the whole blob.
    Plain,
    LoginUsername,
    LoginPassword {
        username: String,
    },
}

struct Request {
    client: Option<IpAddr>,
    state: Pending,
}

pub struct Session {
    version_seen: bool,
    pending: HashMap<u32, Request>,
    temp_fail: TempFailStyle,
}

impl Session {
    pub fn new(temp_fail: TempFailStyle) -> Self {
        Self { version_seen: false, pending: HashMap::new(), temp_fail }
    }

    /// The server's half of the handshake, sent at connect without
    /// waiting (as Dovecot does). MECH lines precede SPID: Exim aborts
    /// with "socket type mismatch" otherwise.
    pub fn handshake(spid: u32, cuid: u32, cookie: [u8; 16]) -> Vec<Reply> {
        vec![
            Reply::Version,
            Reply::Mech { name: MECH_PLAIN, params: &[PARAM_PLAINTEXT] },
            Reply::Mech { name: MECH_LOGIN, params: &[PARAM_PLAINTEXT] },
            Reply::Spid(spid),
            Reply::Cuid(cuid),
            Reply::Cookie(cookie),
            Reply::Done,
        ]
    }

    pub fn handle(&mut self, command: Command) -> Step {
        match command {
            Command::Version { major, .. } => {
                if self.version_seen {
                    Step::Close("VERSION sent twice")
                } else if major != VERSION_MAJOR {
                    Step::Close("client speaks another major version")
                } else {
                    self.version_seen = true;
                    Step::Nothing
                }
            }
            _ if !self.version_seen => Step::Close("command before VERSION"),
            Command::Cpid(_) => Step::Nothing,
            Command::Auth(auth) => self.auth(auth),
            Command::Cont { id, data } => self.cont(id, &data),
        }
    }

    /// A complete line the codec could not read.
    pub fn invalid(&mut self, id: Option<u32>, why: Invalid) -> Step {
        match id {
            // An AUTH with a readable id: fail it, keep the connection.
            Some(id) if self.version_seen && why != Invalid::BadId => {
                self.pending.remove(&id);
                Step::Send(fail(id, None, BAD_REQUEST_TEXT))
            }
            _ => Step::Close("unreadable line"),
        }
    }

    /// The reply for a decided request.
    pub fn finish(&mut self, id: u32, typed_login: &str, decision: &AuthDecision) -> Step {
        let echoed =
            (!typed_login.is_empty() && !typed_login.chars().any(char::is_control)).then(|| typed_login.to_owned());
        let text = Some(decision.reply_text.clone());
        let reply = match decision.kind {
            DecisionKind::Accepted => match &decision.login {
                Some(login) => Reply::Ok { id, user: login.as_str().to_owned() },
                None => Reply::Fail { id, user: echoed, code: None, reason: text },
            },
            DecisionKind::Refused => Reply::Fail { id, user: echoed, code: None, reason: text },
            DecisionKind::PasswordExpired => {
                Reply::Fail { id, user: echoed, code: Some(fail_code::PASS_EXPIRED), reason: text }
            }
            DecisionKind::Disabled => {
                Reply::Fail { id, user: echoed, code: Some(fail_code::USER_DISABLED), reason: text }
            }
            DecisionKind::AuthzRefused => {
                Reply::Fail { id, user: echoed, code: Some(fail_code::AUTHZ_FAIL), reason: text }
            }
            DecisionKind::Temporary => match self.temp_fail {
                // Postfix and Exim treat every FAIL as final (535); only a
                // lost connection makes them answer 454 / 435.
                TempFailStyle::Disconnect => return Step::Close("temporary failure"),
                TempFailStyle::FailCode => {
                    Reply::Fail { id, user: echoed, code: Some(fail_code::TEMP_FAIL), reason: text }
                }
            },
        };
        Step::Send(reply)
    }

    fn auth(&mut self, auth: AuthCommand) -> Step {
        if self.pending.contains_key(&auth.id) {
            return Step::Close("request id reused while pending");
        }
        if auth.service.is_none() {
            return Step::Send(fail(auth.id, None, BAD_REQUEST_TEXT));
        }
        let client = auth.remote_ip;
        match (auth.mechanism.as_str(), auth.response) {
            (MECH_PLAIN, Some(resp)) => self.plain(auth.id, client, &resp),
            (MECH_PLAIN, None) => self.wait(auth.id, client, Pending::Plain, String::new()),
            (MECH_LOGIN, None) => self.wait(auth.id, client, Pending::LoginUsername, LOGIN_USERNAME_CHALLENGE.into()),
            (MECH_LOGIN, Some(resp)) => match decode_text(&resp) {
                Some(username) => self.wait(
                    auth.id,
                    client,
                    Pending::LoginPassword { username: username.to_string() },
                    LOGIN_PASSWORD_CHALLENGE.into(),
                ),
                None => Step::Send(invalid_base64(auth.id)),
            },
            _ => Step::Send(fail(auth.id, None, UNSUPPORTED_MECH_TEXT)),
        }
    }

    fn wait(&mut self, id: u32, client: Option<IpAddr>, state: Pending, challenge: String) -> Step {
        if self.pending.len() >= MAX_PENDING {
            return Step::Close("too many pending requests");
        }
        self.pending.insert(id, Request { client, state });
        Step::Send(Reply::Cont { id, data: challenge })
    }

    fn cont(&mut self, id: u32, data: &str) -> Step {
        let Some(request) = self.pending.remove(&id) else {
            return Step::Close("CONT for no pending request");
        };
        match request.state {
            Pending::Plain => self.plain(id, request.client, data),
            Pending::LoginUsername => match decode_text(data) {
                Some(username) => self.wait(
                    id,
                    request.client,
                    Pending::LoginPassword { username: username.to_string() },
                    LOGIN_PASSWORD_CHALLENGE.into(),
                ),
                None => Step::Send(invalid_base64(id)),
            },
            Pending::LoginPassword { username } => match decode_text(data) {
                Some(password) => authenticate(id, request.client, username, None, &password),
                None => Step::Send(invalid_base64(id)),
            },
        }
    }

    fn plain(&mut self, id: u32, client: Option<IpAddr>, b64: &str) -> Step {
        let Some(blob) = decode(b64) else {
            return Step::Send(invalid_base64(id));
        };
        // authzid NUL authcid NUL password (RFC 4616). Anything else goes
        // to the core as an empty login: refused, delayed and audited like
        // any other bad attempt.
        let mut parts = blob.split(|&b| b == 0);
        let (authzid, authcid, password) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(z), Some(c), Some(p), None) => (z, c, p),
            _ => (&[][..], &[][..], &[][..]),
        };
        let (Ok(authzid), Ok(authcid), Ok(password)) =
            (std::str::from_utf8(authzid), std::str::from_utf8(authcid), std::str::from_utf8(password))
        else {
            return authenticate(id, client, String::new(), None, "");
        };
        let authzid = (!authzid.is_empty()).then(|| authzid.to_owned());
        authenticate(id, client, authcid.to_owned(), authzid, password)
    }
}

fn authenticate(id: u32, client: Option<IpAddr>, login: String, authzid: Option<String>, password: &str) -> Step {
    let request = AuthRequest {
        login,
        authzid,
        password: SecretString::from(password.to_owned()),
        client,
        protocol: Protocol::DovecotAuth,
    };
    Step::Authenticate { id, request }
}

fn decode(b64: &str) -> Option<Zeroizing<Vec<u8>>> {
    BASE64.decode(b64.as_bytes()).ok().map(Zeroizing::new)
}

/// A LOGIN field: base64 of UTF-8 text.
fn decode_text(b64: &str) -> Option<Zeroizing<String>> {
    let bytes = decode(b64)?;
    std::str::from_utf8(&bytes).ok().map(|s| Zeroizing::new(s.to_owned()))
}

fn fail(id: u32, code: Option<&'static str>, reason: &str) -> Reply {
    Reply::Fail { id, user: None, code, reason: Some(reason.to_owned()) }
}

fn invalid_base64(id: u32) -> Reply {
    fail(id, Some(fail_code::INVALID_BASE64), INVALID_BASE64_TEXT)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

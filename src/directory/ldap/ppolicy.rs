//! OpenLDAP's password policy (slapo-ppolicy, draft-behera-ldap-password-policy):
//! account state from the user's operational attributes, policy entries,
//! and the ppolicy response control on binds.
//!
//! Everything here is pure: values in, state out, `now` is an argument.
//! Nothing here may panic on what a server sends: GeneralizedTime and the
//! control's BER are parsed by hand and every malformed input is `None` or
//! an error value.
//!
//! Wire trace of a bind to an expired account (control value only):
//!
//! ```text
//! C: BindRequest … controls: 1.3.6.1.4.1.42.2.27.8.5.1 (no value)
//! S: BindResponse invalidCredentials (49)
//!    control 1.3.6.1.4.1.42.2.27.8.5.1 value 30 03 81 01 00
//!            SEQUENCE { error [1] passwordExpired(0) }
//! ```
//!
//! A disabled account is mailwarrant's own attribute
//! `mailwarrantAccountDisabled: TRUE` (schemas/ldap/mailwarrant.schema),
//! or ppolicy's administrative lock `pwdAccountLockedTime: 000001010000Z`.

use std::time::Duration;

use time::OffsetDateTime;

use crate::directory::generalized_time;
use crate::identity::AccountState;

/// OID of the password policy request and response control.
pub const PPOLICY_CONTROL_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";

/// ppolicy's "locked by an administrator, forever" value of `pwdAccountLockedTime`.
pub const ADMIN_LOCK_TIME: &str = "000001010000Z";

/// User attributes this module reads.
pub const PWD_CHANGED_TIME: &str = "pwdChangedTime";
pub const PWD_ACCOUNT_LOCKED_TIME: &str = "pwdAccountLockedTime";
pub const PWD_RESET: &str = "pwdReset";
pub const PWD_POLICY_SUBENTRY: &str = "pwdPolicySubentry";
pub const ACCOUNT_DISABLED: &str = "mailwarrantAccountDisabled";

/// Policy entry attributes this module reads.
pub const POLICY_ATTRIBUTES: [&str; 5] =
    ["pwdMaxAge", "pwdExpireWarning", "pwdGraceAuthNLimit", "pwdLockoutDuration", "pwdMustChange"];

/// The parts of a `pwdPolicy` entry that decide account state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyEntry {
    /// `pwdMaxAge`; `None` (or 0) means passwords never expire.
    pub max_age: Option<Duration>,
    /// `pwdExpireWarning`.
    pub expire_warning: Option<Duration>,
    /// `pwdGraceAuthNLimit`: binds still allowed after expiry.
    pub grace_logins: u32,
    /// `pwdLockoutDuration`; `None` (0) means until an administrator unlocks.
    pub lockout_duration: Option<Duration>,
    /// `pwdMustChange`: whether `pwdReset` forces a change.
    pub must_change: bool,
}

impl PolicyEntry {
    /// Reads a policy entry; `get` returns an attribute's first value.
    pub fn from_attributes<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        let seconds = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok()).filter(|s| *s > 0);
        Self {
            max_age: seconds("pwdMaxAge").map(Duration::from_secs),
            expire_warning: seconds("pwdExpireWarning").map(Duration::from_secs),
            grace_logins: seconds("pwdGraceAuthNLimit").map_or(0, |n| n.min(u64::from(u32::MAX)) as u32),
            lockout_duration: seconds("pwdLockoutDuration").map(Duration::from_secs),
            must_change: get("pwdMustChange").is_some_and(is_true),
        }
    }
}

/// The user's operational attributes, as read.
#[derive(Clone, Debug, Default)]
pub struct UserPasswordAttributes<'a> {
    pub changed_time: Option<&'a str>,
    pub locked_time: Option<&'a str>,
    pub reset: Option<&'a str>,
    pub disabled: Option<&'a str>,
}

/// Account state as ppolicy will judge the next bind.
pub fn account_state(
    user: &UserPasswordAttributes<'_>,
    policy: Option<&PolicyEntry>,
    now: OffsetDateTime,
) -> AccountState {
    let admin_locked = user.locked_time.is_some_and(|t| t.trim() == ADMIN_LOCK_TIME);
    let disabled = user.disabled.is_some_and(is_true) || admin_locked;
    let locked = !admin_locked
        && user.locked_time.is_some_and(|t| {
            match (generalized_time::parse(t), policy.and_then(|p| p.lockout_duration)) {
                (Some(at), Some(duration)) => now < at + duration,
                // No duration: locked until an administrator unlocks. An
                // unreadable time still means "locked": fail closed.
                _ => true,
            }
        });
    let password_changed_at = user.changed_time.and_then(generalized_time::parse);
    let password_expires_at = match (password_changed_at, policy.and_then(|p| p.max_age)) {
        (Some(changed), Some(max_age)) => Some(changed + max_age),
        _ => None,
    };
    let must_change = user.reset.is_some_and(is_true) && policy.is_none_or(|p| p.must_change);
    AccountState { enabled: !disabled, locked, password_changed_at, password_expires_at, must_change }
}

fn is_true(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("TRUE")
}

/// Why ppolicy refused or restricted a bind (the control's `error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PpolicyError {
    PasswordExpired,
    AccountLocked,
    ChangeAfterReset,
    PasswordModNotAllowed,
    MustSupplyOldPassword,
    InsufficientPasswordQuality,
    PasswordTooShort,
    PasswordTooYoung,
    PasswordInHistory,
    PasswordTooLong,
    /// A value this code does not know.
    Other(u32),
}

impl PpolicyError {
    fn from_code(code: u32) -> Self {
        match code {
            0 => Self::PasswordExpired,
            1 => Self::AccountLocked,
            2 => Self::ChangeAfterReset,
            3 => Self::PasswordModNotAllowed,
            4 => Self::MustSupplyOldPassword,
            5 => Self::InsufficientPasswordQuality,
            6 => Self::PasswordTooShort,
            7 => Self::PasswordTooYoung,
            8 => Self::PasswordInHistory,
            9 => Self::PasswordTooLong,
            other => Self::Other(other),
        }
    }
}

/// The decoded response control.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpolicyResponse {
    /// `warning.timeBeforeExpiration`, seconds.
    pub time_before_expiration: Option<u64>,
    /// `warning.graceAuthNsRemaining`.
    pub grace_logins_remaining: Option<u32>,
    pub error: Option<PpolicyError>,
}

/// The control value is not the BER the draft specifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed password policy response control")]
pub struct MalformedControl;

const TAG_SEQUENCE: u8 = 0x30;
/// `warning [0]`, constructed (it wraps a CHOICE).
const TAG_WARNING: u8 = 0xa0;
/// `timeBeforeExpiration [0]` inside `warning`.
const TAG_TIME_BEFORE_EXPIRATION: u8 = 0x80;
/// `graceAuthNsRemaining [1]` inside `warning`.
const TAG_GRACE_REMAINING: u8 = 0x81;
/// `error [1]`, an implicitly tagged ENUMERATED.
const TAG_ERROR: u8 = 0x81;

/// Decodes `PasswordPolicyResponseValue`:
///
/// ```text
/// SEQUENCE {
///   warning [0] CHOICE { timeBeforeExpiration [0] INTEGER,
///                        graceAuthNsRemaining [1] INTEGER } OPTIONAL,
///   error   [1] ENUMERATED { passwordExpired(0), accountLocked(1), … } OPTIONAL }
/// ```
pub fn decode_response(value: &[u8]) -> Result<PpolicyResponse, MalformedControl> {
    let (tag, body, rest) = read_tlv(value)?;
    if tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(MalformedControl);
    }
    let mut out = PpolicyResponse::default();
    let mut body = body;
    while !body.is_empty() {
        let (tag, content, rest) = read_tlv(body)?;
        match tag {
            TAG_WARNING => {
                let (inner_tag, inner, tail) = read_tlv(content)?;
                if !tail.is_empty() {
                    return Err(MalformedControl);
                }
                let n = read_unsigned(inner)?;
                match inner_tag {
                    TAG_TIME_BEFORE_EXPIRATION => out.time_before_expiration = Some(n),
                    TAG_GRACE_REMAINING => out.grace_logins_remaining = Some(n.min(u64::from(u32::MAX)) as u32),
                    _ => return Err(MalformedControl),
                }
            }
            TAG_ERROR => {
                let n = read_unsigned(content)?;
                out.error = Some(PpolicyError::from_code(n.min(u64::from(u32::MAX)) as u32));
            }
            _ => return Err(MalformedControl),
        }
        body = rest;
    }
    Ok(out)
}

/// One tag-length-value: (tag, content, what follows). Single-byte tags
/// only (all the draft uses); definite lengths only (DER/BER as LDAP
/// requires, RFC 4511 §5.1).
fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), MalformedControl> {
    let (&tag, rest) = input.split_first().ok_or(MalformedControl)?;
    if tag & 0x1f == 0x1f {
        return Err(MalformedControl);
    }
    let (&first, mut rest) = rest.split_first().ok_or(MalformedControl)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(MalformedControl);
        }
        let len = rest[..count].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return Err(MalformedControl);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// A non-negative INTEGER/ENUMERATED content of at most 8 value bytes.
fn read_unsigned(content: &[u8]) -> Result<u64, MalformedControl> {
    let content = match content {
        [0, rest @ ..] if !rest.is_empty() => rest,
        [first, ..] if first & 0x80 != 0 => return Err(MalformedControl),
        [] => return Err(MalformedControl),
        c => c,
    };
    if content.len() > 8 {
        return Err(MalformedControl);
    }
    Ok(content.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    proptest! {
        #[test]
        fn control_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_response(&bytes);
        }
    }

    fn check_control(bytes: &[u8], expected: Result<PpolicyResponse, MalformedControl>) {
        assert_eq!(decode_response(bytes), expected, "{bytes:02x?}");
    }

    #[test]
    fn control_values() {
        let ok = |t, g, e| Ok(PpolicyResponse { time_before_expiration: t, grace_logins_remaining: g, error: e });
        check_control(&[0x30, 0x00], ok(None, None, None));
        check_control(&[0x30, 0x03, 0x81, 0x01, 0x00], ok(None, None, Some(PpolicyError::PasswordExpired)));
        check_control(&[0x30, 0x03, 0x81, 0x01, 0x01], ok(None, None, Some(PpolicyError::AccountLocked)));
        check_control(&[0x30, 0x03, 0x81, 0x01, 0x02], ok(None, None, Some(PpolicyError::ChangeAfterReset)));
        check_control(&[0x30, 0x06, 0xa0, 0x04, 0x80, 0x02, 0x0e, 0x10], ok(Some(3600), None, None));
        check_control(&[0x30, 0x05, 0xa0, 0x03, 0x81, 0x01, 0x02], ok(None, Some(2), None));
        check_control(
            &[0x30, 0x08, 0xa0, 0x03, 0x81, 0x01, 0x00, 0x81, 0x01, 0x00],
            ok(None, Some(0), Some(PpolicyError::PasswordExpired)),
        );
        check_control(&[0x30, 0x81, 0x03, 0x81, 0x01, 0x63], ok(None, None, Some(PpolicyError::Other(99))));
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x81, 0x01, 0x00],
            &[0x31, 0x00],
            &[0x30, 0x00, 0x00],
            &[0x30, 0x03, 0x82, 0x01, 0x00],
            &[0x30, 0x03, 0x81, 0x01, 0xff],
            &[0x30, 0x02, 0x81, 0x00],
            &[0x30, 0x85, 0x00, 0x00, 0x00, 0x00, 0x00],
            &[0x30, 0x04, 0xa0, 0x02, 0x82, 0x00],
        ] {
            check_control(bad, Err(MalformedControl));
        }
    }

    #[test]
    fn account_states() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let policy = PolicyEntry {
            max_age: Some(Duration::from_secs(90 * 86_400)),
            lockout_duration: None,
            must_change: true,
            ..Default::default()
        };
        let state = |user: UserPasswordAttributes<'_>, policy: Option<&PolicyEntry>| account_state(&user, policy, now);

        let active = state(
            UserPasswordAttributes { changed_time: Some("20261101000000Z"), ..Default::default() },
            Some(&policy),
        );
        assert_eq!(active.status(now), crate::identity::AccountStatus::Active);
        assert_eq!(active.password_expires_at, Some(datetime!(2027-01-30 00:00 UTC)));

        let expired = state(
            UserPasswordAttributes { changed_time: Some("20200101000000Z"), ..Default::default() },
            Some(&policy),
        );
        assert_eq!(expired.status(now), crate::identity::AccountStatus::PasswordExpired);

        let no_policy =
            state(UserPasswordAttributes { changed_time: Some("20200101000000Z"), ..Default::default() }, None);
        assert_eq!(no_policy.password_expires_at, None);

        let locked =
            state(UserPasswordAttributes { locked_time: Some("20261127110000Z"), ..Default::default() }, Some(&policy));
        assert!(locked.locked && locked.enabled);

        let timed = PolicyEntry { lockout_duration: Some(Duration::from_secs(900)), ..policy.clone() };
        let unlocked =
            state(UserPasswordAttributes { locked_time: Some("20261127110000Z"), ..Default::default() }, Some(&timed));
        assert!(!unlocked.locked);

        let admin =
            state(UserPasswordAttributes { locked_time: Some(ADMIN_LOCK_TIME), ..Default::default() }, Some(&timed));
        assert!(!admin.enabled);

        let disabled = state(UserPasswordAttributes { disabled: Some("TRUE"), ..Default::default() }, None);
        assert_eq!(disabled.status(now), crate::identity::AccountStatus::Disabled);

        let reset = state(UserPasswordAttributes { reset: Some("TRUE"), ..Default::default() }, Some(&policy));
        assert!(reset.must_change);
        let no_must = PolicyEntry { must_change: false, ..policy };
        assert!(
            !state(UserPasswordAttributes { reset: Some("TRUE"), ..Default::default() }, Some(&no_must)).must_change
        );
    }

    #[test]
    fn policy_entries() {
        let attrs = [
            ("pwdMaxAge", "7776000"),
            ("pwdGraceAuthNLimit", "3"),
            ("pwdLockoutDuration", "0"),
            ("pwdMustChange", "TRUE"),
        ];
        let p = PolicyEntry::from_attributes(|n| attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v));
        assert_eq!(p.max_age, Some(Duration::from_secs(7_776_000)));
        assert_eq!(p.grace_logins, 3);
        assert_eq!(p.lockout_duration, None);
        assert!(p.must_change);
    }
}

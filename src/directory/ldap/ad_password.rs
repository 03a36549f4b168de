//! Password change on Active Directory (MS-ADTS 3.1.1.3.1.5.1): one LDAP
//! Modify that deletes the old and adds the new `unicodePwd`, bound as the
//! user, over TLS. AD then checks the old password itself and applies its
//! own history, length, complexity and minimum age (default domain policy
//! or the fine-grained one for the user), and says which in the refusal.
//!
//! ```text
//! C: BindRequest(dn=CN=Alice Smith,OU=people,…, simple=<current>)     (over LDAPS/StartTLS)
//! S: BindResponse(success)
//! C: ModifyRequest(CN=Alice Smith,…, delete unicodePwd "\"<current>\"" UTF-16LE,
//!                                     add    unicodePwd "\"<new>\""     UTF-16LE)
//! S: ModifyResponse(success | constraintViolation
//!    "0000052D: Constraint violation - check_password_restrictions: the password is too short…")
//! ```
//!
//! Expired (`data 532`) and must-change (`data 773`) users cannot bind,
//! so they cannot change their own password this way. AD only reports
//! those sub-codes for a *right* password, so the old password is proven;
//! then, when the caller allows it, the service account *resets* the
//! password on the same connection with the password-policy-hints control
//! (LDAP_SERVER_POLICY_HINTS_OID, 1.2.840.113556.1.4.2239, value
//! `SEQUENCE { INTEGER 1 }`, sent critical): the DC then enforces history
//! and the other password policies on the reset as on a change, so the
//! service path cannot be used to reuse an old password. The service
//! account needs the Reset Password right on the users (and, to clear
//! must-change, write access to `pwdLastSet`). A DC without the control
//! (older than Windows Server 2016, or Samba) refuses the critical control:
//! answered with `unavailableCriticalExtension` (nothing is written), and
//! the change then goes the second way, which also keeps history: the
//! service account sets `pwdLastSet = 0` then `-1` (now), so the proven old password is
//! valid again, the user binds and changes it as above, and on any refusal
//! `pwdLastSet = 0` is written back (see [`unexpire_then_change`]). That
//! path needs the service account to write `pwdLastSet`; Samba 4.17 (the
//! test DC) takes it, Windows takes the first.
//!
//! Must not: send a password without TLS (refused here before connecting),
//! or log one.

use std::collections::HashSet;
use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapResult, Mod};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::timeout;

use super::ad_account::{self, STRONGER_AUTH_REQUIRED};
use super::pool::{operation_error, rc};
use super::LdapDirectory;
use crate::config::directory::TlsMode;
use crate::directory::{BindOutcome, ChangeOutcome, ChangeRefusal, DirectoryError, RejectReason, Result};
use crate::identity::Identity;

/// LDAP_SERVER_POLICY_HINTS_OID: apply password policy to a reset.
pub const POLICY_HINTS_OID: &str = "1.2.840.113556.1.4.2239";
/// Its value: `SEQUENCE { Flags INTEGER (1 = enforce) }`, BER.
pub const POLICY_HINTS_ENFORCE: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x01];
/// The password attribute; write-only, never returned by a search.
pub const UNICODE_PWD: &str = "unicodePwd";
const PWD_LAST_SET: &str = "pwdLastSet";
/// `pwdLastSet = -1`: "now", which makes the current password valid again.
const PWD_LAST_SET_NOW: &str = "-1";
/// `pwdLastSet = 0`: must change at next logon.
const PWD_LAST_SET_MUST_CHANGE: &str = "0";

/// LDAP result codes of a refused write (RFC 4511).
const CONSTRAINT_VIOLATION: u32 = 19;
const UNAVAILABLE_CRITICAL_EXTENSION: u32 = 12;
const INSUFFICIENT_ACCESS_RIGHTS: u32 = 50;
const UNWILLING_TO_PERFORM: u32 = 53;

/// Win32 codes at the start of AD's diagnostic text.
const ERROR_INVALID_PASSWORD: &str = "00000056";
const ERROR_PASSWORD_RESTRICTION: &str = "0000052D";

/// Why AD (or this code, before asking) refused a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdChangeRefusal {
    /// The current password is wrong.
    InvalidCredentials,
    /// An empty current or new password; never sent.
    EmptyPassword,
    AccountLocked,
    AccountDisabled,
    /// Shorter than the domain's minimum length.
    TooShort,
    /// The domain's complexity rule (three of four character classes, no
    /// account name inside).
    NotComplex,
    /// In the password history.
    InHistory,
    /// Changed too recently (minimum password age).
    TooYoung,
    /// Refused by policy without saying which rule (Windows DCs say only
    /// `0000052D`).
    Policy,
    /// The account may not change its password (or the service account may
    /// not reset it).
    NotAllowed,
    /// Expired or must-change, and the service-account path is not allowed.
    Expired,
}

impl AdChangeRefusal {
    /// What the user reads. A wrong current password stays generic.
    pub fn user_message(self) -> &'static str {
        match self {
            Self::InvalidCredentials | Self::EmptyPassword => "The login or the current password is not right.",
            Self::AccountLocked => "The account is locked; try again later or ask the helpdesk.",
            Self::AccountDisabled => "The account is disabled; ask the helpdesk.",
            Self::TooShort => "The domain refused the new password: it is too short.",
            Self::NotComplex => {
                "The domain refused the new password: use three of upper case, lower case, digits and symbols, and \
                 not your name or login."
            }
            Self::InHistory => "The domain refused the new password: it was used before.",
            Self::TooYoung => "The password was changed too recently; try again later.",
            Self::Policy => {
                "The domain refused the new password (length, complexity, history or minimum age); choose another."
            }
            Self::NotAllowed => "The domain does not allow this account to change its password here.",
            Self::Expired => "The password has expired; ask the helpdesk to reset it.",
        }
    }
}

/// The result of an AD password change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdChangeOutcome {
    Changed,
    Refused(AdChangeRefusal),
}

impl From<AdChangeRefusal> for ChangeRefusal {
    /// The directory-neutral refusal the change flow shows. AD's
    /// complexity rule and its unspecified policy refusal both read as
    /// "too weak"; `AdChangeRefusal::user_message` says more.
    fn from(r: AdChangeRefusal) -> Self {
        match r {
            AdChangeRefusal::InvalidCredentials => ChangeRefusal::InvalidCredentials,
            AdChangeRefusal::EmptyPassword => ChangeRefusal::EmptyPassword,
            AdChangeRefusal::AccountLocked => ChangeRefusal::AccountLocked,
            AdChangeRefusal::AccountDisabled => ChangeRefusal::AccountDisabled,
            AdChangeRefusal::TooShort => ChangeRefusal::TooShort,
            AdChangeRefusal::NotComplex | AdChangeRefusal::Policy => ChangeRefusal::InsufficientQuality,
            AdChangeRefusal::InHistory => ChangeRefusal::InHistory,
            AdChangeRefusal::TooYoung => ChangeRefusal::TooYoung,
            AdChangeRefusal::NotAllowed => ChangeRefusal::NotAllowed,
            AdChangeRefusal::Expired => ChangeRefusal::Expired,
        }
    }
}

impl From<AdChangeOutcome> for ChangeOutcome {
    fn from(o: AdChangeOutcome) -> Self {
        match o {
            AdChangeOutcome::Changed => ChangeOutcome::Changed,
            AdChangeOutcome::Refused(r) => ChangeOutcome::Refused(r.into()),
        }
    }
}

/// `"password"` (with the quotes) as UTF-16LE: the only form AD accepts.
pub fn encode_unicode_pwd(password: &str) -> Vec<u8> {
    let quoted = format!("\"{password}\"");
    let out = quoted.encode_utf16().flat_map(u16::to_le_bytes).collect();
    zeroize::Zeroize::zeroize(&mut quoted.into_bytes());
    out
}

/// The verdict on AD's answer to the password write.
pub fn modify_outcome(code: u32, text: &str) -> Result<AdChangeOutcome> {
    use AdChangeRefusal::*;
    let lower = text.to_ascii_lowercase();
    let refusal = match code {
        rc::SUCCESS => return Ok(AdChangeOutcome::Changed),
        CONSTRAINT_VIOLATION if text.contains(ERROR_INVALID_PASSWORD) => InvalidCredentials,
        CONSTRAINT_VIOLATION | UNWILLING_TO_PERFORM if lower.contains("too short") => TooShort,
        CONSTRAINT_VIOLATION | UNWILLING_TO_PERFORM if lower.contains("complexity") => NotComplex,
        CONSTRAINT_VIOLATION | UNWILLING_TO_PERFORM if lower.contains("history") || lower.contains("already used") => {
            InHistory
        }
        CONSTRAINT_VIOLATION | UNWILLING_TO_PERFORM
            if lower.contains("too young")
                || lower.contains("too recently")
                || lower.contains("minimum password age") =>
        {
            TooYoung
        }
        CONSTRAINT_VIOLATION => Policy,
        UNWILLING_TO_PERFORM if text.contains(ERROR_PASSWORD_RESTRICTION) => Policy,
        INSUFFICIENT_ACCESS_RIGHTS | UNWILLING_TO_PERFORM => NotAllowed,
        STRONGER_AUTH_REQUIRED => {
            return Err(DirectoryError::Protocol(
                "the domain controller writes passwords only over TLS: use ldaps:// or tls = \"starttls\"".into(),
            ))
        }
        UNAVAILABLE_CRITICAL_EXTENSION => {
            return Err(DirectoryError::Protocol(format!(
                "the domain controller does not support the password-policy-hints control ({POLICY_HINTS_OID}), so \
                 expired and must-change users cannot change their password here (Windows Server 2016 or later \
                 has it): {text}"
            )))
        }
        other => {
            return Err(DirectoryError::Protocol(format!("password write failed with result code {other}: {text}")))
        }
    };
    Ok(AdChangeOutcome::Refused(refusal))
}

/// Changes `identity`'s password as the user; expired and must-change
/// users through the service account when `expired_via_service_account`.
pub(super) async fn change_password(
    dir: &LdapDirectory,
    identity: &Identity,
    current: &SecretString,
    new: &SecretString,
    expired_via_service_account: bool,
) -> Result<AdChangeOutcome> {
    if current.expose_secret().is_empty() || new.expose_secret().is_empty() {
        return Ok(AdChangeOutcome::Refused(AdChangeRefusal::EmptyPassword));
    }
    if identity.dn.trim().is_empty() {
        return Ok(AdChangeOutcome::Refused(AdChangeRefusal::InvalidCredentials));
    }
    let s = &dir.settings;
    if s.tls == TlsMode::None && !s.urls.iter().all(|u| u.starts_with("ldaps://")) {
        return Err(DirectoryError::Protocol(
            "Active Directory accepts password writes only over TLS: use ldaps:// or tls = \"starttls\"".into(),
        ));
    }
    let (mut ldap, deadline) = dir.binds.dedicated().await?;
    let outcome = run(dir, &mut ldap, deadline, identity, current, new, expired_via_service_account).await;
    let _ = timeout(deadline, ldap.unbind()).await;
    outcome
}

async fn run(
    dir: &LdapDirectory,
    ldap: &mut Ldap,
    deadline: Duration,
    identity: &Identity,
    current: &SecretString,
    new: &SecretString,
    expired_via_service_account: bool,
) -> Result<AdChangeOutcome> {
    use AdChangeRefusal::*;
    let bound = bind(ldap, deadline, &identity.dn, current).await?;
    let reason = match ad_account::bind_outcome(bound.rc, &bound.text, &identity.account)? {
        BindOutcome::Accepted { .. } => None,
        BindOutcome::Rejected(r) => Some(r),
    };
    match reason {
        None => {
            let result = change_as_user(ldap, deadline, &identity.dn, current, new).await?;
            tracing::debug!(dn = %identity.dn, code = result.rc, "password change as the user (active directory)");
            return modify_outcome(result.rc, &result.text);
        }
        Some(RejectReason::PasswordExpired | RejectReason::MustChangePassword) if expired_via_service_account => {}
        Some(RejectReason::PasswordExpired | RejectReason::MustChangePassword) => {
            return Ok(AdChangeOutcome::Refused(Expired))
        }
        Some(RejectReason::AccountLocked) => return Ok(AdChangeOutcome::Refused(AccountLocked)),
        Some(RejectReason::AccountDisabled) => return Ok(AdChangeOutcome::Refused(AccountDisabled)),
        Some(RejectReason::InvalidCredentials | RejectReason::EmptyPassword) => {
            return Ok(AdChangeOutcome::Refused(InvalidCredentials))
        }
    }
    // The old password is proven (AD says 532/773 only for a right one):
    // the service account resets it, with policy enforced by the hints control.
    bind_service(dir, ldap, deadline).await?;
    let mods =
        vec![Mod::Replace(UNICODE_PWD.as_bytes().to_vec(), HashSet::from([encode_unicode_pwd(new.expose_secret())]))];
    let hints = RawControl { ctype: POLICY_HINTS_OID.to_owned(), crit: true, val: Some(POLICY_HINTS_ENFORCE.to_vec()) };
    let result = modify(ldap, deadline, &identity.dn, mods, vec![hints]).await?;
    tracing::debug!(dn = %identity.dn, code = result.rc, "password reset with policy hints (active directory)");
    if result.rc != UNAVAILABLE_CRITICAL_EXTENSION {
        return modify_outcome(result.rc, &result.text);
    }
    unexpire_then_change(dir, ldap, deadline, identity, current, new).await
}

/// For a DC without the policy-hints control (Samba 4.17 has none): the
/// service account sets `pwdLastSet = 0` then `-1` ("now"), which makes the proven
/// old password usable again; the user then binds and changes it as usual,
/// so the DC applies history and every other rule to the new password. If
/// that fails, `pwdLastSet = 0` puts the account back to "must change":
/// the old password never becomes usable for anything else.
async fn unexpire_then_change(
    dir: &LdapDirectory,
    ldap: &mut Ldap,
    deadline: Duration,
    identity: &Identity,
    current: &SecretString,
    new: &SecretString,
) -> Result<AdChangeOutcome> {
    let set_last =
        |value: &str| vec![Mod::Replace(PWD_LAST_SET.as_bytes().to_vec(), HashSet::from([value.as_bytes().to_vec()]))];
    // -1 only takes effect on 0 (a nonzero pwdLastSet stays as it is), so
    // 0 first, in a modify of its own.
    for value in [PWD_LAST_SET_MUST_CHANGE, PWD_LAST_SET_NOW] {
        let written = modify(ldap, deadline, &identity.dn, set_last(value), Vec::new()).await?;
        tracing::debug!(dn = %identity.dn, code = written.rc, value, "no policy hints: pwdLastSet before the user's change");
        if written.rc != rc::SUCCESS {
            return modify_outcome(written.rc, &written.text);
        }
    }
    let bound = bind(ldap, deadline, &identity.dn, current).await?;
    let changed = if bound.rc == rc::SUCCESS {
        Some(change_as_user(ldap, deadline, &identity.dn, current, new).await?)
    } else {
        None
    };
    if let Some(result) = changed.as_ref().filter(|r| r.rc == rc::SUCCESS) {
        tracing::debug!(dn = %identity.dn, code = result.rc, "password change as the user after pwdLastSet = -1");
        return Ok(AdChangeOutcome::Changed);
    }
    bind_service(dir, ldap, deadline).await?;
    let restored = modify(ldap, deadline, &identity.dn, set_last(PWD_LAST_SET_MUST_CHANGE), Vec::new()).await?;
    if restored.rc != rc::SUCCESS {
        tracing::error!(dn = %identity.dn, code = restored.rc, "could not put pwdLastSet back to 0 after a refused change");
    }
    match changed {
        Some(result) => modify_outcome(result.rc, &result.text),
        None => ad_account::bind_outcome(bound.rc, &bound.text, &identity.account)
            .map(|_| AdChangeOutcome::Refused(AdChangeRefusal::InvalidCredentials)),
    }
}

/// Delete the old, add the new `unicodePwd`, on a connection bound as the user.
async fn change_as_user(
    ldap: &mut Ldap,
    deadline: Duration,
    dn: &str,
    current: &SecretString,
    new: &SecretString,
) -> Result<LdapResult> {
    let mods = vec![
        Mod::Delete(UNICODE_PWD.as_bytes().to_vec(), HashSet::from([encode_unicode_pwd(current.expose_secret())])),
        Mod::Add(UNICODE_PWD.as_bytes().to_vec(), HashSet::from([encode_unicode_pwd(new.expose_secret())])),
    ];
    modify(ldap, deadline, dn, mods, Vec::new()).await
}

async fn bind_service(dir: &LdapDirectory, ldap: &mut Ldap, deadline: Duration) -> Result<()> {
    let service = bind(ldap, deadline, &dir.settings.bind_dn, &dir.settings.bind_password).await?;
    if service.rc == rc::SUCCESS {
        Ok(())
    } else {
        Err(DirectoryError::ServiceBind(super::pool::describe(&service)))
    }
}

async fn bind(ldap: &mut Ldap, deadline: Duration, dn: &str, password: &SecretString) -> Result<LdapResult> {
    let binding = ldap.with_timeout(deadline).simple_bind(dn, password.expose_secret());
    match timeout(deadline, binding).await {
        Err(_) => Err(DirectoryError::Timeout(deadline)),
        Ok(Err(e)) => Err(operation_error(e, deadline)),
        Ok(Ok(r)) => Ok(r),
    }
}

async fn modify(
    ldap: &mut Ldap,
    deadline: Duration,
    dn: &str,
    mods: Vec<Mod<Vec<u8>>>,
    controls: Vec<RawControl>,
) -> Result<LdapResult> {
    let writing = ldap.with_controls(controls).with_timeout(deadline).modify(dn, mods);
    match timeout(deadline, writing).await {
        Err(_) => Err(DirectoryError::Timeout(deadline)),
        Ok(Err(e)) => Err(operation_error(e, deadline)),
        Ok(Ok(r)) => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMBA: &str = "0000052D: Constraint violation - check_password_restrictions: ";

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(encode_unicode_pwd("Ab1"), [0x22, 0, 0x41, 0, 0x62, 0, 0x31, 0, 0x22, 0]);
        assert_eq!(encode_unicode_pwd("é"), [0x22, 0, 0xe9, 0, 0x22, 0]);
        assert_eq!(encode_unicode_pwd("😀").len(), 2 + 4 + 2, "a surrogate pair");
    }

    #[test]
    fn refusals_are_named() {
        use AdChangeRefusal::*;
        let check = |code: u32, text: &str, expected: AdChangeOutcome| {
            assert_eq!(modify_outcome(code, text).expect("a verdict"), expected, "{code} {text}");
        };
        let refused = AdChangeOutcome::Refused;
        check(0, "", AdChangeOutcome::Changed);
        check(
            19,
            &format!("{SAMBA}the password is too short. It should be equal or longer than 7 characters!"),
            refused(TooShort),
        );
        check(19, &format!("{SAMBA}the password does not meet the complexity criteria!"), refused(NotComplex));
        check(19, &format!("{SAMBA}the password was already used (in history)!"), refused(InHistory));
        check(19, &format!("{SAMBA}the password was already used (previous password)!"), refused(InHistory));
        check(19, &format!("{SAMBA}password is too young to change!"), refused(TooYoung));
        check(
            19,
            "00000056: Constraint violation - check_password_restrictions: The old password specified doesn't match!",
            refused(InvalidCredentials),
        );
        check(
            19,
            "0000052D: AtrErr: DSID-03191083, #1:\n\t0: 0000052D: DSID-03191083, problem 1005 (CONSTRAINT_ATT_TYPE), \
             data 0, Att 9005a (unicodePwd)",
            refused(Policy),
        );
        check(53, "0000052D: SvcErr: DSID-031A12D2, problem 5003 (WILL_NOT_PERFORM), data 0", refused(Policy));
        check(53, "00000005: SecErr: DSID-03152857, problem 4003 (INSUFF_ACCESS_RIGHTS)", refused(NotAllowed));
        check(50, "", refused(NotAllowed));
    }

    #[test]
    fn other_results_are_errors() {
        assert!(modify_outcome(8, "BindSimple: Transport encryption required.")
            .unwrap_err()
            .to_string()
            .contains("TLS"));
        assert!(modify_outcome(12, "").unwrap_err().to_string().contains(POLICY_HINTS_OID));
        assert!(modify_outcome(80, "other").is_err());
    }

    #[test]
    fn every_refusal_has_a_message() {
        use AdChangeRefusal::*;
        for r in [
            InvalidCredentials,
            EmptyPassword,
            AccountLocked,
            AccountDisabled,
            TooShort,
            NotComplex,
            InHistory,
            TooYoung,
            Policy,
            NotAllowed,
            Expired,
        ] {
            assert!(r.user_message().ends_with('.'), "{r:?}");
        }
    }
}

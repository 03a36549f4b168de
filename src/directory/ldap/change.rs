//! Password change on OpenLDAP: RFC 3062 Password Modify, as the user.
//!
//! ```text
//! C: BindRequest(dn=uid=alice,..., simple=<current>)  + ppolicy request control
//! S: BindResponse(success)                            (+ ppolicy: grace logins / changeAfterReset)
//! C: ExtendedRequest(1.3.6.1.4.1.4203.1.11.1, oldPasswd=<current>, newPasswd=<new>) + ppolicy control
//! S: ExtendedResponse(success | constraintViolation)  (+ ppolicy error: passwordInHistory, ...)
//! C: UnbindRequest
//! ```
//!
//! Bound as the user, with the old password in the request, so the
//! directory's own ppolicy (history, minimum length and age, quality
//! module) applies and an over-privileged service account is never needed
//! (docs/threat-model.md T22). Expired passwords: a ppolicy grace login is a
//! successful bind, so the change just works; once no grace login is left
//! the bind fails with `passwordExpired` (which ppolicy only says for a
//! *right* password), and with `password.expired_change =
//! "service_account"` the service account writes the change instead (it
//! then needs write access to `userPassword`). The cleartext new password
//! goes to the server (over TLS in production) so its checks can run.

use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapResult};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::timeout;

use super::pool::{operation_error, rc};
use super::ppolicy::{self, PpolicyError, PpolicyResponse};
use super::{bind_outcome, ppolicy_request, LdapDirectory};
use crate::directory::{
    BindOutcome, ChangeOptions, ChangeOutcome, ChangeRefusal, DirectoryError, RejectReason, Result,
};
use crate::identity::Identity;

/// `constraintViolation`: ppolicy's refusal of a new password.
const CONSTRAINT_VIOLATION: u32 = 19;
/// `insufficientAccessRights`: an ACL refused the write.
const INSUFFICIENT_ACCESS: u32 = 50;
/// `unwillingToPerform`: e.g. `pwdAllowUserChange: FALSE`.
const UNWILLING_TO_PERFORM: u32 = 53;

pub(super) async fn change_password(
    dir: &LdapDirectory,
    identity: &Identity,
    current: &SecretString,
    new: &SecretString,
    options: &ChangeOptions,
) -> Result<ChangeOutcome> {
    if current.expose_secret().is_empty() || new.expose_secret().is_empty() {
        return Ok(ChangeOutcome::Refused(ChangeRefusal::EmptyPassword));
    }
    if identity.dn.trim().is_empty() {
        return Ok(ChangeOutcome::Refused(ChangeRefusal::InvalidCredentials));
    }
    let (mut ldap, deadline) = dir.binds.dedicated().await?;
    let outcome = run(dir, &mut ldap, deadline, identity, current, new, options).await;
    let _ = timeout(deadline, ldap.unbind()).await;
    outcome
}

async fn run(
    dir: &LdapDirectory,
    ldap: &mut Ldap,
    deadline: std::time::Duration,
    identity: &Identity,
    current: &SecretString,
    new: &SecretString,
    options: &ChangeOptions,
) -> Result<ChangeOutcome> {
    let bound = bind(ldap, deadline, &identity.dn, current).await?;
    let as_service = match bind_outcome(bound.0, &bound.1, bound.2, identity.account.enabled)? {
        BindOutcome::Accepted { .. } | BindOutcome::Rejected(RejectReason::MustChangePassword) => false,
        BindOutcome::Rejected(RejectReason::PasswordExpired) if options.expired_via_service_account => true,
        BindOutcome::Rejected(RejectReason::PasswordExpired) => return refused(ChangeRefusal::Expired),
        BindOutcome::Rejected(RejectReason::InvalidCredentials | RejectReason::EmptyPassword) => {
            return refused(ChangeRefusal::InvalidCredentials)
        }
        BindOutcome::Rejected(RejectReason::AccountLocked) => return refused(ChangeRefusal::AccountLocked),
        BindOutcome::Rejected(RejectReason::AccountDisabled) => return refused(ChangeRefusal::AccountDisabled),
    };
    if as_service {
        let service = bind(ldap, deadline, &dir.service_dn, &dir.service_password).await?;
        if service.0 != rc::SUCCESS {
            return Err(DirectoryError::ServiceBind(format!("result code {}", service.0)));
        }
    }
    let mut result = modify(ldap, deadline, as_service.then_some(identity.dn.as_str()), Some(current), new).await?;
    if result.rc == UNWILLING_TO_PERFORM && !as_service {
        // slapd verifies `oldPasswd` by reading the user's own
        // `userPassword`, which hardened ACLs (`by self =w`) forbid. The
        // bind on this session already proved the password, so send the
        // request again without it; a `pwdSafeModify: TRUE` policy then
        // answers `mustSupplyOldPassword`, reported as not allowed.
        tracing::debug!(dn = %identity.dn, "the directory cannot verify oldPasswd; retrying on the bound session");
        result = modify(ldap, deadline, None, None, new).await?;
    }
    let outcome = modify_outcome(result.rc, control(&result), &result.text);
    tracing::debug!(dn = %identity.dn, code = result.rc, ?outcome, as_service, "password modify");
    outcome
}

/// One Password Modify request with the ppolicy control.
async fn modify(
    ldap: &mut Ldap,
    deadline: std::time::Duration,
    user_id: Option<&str>,
    current: Option<&SecretString>,
    new: &SecretString,
) -> Result<LdapResult> {
    let request =
        PasswordModify { user_id, old_pass: current.map(|c| c.expose_secret()), new_pass: Some(new.expose_secret()) };
    let modify = ldap.with_controls(vec![ppolicy_request()]).with_timeout(deadline).extended(request);
    match timeout(deadline, modify).await {
        Err(_) => Err(DirectoryError::Timeout(deadline)),
        Ok(Err(e)) => Err(operation_error(e, deadline)),
        Ok(Ok(r)) => Ok(r.1),
    }
}

/// A simple bind with the ppolicy control: code, text, decoded control.
async fn bind(
    ldap: &mut Ldap,
    deadline: std::time::Duration,
    dn: &str,
    password: &SecretString,
) -> Result<(u32, String, Option<PpolicyResponse>)> {
    let binding =
        ldap.with_controls(vec![ppolicy_request()]).with_timeout(deadline).simple_bind(dn, password.expose_secret());
    match timeout(deadline, binding).await {
        Err(_) => Err(DirectoryError::Timeout(deadline)),
        Ok(Err(e)) => Err(operation_error(e, deadline)),
        Ok(Ok(r)) => {
            let c = control(&r);
            Ok((r.rc, r.text, c))
        }
    }
}

fn control(result: &LdapResult) -> Option<PpolicyResponse> {
    let raw = result.ctrls.iter().find(|c| c.1.ctype == ppolicy::PPOLICY_CONTROL_OID)?;
    ppolicy::decode_response(raw.1.val.as_deref().unwrap_or_default()).ok()
}

fn refused(reason: ChangeRefusal) -> Result<ChangeOutcome> {
    Ok(ChangeOutcome::Refused(reason))
}

/// The verdict on a Password Modify response.
pub fn modify_outcome(code: u32, control: Option<PpolicyResponse>, text: &str) -> Result<ChangeOutcome> {
    let error = control.and_then(|c| c.error);
    let reason = match (code, error) {
        (rc::SUCCESS, _) => return Ok(ChangeOutcome::Changed),
        (_, Some(PpolicyError::PasswordInHistory)) => ChangeRefusal::InHistory,
        (_, Some(PpolicyError::PasswordTooShort)) => ChangeRefusal::TooShort,
        (_, Some(PpolicyError::PasswordTooYoung)) => ChangeRefusal::TooYoung,
        (_, Some(PpolicyError::InsufficientPasswordQuality | PpolicyError::PasswordTooLong)) => {
            ChangeRefusal::InsufficientQuality
        }
        (_, Some(PpolicyError::PasswordModNotAllowed | PpolicyError::MustSupplyOldPassword)) => {
            ChangeRefusal::NotAllowed
        }
        (_, Some(PpolicyError::PasswordExpired)) => ChangeRefusal::Expired,
        (_, Some(PpolicyError::AccountLocked)) => ChangeRefusal::AccountLocked,
        (rc::INVALID_CREDENTIALS, _) => ChangeRefusal::InvalidCredentials,
        (CONSTRAINT_VIOLATION, _) => ChangeRefusal::InsufficientQuality,
        (INSUFFICIENT_ACCESS | UNWILLING_TO_PERFORM, _) => ChangeRefusal::NotAllowed,
        (other, _) => {
            return Err(DirectoryError::Protocol(format!("password modify failed with result code {other}: {text}")))
        }
    };
    Ok(ChangeOutcome::Refused(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(e: PpolicyError) -> Option<PpolicyResponse> {
        Some(PpolicyResponse { error: Some(e), ..Default::default() })
    }

    #[test]
    fn ppolicy_errors_become_clear_refusals() {
        use ChangeRefusal::*;
        let r = |code, c| match modify_outcome(code, c, "") {
            Ok(ChangeOutcome::Refused(r)) => Some(r),
            _ => None,
        };
        assert_eq!(modify_outcome(0, None, "").unwrap(), ChangeOutcome::Changed);
        assert_eq!(r(19, with(PpolicyError::PasswordInHistory)), Some(InHistory));
        assert_eq!(r(19, with(PpolicyError::PasswordTooShort)), Some(TooShort));
        assert_eq!(r(19, with(PpolicyError::PasswordTooYoung)), Some(TooYoung));
        assert_eq!(r(19, with(PpolicyError::InsufficientPasswordQuality)), Some(InsufficientQuality));
        assert_eq!(r(50, with(PpolicyError::PasswordModNotAllowed)), Some(NotAllowed));
        assert_eq!(r(19, None), Some(InsufficientQuality));
        assert_eq!(r(49, None), Some(InvalidCredentials));
        assert_eq!(r(53, None), Some(NotAllowed));
        assert!(modify_outcome(80, None, "other").is_err());
    }
}

//! Active Directory account state and bind verdicts, as pure functions:
//! attribute values and `now` in, [`AccountState`] or [`BindOutcome`] out.
//!
//! Account state comes from `userAccountControl` (disabled, password never
//! expires), the DC-computed `msDS-User-Account-Control-Computed` (locked
//! out, password expired: the DC applies the lockout duration and the
//! fine-grained password policy, which this code cannot see),
//! `accountExpires`, `pwdLastSet` (0 = must change) and
//! `msDS-UserPasswordExpiryTimeComputed` (expiry under the policy that
//! applies to the user, fine-grained or not). `lockoutTime` alone is not
//! proof of a lockout (it stays set after the duration ends until the next
//! logon), so without the computed bit the bind decides (`data 775`).
//!
//! A refused bind carries the reason only in its diagnostic text, e.g.
//! `80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error,
//! data 775, v1db1`; the `data` sub-code is read here and mapped to the
//! same [`RejectReason`]s as OpenLDAP's ppolicy. Nothing here panics on
//! what a server sends.

use time::OffsetDateTime;

use super::filetime::{self, FileTime};
use super::pool::rc;
use crate::directory::{BindOutcome, DirectoryError, RejectReason, Result};
use crate::identity::AccountState;

/// `strongerAuthRequired` (RFC 4511): AD's answer to a simple bind
/// without TLS.
pub const STRONGER_AUTH_REQUIRED: u32 = 8;

/// `userAccountControl` and `msDS-User-Account-Control-Computed` bits
/// (MS-ADTS 2.2.16).
pub mod uac {
    /// ADS_UF_ACCOUNTDISABLE.
    pub const ACCOUNT_DISABLE: u32 = 0x0000_0002;
    /// ADS_UF_LOCKOUT (meaningful in the computed attribute only).
    pub const LOCKOUT: u32 = 0x0000_0010;
    /// ADS_UF_DONT_EXPIRE_PASSWD.
    pub const DONT_EXPIRE_PASSWORD: u32 = 0x0001_0000;
    /// ADS_UF_PASSWORD_EXPIRED (computed attribute only).
    pub const PASSWORD_EXPIRED: u32 = 0x0080_0000;
}

/// Attributes of a user entry this module reads.
pub const USER_ACCOUNT_CONTROL: &str = "userAccountControl";
pub const USER_ACCOUNT_CONTROL_COMPUTED: &str = "msDS-User-Account-Control-Computed";
pub const LOCKOUT_TIME: &str = "lockoutTime";
pub const ACCOUNT_EXPIRES: &str = "accountExpires";
pub const PWD_LAST_SET: &str = "pwdLastSet";
pub const PASSWORD_EXPIRY_COMPUTED: &str = "msDS-UserPasswordExpiryTimeComputed";

/// Every account-state attribute, for the search's attribute list.
pub const ACCOUNT_ATTRIBUTES: [&str; 6] = [
    USER_ACCOUNT_CONTROL,
    USER_ACCOUNT_CONTROL_COMPUTED,
    LOCKOUT_TIME,
    ACCOUNT_EXPIRES,
    PWD_LAST_SET,
    PASSWORD_EXPIRY_COMPUTED,
];

/// The `data` sub-codes of a refused AD bind (Win32 error codes, hex).
pub mod sub_code {
    /// ERROR_NO_SUCH_USER.
    pub const NO_SUCH_USER: u32 = 0x525;
    /// ERROR_LOGON_FAILURE: wrong password.
    pub const LOGON_FAILURE: u32 = 0x52e;
    /// ERROR_INVALID_LOGON_HOURS: not permitted to log on at this time.
    pub const INVALID_LOGON_HOURS: u32 = 0x530;
    /// ERROR_INVALID_WORKSTATION: not permitted to log on from here.
    pub const INVALID_WORKSTATION: u32 = 0x531;
    /// ERROR_PASSWORD_EXPIRED.
    pub const PASSWORD_EXPIRED: u32 = 0x532;
    /// ERROR_ACCOUNT_DISABLED.
    pub const ACCOUNT_DISABLED: u32 = 0x533;
    /// ERROR_ACCOUNT_EXPIRED.
    pub const ACCOUNT_EXPIRED: u32 = 0x701;
    /// ERROR_PASSWORD_MUST_CHANGE.
    pub const PASSWORD_MUST_CHANGE: u32 = 0x773;
    /// ERROR_ACCOUNT_LOCKED_OUT.
    pub const ACCOUNT_LOCKED_OUT: u32 = 0x775;
}

/// The user attributes, as read (first values).
#[derive(Clone, Copy, Debug, Default)]
pub struct AdAccountAttributes<'a> {
    pub user_account_control: Option<&'a str>,
    pub user_account_control_computed: Option<&'a str>,
    pub lockout_time: Option<&'a str>,
    pub account_expires: Option<&'a str>,
    pub pwd_last_set: Option<&'a str>,
    pub password_expiry_computed: Option<&'a str>,
}

/// Reads a flags attribute. AD writes it as a signed 32-bit decimal, so
/// `-2147483646` is a valid spelling of `0x80000002`.
pub fn parse_flags(value: &str) -> Option<u32> {
    let v = value.trim();
    v.parse::<u32>().ok().or_else(|| v.parse::<i32>().ok().map(|n| n as u32))
}

/// Account state as the DC will judge the next bind.
///
/// An expired account (`accountExpires` in the past) is reported as
/// disabled: mailwarrant has no separate reason for it, and the user can do
/// nothing about either. An unreadable `userAccountControl` is disabled too
/// (fail closed on identity).
pub fn account_state(a: &AdAccountAttributes<'_>, now: OffsetDateTime) -> AccountState {
    let flags = a.user_account_control.map_or(Some(0), parse_flags);
    let computed = a.user_account_control_computed.and_then(parse_flags).unwrap_or(0);
    let flags_unreadable = flags.is_none();
    let flags = flags.unwrap_or(0);
    let account_expired = match a.account_expires.and_then(filetime::parse) {
        Some(FileTime::At(at)) => at <= now,
        _ => false,
    };
    let enabled = !flags_unreadable && flags & uac::ACCOUNT_DISABLE == 0 && !account_expired;
    let never_expires = flags & uac::DONT_EXPIRE_PASSWORD != 0;
    let last_set = a.pwd_last_set.and_then(filetime::parse);
    let password_changed_at = match last_set {
        Some(FileTime::At(at)) => Some(at),
        _ => None,
    };
    // pwdLastSet = 0 forces a change, unless the password never expires
    // (AD ignores the flag then, and so do its own tools).
    let must_change = last_set == Some(FileTime::Zero) && !never_expires;
    let password_expires_at = if never_expires {
        None
    } else {
        match a.password_expiry_computed.and_then(filetime::parse) {
            Some(FileTime::At(at)) => Some(at),
            // The DC says expired without a usable instant: expired now.
            _ if computed & uac::PASSWORD_EXPIRED != 0 && !must_change => Some(now),
            _ => None,
        }
    };
    AccountState {
        enabled,
        locked: computed & uac::LOCKOUT != 0,
        password_changed_at,
        password_expires_at,
        must_change,
    }
}

/// The `data` sub-code in a bind's diagnostic text, e.g. `775` in
/// `…AcceptSecurityContext error, data 775, v1db1`.
pub fn bind_sub_code(text: &str) -> Option<u32> {
    const MARKER: &str = "data ";
    let at = text.find(MARKER)? + MARKER.len();
    let hex: String = text[at..].chars().take_while(char::is_ascii_hexdigit).take(8).collect();
    if hex.is_empty() {
        return None;
    }
    u32::from_str_radix(&hex, 16).ok()
}

/// The verdict on an AD bind from its result code and diagnostic text.
/// Without a known sub-code, a refusal falls back to what the lookup read
/// (`account`), then to a wrong password.
pub fn bind_outcome(code: u32, text: &str, account: &AccountState) -> Result<BindOutcome> {
    match code {
        rc::SUCCESS => Ok(BindOutcome::ACCEPTED),
        rc::INVALID_CREDENTIALS | rc::INAPPROPRIATE_AUTHENTICATION => {
            Ok(BindOutcome::Rejected(match bind_sub_code(text) {
                Some(sub_code::PASSWORD_EXPIRED) => RejectReason::PasswordExpired,
                Some(sub_code::PASSWORD_MUST_CHANGE) => RejectReason::MustChangePassword,
                Some(sub_code::ACCOUNT_LOCKED_OUT) => RejectReason::AccountLocked,
                // Logon hours and workstation restrictions: the account may
                // not log on (here, now), which is what "disabled" tells.
                Some(
                    sub_code::ACCOUNT_DISABLED
                    | sub_code::ACCOUNT_EXPIRED
                    | sub_code::INVALID_LOGON_HOURS
                    | sub_code::INVALID_WORKSTATION,
                ) => RejectReason::AccountDisabled,
                Some(sub_code::LOGON_FAILURE | sub_code::NO_SUCH_USER) => RejectReason::InvalidCredentials,
                _ if !account.enabled => RejectReason::AccountDisabled,
                _ if account.locked => RejectReason::AccountLocked,
                _ => RejectReason::InvalidCredentials,
            }))
        }
        STRONGER_AUTH_REQUIRED => Err(DirectoryError::Protocol(
            "the domain controller refuses simple binds without TLS: use ldaps:// or set tls = \"starttls\"".into(),
        )),
        rc::REFERRAL => Err(DirectoryError::Protocol(
            "the bind was answered with a referral, which is not followed: point `directory.ldap.urls` at a domain \
             controller of the user's domain"
                .into(),
        )),
        other => Err(DirectoryError::Protocol(format!("bind failed with result code {other}: {text}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);
    /// 2026-11-01 00:00 UTC and 2027-01-01 00:00 UTC as FILETIME.
    const NOV_1: &str = "134379648000000000";
    const JAN_1: &str = "134432352000000000";
    const LONG_AGO: &str = "133000000000000000";

    fn text(code: &str) -> String {
        format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {code}, v1db1")
    }

    #[test]
    fn the_test_instants_are_what_they_say() {
        assert_eq!(filetime::parse(NOV_1), Some(FileTime::At(datetime!(2026-11-01 0:00 UTC))));
        assert_eq!(filetime::parse(JAN_1), Some(FileTime::At(datetime!(2027-01-01 0:00 UTC))));
    }

    #[test]
    fn sub_codes() {
        let check = |t: &str, expected: Option<u32>| assert_eq!(bind_sub_code(t), expected, "{t}");
        check(&text("52e"), Some(0x52e));
        check(&text("775"), Some(0x775));
        check(&text("701"), Some(0x701));
        check("data 0", Some(0));
        check("comment: AcceptSecurityContext error, data , v1db1", None);
        check("", None);
        check("data zz", None);
        check("data 123456789abc", Some(0x1234_5678));
    }

    #[test]
    fn bind_verdicts() {
        use RejectReason::*;
        let active = AccountState { enabled: true, ..Default::default() };
        let check = |code: u32, t: &str, account: &AccountState, expected: BindOutcome| {
            assert_eq!(bind_outcome(code, t, account).expect("a verdict"), expected, "{code} {t}");
        };
        check(0, "", &active, BindOutcome::ACCEPTED);
        for (sub, reason) in [
            ("525", InvalidCredentials),
            ("52e", InvalidCredentials),
            ("530", AccountDisabled),
            ("531", AccountDisabled),
            ("532", PasswordExpired),
            ("533", AccountDisabled),
            ("701", AccountDisabled),
            ("773", MustChangePassword),
            ("775", AccountLocked),
        ] {
            check(49, &text(sub), &active, BindOutcome::Rejected(reason));
        }
        let disabled = AccountState { enabled: false, ..Default::default() };
        let locked = AccountState { enabled: true, locked: true, ..Default::default() };
        check(49, "", &active, BindOutcome::Rejected(InvalidCredentials));
        check(49, "", &disabled, BindOutcome::Rejected(AccountDisabled));
        check(49, &text("999"), &locked, BindOutcome::Rejected(AccountLocked));
        // The sub-code wins over what the lookup read.
        check(49, &text("52e"), &disabled, BindOutcome::Rejected(InvalidCredentials));
    }

    #[test]
    fn other_results_are_errors() {
        let active = AccountState { enabled: true, ..Default::default() };
        let e = bind_outcome(8, "BindSimple: Transport encryption required.", &active).unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
        assert!(bind_outcome(10, "", &active).is_err());
        assert!(matches!(bind_outcome(51, "busy", &active), Err(DirectoryError::Protocol(m)) if m.contains("busy")));
    }

    #[test]
    fn flags() {
        assert_eq!(parse_flags("512"), Some(512));
        assert_eq!(parse_flags("-2147483646"), Some(0x8000_0002));
        assert_eq!(parse_flags("x"), None);
    }

    fn state(a: AdAccountAttributes<'_>) -> AccountState {
        account_state(&a, NOW)
    }

    #[test]
    fn account_states() {
        use crate::identity::AccountStatus::*;
        let normal = AdAccountAttributes {
            user_account_control: Some("512"),
            user_account_control_computed: Some("0"),
            lockout_time: Some("0"),
            account_expires: Some("9223372036854775807"),
            pwd_last_set: Some(NOV_1),
            password_expiry_computed: Some(JAN_1),
        };
        let s = state(normal);
        assert_eq!(s.status(NOW), Active);
        assert_eq!(s.password_changed_at, Some(datetime!(2026-11-01 0:00 UTC)));
        assert_eq!(s.password_expires_at, Some(datetime!(2027-01-01 0:00 UTC)));

        assert_eq!(state(AdAccountAttributes { user_account_control: Some("514"), ..normal }).status(NOW), Disabled);
        assert_eq!(state(AdAccountAttributes { user_account_control: Some("bogus"), ..normal }).status(NOW), Disabled);
        assert_eq!(state(AdAccountAttributes { account_expires: Some(NOV_1), ..normal }).status(NOW), Disabled);
        assert_eq!(state(AdAccountAttributes { account_expires: Some("0"), ..normal }).status(NOW), Active);
        assert_eq!(state(AdAccountAttributes { account_expires: Some(JAN_1), ..normal }).status(NOW), Active);

        let locked =
            AdAccountAttributes { user_account_control_computed: Some("16"), lockout_time: Some(NOV_1), ..normal };
        assert_eq!(state(locked).status(NOW), Locked);
        // lockoutTime alone (duration over, not yet reset): not locked.
        assert_eq!(state(AdAccountAttributes { lockout_time: Some(NOV_1), ..normal }).status(NOW), Active);

        let expired = AdAccountAttributes {
            user_account_control_computed: Some("8388608"),
            pwd_last_set: Some(LONG_AGO),
            password_expiry_computed: Some(NOV_1),
            ..normal
        };
        assert_eq!(state(expired).status(NOW), PasswordExpired);
        let expired_no_time = AdAccountAttributes { password_expiry_computed: None, ..expired };
        assert_eq!(state(expired_no_time).status(NOW), PasswordExpired);

        let must = AdAccountAttributes {
            user_account_control_computed: Some("8388608"),
            pwd_last_set: Some("0"),
            password_expiry_computed: Some("0"),
            ..normal
        };
        let s = state(must);
        assert_eq!(s.status(NOW), MustChangePassword);
        assert_eq!((s.password_changed_at, s.password_expires_at), (None, None));

        let never = AdAccountAttributes {
            user_account_control: Some("66048"),
            pwd_last_set: Some("0"),
            password_expiry_computed: Some(NOV_1),
            ..normal
        };
        let s = state(never);
        assert_eq!(s.status(NOW), Active);
        assert_eq!(s.password_expires_at, None);

        assert_eq!(state(AdAccountAttributes::default()).status(NOW), Active);
    }

    proptest! {
        #[test]
        fn nothing_panics_on_server_values(
            uac in "\\PC{0,12}", computed in "-?[0-9]{0,11}", times in proptest::collection::vec("-?[0-9]{0,20}", 4),
            t in "\\PC{0,80}", code in any::<u32>(),
        ) {
            let a = AdAccountAttributes {
                user_account_control: Some(&uac),
                user_account_control_computed: Some(&computed),
                lockout_time: Some(&times[0]),
                account_expires: Some(&times[1]),
                pwd_last_set: Some(&times[2]),
                password_expiry_computed: Some(&times[3]),
            };
            let s = account_state(&a, NOW);
            let _ = bind_outcome(code, &t, &s);
            let _ = bind_sub_code(&t);
        }
    }
}

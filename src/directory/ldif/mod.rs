//! The embedded default directory: users and groups read from an LDIF
//! file, for the demo and small sites.
//!
//! Same attributes as the OpenLDAP schema in `schemas/ldap/` (`uid`,
//! `mail`, `mailAlternateAddress`, `mailwarrantSendAs`, `groupOfNames`
//! with `member`, ppolicy's `pwdChangedTime`, `pwdAccountLockedTime`,
//! `pwdReset`, and `mailwarrantAccountDisabled`), so a site can move to
//! OpenLDAP by loading the same file. Passwords must be `{ARGON2}` or
//! `{SSHA}` hashes.

mod hasher;
pub mod parse;
pub mod password;
pub mod write;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::{
    AddressOwner, BindOutcome, ChangeOptions, ChangeOutcome, ChangeRefusal, Directory, DirectoryError,
    DistributionList, RejectReason, Result, UserSummary,
};
use crate::config::LdifSettings;
use crate::directory::generalized_time;
use crate::identity::{AccountState, AccountStatus, Address, GroupRef, Identity, Login};
use parse::Entry;

/// Nesting deeper than this is treated as a loop in the data.
const MAX_GROUP_DEPTH: usize = 16;

/// An LDIF file loaded into memory, indexed for lookups. A password
/// change rewrites the file and swaps in a fresh index.
pub struct LdifDirectory {
    index: RwLock<Arc<Index>>,
    /// The file, when loaded from one; `None`: read-only.
    source: Option<Source>,
    /// One change at a time, so two changes never lose each other's write.
    writer: tokio::sync::Mutex<()>,
}

struct Source {
    path: PathBuf,
    max_age: Option<Duration>,
}

struct Index {
    users: Vec<Arc<User>>,
    by_login: HashMap<String, usize>,
    by_address: HashMap<String, usize>,
    lists: Vec<DistributionList>,
    lists_by_address: HashMap<String, usize>,
}

struct User {
    identity: Identity,
    password_hash: Option<String>,
}

impl LdifDirectory {
    /// Reads the file named in the settings.
    pub fn open(settings: &LdifSettings) -> Result<Self> {
        let text = std::fs::read_to_string(&settings.path)
            .map_err(|e| DirectoryError::Source(format!("{}: {e}", settings.path.display())))?;
        let entries =
            parse::parse(&text).map_err(|e| DirectoryError::Source(format!("{}: {e}", settings.path.display())))?;
        let mut dir = Self::from_entries(&entries, settings.password_max_age)?;
        dir.source = Some(Source { path: settings.path.clone(), max_age: settings.password_max_age });
        Ok(dir)
    }

    /// Builds the indexes; `max_age` gives password expiry. Such a
    /// directory has no file, so it refuses password changes.
    pub fn from_entries(entries: &[Entry], max_age: Option<Duration>) -> Result<Self> {
        Ok(Self {
            index: RwLock::new(Arc::new(Index::build(entries, max_age)?)),
            source: None,
            writer: tokio::sync::Mutex::new(()),
        })
    }

    fn index(&self) -> Arc<Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Index {
    fn build(entries: &[Entry], max_age: Option<Duration>) -> Result<Self> {
        let groups: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.has_object_class("groupOfNames") || e.has_object_class("groupOfUniqueNames"))
            .collect();
        let mut dir = Index {
            users: Vec::new(),
            by_login: HashMap::new(),
            by_address: HashMap::new(),
            lists: Vec::new(),
            lists_by_address: HashMap::new(),
        };
        for g in &groups {
            if let Some(mail) = g.first("mail") {
                let address = Address::parse(mail).map_err(|e| bad(&g.dn, "mail", e))?;
                dir.lists_by_address.insert(address_key(&address), dir.lists.len());
                dir.lists.push(DistributionList { dn: g.dn.clone(), name: group_name(g), address });
            }
        }
        for e in entries.iter().filter(|e| e.first("uid").is_some() && e.has_object_class("inetOrgPerson")) {
            let user = user_from_entry(e, &groups, max_age)?;
            let index = dir.users.len();
            let login_key = user.identity.login.as_str().to_ascii_lowercase();
            if dir.by_login.insert(login_key, index).is_some() {
                return Err(DirectoryError::Data(format!("two entries have uid {}", user.identity.login)));
            }
            for a in user.identity.primary_address.iter().chain(&user.identity.aliases) {
                dir.by_address.insert(address_key(a), index);
            }
            dir.users.push(Arc::new(user));
        }
        Ok(dir)
    }

    fn find(&self, typed: &str) -> Option<&Arc<User>> {
        let key = typed.trim().to_ascii_lowercase();
        let index = self.by_login.get(&key).or_else(|| self.by_address.get(&key))?;
        self.users.get(*index)
    }
}

#[async_trait]
impl Directory for LdifDirectory {
    async fn lookup(&self, login: &str) -> Result<Option<Identity>> {
        Ok(self.index().find(login).map(|u| u.identity.clone()))
    }

    async fn lookup_address(&self, address: &Address) -> Result<Option<AddressOwner>> {
        let key = address_key(address);
        let index = self.index();
        if let Some(i) = index.by_address.get(&key) {
            return Ok(Some(AddressOwner::User { identity: Arc::new(index.users[*i].identity.clone()) }));
        }
        Ok(index.lists_by_address.get(&key).map(|i| AddressOwner::List { list: index.lists[*i].clone() }))
    }

    async fn authenticate(&self, identity: &Identity, password: &SecretString) -> Result<BindOutcome> {
        if password.expose_secret().is_empty() {
            return Ok(BindOutcome::Rejected(RejectReason::EmptyPassword));
        }
        let Some(user) = self.index().user(identity) else {
            return Ok(BindOutcome::Rejected(RejectReason::InvalidCredentials));
        };
        if !verify_off_thread(&user, password).await? {
            return Ok(BindOutcome::Rejected(RejectReason::InvalidCredentials));
        }
        // Like a ppolicy bind: only a right password learns the account state.
        Ok(match user.identity.account.status(OffsetDateTime::now_utc()) {
            AccountStatus::Disabled => BindOutcome::Rejected(RejectReason::AccountDisabled),
            AccountStatus::Locked => BindOutcome::Rejected(RejectReason::AccountLocked),
            AccountStatus::PasswordExpired => BindOutcome::Rejected(RejectReason::PasswordExpired),
            AccountStatus::Active | AccountStatus::MustChangePassword => BindOutcome::ACCEPTED,
        })
    }

    async fn spend_without_checking(&self, password: &SecretString) {
        let _ = verify_hash_off_thread(DECOY_HASH.to_owned(), password).await;
    }

    async fn change_password(
        &self,
        identity: &Identity,
        current: &SecretString,
        new: &SecretString,
        _: &ChangeOptions,
    ) -> Result<ChangeOutcome> {
        if current.expose_secret().is_empty() || new.expose_secret().is_empty() {
            return Ok(ChangeOutcome::Refused(ChangeRefusal::EmptyPassword));
        }
        let Some(source) = &self.source else { return Ok(ChangeOutcome::Refused(ChangeRefusal::Unsupported)) };
        let _one_writer = self.writer.lock().await;
        let Some(user) = self.index().user(identity) else {
            return Ok(ChangeOutcome::Refused(ChangeRefusal::InvalidCredentials));
        };
        if !verify_off_thread(&user, current).await? {
            return Ok(ChangeOutcome::Refused(ChangeRefusal::InvalidCredentials));
        }
        // Expired and must-change passwords may be changed: that is the point.
        match user.identity.account.status(OffsetDateTime::now_utc()) {
            AccountStatus::Disabled => return Ok(ChangeOutcome::Refused(ChangeRefusal::AccountDisabled)),
            AccountStatus::Locked => return Ok(ChangeOutcome::Refused(ChangeRefusal::AccountLocked)),
            AccountStatus::Active | AccountStatus::PasswordExpired | AccountStatus::MustChangePassword => {}
        }
        let (path, dn, new) = (source.path.clone(), user.identity.dn.clone(), new.clone());
        let text = tokio::task::spawn_blocking(move || -> Result<String> {
            let hash = password::hash(new.expose_secret().as_bytes())
                .map_err(|e| DirectoryError::Source(format!("hashing the new password failed: {e}")))?;
            let io = |e: write::WriteError| DirectoryError::Source(format!("{}: {e}", path.display()));
            let old = std::fs::read_to_string(&path).map_err(|e| io(e.into()))?;
            let stamp = generalized_time::format(OffsetDateTime::now_utc());
            let text = write::with_new_password(&old, &dn, &hash, &stamp).map_err(io)?;
            write::replace_file(&path, &text).map_err(io)?;
            Ok(text)
        })
        .await
        .map_err(|e| DirectoryError::Source(format!("password write aborted: {e}")))??;
        let entries =
            parse::parse(&text).map_err(|e| DirectoryError::Source(format!("{}: {e}", source.path.display())))?;
        let fresh = Index::build(&entries, source.max_age)?;
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(ChangeOutcome::Changed)
    }

    async fn list_users(&self) -> Result<Vec<UserSummary>> {
        Ok(self
            .index()
            .users
            .iter()
            .map(|u| {
                let i = &u.identity;
                UserSummary {
                    login: i.login.clone(),
                    dn: i.dn.clone(),
                    display_name: i.display_name.clone(),
                    primary_address: i.primary_address.clone(),
                    account: i.account.clone(),
                }
            })
            .collect())
    }

    async fn distribution_lists(&self) -> Result<Vec<DistributionList>> {
        Ok(self.index().lists.clone())
    }

    async fn check_health(&self) -> Result<()> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "ldif"
    }
}

impl Index {
    fn user(&self, identity: &Identity) -> Option<Arc<User>> {
        self.by_login.get(&identity.login.as_str().to_ascii_lowercase()).map(|i| self.users[*i].clone())
    }
}

/// Argon2 costs tens of milliseconds: keep it off the async workers.
/// A hash with the default Argon2 parameters of `hash-password`, of no
/// one's password: verified for unknown logins so that they cost what a
/// wrong password costs.
const DECOY_HASH: &str =
    "{ARGON2}$argon2id$v=19$m=19456,t=2,p=1$3oMl5QG2SPOAWrYd08fjBw$cMiAZbb1kSBbuhdUAQEtQwKNpp5p4nl3D8qq3ZB0WVU";

async fn verify_off_thread(user: &User, password: &SecretString) -> Result<bool> {
    let Some(stored) = user.password_hash.clone() else { return Ok(false) };
    verify_hash_off_thread(stored, password).await
}

async fn verify_hash_off_thread(stored: String, password: &SecretString) -> Result<bool> {
    let verdict = hasher::verify(stored, password.expose_secret().as_bytes())
        .await
        .ok_or_else(|| DirectoryError::Source("password check aborted: no hash thread".into()))?;
    Ok(verdict == password::Verdict::Match)
}

fn user_from_entry(e: &Entry, groups: &[&Entry], max_age: Option<Duration>) -> Result<User> {
    let login = e.first("uid").unwrap_or_default();
    let parse_address = |attr: &str, v: &String| Address::parse(v).map_err(|err| bad(&e.dn, attr, err));
    let primary_address = e.first("mail").map(|m| parse_address("mail", &m.to_owned())).transpose()?;
    let aliases = e
        .all("mailAlternateAddress")
        .iter()
        .map(|v| parse_address("mailAlternateAddress", v))
        .collect::<Result<_>>()?;
    let send_as =
        e.all("mailwarrantSendAs").iter().map(|v| parse_address("mailwarrantSendAs", v)).collect::<Result<_>>()?;
    let changed_at = e
        .first("pwdChangedTime")
        .map(|t| generalized_time::parse(t).ok_or_else(|| bad(&e.dn, "pwdChangedTime", "not a GeneralizedTime")))
        .transpose()?;
    let locked = e.first("pwdAccountLockedTime").is_some();
    let disabled = e.first("mailwarrantAccountDisabled").is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
    let password_hash = e.first("userPassword").map(str::to_owned);
    if let Some(h) = &password_hash {
        if !password::is_supported(h) {
            return Err(bad(&e.dn, "userPassword", "not an {ARGON2} or {SSHA} hash"));
        }
    }
    Ok(User {
        identity: Identity {
            login: Login::new(login),
            dn: e.dn.clone(),
            display_name: e.first("displayName").or(e.first("cn")).unwrap_or(login).to_owned(),
            primary_address,
            aliases,
            send_as,
            groups: groups_of(&e.dn, groups),
            account: AccountState {
                enabled: !disabled,
                locked,
                password_changed_at: changed_at,
                password_expires_at: changed_at.zip(max_age).map(|(at, age)| at + age),
                must_change: e.first("pwdReset").is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
            },
        },
        password_hash,
    })
}

/// Direct groups, then nested ones breadth-first; each group once even
/// when the data has a cycle.
fn groups_of(dn: &str, groups: &[&Entry]) -> Vec<GroupRef> {
    let mut found: Vec<GroupRef> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<(String, usize)> = VecDeque::from([(dn_key(dn), 0)]);
    while let Some((member, depth)) = queue.pop_front() {
        if depth >= MAX_GROUP_DEPTH {
            continue;
        }
        for g in groups {
            let is_member = g.all("member").iter().chain(g.all("uniqueMember")).any(|m| dn_key(m) == member);
            if is_member && seen.insert(dn_key(&g.dn)) {
                found.push(GroupRef { dn: g.dn.clone(), name: group_name(g), direct: depth == 0 });
                queue.push_back((dn_key(&g.dn), depth + 1));
            }
        }
    }
    found
}

fn group_name(g: &Entry) -> String {
    g.first("cn").unwrap_or(&g.dn).to_owned()
}

/// DNs compare case-insensitively and without spaces after separators.
fn dn_key(dn: &str) -> String {
    dn.split(',').map(|rdn| rdn.trim().to_ascii_lowercase()).collect::<Vec<_>>().join(",")
}

/// Directories match `mail` case-insensitively.
fn address_key(a: &Address) -> String {
    a.as_str().to_ascii_lowercase()
}

fn bad(dn: &str, attr: &str, err: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Data(format!("{dn}: {attr}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoy_hash_is_checked_in_full_and_matches_nothing() {
        assert_eq!(password::verify(DECOY_HASH, b"Alice-Demo-2026!"), password::Verdict::Mismatch);
        assert_eq!(password::verify(DECOY_HASH, b""), password::Verdict::Mismatch);
    }
}

//! Reading users, groups and password policies, and turning entries into
//! [`Identity`] values.
//!
//! A cold user lookup costs one search: the user's entry comes with its
//! `memberOf` and ppolicy attributes, and the groups' nesting and the
//! policy entries are cached per DN for a short time, because thousands
//! of users share a handful of them.
//!
//! Groups: `memberOf` when the entry has it (the overlay lists direct
//! groups only), otherwise a search for groups whose `member` or
//! `uniqueMember` is the DN. Nesting is followed breadth-first, each group
//! once (cycles are harmless), at most `max_group_depth` levels.
//!
//! Must not: put any unescaped value into a filter (every DN and login goes
//! through `escape::filter_value` or a compiled template).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Scope, SearchEntry};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::pool::{Search, SearchPool};
use super::ppolicy::{self, PolicyEntry, UserPasswordAttributes};
use crate::config::directory::{GroupMembership, LdapSettings};
use crate::directory::{escape, DirectoryError, DistributionList, Result, UserSummary};
use crate::identity::{AccountState, Address, GroupRef, Identity, Login};

/// How long a group's name and parents are trusted.
pub const GROUP_TTL: Duration = Duration::from_secs(60);
/// How long a password policy entry is trusted.
pub const POLICY_TTL: Duration = Duration::from_secs(300);
/// Cached DNs per cache before it is emptied and refilled.
const CACHE_CAPACITY: usize = 50_000;

const MEMBER_OF: &str = "memberOf";
const OBJECT_CLASS: &str = "objectClass";
const CN: &str = "cn";
const GROUP_CLASSES: [&str; 2] = ["groupOfNames", "groupOfUniqueNames"];
/// Any kind of static group, as a filter.
const ANY_GROUP: &str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))";

/// Case-insensitive access to an entry's attributes (servers answer with
/// the schema's spelling, not necessarily the requested one).
pub(super) struct Entry(pub SearchEntry);

impl Entry {
    pub fn dn(&self) -> &str {
        &self.0.dn
    }

    pub fn all(&self, name: &str) -> &[String] {
        self.0.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or(&[], |(_, v)| v.as_slice())
    }

    pub fn first(&self, name: &str) -> Option<&str> {
        self.all(name).first().map(String::as_str)
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.attrs.keys().any(|k| k.eq_ignore_ascii_case(name))
    }

    pub fn is_group(&self) -> bool {
        self.all(OBJECT_CLASS).iter().any(|c| GROUP_CLASSES.iter().any(|g| g.eq_ignore_ascii_case(c)))
    }

    /// `cn`, or the value of the first RDN when the entry has none.
    pub fn name(&self) -> String {
        self.first(CN).map_or_else(|| first_rdn_value(self.dn()), str::to_owned)
    }
}

/// `sales` from `cn=sales,ou=groups,…` (escapes left as they are).
fn first_rdn_value(dn: &str) -> String {
    let mut escaped = false;
    let end = dn
        .char_indices()
        .find(|&(_, c)| {
            let split = c == ',' && !escaped;
            escaped = c == '\\' && !escaped;
            split
        })
        .map_or(dn.len(), |(i, _)| i);
    let rdn = &dn[..end];
    rdn.split_once('=').map_or(rdn, |(_, v)| v).to_owned()
}

/// A group's name and the groups it is a member of.
#[derive(Debug)]
struct GroupNode {
    dn: String,
    name: String,
    parents: Vec<String>,
}

/// When a value was read, and the value (`None`: no such entry).
type Cached<T> = (Instant, Option<Arc<T>>);

/// A DN-keyed cache with a TTL; `None` values remember "no such entry".
struct DnCache<T> {
    ttl: Duration,
    map: Mutex<HashMap<String, Cached<T>>>,
}

impl<T> DnCache<T> {
    fn new(ttl: Duration) -> Self {
        Self { ttl, map: Mutex::new(HashMap::new()) }
    }

    fn get(&self, key: &str) -> Option<Option<Arc<T>>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, value: Option<Arc<T>>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }
}

/// A distribution list from a group entry whose `mail_attribute` holds an
/// address; both flavours read lists this way.
pub(super) fn list_from(entry: &Entry, mail_attribute: &str) -> Option<DistributionList> {
    let address = Address::parse(entry.first(mail_attribute)?).ok()?;
    Some(DistributionList { dn: entry.dn().to_owned(), name: entry.name(), address })
}

/// DNs compare case-insensitively for the attribute types and values
/// used here (cn, uid, ou, dc).
fn dn_key(dn: &str) -> String {
    dn.trim().to_lowercase()
}

/// Reads users, groups and policies for [`super::LdapDirectory`].
pub(super) struct Reader {
    pool: SearchPool,
    settings: LdapSettings,
    user_attributes: Vec<String>,
    groups: DnCache<GroupNode>,
    policies: DnCache<PolicyEntry>,
}

impl Reader {
    pub fn new(pool: SearchPool, settings: LdapSettings) -> Self {
        let s = &settings;
        let mut attrs: Vec<String> =
            vec![OBJECT_CLASS.into(), CN.into(), s.login_attribute.clone(), s.mail_attribute.clone()];
        attrs.extend(s.alias_attributes.iter().cloned());
        attrs.push(s.display_name_attribute.clone());
        attrs.extend(s.send_as_attribute.iter().cloned());
        if s.group_membership != GroupMembership::Search {
            attrs.push(MEMBER_OF.into());
        }
        attrs.extend(
            [
                ppolicy::PWD_CHANGED_TIME,
                ppolicy::PWD_ACCOUNT_LOCKED_TIME,
                ppolicy::PWD_RESET,
                ppolicy::PWD_POLICY_SUBENTRY,
                ppolicy::ACCOUNT_DISABLED,
            ]
            .map(String::from),
        );
        let mut seen = HashSet::new();
        attrs.retain(|a| seen.insert(a.to_ascii_lowercase()));
        Self {
            pool,
            settings,
            user_attributes: attrs,
            groups: DnCache::new(GROUP_TTL),
            policies: DnCache::new(POLICY_TTL),
        }
    }

    pub fn pool(&self) -> &SearchPool {
        &self.pool
    }

    /// Entries under `base` matching `filter`, with the user attributes.
    /// At most two are asked for: more than one is ambiguous anyway.
    pub async fn find(&self, base: &str, filter: &str) -> Result<Vec<Entry>> {
        let search = Search { base, scope: Scope::Subtree, filter, attrs: &self.user_attributes, size_limit: Some(2) };
        Ok(self.pool.search(&search).await?.into_iter().map(Entry).collect())
    }

    /// The identity an entry describes, with groups and account state.
    pub async fn identity(&self, entry: &Entry, now: OffsetDateTime) -> Result<Identity> {
        let s = &self.settings;
        let login = entry.first(&s.login_attribute).ok_or_else(|| {
            DirectoryError::Data(format!(
                "{} has no `{}`: check `directory.ldap.login_attribute` and `user_filter`",
                entry.dn(),
                s.login_attribute
            ))
        })?;
        let addresses = |name: &str| -> Vec<Address> {
            entry
                .all(name)
                .iter()
                .filter_map(|v| match Address::parse(v) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        tracing::warn!(dn = entry.dn(), attribute = name, error = %e, "ignoring an unusable address");
                        None
                    }
                })
                .collect()
        };
        let primary_address = addresses(&s.mail_attribute).into_iter().next();
        let aliases = s.alias_attributes.iter().flat_map(|a| addresses(a)).collect();
        let send_as = s.send_as_attribute.as_deref().map(addresses).unwrap_or_default();
        let member_of = entry.has(MEMBER_OF).then(|| entry.all(MEMBER_OF).to_vec());
        let groups = self.groups_of(entry.dn(), member_of).await?;
        Ok(Identity {
            login: Login::new(login),
            dn: entry.dn().to_owned(),
            display_name: entry.first(&s.display_name_attribute).unwrap_or(login).to_owned(),
            primary_address,
            aliases,
            send_as,
            groups,
            account: self.account_state(entry, now).await?,
        })
    }

    /// Account and password state from the entry's ppolicy attributes and
    /// its policy entry (cached).
    async fn account_state(&self, entry: &Entry, now: OffsetDateTime) -> Result<AccountState> {
        let policy_dn =
            entry.first(ppolicy::PWD_POLICY_SUBENTRY).or(self.settings.default_password_policy_dn.as_deref());
        let policy = match policy_dn {
            Some(dn) => self.policy(dn).await?,
            None => None,
        };
        let password = UserPasswordAttributes {
            changed_time: entry.first(ppolicy::PWD_CHANGED_TIME),
            locked_time: entry.first(ppolicy::PWD_ACCOUNT_LOCKED_TIME),
            reset: entry.first(ppolicy::PWD_RESET),
            disabled: entry.first(ppolicy::ACCOUNT_DISABLED),
        };
        Ok(ppolicy::account_state(&password, policy.as_deref(), now))
    }

    /// Every user under the base with account state, for the reminder scan:
    /// one paged search, no group lookups.
    pub async fn summaries(&self, now: OffsetDateTime) -> Result<Vec<UserSummary>> {
        let s = &self.settings;
        let attrs: Vec<String> =
            self.user_attributes.iter().filter(|a| !a.eq_ignore_ascii_case(MEMBER_OF)).cloned().collect();
        let entries = self.pool.search_all(&s.base_dn, s.users_filter.as_str(), &attrs).await?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries.into_iter().map(Entry) {
            let Some(login) = entry.first(&s.login_attribute) else { continue };
            out.push(UserSummary {
                login: Login::new(login),
                dn: entry.dn().to_owned(),
                display_name: entry.first(&s.display_name_attribute).unwrap_or(login).to_owned(),
                primary_address: entry.first(&s.mail_attribute).and_then(|m| Address::parse(m).ok()),
                account: self.account_state(&entry, now).await?,
            });
        }
        Ok(out)
    }

    /// A distribution list from a group entry that has an address.
    pub fn list(&self, entry: &Entry) -> Option<DistributionList> {
        list_from(entry, &self.settings.mail_attribute)
    }

    /// Every group with an address.
    pub async fn lists(&self) -> Result<Vec<DistributionList>> {
        let s = &self.settings;
        let filter = format!("(&{ANY_GROUP}({}=*))", s.mail_attribute);
        let attrs = [OBJECT_CLASS.to_owned(), CN.to_owned(), s.mail_attribute.clone()];
        let entries = self.pool.search_all(&s.group_base_dn, &filter, &attrs).await?;
        Ok(entries.into_iter().filter_map(|e| self.list(&Entry(e))).collect())
    }

    /// Direct groups first, then nested ones, each once.
    async fn groups_of(&self, dn: &str, member_of: Option<Vec<String>>) -> Result<Vec<GroupRef>> {
        let via_member_of = match self.settings.group_membership {
            GroupMembership::Search => false,
            GroupMembership::MemberOf => true,
            // in_chain and token_groups are AD-only (refused by validation here).
            GroupMembership::Auto | GroupMembership::InChain | GroupMembership::TokenGroups => member_of.is_some(),
        };
        let direct = match member_of {
            Some(dns) if via_member_of => dns,
            _ if via_member_of => Vec::new(),
            _ => self.groups_containing(dn).await?,
        };
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut level = direct;
        let mut depth = 0;
        while !level.is_empty() {
            let mut next = Vec::new();
            for group_dn in level {
                if !seen.insert(dn_key(&group_dn)) {
                    continue;
                }
                // A dangling DN (group deleted, memberOf not yet updated) is skipped.
                let Some(node) = self.group(&group_dn, via_member_of).await? else { continue };
                out.push(GroupRef { dn: node.dn.clone(), name: node.name.clone(), direct: depth == 0 });
                next.extend(node.parents.iter().cloned());
            }
            depth += 1;
            if depth > self.settings.max_group_depth {
                break;
            }
            level = next;
        }
        Ok(out)
    }

    /// A group's name and parents, cached.
    async fn group(&self, dn: &str, via_member_of: bool) -> Result<Option<Arc<GroupNode>>> {
        let key = dn_key(dn);
        if let Some(hit) = self.groups.get(&key) {
            return Ok(hit);
        }
        let attrs: Vec<String> = if via_member_of {
            vec![CN.into(), OBJECT_CLASS.into(), MEMBER_OF.into()]
        } else {
            vec![CN.into(), OBJECT_CLASS.into()]
        };
        let search =
            Search { base: dn, scope: Scope::Base, filter: "(objectClass=*)", attrs: &attrs, size_limit: None };
        let node = match self.pool.search(&search).await?.into_iter().next().map(Entry) {
            None => None,
            Some(entry) => {
                let parents =
                    if via_member_of { entry.all(MEMBER_OF).to_vec() } else { self.groups_containing(dn).await? };
                Some(Arc::new(GroupNode { dn: entry.dn().to_owned(), name: entry.name(), parents }))
            }
        };
        self.groups.put(key, node.clone());
        Ok(node)
    }

    /// DNs of the groups that list `dn` as a member.
    async fn groups_containing(&self, dn: &str) -> Result<Vec<String>> {
        let value = escape::filter_value(dn);
        let filter = format!("(&{ANY_GROUP}(|(member={value})(uniqueMember={value})))");
        let attrs = ["1.1".to_owned()];
        let entries = self.pool.search_all(&self.settings.group_base_dn, &filter, &attrs).await?;
        Ok(entries.into_iter().map(|e| e.dn).collect())
    }

    /// A password policy entry, cached; `None` when it does not exist.
    async fn policy(&self, dn: &str) -> Result<Option<Arc<PolicyEntry>>> {
        let key = dn_key(dn);
        if let Some(hit) = self.policies.get(&key) {
            return Ok(hit);
        }
        let attrs: Vec<String> = ppolicy::POLICY_ATTRIBUTES.iter().map(|a| (*a).to_owned()).collect();
        let search =
            Search { base: dn, scope: Scope::Base, filter: "(objectClass=*)", attrs: &attrs, size_limit: None };
        let entry = self.pool.search(&search).await?.into_iter().next().map(Entry);
        let policy = entry.map(|e| Arc::new(PolicyEntry::from_attributes(|name| e.first(name))));
        if policy.is_none() {
            tracing::warn!(dn, "password policy entry not found (or not readable by the service account)");
        }
        self.policies.put(key, policy.clone());
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_values() {
        assert_eq!(first_rdn_value("cn=sales,ou=groups,dc=example,dc=com"), "sales");
        assert_eq!(first_rdn_value("cn=Smith\\, John,ou=people"), "Smith\\, John");
        assert_eq!(first_rdn_value("cn=solo"), "solo");
        assert_eq!(first_rdn_value(""), "");
    }

    #[test]
    fn entries_are_read_case_insensitively() {
        let mut attrs = HashMap::new();
        attrs.insert("memberOf".to_owned(), vec!["cn=a".to_owned()]);
        attrs.insert("objectClass".to_owned(), vec!["top".to_owned(), "groupofnames".to_owned()]);
        let e = Entry(SearchEntry { dn: "cn=x,dc=example".into(), attrs, bin_attrs: HashMap::new() });
        assert_eq!(e.all("memberof"), ["cn=a"]);
        assert!(e.is_group());
        assert!(e.has("MEMBEROF"));
        assert_eq!(e.name(), "x");
        assert_eq!(e.first("mail"), None);
    }
}

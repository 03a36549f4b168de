//! The Active Directory flavour of the LDAP backend: users, addresses,
//! nested groups and account state as AD stores them.
//!
//! Why a reader of its own rather than options on the OpenLDAP one: AD's
//! groups are `objectClass=group` and its `memberOf` lists direct groups
//! only, but the DC resolves nesting itself, in one search, with the
//! LDAP_MATCHING_RULE_IN_CHAIN filter
//! `(member:1.2.840.113556.1.4.1941:=USER-DN)` (or, for security groups,
//! the user's constructed `tokenGroups`). Addresses come from `mail` and
//! `proxyAddresses` (`SMTP:` primary, `smtp:` aliases, other address types
//! such as `X500:` or `SIP:` skipped). Account state is the DC's own
//! (`ad_account`).
//!
//! Must not: put an unescaped value into a filter (DNs and SIDs are
//! escaped, RFC 4515), or chase referrals (the pool never does; AD sends
//! continuation references for its configuration and DNS partitions, which
//! are ignored).

use std::collections::HashSet;

use ldap3::Scope;
use time::OffsetDateTime;

use super::ad_account::{self, AdAccountAttributes};
use super::lookup::Entry;
use super::pool::{Search, SearchPool};
use crate::config::directory::{GroupMembership, LdapSettings};
use crate::directory::{escape, DirectoryError, DistributionList, Result, UserSummary};
use crate::identity::{Address, GroupRef, Identity, Login};

/// LDAP_MATCHING_RULE_IN_CHAIN: `member` followed transitively.
pub const IN_CHAIN_OID: &str = "1.2.840.113556.1.4.1941";
/// The constructed attribute with the SIDs of every security group the
/// user is in, nested included (base-scope searches only).
pub const TOKEN_GROUPS: &str = "tokenGroups";
const OBJECT_SID: &str = "objectSid";
const OBJECT_CLASS: &str = "objectClass";
const MEMBER_OF: &str = "memberOf";
const CN: &str = "cn";
/// AD's group class (security and distribution groups alike).
const GROUP_CLASS: &str = "group";
/// The proxyAddresses type of SMTP addresses; upper case marks the primary.
const SMTP_PREFIX_PRIMARY: &str = "SMTP";
/// SIDs per `(|(objectSid=…)…)` filter: keeps filters well under AD's
/// default MaxReceiveBuffer for users in hundreds of groups.
const SIDS_PER_FILTER: usize = 100;

/// Reads users and groups from Active Directory for [`super::LdapDirectory`].
pub(super) struct AdReader {
    pool: SearchPool,
    settings: LdapSettings,
    user_attributes: Vec<String>,
}

/// A group as found, with the address its members may send as.
struct FoundGroup {
    group: GroupRef,
    mail: Option<String>,
}

impl AdReader {
    pub fn new(pool: SearchPool, settings: LdapSettings) -> Self {
        let s = &settings;
        let mut attrs: Vec<String> = vec![
            OBJECT_CLASS.into(),
            CN.into(),
            MEMBER_OF.into(),
            s.login_attribute.clone(),
            s.mail_attribute.clone(),
            s.display_name_attribute.clone(),
        ];
        attrs.extend(s.alias_attributes.iter().cloned());
        attrs.extend(s.send_as_attribute.iter().cloned());
        attrs.extend(ad_account::ACCOUNT_ATTRIBUTES.map(String::from));
        let mut seen = HashSet::new();
        attrs.retain(|a| seen.insert(a.to_ascii_lowercase()));
        Self { pool, settings, user_attributes: attrs }
    }

    /// Entries under `base` matching `filter`; at most two are asked for.
    pub async fn find(&self, base: &str, filter: &str) -> Result<Vec<Entry>> {
        let search = Search { base, scope: Scope::Subtree, filter, attrs: &self.user_attributes, size_limit: Some(2) };
        Ok(self.pool.search(&search).await?.into_iter().map(Entry).collect())
    }

    /// True for an AD group entry.
    pub fn is_group(entry: &Entry) -> bool {
        entry.all(OBJECT_CLASS).iter().any(|c| c.eq_ignore_ascii_case(GROUP_CLASS))
    }

    /// The identity an entry describes, with nested groups and AD account state.
    pub async fn identity(&self, entry: &Entry, now: OffsetDateTime) -> Result<Identity> {
        let s = &self.settings;
        let login = entry.first(&s.login_attribute).ok_or_else(|| {
            DirectoryError::Data(format!(
                "{} has no `{}`: check `directory.ldap.login_attribute` and `user_filter`",
                entry.dn(),
                s.login_attribute
            ))
        })?;
        let (primary_address, aliases) = self.addresses(entry);
        let found = self.groups_of(entry).await?;
        let mut send_as: Vec<Address> =
            s.send_as_attribute.as_deref().map(|a| plain_addresses(entry, a)).unwrap_or_default();
        for g in &found {
            if s.send_as_groups.iter().any(|n| n.eq_ignore_ascii_case(&g.group.name)) {
                match g.mail.as_deref().map(Address::parse) {
                    Some(Ok(a)) if !send_as.contains(&a) => send_as.push(a),
                    Some(Ok(_)) => {}
                    _ => tracing::warn!(group = %g.group.dn, "a send-as group has no usable `mail`"),
                }
            }
        }
        Ok(Identity {
            login: Login::new(login),
            dn: entry.dn().to_owned(),
            display_name: entry.first(&s.display_name_attribute).unwrap_or(login).to_owned(),
            primary_address,
            aliases,
            send_as,
            groups: found.into_iter().map(|g| g.group).collect(),
            account: account_state(entry, now),
        })
    }

    /// The primary address (`mail`, else the `SMTP:` proxy address) and the
    /// aliases (every other SMTP address), each once.
    fn addresses(&self, entry: &Entry) -> (Option<Address>, Vec<Address>) {
        let s = &self.settings;
        let mut primary = entry.first(&s.mail_attribute).and_then(|m| parse_logged(entry, &s.mail_attribute, m));
        let mut others = Vec::new();
        for attribute in &s.alias_attributes {
            for value in entry.all(attribute) {
                let Some((is_primary, text)) = smtp_address(value) else { continue };
                let Some(address) = parse_logged(entry, attribute, text) else { continue };
                if is_primary && primary.is_none() {
                    primary = Some(address);
                } else {
                    others.push(address);
                }
            }
        }
        let mut aliases: Vec<Address> = Vec::new();
        for a in others {
            if primary.as_ref() != Some(&a) && !aliases.contains(&a) {
                aliases.push(a);
            }
        }
        (primary, aliases)
    }

    /// Direct groups (the entry's `memberOf`) first, then nested ones, each
    /// sorted by name; each group once.
    async fn groups_of(&self, entry: &Entry) -> Result<Vec<FoundGroup>> {
        let entries = match self.settings.group_membership {
            GroupMembership::TokenGroups => self.token_groups(entry.dn()).await?,
            // Validation allows only auto, in_chain and token_groups here.
            _ => self.in_chain_groups(entry.dn()).await?,
        };
        let direct: HashSet<String> = entry.all(MEMBER_OF).iter().map(|d| d.trim().to_lowercase()).collect();
        let mail_attribute = &self.settings.mail_attribute;
        let mut seen = HashSet::new();
        let mut found: Vec<FoundGroup> = entries
            .into_iter()
            .filter(|e| seen.insert(e.dn().to_lowercase()))
            .map(|e| FoundGroup {
                group: GroupRef {
                    dn: e.dn().to_owned(),
                    name: e.name(),
                    direct: direct.contains(&e.dn().trim().to_lowercase()),
                },
                mail: e.first(mail_attribute).map(str::to_owned),
            })
            .collect();
        found.sort_by(|a, b| b.group.direct.cmp(&a.group.direct).then_with(|| a.group.name.cmp(&b.group.name)));
        Ok(found)
    }

    fn group_attributes(&self) -> Vec<String> {
        vec![CN.into(), OBJECT_CLASS.into(), self.settings.mail_attribute.clone()]
    }

    /// Every group the DN is in, transitively, in one search.
    async fn in_chain_groups(&self, dn: &str) -> Result<Vec<Entry>> {
        let filter = format!("(&(objectClass={GROUP_CLASS})(member:{IN_CHAIN_OID}:={}))", escape::filter_value(dn));
        let entries = self.pool.search_all(&self.settings.group_base_dn, &filter, &self.group_attributes()).await?;
        Ok(entries.into_iter().map(Entry).collect())
    }

    /// The security groups in the user's `tokenGroups`, read by SID.
    async fn token_groups(&self, dn: &str) -> Result<Vec<Entry>> {
        let attrs = [TOKEN_GROUPS.to_owned()];
        let search =
            Search { base: dn, scope: Scope::Base, filter: "(objectClass=*)", attrs: &attrs, size_limit: None };
        let Some(user) = self.pool.search(&search).await?.into_iter().next() else { return Ok(Vec::new()) };
        let mut sids: Vec<Vec<u8>> = Vec::new();
        for (name, values) in &user.bin_attrs {
            if name.eq_ignore_ascii_case(TOKEN_GROUPS) {
                sids.extend(values.iter().cloned());
            }
        }
        for (name, values) in &user.attrs {
            // SIDs whose bytes happen to be valid UTF-8 arrive as text.
            if name.eq_ignore_ascii_case(TOKEN_GROUPS) {
                sids.extend(values.iter().map(|v| v.as_bytes().to_vec()));
            }
        }
        let mut out = Vec::new();
        for chunk in sids.chunks(SIDS_PER_FILTER) {
            let any: String = chunk.iter().map(|sid| format!("({OBJECT_SID}={})", escape_bytes(sid))).collect();
            let filter = format!("(&(objectClass={GROUP_CLASS})(|{any}))");
            let entries = self.pool.search_all(&self.settings.group_base_dn, &filter, &self.group_attributes()).await?;
            out.extend(entries.into_iter().map(Entry));
        }
        Ok(out)
    }

    /// Every user with account state, for the reminder scan (paged, no groups).
    pub async fn summaries(&self, now: OffsetDateTime) -> Result<Vec<UserSummary>> {
        let s = &self.settings;
        let attrs: Vec<String> =
            self.user_attributes.iter().filter(|a| !a.eq_ignore_ascii_case(MEMBER_OF)).cloned().collect();
        let entries = self.pool.search_all(&s.base_dn, &s.users_filter, &attrs).await?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries.into_iter().map(Entry) {
            let Some(login) = entry.first(&s.login_attribute) else { continue };
            out.push(UserSummary {
                login: Login::new(login),
                dn: entry.dn().to_owned(),
                display_name: entry.first(&s.display_name_attribute).unwrap_or(login).to_owned(),
                primary_address: self.addresses(&entry).0,
                account: account_state(&entry, now),
            });
        }
        Ok(out)
    }

    /// A distribution list from a group entry that has an address.
    pub fn list(&self, entry: &Entry) -> Option<DistributionList> {
        super::lookup::list_from(entry, &self.settings.mail_attribute)
    }

    /// Every group with an address.
    pub async fn lists(&self) -> Result<Vec<DistributionList>> {
        let s = &self.settings;
        let filter = format!("(&(objectClass={GROUP_CLASS})({}=*))", s.mail_attribute);
        let entries = self.pool.search_all(&s.group_base_dn, &filter, &self.group_attributes()).await?;
        Ok(entries.into_iter().filter_map(|e| self.list(&Entry(e))).collect())
    }
}

/// AD account state from an entry's attributes.
fn account_state(entry: &Entry, now: OffsetDateTime) -> crate::identity::AccountState {
    let a = AdAccountAttributes {
        user_account_control: entry.first(ad_account::USER_ACCOUNT_CONTROL),
        user_account_control_computed: entry.first(ad_account::USER_ACCOUNT_CONTROL_COMPUTED),
        lockout_time: entry.first(ad_account::LOCKOUT_TIME),
        account_expires: entry.first(ad_account::ACCOUNT_EXPIRES),
        pwd_last_set: entry.first(ad_account::PWD_LAST_SET),
        password_expiry_computed: entry.first(ad_account::PASSWORD_EXPIRY_COMPUTED),
    };
    ad_account::account_state(&a, now)
}

/// Reads one `proxyAddresses`-style value: `SMTP:a@b` (primary),
/// `smtp:a@b` (alias), a bare address (alias), or `None` for another
/// address type (`X500:/o=…`, `SIP:a@b`, `x400:c=…`).
pub fn smtp_address(value: &str) -> Option<(bool, &str)> {
    match value.split_once(':') {
        Some((kind, rest)) if kind.eq_ignore_ascii_case(SMTP_PREFIX_PRIMARY) => {
            Some((kind == SMTP_PREFIX_PRIMARY, rest))
        }
        // An address type is a short word; a colon inside an address
        // (quoted local parts) is left to the address parser.
        Some((kind, _)) if !kind.is_empty() && kind.len() <= 16 && kind.chars().all(|c| c.is_ascii_alphanumeric()) => {
            None
        }
        _ => Some((false, value)),
    }
}

fn parse_logged(entry: &Entry, attribute: &str, value: &str) -> Option<Address> {
    match Address::parse(value) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(dn = entry.dn(), attribute, error = %e, "ignoring an unusable address");
            None
        }
    }
}

/// Every value of a send-as attribute read as an address (`smtp:` prefixes allowed).
fn plain_addresses(entry: &Entry, attribute: &str) -> Vec<Address> {
    entry
        .all(attribute)
        .iter()
        .filter_map(|v| smtp_address(v))
        .filter_map(|(_, text)| parse_logged(entry, attribute, text))
        .collect()
}

/// A binary value as an RFC 4515 filter value: every byte `\xx`.
fn escape_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proxy_addresses() {
        let check = |v: &str, expected: Option<(bool, &str)>| assert_eq!(smtp_address(v), expected, "{v}");
        check("SMTP:alice@example.com", Some((true, "alice@example.com")));
        check("smtp:a.smith@example.com", Some((false, "a.smith@example.com")));
        check("Smtp:odd@example.com", Some((false, "odd@example.com")));
        check("X500:/o=Org/ou=Exchange/cn=Recipients/cn=alice", None);
        check("SIP:alice@example.com", None);
        check("x400:c=US;a= ;p=Org;o=Exchange;s=Smith;", None);
        check("alice@example.com", Some((false, "alice@example.com")));
        check("\"odd:local\"@example.com", Some((false, "\"odd:local\"@example.com")));
        check("", Some((false, "")));
    }

    #[test]
    fn sids_are_escaped_byte_by_byte() {
        assert_eq!(escape_bytes(&[0x01, 0x05, 0x00, 0x2a, 0xff]), "\\01\\05\\00\\2a\\ff");
    }

    proptest! {
        #[test]
        fn proxy_address_parsing_never_panics(v in "\\PC{0,40}") {
            let _ = smtp_address(&v);
        }
    }
}

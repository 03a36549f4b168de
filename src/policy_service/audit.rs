//! The policy audit trail: one record per refusal (or observed refusal),
//! kept in the store's `policy` log so `explain --ref` can show the full
//! decision later, on any instance that shares the store.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// The store log that holds policy decisions.
pub const AUDIT_LOG: &str = "policy";

/// Everything needed to answer "why was this refused?".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    pub reference: String,
    pub at: String,
    pub login: Option<String>,
    pub groups: Vec<String>,
    pub profiles: Vec<String>,
    pub stage: String,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub recipient_count: u32,
    pub size: u64,
    pub client_address: Option<String>,
    pub instance: Option<String>,
    pub queue_id: Option<String>,
    /// `accepted`, or the rule that refused.
    pub rule: String,
    /// The reply sent, without the reference: `550 5.7.1 …`, or `DUNNO`.
    pub reply: String,
    /// The profile (and group) whose field decided.
    pub decided_by: Option<String>,
    /// Refusals held back by observe mode: `would_reject rule: text`.
    pub observed: Vec<String>,
    /// Counter readings when rate limits were consulted: `name used/limit resets`.
    pub counters: Vec<String>,
}

/// A fresh 12-hex-digit reference.
pub fn new_reference() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

pub async fn record(store: &dyn Store, record: &AuditRecord, keep: usize) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Backend(e.to_string()))?;
    store.append(AUDIT_LOG, &bytes, keep).await
}

/// Finds a record by reference among the newest `scan` records.
pub async fn find(store: &dyn Store, reference: &str, scan: usize) -> Result<Option<AuditRecord>, StoreError> {
    let wanted = reference.trim().to_ascii_lowercase();
    for bytes in store.tail(AUDIT_LOG, scan).await? {
        if let Ok(r) = serde_json::from_slice::<AuditRecord>(&bytes) {
            if r.reference == wanted {
                return Ok(Some(r));
            }
        }
    }
    Ok(None)
}

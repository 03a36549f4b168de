//! `GET /v1/addresses/{address}`: who owns an address (a user, through
//! their primary address or an alias, or a distribution list) and who may
//! send as it.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::error::{ApiError, ApiPath};
use super::Caller;
use crate::config::http::Scope;
use crate::directory::AddressOwner;
use crate::http::HttpState;
use crate::identity::Address;

#[derive(Serialize)]
pub struct AddressView {
    pub address: String,
    /// `user`, `alias` (a user's secondary address) or `list`.
    pub kind: &'static str,
    /// The owning user's canonical login (`user`, `alias`).
    pub login: Option<String>,
    pub display_name: Option<String>,
    /// The list's name (`list`).
    pub list: Option<String>,
    pub dn: String,
    /// Logins the send-policy lets use this address as sender: the owner.
    /// Send-as grants live on the grantee's entry, so they show in
    /// `GET /v1/identities/{login}` (`send_as`), not here.
    pub may_send_as: Vec<String>,
}

pub async fn show(
    State(s): State<HttpState>,
    caller: Caller,
    ApiPath(address): ApiPath<String>,
) -> Result<Json<AddressView>, ApiError> {
    caller.require(Scope::Lookup)?;
    if address.len() > 320 {
        return Err(ApiError::invalid("address: at most 320 characters"));
    }
    let parsed = Address::parse(address.trim()).map_err(|e| ApiError::invalid(format!("address: {e}")))?;
    let owner =
        s.identities.directory().lookup_address(&parsed).await.map_err(|e| ApiError::unavailable("directory", &e))?;
    match owner {
        None => Err(ApiError::not_found("nobody owns this address")),
        Some(AddressOwner::User { identity }) => {
            let primary = identity.primary_address.as_ref().is_some_and(|p| p.same_mailbox(&parsed));
            Ok(Json(AddressView {
                address: parsed.to_string(),
                kind: if primary { "user" } else { "alias" },
                login: Some(identity.login.to_string()),
                display_name: Some(identity.display_name.clone()),
                list: None,
                dn: identity.dn.clone(),
                may_send_as: vec![identity.login.to_string()],
            }))
        }
        Some(AddressOwner::List { list }) => Ok(Json(AddressView {
            address: parsed.to_string(),
            kind: "list",
            login: None,
            display_name: None,
            list: Some(list.name.clone()),
            dn: list.dn.clone(),
            may_send_as: Vec::new(),
        })),
    }
}

//! One integration-test binary (links once): each module drives the
//! library or the built binary against real parts.

mod ad;
mod ad_auth;
mod ad_password;
mod ad_password_browser;
mod ad_policy;
mod ad_postfix;
mod auth_budgets;
mod auth_directory;
mod auth_enumeration;
mod auth_exim;
mod auth_postfix;
mod auth_protocol;
mod auth_reload;
mod auth_saslauthd;
mod auth_saslauthd_battery;
mod auth_stack;
mod auth_unlock;
mod cli;
mod config;
mod http_admin;
mod http_api;
mod ldap;
mod ldif;
mod milter_postfix;
mod milter_socket;
mod password_browser;
mod password_http;
mod password_ldif;
mod password_slapd;
mod policy_postfix;
mod policy_rig;
mod policy_socket;
mod postfix;
mod reminders;
mod store_redis;

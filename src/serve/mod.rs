//! `mailwarrant serve`: build the shared parts once, start every front end,
//! stop cleanly.
//!
//! Front ends (AUTH, policy, milter, HTTP) each get a clone of [`App`] and
//! a [`Shutdown`]; they own their sockets, the core owns the rules.

pub mod activation;
pub mod auth;
pub mod budget;
pub mod budget_plan;
pub mod notify;
pub mod reload;
pub mod shutdown;

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::audit_log::AuditLog;
use crate::config::{Config, StoreSettings};
use crate::directory::{self, Directory, DirectoryError};
use crate::identity::IdentityCache;
use crate::mailer::{Mailer, MailerError};
use crate::policy_service::PolicyService;
use crate::protocols::milter::listener::MilterListeners;
use crate::protocols::policy_delegation::listener::PolicyListeners;
use crate::reminders;
use crate::store::redis::RedisStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use activation::Inherited;
pub use shutdown::{Shutdown, ShutdownTrigger};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("directory: {0}")]
    Directory(#[from] DirectoryError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("mailer: {0}")]
    Mailer(#[from] MailerError),
    #[error("{0}")]
    Audit(#[from] crate::audit_log::AuditError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("{0}")]
    Budget(#[from] budget::BudgetError),
    #[error("cannot install the {0} handler: {1}")]
    Signal(&'static str, std::io::Error),
}

/// What every front end shares.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub directory: Arc<dyn Directory>,
    pub identities: IdentityCache,
    pub store: Arc<dyn Store>,
    /// The send-policy service, when `[policy]` is configured.
    pub policy: Option<PolicyService>,
    /// Present when `[mailer]` is configured.
    pub mailer: Option<Arc<Mailer>>,
    /// The JSON-lines decision log (`[audit]`); disabled when absent.
    pub audit: AuditLog,
}

impl App {
    /// Opens the directory and the store named in the config.
    pub async fn build(config: Config) -> Result<App, ServeError> {
        let directory = directory::open(&config.directory).await?;
        let store = open_store(&config.store)?;
        let identities = IdentityCache::new(directory.clone(), config.identity.clone());
        let audit = config.audit.as_ref().map(AuditLog::open).transpose()?.unwrap_or_default();
        let policy = config
            .policy
            .clone()
            .map(|p| PolicyService::new(p, identities.clone(), store.clone()).with_audit(audit.clone()));
        let mailer = config.mailer.as_ref().map(Mailer::new).transpose()?.map(Arc::new);
        Ok(App { config: Arc::new(config), directory, identities, store, mailer, policy, audit })
    }
}

/// Opens the configured store.
pub fn open_store(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        StoreSettings::Sqlite { path, synchronous } => Ok(Arc::new(SqliteStore::open_with(path, *synchronous)?)),
        // Connects on first use: mailwarrant starts while Redis is down.
        StoreSettings::Redis(redis) => Ok(Arc::new(RedisStore::open(redis)?)),
    }
}

/// Runs every front end until `shutdown` fires, then waits for them to
/// drain. Raises the open-file limit, fits every listener's cap into it,
/// takes the sockets systemd passed, and reloads on SIGHUP.
pub async fn run(app: App, shutdown: Shutdown) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup()).map_err(|e| ServeError::Signal("SIGHUP", e))?;
    let limit = budget::raise_descriptor_limit();
    let mut inherited = Inherited::from_env();
    let plan = budget_plan::Plan::new(&app.config, &inherited, limit)?;
    let mut front_ends: JoinSet<Result<(), ServeError>> = JoinSet::new();
    // Front ends register here, one line each.
    if let (Some(service), Some(listener)) = (&app.policy, plan.get("policy")) {
        front_ends.spawn(PolicyListeners::open(listener, &mut inherited)?.serve(service.clone(), shutdown.clone()));
    }
    if let (Some(service), Some(settings), Some(listener)) = (&app.policy, &app.config.milter, plan.get("milter")) {
        let milter = MilterListeners::open(settings, listener, &mut inherited)?;
        front_ends.spawn(milter.serve(service.clone(), shutdown.clone()));
    }
    let authenticator = auth::start(&app, &plan, &mut inherited, &shutdown, &mut front_ends)?;
    if app.config.reminders.is_some() {
        front_ends.spawn(reminders::schedule::run_daily(app.clone(), shutdown.clone()));
    }
    let mut certificate = None;
    if let (Some(http), Some(listener)) = (app.config.http.clone(), plan.get("http")) {
        let server = crate::http::HttpServer::open(&app, &http, listener, &mut inherited, Some(authenticator.clone()))?;
        certificate = server.certificate();
        front_ends.spawn(server.serve(shutdown.clone()));
    }
    if let Some(listener) = plan.get("ops") {
        front_ends.spawn(crate::http::HttpServer::open_ops(&app, listener, &mut inherited)?.serve(shutdown.clone()));
    }
    for name in inherited.leftover() {
        tracing::warn!(fd_name = %name, "a socket from systemd matches no configured front end; it is not served");
    }
    let reloader =
        reload::Reloader::new(app.config.clone(), authenticator.clone(), app.policy.clone(), app.identities.clone())
            .with_files(app.audit.clone(), certificate);
    front_ends.spawn(reload::on_sighup(hup, reloader, shutdown.clone()));

    tracing::info!(directory = app.directory.kind(), front_ends = front_ends.len(), "mailwarrant ready");
    notify::ready();
    let mut stop = shutdown.clone();
    let mut first_error = None;
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            done = front_ends.join_next(), if !front_ends.is_empty() => match done {
                Some(Ok(Err(e))) => { first_error = Some(e); break; }
                Some(Err(e)) => { tracing::error!(error = %e, "a front end stopped unexpectedly"); }
                _ => {}
            },
        }
    }
    tracing::info!("shutting down; draining connections");
    notify::stopping();
    while let Some(done) = front_ends.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "front end ended with an error during shutdown");
        }
    }
    first_error.map_or(Ok(()), Err)
}

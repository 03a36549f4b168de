//! Every Prometheus metric the service exports, and the one-line helpers
//! call sites use to feed them. Names are prefixed `mailwarrant_`.
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust
//! client): typed label sets, no global recorder to install before use
//! (so tests and benchmarks that never start `serve` still count), and
//! rendering straight into the `/metrics` handler, no second listener.
//! One process-wide registry: counters are cheap atomics behind a
//! read-locked map, fine on the hot path.
//!
//! Never a password, a token or a typed login in a label: labels are
//! protocol names, outcome/reason words and configured rule names only,
//! so cardinality stays bounded by the config.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Front-end names for [`observe_request`] (and the `front_end` of the
/// audit log).
pub const DOVECOT_AUTH: &str = "dovecot_auth";
pub const SASLAUTHD: &str = "saslauthd";
pub const POLICY: &str = "policy";
pub const MILTER: &str = "milter";
pub const HTTP: &str = "http";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    protocol: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    front_end: &'static str,
    rule: String,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabel {
    component: &'static str,
}

struct Metrics {
    registry: Registry,
    auth: Family<AuthLabels, Counter>,
    policy: Family<PolicyLabels, Counter>,
    latency: Family<ProtocolLabel, Histogram>,
    identity_cache: Family<ResultLabel, Counter>,
    health: Family<ComponentLabel, Gauge>,
    reminders: Counter,
    audit_dropped: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("mailwarrant");
    let auth = Family::<AuthLabels, Counter>::default();
    registry.register("auth_decisions", "AUTH decisions by front end, outcome and exact reason", auth.clone());
    let policy = Family::<PolicyLabels, Counter>::default();
    registry.register("policy_decisions", "Send-policy decisions by front end, rule and action", policy.clone());
    let latency = Family::<ProtocolLabel, Histogram>::new_with_constructor(|| {
        // 50 µs … ~13 s: cached answers to directory timeouts.
        Histogram::new(exponential_buckets(0.00005, 2.5, 14))
    });
    registry.register("request_duration_seconds", "Time to answer one request, per protocol", latency.clone());
    let identity_cache = Family::<ResultLabel, Counter>::default();
    registry.register(
        "identity_cache_lookups",
        "Identity cache lookups by result (hit, miss); the hit ratio is hit / (hit + miss)",
        identity_cache.clone(),
    );
    let health = Family::<ComponentLabel, Gauge>::default();
    registry.register("up", "1 when the component answered its last health check (directory, store)", health.clone());
    let reminders = Counter::default();
    registry.register("reminders_sent", "Password expiry reminders sent", reminders.clone());
    let audit_dropped = Counter::default();
    registry.register(
        "audit_lines_dropped",
        "Audit log lines dropped because the writer fell behind",
        audit_dropped.clone(),
    );
    Metrics { registry, auth, policy, latency, identity_cache, health, reminders, audit_dropped }
});

/// One AUTH decision (called once, in the AUTH core).
pub fn auth_decision(protocol: &'static str, outcome: &'static str, reason: &'static str) {
    METRICS.auth.get_or_create(&AuthLabels { protocol, outcome, reason }).inc();
}

/// One send-policy decision (called once, in `PolicyService`). `action`
/// is `accept`, `reject` or `defer`.
pub fn policy_decision(front_end: &'static str, rule: String, action: &'static str) {
    METRICS.policy.get_or_create(&PolicyLabels { front_end, rule, action }).inc();
}

/// How long a front end took to answer one request. For the milter:
/// `crate::metrics::observe_request(crate::metrics::MILTER, started.elapsed())`.
pub fn observe_request(protocol: &'static str, elapsed: Duration) {
    METRICS.latency.get_or_create(&ProtocolLabel { protocol }).observe(elapsed.as_secs_f64());
}

/// An identity cache lookup answered from memory (`hit`) or not.
pub fn identity_cache(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    METRICS.identity_cache.get_or_create(&ResultLabel { result }).inc();
}

/// The outcome of a health check of `component` (`directory`, `store`).
pub fn set_health(component: &'static str, up: bool) {
    METRICS.health.get_or_create(&ComponentLabel { component }).set(i64::from(up));
}

pub fn reminder_sent() {
    METRICS.reminders.inc();
}

pub fn audit_line_dropped() {
    METRICS.audit_dropped.inc();
}

/// The text exposition (OpenMetrics 1.0, which Prometheus scrapes as
/// `application/openmetrics-text`).
pub fn render() -> String {
    let mut out = String::with_capacity(8 * 1024);
    if prometheus_client::encoding::text::encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
    }
    out
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_prefixed_and_labels_rendered() {
        super::auth_decision("saslauthd", "refused", "invalid_credentials");
        super::observe_request(super::POLICY, std::time::Duration::from_millis(2));
        super::set_health("store", true);
        let text = super::render();
        assert!(text.contains(
            "mailwarrant_auth_decisions_total{protocol=\"saslauthd\",outcome=\"refused\",reason=\"invalid_credentials\"}"
        ));
        assert!(text.contains("mailwarrant_request_duration_seconds_bucket{"));
        assert!(text.contains("mailwarrant_up{component=\"store\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}

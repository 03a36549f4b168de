//! The JSON API, the operations endpoints and the audit log against the
//! test slapd: every endpoint in-process (`tower::ServiceExt::oneshot` on
//! the real router) and over real HTTP (`serve::run`, a plain HTTP
//! client): status codes, bodies, token scopes, the error shape for bad
//! JSON and oversized bodies, `/metrics` through a Prometheus text parser,
//! `/readyz` turning 503 when slapd stops, and the OpenAPI document
//! against the router's routes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use mailwarrant::auth::Authenticator;
use mailwarrant::config::Config;
use mailwarrant::http::{self, HttpState};
use mailwarrant::serve::{self, App, ShutdownTrigger};
use mailwarrant::testkit::slapd::Slapd;
use mailwarrant::testkit::{free_port, wait_for_port};
use serde_json::{json, Value};
use tower::ServiceExt;

pub const AUTH_TOKEN: &str = "mw-test-auth-7b1f0c";
pub const LOOKUP_TOKEN: &str = "mw-test-lookup-29ad44";
pub const ADMIN_TOKEN: &str = "mw-test-admin-e3c990";

pub struct Rig {
    pub slapd: Slapd,
    pub dir: tempfile::TempDir,
    pub _app: App,
    pub router: Router,
    /// `http://127.0.0.1:PORT` of the running listener.
    pub base: String,
    _stop: ShutdownTrigger,
}

fn hash(token: &str) -> String {
    mailwarrant::directory::ldif::password::hash(token.as_bytes()).unwrap()
}

/// slapd, a config with policy, three tokens and an audit file, the
/// router in-process, and `serve::run` on a free port.
pub async fn rig() -> Rig {
    rig_with(false).await
}

/// A self-signed certificate for 127.0.0.1 (`cert.pem`, `key.pem` in `dir`).
fn self_signed(dir: &Path) {
    let status = std::process::Command::new("/usr/bin/openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
}

async fn rig_with(tls: bool) -> Rig {
    let slapd = tokio::task::spawn_blocking(Slapd::start).await.unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tls_keys = if tls {
        mailwarrant::testkit::require_package("openssl").unwrap();
        self_signed(dir.path());
        format!("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\npublic_base_url = \"https://127.0.0.1:{port}\"\n")
    } else {
        String::new()
    };
    let text = format!(
        "{}\n[auth]\nfailure_delay = \"0s\"\n[auth.dovecot]\nlisten = []\n[auth.saslauthd]\nunix_socket = \"mux\"\n[store]\npath = \"s.sqlite\"\n\
         [audit]\npath = \"audit.jsonl\"\n\
         [policy]\nlisten = \"127.0.0.1:0\"\nunix_socket = \"policy.sock\"\norganisation_domains = [\"example.com\"]\ngroups = {{ sales = \"sales\" }}\n\
         [policy.profiles.default]\nrequire_sender_match = true\nmay_send_to_lists = false\n\
         rate_limits = [{{ rate = \"3/1d\" }}]\n[policy.profiles.sales]\npriority = 1\nmay_send_to_lists = true\n\
         [password]\ndefault_policy = \"test\"\n[password.policies.test]\nmin_length = 12\nhistory = 3\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\nadmin_group = \"it-admins\"\n{tls_keys}\
         [[http.tokens]]\nname = \"mx\"\nhash = \"{}\"\nscopes = [\"auth\"]\n\
         [[http.tokens]]\nname = \"webmail\"\nhash = \"{}\"\nscopes = [\"lookup\"]\n\
         [[http.tokens]]\nname = \"ops\"\nhash = \"{}\"\nscopes = [\"admin\"]\n",
        slapd.config_toml(),
        hash(AUTH_TOKEN),
        hash(LOOKUP_TOKEN),
        hash(ADMIN_TOKEN),
    );
    let config = Config::from_toml(&text, dir.path(), Path::new("http-api.toml")).unwrap_or_else(|e| panic!("{e}"));
    let app = App::build(config).await.unwrap();
    let settings = app.config.http.clone().unwrap();
    let auth = std::sync::Arc::new(
        Authenticator::new(app.identities.clone(), app.store.clone(), app.config.auth.clone())
            .with_audit(app.audit.clone()),
    );
    let router = http::router(HttpState::from_app(&app, &settings, Some(auth)));
    let (stop, shutdown) = serve::shutdown::channel();
    tokio::spawn(serve::run(app.clone(), shutdown));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    tokio::task::spawn_blocking(move || wait_for_port(addr, Duration::from_secs(10))).await.unwrap().unwrap();
    let scheme = if tls { "https" } else { "http" };
    Rig { slapd, dir, _app: app, router, base: format!("{scheme}://127.0.0.1:{port}"), _stop: stop }
}

impl Rig {
    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }
}

/// One in-process request: status and JSON body (`Value::Null` when the
/// body is not JSON; then `text` holds it).
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
    pub headers: axum::http::HeaderMap,
}

pub async fn call(router: &Router, method: Method, uri: &str, token: Option<&str>, body: Option<Body>) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let has_body = body.is_some();
    if has_body {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(body.unwrap_or_else(Body::empty)).unwrap();
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer { status, json: serde_json::from_str(&text).unwrap_or(Value::Null), text, headers }
}

fn json_body(v: Value) -> Option<Body> {
    Some(Body::from(v.to_string()))
}

/// The error shape with `code`.
#[track_caller]
fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.text);
    assert_eq!(a.json["error"]["code"], code, "{}", a.text);
    assert!(a.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", a.text);
    assert_eq!(a.json.as_object().unwrap().len(), 1, "only `error` at the top: {}", a.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_every_endpoint_in_process() {
    let r = rig().await;
    let rt = &r.router;
    let get = |uri: &'static str, token: Option<&'static str>| call(rt, Method::GET, uri, token, None);

    // Tokens and scopes.
    let a = get("/v1/identities/alice", None).await;
    assert_error(&a, 401, "unauthenticated");
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    assert_error(&get("/v1/identities/alice", Some("not-a-token")).await, 401, "unauthenticated");
    assert_error(&get("/v1/identities/alice", Some(AUTH_TOKEN)).await, 403, "forbidden");
    assert_error(&get("/v1/refusals", Some(LOOKUP_TOKEN)).await, 403, "forbidden");
    let body = json!({"login": "alice", "password": "Alice-Demo-2026!"});
    assert_error(
        &call(rt, Method::POST, "/v1/auth", Some(LOOKUP_TOKEN), json_body(body.clone())).await,
        403,
        "forbidden",
    );

    // POST /v1/auth: the AUTH core's decision.
    let ok = call(
        rt,
        Method::POST,
        "/v1/auth",
        Some(AUTH_TOKEN),
        json_body(json!({
            "login": "Alice", "password": "Alice-Demo-2026!", "client_address": "192.0.2.7", "service": "smtp"
        })),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json, json!({"outcome": "accepted", "login": "alice", "message": ""}));
    let bad = call(
        rt,
        Method::POST,
        "/v1/auth",
        Some(ADMIN_TOKEN),
        json_body(json!({
            "login": "alice", "password": "Wrong-Password-1", "client_address": "192.0.2.7"
        })),
    )
    .await;
    assert_eq!(bad.status, 200);
    assert_eq!(bad.json["outcome"], "refused");
    assert_eq!(bad.json["login"], Value::Null, "a refusal does not confirm the login");
    // Through the throttle a known and an unknown login answer alike,
    // attempt by attempt; "try later" is a 503 with Retry-After.
    let mut seen = Vec::new();
    for (login, ip) in [("bob", "192.0.2.31"), ("nobody", "192.0.2.32")] {
        let mut answers = Vec::new();
        for i in 0..6 {
            let body = json!({"login": login, "password": format!("Wrong-{i}"), "client_address": ip});
            let a = call(rt, Method::POST, "/v1/auth", Some(AUTH_TOKEN), json_body(body)).await;
            answers.push((a.status, a.json, a.headers.get("retry-after").cloned()));
        }
        seen.push(answers);
    }
    assert_eq!(seen[0], seen[1], "bob and nobody read differently");
    let last = seen[0].last().unwrap();
    assert_eq!((last.0, last.1["outcome"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("temporary")));
    assert!(last.2.is_some(), "Retry-After is set");
    let bad_ip = call(
        rt,
        Method::POST,
        "/v1/auth",
        Some(AUTH_TOKEN),
        json_body(json!({
            "login": "alice", "password": "x", "client_address": "not-an-ip"
        })),
    )
    .await;
    assert_error(&bad_ip, 400, "invalid_request");

    // GET /v1/identities/{login}
    let alice = get("/v1/identities/alice", Some(LOOKUP_TOKEN)).await;
    assert_eq!(alice.status, 200, "{}", alice.text);
    assert_eq!(alice.json["login"], "alice");
    assert_eq!(alice.json["primary_address"], "alice@example.com");
    assert_eq!(alice.json["aliases"], json!(["a.smith@example.com"]));
    let groups = alice.json["groups"].as_array().unwrap();
    assert!(groups.iter().any(|g| g["name"] == "sales" && g["direct"] == true), "{groups:?}");
    assert!(groups.iter().any(|g| g["name"] == "staff" && g["direct"] == false), "nested: {groups:?}");
    assert_eq!(alice.json["account"]["status"], "active");
    assert!(alice.json["account"]["password_changed_at"].is_string());
    assert_error(&get("/v1/identities/nobody", Some(LOOKUP_TOKEN)).await, 404, "not_found");
    assert_error(&get("/v1/identities/%20", Some(LOOKUP_TOKEN)).await, 400, "invalid_request");

    // GET /v1/addresses/{address}
    let owner = get("/v1/addresses/a.smith@example.com", Some(LOOKUP_TOKEN)).await;
    assert_eq!(owner.status, 200, "{}", owner.text);
    assert_eq!(owner.json["kind"], "alias");
    assert_eq!(owner.json["login"], "alice");
    assert_eq!(owner.json["may_send_as"], json!(["alice"]));
    assert_eq!(get("/v1/addresses/alice@example.com", Some(LOOKUP_TOKEN)).await.json["kind"], "user");
    let list = get("/v1/addresses/all-staff@example.com", Some(LOOKUP_TOKEN)).await;
    assert_eq!((list.json["kind"].as_str(), list.json["list"].as_str()), (Some("list"), Some("all-staff")));
    assert_error(&get("/v1/addresses/nobody@example.com", Some(LOOKUP_TOKEN)).await, 404, "not_found");
    assert_error(&get("/v1/addresses/not-an-address", Some(LOOKUP_TOKEN)).await, 400, "invalid_request");

    // GET /v1/identities/{login}/policy
    let policy = get("/v1/identities/bob/policy", Some(LOOKUP_TOKEN)).await;
    assert_eq!(policy.status, 200, "{}", policy.text);
    assert_eq!(policy.json["profiles"], json!(["profile default"]));
    assert_eq!(policy.json["counters"][0]["used"], 0);
    assert_eq!(policy.json["counters"][0]["limit"], 3);
    assert!(policy.json["counters"][0]["resets_at"].is_string());
    let sales = get("/v1/identities/alice/policy", Some(LOOKUP_TOKEN)).await;
    let field =
        sales.json["fields"].as_array().unwrap().iter().find(|f| f["field"] == "may_send_to_lists").unwrap().clone();
    assert_eq!(field, json!({"field": "may_send_to_lists", "value": "true", "profile": "sales", "group": "sales"}));
    assert_error(&get("/v1/identities/nobody/policy", Some(LOOKUP_TOKEN)).await, 404, "not_found");

    // POST /v1/policy/check: a dry run charges nothing, a real one once.
    let message = json!({"login": "bob", "sender": "bob@example.com", "recipients": ["carol@example.com", "x@example.net"],
                         "size": 2048, "attachments": 1, "client_address": "192.0.2.9"});
    let dry =
        call(rt, Method::POST, "/v1/policy/check?dry_run=true", Some(LOOKUP_TOKEN), json_body(message.clone())).await;
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_eq!((dry.json["action"].as_str(), dry.json["dry_run"].as_bool()), (Some("accept"), Some(true)));
    let stages: Vec<&str> =
        dry.json["steps"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["rcpt", "rcpt", "data", "end_of_message"]);
    assert_eq!(get("/v1/identities/bob/policy", Some(LOOKUP_TOKEN)).await.json["counters"][0]["used"], 0);
    let real = call(rt, Method::POST, "/v1/policy/check", Some(LOOKUP_TOKEN), json_body(message.clone())).await;
    assert_eq!(real.json["action"], "accept", "{}", real.text);
    assert_eq!(
        get("/v1/identities/bob/policy", Some(LOOKUP_TOKEN)).await.json["counters"][0]["used"],
        1,
        "one message, charged once"
    );
    let forged = json!({"login": "bob", "sender": "alice@example.com", "recipients": ["carol@example.com"]});
    let refused = call(rt, Method::POST, "/v1/policy/check", Some(LOOKUP_TOKEN), json_body(forged)).await;
    assert_eq!(refused.json["action"], "reject", "{}", refused.text);
    assert_eq!(refused.json["rule"], "sender_match");
    assert!(refused.json["reply"].as_str().unwrap().starts_with("553 5.7.1"));
    let reference = refused.json["reference"].as_str().expect("a refusal has a reference").to_owned();
    assert_eq!(refused.json["steps"].as_array().unwrap().len(), 1, "stops at the first refusal");
    let list = json!({"login": "bob", "sender": "bob@example.com", "recipients": ["all-staff@example.com"]});
    let to_list = call(rt, Method::POST, "/v1/policy/check?dry_run=true", Some(LOOKUP_TOKEN), json_body(list)).await;
    assert_eq!((to_list.json["action"].as_str(), to_list.json["reference"].is_null()), (Some("reject"), true));
    let empty = json!({"login": "bob", "sender": "bob@example.com", "recipients": []});
    assert_error(
        &call(rt, Method::POST, "/v1/policy/check", Some(LOOKUP_TOKEN), json_body(empty)).await,
        400,
        "invalid_request",
    );
    assert_error(
        &call(rt, Method::POST, "/v1/policy/check?dry_run=maybe", Some(LOOKUP_TOKEN), json_body(message)).await,
        400,
        "invalid_request",
    );

    // GET /v1/refusals (admin)
    let refusals = get("/v1/refusals", Some(ADMIN_TOKEN)).await;
    assert_eq!(refusals.status, 200, "{}", refusals.text);
    assert_eq!(refusals.json[0]["reference"], reference.as_str(), "newest first");
    assert_eq!(refusals.json[0]["login"], "bob");

    // POST /v1/passwords/check: lookup skips history, admin checks it.
    let weak = json!({"login": "carol", "password": "short"});
    let live = call(rt, Method::POST, "/v1/passwords/check", Some(LOOKUP_TOKEN), json_body(weak.clone())).await;
    assert_eq!(live.status, 200, "{}", live.text);
    let verdict = |a: &Answer, rule: &str| {
        a.json["verdicts"].as_array().unwrap().iter().find(|v| v["rule"] == rule).map(|v| v["outcome"].clone())
    };
    assert_eq!(verdict(&live, "min_length"), Some(json!("fail")));
    assert_eq!(verdict(&live, "history"), Some(json!("not_checked")));
    let full = call(rt, Method::POST, "/v1/passwords/check", Some(ADMIN_TOKEN), json_body(weak)).await;
    assert_eq!(full.status, 200, "{}", full.text);
    assert_ne!(verdict(&full, "history"), Some(json!("not_checked")));
    let nobody = json!({"login": "nobody", "password": "Vivid-Cactus-Lantern-97"});
    assert_error(
        &call(rt, Method::POST, "/v1/passwords/check", Some(ADMIN_TOKEN), json_body(nobody)).await,
        404,
        "not_found",
    );

    // Malformed requests get the error shape.
    let raw = |text: &'static str| Some(Body::from(text));
    assert_error(&call(rt, Method::POST, "/v1/auth", Some(AUTH_TOKEN), raw("{\"login\": ")).await, 400, "bad_json");
    assert_error(&call(rt, Method::POST, "/v1/auth", Some(AUTH_TOKEN), raw("[1,2]")).await, 400, "bad_json");
    assert_error(
        &call(rt, Method::POST, "/v1/auth", Some(AUTH_TOKEN), raw("{\"login\":\"a\",\"password\":\"b\",\"x\":1}"))
            .await,
        400,
        "bad_json",
    );
    assert_error(
        &call(rt, Method::POST, "/v1/passwords/check", Some(LOOKUP_TOKEN), raw("\u{ff}")).await,
        400,
        "bad_json",
    );
    let huge = format!("{{\"login\":\"alice\",\"password\":\"{}\"}}", "a".repeat(20_000));
    assert_error(
        &call(rt, Method::POST, "/v1/auth", Some(AUTH_TOKEN), Some(Body::from(huge))).await,
        413,
        "payload_too_large",
    );
    let plain = Request::post("/v1/auth")
        .header("authorization", format!("Bearer {AUTH_TOKEN}"))
        .body(Body::from("{}"))
        .unwrap();
    let plain = rt.clone().oneshot(plain).await.unwrap();
    assert_eq!(plain.status(), 415);
    assert_error(&get("/v1/nothing-here", Some(ADMIN_TOKEN)).await, 404, "not_found");
    assert_error(&call(rt, Method::DELETE, "/v1/auth", Some(ADMIN_TOKEN), None).await, 405, "method_not_allowed");

    // Operations.
    let health = get("/healthz", None).await;
    assert_eq!((health.status.as_u16(), &health.json), (200, &json!({"status": "ok"})));
    let ready = get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json, json!({"status": "ok"}), "anonymous callers learn ready or not, nothing more");
    let ready = get("/readyz", Some(LOOKUP_TOKEN)).await;
    assert_eq!(ready.json, json!({"status": "ok", "directory": "ok", "store": "ok"}));
    let metrics = get("/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let families = parse_metrics(&metrics.text);
    let sample = |name: &str, labels: &[(&str, &str)]| -> f64 {
        families
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert!(
        sample(
            "mailwarrant_auth_decisions_total",
            &[("protocol", "http"), ("outcome", "accepted"), ("reason", "verified")]
        ) >= 1.0
    );
    assert!(
        sample("mailwarrant_auth_decisions_total", &[("protocol", "http"), ("reason", "invalid_credentials")]) >= 1.0
    );
    assert!(
        sample(
            "mailwarrant_policy_decisions_total",
            &[("front_end", "http"), ("rule", "sender_match"), ("action", "reject")]
        ) >= 1.0
    );
    assert!(sample("mailwarrant_identity_cache_lookups_total", &[("result", "hit")]) >= 1.0);
    assert!(sample("mailwarrant_identity_cache_lookups_total", &[("result", "miss")]) >= 1.0);
    assert_eq!(sample("mailwarrant_up", &[("component", "directory")]), 1.0);
    assert_eq!(sample("mailwarrant_up", &[("component", "store")]), 1.0);
    assert!(
        families
            .samples
            .iter()
            .any(|s| s.metric == "mailwarrant_request_duration_seconds_count"
                && s.labels.get("protocol") == Some("http")),
        "latency histogram per protocol"
    );

    // The audit file: one JSON line per decision, never a password.
    let path = r.audit_path();
    assert!(tokio::task::spawn_blocking(move || mailwarrant::testkit::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.contains("sender_match"))
    }))
    .await
    .unwrap());
    let text = std::fs::read_to_string(r.audit_path()).unwrap();
    assert!(!text.contains("Alice-Demo-2026!") && !text.contains("Wrong-Password-1") && !text.contains("\"short\""));
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    let auth_ok = lines.iter().find(|l| l["kind"] == "auth" && l["outcome"] == "accepted").expect("the accepted AUTH");
    assert_eq!(
        (auth_ok["front_end"].as_str(), auth_ok["login"].as_str(), auth_ok["client"].as_str()),
        (Some("http"), Some("alice"), Some("192.0.2.7"))
    );
    assert_eq!(auth_ok["rule"], "verified");
    let refusal = lines.iter().find(|l| l["kind"] == "policy" && l["outcome"] == "reject").expect("the policy refusal");
    assert_eq!(
        (refusal["rule"].as_str(), refusal["reference"].as_str()),
        (Some("sender_match"), Some(reference.as_str()))
    );
    assert!(
        lines.iter().filter(|l| l["kind"] == "policy" && l["outcome"] == "accept").count() >= 4,
        "accepts are audited too"
    );
    assert!(lines.iter().all(|l| l["time"].is_string()));
}

pub fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_openapi_document_matches_the_router() {
    let r = rig().await;
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.json")).unwrap(),
    )
    .unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let mut routed: Vec<(String, String)> = http::api::table()
        .into_iter()
        .chain(http::ops::table())
        .map(|(m, p, _)| (m.to_owned(), p.to_owned()))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed, "schemas/openapi.json lists exactly the router's API routes");
    // And each one really answers (not the fallback, not 405).
    for (method, path) in &routed {
        let uri = path.replace("{login}", "alice").replace("{address}", "alice@example.com");
        let a = call(&r.router, method.parse().unwrap(), &uri, None, None).await;
        assert!(a.status != 404 && a.status != 405, "{method} {uri}: {}", a.status);
    }
}

fn ureq_reply(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("HTTP request failed: {e}"),
    };
    let status = response.status();
    (status, response.into_json().unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_over_real_http_and_readyz_follows_slapd() {
    let mut r = rig().await;
    let base = r.base.clone();
    let replies = tokio::task::block_in_place(|| {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
        let bearer = |t: &str| format!("Bearer {t}");
        let get = |path: &str, token: &str| {
            ureq_reply(agent.get(&format!("{base}{path}")).set("Authorization", &bearer(token)).call())
        };
        let post = |path: &str, token: &str, body: Value| {
            ureq_reply(agent.post(&format!("{base}{path}")).set("Authorization", &bearer(token)).send_json(body))
        };
        vec![
            post("/v1/auth", AUTH_TOKEN, json!({"login": "bob", "password": "Bob-Demo-2026!"})),
            get("/v1/identities/bob", LOOKUP_TOKEN),
            get("/v1/identities/bob", AUTH_TOKEN),
            get("/v1/addresses/bob@example.com", LOOKUP_TOKEN),
            get("/v1/identities/bob/policy", LOOKUP_TOKEN),
            post(
                "/v1/policy/check?dry_run=true",
                LOOKUP_TOKEN,
                json!({"login": "bob", "sender": "bob@example.com", "recipients": ["carol@example.com"]}),
            ),
            post("/v1/passwords/check", LOOKUP_TOKEN, json!({"login": "bob", "password": "Vivid-Cactus-Lantern-97"})),
            get("/v1/refusals", LOOKUP_TOKEN),
            get("/v1/refusals", ADMIN_TOKEN),
            ureq_reply(agent.get(&format!("{base}/v1/identities/bob")).call()),
            ureq_reply(
                agent
                    .post(&format!("{base}/v1/auth"))
                    .set("Authorization", &bearer(AUTH_TOKEN))
                    .set("Content-Type", "application/json")
                    .send_string("{nope"),
            ),
            ureq_reply(
                agent
                    .post(&format!("{base}/v1/auth"))
                    .set("Authorization", &bearer(AUTH_TOKEN))
                    .set("Content-Type", "application/json")
                    .send_string(&"x".repeat(100_000)),
            ),
            ureq_reply(agent.get(&format!("{base}/healthz")).call()),
            ureq_reply(agent.get(&format!("{base}/readyz")).call()),
        ]
    });
    let statuses: Vec<u16> = replies.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 403, 200, 200, 200, 200, 403, 200, 401, 400, 413, 200, 200], "{replies:?}");
    assert_eq!(replies[0].1["outcome"], "accepted");
    assert_eq!(replies[1].1["login"], "bob");
    assert_eq!(replies[2].1["error"]["code"], "forbidden");
    assert_eq!(replies[3].1["kind"], "user");
    assert_eq!(replies[4].1["login"], "bob");
    assert_eq!(replies[5].1["action"], "accept");
    assert!(replies[6].1["verdicts"].is_array());
    assert_eq!(replies[9].1["error"]["code"], "unauthenticated");
    assert_eq!(replies[10].1["error"]["code"], "bad_json");
    assert_eq!(replies[11].1["error"]["code"], "payload_too_large");

    // /metrics over HTTP parses too.
    let base = r.base.clone();
    let text =
        tokio::task::block_in_place(|| ureq::get(&format!("{base}/metrics")).call().unwrap().into_string().unwrap());
    assert!(parse_metrics(&text).samples.iter().any(|s| s.metric == "mailwarrant_auth_decisions_total"));

    // slapd stops: /readyz names the directory; it comes back with slapd.
    r.slapd.stop();
    let base = r.base.clone();
    let (status, body) = tokio::task::block_in_place(|| {
        // The answer of the last second may still be served.
        std::thread::sleep(mailwarrant::http::ops::READY_REUSE);
        ureq_reply(ureq::get(&format!("{base}/readyz")).set("Authorization", &format!("Bearer {LOOKUP_TOKEN}")).call())
    });
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert!(body["directory"].as_str().unwrap().starts_with("error"), "{body}");
    assert_eq!(body["store"], "ok");
    let down =
        tokio::task::block_in_place(|| ureq::get(&format!("{base}/metrics")).call().unwrap().into_string().unwrap());
    assert!(down.contains("mailwarrant_up{component=\"directory\"} 0"), "the gauge follows");
    tokio::task::spawn_blocking(move || {
        r.slapd.start_again().unwrap();
        let ready = mailwarrant::testkit::wait_until(Duration::from_secs(20), || {
            ureq_reply(ureq::get(&format!("{base}/readyz")).call()).0 == 200
        });
        assert!(ready, "ready again once slapd is back");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_over_https_with_rustls() {
    mailwarrant::testkit::require_package("curl").unwrap();
    let r = rig_with(true).await;
    let cert = r.dir.path().join("cert.pem");
    let curl = |url: String, verify: bool| {
        let mut c = std::process::Command::new("/usr/bin/curl");
        c.args(["-sS", "--max-time", "10", "-w", "\\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {LOOKUP_TOKEN}"));
        if verify {
            c.arg("--cacert").arg(&cert);
        }
        let out = c.arg(url).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let base = r.base.clone();
    let (ok, body) = tokio::task::block_in_place(|| curl(format!("{base}/v1/identities/alice"), true));
    assert!(ok, "{body}");
    let (json, status) = body.rsplit_once('\n').unwrap();
    assert_eq!(status, "200");
    assert_eq!(serde_json::from_str::<Value>(json).unwrap()["login"], "alice");
    let (ok, _) = tokio::task::block_in_place(|| curl(format!("{base}/healthz"), false));
    assert!(!ok, "an unverified certificate is refused by curl: the listener really speaks TLS");
    let plain = base.replace("https://", "http://");
    let (_, body) = tokio::task::block_in_place(|| curl(format!("{plain}/healthz"), true));
    assert!(!body.contains("\"ok\""), "no plain HTTP on the TLS port: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_audit_log_and_metrics_cover_the_socket_front_ends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = rig().await;
    // saslauthd: four counted strings.
    let mut sasl = tokio::net::UnixStream::connect(r.dir.path().join("mux")).await.unwrap();
    let mut request = Vec::new();
    for field in ["bob", "Bob-Demo-2026!", "smtp", ""] {
        request.extend_from_slice(&(field.len() as u16).to_be_bytes());
        request.extend_from_slice(field.as_bytes());
    }
    sasl.write_all(&request).await.unwrap();
    let mut reply = Vec::new();
    sasl.read_to_end(&mut reply).await.unwrap();
    assert_eq!(&reply[2..4], b"OK", "{:?}", String::from_utf8_lossy(&reply));
    // Postfix policy delegation over the UNIX socket: a refused RCPT.
    let mut policy = tokio::net::UnixStream::connect(r.dir.path().join("policy.sock")).await.unwrap();
    policy
        .write_all(b"request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username=erin\nsender=bob@example.com\nrecipient=carol@example.com\nclient_address=192.0.2.44\n\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 512];
    let n = policy.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("action=553 5.7.1"), "{answer}");

    let path = r.audit_path();
    assert!(tokio::task::spawn_blocking(move || mailwarrant::testkit::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.contains("\"front_end\":\"policy\""))
    }))
    .await
    .unwrap());
    let text = std::fs::read_to_string(r.audit_path()).unwrap();
    assert!(!text.contains("Bob-Demo-2026!"), "no password in the audit log");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sasl_line = lines.iter().find(|l| l["front_end"] == "saslauthd").expect("the saslauthd decision");
    assert_eq!(
        (sasl_line["kind"].as_str(), sasl_line["login"].as_str(), sasl_line["outcome"].as_str()),
        (Some("auth"), Some("bob"), Some("accepted"))
    );
    let policy_line = lines.iter().find(|l| l["front_end"] == "policy").expect("the policy decision");
    assert_eq!(
        (policy_line["rule"].as_str(), policy_line["client"].as_str(), policy_line["stage"].as_str()),
        (Some("sender_match"), Some("192.0.2.44"), Some("Rcpt"))
    );
    assert!(policy_line["reference"].as_str().is_some_and(|r| answer.contains(r)), "the reference the client saw");

    let metrics = call(&r.router, Method::GET, "/metrics", None, None).await;
    let scrape = parse_metrics(&metrics.text);
    for protocol in ["saslauthd", "policy"] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == "mailwarrant_request_duration_seconds_count"
                && s.labels.get("protocol") == Some(protocol)),
            "latency of {protocol}"
        );
    }
    assert!(scrape.samples.iter().any(|s| s.metric == "mailwarrant_policy_decisions_total"
        && s.labels.get("front_end") == Some("policy")
        && s.labels.get("rule") == Some("sender_match")));
}

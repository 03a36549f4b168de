//! An administrator's unlock of a login's AUTH failure budget, through each
//! surface: `mailwarrant unlock` (the built binary) and `POST
//! /v1/identities/{login}/unlock` against servers sharing one real Redis,
//! and the Unlock button of the admin page in headless Chromium
//! (screenshots under `<target>/test-output/admin-unlock/`). Each spends
//! carol's budget with wrong passwords, sees the right one answered "try
//! later" (too_many_failures_for_login), unlocks, and sees the right
//! password reach the directory again (verified), on another instance
//! than the one unlocked through; and each finds the audit trail.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use mailwarrant::auth::{AuthRequest, Authenticator, DecisionKind, Protocol, Reason};
use mailwarrant::config::Config;
use mailwarrant::password::change::AUDIT_LOG;
use mailwarrant::serve::{self, App, ShutdownTrigger};
use mailwarrant::store::Store;
use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::redis::RedisServer;
use mailwarrant::testkit::slapd::Slapd;
use mailwarrant::testkit::{free_port, wait_for_port, wait_until};
use secrecy::SecretString;
use serde_json::Value;

use crate::http_api::{rig, ADMIN_TOKEN};
use crate::password_browser::Browser;

const HELPDESK_TOKEN: &str = "mw-unlock-helpdesk-5c21";
const WEBMAIL_TOKEN: &str = "mw-unlock-webmail-90af";
const CAROL: &str = "Carol-Demo-2026!";

/// `[auth.throttle] per_login` of the Redis servers.
const PER_LOGIN: usize = 3;

/// A started `serve::run` (Dovecot auth on TCP, an audit file, and with
/// `http` the API with a `helpdesk` admin token and a `webmail` lookup
/// token) on its own runtime; stops when dropped.
struct Server {
    dir: tempfile::TempDir,
    config: PathBuf,
    dovecot: SocketAddr,
    http: Option<String>,
    store: Arc<dyn Store>,
    runtime: Option<tokio::runtime::Runtime>,
    trigger: Option<ShutdownTrigger>,
}

fn hash(token: &str) -> String {
    mailwarrant::directory::ldif::password::hash(token.as_bytes()).unwrap()
}

impl Server {
    fn start(directory: &str, store: &str, http: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let dovecot_port = free_port();
        let http_port = free_port();
        let http_toml = if http {
            format!(
                "[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
                 [[http.tokens]]\nname = \"helpdesk\"\nhash = \"{}\"\nscopes = [\"admin\"]\n\
                 [[http.tokens]]\nname = \"webmail\"\nhash = \"{}\"\nscopes = [\"lookup\"]\n",
                hash(HELPDESK_TOKEN),
                hash(WEBMAIL_TOKEN)
            )
        } else {
            String::new()
        };
        // The budget per (login, network) is larger than the login's, so
        // one test client spends the login's (the one an unlock clears).
        let text = format!(
            "{directory}\n{store}\n[auth]\nfailure_delay = \"0s\"\n\
             [auth.throttle]\nper_login = {PER_LOGIN}\nper_login_client = 10\n\
             [auth.dovecot]\nlisten = [\"127.0.0.1:{dovecot_port}\"]\ntemp_fail = \"fail_code\"\n\
             [audit]\npath = \"audit.jsonl\"\n{http_toml}"
        );
        let config = dir.path().join("mailwarrant.toml");
        std::fs::write(&config, text).unwrap();
        let loaded = Config::load(&config).unwrap_or_else(|e| panic!("{e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let app = runtime.block_on(App::build(loaded)).expect("mailwarrant builds");
        let store = app.store.clone();
        let (trigger, shutdown) = serve::shutdown::channel();
        runtime.spawn(async move {
            if let Err(e) = serve::run(app, shutdown).await {
                eprintln!("serve ended: {e}");
            }
        });
        let dovecot = SocketAddr::from(([127, 0, 0, 1], dovecot_port));
        wait_for_port(dovecot, Duration::from_secs(10)).unwrap();
        let http = http.then(|| {
            wait_for_port(SocketAddr::from(([127, 0, 0, 1], http_port)), Duration::from_secs(10)).unwrap();
            format!("http://127.0.0.1:{http_port}")
        });
        Server { dir, config, dovecot, http, store, runtime: Some(runtime), trigger: Some(trigger) }
    }

    /// The AUTH lines of the audit file so far.
    fn auth_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v["kind"] == "auth").collect()
    }

    /// The reason (`rule`) of the `n`-th AUTH decision (from 1), once its
    /// line is written.
    fn reason_of(&self, n: usize) -> String {
        assert!(
            wait_until(Duration::from_secs(5), || self.auth_lines().len() >= n),
            "audit line {n} never came: {:?}",
            self.auth_lines()
        );
        self.auth_lines()[n - 1]["rule"].as_str().unwrap().to_owned()
    }

    /// The store's admin audit records, newest first.
    fn records(&self) -> Vec<Value> {
        let store = self.store.clone();
        let runtime = self.runtime.as_ref().unwrap();
        runtime
            .block_on(store.tail(AUDIT_LOG, 100))
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(r).unwrap())
            .collect()
    }

    /// `mailwarrant --log-format json ARGS --config <this server's file>`,
    /// run as the operator `anna`.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
            .args(["--log-format", "json"])
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("USER", "anna")
            .env_remove("SUDO_USER")
            .env_remove("RUST_LOG")
            .output()
            .expect("the binary runs")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = self.trigger.take() {
            t.fire();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 4, n])
}

fn is_temp_fail(answer: &Answer) -> bool {
    matches!(answer, Answer::Fail { line } if line.contains("code=temp_fail"))
}

/// Spends carol's login budget through `server`'s Dovecot port with wrong
/// passwords (each checked by slapd), then sees her right password
/// answered "try later" for the login's budget. Returns the number of
/// AUTH decisions so far.
async fn spend_carols_budget(server: &Server) -> usize {
    let mut c = DovecotClient::connect(server.dovecot).await.unwrap();
    for n in 0..PER_LOGIN {
        let answer = c.plain("carol", &format!("Guess-{n}"), ip(1)).await.unwrap();
        assert!(matches!(&answer, Answer::Fail { .. }) && !is_temp_fail(&answer), "{answer:?}");
        assert_eq!(server.reason_of(n + 1), "invalid_credentials");
    }
    let answer = c.plain("carol", CAROL, ip(1)).await.unwrap();
    assert!(is_temp_fail(&answer), "the right password waits too: {answer:?}");
    assert_eq!(server.reason_of(PER_LOGIN + 1), "too_many_failures_for_login");
    PER_LOGIN + 1
}

/// Carol's right password through `server`: accepted, and the audit line
/// says slapd checked it (not a cache).
async fn carol_reaches_the_directory(server: &Server, decisions_before: usize) {
    let mut c = DovecotClient::connect(server.dovecot).await.unwrap();
    let answer = c.plain("carol", CAROL, ip(1)).await.unwrap();
    assert_eq!(answer, Answer::Ok { user: "carol".into() });
    assert_eq!(server.reason_of(decisions_before + 1), "verified");
}

/// The JSON log line of the unlock in the CLI's standard error.
fn unlock_log_line(stderr: &[u8]) -> Value {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "auth.unlocked")
        .unwrap_or_else(|| panic!("no audit line in:\n{}", String::from_utf8_lossy(stderr)))
}

#[test]
fn auth_unlock_cli_clears_the_budget_a_running_server_counts_in_redis() {
    let slapd = Slapd::start().unwrap();
    let mut redis = RedisServer::start().unwrap();
    let server = Server::start(&slapd.config_toml(), &redis.store_toml("unlock-cli:"), false);
    let rt = client_runtime();
    let decisions = rt.block_on(spend_carols_budget(&server));

    // Another process on the same Redis: the command line.
    let out = server.cli(&["unlock", "Carol"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "carol: failure budget cleared");
    let line = unlock_log_line(&out.stderr);
    assert_eq!(line["target"], "audit");
    assert_eq!((&line["by"], &line["via"], &line["login"]), (&"cli:anna".into(), &"cli".into(), &"carol".into()));
    assert_eq!(line["budget_live"], true);

    rt.block_on(carol_reaches_the_directory(&server, decisions));
    let records = server.records();
    let record = &records[0];
    assert_eq!(record["event"], "auth.unlocked");
    assert_eq!((&record["by"], &record["via"], &record["login"]), (&"cli:anna".into(), &"cli".into(), &"carol".into()));
    assert_eq!(record["budget_live"], true);

    let again = server.cli(&["unlock", "carol"]);
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "carol: no failures counted; nothing to clear");
    assert_eq!(unlock_log_line(&again.stderr)["budget_live"], false);
    assert_eq!(server.records()[0]["budget_live"], false, "the second unlock is recorded too");

    // No store, no unlock: said so, exit 3.
    redis.kill();
    let down = server.cli(&["unlock", "carol"]);
    assert_eq!(down.status.code(), Some(3), "{}", String::from_utf8_lossy(&down.stderr));
    assert!(String::from_utf8_lossy(&down.stderr).contains("nothing was unlocked"));
}

#[test]
fn auth_unlock_api_on_one_instance_clears_the_budget_on_another() {
    let slapd = Slapd::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let store = redis.store_toml("unlock-api:");
    let a = Server::start(&slapd.config_toml(), &store, false);
    let b = Server::start(&slapd.config_toml(), &store, true);
    let rt = client_runtime();
    let decisions = rt.block_on(spend_carols_budget(&a));
    // B shares the budget: carol's right password waits there too.
    rt.block_on(async {
        let mut c = DovecotClient::connect(b.dovecot).await.unwrap();
        assert!(is_temp_fail(&c.plain("carol", CAROL, ip(2)).await.unwrap()));
    });
    assert_eq!(b.reason_of(1), "too_many_failures_for_login");

    // B's admin page (no [policy] here: the AUTH section alone) counts
    // the failures A saw.
    let page = || {
        let url = format!("{}/admin/user?login=carol", b.http.as_deref().unwrap());
        let r = ureq::get(&url).set("Authorization", &format!("Bearer {HELPDESK_TOKEN}")).call().unwrap();
        r.into_string().unwrap()
    };
    let html = page();
    assert!(html.contains(&format!("<strong>{PER_LOGIN}</strong> of {PER_LOGIN}")), "{html}");
    assert!(html.contains("id=\"unlock\""), "{html}");

    let url = format!("{}/v1/identities/Carol/unlock", b.http.as_deref().unwrap());
    let post = |token: Option<&str>| {
        let mut req = ureq::post(&url);
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => (r.status(), r.into_json::<Value>().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json::<Value>().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let (status, body) = post(None);
    assert_eq!((status, &body["error"]["code"]), (401, &"unauthenticated".into()));
    let (status, body) = post(Some(WEBMAIL_TOKEN));
    assert_eq!((status, &body["error"]["code"]), (403, &"forbidden".into()), "a lookup token cannot unlock");
    assert!(b.records().is_empty(), "refused calls unlock nothing");

    let (status, body) = post(Some(HELPDESK_TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"login": "carol", "budget_live": true}));
    // Unlocked through B; A, which counted the failures, checks again.
    rt.block_on(carol_reaches_the_directory(&a, decisions));
    let record = &a.records()[0];
    assert_eq!(
        (&record["by"], &record["via"], &record["login"]),
        (&"token:helpdesk".into(), &"api".into(), &"carol".into())
    );
    assert_eq!(record["budget_live"], true);

    let (status, body) = post(Some(HELPDESK_TOKEN));
    assert_eq!((status, &body["budget_live"]), (200, &false.into()), "nothing left to clear: {body}");
    assert!(page().contains(&format!("<strong>0</strong> of {PER_LOGIN}")));
}

fn attempt(password: &str, client: IpAddr) -> AuthRequest {
    AuthRequest {
        login: "carol".into(),
        authzid: None,
        password: SecretString::from(password.to_owned()),
        client: Some(client),
        protocol: Protocol::Http,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_unlock_button_on_the_admin_page_in_headless_chromium() {
    let r = rig().await;
    let base = r.base.clone();
    // An Authenticator of its own over the served store: the page unlocks
    // through the server's, this one sees it.
    let app = &r._app;
    let auth = Authenticator::new(app.identities.clone(), app.store.clone(), app.config.auth.clone());
    let per_login = app.config.auth.throttle.per_login;
    let per_pair = app.config.auth.throttle.per_login_client;
    for n in 0..per_login {
        // Spread over networks, so no (login, network) budget runs out first.
        let client = IpAddr::from([192, 0, 2, (n / per_pair) as u8 + 1]);
        let d = auth.authenticate(attempt(&format!("Guess-{n}"), client)).await;
        assert_eq!((d.kind, d.reason), (DecisionKind::Refused, Reason::InvalidCredentials));
    }
    let fresh = IpAddr::from([198, 51, 100, 7]);
    let d = auth.authenticate(attempt(CAROL, fresh)).await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Temporary, Reason::TooManyFailuresForLogin));

    let b = tokio::task::block_in_place(|| {
        let b = Browser::start_in("admin-unlock");
        b.open(&format!("{base}/admin"));
        b.wait_for("the sign-in form", "return !!document.getElementById('signin');");
        b.type_into("#token", ADMIN_TOKEN);
        b.click("#signin button[type=submit]");
        b.wait_for("the overview", "return !!document.getElementById('mapping');");
        b.open(&format!("{base}/admin/user?login=carol"));
        b.wait_for("carol's page", "return !!document.getElementById('auth-failures');");
        let failures = b.text("#auth-failures");
        assert!(failures.contains(&format!("{per_login} of {per_login}")) && failures.contains("spent"), "{failures}");
        b.screenshot("01-carol-spent");

        // The session alone does not unlock: the form's CSRF token must come
        // with it.
        let session = b.get("/cookie/mw_admin")["value"].as_str().unwrap().to_owned();
        for csrf in [None, Some("made-up")] {
            let mut form = vec![("login", "carol")];
            form.extend(csrf.map(|t| ("csrf", t)));
            let forged = ureq::post(&format!("{base}/admin/user/unlock"))
                .set("Cookie", &format!("mw_admin={session}"))
                .send_form(&form);
            assert!(matches!(forged, Err(ureq::Error::Status(403, _))), "{csrf:?}: {forged:?}");
        }
        b
    });
    let d = auth.authenticate(attempt(CAROL, fresh)).await;
    assert_eq!(d.reason, Reason::TooManyFailuresForLogin, "a refused post unlocks nothing");
    assert!(read_records(app).await.is_empty());

    tokio::task::block_in_place(|| {
        b.click("#unlock button[type=submit]");
        b.wait_for("the confirmation", "return !!document.getElementById('done');");
        assert!(b.text("#done").contains("Unlocked carol"), "{}", b.text("#done"));
        let failures = b.text("#auth-failures");
        assert!(failures.contains(&format!("0 of {per_login}")) && !failures.contains("spent"), "{failures}");
        b.screenshot("02-carol-unlocked");
    });
    let d = auth.authenticate(attempt(CAROL, fresh)).await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Accepted, Reason::Verified), "the directory is asked again");
    let records = read_records(app).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["event"], "auth.unlocked");
    assert_eq!(
        (&record["by"], &record["via"], &record["login"]),
        (&"token:ops".into(), &"admin_page".into(), &"carol".into())
    );
    assert_eq!(record["budget_live"], true);
    drop(b);
}

async fn read_records(app: &App) -> Vec<Value> {
    app.store.tail(AUDIT_LOG, 100).await.unwrap().iter().map(|r| serde_json::from_slice(r).unwrap()).collect()
}

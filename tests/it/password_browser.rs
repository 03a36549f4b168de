//! The self-service page in headless Chromium, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`), as a user would use it:
//! open the page, see the rules, type a weak password and see it refused
//! with the rule's message, type a strong one and succeed; a form post
//! without the CSRF token is refused. A screenshot of each state is saved
//! under `<target>/test-output/password-browser/` for review.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use mailwarrant::directory::BindOutcome;
use mailwarrant::testkit::{free_port, wait_for_port, ChildGuard};
use serde_json::{json, Value};

use crate::password_http::web;

/// W3C WebDriver's key for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver with one headless Chromium session.
pub struct Browser {
    _driver: ChildGuard,
    _profile: tempfile::TempDir,
    session: String,
    shots: PathBuf,
}

impl Browser {
    pub fn start() -> Browser {
        Self::start_in("password-browser")
    }

    /// Screenshots go to `<target>/test-output/<shots>/`.
    pub fn start_in(shots: &str) -> Browser {
        mailwarrant::testkit::require_packages(&["chromium", "chromium-driver"]).unwrap();
        let port = free_port();
        let driver = ChildGuard::spawn(
            "chromedriver",
            Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20)).unwrap();
        let profile = tempfile::tempdir().unwrap();
        // As root on this machine Chromium needs --no-sandbox; the network
        // flags keep it from calling out (the machine has no network).
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=480,1100",
            format!("--user-data-dir={}", profile.path().display()),
        ]);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let base = format!("http://127.0.0.1:{port}");
        let created: Value = ureq::post(&format!("{base}/session")).send_json(caps).unwrap().into_json().unwrap();
        let session = created["value"]["sessionId"].as_str().expect("a WebDriver session").to_owned();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        let shots = target.join("test-output").join(shots);
        std::fs::create_dir_all(&shots).unwrap();
        Browser { _driver: driver, _profile: profile, session: format!("{base}/session/{session}"), shots }
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        let r = ureq::post(&format!("{}{path}", self.session)).send_json(body);
        match r {
            Ok(r) => r.into_json::<Value>().unwrap()["value"].clone(),
            Err(ureq::Error::Status(code, r)) => panic!("WebDriver {path}: {code} {}", r.into_string().unwrap()),
            Err(e) => panic!("WebDriver {path}: {e}"),
        }
    }

    pub fn get(&self, path: &str) -> Value {
        ureq::get(&format!("{}{path}", self.session)).call().unwrap().into_json::<Value>().unwrap()["value"].clone()
    }

    pub fn open(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    pub fn find(&self, css: &str) -> String {
        let v = self.post("/element", json!({"using": "css selector", "value": css}));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_owned()
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.post(&format!("/element/{id}/clear"), json!({}));
        self.post(&format!("/element/{id}/value"), json!({ "text": text }));
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.post(&format!("/element/{id}/click"), json!({}));
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.get(&format!("/element/{id}/text")).as_str().unwrap_or_default().to_owned()
    }

    pub fn script(&self, js: &str) -> Value {
        self.post("/execute/sync", json!({ "script": js, "args": [] }))
    }

    /// Polls `js` (which returns a boolean) until true. The deadline is
    /// long: a form's answer waits on Argon2 checks and directory binds
    /// that queue behind other tests' (a second Samba DC being provisioned,
    /// the enumeration trials) when the whole suite runs on two cores.
    pub fn wait_for(&self, what: &str, js: &str) {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if self.script(js) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let page = self.script("return document.title + ': ' + document.body.innerText.slice(0, 300);");
        panic!("timed out waiting for {what}; the page: {page}");
    }

    pub fn screenshot(&self, name: &str) {
        let png = self.get("/screenshot");
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.session).call();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn password_browser_change_in_headless_chromium() {
    let w = web(None).await;
    let base = w.base.clone();
    tokio::task::block_in_place(|| {
        let b = Browser::start();
        // 1. The start page asks for the login; the next shows that user's rules.
        b.open(&format!("{base}/password"));
        b.screenshot("01-login");
        b.type_into("#login", "alice");
        b.click("button[type=submit]");
        b.wait_for("the rules", "return !!document.getElementById('rules');");
        let rules = b.text("#rules");
        for rule in ["At least 12 characters", "Is not a common or previously breached password"] {
            assert!(rules.contains(rule), "{rule} shown before typing: {rules}");
        }
        b.screenshot("02-rules");

        // 2. A weak password: the live check marks the rule as it is typed,
        //    and the server refuses it with the rule's message.
        b.type_into("#current", "Alice-Demo-2026!");
        b.type_into("#new", "password1234");
        b.wait_for(
            "the live blocklist verdict",
            "var li = document.querySelector('li[data-rule=blocklist]'); return !!li && li.classList.contains('fail');",
        );
        b.wait_for("the strength meter", "return !document.getElementById('strength').hidden;");
        b.screenshot("03-live-feedback");
        b.type_into("#confirm", "password1234");
        b.click("button[type=submit]");
        b.wait_for("the refusal", "return !!document.getElementById('notice');");
        let notice = b.text("#notice");
        assert!(notice.contains("Is a common or previously breached password."), "{notice}");
        b.screenshot("04-weak-refused");

        // 3. A strong password succeeds.
        b.type_into("#current", "Alice-Demo-2026!");
        b.type_into("#new", "Vivid-Cactus-Lantern-97");
        b.type_into("#confirm", "Vivid-Cactus-Lantern-97");
        b.click("button[type=submit]");
        b.wait_for("the success page", "return document.title === 'Password changed';");
        assert!(b.text("#notice").contains("was changed"));
        b.screenshot("05-changed");

        // 4. The same form posted without its CSRF token is refused.
        b.open(&format!("{base}/password?login=bob"));
        b.type_into("#current", "Bob-Demo-2026!");
        b.type_into("#new", "Quiet-Harbor-Meadow-61");
        b.type_into("#confirm", "Quiet-Harbor-Meadow-61");
        b.script("document.querySelector('input[name=csrf]').remove(); document.getElementById('change').submit();");
        b.wait_for("the refusal page", "return document.title === 'Request refused';");
        b.screenshot("06-no-csrf-refused");
    });
    assert!(matches!(w.site.bind("alice", "Vivid-Cactus-Lantern-97").await, BindOutcome::Accepted { .. }));
    assert_eq!(w.site.bind("bob", "Bob-Demo-2026!").await, BindOutcome::ACCEPTED, "no write without the token");
}

/// In Chromium, before the current password is proven, an unknown login,
/// a wrong password, and a locked and a disabled account (with their right
/// passwords) get the same page: the same title, notice and rules, after
/// the failure delay.
#[tokio::test(flavor = "multi_thread")]
async fn password_browser_refusals_before_proof_look_the_same() {
    let w = web(None).await;
    let base = w.base.clone();
    tokio::task::block_in_place(|| {
        let b = Browser::start_in("password-refusals");
        let mut seen = Vec::new();
        for (login, current) in [
            ("carol", "Wrong-Current-1"),
            ("nobody", "Wrong-Current-1"),
            ("frank", "Frank-Demo-2026!"),
            ("grace", "Grace-Demo-2026!"),
        ] {
            b.open(&format!("{base}/password?login={login}"));
            let rules_before = b.text("#rules");
            b.type_into("#current", current);
            b.type_into("#new", "Vivid-Cactus-Lantern-97");
            b.type_into("#confirm", "Vivid-Cactus-Lantern-97");
            let started = Instant::now();
            b.click("button[type=submit]");
            b.wait_for("the refusal", "return !!document.getElementById('notice');");
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(1900), "{login}: answered in {took:?}, before the failure delay");
            let title = b.script("return document.title;");
            let shown = (title, b.text("#notice"), rules_before, b.text("#rules"));
            b.screenshot(&format!("refused-{login}"));
            seen.push((login, shown));
        }
        for (login, shown) in &seen[1..] {
            assert_eq!(shown, &seen[0].1, "{login} looks different from {}", seen[0].0);
        }
        assert!(seen[0].1 .1.contains("The login or the current password is not right."), "{:?}", seen[0].1);
    });
}

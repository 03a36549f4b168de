//! The read-only admin pages: in headless Chromium (sign in with the
//! admin token, the group → profile table, recent refusals, one user's
//! policy, usage and decisions; screenshots under
//! `<target>/test-output/admin-browser/`), and over plain HTTP for what a
//! browser hides: the session cookie's flags, CSRF on sign-in, and that a
//! lookup token does not open admin pages.

use axum::body::Body;
use axum::http::Method;
use serde_json::json;

use crate::http_api::{call, rig, ADMIN_TOKEN, LOOKUP_TOKEN};
use crate::password_browser::Browser;

fn no_redirects() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_admin_pages_in_headless_chromium() {
    let r = rig().await;
    // Something to show: a charged message and a refusal for bob.
    for (sender, to) in [("bob@example.com", "carol@example.com"), ("alice@example.com", "carol@example.com")] {
        let body = json!({"login": "bob", "sender": sender, "recipients": [to]});
        let a =
            call(&r.router, Method::POST, "/v1/policy/check", Some(LOOKUP_TOKEN), Some(Body::from(body.to_string())))
                .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let base = r.base.clone();
    tokio::task::block_in_place(|| {
        // Plain HTTP first: scopes, CSRF and the cookie.
        let agent = no_redirects();
        let page = |token: Option<&str>| {
            let mut req = agent.get(&format!("{base}/admin"));
            if let Some(t) = token {
                req = req.set("Authorization", &format!("Bearer {t}"));
            }
            match req.call() {
                Ok(r) => (r.status(), r.header("location").map(str::to_owned), r.into_string().unwrap()),
                Err(ureq::Error::Status(code, r)) => (code, r.header("location").map(str::to_owned), String::new()),
                Err(e) => panic!("{e}"),
            }
        };
        let (status, location, _) = page(None);
        assert_eq!((status, location.as_deref()), (303, Some(format!("{base}/admin/login").as_str())));
        let (status, _, _) = page(Some(LOOKUP_TOKEN));
        assert_eq!(status, 303, "a lookup token does not open admin pages");
        let (status, _, body) = page(Some(ADMIN_TOKEN));
        assert_eq!(status, 200);
        assert!(body.contains("<table id=\"mapping\""));
        let forged =
            agent.post(&format!("{base}/admin/login")).send_form(&[("csrf", "made-up"), ("token", ADMIN_TOKEN)]);
        assert!(matches!(forged, Err(ureq::Error::Status(403, _))), "sign-in without a live CSRF token");
        let form = agent.get(&format!("{base}/admin/login")).call().unwrap();
        let csrf_cookie = form.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
        let html = form.into_string().unwrap();
        let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
        let csrf = html[at..].split('"').next().unwrap().to_owned();
        let signed = agent
            .post(&format!("{base}/admin/login"))
            .set("Cookie", &csrf_cookie)
            .set("Origin", &base)
            .send_form(&[("csrf", &csrf), ("token", ADMIN_TOKEN)])
            .unwrap();
        assert_eq!(signed.status(), 303);
        let cookie = signed.header("set-cookie").unwrap().to_owned();
        for flag in ["mw_admin=", "HttpOnly", "SameSite=Strict", "Path=/admin"] {
            assert!(cookie.contains(flag), "{flag} in {cookie}");
        }
        let session = cookie.split(';').next().unwrap().to_owned();
        let overview = agent.get(&format!("{base}/admin")).set("Cookie", &session).call().unwrap();
        assert_eq!(overview.status(), 200);
        assert!(overview.header("content-security-policy").unwrap().contains("style-src 'self'"));
        let text = overview.into_string().unwrap();
        assert!(!text.contains("<script") && !text.contains("style="), "nothing inline: the CSP holds");

        // Directory sign-in: a member of it-admins (dave, through the
        // AUTH core) gets a session; bob's right password does not, he is
        // not a member.
        let directory = |login: &str, password: &str| {
            let form = agent.get(&format!("{base}/admin/login")).call().unwrap();
            let cookie = form.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
            let html = form.into_string().unwrap();
            assert!(html.contains("id=\"directory-signin\""));
            let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
            let csrf = html[at..].split('"').next().unwrap().to_owned();
            match agent.post(&format!("{base}/admin/login")).set("Cookie", &cookie).send_form(&[
                ("csrf", &csrf),
                ("login", login),
                ("password", password),
            ]) {
                Ok(r) => (r.status(), r.header("set-cookie").unwrap_or_default().to_owned()),
                Err(ureq::Error::Status(code, r)) => (code, r.header("set-cookie").unwrap_or_default().to_owned()),
                Err(e) => panic!("{e}"),
            }
        };
        let (status, cookie) = directory("dave", "Dave-Demo-2026!");
        assert_eq!(status, 303);
        assert!(cookie.starts_with("mw_admin="), "{cookie}");
        assert_eq!(directory("bob", "Bob-Demo-2026!").0, 401, "not in it-admins");
        assert_eq!(directory("dave", "Wrong-Password-1").0, 401);

        // The browser.
        let b = Browser::start_in("admin-browser");
        b.open(&format!("{base}/admin"));
        b.wait_for("the sign-in form", "return !!document.getElementById('signin');");
        b.screenshot("01-sign-in");
        b.type_into("#token", LOOKUP_TOKEN);
        b.click("#signin button[type=submit]");
        b.wait_for("the refusal", "return !!document.getElementById('notice');");
        assert!(b.text("#notice").contains("not an admin token"));
        b.screenshot("02-not-an-admin-token");
        b.type_into("#token", ADMIN_TOKEN);
        b.click("#signin button[type=submit]");
        b.wait_for("the overview", "return !!document.getElementById('mapping');");
        let mapping = b.text("#mapping");
        assert!(mapping.contains("sales") && mapping.contains("(everyone else)"), "{mapping}");
        let refusals = b.text("#refusals");
        assert!(refusals.contains("sender_match") && refusals.contains("bob"), "{refusals}");
        let styled = b.script("return getComputedStyle(document.querySelector('th')).textAlign;");
        assert_eq!(styled, json!("left"), "the stylesheet loaded under the CSP");
        b.screenshot("03-overview");
        b.type_into("#login", "bob");
        b.click("#lookup button[type=submit]");
        b.wait_for("the user page", "return !!document.getElementById('usage');");
        assert!(b.text("#policy").contains("require_sender_match"));
        let usage = b.text("#usage");
        assert!(usage.contains("1") && usage.contains("3"), "one of three messages used: {usage}");
        assert!(b.text("#recent").contains("sender_match"));
        b.screenshot("04-user-bob");
        b.click("#logout");
        b.wait_for("the sign-in form again", "return !!document.getElementById('signin');");
        b.open(&format!("{base}/admin"));
        b.wait_for("still signed out", "return !!document.getElementById('signin');");
        b.screenshot("05-signed-out");
        b.type_into("#directory-signin #login", "dave");
        b.type_into("#password", "Dave-Demo-2026!");
        b.click("#directory-signin button[type=submit]");
        b.wait_for("the overview for dave", "return !!document.getElementById('mapping');");
        b.screenshot("06-directory-sign-in");
    });
}

//! The self-service page over real HTTP (`serve::run` with the `[http]`
//! listener, a plain HTTP client): rules before typing, caching and
//! security headers, CSRF (W1), replay (W2), host-header links (W4), the
//! live check endpoint.

use std::collections::HashMap;

use mailwarrant::directory::{BindOutcome, RejectReason};
use mailwarrant::password::change::OUTBOX_LOG;
use mailwarrant::serve::{self, ShutdownTrigger};
use mailwarrant::testkit::{free_port, wait_for_port};

use crate::password_ldif::{site_at, Site};

pub struct Web {
    pub site: Site,
    pub base: String,
    _stop: ShutdownTrigger,
}

/// mailwarrant serving the LDIF cast on a free port; links from `base`
/// (`None`: the listen address itself, as a browser test needs).
pub async fn web(base: Option<&str>) -> Web {
    let port = free_port();
    let own = format!("http://127.0.0.1:{port}");
    let site = site_at("", port, base.unwrap_or(&own)).await;
    let (stop, shutdown) = serve::shutdown::channel();
    tokio::spawn(serve::run(site.app.clone(), shutdown));
    let addr = ([127, 0, 0, 1], port).into();
    tokio::task::spawn_blocking(move || wait_for_port(addr, std::time::Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the HTTP listener starts");
    Web { site, base: own, _stop: stop }
}

/// Status, headers (lowercased names) and body of one response.
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

pub fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("HTTP request failed: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = response.all(&n).join("\n");
            (n.to_ascii_lowercase(), v)
        })
        .collect();
    Reply { status, headers, body: response.into_string().unwrap_or_default() }
}

/// The form's CSRF token and the cookie that goes with it.
fn token_and_cookie(r: &Reply) -> (String, String) {
    let at = r.body.find("name=\"csrf\" value=\"").expect("the form has a CSRF field") + 19;
    let token = r.body[at..].split('"').next().unwrap().to_owned();
    let cookie = r.headers["set-cookie"].split(';').next().unwrap().to_owned();
    (token, cookie)
}

fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread")]
async fn password_http_page_shows_the_users_rules_with_strict_headers() {
    let w = web(Some("https://mail.example.com/account")).await;
    let base = w.base.clone();
    let (start, alice) = blocking(move || {
        (
            reply(ureq::get(&format!("{base}/password")).call()),
            reply(ureq::get(&format!("{base}/password?login=alice")).call()),
        )
    });
    assert_eq!(start.status, 200);
    assert!(start.body.contains("<label for=\"login\">"));
    assert_eq!(alice.status, 200);
    for rule in [
        "At least 12 characters",
        "Is not a common or previously breached password",
        "Is not one of your last 3 passwords",
    ] {
        assert!(alice.body.contains(rule), "{rule} is listed before typing");
    }
    for (field, label) in [("current", "Current password"), ("new", "New password"), ("confirm", "New password again")]
    {
        assert!(alice.body.contains(&format!("<label for=\"{field}\">{label}</label>")), "{field} has a label");
    }
    assert_eq!(alice.headers["cache-control"], "no-store, max-age=0");
    assert!(alice.headers["content-security-policy"].contains("frame-ancestors 'none'"));
    let cookie = &alice.headers["set-cookie"];
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Secure"));
    assert!(alice.body.contains("action=\"https://mail.example.com/account/password\""), "links from public_base_url");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_http_posts_without_a_valid_csrf_token_are_refused() {
    let w = web(None).await;
    let base = w.base.clone();
    let replies = blocking(move || {
        let page = reply(ureq::get(&format!("{base}/password?login=alice")).call());
        let (token, cookie) = token_and_cookie(&page);
        let other = reply(ureq::get(&format!("{base}/password?login=bob")).call());
        let (other_token, _) = token_and_cookie(&other);
        let form = |csrf: &str| {
            vec![
                ("csrf", csrf.to_owned()),
                ("login", "alice".to_owned()),
                ("current", "Alice-Demo-2026!".to_owned()),
                ("new", "Vivid-Cactus-Lantern-97".to_owned()),
                ("confirm", "Vivid-Cactus-Lantern-97".to_owned()),
            ]
        };
        let post = |csrf: &str, cookie: Option<&str>, origin: Option<&str>| {
            let mut req = ureq::post(&format!("{base}/password"));
            if let Some(c) = cookie {
                req = req.set("Cookie", c);
            }
            if let Some(o) = origin {
                req = req.set("Origin", o);
            }
            let fields = form(csrf);
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            reply(req.send_form(&pairs))
        };
        vec![
            post("", None, None),                                      // no token at all
            post(&token, None, None),                                  // no cookie
            post(&other_token, Some(&cookie), None),                   // token of another session
            post(&token, Some(&cookie), Some("https://evil.example")), // cross-origin
            post(&token, Some(&cookie), None),                         // used up by the cross-origin try
        ]
    });
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.status, 403, "attempt {i}");
        assert!(r.body.contains("Request refused"));
    }
    assert_eq!(w.site.bind("alice", "Alice-Demo-2026!").await, BindOutcome::ACCEPTED, "no directory write");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_http_a_captured_change_cannot_be_replayed() {
    let w = web(None).await;
    let base = w.base.clone();
    let (first, replay) = blocking(move || {
        let page = reply(ureq::get(&format!("{base}/password?login=carol")).call());
        let (token, cookie) = token_and_cookie(&page);
        let send = || {
            reply(ureq::post(&format!("{base}/password")).set("Cookie", &cookie).set("Origin", &base).send_form(&[
                ("csrf", &token),
                ("login", "carol"),
                ("current", "Carol-Demo-2026!"),
                ("new", "Vivid-Cactus-Lantern-97"),
                ("confirm", "Vivid-Cactus-Lantern-97"),
            ]))
        };
        (send(), send())
    });
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.body.contains("Password changed"));
    assert_eq!(replay.status, 403);
    assert_eq!(w.site.bind("carol", "Vivid-Cactus-Lantern-97").await, BindOutcome::ACCEPTED);
    assert_eq!(w.site.bind("carol", "Carol-Demo-2026!").await, BindOutcome::Rejected(RejectReason::InvalidCredentials));
}

#[tokio::test(flavor = "multi_thread")]
async fn password_http_refusals_name_the_rule_and_wrong_passwords_stay_generic() {
    let w = web(None).await;
    let base = w.base.clone();
    let (weak, wrong, unknown, differ) = blocking(move || {
        let attempt = |login: &str, current: &str, new: &str, confirm: &str| {
            let page = reply(ureq::get(&format!("{base}/password?login={login}")).call());
            let (token, cookie) = token_and_cookie(&page);
            reply(ureq::post(&format!("{base}/password")).set("Cookie", &cookie).send_form(&[
                ("csrf", &token),
                ("login", login),
                ("current", current),
                ("new", new),
                ("confirm", confirm),
            ]))
        };
        (
            attempt("dave", "Dave-Demo-2026!", "short", "short"),
            attempt("dave", "Wrong-Current-1", "Vivid-Cactus-Lantern-97", "Vivid-Cactus-Lantern-97"),
            attempt("nobody", "Wrong-Current-1", "Vivid-Cactus-Lantern-97", "Vivid-Cactus-Lantern-97"),
            attempt("dave", "Dave-Demo-2026!", "Vivid-Cactus-Lantern-97", "Vivid-Cactus-Lantern-98"),
        )
    });
    assert_eq!(weak.status, 422);
    assert!(weak.body.contains("Too short: 5 characters; use at least 12."));
    assert!(!weak.body.contains("value=\"short\""), "passwords are never echoed back");
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("The login or the current password is not right."));
    assert_eq!(unknown.status, wrong.status);
    assert!(unknown.body.contains("The login or the current password is not right."));
    assert!(differ.body.contains("The two new passwords differ"));
}

#[tokio::test(flavor = "multi_thread")]
async fn password_http_links_never_come_from_the_host_header() {
    let w = web(Some("https://mail.example.com/account")).await;
    let base = w.base.clone();
    let (page, done) = blocking(move || {
        let page = reply(
            ureq::get(&format!("{base}/password?login=erin"))
                .set("Host", "evil.example")
                .set("X-Forwarded-Host", "evil.example")
                .call(),
        );
        let (token, cookie) = token_and_cookie(&page);
        let done = reply(
            ureq::post(&format!("{base}/password"))
                .set("Host", "evil.example")
                .set("X-Forwarded-Host", "evil.example")
                .set("Cookie", &cookie)
                .send_form(&[
                    ("csrf", &token),
                    ("login", "erin"),
                    ("current", "Erin-Demo-2026!"),
                    ("new", "Vivid-Cactus-Lantern-97"),
                    ("confirm", "Vivid-Cactus-Lantern-97"),
                ]),
        );
        (page, done)
    });
    assert!(!page.body.contains("evil.example") && !done.body.contains("evil.example"));
    assert_eq!(done.status, 200, "the expired user changed her password: {}", done.body);
    let mails = w.site.records(OUTBOX_LOG);
    assert_eq!(mails.len(), 1);
    let text = mails[0].to_string();
    assert!(!text.contains("evil.example") && text.contains("https://mail.example.com/account/password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn password_http_live_check_reports_each_rule_without_echoing() {
    let w = web(None).await;
    let base = w.base.clone();
    let (rules, weak, strong, form_post) = blocking(move || {
        let check = |body: serde_json::Value| reply(ureq::post(&format!("{base}/password/check")).send_json(body));
        (
            check(serde_json::json!({"login": "alice", "password": ""})),
            check(serde_json::json!({"login": "alice", "password": "password1234"})),
            check(serde_json::json!({"login": "alice", "password": "Vivid-Cactus-Lantern-97"})),
            reply(ureq::post(&format!("{base}/password/check")).send_form(&[("password", "x")])),
        )
    });
    let json = |r: &Reply| serde_json::from_str::<serde_json::Value>(&r.body).unwrap();
    let rules = json(&rules);
    assert_eq!(rules["policy"], "test");
    assert!(rules["verdicts"].as_array().unwrap().iter().all(|v| v["outcome"] == "not_checked"));
    assert_eq!(weak.status, 200);
    assert!(!weak.body.contains("password1234"));
    let weak = json(&weak);
    let failed: Vec<_> = weak["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["outcome"] == "fail")
        .map(|v| v["rule"].clone())
        .collect();
    assert_eq!(failed, [serde_json::json!("blocklist")]);
    assert!(weak["strength"]["score"].as_u64().unwrap() <= 2);
    let strong = json(&strong);
    assert!(strong["verdicts"].as_array().unwrap().iter().all(|v| v["outcome"] != "fail"));
    assert_eq!(form_post.status, 415, "only JSON: a cross-site form cannot reach it without a preflight");
}

/// Before the current password is proven, the page tells nothing: an
/// unknown login, a wrong password, a locked and a disabled account (with
/// their right passwords), and a wrong password with a weak new one, get
/// the same status and the same page (but for the login typed and the
/// fresh form token), each after the AUTH failure delay. The rules shown
/// before typing are the same for every login.
#[tokio::test(flavor = "multi_thread")]
async fn password_http_unknown_wrong_locked_and_disabled_answer_alike() {
    let w = web(None).await;
    let base = w.base.clone();
    let (pages, answers) = blocking(move || {
        let pages: Vec<(String, Reply)> = ["dave", "alice", "nobody"]
            .iter()
            .map(|l| (l.to_string(), reply(ureq::get(&format!("{base}/password?login={l}")).call())))
            .collect();
        let attempt = |login: &str, current: &str, new: &str| {
            let page = reply(ureq::get(&format!("{base}/password?login={login}")).call());
            let (token, cookie) = token_and_cookie(&page);
            let started = std::time::Instant::now();
            let r = reply(ureq::post(&format!("{base}/password")).set("Cookie", &cookie).send_form(&[
                ("csrf", &token),
                ("login", login),
                ("current", current),
                ("new", new),
                ("confirm", new),
            ]));
            (login.to_owned(), r, started.elapsed())
        };
        let strong = "Vivid-Cactus-Lantern-97";
        let answers = vec![
            attempt("carol", "Wrong-Current-1", strong),
            attempt("nobody", "Wrong-Current-1", strong),
            attempt("frank", "Frank-Demo-2026!", strong),
            attempt("grace", "Grace-Demo-2026!", strong),
            attempt("carol", "Wrong-Current-2", "short"),
            attempt("nobody", "Wrong-Current-2", "short"),
        ];
        (pages, answers)
    });
    let normal = |login: &str, r: &Reply| {
        let mut body = r.body.clone();
        while let Some(at) = body.find("name=\"csrf\" value=\"") {
            let end = at + 19 + body[at + 19..].find('"').unwrap();
            body.replace_range(at..=end, "CSRF");
        }
        body.replace(&format!("value=\"{login}\""), "value=\"LOGIN\"").replace(&format!("login={login}"), "login=LOGIN")
    };
    let (first_login, first, _) = &answers[0];
    assert_eq!(first.status, 422);
    assert!(first.body.contains("The login or the current password is not right."));
    for (login, r, took) in &answers {
        assert_eq!(r.status, first.status, "{login}");
        assert_eq!(normal(login, r), normal(first_login, first), "{login} reads differently");
        assert!(*took >= std::time::Duration::from_millis(1900), "{login} answered in {took:?}: no failure delay");
        assert!(*took < std::time::Duration::from_secs(4), "{login} took {took:?}");
    }
    let (first_login, first) = &pages[0];
    for (login, page) in &pages {
        assert_eq!(normal(login, page), normal(first_login, first), "the rules shown for {login} differ");
    }
}

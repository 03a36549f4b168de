//! The self-service page in headless Chromium with Active Directory behind
//! it (the Samba AD DC): a user changes their password through the page
//! and the DC takes it (unicodePwd over LDAPS); an expired user, who can
//! no longer bind, changes through the service-account path and the DC
//! accepts the new password. Screenshots under
//! `<target>/test-output/ad-password-browser/`.

use std::net::SocketAddr;
use std::path::Path;

use mailwarrant::config::Config;
use mailwarrant::serve::{self, App};
use mailwarrant::testkit::samba::{self, password_of, UPN_SUFFIX};
use mailwarrant::testkit::{free_port, wait_for_port};

use crate::password_browser::Browser;

/// Fills and submits the change form for `login`.
fn change(b: &Browser, base: &str, login: &str, current: &str, new: &str) {
    b.open(&format!("{base}/password?login={login}"));
    b.wait_for("the change form", "return !!document.getElementById('new');");
    b.type_into("#current", current);
    b.type_into("#new", new);
    b.type_into("#confirm", new);
    b.click("button[type=submit]");
    b.wait_for("an answer", "return !!document.getElementById('notice');");
}

#[tokio::test(flavor = "multi_thread")]
async fn ad_password_change_in_headless_chromium() {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let text = format!(
        "{}\n[store]\npath = \"state.sqlite\"\n[auth.dovecot]\nlisten = []\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"{base}\"\n\
         [password]\ndefault_policy = \"test\"\nexpired_change = \"service_account\"\n\
         [password.policies.test]\nmin_length = 12\nblocklist = false\nreject_personal_info = false\nhistory = 0\n",
        dc.config_toml()
    );
    let config = Config::from_toml(&text, dir.path(), Path::new("ad-browser.toml")).unwrap_or_else(|e| panic!("{e}"));
    let app = App::build(config).await.unwrap();
    let (_stop, shutdown) = serve::shutdown::channel();
    tokio::spawn(serve::run(app, shutdown));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    tokio::task::spawn_blocking(move || wait_for_port(addr, std::time::Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();

    tokio::task::block_in_place(|| {
        let b = Browser::start_in("ad-password-browser");
        // Too short for mailwarrant's rule: refused before the DC is asked.
        change(&b, &base, "quinn", &password_of("quinn"), "Short-1");
        assert!(b.text("#notice").contains("12"), "{}", b.text("#notice"));
        b.screenshot("01-too-short");
        // The wrong current password: the DC refuses, the page says so generically.
        change(&b, &base, "quinn", "Not-Quinns-Password-1", "Copper-Meadow-Lantern-58");
        assert_ne!(b.text("h1"), "Password changed");
        b.screenshot("02-wrong-current");
        // The right one: changed at the DC.
        change(&b, &base, "quinn", &password_of("quinn"), "Copper-Meadow-Lantern-58");
        b.wait_for("the success page", "return document.title === 'Password changed';");
        b.screenshot("03-changed");
        // An expired user changes through the service account.
        change(&b, &base, "ruth", &password_of("ruth"), "Harbor-Quartz-Willow-73");
        b.wait_for("the success page", "return document.title === 'Password changed';");
        b.screenshot("04-expired-changed");
    });
    assert!(
        dc.bind_succeeds(&format!("quinn@{UPN_SUFFIX}"), "Copper-Meadow-Lantern-58"),
        "the DC has quinn's new password"
    );
    assert!(!dc.bind_succeeds(&format!("quinn@{UPN_SUFFIX}"), &password_of("quinn")), "the old one is gone");
    assert!(dc.bind_succeeds(&format!("ruth@{UPN_SUFFIX}"), "Harbor-Quartz-Willow-73"), "ruth can bind again");
}

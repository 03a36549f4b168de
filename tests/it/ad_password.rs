//! The self-service change flow (`password::PasswordService`, what the
//! page calls) with Active Directory behind it: AD's own refusals come
//! back as the flow's refusals, and an expired user changes through the
//! service-account path.

use std::path::Path;

use mailwarrant::config::Config;
use mailwarrant::directory::{BindOutcome, ChangeRefusal};
use mailwarrant::password::{ChangeRequest, ChangeResult, PasswordService, Refusal};
use mailwarrant::serve::App;
use mailwarrant::testkit::samba::{self, password_of};
use secrecy::SecretString;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread")]
async fn ad_self_service_change_history_refusal_and_expired_user() {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let dir = tempfile::tempdir().unwrap();
    // mailwarrant's own history is off, so AD's history is what refuses.
    let text = format!(
        "{}\n[store]\npath = \"state.sqlite\"\n[password]\ndefault_policy = \"test\"\n\
         expired_change = \"service_account\"\n[password.policies.test]\nmin_length = 10\nblocklist = false\n\
         reject_personal_info = false\nhistory = 0\n",
        dc.config_toml()
    );
    let config = Config::from_toml(&text, dir.path(), Path::new("ad-password.toml")).unwrap_or_else(|e| panic!("{e}"));
    let app = App::build(config).await.unwrap();
    let service = PasswordService::new(
        app.identities.clone(),
        app.store.clone(),
        app.config.password.clone(),
        "https://mail.example.com".into(),
        std::sync::Arc::new(mailwarrant::auth::Authenticator::new(
            app.identities.clone(),
            app.store.clone(),
            app.config.auth.clone(),
        )),
    );
    let change = |login: &'static str, current: String, new: &'static str| {
        let service = &service;
        async move {
            let (current, new) = (SecretString::from(current), SecretString::from(new.to_owned()));
            let req = ChangeRequest { login, current: &current, new: &new, client: Some([192, 0, 2, 7].into()) };
            service.change(&req, OffsetDateTime::now_utc()).await.expect("the DC answers")
        }
    };
    assert_eq!(change("olga", password_of("olga"), "Quartz-Lantern-7731").await, ChangeResult::Changed);
    assert_eq!(
        change("olga", "Quartz-Lantern-7731".into(), "Olga-Demo-2026!").await,
        ChangeResult::Refused(Refusal::Directory(ChangeRefusal::InHistory)),
        "AD's history refusal reaches the page"
    );
    assert_eq!(change("pete@corp.example.com", password_of("pete"), "Meadow-Copper-4412").await, ChangeResult::Changed);
    let pete = app.directory.lookup("pete").await.unwrap().unwrap();
    let bound = app.directory.authenticate(&pete, &SecretString::from("Meadow-Copper-4412".to_owned())).await.unwrap();
    assert_eq!(bound, BindOutcome::ACCEPTED);
}

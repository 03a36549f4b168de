//! The send policy with Active Directory behind it: AD groups (nested ones
//! included) mapped to profiles, addresses from proxyAddresses and send-as
//! groups, all through the Postfix policy delegation protocol over TCP.

use std::path::Path;
use std::time::Duration;

use mailwarrant::config::Config;
use mailwarrant::protocols::policy_delegation::listener::PolicyListeners;
use mailwarrant::serve::shutdown;
use mailwarrant::testkit::samba;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One RCPT-stage request as Postfix 3.7 sends it (the fields the policy reads).
fn request(login: &str, sender: &str, recipient: &str, instance: usize) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=127.0.0.1\n\
         client_name=localhost\nhelo_name=client.example.com\nsender={sender}\nrecipient={recipient}\n\
         recipient_count=0\nqueue_id=\ninstance=ad.{instance}\nsize=0\nsasl_method=PLAIN\nsasl_username={login}\n\
         sasl_sender=\n\n"
    )
}

async fn ask(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(b"\n\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "the policy server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).trim_end().to_owned()
}

#[tokio::test]
async fn ad_groups_map_to_send_profiles_through_the_policy_protocol() {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let dir = tempfile::tempdir().unwrap();
    // interns may not send outside; sales (nested in staff) may send to lists;
    // everyone else gets the default, which may not.
    let text = format!(
        "{}\n[store]\npath = \"s.sqlite\"\n[policy]\nlisten = \"127.0.0.1:0\"\norganisation_domains = [\"example.com\"]\n\
         groups = {{ sales = \"sales\", interns = \"interns\" }}\n\
         [policy.profiles.default]\nrequire_sender_match = true\nmay_send_to_lists = false\nmay_send_external = true\n\
         [policy.profiles.sales]\npriority = 10\nmay_send_to_lists = true\n\
         [policy.profiles.interns]\npriority = 20\nmay_send_external = false\n",
        dc.config_toml()
    );
    let config = Config::from_toml(&text, dir.path(), Path::new("ad-policy.toml")).unwrap_or_else(|e| panic!("{e}"));
    let app = mailwarrant::serve::App::build(config).await.unwrap();
    let service = app.policy.clone().expect("[policy] is configured");
    let settings = app.config.policy.clone().unwrap();
    let listeners = PolicyListeners::bind(&settings).await.unwrap();
    let address = listeners.local_addr().unwrap();
    let (_stop, stopping) = shutdown::channel();
    tokio::spawn(listeners.serve(service, stopping));

    let mut s = TcpStream::connect(address).await.unwrap();
    let cases: &[(&str, &str, &str, bool)] = &[
        // Lists: sales (through the AD group) may, the default may not.
        ("alice", "alice@example.com", "all-staff@example.com", true),
        ("bob", "bob@example.com", "all-staff@example.com", false),
        // External recipients: the interns profile forbids them.
        ("carol", "carol@example.com", "someone@elsewhere.example.org", false),
        ("bob", "bob@example.com", "someone@elsewhere.example.org", true),
        // Senders: an smtp: alias from proxyAddresses, a send-as group's
        // address, and someone else's address.
        ("alice", "a.smith@example.com", "bob@example.com", true),
        ("dave", "helpdesk@example.com", "bob@example.com", true),
        ("bob", "helpdesk@example.com", "carol@example.com", false),
        // Postfix passes the login as typed: a UPN is the same user.
        ("alice@corp.example.com", "alice@example.com", "all-staff@example.com", true),
    ];
    for (i, (login, sender, recipient, allowed)) in cases.iter().enumerate() {
        let answer = ask(&mut s, &request(login, sender, recipient, i)).await;
        if *allowed {
            assert_eq!(answer, "action=DUNNO", "{login} {sender} -> {recipient}");
        } else {
            assert!(
                answer.starts_with("action=5") || answer.starts_with("action=REJECT"),
                "{login} {sender} -> {recipient}: {answer}"
            );
        }
    }
}

//! Reminders end to end: the `remind` command, a directory with users at
//! several password ages, and a real SMTP server (aiosmtpd) receiving the
//! mail. Time is injected with `--now`, never waited for.

use std::path::{Path, PathBuf};
use std::process::Command;

use mailwarrant::testkit::slapd::{self, Slapd};
use mailwarrant::testkit::smtp_server::SmtpServer;
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-11-27 08:00 UTC);

struct Site {
    dir: tempfile::TempDir,
    smtp: SmtpServer,
}

/// (login, hours since the password change, extra LDIF lines, has mail)
const USERS: &[(&str, i64, &str, bool)] = &[
    ("due14", 80 * 24, "", true),
    ("due7", 85 * 24, "", true),
    ("due1", 89 * 24 + 12, "", true),
    ("fresh", 10 * 24, "", true),
    ("gone", 95 * 24, "", true),
    ("off", 85 * 24, "mailwarrantAccountDisabled: TRUE\n", true),
    ("shut", 85 * 24, "pwdAccountLockedTime: 20261101000000Z\n", true),
    ("nomail", 85 * 24, "", false),
];

fn generalized(t: OffsetDateTime) -> String {
    format!("{:04}{:02}{:02}{:02}{:02}{:02}Z", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second())
}

impl Site {
    /// A site whose directory is the LDIF file `write_directory` writes.
    fn new() -> Site {
        let site = Site::with_directory("[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = \"people.ldif\"\n");
        site.write_directory(&[]);
        site
    }

    fn with_directory(directory: &str) -> Site {
        Site::build(directory, SmtpServer::start().unwrap(), "security = \"none\"")
    }

    /// `mailer` holds the `[mailer]` lines about TLS.
    fn build(directory: &str, smtp: SmtpServer, mailer: &str) -> Site {
        let site = Site { dir: tempfile::tempdir().unwrap(), smtp };
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
        std::fs::write(
            site.config(),
            format!(
                "{directory}\n[store]\npath = \"state.sqlite\"\n\
                 [mailer]\nhost = \"127.0.0.1\"\nport = {}\n{mailer}\nfrom = \"IT Desk <it@example.com>\"\n\
                 reply_to = \"helpdesk@example.com\"\ntemplates = {templates:?}\n\
                 [reminders]\nmax_age = \"90d\"\ntime_zone = \"Europe/Berlin\"\nmax_per_second = 1000\n\
                 self_service_url = \"https://mail.example.com/password\"\n",
                site.smtp.port
            ),
        )
        .unwrap();
        site
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("mailwarrant.toml")
    }

    /// Writes the directory; `changed_now` users changed their password at NOW.
    fn write_directory(&self, changed_now: &[&str]) {
        let mut ldif = String::new();
        for (login, hours, extra, mail) in USERS {
            let changed = if changed_now.contains(login) { NOW } else { NOW - time::Duration::hours(*hours) };
            ldif += &format!(
                "dn: uid={login},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: {login}\ncn: User {login}\n\
                 sn: {login}\n{}pwdChangedTime: {}\n{extra}\n",
                if *mail { format!("mail: {login}@example.com\n") } else { String::new() },
                generalized(changed)
            );
        }
        std::fs::write(self.dir.path().join("people.ldif"), ldif).unwrap();
    }

    fn remind(&self, now: OffsetDateTime, extra: &[&str]) -> serde_json::Value {
        let out = self.remind_command(now, extra).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn remind_command(&self, now: OffsetDateTime, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailwarrant"));
        c.args(["remind", "--json", "--config", self.config().to_str().unwrap(), "--now"])
            .arg(now.format(&time::format_description::well_known::Rfc3339).unwrap())
            .args(extra);
        c
    }
}

fn statuses(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let stage = match o["stage"]["kind"].as_str().unwrap() {
                "warning" => format!("{}d", o["stage"]["days"]),
                other => other.to_owned(),
            };
            (o["login"].as_str().unwrap().to_owned(), stage, o["status"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn owned(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
}

#[test]
fn the_right_users_get_the_right_stage_once() {
    let site = Site::new();

    let dry = site.remind(NOW, &["--dry-run"]);
    assert_eq!(
        statuses(&dry),
        owned(&[
            ("gone", "expired", "would_send"),
            ("due1", "1d", "would_send"),
            ("due7", "7d", "would_send"),
            ("due14", "14d", "would_send"),
        ])
    );
    assert!(site.smtp.messages().is_empty(), "--dry-run sends nothing");

    let sent = site.remind(NOW, &[]);
    assert!(statuses(&sent).iter().all(|(_, _, s)| s == "sent"), "{sent}");
    let messages = site.smtp.messages();
    assert_eq!(messages.len(), 4);

    let again = site.remind(NOW, &[]);
    assert!(statuses(&again).iter().all(|(_, _, s)| s == "already_sent"), "{again}");
    assert_eq!(site.smtp.messages().len(), 4, "a second run sends nothing");

    // due7 changes the password: a new cycle, nothing due now.
    site.write_directory(&["due7"]);
    let after_change = site.remind(NOW, &["--dry-run"]);
    assert!(!statuses(&after_change).iter().any(|(login, _, _)| login == "due7"));
}

#[test]
fn reminder_mail_parses_with_both_parts_and_the_right_values() {
    let site = Site::new();
    site.remind(NOW, &[]);
    let raw = site.smtp.messages().into_iter().find(|m| m.contains("due7@example.com")).expect("due7 got mail");
    let mail = mailparse::parse_mail(raw.as_bytes()).unwrap();
    let header =
        |name: &str| mail.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case(name)).map(|h| h.get_value());
    assert_eq!(header("Subject").as_deref(), Some("Your mail password expires in 5 days"));
    assert_eq!(header("From").as_deref(), Some("\"IT Desk\" <it@example.com>"));
    assert_eq!(header("Reply-To").as_deref(), Some("helpdesk@example.com"));
    assert_eq!(header("Auto-Submitted").as_deref(), Some("auto-generated"));
    assert!(header("To").unwrap().contains("due7@example.com"));
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    let parts: Vec<(String, String)> =
        mail.subparts.iter().map(|p| (p.ctype.mimetype.clone(), p.get_body().unwrap())).collect();
    assert_eq!(parts.len(), 2);
    let (text_type, text) = &parts[0];
    let (html_type, html) = &parts[1];
    assert_eq!((text_type.as_str(), html_type.as_str()), ("text/plain", "text/html"));
    // Changed 85 days ago at 08:00 UTC, expires in 5 days: 2026-12-02 09:00 in Berlin.
    // minijinja escapes `/` in HTML as `&#x2f;`, which browsers read as `/`.
    let html = html.replace("&#x2f;", "/");
    for body in [text, &html] {
        assert!(body.contains("User due7") && body.contains("due7"), "{body}");
        assert!(body.contains("2026-12-02 09:00") && body.contains("Europe/Berlin"), "{body}");
        assert!(body.contains("https://mail.example.com/password"), "{body}");
    }
}

#[test]
fn two_runs_at_once_send_each_mail_once() {
    let site = Site::new();
    let later = NOW + time::Duration::days(3);
    let mut a = site.remind_command(later, &[]).spawn().unwrap();
    let mut b = site.remind_command(later, &[]).spawn().unwrap();
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let due = site.remind(later, &["--dry-run"]);
    let expected = statuses(&due).len();
    assert!(expected >= 4, "{due}");
    assert_eq!(site.smtp.messages().len(), expected, "each due mail exactly once across both runs");
}

#[test]
fn an_unreachable_smtp_server_sends_nothing_and_retries_next_time() {
    let site = Site::new();
    let dead = site.config().with_file_name("dead.toml");
    let text =
        std::fs::read_to_string(site.config()).unwrap().replace(&format!("port = {}", site.smtp.port), "port = 1");
    std::fs::write(&dead, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
        .args(["remind", "--config", dead.to_str().unwrap(), "--now", "2026-11-27T08:00:00Z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "failures give exit code 3");
    // The claims were released: the working server now gets every mail.
    let sent = site.remind(NOW, &[]);
    assert!(statuses(&sent).iter().all(|(_, _, s)| s == "sent"), "{sent}");
}

/// Sets ppolicy's pwdChangedTime, which only the rootdn may write, and only
/// with the relax control.
fn set_changed_time(server: &Slapd, login: &str, at: OffsetDateTime) {
    let (admin, password) = server.admin();
    let ldif = format!(
        "dn: uid={login},ou=people,{}\nchangetype: modify\nreplace: pwdChangedTime\npwdChangedTime: {}\n",
        slapd::BASE_DN,
        generalized(at)
    );
    let mut child = Command::new("ldapmodify")
        .args(["-x", "-e", "relax", "-H", &server.url(), "-D", admin, "-w", password])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "ldapmodify {login}");
}

#[test]
fn reminders_follow_openldap_ppolicy_ages() {
    let server = Slapd::start().unwrap();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    // The default policy's pwdMaxAge is 90 days.
    set_changed_time(&server, "alice", now - time::Duration::days(80));
    set_changed_time(&server, "bob", now - time::Duration::days(85));
    set_changed_time(&server, "carol", now - time::Duration::hours(89 * 24 + 12));
    // frank (locked) and grace (disabled) are due too, but must get nothing.
    set_changed_time(&server, "frank", now - time::Duration::days(85));
    set_changed_time(&server, "grace", now - time::Duration::days(85));
    let site = Site::with_directory(&server.config_toml());

    let dry = site.remind(now, &["--dry-run"]);
    assert_eq!(
        statuses(&dry),
        owned(&[
            ("erin", "expired", "would_send"),
            ("carol", "1d", "would_send"),
            ("bob", "7d", "would_send"),
            ("alice", "14d", "would_send"),
        ])
    );
    assert!(site.smtp.messages().is_empty());
    site.remind(now, &[]);
    assert_eq!(site.smtp.messages().len(), 4);
    site.remind(now, &[]);
    assert_eq!(site.smtp.messages().len(), 4, "a second run sends nothing");

    // bob changes his password: a new cycle starts, nothing due for him.
    set_changed_time(&server, "bob", now);
    let after = site.remind(now, &["--dry-run"]);
    assert!(!statuses(&after).iter().any(|(login, _, _)| login == "bob"), "{after}");
}

const LDIF_DIRECTORY: &str = "[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = \"people.ldif\"\n";

#[test]
fn mail_goes_out_over_required_starttls() {
    let smtp = SmtpServer::start_starttls().unwrap();
    let mailer = format!("security = \"starttls\"\nca_file = {:?}", smtp.ca_file());
    let site = Site::build(LDIF_DIRECTORY, smtp, &mailer);
    site.write_directory(&[]);
    let sent = site.remind(NOW, &[]);
    assert!(statuses(&sent).iter().all(|(_, _, s)| s == "sent"), "{sent}");
    assert_eq!(site.smtp.messages().len(), 4);
}

#[test]
fn starttls_is_never_skipped_when_the_server_lacks_it() {
    let site = Site::build(LDIF_DIRECTORY, SmtpServer::start().unwrap(), "security = \"starttls\"");
    site.write_directory(&[]);
    let out = site.remind_command(NOW, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(site.smtp.messages().is_empty(), "no mail in cleartext");
}

#[test]
fn the_admin_gets_a_summary_of_each_run() {
    let site = Site::new();
    let mut config = std::fs::read_to_string(site.config()).unwrap();
    config.push_str("admin_summary_to = \"postmaster@example.com\"\n");
    std::fs::write(site.config(), config).unwrap();
    site.remind(NOW, &[]);
    let messages = site.smtp.messages();
    assert_eq!(messages.len(), 5, "four reminders and one summary");
    let summary = messages.iter().find(|m| m.contains("postmaster@example.com")).expect("a summary");
    let mail = mailparse::parse_mail(summary.as_bytes()).unwrap();
    let subject = mail.headers.iter().find(|h| h.get_key() == "Subject").unwrap().get_value();
    assert_eq!(subject, "Password reminders 2026-11-27 09:00: 3 reminded, 1 expired");
    let text = mail.subparts[0].get_body().unwrap();
    for login in ["due14", "due7", "due1", "gone"] {
        assert!(text.contains(login), "{login} in {text}");
    }
}

#[test]
fn two_serving_instances_send_the_days_reminders_once() {
    use mailwarrant::config::Config;
    use mailwarrant::reminders::schedule::run_once_per_day;
    use mailwarrant::serve::App;

    let site = Site::new();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let ran = rt.block_on(async {
        // Two instances with their own store handles on one shared store.
        let a = App::build(Config::load(&site.config()).unwrap()).await.unwrap();
        let b = App::build(Config::load(&site.config()).unwrap()).await.unwrap();
        let day = NOW.date();
        let (x, y) = tokio::join!(run_once_per_day(&a, day, NOW), run_once_per_day(&b, day, NOW));
        let again = run_once_per_day(&a, day, NOW).await.unwrap();
        [x.unwrap(), y.unwrap(), again]
    });
    assert_eq!(ran.iter().filter(|r| **r).count(), 1, "exactly one instance ran the job: {ran:?}");
    assert_eq!(site.smtp.messages().len(), 4, "each due mail once");
}

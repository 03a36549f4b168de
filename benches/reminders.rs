//! The reminder scan on a large directory: `remind --dry-run`'s work
//! (paged search of every user with ppolicy state, then the plan) against
//! a plain `ldapsearch` of the same attributes, in the same run.
//!
//! `cargo bench --bench reminders` (users: `REMIND_BENCH_USERS`, default
//! 100,000).

use std::process::Command;
use std::time::Instant;

use mailwarrant::config::Config;
use mailwarrant::directory::ldap::LdapDirectory;
use mailwarrant::directory::Directory;
use mailwarrant::reminders::plan;
use mailwarrant::testkit::slapd::{self, Slapd};

fn main() {
    let users: usize = std::env::var("REMIND_BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    eprintln!("starting slapd with {users} generated users…");
    let server = Slapd::start_quiet_with_users_only(users).expect("slapd starts");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[mailer]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nfrom = \"it@example.com\"\ntemplates = {:?}\n\
         [reminders]\nself_service_url = \"https://mail.example.com/password\"\nmax_age = \"90d\"\n",
        server.config_toml().replace("operation_timeout = \"3s\"", "operation_timeout = \"60s\""),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates")
    );
    let config = Config::from_toml(&text, dir.path(), std::path::Path::new("bench.toml")).expect("valid config");
    let settings = config.reminders.clone().unwrap();
    let mailwarrant::config::DirectorySettings::Ldap(ldap) = &config.directory else { unreachable!() };
    let directory = LdapDirectory::new(ldap).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    let (service_dn, service_password) = server.service_account();
    let ldapsearch = || {
        let start = Instant::now();
        let out = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-H", &server.url(), "-D", service_dn, "-w", service_password])
            .args(["-b", &format!("ou=people,{}", slapd::BASE_DN), "-E", "pr=500/noprompt"])
            .args(["(objectClass=inetOrgPerson)", "uid", "cn", "mail", "pwdChangedTime", "pwdAccountLockedTime"])
            .args(["pwdReset", "pwdPolicySubentry", "mailwarrantAccountDisabled", "objectClass"])
            .output()
            .expect("ldapsearch runs");
        let entries = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("dn:")).count();
        (start.elapsed(), entries)
    };
    let scan = || {
        rt.block_on(async {
            let start = Instant::now();
            let users = directory.list_users().await.expect("scan");
            let due = plan::plan(&users, &settings, time::OffsetDateTime::now_utc()).len();
            (start.elapsed(), users.len(), due)
        })
    };
    // Warm both (slapd's entry cache, our policy cache), then measure alternately.
    ldapsearch();
    scan();
    let mut rows = Vec::new();
    for _ in 0..3 {
        let (plain, n_plain) = ldapsearch();
        let (ours, n_ours, due) = scan();
        rows.push((plain, n_plain, ours, n_ours, due));
    }
    println!("| run | ldapsearch users/s | mailwarrant scan users/s | ratio (≥ 0.5) | users | due |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (i, (plain, n_plain, ours, n_ours, due)) in rows.iter().enumerate() {
        let plain_rate = *n_plain as f64 / plain.as_secs_f64();
        let our_rate = *n_ours as f64 / ours.as_secs_f64();
        println!("| {} | {plain_rate:.0} | {our_rate:.0} | {:.2}× | {n_ours} | {due} |", i + 1, our_rate / plain_rate);
    }
}

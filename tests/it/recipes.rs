//! Issue 21: the snippets of `docs/recipes/` exactly as printed, with only
//! addresses, ports and paths replaced, loaded into the suite's real
//! Postfix and Exim in front of `config/demo.toml` served by the real
//! binary, and mail sent through them with swaks. The Postfix test is
//! also the README's walk-through: one submission that passes, one with a
//! spoofed header `From:` refused with its reference, then `explain --ref`.

use std::path::Path;
use std::process::Command;

use mailwarrant::testkit::exim::Exim;
use mailwarrant::testkit::free_port;
use mailwarrant::testkit::postfix::Postfix;

use crate::auth_stack::transcript;
use crate::demo_stack::{swap, DemoStack};

/// The one fenced block tagged `tag` in `docs/recipes/FILE`, as printed.
fn block(file: &str, tag: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/recipes").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            Some(body) if line == "```" => found.push(std::mem::take(body)),
            Some(body) => {
                body.push_str(line);
                body.push('\n');
                continue;
            }
            None if line == format!("```{tag}") => {
                current = Some(String::new());
                continue;
            }
            None => continue,
        }
        current = None;
    }
    assert_eq!(found.len(), 1, "one ```{tag} block in {}", path.display());
    found.remove(0)
}

/// Replaces every `from` (at least one must be there).
fn place(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the recipe no longer names {from:?}:\n{text}");
    text.replace(from, to)
}

/// `swaks` output for one message; `queued` when the server took it.
fn run_swaks(port: u16, args: &[&str]) -> String {
    let out = Command::new("swaks")
        .arg("--server")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--timeout", "30", "--helo", "client.example.com"])
        .args(args)
        .output()
        .expect("swaks runs (scripts/test.sh installs it)");
    transcript(&out)
}

fn auth<'a>(login: &'a str, password: &'a str) -> [&'a str; 6] {
    ["--auth", "PLAIN", "--auth-user", login, "--auth-password", password]
}

/// The server's refusal (its error lines, `<**` in clear and `<~*` over
/// TLS, joined: Exim folds long replies), which must hold `code` and
/// `needle` and carry a reference.
fn refusal(transcript: &str, code: &str, needle: &str) -> String {
    let text = transcript
        .lines()
        .filter_map(|l| l.strip_prefix("<** ").or_else(|| l.strip_prefix("<~* ")))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains(code) && text.contains(needle), "no {code} … {needle} in:\n{transcript}");
    assert!(text.contains("(ref "), "refusals carry a reference: {text}");
    text
}

fn reference(text: &str) -> String {
    text.split("(ref ").nth(1).and_then(|r| r.get(..12)).unwrap().to_owned()
}

/// A key and a self-signed certificate for the submission services, in
/// one PEM file (`smtpd_tls_chain_files`: key first).
fn chain_file(dir: &Path) -> std::path::PathBuf {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chain = dir.join("chain.pem");
    let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    std::fs::write(&chain, key + &std::fs::read_to_string(dir.join("cert.pem")).unwrap()).unwrap();
    chain
}

#[test]
fn postfix_recipe_submission_on_587_and_465_and_the_readme_walk_through() {
    mailwarrant::testkit::require_packages(&["libnet-ssleay-perl", "libio-socket-ssl-perl"]).unwrap();
    let demo = DemoStack::start(|_| {});
    let tls = tempfile::tempdir().unwrap();
    let chain = chain_file(tls.path());
    let main = block("postfix.md", "postfix-main");
    let main = place(&main, "127.0.0.1:10030", &format!("127.0.0.1:{}", demo.auth_port));
    let main = place(&main, "127.0.0.1:10040", &format!("127.0.0.1:{}", demo.policy_port));
    let main = place(&main, "127.0.0.1:10050", &format!("127.0.0.1:{}", demo.milter_port));
    let main = place(&main, "/etc/postfix/tls/mail.example.com.pem", chain.to_str().unwrap());
    let (submission, submissions) = (free_port(), free_port());
    let master = block("postfix.md", "postfix-master");
    let master = place(&master, "\nsubmissions inet", &format!("\n127.0.0.1:{submissions} inet"));
    let master = place(&master, "submission inet", &format!("127.0.0.1:{submission} inet"));
    let postfix = Postfix::start_with(&[], &main, &master).unwrap();
    let diag = || format!("{}\n{}", postfix.maillog(), demo.log());

    // The README's walk-through: alice sends as herself over STARTTLS.
    let alice = auth("alice", "Alice-Demo-2026!");
    let t = run_swaks(
        submission,
        &[&["--tls"][..], &alice, &["--from", "alice@example.com", "--to", "bob@example.com"]].concat(),
    );
    assert!(t.contains("250 2.0.0 Ok: queued as"), "{t}\n{}", diag());
    // bob puts alice in the header From: refused with a reference...
    let bob = auth("bob", "Bob-Demo-2026!");
    let spoof =
        ["--from", "bob@example.com", "--to", "carol@example.com", "--header", "From: Alice <alice@example.com>"];
    let t = run_swaks(submission, &[&["--tls"][..], &bob, &spoof].concat());
    let line = refusal(&t, "5.7.1", "header_from_match");
    assert!(line.contains("<alice@example.com> not owned by bob"), "{line}");
    // ...which explain resolves.
    let (ok, out) = demo.cli(&["explain", "--ref", &reference(&line)]);
    assert!(ok && out.contains("header_from_match") && out.contains("bob"), "{out}");

    // 465: TLS from the first byte, the same checks.
    let t = run_swaks(
        submissions,
        &[&["--tls-on-connect"][..], &alice, &["--from", "alice@example.com", "--to", "someone@example.net"]].concat(),
    );
    assert!(t.contains("250 2.0.0 Ok: queued as"), "{t}\n{}", diag());
    let carol = auth("carol", "Carol-Demo-2026!");
    let t = run_swaks(
        submissions,
        &[&["--tls-on-connect"][..], &carol, &["--from", "carol@example.com", "--to", "someone@example.net"]].concat(),
    );
    refusal(&t, "5.7.1", "external_recipients");

    // No AUTH before STARTTLS on 587, and no mail without AUTH.
    let t = run_swaks(submission, &[&alice[..], &["--from", "alice@example.com", "--to", "bob@example.com"]].concat());
    assert!(!t.contains("235 "), "AUTH in clear on 587: {t}");
    let t = run_swaks(submission, &["--tls", "--from", "alice@example.com", "--to", "bob@example.com"]);
    assert!(!t.contains("queued as") && t.contains("<~* 554 5.7.1"), "{t}");
    // The plain smtpd of the instance (port 25's stand-in) asks nobody.
    let t = run_swaks(
        postfix.port,
        &["--from", "mallory@example.org", "--to", "x@example.net", "--header", "From: bob@example.com"],
    );
    assert!(!t.contains("(ref "), "the recipe must not reach the inbound service: {t}");
}

#[test]
fn exim_recipe_auth_interns_and_a_rate_limit() {
    let demo = DemoStack::start(|text| swap(text, "rate = \"500/1d\"", "rate = \"3/1d\""));
    let policy = format!("127.0.0.1:{}", demo.policy_port);
    let main = block("exim.md", "exim-main");
    let acl = place(&block("exim.md", "exim-acl"), "127.0.0.1:10040", &policy);
    let authenticators =
        place(&block("exim.md", "exim-auth"), "/run/mailwarrant/auth", demo.auth_socket.to_str().unwrap());
    let exim = Exim::start_with_sections(&main, &acl, &authenticators).unwrap();
    let diag = || format!("{}\n{}", exim.log(), demo.log());
    let send = |login: &str, password: &str, from: &str, to: &str| {
        run_swaks(exim.port, &[&auth(login, password)[..], &["--from", from, "--to", to]].concat())
    };

    let t = send("alice", "Alice-Demo-2026!", "alice@example.com", "someone@example.net");
    assert!(t.contains("250 OK id="), "{t}\n{}", diag());
    assert!(exim.log().contains("A=mailwarrant_plain:alice"), "{}", diag());
    // An intern: outside refused with mailwarrant's text, inside accepted.
    let t = send("carol", "Carol-Demo-2026!", "carol@example.com", "someone@example.net");
    refusal(&t, "550", "external_recipients");
    let t = send("carol", "Carol-Demo-2026!", "carol@example.com", "bob@example.com");
    assert!(t.contains("250 OK id="), "{t}\n{}", diag());
    // Sending as someone else.
    let t = send("bob", "Bob-Demo-2026!", "alice@example.com", "carol@example.com");
    refusal(&t, "5.7.1", "not owned by bob");
    // bob's 3 a day: three go, the fourth is deferred (and names the reset).
    for i in 0..3 {
        let t = send("bob", "Bob-Demo-2026!", "bob@example.com", "alice@example.com");
        assert!(t.contains("250 OK id="), "message {i}: {t}\n{}", diag());
    }
    let t = send("bob", "Bob-Demo-2026!", "bob@example.com", "alice@example.com");
    let line = refusal(&t, "4.7.1", "3/3 messages today");
    let (ok, out) = demo.cli(&["explain", "--ref", &reference(&line)]);
    assert!(ok && out.contains("rate_limit"), "{out}");
    let (ok, out) = demo.cli(&["explain", "bob"]);
    assert!(ok && out.contains("3/3"), "counted once per message: {out}");
    // A wrong password; no mail without AUTH.
    let t = send("alice", "Wrong-Password-1", "alice@example.com", "bob@example.com");
    assert!(t.contains("535 "), "{t}");
    let t = run_swaks(exim.port, &["--from", "alice@example.com", "--to", "bob@example.com"]);
    assert!(t.contains("530 5.7.0 authentication required"), "{t}");
}

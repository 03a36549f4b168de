//! The behaviour every [`Store`] backend must show, written once and run
//! against each (SQLite in its unit tests, Redis against a real
//! redis-server in `tests/it/store_redis.rs`). Each check panics on the
//! first difference; each expects a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use super::{ChargeOutcome, Expiry, Increment, Store};

/// Every check, by name, for backends that run them in a loop.
pub const CHECKS: &[&str] = &[
    "counters_add_expire_and_restart_from_zero",
    "concurrent_increments_are_never_lost",
    "incr_within_is_all_or_nothing_and_once",
    "concurrent_charges_stop_exactly_at_the_limit",
    "after_last_expiry_waits_for_a_quiet_ttl",
    "set_if_absent_is_a_lock",
    "values_replace_expire_and_delete",
    "logs_keep_only_the_newest",
];

/// Runs the check called `name` (one of [`CHECKS`]).
pub async fn run(name: &str, s: Arc<dyn Store>) {
    match name {
        "counters_add_expire_and_restart_from_zero" => counters_add_expire_and_restart_from_zero(s).await,
        "concurrent_increments_are_never_lost" => concurrent_increments_are_never_lost(s).await,
        "incr_within_is_all_or_nothing_and_once" => incr_within_is_all_or_nothing_and_once(s).await,
        "concurrent_charges_stop_exactly_at_the_limit" => concurrent_charges_stop_exactly_at_the_limit(s).await,
        "after_last_expiry_waits_for_a_quiet_ttl" => after_last_expiry_waits_for_a_quiet_ttl(s).await,
        "set_if_absent_is_a_lock" => set_if_absent_is_a_lock(s).await,
        "values_replace_expire_and_delete" => values_replace_expire_and_delete(s).await,
        "logs_keep_only_the_newest" => logs_keep_only_the_newest(s).await,
        other => panic!("no conformance check {other}"),
    }
}

fn inc(key: &str, delta: i64, limit: i64) -> Increment {
    Increment { key: key.into(), delta, limit, ttl: Duration::from_secs(60), expiry: Expiry::FromFirst }
}

pub async fn counters_add_expire_and_restart_from_zero(s: Arc<dyn Store>) {
    assert_eq!(s.counter("c").await.unwrap(), 0);
    assert_eq!(s.counter_with_ttl("c").await.unwrap(), None);
    assert_eq!(s.incr("c", 2, Duration::from_millis(150)).await.unwrap(), 2);
    assert_eq!(s.incr("c", 3, Duration::from_secs(60)).await.unwrap(), 5);
    let (v, left) = s.counter_with_ttl("c").await.unwrap().unwrap();
    assert_eq!(v, 5);
    assert!(left <= Duration::from_millis(150), "an existing counter keeps its expiry");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.counter("c").await.unwrap(), 0);
    assert_eq!(s.incr("c", 1, Duration::from_secs(60)).await.unwrap(), 1);
    let (_, left) = s.counter_with_ttl("c").await.unwrap().unwrap();
    assert!(
        left > Duration::from_secs(50) && left <= Duration::from_secs(60),
        "a restarted counter has its new expiry"
    );
    // Counters and values are apart: a value of the same name is not a counter.
    s.set("c", b"text", None).await.unwrap();
    assert_eq!(s.counter("c").await.unwrap(), 1);
    assert!(s.delete("c").await.unwrap());
    assert_eq!(s.counter("c").await.unwrap(), 0, "delete removes the counter too");
    assert!(!s.delete("c").await.unwrap());
}

pub async fn concurrent_increments_are_never_lost(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    s.incr("k", 1, Duration::from_secs(60)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.counter("k").await.unwrap(), 64 * 50);
}

pub async fn incr_within_is_all_or_nothing_and_once(s: Arc<dyn Store>) {
    let two = [inc("day", 1, 3), inc("rcpt", 5, 10)];
    let once = |k| Some((k, Duration::from_secs(60)));
    assert_eq!(s.incr_within(once("m1"), &two).await.unwrap(), ChargeOutcome::Charged(vec![1, 5]));
    assert_eq!(s.incr_within(once("m1"), &two).await.unwrap(), ChargeOutcome::AlreadyCharged);
    assert_eq!(s.incr_within(once("m2"), &two).await.unwrap(), ChargeOutcome::Charged(vec![2, 10]));
    // The second window would pass 10: nothing changes, not even the first.
    assert_eq!(
        s.incr_within(once("m3"), &two).await.unwrap(),
        ChargeOutcome::Refused { index: 1, values: vec![2, 10] }
    );
    assert_eq!(s.counter("day").await.unwrap(), 2);
    // A refused charge leaves no `once` key behind.
    assert_eq!(s.get("m3").await.unwrap(), None);
    // The first window refuses: index 0.
    let tight = [inc("day", 2, 3), inc("rcpt", 0, 10)];
    assert_eq!(s.incr_within(None, &tight).await.unwrap(), ChargeOutcome::Refused { index: 0, values: vec![2, 10] });
    // New counters get the charge's TTL; no counters at all is a charge.
    assert_eq!(s.incr_within(None, &[inc("fresh", 4, 4)]).await.unwrap(), ChargeOutcome::Charged(vec![4]));
    let (_, left) = s.counter_with_ttl("fresh").await.unwrap().unwrap();
    assert!(left > Duration::from_secs(50));
    assert_eq!(s.incr_within(None, &[]).await.unwrap(), ChargeOutcome::Charged(vec![]));
    // An expired `once` key charges again.
    let short = Some(("m4", Duration::from_millis(100)));
    assert_eq!(s.incr_within(short, &[inc("x", 1, 9)]).await.unwrap(), ChargeOutcome::Charged(vec![1]));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.incr_within(short, &[inc("x", 1, 9)]).await.unwrap(), ChargeOutcome::Charged(vec![2]));
    // Unlimited (observe mode) never refuses.
    assert_eq!(s.incr_within(None, &[inc("x", 1000, i64::MAX)]).await.unwrap(), ChargeOutcome::Charged(vec![1002]));
}

pub async fn concurrent_charges_stop_exactly_at_the_limit(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut won = 0;
                for _ in 0..40 {
                    if let ChargeOutcome::Charged(_) = s.incr_within(None, &[inc("k", 1, 1000)]).await.unwrap() {
                        won += 1;
                    }
                }
                won
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 1000);
    assert_eq!(s.counter("k").await.unwrap(), 1000);
}

/// The failure budgets of the AUTH throttle: charges paced just inside
/// the TTL keep the counter alive, so it only ever grows to its limit;
/// a quiet TTL forgets it.
pub async fn after_last_expiry_waits_for_a_quiet_ttl(s: Arc<dyn Store>) {
    let ttl = Duration::from_millis(300);
    let paced = |limit| Increment { key: "quiet".into(), delta: 1, limit, ttl, expiry: Expiry::AfterLast };
    for n in 1..=3 {
        assert_eq!(s.incr_within(None, &[paced(3)]).await.unwrap(), ChargeOutcome::Charged(vec![n]));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // 600 ms since the first charge, 200 ms since the last: still counted.
    assert!(matches!(s.incr_within(None, &[paced(3)]).await.unwrap(), ChargeOutcome::Refused { index: 0, .. }));
    let (value, left) = s.counter_with_ttl("quiet").await.unwrap().unwrap();
    assert_eq!(value, 3);
    assert!(left <= Duration::from_millis(120), "a refused charge does not move the expiry: {left:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.incr_within(None, &[paced(3)]).await.unwrap(), ChargeOutcome::Charged(vec![1]));
}

pub async fn set_if_absent_is_a_lock(s: Arc<dyn Store>) {
    assert!(s.set_if_absent("l", b"a", Some(Duration::from_millis(100))).await.unwrap());
    assert!(!s.set_if_absent("l", b"b", None).await.unwrap());
    assert_eq!(s.get("l").await.unwrap().as_deref(), Some(&b"a"[..]));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(s.set_if_absent("l", b"c", None).await.unwrap());
    assert!(!s.set_if_absent("l", b"d", Some(Duration::from_secs(1))).await.unwrap());
    assert!(s.delete("l").await.unwrap());
    assert_eq!(s.get("l").await.unwrap(), None);
    // Only one of many concurrent claimants wins.
    let tasks: Vec<_> = (0..32u8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.set_if_absent("claim", &[i], Some(Duration::from_secs(60))).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}

pub async fn values_replace_expire_and_delete(s: Arc<dyn Store>) {
    assert_eq!(s.get("v").await.unwrap(), None);
    s.set("v", b"one", Some(Duration::from_millis(100))).await.unwrap();
    s.set("v", &[0, 255, 10], None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.get("v").await.unwrap().as_deref(), Some(&[0u8, 255, 10][..]), "replacing drops the old expiry");
    s.set("v", b"", Some(Duration::from_millis(100))).await.unwrap();
    assert_eq!(s.get("v").await.unwrap().as_deref(), Some(&b""[..]), "an empty value is a value");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.get("v").await.unwrap(), None);
    assert!(!s.delete("v").await.unwrap(), "an expired value is not live");
    s.check_health().await.unwrap();
}

pub async fn logs_keep_only_the_newest(s: Arc<dyn Store>) {
    assert!(s.tail("audit", 10).await.unwrap().is_empty());
    for i in 0..10u8 {
        s.append("audit", &[i], 3).await.unwrap();
    }
    s.append("other", b"x", 3).await.unwrap();
    assert_eq!(s.tail("audit", 10).await.unwrap(), vec![vec![9], vec![8], vec![7]]);
    assert_eq!(s.tail("audit", 2).await.unwrap(), vec![vec![9], vec![8]]);
    assert!(s.tail("audit", 0).await.unwrap().is_empty());
    assert_eq!(s.tail("other", 10).await.unwrap(), vec![b"x".to_vec()]);
}

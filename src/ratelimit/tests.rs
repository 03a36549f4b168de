use time::macros::datetime;

use super::*;
use crate::policy::Counted;
use crate::store::sqlite::SqliteStore;

fn limit(name: &str, per: LimitSubject, count: Counted, n: u64, secs: u64) -> RateLimit {
    RateLimit { name: name.into(), per, count, limit: n, window: Duration::from_secs(secs) }
}

fn limiter() -> (tempfile::TempDir, RateLimiter) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("rl.sqlite")).unwrap();
    (dir, RateLimiter::new(Arc::new(store)))
}

const UTC: TimeZone = TimeZone::UTC;
const WHO: Subjects<'static> = Subjects { login: "alice", client_address: Some("192.0.2.7") };

#[test]
fn keys_name_limit_subject_and_window() {
    let per_ip = limit("ip", LimitSubject::ClientAddress, Counted::Messages, 1, 60);
    assert_eq!(counter_key(&per_ip, WHO, 120).unwrap(), "rl:ip:c:192.0.2.7:120");
    assert_eq!(counter_key(&per_ip, Subjects { login: "alice", client_address: None }, 120), None);
}

#[tokio::test]
async fn charges_until_the_limit_then_refuses_without_counting() {
    let (_d, rl) = limiter();
    let limits = [limit("day", LimitSubject::User, Counted::Messages, 2, 86_400)];
    let now = datetime!(2026-11-27 12:00 UTC);
    for id in ["i1", "i2"] {
        assert!(matches!(
            rl.charge(&limits, &[true], WHO, Some(id), 1, When { now, zone: &UTC }).await.unwrap(),
            Charge::Charged(_)
        ));
    }
    match rl.charge(&limits, &[true], WHO, Some("i3"), 1, When { now, zone: &UTC }).await.unwrap() {
        Charge::Refused(r) => {
            assert_eq!(r.used, 2);
            assert_eq!(r.resets_at, datetime!(2026-11-28 00:00 UTC));
        }
        other => panic!("{other:?}"),
    }
    // Re-asking an accepted message does not count it again.
    assert_eq!(
        rl.charge(&limits, &[true], WHO, Some("i1"), 1, When { now, zone: &UTC }).await.unwrap(),
        Charge::AlreadyCharged
    );
    assert_eq!(rl.read(&limits, WHO, When { now, zone: &UTC }).await.unwrap()[0].used, 2);
}

#[tokio::test]
async fn window_rollover_starts_from_zero() {
    let (_d, rl) = limiter();
    let limits = [limit("day", LimitSubject::User, Counted::Messages, 1, 86_400)];
    let before = datetime!(2026-11-27 23:59:59 UTC);
    let after = datetime!(2026-11-28 00:00:00 UTC);
    assert!(matches!(
        rl.charge(&limits, &[true], WHO, None, 1, When { now: before, zone: &UTC }).await.unwrap(),
        Charge::Charged(_)
    ));
    assert!(matches!(
        rl.charge(&limits, &[true], WHO, None, 1, When { now: before, zone: &UTC }).await.unwrap(),
        Charge::Refused(_)
    ));
    assert!(matches!(
        rl.charge(&limits, &[true], WHO, None, 1, When { now: after, zone: &UTC }).await.unwrap(),
        Charge::Charged(_)
    ));
    assert_eq!(rl.read(&limits, WHO, When { now: before, zone: &UTC }).await.unwrap()[0].used, 1);
}

#[tokio::test]
async fn burst_daily_recipients_and_client_windows_are_charged_together() {
    let (_d, rl) = limiter();
    let limits = [
        limit("msgs", LimitSubject::User, Counted::Messages, 100, 86_400),
        limit("rcpts", LimitSubject::User, Counted::Recipients, 10, 86_400),
        limit("burst", LimitSubject::User, Counted::Messages, 3, 60),
        limit("ip", LimitSubject::ClientAddress, Counted::Messages, 100, 86_400),
    ];
    let capped = [true; 4];
    let now = datetime!(2026-11-27 12:00:00 UTC);
    for id in ["a", "b", "c"] {
        assert!(matches!(
            rl.charge(&limits, &capped, WHO, Some(id), 2, When { now, zone: &UTC }).await.unwrap(),
            Charge::Charged(_)
        ));
    }
    // The burst window refuses; nothing else moves.
    match rl.charge(&limits, &capped, WHO, Some("d"), 2, When { now, zone: &UTC }).await.unwrap() {
        Charge::Refused(r) => assert_eq!(r.limit, 2),
        other => panic!("{other:?}"),
    }
    let used: Vec<u64> =
        rl.read(&limits, WHO, When { now, zone: &UTC }).await.unwrap().iter().map(|r| r.used).collect();
    assert_eq!(used, [3, 6, 3, 3]);
    // A minute later the burst has room; 5 recipients pass the daily 10.
    let later = datetime!(2026-11-27 12:01:00 UTC);
    match rl.charge(&limits, &capped, WHO, Some("e"), 5, When { now: later, zone: &UTC }).await.unwrap() {
        Charge::Refused(r) => assert_eq!((r.limit, r.used), (1, 6)),
        other => panic!("{other:?}"),
    }
    // An observed (uncapped) limit counts past its limit.
    let observed = [true, false, true, true];
    assert!(matches!(
        rl.charge(&limits, &observed, WHO, Some("e"), 5, When { now: later, zone: &UTC }).await.unwrap(),
        Charge::Charged(_)
    ));
    assert_eq!(rl.read(&limits, WHO, When { now: later, zone: &UTC }).await.unwrap()[1].used, 11);
}

/// C1: 64 parallel clients, limit L → exactly L accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_get_exactly_the_limit() {
    let (_d, rl) = limiter();
    const L: u64 = 1000;
    let limits = Arc::new([limit("day", LimitSubject::User, Counted::Messages, L, 86_400)]);
    let now = datetime!(2026-11-27 12:00 UTC);
    let tasks: Vec<_> = (0..64)
        .map(|c| {
            let (rl, limits) = (rl.clone(), limits.clone());
            tokio::spawn(async move {
                let mut accepted = 0u64;
                for m in 0..40 {
                    let id = format!("{c}.{m}");
                    if let Charge::Charged(_) =
                        rl.charge(&*limits, &[true], WHO, Some(&id), 1, When { now, zone: &UTC }).await.unwrap()
                    {
                        accepted += 1;
                    }
                }
                accepted
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, L);
}

/// C4: every message asked twice (Postfix re-asks after a timeout) is
/// counted once.
#[tokio::test]
async fn each_instance_is_counted_once_when_asked_twice() {
    let (_d, rl) = limiter();
    let limits = [limit("day", LimitSubject::User, Counted::Messages, 100_000, 86_400)];
    let now = datetime!(2026-11-27 12:00 UTC);
    for m in 0..1000 {
        let id = format!("4d4f.6b0a04dc.{m}.0");
        assert!(matches!(
            rl.charge(&limits, &[true], WHO, Some(&id), 1, When { now, zone: &UTC }).await.unwrap(),
            Charge::Charged(_)
        ));
        assert_eq!(
            rl.charge(&limits, &[true], WHO, Some(&id), 1, When { now, zone: &UTC }).await.unwrap(),
            Charge::AlreadyCharged
        );
    }
    assert_eq!(rl.read(&limits, WHO, When { now, zone: &UTC }).await.unwrap()[0].used, 1000);
}

mod model {
    //! C7: the limiter against a reference model of fixed windows, over
    //! random arrival traces (a burst window and a longer one at once).
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn matches_the_fixed_window_model(gaps in proptest::collection::vec(0u64..40, 1..120), burst in 1u64..5, daily in 1u64..30) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (_d, rl) = limiter();
            let limits = [
                limit("burst", LimitSubject::User, Counted::Messages, burst, 60),
                limit("long", LimitSubject::User, Counted::Messages, daily, 600),
            ];
            let start = datetime!(2026-11-27 12:00 UTC).unix_timestamp();
            let mut t = start;
            let mut counts: std::collections::HashMap<(usize, i64), u64> = Default::default();
            for gap in gaps {
                t += gap as i64;
                let now = OffsetDateTime::from_unix_timestamp(t).unwrap();
                let windows = [(0usize, t.div_euclid(60)), (1usize, t.div_euclid(600))];
                let fits = windows.iter().all(|w| counts.get(w).copied().unwrap_or(0) < limits[w.0].limit);
                if fits {
                    for w in windows {
                        *counts.entry(w).or_default() += 1;
                    }
                }
                let got = rt.block_on(rl.charge(&limits, &[true, true], WHO, None, 1, When { now, zone: &UTC })).unwrap();
                prop_assert_eq!(matches!(got, Charge::Charged(_)), fits, "at +{}s", t - start);
            }
        }
    }
}

/// docs/testing.md C5: across the 23-hour and the 25-hour day in Berlin, 1,000
/// messages spread over three local days are counted per local day: the
/// limit resets exactly once at each local midnight, never in between
/// (not at 00:00 UTC, not twice on the long day).
#[tokio::test]
async fn a_daily_limit_resets_once_per_local_day_across_dst() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let limits = [limit("day", LimitSubject::User, Counted::Messages, 1_000, 86_400)];
    for (first_midnight, hours) in
        [(datetime!(2026-03-27 23:00 UTC), [24, 23, 24]), (datetime!(2026-10-23 22:00 UTC), [24, 25, 24])]
    {
        let (_d, rl) = limiter();
        let total: i64 = hours.iter().sum::<i64>() * 3600;
        let mut per_day = [0u64; 3];
        for n in 0..1_000i64 {
            let at = first_midnight + time::Duration::seconds(n * total / 1_000);
            let day = {
                let mut end = first_midnight;
                hours.iter().position(|h| {
                    end += time::Duration::hours(*h);
                    at < end
                })
            }
            .unwrap();
            match rl
                .charge(&limits, &[true], WHO, Some(&format!("m{n}")), 1, When { now: at, zone: &berlin })
                .await
                .unwrap()
            {
                Charge::Charged(after) => {
                    per_day[day] += 1;
                    assert_eq!(
                        after[0].used, per_day[day],
                        "message {n} at {at}: the count must run on within a local day"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let expected: Vec<u64> =
            hours.iter().map(|h| ((1_000 * h * 3600) as f64 / total as f64).round() as u64).collect();
        for (got, want) in per_day.iter().zip(&expected) {
            assert!(got.abs_diff(*want) <= 1, "{per_day:?} vs {expected:?}");
        }
    }
}

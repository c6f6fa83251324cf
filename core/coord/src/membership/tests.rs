//! The coordinator's state machine, driven directly (clocks set by hand where time matters).

use super::*;

fn join(group: &str, member: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group: group.into(),
        member_id: member.into(),
        instance_id: instance.map(str::to_string),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(2),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"md"))],
        requires_known_member_id: true,
    }
}

#[tokio::test]
async fn sessions_expire_by_the_coordinators_clock() {
    let clock = freshet_log::clock::ManualClock::new(1_000_000);
    let c = Coordinator::with_clock(clock.clone());
    c.start_expiry();
    let a = c.join(join("g", "", None)).await.member_id;
    assert_eq!(c.join(join("g", &a, None)).await.error_code, code::NONE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.describe("g").await.unwrap().members.len(), 1, "no time passed on the clock");
    clock.advance_ms(10_001);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c.describe("g").await.unwrap().members.is_empty(), "10 s session, 10.001 s by the clock");
}

#[tokio::test]
async fn a_join_past_group_max_size_is_refused_and_the_members_stay() {
    let c = Coordinator::with_max_group_size(1);
    let a = c.join(join("g", "", None)).await.member_id;
    assert_eq!(c.join(join("g", &a, None)).await.error_code, code::NONE);
    let b = c.join(join("g", "", None)).await.member_id;
    assert_eq!(c.join(join("g", &b, None)).await.error_code, code::GROUP_MAX_SIZE_REACHED);
    assert_eq!(c.join(join("g", &a, None)).await.error_code, code::NONE, "a member rejoins");
    assert_eq!(c.describe("g").await.unwrap().members.len(), 1);
}

#[tokio::test]
async fn two_members_join_sync_and_a_leave_rebalances() {
    let c = Coordinator::new();
    c.start_expiry();
    let first = c.join(join("g", "", None)).await;
    assert_eq!(first.error_code, code::MEMBER_ID_REQUIRED);
    let a = first.member_id;
    let ja = c.join(join("g", &a, None)).await;
    assert_eq!((ja.error_code, ja.generation, ja.leader.as_str(), ja.members.len()), (0, 1, a.as_str(), 1));
    let sa = c.sync("g", 1, &a, None, vec![(a.clone(), Bytes::from_static(b"all"))]).await;
    assert_eq!(&sa.assignment[..], b"all");
    // B joins: A's heartbeat says rebalance; both rejoin; the leader assigns.
    let b = c.join(join("g", "", None)).await.member_id;
    let c2 = c.clone();
    let b2 = b.clone();
    let jb = tokio::spawn(async move { c2.join(join("g", &b2, None)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.heartbeat("g", 1, &a, None).await, code::REBALANCE_IN_PROGRESS);
    let ja = c.join(join("g", &a, None)).await;
    let jb = jb.await.unwrap();
    assert_eq!((ja.generation, jb.generation), (2, 2));
    let leader = ja.leader.clone();
    let (l, f) = if leader == a { (&a, &b) } else { (&b, &a) };
    let c3 = c.clone();
    let f2 = f.clone();
    let follower = tokio::spawn(async move { c3.sync("g", 2, &f2, None, Vec::new()).await });
    let sl = c
        .sync("g", 2, l, None, vec![(a.clone(), Bytes::from_static(b"p0")), (b.clone(), Bytes::from_static(b"p1"))])
        .await;
    let sf = follower.await.unwrap();
    assert_eq!(sl.error_code, 0);
    assert_eq!(sf.error_code, 0);
    assert!(!sf.assignment.is_empty());
    assert_eq!(c.heartbeat("g", 2, &a, None).await, code::NONE);
    assert_eq!(c.heartbeat("g", 1, &a, None).await, code::ILLEGAL_GENERATION);
    assert_eq!(c.leave("g", &[(b.clone(), None)]).await, vec![code::NONE]);
    assert_eq!(c.heartbeat("g", 2, &a, None).await, code::REBALANCE_IN_PROGRESS);
    assert_eq!(c.heartbeat("g", 2, "nobody", None).await, code::UNKNOWN_MEMBER_ID);
}

#[tokio::test]
async fn a_member_that_does_not_rejoin_is_removed_at_the_rebalance_deadline() {
    let c = Coordinator::new();
    c.start_expiry();
    let a = c.join(join("g", "", None)).await.member_id;
    c.join(join("g", &a, None)).await;
    c.sync("g", 1, &a, None, Vec::new()).await;
    let b = c.join(join("g", "", None)).await.member_id;
    // B joins; A never rejoins: after the rebalance timeout (2 s) B is alone in generation 2.
    let jb = c.join(join("g", &b, None)).await;
    assert_eq!((jb.error_code, jb.generation, jb.leader), (0, 2, b.clone()));
    assert_eq!(c.describe("g").await.unwrap().members.len(), 1);
}

/// As Kafka: a new instance with the same `group.instance.id` takes the member's place under a
/// new member id, without a rebalance; the old instance is fenced wherever it calls.
#[tokio::test]
async fn a_new_instance_of_a_static_member_takes_its_place_and_fences_the_old_one() {
    let c = Coordinator::new();
    c.start_expiry();
    let first = c.join(join("g", "", Some("i-1"))).await;
    assert_eq!(first.error_code, 0, "static members need no second join");
    let old = first.member_id.clone();
    c.sync("g", first.generation, &old, Some("i-1"), vec![(old.clone(), Bytes::from_static(b"a"))]).await;
    let again = c.join(join("g", "", Some("i-1"))).await;
    assert_eq!((again.error_code, again.generation), (0, first.generation), "no rebalance");
    let new = again.member_id.clone();
    assert_ne!(new, old, "a new member id");
    assert_eq!(again.leader, old, "the old leader id: the new instance does not assign");
    assert_eq!(&c.sync("g", again.generation, &new, Some("i-1"), Vec::new()).await.assignment[..], b"a");
    assert_eq!(c.heartbeat("g", first.generation, &new, Some("i-1")).await, code::NONE);
    // The old instance is fenced.
    assert_eq!(c.heartbeat("g", first.generation, &old, Some("i-1")).await, code::FENCED_INSTANCE_ID);
    let sync = c.sync("g", first.generation, &old, Some("i-1"), Vec::new()).await;
    assert_eq!(sync.error_code, code::FENCED_INSTANCE_ID);
    assert_eq!(c.join(join("g", &old, Some("i-1"))).await.error_code, code::FENCED_INSTANCE_ID);
    assert_eq!(c.check_commit("g", first.generation, &old, Some("i-1"), false).await, code::FENCED_INSTANCE_ID);
    assert_eq!(c.leave("g", &[(old.clone(), Some("i-1".into()))]).await, vec![code::FENCED_INSTANCE_ID]);
    assert_eq!(c.describe("g").await.unwrap().members.len(), 1);
    // A static member with an instance id the group does not know rejoins from scratch.
    assert_eq!(c.join(join("g", "someone", Some("i-2"))).await.error_code, code::UNKNOWN_MEMBER_ID);
}

/// A static member waiting for its join answer when a new instance replaces it is answered
/// FENCED_INSTANCE_ID at once.
#[tokio::test]
async fn a_static_member_waiting_in_a_rebalance_is_fenced_by_its_new_instance() {
    let c = Coordinator::new();
    c.start_expiry();
    let a = c.join(join("g", "", Some("a"))).await;
    c.sync("g", a.generation, &a.member_id, Some("a"), Vec::new()).await;
    let b = c.join(join("g", "", Some("b"))).await;
    c.sync("g", b.generation, &b.member_id, Some("b"), Vec::new()).await;
    // A new member starts a rebalance; "b" rejoins and waits for "a".
    let c2 = c.clone();
    let b_id = b.member_id.clone();
    let waiting = tokio::spawn(async move { c2.join(join("g", &b_id, Some("b"))).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    let c3 = c.clone();
    let replacing = tokio::spawn(async move { c3.join(join("g", "", Some("b"))).await });
    let fenced = waiting.await.unwrap();
    assert_eq!(fenced.error_code, code::FENCED_INSTANCE_ID);
    let a_again = c.join(join("g", &a.member_id, Some("a"))).await;
    let replaced = replacing.await.unwrap();
    assert_eq!((a_again.error_code, replaced.error_code), (0, 0));
    assert_eq!(a_again.generation, replaced.generation);
    assert_ne!(replaced.member_id, b.member_id);
}

/// As Kafka: during a rebalance, a member that has not rejoined and stops heartbeating is
/// removed when its session runs out, not only at the rebalance timeout; a member waiting in
/// its join is alive however long the wait.
#[tokio::test]
async fn a_member_silent_during_a_rebalance_is_removed_when_its_session_runs_out() {
    let clock = freshet_log::clock::ManualClock::new(1_000_000);
    let c = Coordinator::with_clock(clock.clone());
    c.start_expiry();
    let join = |member: &str| JoinRequest { rebalance_timeout: Duration::from_secs(300), ..join("g", member, None) };
    let a = c.join(join("")).await.member_id;
    let b = c.join(join("")).await.member_id;
    let (c1, ja) = (c.clone(), join(&a));
    let first = tokio::spawn(async move { c1.join(ja).await });
    let jb = c.join(join(&b)).await;
    let first = first.await.unwrap();
    let leader = if first.leader == a { &a } else { &b };
    let (c1, l) = (c.clone(), leader.clone());
    let leader_sync = tokio::spawn(async move { c1.sync("g", 1, &l, None, Vec::new()).await });
    let follower = if leader == &a { &b } else { &a };
    c.sync("g", jb.generation, follower, None, Vec::new()).await;
    leader_sync.await.unwrap();
    // "a" rejoins (a rebalance); "b" goes silent.
    let (c1, ja) = (c.clone(), join(&a));
    let rejoin = tokio::spawn(async move { c1.join(ja).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.advance_ms(9_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rejoin.is_finished(), "b's session (10 s) has not run out");
    clock.advance_ms(2_000);
    let rejoined = tokio::time::timeout(Duration::from_secs(5), rejoin).await.expect("answered").unwrap();
    assert_eq!((rejoined.error_code, rejoined.generation, rejoined.members.len()), (0, 2, 1));
    assert_eq!(c.describe("g").await.unwrap().members.len(), 1, "b removed, a kept though it waited 11 s");
}

/// A member given MEMBER_ID_REQUIRED is pending: the join phase waits for it, as Kafka's
/// does, so that one rebalance takes in both; a pending member that never joins is forgotten
/// after its session timeout.
#[tokio::test]
async fn the_join_phase_waits_for_pending_members() {
    let clock = freshet_log::clock::ManualClock::new(1_000_000);
    let c = Coordinator::with_clock(clock.clone());
    c.start_expiry();
    let a = c.join(join("g", "", None)).await.member_id;
    let b = c.join(join("g", "", None)).await.member_id;
    let (c1, ja) = (c.clone(), join("g", &a, None));
    let first = tokio::spawn(async move { c1.join(ja).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished(), "b is pending");
    let jb = c.join(join("g", &b, None)).await;
    let first = first.await.unwrap();
    assert_eq!((first.generation, jb.generation), (1, 1));
    let (leader, follower) = if first.leader == a { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
    c.sync("g", 1, &leader, None, Vec::new()).await;
    // A pending member that never joins holds the join phase until its session runs out.
    let _never = c.join(join("g", "", None)).await.member_id;
    let (c1, ja) = (c.clone(), join("g", &leader, None));
    let rejoin = tokio::spawn(async move { c1.join(ja).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (c2, jb) = (c.clone(), join("g", &follower, None));
    let rejoin_b = tokio::spawn(async move { c2.join(jb).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rejoin.is_finished(), "the pending member holds the join phase");
    clock.advance_ms(10_001);
    let rejoined = tokio::time::timeout(Duration::from_secs(5), rejoin).await.expect("answered").unwrap();
    assert_eq!(rejoined.generation, 2);
    assert_eq!(rejoin_b.await.unwrap().generation, 2);
    assert_eq!(c.join(join("g", "made-up", None)).await.error_code, code::UNKNOWN_MEMBER_ID);
}

/// As Kafka: a commit without a generation (the admin client's, or a consumer's outside group
/// management) goes only into a group without members; a member's only in its generation.
#[tokio::test]
async fn commits_are_checked_against_the_group() {
    let c = Coordinator::new();
    assert_eq!(c.check_commit("g", -1, "", None, false).await, code::NONE, "no such group");
    assert_eq!(c.check_commit("g", 3, "m", None, false).await, code::ILLEGAL_GENERATION);
    let a = c.join(join("g", "", None)).await.member_id;
    let joined = c.join(join("g", &a, None)).await;
    assert_eq!(c.check_commit("g", -1, "", None, false).await, code::UNKNOWN_MEMBER_ID, "the group has members");
    assert_eq!(c.check_commit("g", -1, "", None, true).await, code::NONE, "a transaction's commit");
    assert_eq!(c.check_commit("g", joined.generation, &a, None, false).await, code::REBALANCE_IN_PROGRESS);
    c.sync("g", joined.generation, &a, None, Vec::new()).await;
    assert_eq!(c.check_commit("g", joined.generation, &a, None, false).await, code::NONE);
    assert_eq!(c.check_commit("g", joined.generation + 1, &a, None, false).await, code::ILLEGAL_GENERATION);
    assert_eq!(c.check_commit("g", joined.generation, "other", None, false).await, code::UNKNOWN_MEMBER_ID);
    assert_eq!(c.leave("g", &[(a, None)]).await, vec![code::NONE]);
    assert_eq!(c.check_commit("g", -1, "", None, false).await, code::NONE, "empty again");
}

/// As Kafka: the leader rejoining a stable group starts a new generation (it may have seen
/// a topic appear that the subscriptions do not show); a follower rejoining unchanged gets
/// the current one back.
#[tokio::test]
async fn the_leader_rejoining_a_stable_group_rebalances_and_a_follower_does_not() {
    let c = Coordinator::new();
    c.start_expiry();
    let a = c.join(join("g", "", None)).await.member_id;
    let first = c.join(join("g", &a, None)).await;
    assert_eq!((first.generation, first.leader.as_str()), (1, a.as_str()));
    c.sync("g", 1, &a, None, vec![(a.clone(), Bytes::new())]).await;
    let again = c.join(join("g", &a, None)).await;
    assert_eq!((again.error_code, again.generation, again.members.len()), (code::NONE, 2, 1));
    c.sync("g", 2, &a, None, vec![(a.clone(), Bytes::from_static(b"p0"))]).await;
    // A follower joins (generation 3), then rejoins unchanged: still generation 3.
    let b = c.join(join("g", "", None)).await.member_id;
    let c2 = c.clone();
    let b2 = b.clone();
    let jb = tokio::spawn(async move { c2.join(join("g", &b2, None)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ja = c.join(join("g", &a, None)).await;
    let jb = jb.await.unwrap();
    assert_eq!((ja.generation, jb.generation, ja.leader.as_str()), (3, 3, a.as_str()));
    let c3 = c.clone();
    let b3 = b.clone();
    let follower = tokio::spawn(async move { c3.sync("g", 3, &b3, None, Vec::new()).await });
    c.sync("g", 3, &a, None, vec![(a.clone(), Bytes::new()), (b.clone(), Bytes::from_static(b"p1"))]).await;
    assert_eq!(&follower.await.unwrap().assignment[..], b"p1");
    let rejoined = c.join(join("g", &b, None)).await;
    assert_eq!((rejoined.error_code, rejoined.generation), (code::NONE, 3));
    assert_eq!(c.heartbeat("g", 3, &a, None).await, code::NONE, "no rebalance started");
}

/// Kafka's `group.initial.rebalance.delay.ms`: the first rebalance of an empty group waits
/// for more members, so two consumers starting together share one generation.
#[tokio::test]
async fn the_first_rebalance_of_an_empty_group_waits_the_initial_delay() {
    let clock = freshet_log::clock::ManualClock::new(1_000_000);
    let c = Coordinator::with_clock(clock.clone());
    c.set_initial_rebalance_delay(Duration::from_secs(3));
    c.start_expiry();
    // A rebalance timeout longer than the delay and its extension.
    let join = |member: &str| JoinRequest { rebalance_timeout: Duration::from_secs(10), ..join("g", member, None) };
    let a = c.join(join("")).await.member_id;
    let b = c.join(join("")).await.member_id;
    let (c1, c2) = (c.clone(), c.clone());
    let (ja_req, jb_req) = (join(&a), join(&b));
    let ja = tokio::spawn(async move { c1.join(ja_req).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ja.is_finished(), "the first join waits the delay");
    clock.advance_ms(1_000);
    let jb = tokio::spawn(async move { c2.join(jb_req).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.advance_ms(2_500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ja.is_finished(), "a member joining during the delay extends it");
    clock.advance_ms(1_000);
    let (ja, jb) = (ja.await.unwrap(), jb.await.unwrap());
    assert_eq!((ja.generation, jb.generation), (1, 1), "both in the first generation");
}

#[tokio::test]
async fn a_restored_group_goes_on_with_its_members_and_generation() {
    let old = Coordinator::new();
    let a = old.join(join("g", "", None)).await.member_id;
    assert_eq!(old.join(join("g", &a, None)).await.error_code, code::NONE);
    assert!(old.snapshot("g").await.is_none(), "nothing settled while the leader's assignment is due");
    old.sync("g", 1, &a, None, vec![(a.clone(), Bytes::from_static(b"all"))]).await;
    let snapshot = old.snapshot("g").await.expect("a stable group");
    assert_eq!((snapshot.generation, snapshot.leader.as_deref(), snapshot.members.len()), (1, Some(a.as_str()), 1));
    assert_eq!(&snapshot.members[0].subscription[..], b"md");

    // Its next coordinator: the member heartbeats, commits and syncs on, with no rebalance.
    let next = Coordinator::new();
    next.restore("g", snapshot.clone()).await;
    assert_eq!(next.heartbeat("g", 1, &a, None).await, code::NONE);
    assert_eq!(next.heartbeat("g", 0, &a, None).await, code::ILLEGAL_GENERATION);
    let sync = next.sync("g", 1, &a, None, Vec::new()).await;
    assert_eq!((sync.error_code, &sync.assignment[..]), (code::NONE, &b"all"[..]));
    let described = next.describe("g").await.unwrap();
    assert_eq!((described.state, described.protocol.as_str()), (GroupState::Stable, "range"));
    assert_eq!(next.snapshot("g").await.map(|s| s.members), Some(snapshot.members.clone()));
    // A group it already holds at a later generation is kept.
    let b = next.join(join("g", "", None)).await.member_id;
    let (n2, b2) = (next.clone(), b.clone());
    let joining = tokio::spawn(async move { n2.join(join("g", &b2, None)).await });
    assert_eq!(next.join(join("g", &a, None)).await.generation, 2);
    joining.await.unwrap();
    next.restore("g", snapshot).await;
    assert_eq!(next.describe("g").await.unwrap().members.len(), 2, "generation 2 kept over 1");
}

//! A leader transfer whose `MsgTimeoutNow` arrives after the old leader gave the transfer up.
//! The target then campaigns with force (followers grant it whatever leader they heard
//! from): unless the old leader fenced the transfer, both serve reads, the old one from a
//! lease it renewed in between (raft-rs #234, late-message variant).

use std::time::{Duration, Instant};

use proto::{eraftpb::MessageType, metapb, raft_cmdpb::AdminCmdType};
use raftstore::{metrics::RaftEvent, Config, ReadContext};
use test_raftstore::{
    chaos::Hold, config_with_election_ticks, new_request, put_request, transport::Isolate,
    wait_until, Cluster, FIRST_REGION,
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Long elections (400 ms) and leases (390 ms), so that the old leader, once cut off, stays
/// leader with a valid lease for a while on the real clock: the window a stale read needs.
fn slow_election_config() -> Config {
    config_with_election_ticks(40)
}

fn put_through(cluster: &Cluster, peers: &[metapb::Peer], value: &[u8]) {
    let region = cluster.region(FIRST_REGION);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for p in peers {
            let req = new_request(&region, p, vec![put_request(b"k", value)]);
            if cluster.call_command(p.store_id, req, Duration::from_millis(500)).is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no write through {peers:?} within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The leader starts a transfer whose `MsgTimeoutNow` is held back; it gives the transfer up
/// and serves local reads again; it is then cut off and the late `MsgTimeoutNow` delivered.
/// With `target_has_later_entries` the target also received what the leader wrote after
/// giving up (the message was reordered behind them); otherwise everything from the leader to
/// the target was held (a slow link). Either way, once a write is acknowledged without the old
/// leader, the old leader must not return the old value.
fn late_timeout_now(target_has_later_entries: bool) {
    let mut cluster = Cluster::with_config(3, slow_election_config());
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let target = test_raftstore::follower_of(&region, &leader);
    let third = region.get_peers().iter().find(|p| p.id != leader.id && p.id != target.id);
    let third = third.unwrap().clone();
    let (from, to) = (leader.store_id, target.store_id);
    let (hold, held) = Hold::new(move |f, t, m| {
        let timeout_now = m.get_message().get_msg_type() == MessageType::MsgTimeoutNow;
        f == from && t == to && (timeout_now || !target_has_later_entries)
    });
    cluster.network.add_filter(Box::new(hold));

    let mut req = new_request(&region, &leader, vec![]);
    req.mut_admin_request().set_cmd_type(AdminCmdType::TransferLeader);
    req.mut_admin_request().mut_transfer_leader().set_peer(target.clone());
    cluster.call_command(leader.store_id, req, TIMEOUT).unwrap();
    let is_timeout_now = |m: &proto::raft_serverpb::RaftMessage| {
        m.get_message().get_msg_type() == MessageType::MsgTimeoutNow
    };
    wait_until("a MsgTimeoutNow sent", TIMEOUT, || held.peek(is_timeout_now));

    // The transfer times out on the leader, which serves local reads again.
    let mut reader = cluster.reader(leader.store_id);
    let ctx = ReadContext::new(&cluster.region(FIRST_REGION), &leader);
    let read_once = || drop(reader.get(&ctx, b"k", TIMEOUT));
    cluster.wait_local_read(leader.store_id, "after the transfer was given up", read_once, |_| {});
    if target_has_later_entries {
        // The fence (or anything written since) reached the target before the late message.
        let want = cluster.peer_status(leader.store_id, FIRST_REGION).unwrap().commit_index;
        wait_until("the target caught up", TIMEOUT, || {
            cluster.peer_status(to, FIRST_REGION).unwrap().commit_index >= want
        });
    }

    // Cut the old leader off, so it cannot hear of a new term, and let the message go.
    cluster.network.add_filter(Box::new(Isolate(leader.store_id)));
    let dropped_before = cluster.raft_event(to, RaftEvent::StaleTimeoutNowDropped);
    for msg in held.take().into_iter().filter(is_timeout_now) {
        cluster.network.deliver_now(msg).unwrap();
    }
    put_through(&cluster, &[target.clone(), third], b"v2");

    let res = reader.get(&ctx, b"k", Duration::from_millis(300));
    assert!(
        !matches!(&res, Ok(Some(v)) if v == b"v1"),
        "the old leader served the value from before an acknowledged write: {res:?}"
    );
    if target_has_later_entries {
        let dropped = cluster.raft_event(to, RaftEvent::StaleTimeoutNowDropped) - dropped_before;
        assert!(dropped >= 1, "the target campaigned on a MsgTimeoutNow older than its log");
    }
}

#[test]
fn a_late_timeout_now_over_a_slow_link_finds_the_transfer_fenced() {
    late_timeout_now(false);
}

#[test]
fn a_late_timeout_now_behind_newer_entries_is_dropped_by_its_target() {
    late_timeout_now(true);
}

/// While the transfer is in flight the leader serves no local read, and the lease stays away
/// until the transfer is fenced, even if reads keep coming.
#[test]
fn no_lease_read_between_timeout_now_and_the_fence() {
    let mut cluster = Cluster::with_config(3, slow_election_config());
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let target = test_raftstore::follower_of(&region, &leader);
    let (hold, held) =
        Hold::new(|_, _, m| m.get_message().get_msg_type() == MessageType::MsgTimeoutNow);
    cluster.network.add_filter(Box::new(hold));
    let mut req = new_request(&region, &leader, vec![]);
    req.mut_admin_request().set_cmd_type(AdminCmdType::TransferLeader);
    req.mut_admin_request().mut_transfer_leader().set_peer(target);
    cluster.call_command(leader.store_id, req, TIMEOUT).unwrap();
    wait_until("a MsgTimeoutNow sent", TIMEOUT, || !held.is_empty());
    let mut reader = cluster.reader(leader.store_id);
    let ctx = ReadContext::new(&region, &leader);
    // Half an election timeout: raft has not given the transfer up yet.
    let until = Instant::now() + Duration::from_millis(150);
    while Instant::now() < until {
        let (_, s) = cluster.counting_reads(leader.store_id, || reader.get(&ctx, b"k", TIMEOUT));
        assert_eq!((s.local_hits, s.peer_lease_reads), (0, 0), "a lease read mid-transfer: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

//! Reads through ReadIndex on the leader: linearizable, never from a stale leader.

use std::time::Duration;

use proto::eraftpb::MessageType::MsgReadIndexResp;
use raftstore::Error;
use test_raftstore::{follower_of, get_request, new_request, Cluster, FIRST_REGION};

#[test]
fn a_read_sees_the_last_acknowledged_write() {
    for stores in [1, 3] {
        let mut cluster = Cluster::new(stores);
        cluster.run();
        assert_eq!(cluster.get(b"k").unwrap(), None);
        cluster.must_put(b"k", b"v1");
        assert_eq!(cluster.get(b"k").unwrap().as_deref(), Some(&b"v1"[..]));
        cluster.must_put(b"k", b"");
        assert_eq!(
            cluster.get(b"k").unwrap().as_deref(),
            Some(&b""[..]),
            "an empty value is a value"
        );
        cluster.must_delete(b"k");
        assert_eq!(cluster.get(b"k").unwrap(), None);
    }
}

/// Drops appends to one store: its peers fall behind.
struct StarveAppends(u64);

impl test_raftstore::transport::Filter for StarveAppends {
    fn allow(&self, _: u64, to: u64, msg: &proto::raft_serverpb::RaftMessage) -> bool {
        to != self.0 || msg.get_message().get_msg_type() != proto::eraftpb::MessageType::MsgAppend
    }
}

fn follower_read(
    cluster: &Cluster,
    key: &[u8],
    timeout: Duration,
) -> Result<Option<Vec<u8>>, Error> {
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let follower = follower_of(&region, &leader);
    let mut req = new_request(&region, &follower, vec![get_request(key)]);
    req.mut_header().replica_read = true;
    let resp = cluster.call_command(follower.store_id, req, timeout)?;
    let got = resp.get_responses()[0].get_get();
    Ok((!got.not_found).then(|| got.value.clone()))
}

#[test]
fn a_follower_read_sees_the_last_acknowledged_write() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v1");
    assert_eq!(
        follower_read(&cluster, b"k", Duration::from_secs(3)).unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(follower_read(&cluster, b"none", Duration::from_secs(3)).unwrap(), None);
}

const WAIT: Duration = Duration::from_secs(5);

/// Three stores with `k` = `v1` applied everywhere: the cluster, the region and a follower.
fn caught_up_follower() -> (Cluster, proto::metapb::Region, proto::metapb::Peer) {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let follower = follower_of(&region, &leader);
    cluster.must_get_equal(follower.store_id, b"k", b"v1");
    (cluster, region, follower)
}

#[test]
fn a_follower_read_waits_until_its_apply_catches_up() {
    let (cluster, region, follower) = caught_up_follower();
    cluster.network.add_filter(Box::new(StarveAppends(follower.store_id)));
    cluster.must_put(b"k", b"v2"); // committed by the leader and the other follower
    let mut req = new_request(&region, &follower, vec![get_request(b"k")]);
    req.mut_header().replica_read = true;
    let res = cluster.call_command(follower.store_id, req.clone(), Duration::from_millis(500));
    assert!(matches!(res, Err(Error::OutcomeUnknown(_))), "the lagging follower answered {res:?}");
    cluster.clear_filters();
    let resp = cluster.call_command(follower.store_id, req, Duration::from_secs(5)).unwrap();
    assert_eq!(resp.get_responses()[0].get_get().value, b"v2");
}

#[test]
fn a_follower_refuses_reads_with_the_leader() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let follower = follower_of(&region, &leader);
    let req = new_request(&region, &follower, vec![get_request(b"k")]);
    let res = cluster.call_command(follower.store_id, req, Duration::from_secs(3));
    assert!(matches!(res, Err(Error::NotLeader { leader: Some(_), .. })), "{res:?}");
}

#[test]
fn a_new_leader_reads_every_acknowledged_write() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    for target in region.get_peers().iter().filter(|p| p.id != leader.id) {
        cluster.must_put(b"k", target.id.to_string().as_bytes());
        cluster.must_transfer_leader(FIRST_REGION, target);
        // Straight after the transfer: the new leader holds the read until it has committed
        // in its own term, then answers with the newest value.
        assert_eq!(cluster.get(b"k").unwrap(), Some(target.id.to_string().into_bytes()));
    }
}

#[test]
fn an_isolated_old_leader_never_serves_a_stale_read() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"old");
    let (old, region) = cluster.leader_region(FIRST_REGION);
    cluster.isolate(old.store_id);
    cluster.must_put(b"k", b"new"); // through a new leader on the majority side
    let req = new_request(&region, &old, vec![get_request(b"k")]);
    match cluster.call_command(old.store_id, req, Duration::from_secs(2)) {
        Ok(resp) => panic!("the isolated old leader answered {:?}", resp.get_responses()),
        Err(Error::NotLeader { .. } | Error::OutcomeUnknown(_)) => {}
        Err(e) => panic!("unexpected {e}"),
    }
    cluster.clear_filters();
    assert_eq!(cluster.get(b"k").unwrap().as_deref(), Some(&b"new"[..]));
}

/// A follower asks for a read index; the answer is held up while its store restarts and a
/// write is acknowledged without it. The late answer carries an index from before the write:
/// matched to the restarted peer's first round (round ids restarting from zero), it would
/// serve the old value. Rounds are never reused, so it matches nothing.
#[test]
fn a_read_index_answer_from_before_a_restart_matches_no_round() {
    let (mut cluster, region, follower) = caught_up_follower();
    let store = follower.store_id;
    let (hold, answers) = test_raftstore::chaos::Hold::new(move |_, to, m| {
        to == store && m.get_message().get_msg_type() == MsgReadIndexResp
    });
    cluster.network.add_filter(Box::new(hold));
    let mut req = new_request(&region, &follower, vec![get_request(b"k")]);
    req.mut_header().replica_read = true;
    let res = cluster.call_command(store, req.clone(), Duration::from_millis(200));
    assert!(matches!(res, Err(Error::OutcomeUnknown(_))), "answered while held: {res:?}");
    let old_answers = answers.take();
    assert!(!old_answers.is_empty(), "the read index answer was not sent");

    cluster.restart_store(store);
    cluster.network.add_filter(Box::new(StarveAppends(store)));
    cluster.must_put(b"k", b"v2"); // acknowledged; the follower cannot apply it
    test_raftstore::wait_until("the restarted follower knows a leader", WAIT, || {
        cluster.peer_status(store, FIRST_REGION).is_some_and(|s| s.leader_id != 0)
    });
    let (ch, rx) = raftstore::msg::RaftCommand::new(req);
    cluster.router(store).send_command(ch);
    std::thread::sleep(Duration::from_millis(100)); // its round is out, its answer held
    for msg in old_answers {
        cluster.network.deliver_now(msg).unwrap();
    }
    match rx.recv_timeout(Duration::from_millis(500)) {
        Err(_) => {} // still waiting for its own answer: right
        Ok(resp) => {
            let got = resp.get_responses().first().map(|r| r.get_get().value.clone());
            assert_ne!(got.as_deref(), Some(&b"v1"[..]), "a stale follower read after a restart");
        }
    }
}

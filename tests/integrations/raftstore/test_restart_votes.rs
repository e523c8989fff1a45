//! A peer that restarts may have backed its leader's lease before, and does not know that
//! leader any more: it drops vote requests for an election timeout (TiKV #15035).

use std::time::{Duration, Instant};

use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};
use raftstore::{metrics::RaftEvent, Config};
use test_raftstore::{
    chaos::Hold, config_with_election_ticks, raft_message, transport::OneWay, Cluster, FIRST_REGION,
};

/// Elections of 500 ms, so the test has time to act inside the refusal window.
fn config(refuse_votes_after_start: bool) -> Config {
    Config { refuse_votes_after_start, ..config_with_election_ticks(50) }
}

/// C restarts and hears nothing from the leader (its link is cut); B, cut off from the leader
/// too, asks C for its vote at a higher term with a log as long as anyone's. Returns whether C
/// granted it within 200 ms, and how many vote requests C dropped.
fn vote_asked_of_a_restarted_peer(refuse_votes_after_start: bool) -> (bool, u64) {
    let mut cluster = Cluster::with_config(3, config(refuse_votes_after_start));
    cluster.run();
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let mut others = region.get_peers().iter().filter(|p| p.id != leader.id).cloned();
    let (b, c) = (others.next().unwrap(), others.next().unwrap());
    cluster.network.add_filter(Box::new(OneWay { from: leader.store_id, to: c.store_id }));
    let (hold, answers) = Hold::new(move |from, to, m: &RaftMessage| {
        from == c.store_id
            && to == b.store_id
            && m.get_message().get_msg_type() == MessageType::MsgRequestVoteResponse
    });
    cluster.network.add_filter(Box::new(hold));
    let status = cluster.peer_status(b.store_id, FIRST_REGION).unwrap();
    cluster.restart_store(c.store_id);

    let mut vote = raft_message(&region, &b, &c, MessageType::MsgRequestVote, status.term + 1);
    vote.mut_message().log_term = status.term;
    vote.mut_message().index = status.commit_index + 1000;
    cluster.router(c.store_id).send_raft_message(vote).unwrap();
    let deadline = Instant::now() + Duration::from_millis(200);
    let mut granted = false;
    while Instant::now() < deadline && !granted {
        granted = answers.take().iter().any(|m| !m.get_message().reject);
        std::thread::sleep(Duration::from_millis(5));
    }
    (granted, cluster.raft_event(c.store_id, RaftEvent::VoteDroppedAfterStart))
}

#[test]
fn a_restarted_peer_drops_vote_requests_for_an_election_timeout() {
    let (granted, dropped) = vote_asked_of_a_restarted_peer(true);
    assert!(!granted, "a peer granted its vote right after restarting");
    assert!(dropped >= 1, "the drop was not counted");
}

/// The same request with the rule off is granted: the test above can fail.
#[test]
fn without_the_rule_the_restarted_peer_votes_at_once() {
    let (granted, dropped) = vote_asked_of_a_restarted_peer(false);
    assert!(granted, "the crafted vote request should win a fresh peer's vote");
    assert_eq!(dropped, 0);
}

/// After the window, a restarted peer that hears from its leader votes as raft decides: the
/// leader it hears from keeps it from voting for another (raft's own check-quorum lease),
/// and the cluster keeps working across a restart of every store.
#[test]
fn a_cluster_restarted_whole_elects_a_leader_after_the_window() {
    let mut cluster = Cluster::with_config(3, Config::for_tests());
    cluster.run();
    cluster.must_put(b"k", b"v1");
    for store in 1..=3 {
        cluster.stop_store(store);
    }
    for store in 1..=3 {
        cluster.start_store(store);
    }
    cluster.must_put(b"k", b"v2");
    assert_eq!(cluster.get(b"k").unwrap().as_deref(), Some(&b"v2"[..]));
}

/// A store restarts; a peer of a region it had no state for (an uninitialized peer before
/// the restart, or a new one) is created for a vote request within the window: it may have
/// acknowledged a leader's heartbeats before, so it drops the request as a recovered peer
/// would.
#[test]
fn a_peer_created_right_after_a_restart_drops_vote_requests() {
    let mut cluster = Cluster::with_config(4, config(true));
    cluster.run_with_region_on(&[1, 2, 3]);
    cluster.must_put(b"k", b"v1");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let b = test_raftstore::follower_of(&region, &leader);
    let newcomer = cluster.new_peer(4);
    let (hold, answers) = Hold::new(move |from, _, m: &RaftMessage| {
        from == 4 && m.get_message().get_msg_type() == MessageType::MsgRequestVoteResponse
    });
    cluster.network.add_filter(Box::new(hold));
    let status = cluster.peer_status(b.store_id, FIRST_REGION).unwrap();
    cluster.restart_store(4);

    let mut vote =
        raft_message(&region, &b, &newcomer, MessageType::MsgRequestVote, status.term + 1);
    vote.mut_message().log_term = status.term;
    vote.mut_message().index = status.commit_index + 1000;
    cluster.router(4).send_raft_message(vote).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert!(cluster.peer_status(4, FIRST_REGION).is_some(), "the vote request created the peer");
    assert!(answers.take().iter().all(|m| m.get_message().reject), "a fresh peer voted at once");
    assert!(cluster.raft_event(4, RaftEvent::VoteDroppedAfterStart) >= 1);
}

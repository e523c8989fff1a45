//! Removing a peer without lying about writes: a command answered "not applied" must not
//! apply. Leadership never goes to a peer whose removal is on the way, and a leader never
//! applies its own removal before it has handed over. A peer destroyed with proposals pending
//! answers them with an unknown outcome.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use proto::{
    eraftpb::MessageType::{self, MsgTimeoutNow},
    metapb,
    raft_cmdpb::{AdminCmdType, ConfChangeType},
    raft_serverpb::RaftMessage,
};
use raft::StateRole;
use raftstore::{msg::RaftCommand, Config, Error};
use test_raftstore::{
    chaos::Held,
    config_with_election_ticks, new_request, put_request, raft_message,
    transport::{Filter, RegionPackets},
    wait_until, Cluster, FIRST_REGION,
};

const WAIT: Duration = Duration::from_secs(10);

/// A removal that cannot commit yet is pending: a transfer to its target is refused.
#[test]
fn a_transfer_to_a_peer_being_removed_is_refused() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v");
    let (leader, region) = cluster.leader_region(FIRST_REGION);
    let others: Vec<_> = region.get_peers().iter().filter(|p| p.id != leader.id).cloned().collect();
    let followers: Vec<u64> = others.iter().map(|p| p.store_id).collect();
    cluster.partition(&[leader.store_id], &followers);
    let mut remove = new_request(&region, &leader, vec![]);
    remove.mut_admin_request().set_cmd_type(AdminCmdType::ChangePeer);
    let cp = remove.mut_admin_request().mut_change_peer();
    cp.set_change_type(ConfChangeType::RemoveNode);
    cp.set_peer(others[0].clone());
    let (cmd, _pending) = RaftCommand::new(remove);
    cluster.router(leader.store_id).send_command(cmd);

    let mut transfer = new_request(&region, &leader, vec![]);
    transfer.mut_admin_request().set_cmd_type(AdminCmdType::TransferLeader);
    transfer.mut_admin_request().mut_transfer_leader().set_peer(others[0].clone());
    let res = cluster.call_command(leader.store_id, transfer, Duration::from_secs(3));
    assert!(
        matches!(&res, Err(Error::InvalidRequest(m)) if m.contains("being removed")),
        "{res:?}"
    );
}

/// Hides from `to` what `from` knows of its removal: every message from `from` telling it an
/// index at or past `index` committed (0: none yet) is dropped, and GC messages are kept in
/// `gc` for the test to deliver.
struct HideRemoval {
    from: u64,
    to: u64,
    index: Arc<AtomicU64>,
    gc: Held,
}

impl Filter for HideRemoval {
    fn allow(&self, from: u64, to: u64, msg: &RaftMessage) -> bool {
        if from != self.from || to != self.to {
            return true;
        }
        if msg.is_tombstone {
            self.gc.push(msg.clone());
            return false;
        }
        let index = self.index.load(Ordering::Acquire);
        index == 0 || msg.get_message().commit < index
    }
}

/// Drops what replicates the log from `from` to `to` (appends, heartbeats, snapshots); votes
/// still pass.
struct NoReplication {
    from: u64,
    to: u64,
}

impl Filter for NoReplication {
    fn allow(&self, from: u64, to: u64, msg: &RaftMessage) -> bool {
        let replicates = matches!(
            msg.get_message().get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        );
        !(from == self.from && to == self.to && replicates)
    }
}

/// Three stores A (leader), B, C. A removes C with C's ack alone (A does not replicate to B)
/// and applies it, but C never hears that the removal committed or that it is gone; B never
/// gets the entry. C then leads with B's vote. Returns the cluster, A, B, C and the GC
/// messages A sent C.
fn removed_peer_leads(cfg: Config) -> (Cluster, [metapb::Peer; 3], Held) {
    // Hibernation off: B must tick. Asleep when the filters go up, it would hear nothing
    // that wakes it (A's pings to it are cut), and would refuse C's pre-vote for a whole
    // election timeout after C's first, in lease since its clock stood still; A, back from
    // stepping down, could then win B's vote first.
    let cfg = Config { hibernate_regions: false, ..cfg };
    let mut cluster = Cluster::with_config(3, cfg);
    cluster.run();
    cluster.must_put(b"k", b"v");
    let (a, region) = cluster.leader_region(FIRST_REGION);
    let mut others = region.get_peers().iter().filter(|p| p.id != a.id).cloned();
    let (b, c) = (others.next().unwrap(), others.next().unwrap());
    cluster.network.add_filter(Box::new(NoReplication { from: a.store_id, to: b.store_id }));
    let index = Arc::new(AtomicU64::new(0));
    let gc = Held::default();
    let hide =
        HideRemoval { from: a.store_id, to: c.store_id, index: index.clone(), gc: gc.clone() };
    cluster.network.add_filter(Box::new(hide));

    let last = cluster.peer_status(a.store_id, FIRST_REGION).unwrap().last_index;
    index.store(last + 1, Ordering::Release);
    let mut remove = new_request(&region, &a, vec![]);
    remove.mut_admin_request().set_cmd_type(AdminCmdType::ChangePeer);
    let cp = remove.mut_admin_request().mut_change_peer();
    cp.set_change_type(ConfChangeType::RemoveNode);
    cp.set_peer(c.clone());
    cluster.call_command(a.store_id, remove, Duration::from_secs(3)).unwrap();
    let c_status = cluster.peer_status(c.store_id, FIRST_REGION).unwrap();
    assert!(c_status.last_index > last, "C has the entry removing it");
    assert!(c_status.commit_index <= last, "C must not know the removal committed");
    (cluster, [a, b, c], gc)
}

fn leads(cluster: &Cluster, p: &metapb::Peer) -> bool {
    cluster.peer_status(p.store_id, FIRST_REGION).is_some_and(|s| s.role == StateRole::Leader)
}

/// C, leading, commits the entry that removes it. It must hand leadership to B (which leads
/// with A at once) before it applies its removal. Applying it as leader, C would destroy
/// itself leading, and B would lead only after an election timeout.
#[test]
fn a_leader_hands_over_before_applying_its_own_removal() {
    let (cluster, [_a, b, c], _gc) = removed_peer_leads(config_with_election_ticks(50));
    wait_until("C leads", WAIT, || leads(&cluster, &c));
    let c_led = Instant::now();
    wait_until("B leads", WAIT, || leads(&cluster, &b));
    let gap = c_led.elapsed();
    assert!(gap < Duration::from_millis(250), "B led {gap:?} after C: by election, not handover");
    wait_until("C destroyed itself", WAIT, || {
        cluster.peer_status(c.store_id, FIRST_REGION).is_none()
    });
    cluster.clear_filters();
    cluster.must_put(b"k", b"two voters");
    assert_eq!(cluster.region(FIRST_REGION).get_peers().len(), 2);
}

/// Drops appends that carry entries from `from` to `to`: nothing new commits through `to`.
struct NoEntries {
    from: u64,
    to: u64,
}

impl Filter for NoEntries {
    fn allow(&self, from: u64, to: u64, msg: &RaftMessage) -> bool {
        let m = msg.get_message();
        !(from == self.from
            && to == self.to
            && m.get_msg_type() == MessageType::MsgAppend
            && !m.get_entries().is_empty())
    }
}

/// C leads (nothing it appends can commit) and takes a write; then a message for a newer peer
/// of the region on C's store arrives (the region added one there after removing C), and C
/// destroys itself. The write is in C's log and may be in others': it is answered with an
/// unknown outcome, never a definite "not applied".
#[test]
fn a_destroyed_leader_answers_pending_writes_with_an_unknown_outcome() {
    let (cluster, [a, b, c], _gc) = removed_peer_leads(config_with_election_ticks(50));
    cluster.network.add_filter(Box::new(NoEntries { from: c.store_id, to: b.store_id }));
    wait_until("C leads", WAIT, || leads(&cluster, &c));
    let region = cluster.peer_status(c.store_id, FIRST_REGION).unwrap().region;
    let (cmd, answer) = RaftCommand::new(new_request(&region, &c, vec![put_request(b"k", b"w")]));
    cluster.router(c.store_id).send_command(cmd);
    assert!(answer.recv_timeout(Duration::from_millis(50)).is_err(), "the write is pending");
    let newer = cluster.peer_status(a.store_id, FIRST_REGION).unwrap();
    let successor = cluster.new_peer(c.store_id);
    let msg = raft_message(&newer.region, &a, &successor, MessageType::MsgHeartbeat, newer.term);
    cluster.network.deliver_now(msg).unwrap();
    let resp = answer.recv_timeout(Duration::from_secs(5)).expect("the write is answered");
    let err = Error::from_errorpb(resp.get_header().get_error());
    assert!(matches!(err, Error::OutcomeUnknown(_)), "answered {err:?}");
    wait_until("C destroyed itself", WAIT, || {
        cluster.peer_status(c.store_id, FIRST_REGION).is_none()
    });
}

/// The placement driver asks a region's leader to remove its own peer: it hands leadership
/// over, and the next leader carries the operator out.
#[test]
fn an_operator_removing_the_leader_is_carried_out_by_the_next_leader() {
    let mut cluster = Cluster::new(3);
    cluster.run();
    cluster.must_put(b"k", b"v");
    let (leader, _) = cluster.leader_region(FIRST_REGION);
    cluster.pd.add_operator(FIRST_REGION, pd_client::Operator::RemovePeer(leader.clone()));
    wait_until("the old leader's peer is gone", WAIT, || {
        let region = cluster.leader_region(FIRST_REGION).1;
        region.get_peers().iter().all(|p| p.id != leader.id)
    });
    cluster.must_put(b"k", b"after");
}

/// C leads and holds its own removal, its hand-over lost (every `MsgTimeoutNow` dropped):
/// entries after the removal are committed but not applied on C, and B may serve them, so C
/// serves no lease read while it holds.
#[test]
fn a_leader_holding_its_own_removal_serves_no_lease_read() {
    let (cluster, [_a, b, c], _gc) = removed_peer_leads(config_with_election_ticks(50));
    let no_hand_over = RegionPackets { region_id: FIRST_REGION, types: vec![MsgTimeoutNow] };
    cluster.network.add_filter(Box::new(no_hand_over));
    wait_until("C leads", WAIT, || leads(&cluster, &c));
    wait_until("B applied C's removal: C holds it", WAIT, || {
        let region = cluster.peer_status(b.store_id, FIRST_REGION).unwrap().region;
        region.get_peers().iter().all(|p| p.id != c.id)
    });
    let region = cluster.peer_status(c.store_id, FIRST_REGION).unwrap().region;
    let mut reader = cluster.reader(c.store_id);
    let ctx = raftstore::ReadContext::new(&region, &c);
    for _ in 0..5 {
        let read = || reader.get(&ctx, b"k", Duration::from_millis(100));
        let (_, s) = cluster.counting_reads(c.store_id, read);
        assert_eq!((s.local_hits, s.peer_lease_reads), (0, 0), "a lease read while holding: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! Three nodes of one process that talk only gRPC on loopback: the region is replicated onto
//! them (appends and snapshots over the network), writes commit, a follower whose server
//! crashed comes back on another port and catches up by a snapshot of many pieces (the
//! senders re-resolve its address through the placement driver), and it serves a follower
//! read of what it missed.

use std::{
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use pd_client::{MemPd, MemPdConfig, PdClient};
use proto::{eraftpb::MessageType, kvrpcpb, raft_serverpb::RaftMessage};
use raft::StateRole;
use raftstore::transport::Transport;
use rpc::service::kv_client::KvClient;
use server::{
    grpc::{GrpcConfig, GrpcTransport},
    Context, Modify, Node, NodeConfig,
};

const WAIT: Duration = Duration::from_secs(20);

struct Member {
    node: Node,
    grpc: GrpcTransport,
}

impl Member {
    fn stop(&self) {
        self.node.stop();
        self.grpc.stop();
    }
}

fn open(dir: &Path, pd: &Arc<MemPd>) -> Member {
    open_with(dir, pd, raftstore::Config::for_tests())
}

fn open_with(dir: &Path, pd: &Arc<MemPd>, store: raftstore::Config) -> Member {
    let pd: Arc<dyn PdClient> = pd.clone();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let grpc = GrpcTransport::start(GrpcConfig::default(), pd.clone(), &logger).unwrap();
    let cfg = NodeConfig { store, advertise_addr: grpc.addr().to_string(), ..NodeConfig::new(dir) };
    let node = Node::open(cfg, pd, grpc.clone(), &logger).unwrap();
    grpc.serve_kv(Some(node.clone()));
    Member { node, grpc }
}

/// The leader of the region of `key` once it has `voters` peers, and a context for it.
fn leader(pd: &MemPd, members: &[&Member], key: &[u8], voters: usize) -> (Node, Context) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (region, _) = pd.get_region(key).unwrap();
        for m in members {
            let Some(s) = m.node.region_status(region.id) else { continue };
            if s.role == StateRole::Leader && s.region.get_peers().len() == voters {
                return (m.node.clone(), Context::new(&s.region, &s.peer));
            }
        }
        assert!(Instant::now() < deadline, "no leader with {voters} voters");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes through the leader, again through a new one if leadership moved meanwhile.
fn put(pd: &MemPd, members: &[&Member], key: &[u8], value: &[u8]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (node, ctx) = leader(pd, members, key, 3);
        match node.write(&ctx, &[Modify::Put(key.to_vec(), value.to_vec())], WAIT) {
            Ok(()) => return,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("writing {key:?}: {e}"),
        }
    }
}

#[test]
fn three_nodes_over_grpc_replicate_and_a_restarted_follower_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let pd = Arc::new(MemPd::new(MemPdConfig { max_replicas: 3, ..Default::default() }));
    let dirs: Vec<_> = (0..3).map(|i| dir.path().join(format!("node-{i}"))).collect();
    let mut members: Vec<Member> = dirs.iter().map(|d| open(d, &pd)).collect();

    let all: Vec<&Member> = members.iter().collect();
    for i in 0..20u32 {
        put(&pd, &all, format!("k{i:02}").as_bytes(), b"v1");
    }
    let (node, ctx) = leader(&pd, &all, b"k", 3);
    assert_eq!(node.get(&ctx, b"k07", WAIT).unwrap().as_deref(), Some(&b"v1"[..]));

    // A follower's node and server go down together; the other two keep committing.
    let follower = members.iter().position(|m| m.node.store_id() != node.store_id()).unwrap();
    let down = members.remove(follower);
    let down_id = down.node.store_id();
    let down_last = down.node.region_status(ctx.region_id).unwrap().last_index;
    down.stop();
    let up: Vec<&Member> = members.iter().collect();
    // Values of 4 KiB, written until the leader has compacted its log past what the stopped
    // follower has: it can only catch up by a snapshot, of many 16 KiB pieces.
    let value = vec![b'2'; 4096];
    for round in 0..20 {
        for i in 0..20u32 {
            put(&pd, &up, format!("k{i:02}").as_bytes(), &value);
        }
        let (node, _) = leader(&pd, &up, b"k", 3);
        // A margin for entries it may have appended between the look and the stop.
        if node.region_status(ctx.region_id).unwrap().truncated_index > down_last + 10 {
            break;
        }
        assert!(round < 19, "the log was never compacted past {down_last}");
    }
    let (node, ctx) = leader(&pd, &up, b"k", 3);

    // It comes back on another port; the others find it through the placement driver.
    let back = open(&dirs[follower], &pd);
    assert_eq!(back.node.store_id(), down_id);
    let region_id = ctx.region_id;
    let target = node.region_status(region_id).unwrap().commit_index;
    let deadline = Instant::now() + WAIT;
    loop {
        let applied = back.node.region_status(region_id).map_or(0, |s| s.applied_index);
        if applied >= target {
            break;
        }
        assert!(Instant::now() < deadline, "applied {applied} of {target}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = back.node.region_status(region_id).unwrap();
    let follower_ctx = Context { replica_read: true, ..Context::new(&s.region, &s.peer) };
    let got = back.node.get(&follower_ctx, b"k13", WAIT).unwrap();
    assert_eq!(got.as_deref(), Some(&value[..]));
    // The stream ends (and counts) just after its last piece reached the store.
    let received = back.grpc.server_stats();
    let deadline = Instant::now() + WAIT;
    while received.snapshots.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no snapshot stream");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Everything went over the network (that the third caught up at its new port already
    // says it was found again): the leader and its followers connected.
    let sum = |f: fn(&rpc::ClientStats) -> u64| -> u64 {
        members.iter().map(|m| f(&m.grpc.client_stats())).sum()
    };
    assert!(sum(|s| s.messages.load(Ordering::Relaxed)) > 0);
    let connects = sum(|s| s.connects.load(Ordering::Relaxed));
    assert!(connects >= 4, "{connects} connections");
    back.stop();
    members.iter().for_each(Member::stop);
}

#[test]
fn misaddressed_and_malformed_messages_over_grpc_are_dropped_and_the_nodes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let pd = Arc::new(MemPd::new(MemPdConfig { max_replicas: 3, ..Default::default() }));
    let members: Vec<Member> =
        (0..3).map(|i| open(&dir.path().join(format!("node-{i}")), &pd)).collect();
    let all: Vec<&Member> = members.iter().collect();
    put(&pd, &all, b"before", b"v");
    let (leader_node, ctx) = leader(&pd, &all, b"before", 3);
    let region = leader_node.region_status(ctx.region_id).unwrap().region;
    let follower = region.get_peers().iter().find(|p| p.id != ctx.peer.id).unwrap().clone();
    let target = members.iter().find(|m| m.node.store_id() == follower.store_id).unwrap();
    let term_before = target.node.region_status(region.id).unwrap().term;

    // A sender of our own that speaks to the follower's server directly.
    let resolver = Arc::new(rpc::StaticResolver::default());
    resolver.set(follower.store_id, target.grpc.addr().to_string());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut sender =
        rpc::RaftClient::new(Default::default(), resolver, rt.handle().clone()).unwrap();
    let heartbeat = |to: proto::metapb::Peer, from_id: u64| {
        let mut m = RaftMessage::default();
        m.region_id = region.id;
        m.set_region_epoch(region.get_region_epoch().clone());
        m.set_from_peer(ctx.peer.clone());
        m.mut_message().set_msg_type(MessageType::MsgHeartbeat);
        (m.mut_message().term, m.mut_message().from, m.mut_message().to) = (1000, from_id, to.id);
        m.set_to_peer(to);
        m
    };
    let mut garbage = Vec::new();
    // To a peer id the region does not have, at a term far ahead.
    garbage.push(heartbeat(proto::metapb::Peer { id: 9999, ..follower.clone() }, ctx.peer.id));
    // Its raft sender disagrees with its from_peer.
    garbage.push(heartbeat(follower.clone(), 4242));
    // For a region nobody has, over the whole key space (it overlaps the real one).
    let mut unknown = heartbeat(follower.clone(), ctx.peer.id);
    unknown.region_id = 424_242;
    garbage.push(unknown);
    // A snapshot piece numbered past its total.
    let mut piece = heartbeat(follower.clone(), ctx.peer.id);
    piece.mut_message().set_msg_type(MessageType::MsgSnapshot);
    (piece.mut_snapshot_chunk().seq, piece.mut_snapshot_chunk().total) = (5, 2);
    garbage.push(piece);

    let received = target.grpc.server_stats();
    let deadline = Instant::now() + WAIT;
    while received.delivered.load(Ordering::Relaxed) + received.dropped.load(Ordering::Relaxed) == 0
    {
        assert!(Instant::now() < deadline, "nothing reached the follower's server");
        garbage.iter().for_each(|m| sender.send(m.clone()).unwrap());
        sender.flush(&mut Vec::new());
        std::thread::sleep(Duration::from_millis(20));
    }

    put(&pd, &all, b"after", b"garbage");
    let s = target.node.region_status(region.id).unwrap();
    assert!(s.term < 1000, "a malformed message moved the term to {}", s.term);
    assert!(s.term >= term_before);
    let follower_ctx = Context { replica_read: true, ..Context::new(&s.region, &s.peer) };
    let got = target.node.get(&follower_ctx, b"after", WAIT).unwrap();
    assert_eq!(got.as_deref(), Some(&b"garbage"[..]));
    assert!(target.node.region_status(424_242).is_none(), "no peer made for the unknown region");
    drop(sender);
    members.iter().for_each(Member::stop);
}

/// A `Kv` call's context for `peer` of `region`.
fn kv_context(region: &proto::metapb::Region, peer: &proto::metapb::Peer) -> kvrpcpb::Context {
    let mut c = kvrpcpb::Context::new();
    c.region_id = region.id;
    c.set_region_epoch(region.get_region_epoch().clone());
    c.set_peer(peer.clone());
    c
}

#[test]
fn clients_read_and_write_through_the_kv_service_and_hear_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pd = Arc::new(MemPd::new(MemPdConfig { max_replicas: 3, ..Default::default() }));
    // 50 ms ticks (elections after 500 ms): the leader stays put through the calls below.
    let store = raftstore::Config::for_tests_with_tick(Duration::from_millis(50));
    let members: Vec<Member> = (0..3)
        .map(|i| open_with(&dir.path().join(format!("node-{i}")), &pd, store.clone()))
        .collect();
    let all: Vec<&Member> = members.iter().collect();
    put(&pd, &all, b"k0", b"v0"); // a write through the node: the leader is settled
    let (leader_node, ctx) = leader(&pd, &all, b"k", 3);
    let region = leader_node.region_status(ctx.region_id).unwrap().region;
    let on = |store_id: u64| members.iter().find(|m| m.node.store_id() == store_id).unwrap();
    let leader_addr = on(ctx.peer.store_id).grpc.addr();
    let follower = region.get_peers().iter().find(|p| p.id != ctx.peer.id).unwrap().clone();
    let follower_addr = on(follower.store_id).grpc.addr();

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let connect = |addr: std::net::SocketAddr| async move {
            KvClient::connect(format!("http://{addr}")).await.unwrap()
        };
        let mut kv = connect(leader_addr).await;
        let c = kv_context(&region, &ctx.peer);

        let mut put = kvrpcpb::PutRequest::new();
        (put.key, put.value) = (b"k".to_vec(), b"v".to_vec());
        put.set_context(c.clone());
        let resp = kv.put(put.clone()).await.unwrap().into_inner();
        assert!(!resp.has_error(), "{resp:?}");

        let mut get = kvrpcpb::GetRequest::new();
        get.key = b"k".to_vec();
        get.set_context(c.clone());
        let got = kv.get(get.clone()).await.unwrap().into_inner();
        assert!(got.found && got.value == b"v", "{got:?}");

        let mutation = |op, key: &[u8]| {
            let mut m = kvrpcpb::Mutation::new();
            (m.op, m.key, m.value) = (op, key.to_vec(), b"w".to_vec());
            m
        };
        let mut batch = kvrpcpb::BatchWriteRequest::new();
        batch.set_context(c.clone());
        batch.mutations = vec![
            mutation(kvrpcpb::Mutation_Op::Put, b"a"),
            mutation(kvrpcpb::Mutation_Op::Put, b"b"),
            mutation(kvrpcpb::Mutation_Op::Delete, b"k"),
        ]
        .into();
        assert!(!kv.batch_write(batch.clone()).await.unwrap().into_inner().has_error());
        let gone = kv.get(get.clone()).await.unwrap().into_inner();
        assert!(!gone.has_error() && !gone.found, "k was deleted: {gone:?}");

        // Bad input is refused whole and changes nothing: a mutation without an op, a
        // request without a context.
        batch.mutations = vec![
            mutation(kvrpcpb::Mutation_Op::Put, b"c"),
            mutation(kvrpcpb::Mutation_Op::Unspecified, b"a"),
        ]
        .into();
        let refused = kv.batch_write(batch).await.unwrap().into_inner();
        assert!(refused.get_error().get_region_error().has_invalid_request(), "{refused:?}");
        assert!(!refused.get_error().retryable);
        let mut no_context = get.clone();
        no_context.clear_context();
        let refused = kv.get(no_context).await.unwrap().into_inner();
        assert!(refused.get_error().get_region_error().has_invalid_request(), "{refused:?}");

        // A scan from the region's start (empty start key), with the default limit.
        let mut scan = kvrpcpb::ScanRequest::new();
        scan.set_context(c.clone());
        let pairs = kv.scan(scan).await.unwrap().into_inner().pairs;
        let keys: Vec<&[u8]> = pairs.iter().map(|p| &p.key[..]).collect();
        assert_eq!(keys, [&b"a"[..], &b"b"[..], &b"k0"[..]], "c was never written");

        let mut batch_get = kvrpcpb::BatchGetRequest::new();
        batch_get.keys = vec![b"b".to_vec(), b"zz".to_vec()].into();
        batch_get.set_context(c.clone());
        let pairs = kv.batch_get(batch_get).await.unwrap().into_inner().pairs;
        assert_eq!(pairs.len(), 1);
        assert_eq!((&pairs[0].key[..], &pairs[0].value[..]), (&b"b"[..], &b"w"[..]));

        // A write sent to a follower is refused, not applied, naming the leader.
        let mut to_follower = connect(follower_addr).await;
        put.set_context(kv_context(&region, &follower));
        put.key = b"refused".to_vec();
        let resp = to_follower.put(put).await.unwrap().into_inner();
        let err = resp.get_error();
        assert!(err.retryable, "{err:?}");
        let not_leader = err.get_region_error().get_not_leader();
        assert_eq!(not_leader.get_leader().id, ctx.peer.id, "{err:?}");
        let mut get_refused = get.clone();
        get_refused.key = b"refused".to_vec();
        let absent = kv.get(get_refused).await.unwrap().into_inner();
        assert!(!absent.has_error() && !absent.found, "{absent:?}");
    });
    members.iter().for_each(Member::stop);
}

//! The gRPC raft transport between two endpoints on loopback: batching, order, a store with
//! no address, a receiver that restarts or stalls, messages too large, frames that do not
//! parse or carry too many messages, messages the store refuses.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use proto::{eraftpb::MessageType, raft_serverpb::RaftMessage};
use raftstore::transport::{Transport, TransportError, Undelivered};
use rpc::raft_service::DEFAULT_SNAPSHOT_RECEIVES;
use rpc::{MessageSink, RaftClient, RaftClientConfig, RaftService, ServiceStats, StaticResolver};
use tokio::{net::TcpListener, runtime::Runtime};
use tokio_stream::wrappers::TcpListenerStream;

/// The region of the messages that probe a connection; not counted by [`Collect::indexes`]
/// (nor are snapshot pieces).
const PROBE: u64 = 1000;

/// Keeps what it is given; refuses messages of region 99 (a region the store does not have);
/// while `stall` is set, blocks the receiving thread on a message of region 50.
#[derive(Default)]
struct Collect {
    msgs: Mutex<Vec<RaftMessage>>,
    stall: Mutex<bool>,
    unstalled: Condvar,
}

impl MessageSink for Collect {
    fn deliver(&self, msg: RaftMessage) -> Result<(), TransportError> {
        if msg.region_id == 99 {
            return Err(TransportError::Busy(msg.get_to_peer().store_id));
        }
        if msg.region_id == 50 {
            let stall = self.stall.lock().unwrap();
            drop(self.unstalled.wait_while(stall, |s| *s).unwrap());
        }
        self.msgs.lock().unwrap().push(msg);
        Ok(())
    }
}

impl Collect {
    fn indexes(&self) -> Vec<u64> {
        let msgs = self.msgs.lock().unwrap();
        let counted = |m: &&RaftMessage| m.region_id != PROBE && !m.has_snapshot_chunk();
        msgs.iter().filter(counted).map(|m| m.get_message().index).collect()
    }

    fn set_stall(&self, on: bool) {
        *self.stall.lock().unwrap() = on;
        self.unstalled.notify_all();
    }
}

/// A receiving store on `addr` (port 0: any free one), on a runtime of its own: dropping it
/// closes its listener and connections at once, as a crash would.
struct Receiver {
    addr: SocketAddr,
    sink: Arc<Collect>,
    stats: Arc<ServiceStats>,
    _rt: Runtime,
}

fn serve(addr: SocketAddr, sink: Arc<Collect>) -> Receiver {
    serve_with(addr, sink, DEFAULT_SNAPSHOT_RECEIVES)
}

/// [`serve`], taking at most `snapshot_receives` snapshot streams at once.
fn serve_with(addr: SocketAddr, sink: Arc<Collect>, snapshot_receives: usize) -> Receiver {
    let rt = runtime();
    let listener = rt.block_on(TcpListener::bind(addr)).expect("bind");
    let addr = listener.local_addr().unwrap();
    let service = RaftService::new(sink.clone()).with_snapshot_receives(snapshot_receives);
    let stats = service.stats();
    rt.spawn(
        rpc::server_builder(Duration::from_secs(10), Duration::from_secs(3))
            .add_service(service.into_server(64 << 20))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Receiver { addr, sink, stats, _rt: rt }
}

/// A client, connected to a receiver as store 2, and the client's runtime (dropped last).
struct Pair {
    c: RaftClient,
    rx: Receiver,
    rt: Runtime,
}

fn pair(cfg: RaftClientConfig, snapshot_receives: usize) -> Pair {
    let rt = runtime();
    let rx = serve_with("127.0.0.1:0".parse().unwrap(), Arc::default(), snapshot_receives);
    let resolver = Arc::new(StaticResolver::default());
    resolver.set(2, rx.addr.to_string());
    let mut c = client(&rt, resolver, cfg);
    wait_up(&mut c, 2);
    Pair { c, rx, rt }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn msg(region_id: u64, to_store: u64, index: u64) -> RaftMessage {
    let mut m = RaftMessage::new();
    m.region_id = region_id;
    m.mut_to_peer().store_id = to_store;
    m.mut_to_peer().id = to_store * 100 + region_id;
    m.mut_from_peer().store_id = 1;
    m.mut_message().set_msg_type(MessageType::MsgAppend);
    m.mut_message().index = index;
    m
}

fn client(rt: &Runtime, resolver: Arc<StaticResolver>, cfg: RaftClientConfig) -> RaftClient {
    RaftClient::new(cfg, resolver, rt.handle().clone()).unwrap()
}

fn fast() -> RaftClientConfig {
    RaftClientConfig {
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..Default::default()
    }
}

/// Probes until the connection to `store` takes messages (a new one refuses them until up).
fn wait_up(c: &mut RaftClient, store: u64) {
    wait_for("the connection to come up", || {
        let mut undelivered = Vec::new();
        c.send(msg(PROBE, store, 0)).unwrap();
        c.flush(&mut undelivered);
        std::thread::sleep(Duration::from_millis(5));
        undelivered.is_empty()
    });
}

fn sent_batches(c: &RaftClient) -> u64 {
    c.stats().batches.load(Ordering::Relaxed)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_round_travels_in_batches_of_at_most_256_in_order() {
    let Pair { mut c, rx, rt: _rt } = pair(fast(), DEFAULT_SNAPSHOT_RECEIVES);
    let mut undelivered = Vec::new();
    for i in 0..600 {
        c.send(msg(7, 2, i)).unwrap();
    }
    let before = sent_batches(&c);
    c.flush(&mut undelivered);
    assert!(undelivered.is_empty(), "{undelivered:?}");
    assert_eq!(sent_batches(&c) - before, 3);
    wait_for("600 messages", || rx.sink.indexes().len() == 600);
    assert_eq!(rx.sink.indexes(), (0..600).collect::<Vec<_>>());
}

#[test]
fn large_messages_split_a_batch_by_bytes() {
    let Pair { mut c, rx, rt: _rt } =
        pair(RaftClientConfig { max_batch_bytes: 64 * 1024, ..fast() }, DEFAULT_SNAPSHOT_RECEIVES);
    for i in 0..10 {
        c.send(sized(msg(7, 2, i), 40 * 1024)).unwrap();
    }
    // Larger than a batch may be: reported, never sent.
    c.send(sized(msg(8, 2, 10), 100 * 1024)).unwrap();
    let before = sent_batches(&c);
    let mut undelivered = Vec::new();
    c.flush(&mut undelivered);
    // 40 KiB each under a 64 KiB limit: one a batch.
    assert_eq!(sent_batches(&c) - before, 10);
    let want =
        Undelivered { region_id: 8, to_peer: 208, msg_type: MessageType::MsgAppend, snap_index: 0 };
    assert_eq!(undelivered, [want]);
    wait_for("10 messages", || rx.sink.indexes().len() == 10);
}

/// `m` with an entry of `bytes` bytes.
fn sized(mut m: RaftMessage, bytes: usize) -> RaftMessage {
    m.mut_message().mut_entries().push(Default::default());
    m.mut_message().mut_entries()[0].data = vec![7u8; bytes].into();
    m
}

#[test]
fn a_stalled_receiver_costs_the_sender_at_most_its_queue_bytes() {
    let Pair { mut c, rx, rt: _rt } =
        pair(RaftClientConfig { queue_bytes: 256 * 1024, ..fast() }, DEFAULT_SNAPSHOT_RECEIVES);
    rx.sink.set_stall(true);
    let mut undelivered = Vec::new();
    let mut sent = 0;
    wait_for("a flush refused by a full queue", || {
        c.send(sized(msg(50, 2, sent), 8 * 1024)).unwrap();
        sent += 1;
        c.flush(&mut undelivered);
        !undelivered.is_empty()
    });
    // The connection stayed up: the queue's bytes refused it, not a failure.
    assert_eq!(c.stats().failures.load(Ordering::Relaxed), 0);
    let accepted = c.stats().messages.load(Ordering::Relaxed);
    // 32 messages fill 256 KiB; the rest are in HTTP/2's windows and the blocked batch.
    // Counted in batches only (1,024 of them), it would take 1,024 or more.
    eprintln!("accepted {accepted} messages of 8 KiB before the queue was full");
    assert!(accepted < 300, "{accepted} messages accepted");
    rx.sink.set_stall(false);
    wait_for("the stalled messages", || rx.sink.indexes().len() as u64 + 1 >= accepted);
}

#[test]
fn messages_to_a_store_without_an_address_are_reported_undelivered() {
    let rt = runtime();
    let mut c = client(&rt, Arc::default(), fast());
    let want =
        Undelivered { region_id: 5, to_peer: 305, msg_type: MessageType::MsgAppend, snap_index: 0 };
    // Refused while the first attempt runs, and after it failed.
    for _ in 0..2 {
        let mut undelivered = Vec::new();
        c.send(msg(5, 3, 1)).unwrap();
        c.flush(&mut undelivered);
        assert_eq!(undelivered, [want]);
        wait_for("a failed attempt", || c.stats().failures.load(Ordering::Relaxed) >= 1);
    }
    assert_eq!(c.stats().connects.load(Ordering::Relaxed), 0);
}

#[test]
fn the_client_reconnects_when_the_receiver_comes_back() {
    let rt = runtime();
    let rx = serve("127.0.0.1:0".parse().unwrap(), Arc::default());
    let addr = rx.addr;
    let resolver = Arc::new(StaticResolver::default());
    resolver.set(2, addr.to_string());
    let mut c = client(&rt, resolver, fast());
    wait_up(&mut c, 2);
    let mut undelivered = Vec::new();
    c.send(msg(7, 2, 1)).unwrap();
    c.flush(&mut undelivered);
    wait_for("the first message", || rx.sink.indexes() == [1]);

    drop(rx); // the receiver stops; the stream breaks
    wait_for("the connection to be reported down", || {
        undelivered.clear();
        c.send(msg(7, 2, 2)).unwrap();
        c.flush(&mut undelivered);
        std::thread::sleep(Duration::from_millis(5));
        !undelivered.is_empty()
    });

    let back = serve(addr, Arc::default());
    wait_for("a message over the new connection", || {
        c.send(msg(7, 2, 3)).unwrap();
        c.flush(&mut Vec::new());
        std::thread::sleep(Duration::from_millis(5));
        back.sink.indexes().contains(&3)
    });
    assert!(c.stats().connects.load(Ordering::Relaxed) >= 2);
}

#[test]
fn refused_messages_are_counted_and_the_rest_delivered() {
    let Pair { mut c, rx, rt: _rt } = pair(fast(), DEFAULT_SNAPSHOT_RECEIVES);
    for (region, index) in [(7, 1), (99, 2), (7, 3)] {
        c.send(msg(region, 2, index)).unwrap();
    }
    c.flush(&mut Vec::new());
    wait_for("two messages", || rx.sink.indexes() == [1, 3]);
    wait_for("one refusal", || rx.stats.dropped.load(Ordering::Relaxed) == 1);
}

/// Sends raw bytes as frames, to reach the service's decoder with garbage.
mod raw {
    use bytes::BufMut;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Default)]
    pub struct RawCodec;
    pub struct Enc;
    pub struct Dec;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Enc;
        type Decoder = Dec;
        fn encoder(&mut self) -> Enc {
            Enc
        }
        fn decoder(&mut self) -> Dec {
            Dec
        }
    }

    impl Encoder for Enc {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for Dec {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            use bytes::Buf;
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }
}

#[test]
fn a_frame_that_does_not_parse_or_holds_too_many_messages_ends_its_stream_only() {
    let rt = runtime();
    let rx = serve("127.0.0.1:0".parse().unwrap(), Arc::default());
    let url = format!("http://{}", rx.addr);
    let status = rt.block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/regionstore.Raft/BatchRaft");
        let mut statuses = Vec::new();
        // Field 1 (msgs), wire type 2, a length running past the end; then 5,000 empty
        // messages (two bytes each, a few hundred in memory).
        for frame in [vec![0x0a, 0xff, 0x01, 0x00], [0x0a, 0x00].repeat(5000)] {
            grpc.ready().await.unwrap();
            let frames = tokio_stream::iter(vec![frame]);
            let res: Result<tonic::Response<Vec<u8>>, _> = grpc
                .client_streaming(tonic::Request::new(frames), path.clone(), raw::RawCodec)
                .await;
            statuses.push(res.unwrap_err());
        }
        statuses
    });
    for status in &status {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    assert!(status[1].message().contains("5000 messages"), "{:?}", status[1]);
    assert_eq!(rx.stats.delivered.load(Ordering::Relaxed), 0);

    let resolver = Arc::new(StaticResolver::default());
    resolver.set(2, rx.addr.to_string());
    let mut c = client(&rt, resolver, fast());
    wait_up(&mut c, 2);
    c.send(msg(7, 2, 9)).unwrap();
    c.flush(&mut Vec::new());
    wait_for("a good message after the bad frame", || rx.sink.indexes() == [9]);
}

/// The pieces of one snapshot of region 7 for store 2, `n` of `bytes` bytes each.
fn snapshot_pieces(n: u64, bytes: usize) -> Vec<RaftMessage> {
    (0..n)
        .map(|seq| {
            let mut m = msg(7, 2, 0);
            m.mut_message().set_msg_type(MessageType::MsgSnapshot);
            m.mut_message().mut_snapshot().mut_metadata().index = 10;
            let chunk = m.mut_snapshot_chunk();
            (chunk.seq, chunk.total, chunk.data) = (seq, n, vec![seq as u8; bytes]);
            m
        })
        .collect()
}

#[test]
fn a_snapshot_in_several_pieces_goes_whole_on_a_stream_of_its_own() {
    let Pair { mut c, rx, rt: _rt } = pair(fast(), DEFAULT_SNAPSHOT_RECEIVES);
    let before = sent_batches(&c);
    c.send(msg(8, 2, 1)).unwrap();
    for piece in snapshot_pieces(5, 20 * 1024) {
        c.send(piece).unwrap();
    }
    c.send(msg(8, 2, 2)).unwrap();
    let mut undelivered = Vec::new();
    c.flush(&mut undelivered);
    assert!(undelivered.is_empty(), "{undelivered:?}");
    // The two raft messages took one batch; the snapshot none of them.
    assert_eq!(sent_batches(&c) - before, 1);
    wait_for("the snapshot", || rx.stats.snapshots.load(Ordering::Relaxed) == 1);
    let seqs: Vec<u64> = rx
        .sink
        .msgs
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.has_snapshot_chunk())
        .map(|m| m.get_snapshot_chunk().seq)
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    // The sender counts it once the answer is back, a moment after the receiver.
    wait_for("the sender's count", || c.stats().snapshots.load(Ordering::Relaxed) == 1);
    assert_eq!(c.stats().snapshot_pieces.load(Ordering::Relaxed), 5);
    wait_for("the two raft messages", || rx.sink.indexes() == [1, 2]);
}

#[test]
fn a_snapshot_the_receiver_has_no_room_for_is_reported_failed() {
    let Pair { mut c, rx, rt: _rt } = pair(fast(), 0);
    for piece in snapshot_pieces(3, 1024) {
        c.send(piece).unwrap();
    }
    let mut undelivered = Vec::new();
    c.flush(&mut undelivered);
    wait_for("the failure to be reported", || {
        c.flush(&mut undelivered);
        !undelivered.is_empty()
    });
    let want = Undelivered {
        region_id: 7,
        to_peer: 207,
        msg_type: MessageType::MsgSnapshot,
        snap_index: 10,
    };
    assert_eq!(undelivered, [want], "one report for the whole snapshot");
    assert_eq!(rx.stats.snapshots_refused.load(Ordering::Relaxed), 1);
    assert_eq!(c.stats().snapshot_failures.load(Ordering::Relaxed), 1);
    assert!(rx.sink.msgs.lock().unwrap().iter().all(|m| !m.has_snapshot_chunk()));
}

#[test]
fn a_newer_snapshot_for_a_peer_cancels_the_older_one() {
    // One stream at a time: the first snapshot holds it while the second waits.
    let Pair { mut c, rx, rt: _rt } =
        pair(RaftClientConfig { snapshot_concurrency: 1, ..fast() }, DEFAULT_SNAPSHOT_RECEIVES);
    rx.sink.set_stall(true);
    let mut stalled = snapshot_pieces(2, 1024); // region 50 stalls the receiver
    stalled.iter_mut().for_each(|m| m.region_id = 50);
    stalled.iter_mut().for_each(|m| m.mut_to_peer().id = 250);
    stalled.into_iter().for_each(|m| c.send(m).unwrap());
    c.flush(&mut Vec::new());
    for index in [10, 11] {
        let mut pieces = snapshot_pieces(3, 1024);
        pieces.iter_mut().for_each(|m| m.mut_message().mut_snapshot().mut_metadata().index = index);
        pieces.into_iter().for_each(|m| c.send(m).unwrap());
        c.flush(&mut Vec::new());
    }
    rx.sink.set_stall(false);
    wait_for("two snapshots", || rx.stats.snapshots.load(Ordering::Relaxed) == 2);
    let indexes: Vec<u64> = rx
        .sink
        .msgs
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.has_snapshot_chunk() && m.region_id == 7)
        .map(|m| m.get_message().get_snapshot().get_metadata().index)
        .collect();
    // Snapshot 10 never streamed: 11 replaced it while it waited.
    assert_eq!(indexes, [11, 11, 11]);
}

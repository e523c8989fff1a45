//! The apply side on RocksDB: a committed command applies all or nothing, whatever entered the
//! log (propose refuses bad commands, but the log may hold entries of older versions, or of a
//! peer that checked less).

use engine::{
    keys,
    rocks::{open_engines, RocksConfig, RocksEngine},
    KvEngine, Peekable, WriteOptions, CF_META,
};
use proto::{
    eraftpb::Entry,
    metapb,
    raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, Request},
    raft_serverpb::RaftApplyState,
    Message,
};
use raftstore::{
    msg::{ApplyTask, Proposal, RaftCommand},
    raft::apply::Apply,
    Error,
};

fn region() -> metapb::Region {
    let mut r = metapb::Region::default();
    r.id = 1;
    r.mut_region_epoch().conf_ver = 1;
    r.mut_region_epoch().version = 1;
    let mut p = metapb::Peer::default();
    p.id = 11;
    p.store_id = 1;
    r.peers.push(p);
    r
}

fn put(key: &[u8], cf: &str) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::Put);
    r.mut_put().key = key.to_vec();
    r.mut_put().value = b"v".to_vec();
    r.mut_put().cf = cf.to_string();
    r
}

fn entry(index: u64, requests: Vec<Request>) -> Entry {
    let mut req = RaftCmdRequest::default();
    req.mut_header().region_id = 1;
    req.mut_header().set_region_epoch(region().get_region_epoch().clone());
    req.requests = requests.into();
    let mut e = Entry::default();
    e.index = index;
    e.term = 6;
    e.data = req.write_to_bytes().unwrap().into();
    e
}

/// Applies `entries` (one proposal each) in one write batch, as an apply round does.
fn apply(kv: &RocksEngine, entries: Vec<Entry>) -> Vec<RaftCmdResponse> {
    let mut state = RaftApplyState::default();
    state.applied_index = 5;
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut apply = Apply::new(region(), kv.clone(), state, logger);
    let mut receivers = Vec::new();
    let mut proposals = Vec::new();
    for e in &entries {
        let (cmd, rx) = RaftCommand::new(RaftCmdRequest::default());
        proposals.push(Proposal { index: e.index, term: e.term, ch: cmd.ch });
        receivers.push(rx);
    }
    let mut wb = kv.write_batch();
    let mut out = Vec::new();
    let res = apply.apply(ApplyTask { entries, proposals }, &mut wb, &mut out);
    assert_eq!(res.apply_state.applied_index, 5 + receivers.len() as u64);
    kv.write(&mut wb, WriteOptions::SYNC).unwrap();
    for (ch, resp) in out {
        ch.respond(resp);
    }
    receivers.into_iter().map(|rx| rx.recv().unwrap()).collect()
}

#[test]
fn a_command_that_fails_half_way_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (kv, _) = open_engines(dir.path(), &RocksConfig::small()).unwrap();
    let resps = apply(
        &kv,
        vec![
            entry(6, vec![put(b"before", "")]),
            entry(7, vec![put(b"half", ""), put(b"bad", "nope")]),
            entry(8, vec![put(b"meta-one", "default"), put(b"m", CF_META)]),
            entry(9, vec![put(b"after", "")]),
        ],
    );
    assert!(!resps[0].get_header().has_error());
    for failed in &resps[1..3] {
        let err = Error::from_errorpb(failed.get_header().get_error());
        assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    }
    assert!(!resps[3].get_header().has_error());
    let get = |k: &[u8]| kv.get_value(&keys::data_key(k)).unwrap();
    assert!(get(b"before").is_some() && get(b"after").is_some());
    for gone in [&b"half"[..], b"bad", b"meta-one"] {
        assert_eq!(get(gone), None, "{:?} of a failed command was written", gone);
    }
    assert_eq!(kv.get_value_cf(CF_META, &keys::data_key(b"m")).unwrap(), None);
    let state: RaftApplyState = kv.get_msg_cf(CF_META, &keys::apply_state_key(1)).unwrap().unwrap();
    assert_eq!(state.applied_index, 9, "failed commands still advance the applied index");
}

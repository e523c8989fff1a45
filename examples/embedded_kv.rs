//! The shortest program that embeds regionstore: three nodes in this process on a temporary
//! directory, a write, a read back through the leader's lease, a stop, a reopen, and the read
//! again.

use std::{sync::Arc, time::Duration};

use regionstore::{
    pd_client::{MemPd, MemPdConfig, PdClient},
    raftstore::Config,
    server::transport::LocalNetwork,
    Context, Modify, Node, NodeConfig,
};

type Error = Box<dyn std::error::Error>;

const WAIT: Duration = Duration::from_secs(10);

/// Opens a node on `dir`: the first one bootstraps the cluster; the placement driver copies
/// its region onto the others.
fn open(dir: &std::path::Path, pd: &Arc<MemPd>, net: &Arc<LocalNetwork>) -> Result<Node, Error> {
    let cfg = NodeConfig { store: Config::for_tests(), ..NodeConfig::new(dir) };
    let pd: Arc<dyn PdClient> = pd.clone();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    Ok(Node::open(cfg, pd, net.clone(), &logger)?)
}

/// The region holding `key`, the node leading it, and the context of a request to it.
fn leader(pd: &MemPd, nodes: &[Node], key: &[u8]) -> Result<(Node, Context), Error> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (region, _) = pd.get_region(key)?;
        for node in nodes {
            let Some(s) = node.region_status(region.id) else { continue };
            if s.role == raft::StateRole::Leader && s.region.get_peers().len() == nodes.len() {
                return Ok((node.clone(), Context::new(&s.region, &s.peer)));
            }
        }
        if std::time::Instant::now() > deadline {
            return Err("no leader with every replica".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let pd = Arc::new(MemPd::new(MemPdConfig { max_replicas: 3, ..Default::default() }));
    let net = LocalNetwork::new();
    let dirs: Vec<_> = (0..3).map(|i| dir.path().join(format!("node-{i}"))).collect();
    let nodes = dirs.iter().map(|d| open(d, &pd, &net)).collect::<Result<Vec<_>, _>>()?;

    let (node, ctx) = leader(&pd, &nodes, b"hello")?;
    node.write(&ctx, &[Modify::Put(b"hello".to_vec(), b"world".to_vec())], WAIT)?;
    let value = node.get(&ctx, b"hello", WAIT)?; // served by the leader's lease, locally
    println!("read back: {}", String::from_utf8_lossy(&value.ok_or("lost")?));
    println!("lease reads served locally: {}", node.read_stats().local_hits);

    nodes.iter().for_each(Node::stop);
    let nodes = dirs.iter().map(|d| open(d, &pd, &net)).collect::<Result<Vec<_>, _>>()?;
    let (node, ctx) = leader(&pd, &nodes, b"hello")?;
    let value = node.get(&ctx, b"hello", WAIT)?.ok_or("lost across the reopen")?;
    println!("after reopening: {}", String::from_utf8_lossy(&value));
    assert_eq!(value, b"world");
    Ok(())
}

//! The placement driver's metadata in etcd.
//!
//! Keys, under the configured root:
//!
//! ```text
//! {root}/cluster_id             decimal, written once by the first member to start
//! {root}/leader/...             the election (etcd's election API, one key per candidate)
//! {root}/meta/bootstrapped      "1" once the first region is recorded
//! {root}/meta/id_bound          decimal: no id at or above it was handed out
//! {root}/meta/stores/{id:020}   metapb::Store, protobuf
//! {root}/meta/regions/{id:020}  metapb::Region, protobuf
//! ```
//!
//! Every write is a transaction guarded by the writer's election key (its create revision),
//! so a member that lost its leadership, even one that does not know it yet, writes nothing.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use pd_client::{Error, Meta, MetaStore, Result};
use proto::{metapb, Message};
use tokio::runtime::Handle;

/// How long one etcd request may take before the placement driver answers `Unavailable`
/// (shorter than a client's `request_timeout`, so a client does not give up first).
const ETCD_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys read per request when loading.
const PAGE: i64 = 1000;

/// The key layout of one cluster's root.
#[derive(Clone, Debug)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// The layout under `root` (`/regionstore` say).
    pub fn new(root: &str) -> Self {
        Keys { root: root.to_string() }
    }
    /// Where the cluster id lives.
    pub fn cluster_id(&self) -> String {
        format!("{}/cluster_id", self.root)
    }
    /// The election's name.
    pub fn election(&self) -> String {
        format!("{}/leader", self.root)
    }
    fn meta(&self) -> String {
        format!("{}/meta/", self.root)
    }
    fn bootstrapped(&self) -> String {
        format!("{}/meta/bootstrapped", self.root)
    }
    fn id_bound(&self) -> String {
        format!("{}/meta/id_bound", self.root)
    }
    fn store(&self, id: u64) -> String {
        format!("{}/meta/stores/{id:020}", self.root)
    }
    fn region(&self, id: u64) -> String {
        format!("{}/meta/regions/{id:020}", self.root)
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("etcd: {e}"))
}

async fn timed<T>(
    f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(ETCD_TIMEOUT, f).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(unavailable("timed out")),
    }
}

/// The cluster id under `keys`: the one stored, or `proposed` stored now if there is none
/// (the first member to start picks it; a race is settled by etcd).
pub async fn cluster_id(client: &mut Client, keys: &Keys, proposed: u64) -> Result<u64> {
    let key = keys.cluster_id();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), proposed.to_string(), None)]);
    timed(client.txn(txn)).await?;
    let resp = timed(client.get(key, None)).await?;
    let kv = resp.kvs().first().ok_or_else(|| unavailable("cluster id vanished"))?;
    std::str::from_utf8(kv.value())
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Invalid(format!("bad cluster id in etcd: {:?}", kv.value())))
}

/// Everything under `{root}/meta/`, a page at a time. Errors: `Invalid` for a value that does
/// not parse (the key is named).
pub async fn load(client: &mut Client, keys: &Keys) -> Result<Meta> {
    let prefix = keys.meta();
    let end = format!("{}0", &prefix[..prefix.len() - 1]); // '/' + 1
    let mut meta = Meta::default();
    let mut from = prefix.clone().into_bytes();
    loop {
        let opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        let resp = timed(client.get(from.clone(), Some(opts))).await?;
        for kv in resp.kvs() {
            load_one(&mut meta, keys, kv.key(), kv.value())?;
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok(meta),
        }
    }
}

fn load_one(meta: &mut Meta, keys: &Keys, key: &[u8], value: &[u8]) -> Result<()> {
    let key = String::from_utf8_lossy(key);
    let bad = |what: &str| Error::Invalid(format!("etcd key {key}: {what}"));
    if key == keys.bootstrapped() {
        meta.bootstrapped = value == b"1";
    } else if key == keys.id_bound() {
        let text = std::str::from_utf8(value).map_err(|_| bad("not a number"))?;
        meta.id_bound = text.parse().map_err(|_| bad("not a number"))?;
    } else if key.starts_with(&keys.store(0)[..keys.store(0).len() - 20]) {
        meta.stores.push(metapb::Store::parse_from_bytes(value).map_err(|e| bad(&e.to_string()))?);
    } else if key.starts_with(&keys.region(0)[..keys.region(0).len() - 20]) {
        let region = metapb::Region::parse_from_bytes(value).map_err(|e| bad(&e.to_string()))?;
        meta.regions.push(region);
    }
    Ok(())
}

/// A [`MetaStore`] in etcd whose writes hold only while this member is the elected one.
/// Its methods block: the service calls the placement driver on blocking threads.
pub struct EtcdMetaStore {
    client: Client,
    keys: Keys,
    handle: Handle,
    /// The election key this member won with, and its create revision.
    fence: (String, i64),
    /// Set when a write's outcome is unknown or its guard failed: the member steps down.
    tainted: Arc<AtomicBool>,
}

impl EtcdMetaStore {
    /// Writes under `keys`, guarded by the election key `fence` (key, create revision).
    /// Writes under `keys`, guarded by the election key `fence` (key, create revision);
    /// sets `tainted` when the stored metadata may differ from what the caller believes.
    pub fn new(
        client: Client,
        keys: Keys,
        handle: Handle,
        fence: (String, i64),
        tainted: Arc<AtomicBool>,
    ) -> Self {
        EtcdMetaStore { client, keys, handle, fence, tainted }
    }

    /// Runs `ops` if the fence and `also` hold. `Ok(false)`: a compare failed.
    fn txn(&self, also: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool> {
        let (key, rev) = self.fence.clone();
        let mut compares = vec![Compare::create_revision(key, CompareOp::Equal, rev)];
        compares.extend(also);
        let txn = Txn::new().when(compares).and_then(ops);
        let mut client = self.client.clone();
        match self.handle.block_on(async move { timed(client.txn(txn)).await }) {
            Ok(resp) => Ok(resp.succeeded()),
            Err(e) => {
                // It may have committed: memory can no longer be trusted to match etcd.
                self.tainted.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    fn commit(&self, ops: Vec<TxnOp>) -> Result<()> {
        if self.txn(Vec::new(), ops)? {
            return Ok(());
        }
        self.tainted.store(true, Ordering::Release);
        Err(Error::Unavailable("no longer the active placement driver".into()))
    }
}

impl MetaStore for EtcdMetaStore {
    fn save_bootstrap(&self, store: &metapb::Store, region: &metapb::Region) -> Result<()> {
        let encode =
            |m: &dyn Message| m.write_to_bytes().map_err(|e| Error::Invalid(e.to_string()));
        let first = Compare::create_revision(self.keys.bootstrapped(), CompareOp::Equal, 0);
        let ops = vec![
            TxnOp::put(self.keys.store(store.id), encode(store)?, None),
            TxnOp::put(self.keys.region(region.id), encode(region)?, None),
            TxnOp::put(self.keys.bootstrapped(), "1", None),
        ];
        if self.txn(vec![first], ops)? {
            return Ok(());
        }
        // Either the fence failed or the cluster is bootstrapped already (which memory did
        // not know): both mean memory is behind etcd.
        self.tainted.store(true, Ordering::Release);
        let mut client = self.client.clone();
        let key = self.keys.bootstrapped();
        let got = self.handle.block_on(async move { timed(client.get(key, None)).await })?;
        if got.kvs().is_empty() {
            Err(Error::Unavailable("no longer the active placement driver".into()))
        } else {
            Err(Error::AlreadyBootstrapped)
        }
    }

    fn save_store(&self, store: &metapb::Store) -> Result<()> {
        let bytes = store.write_to_bytes().map_err(|e| Error::Invalid(e.to_string()))?;
        self.commit(vec![TxnOp::put(self.keys.store(store.id), bytes, None)])
    }

    fn save_regions(&self, regions: &[metapb::Region], removed: &[u64]) -> Result<()> {
        let mut ops = Vec::with_capacity(regions.len() + removed.len());
        for r in regions {
            let bytes = r.write_to_bytes().map_err(|e| Error::Invalid(e.to_string()))?;
            ops.push(TxnOp::put(self.keys.region(r.id), bytes, None));
        }
        ops.extend(removed.iter().map(|id| TxnOp::delete(self.keys.region(*id), None)));
        self.commit(ops)
    }

    fn save_id_bound(&self, bound: u64) -> Result<()> {
        self.commit(vec![TxnOp::put(self.keys.id_bound(), bound.to_string(), None)])
    }
}

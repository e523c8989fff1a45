//! One placement driver member: active or standby, by an etcd election.
//!
//! Every member campaigns under `{root}/leader` with its address as the value, on a lease it
//! keeps alive. The winner loads the metadata from etcd (keeping the lease alive meanwhile)
//! and serves; the others answer `NotLeader` with the winner's address. The active member
//! serves only while its lease surely holds: until three quarters of the TTL after the send
//! of the last keep-alive etcd acknowledged (so a paused process that wakes up serves
//! nothing, even before its election loop runs). It steps down when a keep-alive fails or is
//! late by half the TTL, and when a metadata write's outcome is unknown (memory may differ
//! from etcd: the next term reloads). Its writes are guarded by its election key anyway (see
//! `etcd_store`), so a member that steps down late still cannot write.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use etcd_client::Client;
use pd_client::{MemPd, Result};
use slog::{info, warn, Logger};
use tokio::{runtime::Handle, sync::watch};

use crate::{
    config::PdConfig,
    etcd_store::{self, EtcdMetaStore, Keys},
};

/// What this member is now.
#[derive(Clone)]
pub enum Role {
    /// Not elected (or not yet): requests go to the active member.
    Standby,
    /// Elected: the placement driver, over the metadata loaded when it won.
    Active(Arc<MemPd>),
}

/// A member's role and how to reach the active one. Shared by the service and the election.
pub struct Member {
    cfg: PdConfig,
    keys: Keys,
    cluster_id: u64,
    client: Client,
    role: RwLock<Role>,
    /// Until when the lease surely holds: a quarter of the TTL short of the send time of the
    /// last keep-alive etcd acknowledged plus the TTL. Past it, this member serves nothing.
    lease_until: Mutex<Option<Instant>>,
    /// This term's flag, set by the meta store when a write's outcome is unknown (or its
    /// guard failed): memory may differ from etcd, so the member steps down and the next
    /// term reloads. A new flag each term: a late write of an old term taints only its own.
    tainted: Mutex<Arc<AtomicBool>>,
    logger: Logger,
}

/// A placement driver being loaded from etcd.
type Loading<'a> = Pin<Box<dyn Future<Output = Result<MemPd>> + Send + 'a>>;

impl Member {
    /// Connects to etcd and reads (or, first of all members, writes) the cluster id.
    pub async fn connect(cfg: PdConfig, logger: Logger) -> Result<Arc<Member>> {
        // No per-request timeout here: a standby's campaign waits as long as another leads.
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let mut client = Client::connect(&cfg.etcd_endpoints, Some(opts))
            .await
            .map_err(|e| pd_client::Error::Unavailable(format!("etcd: {e}")))?;
        let keys = Keys::new(&cfg.root);
        let cluster_id = etcd_store::cluster_id(&mut client, &keys, new_cluster_id()).await?;
        info!(logger, "placement driver member"; "name" => &cfg.name, "cluster_id" => cluster_id);
        Ok(Arc::new(Member {
            cfg,
            keys,
            cluster_id,
            client,
            role: RwLock::new(Role::Standby),
            lease_until: Mutex::new(None),
            tainted: Mutex::default(),
            logger,
        }))
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// This member's name and advertised address.
    pub fn name_and_addr(&self) -> (String, String) {
        (self.cfg.name.clone(), self.cfg.advertised().to_string())
    }

    /// The placement driver, if this member is the active one and its lease surely holds.
    pub fn active(&self) -> Option<Arc<MemPd>> {
        let until = *self.lease_until.lock().unwrap_or_else(|e| e.into_inner());
        if until.is_none_or(|t| Instant::now() >= t) || self.is_tainted() {
            return None;
        }
        match &*self.role.read().unwrap_or_else(|e| e.into_inner()) {
            Role::Active(pd) => Some(pd.clone()),
            Role::Standby => None,
        }
    }

    fn term_flag(&self) -> Arc<AtomicBool> {
        self.tainted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn is_tainted(&self) -> bool {
        self.term_flag().load(Ordering::Acquire)
    }

    fn extend_lease(&self, sent_at: Instant) {
        let until = sent_at + self.cfg.lease_ttl.mul_f64(0.75);
        *self.lease_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    fn set_role(&self, role: Role) {
        *self.role.write().unwrap_or_else(|e| e.into_inner()) = role;
    }

    /// The active member's address as etcd's election knows it (empty: none now).
    pub async fn leader_addr(&self) -> String {
        if self.active().is_some() {
            return self.cfg.advertised().to_string();
        }
        let mut client = self.client.clone();
        let asked =
            tokio::time::timeout(Duration::from_secs(2), client.leader(self.keys.election()));
        match asked.await {
            Ok(Ok(resp)) => resp
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Campaigns, serves while elected, steps down when the lease is in doubt, and campaigns
    /// again, until `stop` turns true; then resigns (revokes its lease) so that a standby
    /// takes over at once.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let mut lease = None;
            let term = async {
                let asked_at = Instant::now();
                let id = self.grant().await.map_err(|e| e.to_string())?;
                lease = Some(id);
                self.extend_lease(asked_at);
                self.term(id).await
            };
            tokio::select! {
                r = term => if let Err(e) = r {
                    warn!(self.logger, "election term ended"; "err" => %e);
                },
                _ = stop.changed() => {}
            }
            self.set_role(Role::Standby);
            *self.lease_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
            *self.tainted.lock().unwrap_or_else(|e| e.into_inner()) = Arc::default();
            if let Some(id) = lease {
                let mut client = self.client.clone();
                let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(id)).await;
            }
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn grant(&self) -> std::result::Result<i64, etcd_client::Error> {
        let mut client = self.client.clone();
        Ok(client.lease_grant(self.cfg.lease_ttl.as_secs() as i64, None).await?.id())
    }

    /// One term: campaign on lease `id` while keeping it alive; once elected, load (still
    /// keeping the lease alive) and serve until a keep-alive fails or is late, or the meta
    /// store is in doubt. Returns the error that ended it.
    async fn term(&self, id: i64) -> std::result::Result<(), String> {
        let mut client = self.client.clone();
        let (mut keeper, mut acks) =
            client.lease_keep_alive(id).await.map_err(|e| e.to_string())?;
        let every = self.cfg.lease_ttl / 3;
        let late = self.cfg.lease_ttl / 2;
        let mut last_ack = Instant::now();
        let mut sent: VecDeque<Instant> = VecDeque::new();
        let addr = self.cfg.advertised().to_string();
        let mut campaign = Box::pin(client.campaign(self.keys.election(), addr, id));
        let (mut won, mut loading): (bool, Option<Loading<'_>>) = (false, None);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                resp = &mut campaign, if !won => {
                    let resp = resp.map_err(|e| e.to_string())?;
                    let key = resp.leader().ok_or("campaign answered without a key")?;
                    let fence = (String::from_utf8_lossy(key.key()).into_owned(), key.rev());
                    loading = Some(Box::pin(self.load(fence)));
                    won = true;
                }
                pd = async { loading.as_mut().expect("guarded by is_some").await },
                    if loading.is_some() =>
                {
                    loading = None;
                    let pd = pd.map_err(|e| e.to_string())?;
                    let regions = pd.regions().len();
                    self.set_role(Role::Active(Arc::new(pd)));
                    info!(self.logger, "elected: the active placement driver"; "regions" => regions);
                }
                _ = tick.tick() => {
                    if self.is_tainted() {
                        return Err("a metadata write's outcome is unknown: reloading".into());
                    }
                    if last_ack.elapsed() > late {
                        return Err("lease keep-alive late".into());
                    }
                    let sending = Instant::now();
                    match tokio::time::timeout(every, keeper.keep_alive()).await {
                        Ok(Ok(())) => sent.push_back(sending),
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(_) => return Err("lease keep-alive stalled".into()),
                    }
                }
                ack = acks.message() => match ack {
                    Ok(Some(a)) if a.ttl() > 0 => {
                        last_ack = Instant::now();
                        if let Some(sent_at) = sent.pop_front() {
                            self.extend_lease(sent_at);
                        }
                    }
                    Ok(_) => return Err("lease expired".into()),
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }

    /// The placement driver over what etcd holds, writing under `fence`.
    async fn load(&self, fence: (String, i64)) -> Result<MemPd> {
        let mut client = self.client.clone();
        let meta = etcd_store::load(&mut client, &self.keys).await?;
        let store = EtcdMetaStore::new(
            self.client.clone(),
            self.keys.clone(),
            Handle::current(),
            fence,
            self.term_flag(),
        );
        MemPd::restore(self.cfg.mem_pd_config(self.cluster_id), meta, Box::new(store))
    }
}

/// A new cluster's id: the time in microseconds, mixed with the process id.
fn new_cluster_id() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    (micros << 8 | u64::from(std::process::id() & 0xff)).max(1)
}

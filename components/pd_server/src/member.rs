//! One placement driver member: active or standby, by an etcd election.
//!
//! Every member campaigns under `{root}/leader` with its address as the value, on a lease it
//! keeps alive. The winner loads the metadata from etcd and serves; the others answer
//! `NotLeader` with the winner's address. The active member steps down (and serves nothing
//! more) as soon as a keep-alive fails or is late by half the lease: by then the lease may
//! be about to expire and a standby about to win. Its writes were guarded by its election key
//! anyway (see `etcd_store`), so a member that steps down late can still not write.

use std::{
    sync::{Arc, RwLock},
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
    logger: Logger,
}

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

    /// The placement driver, if this member is the active one.
    pub fn active(&self) -> Option<Arc<MemPd>> {
        match &*self.role.read().unwrap_or_else(|e| e.into_inner()) {
            Role::Active(pd) => Some(pd.clone()),
            Role::Standby => None,
        }
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
                let id = self.grant().await.map_err(|e| e.to_string())?;
                lease = Some(id);
                self.term(id).await
            };
            tokio::select! {
                r = term => if let Err(e) = r {
                    warn!(self.logger, "election term ended"; "err" => %e);
                },
                _ = stop.changed() => {}
            }
            self.set_role(Role::Standby);
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

    /// One term: campaign on lease `id` while keeping it alive; once elected, load and serve
    /// until a keep-alive fails. Returns the error that ended it.
    async fn term(&self, id: i64) -> std::result::Result<(), String> {
        let mut client = self.client.clone();
        let (mut keeper, mut acks) =
            client.lease_keep_alive(id).await.map_err(|e| e.to_string())?;
        let every = self.cfg.lease_ttl / 3;
        let late = self.cfg.lease_ttl / 2;
        let mut last_ack = Instant::now();
        let addr = self.cfg.advertised().to_string();
        let mut campaign = Box::pin(client.campaign(self.keys.election(), addr, id));
        let mut elected = false;
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                won = &mut campaign, if !elected => {
                    let resp = won.map_err(|e| e.to_string())?;
                    let key = resp.leader().ok_or("campaign answered without a key")?;
                    let fence = (String::from_utf8_lossy(key.key()).into_owned(), key.rev());
                    self.become_active(fence).await.map_err(|e| e.to_string())?;
                    elected = true;
                }
                _ = tick.tick() => {
                    if last_ack.elapsed() > late {
                        return Err("lease keep-alive late".into());
                    }
                    keeper.keep_alive().await.map_err(|e| e.to_string())?;
                }
                ack = acks.message() => match ack {
                    Ok(Some(a)) if a.ttl() > 0 => last_ack = Instant::now(),
                    Ok(_) => return Err("lease expired".into()),
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }

    async fn become_active(&self, fence: (String, i64)) -> Result<()> {
        let mut client = self.client.clone();
        let meta = etcd_store::load(&mut client, &self.keys).await?;
        let regions = meta.regions.len();
        let store =
            EtcdMetaStore::new(self.client.clone(), self.keys.clone(), Handle::current(), fence);
        let pd = MemPd::restore(self.cfg.mem_pd_config(self.cluster_id), meta, Box::new(store))?;
        self.set_role(Role::Active(Arc::new(pd)));
        info!(self.logger, "elected: serving as the active placement driver"; "regions" => regions);
        Ok(())
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

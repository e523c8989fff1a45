//! Hibernation: an idle region stops ticking, on its leader and its followers alike, so that a
//! store pays nothing per idle region (TiKV's hibernate regions, simplified).
//!
//! ```text
//!            role change, start                 leader known
//!   (new) ─────────────────────▶ Chaos ─────────────────────────▶ Ordered
//!                                                                   │  ▲
//!   leader: nothing in flight (a heartbeat interval long after a    │  │ proposal, read, raft
//!   short sleep), every live follower at its last index →           │  │ message, transfer,
//!   MsgHibernateRequest{index}; each answers MsgHibernateResponse   │  │ lease renewal, ...
//!   and sleeps; with every live one's answer (and a quorum) the     ▼  │ (wakes; a leader pings)
//!   leader sleeps.                                                 Idle
//!   the leader's store stops answering store pings (liveness.rs),   │
//!   or, every sleeping_follower_check_interval, two MsgCheckLeader  ▼
//!   unanswered → PreChaos (ticking, raft elects anew if the leader is dead);
//!   word from the leader → Ordered
//! ```
//!
//! A sleeping peer's mailbox has a slower cadence (router.md): the store's ticker reaches a
//! sleeping leader once per `hibernated_tick_interval` (its report to the placement driver) and
//! a sleeping follower once per `sleeping_follower_check_interval` (its direct check of its
//! leader). Neither ticks raft: a sleeping leader sends no heartbeat and a sleeping follower's
//! election clock stands still. A dead leader is caught per store, not per region: the store
//! pings the others and wakes the followers of an unreachable one's leaders.
//!
//! Leases need nothing from this: a lease is a bound on the clock, so a sleeping leader's lease
//! expires on time, and a read after that goes to the peer, which wakes and asks raft
//! (ReadIndex). A leader renews its lease only while awake; a reader near the bound asks for a
//! renewal (which wakes the region), so steady lease reads keep the lease without keeping the
//! region awake between renewals. A follower that stops ticking can only campaign later than
//! it would have, never earlier, so no lease is cut short by sleep.

use std::time::Duration;

use engine::{KvEngine, RaftEngine};
use proto::{
    eraftpb::{self, MessageType},
    metapb::PeerRole,
    raft_serverpb::{ExtraMessageType, RaftMessage},
};
use raft::INVALID_ID;
use slog::debug;

use router::Cadence;

use crate::{batch::StoreContext, msg::PeerMsg, raft::peer::Peer, transport::Transport};

/// Where a region's peer is in the sleep protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// A leader is known and the peer ticks; a leader may propose sleep.
    Ordered,
    /// The peer started, or its role changed: it ticks and may not sleep until it knows a
    /// leader.
    Chaos,
    /// A sleeping follower's leader stopped answering: it ticks, and goes back to Ordered on
    /// word from its leader (or from a new one raft elects).
    PreChaos,
    /// Asleep: no raft ticks, only the slow checks.
    Idle,
}

impl GroupState {
    /// Every state, in the order of the metric's labels.
    pub const ALL: [GroupState; 4] =
        [GroupState::Ordered, GroupState::Chaos, GroupState::PreChaos, GroupState::Idle];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Ordered => "ordered",
            GroupState::Chaos => "chaos",
            GroupState::PreChaos => "pre_chaos",
            GroupState::Idle => "idle",
        }
    }
}

/// A peer's hibernation state.
#[derive(Debug)]
pub(crate) struct Hibernation {
    state: GroupState,
    /// A leader's followers that agreed to sleep at (`term`, `index`).
    votes: Vec<u64>,
    term: u64,
    index: u64,
    /// A sleeping follower's leader checks not answered yet.
    unanswered: u32,
    /// Clock time of the last slow tick's work.
    last_slow: Duration,
    /// A woken leader stays awake until its tick count reaches this: two election timeouts,
    /// for what woke it to finish or be retried (a hand-over needs followers heard from); no
    /// longer than its own work when a write woke it (`awake_window`).
    awake_until: u64,
    /// The state the store's gauge counts this peer in.
    counted: Option<GroupState>,
    /// A leader woken by a write does not tick raft (so sends no heartbeat, as if asleep)
    /// while its tick count is below this: at most one heartbeat interval.
    quiet_until: u64,
    /// A leader's tick counts when it first and last sent sleep requests that still stand:
    /// it does not tick raft either until a heartbeat interval after the last, for at most
    /// an election timeout after the first (`keeps_quiet`).
    asked_at: Option<(u64, u64)>,
    /// The tick count at which a leader was first seen with nothing in flight, since it last
    /// had something: if `linger`, it asks to sleep only a heartbeat interval later.
    idle_since: Option<u64>,
    /// Whether this leader waits before it asks to sleep (`lingers`): its last sleep was
    /// shorter than a heartbeat interval, so asking at once wasted a handshake.
    linger: bool,
    /// Clock time this peer last fell asleep.
    slept_at: Duration,
    /// A follower's sleep request it will answer once it handed the index to apply.
    asked: Option<SleepRequest>,
    /// A leader's last report to the placement driver: clock time, and its digest
    /// (`operation::pd`).
    pub(crate) last_report: (Duration, u64),
}

/// A leader's request to sleep, as a follower keeps it until it may answer.
#[derive(Clone, Copy, Debug)]
struct SleepRequest {
    leader: u64,
    leader_store: u64,
    term: u64,
    index: u64,
}

impl Default for Hibernation {
    fn default() -> Self {
        Hibernation {
            state: GroupState::Chaos,
            votes: Vec::new(),
            term: 0,
            index: 0,
            unanswered: 0,
            last_slow: Duration::ZERO,
            awake_until: 0,
            counted: None,
            asked: None,
            last_report: (Duration::ZERO, 0),
            quiet_until: 0,
            asked_at: None,
            idle_since: None,
            linger: false,
            slept_at: Duration::ZERO,
        }
    }
}

impl Hibernation {
    /// Whether a leader skips raft's ticks (and so sends no heartbeat) at tick `ticks`: for a
    /// heartbeat interval after a write woke it, while it waits to ask (`lingers`), and then
    /// while it asks its followers to sleep. Each request resets a follower's election clock as a heartbeat does
    /// (`on_hibernate_request`), and the leader sends one every heartbeat interval, so the
    /// followers hear from it as often. A region written every few rounds then sends no
    /// heartbeat at all: it sleeps between writes. A follower that does not agree within an
    /// election timeout gets heartbeats again, and so is heard from (it answers them) and
    /// never taken for down.
    pub(crate) fn keeps_quiet(&self, ticks: u64, cfg: &crate::Config) -> bool {
        let (hb, et) = (cfg.raft_heartbeat_ticks as u64, cfg.raft_election_timeout_ticks as u64);
        let asking = |(first, last): (u64, u64)| ticks <= last + hb && ticks < first + et;
        // A write woke the leader at w: no raft tick through w + hb, idle at most by w + 2hb
        // (its first heartbeat would have been due then), a request by w + 3hb. So followers
        // may hear nothing for three heartbeat intervals: only with room to spare below the
        // election timeout does the leader keep quiet while it waits.
        let lingering = et > 4 * hb
            && self.linger
            && self.asked_at.is_none()
            && self.idle_since.is_some_and(|s| ticks <= s + hb);
        quiet_ticks(cfg) > 0
            && (ticks < self.quiet_until || lingering || self.asked_at.is_some_and(asking))
    }

    /// Whether a leader with nothing in flight at tick `ticks` waits before it asks to sleep:
    /// when its last sleep was short (`linger`), until it has had nothing for a heartbeat
    /// interval. A sleep request and its answers cost about a round of heartbeats, but
    /// waiting costs ticks of three awake peers: worth it only when the next write likely
    /// comes within the wait, which the last sleep's length tells. A region written more
    /// often than once a heartbeat interval then asks for nothing between writes, and one
    /// written rarely asks at once. Measured in docs/performance.md ("Waiting before asking").
    fn lingers(&mut self, ticks: u64, cfg: &crate::Config) -> bool {
        let since = *self.idle_since.get_or_insert(ticks);
        self.linger && ticks < since + cfg.raft_heartbeat_ticks as u64
    }

    /// A sleeping peer wakes at clock time `now`: the next time it may sleep, a leader waits
    /// first if this sleep lasted less than a heartbeat interval.
    fn on_woken(&mut self, now: Duration, cfg: &crate::Config) {
        let interval = cfg.raft_base_tick_interval * cfg.raft_heartbeat_ticks as u32;
        self.linger = now.saturating_sub(self.slept_at) < interval;
        self.state = GroupState::Ordered;
        self.asked_at = None;
        self.idle_since = None;
    }

    /// The current state.
    pub(crate) fn state(&self) -> GroupState {
        self.state
    }

    /// Whether the peer sleeps.
    pub(crate) fn is_idle(&self) -> bool {
        self.state == GroupState::Idle
    }

    /// The leader sent something that wakes a sleeping follower: the sleep votes so far no
    /// longer stand.
    pub(crate) fn on_waking_send(&mut self) {
        self.forget_votes();
    }

    /// The sleep votes collected, and the requests that asked for them, no longer stand.
    fn forget_votes(&mut self) {
        self.votes.clear();
        self.asked_at = None;
    }

    /// Moves the store's gauge to the current state; `None` takes the peer out of it.
    pub(crate) fn sync_gauge(&mut self, metrics: &crate::metrics::StoreMetrics, alive: bool) {
        let now = alive.then_some(self.state);
        if now != self.counted {
            metrics.move_hibernate_state(self.counted, now);
            self.counted = now;
        }
    }
}

/// Ticks a peer woken by `msg` stays awake at least. A command that is not an admin one (a
/// write, or gets the read path takes on) needs nothing beyond its own round: the leader
/// cannot sleep before it is committed, applied and replicated (or the read answered), and a
/// region written every few hundred milliseconds then sleeps between writes instead of ticking
/// and heartbeating all the time. Anything else (an admin command such as a leader transfer, a
/// snapshot read, a lease renewal, a raft message) keeps it awake two election timeouts, for
/// what woke it to finish or be retried. Measured in docs/performance.md ("Sleeping between
/// writes").
fn awake_window<S: engine::Snapshot>(msg: &PeerMsg<S>, cfg: &crate::Config) -> u64 {
    match msg {
        PeerMsg::RaftCommand(c) if !c.request.has_admin_request() => 0,
        _ => 2 * cfg.raft_election_timeout_ticks as u64,
    }
}

/// Ticks a leader woken by a write skips raft's ticks for (plus the tick it is on): one
/// heartbeat interval, when that leaves followers far from their election timeout even if
/// the first heartbeat after it comes a whole interval later; none otherwise.
fn quiet_ticks(cfg: &crate::Config) -> u64 {
    let (hb, et) = (cfg.raft_heartbeat_ticks as u64, cfg.raft_election_timeout_ticks as u64);
    if et > 3 * hb {
        hb + 1
    } else {
        0
    }
}

/// An apply result with no admin effect, which a follower that agreed to sleep before its
/// apply caught up takes in asleep: it only moves the applied index.
fn is_plain_apply(res: &crate::msg::ApplyRes) -> bool {
    res.exec_results.is_empty() && res.holding_merge.is_none()
}

/// The hibernation messages, which never wake a peer.
fn is_hibernate_extra(msg: &RaftMessage) -> bool {
    msg.has_extra()
        && matches!(
            msg.get_extra().get_field_type(),
            ExtraMessageType::MsgHibernateRequest
                | ExtraMessageType::MsgHibernateResponse
                | ExtraMessageType::MsgCheckLeader
                | ExtraMessageType::MsgLeaderAlive
                | ExtraMessageType::MsgStoreCheck
                | ExtraMessageType::MsgStoreAlive
        )
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Whether `msg` wakes this sleeping peer: everything but ticks, queries, size reports,
    /// undelivered-message reports, store liveness news (it wakes only some:
    /// `on_store_unreachable`), apply results without admin effects, the hibernation
    /// messages, and the plain heartbeats (and their
    /// answers) of the current term that a leader sends until it falls asleep itself
    /// (stepped all the same).
    pub(crate) fn wakes(&self, msg: &PeerMsg<EK::Snapshot>) -> bool {
        match msg {
            PeerMsg::Tick
            | PeerMsg::Query(_)
            | PeerMsg::ApproximateSize { .. }
            | PeerMsg::StoreUnreachable(_)
            | PeerMsg::Undelivered { .. } => false,
            PeerMsg::RaftMessage(m) => !is_hibernate_extra(m) && !self.is_plain_heartbeat(m),
            PeerMsg::ApplyRes(r) => !is_plain_apply(r),
            _ => true,
        }
    }

    fn is_plain_heartbeat(&self, msg: &RaftMessage) -> bool {
        let (m, raft) = (msg.get_message(), &self.raft_group.raft);
        let plain = m.context.is_empty() && m.term == raft.term;
        match m.get_msg_type() {
            MessageType::MsgHeartbeat => plain && m.from == raft.leader_id,
            // From a follower that holds the whole log: one behind must be caught up.
            MessageType::MsgHeartbeatResponse => {
                let last = raft.raft_log.last_index();
                plain
                    && self.is_leader()
                    && raft.prs().get(m.from).is_some_and(|p| p.matched == last)
            }
            _ => false,
        }
    }

    /// Wakes a sleeping peer for `msg`. A leader pings its followers awake; a follower woken by
    /// something other than a raft message tells its leader, whose heartbeats it needs.
    pub(crate) fn wake_up<T: Transport>(
        &mut self,
        msg: &PeerMsg<EK::Snapshot>,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        if !self.hibernation.is_idle() {
            return;
        }
        debug!(self.logger, "waking up");
        self.hibernation.on_woken(ctx.clock.now(), &ctx.cfg);
        let window = awake_window(msg, &ctx.cfg);
        self.hibernation.awake_until = self.ticks + window;
        ctx.router.set_cadence(self.region_id(), Cadence::Every);
        if self.is_leader() {
            // The followers agreed to sleep with this leader: they were active.
            let voters = std::mem::take(&mut self.hibernation.votes);
            for (id, pr) in self.raft_group.raft.mut_prs().iter_mut() {
                if voters.contains(id) {
                    pr.recent_active = true;
                }
            }
            if window > 0 {
                self.hibernation.quiet_until = 0;
                self.raft_group.ping();
            } else {
                // A write needs no ping: its append probes the followers, and wakes them. Nor
                // heartbeats for a while: its followers heard from it just now, and it will
                // most likely sleep again within a few rounds.
                self.hibernation.quiet_until = self.ticks + quiet_ticks(&ctx.cfg);
            }
        } else {
            let from_leader = matches!(msg, PeerMsg::RaftMessage(m)
                if m.get_from_peer().id == self.raft_group.raft.leader_id);
            if !from_leader {
                // Its leader sleeps and sends nothing: without this the follower's election
                // clock would run out and it could grant another peer's vote.
                self.send_extra_to_leader(ExtraMessageType::MsgRegionWakeUp, 0, ctx);
            }
        }
    }

    /// A tick while awake: a leader with nothing in flight asks its followers to sleep, and
    /// sleeps once every live one agreed. A peer in Chaos that knows a leader is Ordered.
    pub(crate) fn on_hibernate_tick<T: Transport>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        let raft = &self.raft_group.raft;
        if self.hibernation.state == GroupState::Chaos && raft.leader_id != INVALID_ID {
            self.hibernation.state = GroupState::Ordered;
        }
        if !ctx.cfg.hibernate_regions || !self.is_leader() {
            return;
        }
        let resend = self.ticks.is_multiple_of(ctx.cfg.raft_heartbeat_ticks as u64);
        self.try_sleep_as_leader(ctx, resend);
    }

    /// The end of a round in which this awake leader did something: it notes that it has
    /// nothing in flight (or no longer), and sleeps as soon as the last vote is in, rather
    /// than at its next ticks (each of which may heartbeat).
    pub(crate) fn on_round_end<T: Transport>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        if ctx.cfg.hibernate_regions
            && self.is_leader()
            && self.hibernation.state == GroupState::Ordered
        {
            self.try_sleep_as_leader(ctx, false);
        }
    }

    /// A leader with nothing in flight (for a heartbeat interval after a short sleep,
    /// `Hibernation::lingers`) asks its followers to sleep at (term, last index): once for a new one, and again when
    /// `resend` (every heartbeat interval, for requests lost). It sleeps once every live
    /// follower agreed.
    fn try_sleep_as_leader<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        resend: bool,
    ) {
        let now = ctx.clock.now();
        if self.hibernation.state != GroupState::Ordered || !self.may_sleep_as_leader(ctx, now) {
            self.hibernation.forget_votes();
            self.hibernation.idle_since = None;
            return;
        }
        if self.hibernation.lingers(self.ticks, &ctx.cfg) {
            return;
        }
        // Compact first: a sleeping leader has no log GC tick, and a region written in short
        // bursts may never be awake at one.
        if self.propose_log_gc(&ctx.cfg) {
            self.hibernation.forget_votes();
            return;
        }
        let raft = &self.raft_group.raft;
        let (term, last) = (raft.term, raft.raft_log.last_index());
        let h = &mut self.hibernation;
        let fresh = (h.term, h.index) != (term, last);
        if fresh {
            (h.term, h.index) = (term, last);
            h.votes.clear();
        }
        if self.has_every_sleep_vote(ctx, now) {
            return self.fall_asleep(ctx);
        }
        if fresh || resend {
            // Only to followers known to hold the log up to `last`, all of it committed: the
            // request tells them the commit (lazy commit skipped its broadcast). The others
            // are down (`may_sleep_as_leader`), and their votes are not needed.
            let me = self.peer_id();
            let followers: Vec<u64> = (self.raft_group.raft.prs().iter())
                .filter(|(id, pr)| **id != me && pr.matched == last)
                .map(|(id, _)| *id)
                .collect();
            if !followers.is_empty() {
                let h = &mut self.hibernation;
                let first = if fresh { None } else { h.asked_at.map(|(first, _)| first) };
                h.asked_at = Some((first.unwrap_or(self.ticks), self.ticks));
            }
            for id in followers {
                self.send_extra(id, ExtraMessageType::MsgHibernateRequest, last, ctx);
            }
        }
    }

    /// Whether this leader has nothing in flight: everything proposed is committed and
    /// applied in its term, every live follower holds the whole log, and no read, transfer,
    /// membership change, split, merge or snapshot is under way.
    fn may_sleep_as_leader<T>(&self, ctx: &StoreContext<EK, ER, T>, now: Duration) -> bool {
        let raft = &self.raft_group.raft;
        let last = raft.raft_log.last_index();
        let quiet_log = raft.raft_log.committed == last
            && self.storage().applied_index() == last
            && self.applied_term == raft.term
            && self.pending_ready.is_none();
        let nothing_pending = self.proposals.is_empty()
            && self.reads.is_empty()
            && raft.lead_transferee.is_none()
            && !raft.has_pending_conf()
            && !self.transfer_fence.is_up()
            && self.removal.entries.is_empty()
            && self.split.pending().is_none()
            && !self.split.check_due(ctx.cfg.region_split_check_diff) // a sleeper checks nothing
            && !self.merge.blocks_proposals()
            && !self.merge.holds_commit_merge()
            && self.raft_group.raft.read_only.pending_read_count() == 0 // followers' ReadIndex
            && self.snap_sends.is_empty()
            && self.displacing.is_none();
        let stayed_awake = self.ticks >= self.hibernation.awake_until;
        let max_down = ctx.cfg.max_peer_down_duration;
        let replicated = raft.prs().iter().all(|(id, pr)| {
            *id == self.peer_id() || pr.matched == last || self.health.is_down(*id, now, max_down)
        });
        quiet_log && nothing_pending && replicated && stayed_awake
    }

    /// Whether every live follower agreed to sleep at the current (term, index), and those
    /// with this leader make a quorum.
    fn has_every_sleep_vote<T>(&self, ctx: &StoreContext<EK, ER, T>, now: Duration) -> bool {
        let raft = &self.raft_group.raft;
        let votes = &self.hibernation.votes;
        let max_down = ctx.cfg.max_peer_down_duration;
        let all_live = raft.prs().iter().all(|(id, _)| {
            *id == self.peer_id() || votes.contains(id) || self.health.is_down(*id, now, max_down)
        });
        // The region's voters (no joint state: a pending membership change keeps it awake).
        let voters: Vec<u64> = self
            .region()
            .get_peers()
            .iter()
            .filter(|p| p.get_role() == PeerRole::Voter)
            .map(|p| p.id)
            .collect();
        let agreeing =
            voters.iter().filter(|id| **id == self.peer_id() || votes.contains(id)).count();
        all_live && agreeing >= raft::majority(voters.len())
    }

    fn fall_asleep<T>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        debug!(self.logger, "hibernating"; "index" => self.hibernation.index);
        self.hibernation.state = GroupState::Idle;
        self.hibernation.unanswered = 0;
        self.hibernation.asked_at = None;
        self.hibernation.idle_since = None;
        self.hibernation.last_slow = ctx.clock.now();
        self.hibernation.slept_at = self.hibernation.last_slow;
        // The last write's entries, replicated by now: an idle peer holds none, nor a
        // leader's buffers of messages in flight to its followers.
        self.compact_entry_cache();
        self.raft_group.raft.maybe_free_inflight_buffers();
        self.raft_group.raft.raft_log.unstable.entries.shrink_to_fit(); // persisted: empty
        let cadence = if self.is_leader() { Cadence::Slow } else { Cadence::Rare };
        ctx.router.set_cadence(self.region_id(), cadence);
    }

    /// A tick while asleep (the ticker's slow round, or a stray one). At most once per
    /// `hibernated_tick_interval` a leader reports to the placement driver (and pings a peer
    /// left behind as down); at most once per `sleeping_follower_check_interval` a follower
    /// checks that its leader is alive, waking when the previous check went unanswered.
    pub(crate) fn on_idle_tick<T: Transport>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        let now = ctx.clock.now();
        let leader = self.is_leader();
        let every = match leader {
            true => ctx.cfg.hibernated_tick_interval,
            false => ctx.cfg.sleeping_follower_check_interval,
        };
        if now.saturating_sub(self.hibernation.last_slow) < every / 2 {
            return;
        }
        self.hibernation.last_slow = now;
        if leader {
            return self.on_idle_leader_tick(ctx, now);
        }
        if self.hibernation.unanswered >= 1 || self.leader().is_none() {
            debug!(self.logger, "the leader of a sleeping region does not answer: waking");
            return self.wake_as_orphan(ctx);
        }
        self.hibernation.unanswered += 1;
        self.send_extra_to_leader(ExtraMessageType::MsgCheckLeader, 0, ctx);
    }

    /// A sleeping leader's slow work: followers that agreed to sleep, on stores that answer,
    /// count as heard from (they sleep, they are not down; a peer it slept without as down
    /// stays down), a peer left behind is pinged, the region is reported.
    fn on_idle_leader_tick<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
        now: Duration,
    ) {
        let voted = &self.hibernation.votes;
        let asleep: Vec<u64> = (self.region().get_peers().iter())
            .filter(|p| voted.contains(&p.id) && ctx.liveness.is_reachable(p.store_id))
            .map(|p| p.id)
            .collect();
        for id in asleep {
            self.health.heard_from(id, now);
        }
        let last = self.raft_group.raft.raft_log.last_index();
        if self.raft_group.raft.prs().iter().any(|(_, pr)| pr.matched < last) {
            // A peer left behind as down: if it is back, its answer wakes this leader.
            self.raft_group.ping();
        }
        self.heartbeat_pd_asleep(ctx, now);
    }

    /// Store `store` stopped answering (`operation/liveness.rs`). A sleeping follower whose
    /// leader is there wakes and ticks, so that raft elects anew if the leader is gone; an
    /// awake leader stops streaming appends to its peers there (raft probes them).
    pub(crate) fn on_store_unreachable<T: Transport>(
        &mut self,
        store: u64,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        if self.is_leader() {
            if self.hibernation.is_idle() {
                return; // nothing streams
            }
            let me = self.peer_id();
            let there: Vec<u64> = (self.region().get_peers().iter())
                .filter(|p| p.store_id == store && p.id != me)
                .map(|p| p.id)
                .collect();
            for id in there {
                self.raft_group.report_unreachable(id);
            }
            return;
        }
        if self.hibernation.is_idle() && self.leader().is_some_and(|l| l.store_id == store) {
            debug!(self.logger, "the leader's store does not answer: waking"; "store" => store);
            self.wake_as_orphan(ctx);
        }
    }

    /// A sleeping follower whose leader seems gone ticks again (PreChaos) until it hears from
    /// a leader.
    fn wake_as_orphan<T>(&mut self, ctx: &mut StoreContext<EK, ER, T>) {
        self.hibernation.state = GroupState::PreChaos;
        ctx.router.set_cadence(self.region_id(), Cadence::Every);
    }

    /// Word from this peer's leader in its term (a raft message): a follower woken because its
    /// leader seemed gone is Ordered again.
    pub(crate) fn on_heard_from_leader(&mut self, from: u64, term: u64) {
        let raft = &self.raft_group.raft;
        if self.hibernation.state == GroupState::PreChaos
            && from == raft.leader_id
            && term == raft.term
        {
            self.hibernation.state = GroupState::Ordered;
        }
    }

    /// The role changed (raft elected a leader, or this peer stepped down): no sleep vote
    /// carries over.
    pub(crate) fn on_hibernate_role_changed(&mut self) {
        let h = &mut self.hibernation;
        h.forget_votes();
        h.quiet_until = 0;
        h.idle_since = None;
        h.linger = false;
        if h.state != GroupState::Idle {
            h.state = GroupState::Chaos; // Ordered again at the next tick with a leader
        }
    }

    /// A hibernation message from member `from`.
    pub(crate) fn on_hibernate_message<T: Transport>(
        &mut self,
        msg: &RaftMessage,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let (from, term, index) =
            (msg.get_from_peer().id, msg.get_message().term, msg.get_extra().index);
        let raft = &self.raft_group.raft;
        let from_leader = from == raft.leader_id && term == raft.term;
        match msg.get_extra().get_field_type() {
            ExtraMessageType::MsgHibernateRequest if ctx.cfg.hibernate_regions => {
                if !from_leader && term >= raft.term {
                    self.step_as_heartbeat(from, term);
                }
                let raft = &self.raft_group.raft;
                if from == raft.leader_id && term == raft.term {
                    self.on_hibernate_request(msg.get_from_peer().store_id, from, index, ctx)
                }
            }
            // A follower woke on its own (an admin effect of its apply, a request of its
            // own): its vote no longer stands, it is asked again.
            ExtraMessageType::MsgRegionWakeUp if self.is_leader() => {
                self.hibernation.votes.retain(|v| *v != from)
            }
            ExtraMessageType::MsgHibernateResponse if self.is_leader() && term == raft.term => {
                let h = &mut self.hibernation;
                if (h.term, h.index) == (term, index) && !h.votes.contains(&from) {
                    h.votes.push(from);
                }
            }
            ExtraMessageType::MsgCheckLeader if self.is_leader() && term == raft.term => {
                self.send_extra(from, ExtraMessageType::MsgLeaderAlive, 0, ctx);
            }
            ExtraMessageType::MsgLeaderAlive if from_leader => self.hibernation.unanswered = 0,
            _ => {}
        }
    }

    /// The leader asks this follower to sleep at `index`, which it committed and knows this
    /// follower to hold (it asks no other). So the follower commits up to it (the commit's
    /// news, lazily not broadcast), and agrees once it handed it to apply. The request is
    /// word from the leader in its term, as a heartbeat is: the election clock starts over
    /// (the leader sends requests instead of heartbeats, `Hibernation::keeps_quiet`).
    fn on_hibernate_request<T: Transport>(
        &mut self,
        leader_store: u64,
        leader: u64,
        index: u64,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        self.raft_group.raft.election_elapsed = 0;
        let log = &mut self.raft_group.raft.raft_log;
        if log.last_index() == index && log.committed < index {
            log.commit_to(index);
        }
        let term = self.term();
        self.hibernation.asked = Some(SleepRequest { leader, leader_store, term, index });
        self.maybe_answer_sleep_request(ctx);
    }

    /// A sleep request from a leader this peer does not follow yet (restarted, or campaigning
    /// in the same term): only a leader sends one, so it is stepped as that leader's
    /// heartbeat (commit 0: the request's own commit follows), which makes this peer its
    /// follower and answers it. A quiet leader sends no heartbeat of its own meanwhile.
    fn step_as_heartbeat(&mut self, leader: u64, term: u64) {
        let mut m = eraftpb::Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = leader;
        m.to = self.peer_id();
        m.term = term;
        if let Err(e) = self.raft_group.step(m) {
            debug!(self.logger, "raft refused a sleep request as a heartbeat"; "err" => %e);
        }
    }

    /// Answers the leader's sleep request, and sleeps, once this follower may: called on the
    /// request, after each persisted ready and after each apply. A request from an earlier
    /// term, or for a log that grew since, is forgotten.
    pub(crate) fn maybe_answer_sleep_request<T: Transport>(
        &mut self,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let Some(asked) = self.hibernation.asked else {
            return;
        };
        let raft = &self.raft_group.raft;
        if asked.term != raft.term
            || asked.leader != raft.leader_id
            || raft.raft_log.last_index() != asked.index
        {
            self.hibernation.asked = None;
            return;
        }
        if ctx.liveness.is_reachable(asked.leader_store) && self.may_sleep_as_follower(asked.index)
        {
            self.hibernation.asked = None;
            let (leader, index) = (asked.leader, asked.index);
            self.send_extra(leader, ExtraMessageType::MsgHibernateResponse, index, ctx);
            self.fall_asleep(ctx);
        }
    }

    /// A follower agrees to sleep when its log ends where its leader's does, all of it
    /// committed and handed to apply, with nothing of its own in flight (and, checked by the
    /// caller, its leader's store answers pings: a late request must not put it to sleep
    /// under a leader already given up for dead). Its apply need not have caught up: that
    /// takes no tick and no message to the leader, and its result does not wake a sleeper
    /// unless it carries an admin effect (`is_plain_apply`). Waiting for it cost a round trip
    /// through the apply pool per write, and heartbeats while the leader waited.
    fn may_sleep_as_follower(&self, index: u64) -> bool {
        let raft = &self.raft_group.raft;
        raft.state == raft::StateRole::Follower
            && raft.raft_log.last_index() == index
            && raft.raft_log.committed == index
            && self.handed_index == index
            && self.pending_ready.is_none()
            && self.reads.is_empty()
            && self.proposals.is_empty()
            && self.ticks >= self.refuse_votes_until
            && self.snap_chunks.is_none()
            && self.displacing.is_none()
            && !self.merge.holds_commit_merge()
            && self.hibernation.state != GroupState::PreChaos
    }

    fn send_extra_to_leader<T: Transport>(
        &self,
        kind: ExtraMessageType,
        index: u64,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        if let Some(leader) = self.leader() {
            self.send_extra(leader.id, kind, index, ctx);
        }
    }

    /// Sends a hibernation message to peer `to`, with this peer's term. Lost ones are sent
    /// again on a later tick.
    fn send_extra<T: Transport>(
        &self,
        to: u64,
        kind: ExtraMessageType,
        index: u64,
        ctx: &mut StoreContext<EK, ER, T>,
    ) {
        let mut m = eraftpb::Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat); // never stepped: names the ends and term
        m.from = self.peer_id();
        m.to = to;
        m.term = self.term();
        let Some(mut msg) = self.wrap_message(m) else { return };
        msg.mut_extra().set_field_type(kind);
        msg.mut_extra().index = index;
        if ctx.trans.send(msg).is_ok() {
            ctx.counters.sent_extra(kind);
        }
    }
}

//! The PCC pipeline stage: subscriber lookup by address, PCC classification, actions,
//! policers and counters, for every IP packet still pending after `classify`.

use super::index::AddressIndex;
use super::policy::{
    self, DroppedLine, HotRules, Outcome, RuleState, StateBlock, SubscriberLine, SubscriberPolicy,
};
use super::spec::{Direction, PccDefaults, RoutingInstance};
use super::PccError;
use crate::acl::{Disposition, IpFamily, PacketKey};
use crate::arena::HugeSlice;
use crate::pipeline::{Batch, Context, DropReason, PacketKind, Stage, Verdict};
use crate::service::ServiceId;
use crate::wire::{Ipv4Packet, Ipv6Packet};
use serde::Serialize;
use std::any::Any;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Arc;

/// No subscriber.
const NONE: u32 = u32::MAX;

/// Packets a pass takes at a time. The passes run staggered (see [`PccStage::process`]), so
/// what one pass prefetches for a group is read a step later, after every pass has taken a
/// group: 16 gives that step time for the misses (groups of 8, 32 and 64 measured no better
/// for a distinct rule list per subscriber; 8 cost shared services), and at 256 packets a
/// batch keeps the steps that do not run all five passes (four at each end) few.
const GROUP: usize = 16;

/// Passes after the parsing one (see [`PccStage::process`]).
const PASSES: usize = 5;

/// Packets the stage decided without a subscriber's rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PccStats {
    /// Packets of no subscriber, forwarded by [`PccDefaults::unknown`].
    pub unknown_forwarded: u64,
    /// Packets of no subscriber, dropped by [`PccDefaults::unknown`].
    pub unknown_dropped: u64,
    /// Packets of subscribers without rules dropped by [`PccDefaults::no_services`].
    pub no_services_dropped: u64,
    /// Packets a rule's drop action dropped (also in that rule's counters).
    pub rule_dropped: u64,
    /// Packets a rule's policer coloured red (also in that rule's counters).
    pub policed: u64,
}

/// One packet on its way through the stage's passes.
#[derive(Clone, Copy)]
struct Work {
    index: usize,
    key: PacketKey,
    octets: u64,
    family: IpFamily,
    /// Slot of the subscriber owning the source address (ingress), or [`NONE`].
    src: u32,
    /// Slot of the subscriber owning the destination address (egress), or [`NONE`].
    dst: u32,
    /// The source's subscriber's IPv4 entries its far-end summary leaves (ingress; see
    /// [`HotRules::candidates4`]).
    ingress_candidates: u8,
    /// The destination's subscriber's, likewise (egress).
    egress_candidates: u8,
    /// The matching rule of the source's subscriber (ingress), if any.
    ingress_rule: Option<u16>,
    /// The matching rule of the destination's subscriber (egress), if any.
    egress_rule: Option<u16>,
}

/// What the packet path needs of an installed subscriber, in 16 bytes: where its state block
/// is (its two [`SubscriberLine`]s, one per direction — the aggregate counters, the pointer to
/// the direction's IPv4 entries and their far-end summary — after its rules' lines, which hold
/// their actions) and where its compiled rules' [`HotRules`] are (the rule count and the IPv6
/// entries), both in the huge-page arena, so that an IPv4 packet goes from the slot to the one
/// line it needs first with no line in between: not the policy (a heap line in 4 KiB pages
/// that used to be a dependent step), not the compiled rules' line (whose pointers and
/// summaries the subscriber's lines copy). (Keeping the entries' pointers in the slot instead
/// made the slot a cache line and measured slower.)
///
/// The low bit of `hot` (the `HotRules` are line-aligned) says whether the rules were shared
/// when the subscriber was installed ([`HotRules::is_shared`]): shared rules are in the cache,
/// so their packets classify from the rules' own first line, and their passes need not wait
/// for the subscriber's line — knowing it from the slot saves reading either line first. The
/// first subscriber of a list that others share later keeps the bit clear until it is
/// reinstalled and takes the distinct path: a few more prefetches, the same outcome.
///
/// Invariant, kept by [`PccStage`]: while an `Installed` is in slot `s`, `owners[s]` holds the
/// policy whose state block `block` is, and `hot` (its low bit cleared) points to that policy's
/// compiled rules' [`HotRules`] (which the policy keeps alive through its `Arc`).
struct Installed {
    hot: NonNull<HotRules>,
    block: StateBlock,
}

/// The bit of [`Installed::hot`] that says the rules are shared.
const SHARED: usize = 1;
const _: () = assert!(std::mem::align_of::<HotRules>() > SHARED);

// SAFETY: `hot` and `block` point to a `HotRules` (immutable but for an atomic flag) and to
// state lines (atomics and pointers to immutable data), all `Send + Sync`, in
// blocks the policy held beside this slot owns or keeps alive; sending or sharing the slot
// sends or shares references to them.
unsafe impl Send for Installed {}
// SAFETY: as above.
unsafe impl Sync for Installed {}

impl Installed {
    fn new(policy: &SubscriberPolicy) -> Self {
        let hot = policy.compiled().hot();
        let shared = if hot.is_shared() { SHARED } else { 0 };
        Self {
            hot: NonNull::from(hot).map_addr(|addr| addr | shared),
            block: policy.state_block(),
        }
    }

    /// The compiled rules' hot lines.
    #[inline(always)]
    fn hot(&self) -> &HotRules {
        let hot = self.hot.as_ptr().map_addr(|addr| addr & !SHARED);
        // SAFETY: by the invariant above, `hot` without its tag bit points to the `HotRules`
        // of a live policy's compiled rules (kept by the stage as long as this slot is); arena
        // blocks never move, and nothing takes `&mut` to it (its one mutable field is atomic).
        unsafe { &*hot }
    }

    /// Whether the rules were shared when the subscriber was installed (see above).
    #[inline(always)]
    fn shared(&self) -> bool {
        self.hot.addr().get() & SHARED != 0
    }

    /// The subscriber's line of `direction`.
    #[inline(always)]
    fn line(&self, direction: Direction) -> &SubscriberLine {
        // SAFETY: by the invariant above, `block` is the state block of a live policy, kept by
        // the stage as long as this slot is (and `&self` borrows the stage).
        unsafe { self.block.line(direction) }
    }

    /// The rules' lines (`direction`: the packet's, see [`Installed::rule_count`]).
    #[inline(always)]
    fn rule_lines(&self, direction: Direction) -> &[RuleState] {
        // SAFETY: as for `line`; `rule_count` is the count of the policy's compiled rules.
        unsafe { self.block.rules(self.rule_count(direction)) }
    }

    /// The rules' dropped volumes.
    #[inline(always)]
    fn dropped_lines(&self, direction: Direction) -> &[DroppedLine] {
        // SAFETY: as for `rule_lines`.
        unsafe { self.block.dropped(self.rule_count(direction)) }
    }

    /// The subscriber's rule count, from a line a packet in `direction` has read already: a
    /// shared list's first line (in the cache), a distinct one's subscriber line of that
    /// direction (read by the summary pass). Taken from the subscriber's line for a shared
    /// list, it made the rule lines' address depend on that line's arrival, and the two misses
    /// followed one another.
    #[inline(always)]
    fn rule_count(&self, direction: Direction) -> usize {
        if self.shared() {
            self.hot().rule_count()
        } else {
            self.line(direction).rule_count()
        }
    }
}

/// The PCC stage. One instance serves every worker (wrap it in [`crate::pipeline::Shared`]):
/// policer buckets must not diverge between workers, and the counters in each
/// [`SubscriberPolicy`] have one writer at a time.
///
/// The control side compiles a [`SubscriberPolicy`] per subscriber and installs it between
/// two batches with [`PccStage::install`]: the subscriber's rules and addresses change in one
/// step, so no packet sees half a service. It keeps the `Arc` it installed and reads the
/// counters from it without the stage.
pub struct PccStage {
    defaults: PccDefaults,
    /// The base routing instance's addresses: the pipeline pass and IES interfaces.
    index: AddressIndex,
    /// Each VPRN's addresses, for its IP interfaces' packets; a VPRN without subscriber
    /// addresses has no entry.
    vprn_index: HashMap<ServiceId, AddressIndex>,
    /// Indexed by slot; in huge pages once 2 MiB or more (a random one per packet). Slots from
    /// `next_slot` on have never been used.
    slots: HugeSlice<Option<Installed>>,
    /// The policy of each slot (see [`Installed`]); the packet path does not read them.
    owners: Vec<Option<Arc<SubscriberPolicy>>>,
    next_slot: usize,
    free: Vec<u32>,
    by_name: HashMap<String, u32>,
    stats: PccStats,
    work: Vec<Work>,
}

impl PccStage {
    /// An empty stage: every packet gets `defaults.unknown`.
    pub fn new(defaults: PccDefaults) -> Self {
        Self {
            defaults,
            index: AddressIndex::default(),
            vprn_index: HashMap::new(),
            slots: HugeSlice::from_fn(0, |_| None),
            owners: Vec::new(),
            next_slot: 0,
            free: Vec::new(),
            by_name: HashMap::new(),
            stats: PccStats::default(),
            work: Vec::new(),
        }
    }

    /// The default actions.
    pub fn defaults(&self) -> PccDefaults {
        self.defaults
    }

    /// Changes the default actions (from the next batch on).
    pub fn set_defaults(&mut self, defaults: PccDefaults) {
        self.defaults = defaults;
    }

    /// Counters of the default actions.
    pub fn stats(&self) -> PccStats {
        self.stats
    }

    /// Subscribers installed.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no subscriber is installed.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The installed policy of subscriber `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<SubscriberPolicy>> {
        let slot = *self.by_name.get(name)?;
        self.owners.get(slot as usize)?.as_ref()
    }

    /// Installs `policy` for its subscriber, replacing the one installed (returned). Rules the
    /// two share by direction and name keep their counters and policer buckets, and the
    /// subscriber keeps its aggregate counters. The subscriber's addresses become the
    /// policy's. Refused, with nothing changed, when another subscriber owns one of them.
    pub fn install(
        &mut self,
        policy: Arc<SubscriberPolicy>,
    ) -> Result<Option<Arc<SubscriberPolicy>>, PccError> {
        let existing = self.by_name.get(policy.name()).copied();
        for (instance, prefix) in policy.owned_prefixes() {
            let owner = self
                .index_of(instance)
                .and_then(|index| index.owner(&prefix))
                .filter(|&o| Some(o) != existing);
            if let Some(owner) = owner {
                let owner = self
                    .owners
                    .get(owner as usize)
                    .and_then(Option::as_ref)
                    .map(|p| p.name().to_string())
                    .unwrap_or_default();
                return Err(PccError::AddressOwned {
                    subscriber: policy.name().to_string(),
                    instance,
                    prefix,
                    owner,
                });
            }
        }
        let slot = match existing {
            Some(slot) => slot,
            None => match self.free.pop() {
                Some(slot) => slot,
                None => {
                    let slot = u32::try_from(self.next_slot)
                        .ok()
                        .filter(|&s| s != NONE)
                        .ok_or(PccError::TooManySubscribers)?;
                    if self.next_slot == self.slots.len() {
                        self.grow_slots();
                    }
                    self.next_slot += 1;
                    slot
                }
            },
        };
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            *entry = None;
        }
        let old = self.owners.get_mut(slot as usize).and_then(Option::take);
        if let Some(old) = &old {
            if !Arc::ptr_eq(old, &policy) {
                policy.carry_over(old);
            }
            let kept: Vec<_> = policy.owned_prefixes().collect();
            for (instance, prefix) in old.owned_prefixes() {
                if !kept.contains(&(instance, prefix)) {
                    self.unmap(instance, &prefix);
                }
            }
        }
        for (instance, prefix) in policy.owned_prefixes() {
            self.index_for(instance).insert(&prefix, slot);
        }
        self.by_name.insert(policy.name().to_string(), slot);
        // The slot and its owner change together (the invariant of `Installed`).
        if let (Some(entry), Some(owner)) = (
            self.slots.get_mut(slot as usize),
            self.owners.get_mut(slot as usize),
        ) {
            *entry = Some(Installed::new(&policy));
            *owner = Some(policy);
        }
        Ok(old)
    }

    /// Removes subscriber `name` (its addresses become unknown); returns its policy, whose
    /// counters are final.
    pub fn remove(&mut self, name: &str) -> Option<Arc<SubscriberPolicy>> {
        let slot = self.by_name.remove(name)?;
        // The slot goes first: its state pointer must not outlive the policy.
        self.slots.get_mut(slot as usize)?.take();
        let policy = self.owners.get_mut(slot as usize)?.take()?;
        for (instance, prefix) in policy.owned_prefixes() {
            self.unmap(instance, &prefix);
        }
        self.free.push(slot);
        Some(policy)
    }

    /// The address index of `instance`, if it has any address.
    fn index_of(&self, instance: RoutingInstance) -> Option<&AddressIndex> {
        match instance {
            RoutingInstance::Base => Some(&self.index),
            RoutingInstance::Vprn(id) => self.vprn_index.get(&id),
        }
    }

    /// The address index of `instance`, created empty for a VPRN that has none yet.
    fn index_for(&mut self, instance: RoutingInstance) -> &mut AddressIndex {
        match instance {
            RoutingInstance::Base => &mut self.index,
            RoutingInstance::Vprn(id) => self.vprn_index.entry(id).or_default(),
        }
    }

    /// Unmaps `prefix` from `instance`; a VPRN left without addresses loses its index.
    fn unmap(&mut self, instance: RoutingInstance, prefix: &crate::acl::Prefix) {
        match instance {
            RoutingInstance::Base => self.index.remove(prefix),
            RoutingInstance::Vprn(id) => {
                if let Some(index) = self.vprn_index.get_mut(&id) {
                    index.remove(prefix);
                    if index.is_empty() {
                        self.vprn_index.remove(&id);
                    }
                }
            }
        }
    }

    /// The VPRNs holding subscriber addresses, in id order.
    #[cfg(test)]
    pub(super) fn vprn_instances(&self) -> Vec<ServiceId> {
        let mut ids: Vec<_> = self.vprn_index.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Twice the slots (1 024 at first), the installed ones moved over (their owners stay
    /// where they are, so the state pointers stay valid).
    fn grow_slots(&mut self) {
        let mut old = std::mem::replace(&mut self.slots, HugeSlice::from_fn(0, |_| None));
        self.slots = HugeSlice::from_fn((2 * old.len()).max(1_024), |i| {
            old.get_mut(i).and_then(Option::take)
        });
        self.owners.resize_with(self.slots.len(), || None);
    }

    #[inline(always)]
    fn installed(&self, slot: u32) -> Option<&Installed> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Enforces one direction of PCC rules on one IP packet (`ip` starts at its IP header)
    /// whose path already says which side its subscriber is on: a packet an IP interface's
    /// SAP received is its sender's `Ingress` (the subscriber owning the source), a packet the
    /// kernel sends out through one is its receiver's `Egress` (the owner of the destination).
    /// The address is looked up in `instance`: the interface's VPRN, or the base instance for
    /// an IES interface.
    /// The other address is not looked up, so traffic between two subscribers, which crosses
    /// the kernel, meets each side's rules once. Polices, counts and remarks the DSCP in
    /// place; `Err` is the drop and its reason. A header the key reader refuses passes
    /// untouched: the kernel, which receives or sent it, deals with it.
    pub fn enforce(
        &mut self,
        direction: Direction,
        instance: RoutingInstance,
        ip: &mut [u8],
        now_ns: u64,
    ) -> Result<(), DropReason> {
        let mut key = PacketKey::default();
        match ip.first().map(|b| b >> 4) {
            Some(4) => key.read_ipv4(ip),
            Some(6) => key.read_ipv6(ip),
            _ => return Ok(()),
        }
        let Some(family) = key.family else {
            return Ok(());
        };
        let Some(index) = self.index_of(instance) else {
            return self.unknown();
        };
        let slot = match (family, direction) {
            (IpFamily::V4, Direction::Ingress) => index.v4.lookup(key.src4),
            (IpFamily::V4, Direction::Egress) => index.v4.lookup(key.dst4),
            (IpFamily::V6, Direction::Ingress) => index.v6.lookup(key.src6),
            (IpFamily::V6, Direction::Egress) => index.v6.lookup(key.dst6),
        };
        let Some(slot) = slot else {
            return self.unknown();
        };
        let rule = self
            .installed(slot)
            .and_then(|installed| installed.hot().entries().classify(&key, direction));
        let remark = self.decide(slot, direction, rule, ip_octets(ip, family), now_ns)?;
        if let Some(dscp) = remark {
            match family {
                IpFamily::V4 => Ipv4Packet::new_unchecked(ip).set_dscp(dscp),
                IpFamily::V6 => Ipv6Packet::new_unchecked(ip).set_dscp(dscp),
            }
        }
        Ok(())
    }

    /// The summary pass for one side of a packet (`slot`'s subscriber in `direction`): for
    /// rules of its own, the IPv4 candidates its far-end summary leaves (returned) and their
    /// entries prefetched, or an IPv6 packet's entries prefetched. Shared rules' entries are in
    /// the cache and scanned plainly: nothing to do. Called once per direction with a constant
    /// `direction`, so that it folds away after inlining (as a loop over both sides it cost the
    /// shared path instructions).
    #[inline(always)]
    fn summarise(&self, slot: u32, key: &PacketKey, family: IpFamily, direction: Direction) -> u8 {
        let Some(installed) = self.installed(slot).filter(|i| !i.shared()) else {
            return 0;
        };
        match family {
            IpFamily::V4 => {
                let line = installed.line(direction);
                let candidates = line.candidates4(key, direction);
                policy::prefetch_candidates4(line.entries4(), candidates);
                candidates
            }
            IpFamily::V6 => {
                installed
                    .hot()
                    .entries()
                    .prefetch_entries(family, direction);
                0
            }
        }
    }

    /// The classify pass for one side of packet `w` (`slot`'s subscriber in `direction`): its
    /// matching rule, whose line (with its action) is prefetched — for shared rules with the
    /// subscriber's line, which nothing needed earlier.
    #[inline(always)]
    fn classify_side(&self, slot: u32, w: &Work, direction: Direction) -> Option<u16> {
        let installed = self.installed(slot)?;
        let shared = installed.shared();
        let candidates = match direction {
            Direction::Ingress => w.ingress_candidates,
            Direction::Egress => w.egress_candidates,
        };
        let rule = match w.family {
            IpFamily::V4 if !shared => {
                policy::classify4_among(installed.line(direction).entries4(), &w.key, candidates)
            }
            _ => installed.hot().entries().classify(&w.key, direction),
        };
        if shared {
            crate::fdb::prefetch_read(installed.block.line_addr(direction));
        }
        policy::prefetch_rule(installed.block, installed.rule_count(direction), rule);
        rule
    }

    /// The default action for a packet of no subscriber, counted.
    #[inline(always)]
    fn unknown(&mut self) -> Result<(), DropReason> {
        if self.defaults.unknown == Disposition::Drop {
            self.stats.unknown_dropped += 1;
            Err(DropReason::Pcc)
        } else {
            self.stats.unknown_forwarded += 1;
            Ok(())
        }
    }

    /// Applies the subscriber's side of a packet (`rule`: the one the classify pass
    /// found); `Ok(Some(dscp))` asks for a remark.
    #[inline(always)]
    fn decide(
        &mut self,
        slot: u32,
        direction: Direction,
        rule: Option<u16>,
        octets: u64,
        now_ns: u64,
    ) -> Result<Option<u8>, DropReason> {
        let Some(installed) = self.installed(slot) else {
            return Ok(None);
        };
        let line = installed.line(direction);
        if installed.rule_count(direction) == 0 && self.defaults.no_services == Disposition::Drop {
            self.stats.no_services_dropped += 1;
            return Err(DropReason::Pcc);
        }
        match policy::apply(
            line,
            installed.rule_lines(direction),
            installed.dropped_lines(direction),
            rule,
            octets,
            now_ns,
        ) {
            Outcome::Forward(remark) => Ok(remark),
            Outcome::Drop => {
                self.stats.rule_dropped += 1;
                Err(DropReason::Pcc)
            }
            Outcome::Policed => {
                self.stats.policed += 1;
                Err(DropReason::Policer)
            }
        }
    }

    /// The last pass for packet `w` of `batch`: its sender's ingress rules, then its receiver's
    /// egress rules (the rules the classify pass found), or the default for a packet of no
    /// subscriber; the verdict or the DSCP remark written into the batch.
    #[inline(always)]
    fn finish(&mut self, w: &mut Work, batch: &mut Batch, now_ns: u64) {
        let decided = if w.src == NONE && w.dst == NONE {
            self.unknown().map(|()| None)
        } else {
            // Ingress of the sender first; traffic between two subscribers then meets
            // the receiver's egress rules too, as the sender's rules left it.
            self.decide(w.src, Direction::Ingress, w.ingress_rule, w.octets, now_ns)
                .and_then(|first| {
                    if let Some(dscp) = first.filter(|&d| d != w.key.transport.dscp()) {
                        w.key.transport.set_dscp(dscp);
                        w.egress_rule = self
                            .installed(w.dst)
                            .and_then(|i| i.hot().entries().classify(&w.key, Direction::Egress));
                    }
                    let second =
                        self.decide(w.dst, Direction::Egress, w.egress_rule, w.octets, now_ns)?;
                    Ok(second.or(first))
                })
        };
        let Some((buf, meta)) = batch.get_mut(w.index) else {
            return;
        };
        match decided {
            Err(reason) => meta.verdict = Verdict::Drop(reason),
            Ok(Some(dscp)) => {
                let ip = buf
                    .as_mut_slice()
                    .get_mut(usize::from(meta.l3)..)
                    .unwrap_or(&mut []);
                match w.family {
                    IpFamily::V4 => Ipv4Packet::new_unchecked(ip).set_dscp(dscp),
                    IpFamily::V6 => Ipv6Packet::new_unchecked(ip).set_dscp(dscp),
                }
            }
            Ok(None) => {}
        }
    }
}

/// The packet's IP length from its header (link-layer padding excluded).
fn ip_octets(ip: &[u8], family: IpFamily) -> u64 {
    match family {
        IpFamily::V4 => ip
            .get(2..4)
            .map_or(0, |b| u64::from(u16::from_be_bytes([b[0], b[1]]))),
        IpFamily::V6 => ip
            .get(4..6)
            .map_or(0, |b| 40 + u64::from(u16::from_be_bytes([b[0], b[1]]))),
    }
}

impl Stage for PccStage {
    fn name(&self) -> &'static str {
        "pcc"
    }

    /// Six passes over the batch's IP packets, each issuing the prefetches the next one
    /// needs, so that the cache misses of a batch overlap instead of following one another:
    /// parse, and prefetch the address tables; look the addresses up, and prefetch the slots;
    /// read the slots, and prefetch the subscriber's line of the packet's direction, which
    /// holds the far-end summary (rules of its own) or nothing (shared rules, in the cache);
    /// read it, and prefetch the entries the summary leaves; classify, and prefetch the
    /// matching rule's line, which holds its action (with the subscriber's line, for shared
    /// rules); police, count and decide. The first runs over the whole batch, the other five
    /// staggered over groups of [`GROUP`] packets.
    fn process(&mut self, batch: &mut Batch, ctx: &Context<'_>) {
        let mut work = std::mem::take(&mut self.work);
        work.clear();
        for (index, (buf, meta)) in batch.iter().enumerate() {
            if meta.verdict != Verdict::Pending {
                continue;
            }
            let ip = buf.as_slice().get(usize::from(meta.l3)..).unwrap_or(&[]);
            let mut key = PacketKey::default();
            match meta.kind {
                PacketKind::Ipv4 => key.read_ipv4(ip),
                PacketKind::Ipv6 => key.read_ipv6(ip),
                _ => continue,
            }
            // A header the key reader refused is left to the stages that report it.
            let Some(family) = key.family else {
                continue;
            };
            match family {
                IpFamily::V4 => {
                    self.index.v4.prefetch(key.src4);
                    self.index.v4.prefetch(key.dst4);
                }
                IpFamily::V6 => {
                    self.index.v6.prefetch(key.src6);
                    self.index.v6.prefetch(key.dst6);
                }
            }
            work.push(Work {
                index,
                octets: ip_octets(ip, family),
                key,
                family,
                src: NONE,
                dst: NONE,
                ingress_candidates: 0,
                egress_candidates: 0,
                ingress_rule: None,
                egress_rule: None,
            });
        }
        // The passes run staggered over groups of `GROUP` packets: at each step every pass
        // works on its own group, the first on the newest, the last on the one the others
        // have already taken through, so that a line prefetched by a pass has a whole step
        // (five groups' passes) to arrive before the next pass reads it — run one after the
        // other over one group, a pass read the lines the previous one had just asked for.
        let len = work.len();
        let groups = len.div_ceil(GROUP);
        for step in 0..groups + PASSES - 1 {
            let group_of = |pass: usize| {
                let group = step.checked_sub(pass).filter(|&g| g < groups)?;
                Some(group * GROUP..len.min((group + 1) * GROUP))
            };
            // Pass 4: police, count, decide.
            if let Some(group) = group_of(4).and_then(|range| work.get_mut(range)) {
                for w in group.iter_mut() {
                    self.finish(w, batch, ctx.now_ns);
                }
            }
            // Pass 3: classify, prefetch the rule's line.
            if let Some(group) = group_of(3).and_then(|range| work.get_mut(range)) {
                for w in group.iter_mut() {
                    w.ingress_rule = self.classify_side(w.src, w, Direction::Ingress);
                    w.egress_rule = self.classify_side(w.dst, w, Direction::Egress);
                }
            }
            // Pass 2: the far-end summary, prefetch the candidate entries.
            if let Some(group) = group_of(2).and_then(|range| work.get_mut(range)) {
                for w in group.iter_mut() {
                    w.ingress_candidates =
                        self.summarise(w.src, &w.key, w.family, Direction::Ingress);
                    w.egress_candidates =
                        self.summarise(w.dst, &w.key, w.family, Direction::Egress);
                }
            }
            // Pass 1: read the slots, prefetch the subscriber's lines.
            if let Some(group) = group_of(1).and_then(|range| work.get_mut(range)) {
                for w in group.iter() {
                    for (slot, direction) in
                        [(w.src, Direction::Ingress), (w.dst, Direction::Egress)]
                    {
                        // Shared rules are in the cache already, and their packets need the
                        // subscriber's line only at the end: it is fetched with the rule's line.
                        if let Some(installed) = self.installed(slot).filter(|i| !i.shared()) {
                            crate::fdb::prefetch_read(installed.block.line_addr(direction));
                            if w.family == IpFamily::V6 {
                                installed.hot().prefetch();
                            }
                        }
                    }
                }
            }
            // Pass 0: look the addresses up, prefetch the slots.
            if let Some(group) = group_of(0).and_then(|range| work.get_mut(range)) {
                for w in group.iter_mut() {
                    let (src, dst) = match w.family {
                        IpFamily::V4 => (
                            self.index.v4.lookup(w.key.src4),
                            self.index.v4.lookup(w.key.dst4),
                        ),
                        IpFamily::V6 => (
                            self.index.v6.lookup(w.key.src6),
                            self.index.v6.lookup(w.key.dst6),
                        ),
                    };
                    w.src = src.unwrap_or(NONE);
                    w.dst = dst.unwrap_or(NONE);
                    for slot in [w.src, w.dst] {
                        if let Some(entry) = self.slots.get(slot as usize) {
                            crate::fdb::prefetch_read(entry);
                        }
                    }
                }
            }
        }
        self.work = work;
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

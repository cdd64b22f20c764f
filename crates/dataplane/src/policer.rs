//! Policers: the single-rate and two-rate three-colour markers of RFC 2697 (srTCM), RFC 2698
//! (trTCM) and RFC 4115 (the differentiated-service trTCM), with the SR OS vocabulary for
//! their parameters (rates in kbps, bursts in bytes, `packet-byte-offset`, `stat-mode`).
//!
//! Token arithmetic is exact integer arithmetic on the caller's `now_ns`: a bucket holds
//! tokens in units of 10⁻⁹ byte, a rate of `r` bytes per second adds exactly `r` units per
//! nanosecond, so refilling never rounds and long runs never drift. No floats anywhere.
//!
//! [`PolicerParams`] is the validated, immutable configuration (it lives in the service
//! snapshot); [`PolicerState`] is the mutable part (buckets and counters) that lives beside it
//! and survives a change of parameters.

use serde::Serialize;

/// Token units per byte: a bucket counts bytes × 10⁹, so a rate in bytes per second adds an
/// integral number of units per nanosecond.
const UNITS_PER_BYTE: u64 = 1_000_000_000;

/// Bytes per second in 1 kbps, exactly.
const KBPS: u64 = 125;

/// Highest accepted rate: 400 Gb/s.
pub const MAX_RATE_KBPS: u64 = 400_000_000;

/// Largest accepted burst: 1 GiB (keeps bucket units below 2⁶⁴).
pub const MAX_BURST_BYTES: u64 = 1 << 30;

/// The smallest default burst: one full-size VLAN-tagged frame, so that a policer with a low
/// rate and a default burst still passes full-size frames.
pub const MIN_DEFAULT_BURST_BYTES: u64 = 1_536;

/// Burst used when a burst size is left to its default: the volume of 10 ms at `rate_kbps`
/// (the SR OS default for MBS and CBS), at least [`MIN_DEFAULT_BURST_BYTES`]; 0 for a zero rate.
pub fn default_burst(rate_kbps: u64) -> u64 {
    if rate_kbps == 0 {
        return 0;
    }
    // kbps × 1000 / 8 bytes per second, for 10 ms: kbps × 1.25 bytes.
    (rate_kbps * 5 / 4).max(MIN_DEFAULT_BURST_BYTES)
}

/// The colour a meter gives a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Colour {
    /// Within the committed rate (in-profile): forwarded.
    Green = 0,
    /// Above the committed rate, within the peak/excess rate (out-of-profile): forwarded.
    Yellow = 1,
    /// Above the peak/excess rate: dropped.
    Red = 2,
}

/// Whether the meter takes the packet's colour on arrival into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColourMode {
    /// Every packet is metered as if it arrived green (RFC 2697/2698 colour-blind mode).
    #[default]
    Blind,
    /// A packet that arrives yellow (in the service stage: drop-eligible, DEI set) can only
    /// leave yellow or red.
    Aware,
}

/// Which counters a policer keeps (SR OS `stat-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatMode {
    /// No counters (`no-stats`).
    NoStats,
    /// Forwarded and dropped packets and octets (`minimal`, the SR OS default).
    #[default]
    Minimal,
    /// Packets and octets per output colour: green and yellow forwarded, red dropped
    /// (`offered-total-cir`).
    OfferedTotalCir,
}

/// The metering algorithm and its rates and bursts, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Meter {
    /// RFC 2697: one rate, a committed and an excess bucket filled by overflow.
    SrTcm {
        /// Committed information rate (kbps, ≥ 1).
        cir_kbps: u64,
        /// Committed burst size (bytes); `None` = default ([`default_burst`] of the CIR).
        cbs: Option<u64>,
        /// Excess burst size (bytes); `None` = default (the same as the CBS default).
        ebs: Option<u64>,
    },
    /// RFC 2698: a peak bucket at PIR and a committed bucket at CIR (CIR ≤ PIR; CIR 0 makes
    /// everything below the PIR yellow).
    TrTcm {
        /// Peak information rate (kbps, ≥ 1).
        pir_kbps: u64,
        /// Maximum burst size of the peak bucket (bytes); `None` = default of the PIR.
        mbs: Option<u64>,
        /// Committed information rate (kbps, ≤ PIR).
        cir_kbps: u64,
        /// Committed burst size (bytes); `None` = default of the CIR.
        cbs: Option<u64>,
    },
    /// RFC 4115: a committed bucket at CIR and an independent excess bucket at EIR; packets
    /// that do not fit the committed bucket are tested against the excess bucket only.
    Rfc4115 {
        /// Committed information rate (kbps).
        cir_kbps: u64,
        /// Committed burst size (bytes); `None` = default of the CIR.
        cbs: Option<u64>,
        /// Excess information rate (kbps).
        eir_kbps: u64,
        /// Excess burst size (bytes); `None` = default of the EIR.
        ebs: Option<u64>,
    },
}

/// A policer as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PolicerConfig {
    /// Algorithm, rates and bursts.
    pub meter: Meter,
    /// Colour-blind or colour-aware.
    #[serde(default)]
    pub colour_mode: ColourMode,
    /// Bytes added to (or, negative, subtracted from) each packet's length before it is
    /// metered and counted (SR OS `packet-byte-offset`), e.g. +20 for preamble and
    /// inter-frame gap, −4 to ignore a tag. A packet never counts less than 0 bytes.
    #[serde(default)]
    pub packet_byte_offset: i16,
    /// Counters kept.
    #[serde(default)]
    pub stat_mode: StatMode,
}

/// Why a policer configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicerError {
    /// A rate is out of range.
    #[error("{which} {value} kbps is out of range: expected {min} to {MAX_RATE_KBPS} kbps")]
    Rate {
        /// Which rate.
        which: &'static str,
        /// The value.
        value: u64,
        /// The smallest accepted value.
        min: u64,
    },
    /// The committed rate exceeds the peak rate.
    #[error("CIR {cir} kbps exceeds PIR {pir} kbps")]
    CirAbovePir {
        /// CIR.
        cir: u64,
        /// PIR.
        pir: u64,
    },
    /// A burst is out of range.
    #[error("{which} {value} bytes is out of range: expected 0 to {MAX_BURST_BYTES} bytes")]
    Burst {
        /// Which burst.
        which: &'static str,
        /// The value.
        value: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SrTcm,
    TrTcm,
    Rfc4115,
}

/// A validated policer: rates in bytes per second and bucket sizes in token units.
/// `repr(C)`: what metering reads comes first, within one cache line; the configuration it
/// was made from (for display) after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct PolicerParams {
    /// Rate of the first bucket (CIR for srTCM/RFC 4115, PIR for trTCM), bytes/s.
    rate1: u64,
    /// Size of the first bucket, units.
    size1: u64,
    /// Rate of the second bucket (unused for srTCM: it fills by overflow), bytes/s.
    rate2: u64,
    /// Size of the second bucket, units.
    size2: u64,
    offset: i16,
    kind: Kind,
    colour_aware: bool,
    stat_mode: StatMode,
    config: PolicerConfig,
}

fn check_rate(which: &'static str, value: u64, min: u64) -> Result<u64, PolicerError> {
    if value < min || value > MAX_RATE_KBPS {
        return Err(PolicerError::Rate { which, value, min });
    }
    Ok(value * KBPS)
}

fn check_burst(
    which: &'static str,
    value: Option<u64>,
    rate_kbps: u64,
) -> Result<u64, PolicerError> {
    let bytes = value.unwrap_or_else(|| default_burst(rate_kbps));
    if bytes > MAX_BURST_BYTES {
        return Err(PolicerError::Burst {
            which,
            value: bytes,
        });
    }
    Ok(bytes * UNITS_PER_BYTE)
}

/// A trTCM's PIR, MBS, CIR and CBS validated: [peak rate, peak bucket size, committed rate,
/// committed bucket size] in bytes per second and token units.
fn check_trtcm(
    pir_kbps: u64,
    mbs: Option<u64>,
    cir_kbps: u64,
    cbs: Option<u64>,
) -> Result<[u64; 4], PolicerError> {
    if cir_kbps > pir_kbps {
        return Err(PolicerError::CirAbovePir {
            cir: cir_kbps,
            pir: pir_kbps,
        });
    }
    Ok([
        check_rate("PIR", pir_kbps, 1)?,
        check_burst("MBS", mbs, pir_kbps)?,
        check_rate("CIR", cir_kbps, 0)?,
        check_burst("CBS", cbs, cir_kbps)?,
    ])
}

/// The bytes a packet of `len` bytes costs after `packet-byte-offset`: never less than 0.
#[inline(always)]
fn metered_octets(len: usize, offset: i16) -> u64 {
    (len as i64 + i64::from(offset)).max(0) as u64
}

/// RFC 2698 §4's decision for a packet costing `cost` units, with the buckets already
/// refilled: peak bucket first; green takes from both; `yellow_in` (a colour-aware meter's
/// yellow arrival) never takes committed tokens.
#[inline(always)]
fn trtcm_colour(peak: &mut u64, committed: &mut u64, cost: u64, yellow_in: bool) -> Colour {
    if *peak < cost {
        Colour::Red
    } else if yellow_in || *committed < cost {
        *peak -= cost;
        Colour::Yellow
    } else {
        *peak -= cost;
        *committed -= cost;
        Colour::Green
    }
}

impl PolicerParams {
    /// Validates `config`.
    pub fn new(config: PolicerConfig) -> Result<Self, PolicerError> {
        let (kind, rate1, size1, rate2, size2) = match config.meter {
            Meter::SrTcm { cir_kbps, cbs, ebs } => (
                Kind::SrTcm,
                check_rate("CIR", cir_kbps, 1)?,
                check_burst("CBS", cbs, cir_kbps)?,
                0,
                check_burst("EBS", ebs, cir_kbps)?,
            ),
            Meter::TrTcm {
                pir_kbps,
                mbs,
                cir_kbps,
                cbs,
            } => {
                let [rate1, size1, rate2, size2] = check_trtcm(pir_kbps, mbs, cir_kbps, cbs)?;
                (Kind::TrTcm, rate1, size1, rate2, size2)
            }
            Meter::Rfc4115 {
                cir_kbps,
                cbs,
                eir_kbps,
                ebs,
            } => (
                Kind::Rfc4115,
                check_rate("CIR", cir_kbps, 0)?,
                check_burst("CBS", cbs, cir_kbps)?,
                check_rate("EIR", eir_kbps, 0)?,
                check_burst("EBS", ebs, eir_kbps)?,
            ),
        };
        Ok(Self {
            kind,
            rate1,
            size1,
            rate2,
            size2,
            colour_aware: config.colour_mode == ColourMode::Aware,
            offset: config.packet_byte_offset,
            stat_mode: config.stat_mode,
            config,
        })
    }

    /// The configuration these parameters were made from.
    pub fn config(&self) -> &PolicerConfig {
        &self.config
    }

    /// Bucket sizes in bytes (first, second): (MBS, CBS) for trTCM, (CBS, EBS) otherwise.
    pub fn bursts(&self) -> (u64, u64) {
        (self.size1 / UNITS_PER_BYTE, self.size2 / UNITS_PER_BYTE)
    }

    /// What metering reads of them.
    #[inline(always)]
    fn rates(&self) -> MeterRates {
        MeterRates {
            kind: self.kind,
            rate1: self.rate1,
            size1: self.size1,
            rate2: self.rate2,
            size2: self.size2,
            offset: self.offset,
            colour_aware: self.colour_aware,
        }
    }

    /// A fresh state with both buckets full (RFC 2697 §3, RFC 2698 §3).
    pub fn initial_state(&self, now_ns: u64) -> PolicerState {
        PolicerState {
            tokens1: self.size1,
            tokens2: self.size2,
            last_ns: now_ns,
            counters: [PolicerCounter::default(); 3],
        }
    }
}

/// Packets and octets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PolicerCounter {
    /// Packets.
    pub packets: u64,
    /// Octets (after `packet-byte-offset`).
    pub octets: u64,
}

impl PolicerCounter {
    #[inline]
    fn add(&mut self, octets: u64) {
        self.packets += 1;
        self.octets += octets;
    }

    fn sum(self, other: PolicerCounter) -> PolicerCounter {
        PolicerCounter {
            packets: self.packets + other.packets,
            octets: self.octets + other.octets,
        }
    }
}

/// What a policer counted, as its stat mode allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PolicerStats {
    /// Forwarded (green + yellow); `None` with `no-stats`.
    pub forwarded: Option<PolicerCounter>,
    /// Dropped (red); `None` with `no-stats`.
    pub dropped: Option<PolicerCounter>,
    /// Per colour (green, yellow, red); only with `offered-total-cir`.
    pub per_colour: Option<[PolicerCounter; 3]>,
}

/// The mutable side of a policer: its buckets, the time they were last filled, its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicerState {
    tokens1: u64,
    tokens2: u64,
    last_ns: u64,
    /// With `minimal`: [forwarded, unused, dropped]; with `offered-total-cir`: per colour.
    counters: [PolicerCounter; 3],
}

#[inline]
fn refill(tokens: u64, elapsed_ns: u64, rate: u64, size: u64) -> u64 {
    let added = u128::from(elapsed_ns) * u128::from(rate);
    let total = u128::from(tokens) + added;
    total.min(u128::from(size)) as u64
}

/// What metering reads of a policer's parameters, in the units it computes in (bytes per
/// second, token units): the form both [`PolicerParams`] and [`LinePolicer`] hand to
/// [`meter`], so that both colour and count by the same code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MeterRates {
    kind: Kind,
    rate1: u64,
    size1: u64,
    rate2: u64,
    size2: u64,
    offset: i16,
    colour_aware: bool,
}

/// Adds the tokens earned since `last_ns` to `[tokens1, tokens2]` and moves `last_ns` to
/// `now_ns`. A clock that went backwards adds nothing.
#[inline(always)]
fn advance([tokens1, tokens2, last_ns]: [&mut u64; 3], r: &MeterRates, now_ns: u64) {
    let elapsed = now_ns.saturating_sub(*last_ns);
    if elapsed == 0 {
        return;
    }
    *last_ns = now_ns;
    match r.kind {
        Kind::SrTcm => {
            // Tokens beyond the committed bucket overflow into the excess bucket.
            let total = u128::from(*tokens1) + u128::from(elapsed) * u128::from(r.rate1);
            if total > u128::from(r.size1) {
                let overflow = total - u128::from(r.size1);
                *tokens1 = r.size1;
                *tokens2 = (u128::from(*tokens2) + overflow).min(u128::from(r.size2)) as u64;
            } else {
                *tokens1 = total as u64;
            }
        }
        Kind::TrTcm | Kind::Rfc4115 => {
            *tokens1 = refill(*tokens1, elapsed, r.rate1, r.size1);
            *tokens2 = refill(*tokens2, elapsed, r.rate2, r.size2);
        }
    }
}

/// [`advance`]s the buckets to `now_ns`, then colours a packet of `len` bytes (before
/// `packet-byte-offset`) arriving with colour `arrival` (ignored when colour-blind). Returns
/// its colour and its metered octets.
#[inline(always)]
fn meter(
    [tokens1, tokens2, last_ns]: [&mut u64; 3],
    r: &MeterRates,
    now_ns: u64,
    len: usize,
    arrival: Colour,
) -> (Colour, u64) {
    advance([&mut *tokens1, &mut *tokens2, last_ns], r, now_ns);
    let octets = metered_octets(len, r.offset);
    let cost = octets * UNITS_PER_BYTE;
    let yellow_in = r.colour_aware && arrival != Colour::Green;
    let red_in = r.colour_aware && arrival == Colour::Red;
    let colour = if red_in {
        Colour::Red
    } else {
        match r.kind {
            // RFC 2697 §4 / RFC 4115 §3: committed bucket first, then the excess one.
            Kind::SrTcm | Kind::Rfc4115 => {
                if !yellow_in && *tokens1 >= cost {
                    *tokens1 -= cost;
                    Colour::Green
                } else if *tokens2 >= cost {
                    *tokens2 -= cost;
                    Colour::Yellow
                } else {
                    Colour::Red
                }
            }
            Kind::TrTcm => trtcm_colour(tokens1, tokens2, cost, yellow_in),
        }
    };
    (colour, octets)
}

/// Which of a policer's three counters a packet of `colour` adds to under `mode`: with
/// `minimal` [forwarded, unused, dropped], with `offered-total-cir` one per colour.
#[inline(always)]
fn counter_of(mode: StatMode, colour: Colour) -> Option<usize> {
    match mode {
        StatMode::NoStats => None,
        StatMode::Minimal => Some(if colour == Colour::Red { 2 } else { 0 }),
        StatMode::OfferedTotalCir => Some(colour as usize),
    }
}

/// The three counters as `mode` reports them.
fn stats_of(counters: [PolicerCounter; 3], mode: StatMode) -> PolicerStats {
    let [first, second, third] = counters;
    match mode {
        StatMode::NoStats => PolicerStats::default(),
        StatMode::Minimal => PolicerStats {
            forwarded: Some(first),
            dropped: Some(third),
            per_colour: None,
        },
        StatMode::OfferedTotalCir => PolicerStats {
            forwarded: Some(first.sum(second)),
            dropped: Some(third),
            per_colour: Some(counters),
        },
    }
}

impl PolicerState {
    /// Adds the tokens earned since the last call.
    #[cfg(test)]
    fn advance(&mut self, params: &PolicerParams, now_ns: u64) {
        let buckets = [&mut self.tokens1, &mut self.tokens2, &mut self.last_ns];
        advance(buckets, &params.rates(), now_ns);
    }

    /// Meters a packet of `len` bytes (before `packet-byte-offset`) arriving at `now_ns` with
    /// colour `arrival` (ignored when colour-blind), counts it, and returns its colour.
    #[inline]
    pub fn police(
        &mut self,
        params: &PolicerParams,
        now_ns: u64,
        len: usize,
        arrival: Colour,
    ) -> Colour {
        let buckets = [&mut self.tokens1, &mut self.tokens2, &mut self.last_ns];
        let (colour, octets) = meter(buckets, &params.rates(), now_ns, len, arrival);
        if let Some(counter) = counter_of(params.stat_mode, colour) {
            self.counters[counter].add(octets);
        }
        colour
    }

    /// Keeps the counters and the tokens (capped to the new bucket sizes) across a change of
    /// parameters, so that a changed rate neither resets the statistics nor grants a burst.
    pub fn reconfigure(&mut self, params: &PolicerParams) {
        self.tokens1 = self.tokens1.min(params.size1);
        self.tokens2 = self.tokens2.min(params.size2);
    }

    /// Counters as `params`' stat mode reports them.
    pub fn stats(&self, params: &PolicerParams) -> PolicerStats {
        stats_of(self.counters, params.stat_mode)
    }

    /// Zeroes the counters (the buckets are left as they are).
    pub fn clear(&mut self) {
        self.counters = [PolicerCounter::default(); 3];
    }

    /// The buckets (token units) and the time they were last filled, without the counters:
    /// for a caller that keeps a policer's state in its own storage (the PCC stage keeps it in
    /// atomics beside the rule's counters, so that both can be read while the workers run).
    #[inline]
    pub fn buckets(&self) -> [u64; 3] {
        [self.tokens1, self.tokens2, self.last_ns]
    }

    /// A state with the buckets [`PolicerState::buckets`] returned and zero counters.
    #[inline]
    pub fn from_buckets([tokens1, tokens2, last_ns]: [u64; 3]) -> Self {
        Self {
            tokens1,
            tokens2,
            last_ns,
            counters: [PolicerCounter::default(); 3],
        }
    }

    /// Tokens in bytes (first bucket, second bucket).
    pub fn tokens(&self) -> (u64, u64) {
        (self.tokens1 / UNITS_PER_BYTE, self.tokens2 / UNITS_PER_BYTE)
    }
}

/// A policer whose metering reads and writes one cache line: the buckets, their clock, the
/// rates and sizes in the 32-bit units they are configured in (kbps, bytes: both fit below
/// [`MAX_RATE_KBPS`] and [`MAX_BURST_BYTES`], multiplied out per packet) and the counter
/// green and yellow packets add to, in 61 bytes; the other two counters (red, and yellow with
/// `offered-total-cir`) in the second line. A [`PolicerState`] beside the 104-byte
/// [`PolicerParams`] is three lines, two of which every packet reads. It colours and counts
/// every packet exactly as they do (the same code: [`meter`]), for the service stage, whose
/// policers are a random one of thousands per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct LinePolicer {
    tokens1: u64,
    tokens2: u64,
    last_ns: u64,
    /// Counter 0 of the three ([`counter_of`]): forwarded, or green.
    first: PolicerCounter,
    rate1_kbps: u32,
    size1_bytes: u32,
    rate2_kbps: u32,
    size2_bytes: u32,
    offset: i16,
    kind: Kind,
    colour_aware: bool,
    stat_mode: StatMode,
    /// Counters 1 and 2.
    more: [PolicerCounter; 2],
}

const _: () = assert!(std::mem::offset_of!(LinePolicer, stat_mode) < 64);
const _: () = assert!(std::mem::offset_of!(LinePolicer, more) == 64);

impl LinePolicer {
    /// A policer of `params` with both buckets full at `now_ns` and zero counters.
    pub fn new(params: &PolicerParams, now_ns: u64) -> Self {
        let mut policer = Self {
            tokens1: params.size1,
            tokens2: params.size2,
            last_ns: now_ns,
            first: PolicerCounter::default(),
            rate1_kbps: 0,
            size1_bytes: 0,
            rate2_kbps: 0,
            size2_bytes: 0,
            offset: 0,
            kind: params.kind,
            colour_aware: false,
            stat_mode: StatMode::NoStats,
            more: [PolicerCounter::default(); 2],
        };
        policer.set_params(params);
        policer
    }

    /// Takes `params`' rates, sizes and modes. A validated rate is a whole number of kbps
    /// (`check_rate`) and a size a whole number of bytes, each within 32 bits, so the
    /// divisions are exact (a test checks [`Self::rates`] against [`PolicerParams::rates`]).
    fn set_params(&mut self, params: &PolicerParams) {
        let narrow = |value: u64, unit: u64| u32::try_from(value / unit).unwrap_or(u32::MAX);
        self.rate1_kbps = narrow(params.rate1, KBPS);
        self.size1_bytes = narrow(params.size1, UNITS_PER_BYTE);
        self.rate2_kbps = narrow(params.rate2, KBPS);
        self.size2_bytes = narrow(params.size2, UNITS_PER_BYTE);
        self.offset = params.offset;
        self.kind = params.kind;
        self.colour_aware = params.colour_aware;
        self.stat_mode = params.stat_mode;
    }

    /// What metering reads, multiplied out.
    #[inline(always)]
    fn rates(&self) -> MeterRates {
        MeterRates {
            kind: self.kind,
            rate1: u64::from(self.rate1_kbps) * KBPS,
            size1: u64::from(self.size1_bytes) * UNITS_PER_BYTE,
            rate2: u64::from(self.rate2_kbps) * KBPS,
            size2: u64::from(self.size2_bytes) * UNITS_PER_BYTE,
            offset: self.offset,
            colour_aware: self.colour_aware,
        }
    }

    /// [`PolicerState::police`]: meters a packet of `len` bytes arriving at `now_ns` with
    /// colour `arrival`, counts it, and returns its colour.
    #[inline]
    pub fn police(&mut self, now_ns: u64, len: usize, arrival: Colour) -> Colour {
        let rates = self.rates();
        let buckets = [&mut self.tokens1, &mut self.tokens2, &mut self.last_ns];
        let (colour, octets) = meter(buckets, &rates, now_ns, len, arrival);
        match counter_of(self.stat_mode, colour) {
            Some(0) => self.first.add(octets),
            Some(counter) => {
                if let Some(c) = self.more.get_mut(counter - 1) {
                    c.add(octets);
                }
            }
            None => {}
        }
        colour
    }

    /// [`PolicerState::reconfigure`]: takes `params`, keeping the counters and the tokens
    /// (capped to the new bucket sizes).
    pub fn reconfigure(&mut self, params: &PolicerParams) {
        self.set_params(params);
        self.tokens1 = self.tokens1.min(params.size1);
        self.tokens2 = self.tokens2.min(params.size2);
    }

    /// Counters as the stat mode reports them.
    pub fn stats(&self) -> PolicerStats {
        let [second, third] = self.more;
        stats_of([self.first, second, third], self.stat_mode)
    }

    /// Zeroes the counters (the buckets are left as they are).
    pub fn clear(&mut self) {
        self.first = PolicerCounter::default();
        self.more = [PolicerCounter::default(); 2];
    }
}

/// A colour-blind RFC 2698 trTCM's parameters in 20 bytes, for a caller that keeps each
/// policer's parameters beside its buckets and counters in one cache line: the PCC stage, whose
/// policed packet then reads one line per rule instead of that line and the one or two of a
/// [`PolicerParams`] (104 bytes: the metering fields, then the configuration for display).
///
/// The rates are kept in kbps and the bursts in bytes, as configured (both fit 32 bits below
/// [`MAX_RATE_KBPS`] and [`MAX_BURST_BYTES`]), and multiplied out per packet (four
/// multiplications, against a cache miss): it colours every packet exactly as a
/// [`PolicerParams`] and [`PolicerState`] of the same configuration do. The buckets are the
/// caller's, as [`PolicerState::buckets`] gives them: `[peak tokens, committed tokens, time
/// last filled]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CompactTrTcm {
    pir_kbps: u32,
    /// Peak bucket size, bytes.
    mbs: u32,
    cir_kbps: u32,
    /// Committed bucket size, bytes.
    cbs: u32,
    offset: i16,
}

// The validated limits fit the 32-bit fields, so the conversions in `CompactTrTcm::new` are
// lossless.
const _: () = assert!(MAX_RATE_KBPS <= u32::MAX as u64);
const _: () = assert!(MAX_BURST_BYTES <= u32::MAX as u64);

impl CompactTrTcm {
    /// Validates a trTCM's rates and bursts (`None`: [`default_burst`]) as
    /// [`PolicerParams::new`] does, with `packet_byte_offset` added to each packet's length.
    pub fn new(
        pir_kbps: u64,
        mbs: Option<u64>,
        cir_kbps: u64,
        cbs: Option<u64>,
        packet_byte_offset: i16,
    ) -> Result<Self, PolicerError> {
        let [_, peak, _, committed] = check_trtcm(pir_kbps, mbs, cir_kbps, cbs)?;
        Ok(Self {
            pir_kbps: pir_kbps as u32,
            mbs: (peak / UNITS_PER_BYTE) as u32,
            cir_kbps: cir_kbps as u32,
            cbs: (committed / UNITS_PER_BYTE) as u32,
            offset: packet_byte_offset,
        })
    }

    /// Peak and committed bucket sizes, token units.
    #[inline(always)]
    fn sizes(&self) -> (u64, u64) {
        (
            u64::from(self.mbs) * UNITS_PER_BYTE,
            u64::from(self.cbs) * UNITS_PER_BYTE,
        )
    }

    /// Full buckets at `now_ns` (RFC 2698 §3).
    pub fn full(&self, now_ns: u64) -> [u64; 3] {
        let (peak, committed) = self.sizes();
        [peak, committed, now_ns]
    }

    /// Meters a packet of `len` bytes (before `packet-byte-offset`) arriving at `now_ns`
    /// against `buckets`, which it updates, and returns its colour.
    #[inline(always)]
    pub fn police(&self, buckets: &mut [u64; 3], now_ns: u64, len: usize) -> Colour {
        let [peak, committed, last_ns] = buckets;
        let elapsed = now_ns.saturating_sub(*last_ns);
        if elapsed != 0 {
            let (peak_size, committed_size) = self.sizes();
            *last_ns = now_ns;
            // 1 kbps = 125 bytes per second, exactly (as `check_rate`).
            *peak = refill(*peak, elapsed, u64::from(self.pir_kbps) * 125, peak_size);
            *committed = refill(
                *committed,
                elapsed,
                u64::from(self.cir_kbps) * 125,
                committed_size,
            );
        }
        let cost = metered_octets(len, self.offset) * UNITS_PER_BYTE;
        trtcm_colour(peak, committed, cost, false)
    }

    /// `buckets` capped to these bucket sizes, as [`PolicerState::reconfigure`] does: a
    /// lowered rate grants no burst.
    pub fn reconfigure(&self, [peak, committed, last_ns]: [u64; 3]) -> [u64; 3] {
        let (peak_size, committed_size) = self.sizes();
        [peak.min(peak_size), committed.min(committed_size), last_ns]
    }
}

/// A packets-per-second limiter (one bucket counting packets), for the per-SAP limit on
/// broadcast, unknown-unicast and multicast frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RateLimit {
    /// Packets per second (≥ 1).
    pub pps: u32,
    /// Burst in packets (≥ 1).
    pub burst: u32,
}

/// State of a [`RateLimit`]: tokens in units of 10⁻⁹ packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitState {
    tokens: u64,
    last_ns: u64,
}

impl RateLimitState {
    /// A full bucket at `now_ns`.
    pub fn full(limit: &RateLimit, now_ns: u64) -> Self {
        Self {
            tokens: u64::from(limit.burst) * UNITS_PER_BYTE,
            last_ns: now_ns,
        }
    }

    /// Takes one packet's token; false when the limit is exceeded.
    #[inline]
    pub fn admit(&mut self, limit: &RateLimit, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        if elapsed > 0 {
            self.last_ns = now_ns;
            self.tokens = refill(
                self.tokens,
                elapsed,
                u64::from(limit.pps),
                u64::from(limit.burst) * UNITS_PER_BYTE,
            );
        }
        if self.tokens >= UNITS_PER_BYTE {
            self.tokens -= UNITS_PER_BYTE;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn trtcm(pir_kbps: u64, cir_kbps: u64) -> PolicerParams {
        PolicerParams::new(PolicerConfig {
            meter: Meter::TrTcm {
                pir_kbps,
                mbs: None,
                cir_kbps,
                cbs: None,
            },
            colour_mode: ColourMode::Blind,
            packet_byte_offset: 0,
            stat_mode: StatMode::OfferedTotalCir,
        })
        .unwrap()
    }

    /// Offers `len`-byte packets at `offered_kbps` for `seconds` of simulated time; returns
    /// (packets offered, packets per colour).
    fn offer(params: &PolicerParams, offered_kbps: u64, len: u64, seconds: u64) -> (u64, [u64; 3]) {
        let mut state = params.initial_state(0);
        let interval_ns = len * 8 * 1_000_000 / offered_kbps; // ns between packets
        let packets = seconds * SEC / interval_ns;
        let mut colours = [0u64; 3];
        for i in 0..packets {
            let colour = state.police(params, i * interval_ns, len as usize, Colour::Green);
            colours[colour as usize] += 1;
        }
        (packets, colours)
    }

    #[test]
    fn no_loss_at_95_percent_of_pir() {
        let params = trtcm(10_000, 5_000);
        let (offered, colours) = offer(&params, 9_500, 1_000, 20);
        assert_eq!(colours[Colour::Red as usize], 0, "{colours:?} of {offered}");
        assert!(colours[Colour::Yellow as usize] > 0);
    }

    #[test]
    fn loss_at_twice_pir_is_half_within_two_percent() {
        for (len, pir) in [(64u64, 1_000u64), (1_500, 100_000), (512, 25_000)] {
            let params = trtcm(pir, pir / 2);
            let (offered, colours) = offer(&params, pir * 2, len, 30);
            let loss = colours[Colour::Red as usize] as f64 / offered as f64;
            assert!((loss - 0.5).abs() <= 0.02, "len {len}: loss {loss}");
            // Green is the committed share: CIR / offered = 1/4 of the packets.
            let green = colours[Colour::Green as usize] as f64 / offered as f64;
            assert!((green - 0.25).abs() <= 0.02, "len {len}: green {green}");
        }
    }

    #[test]
    fn tokens_do_not_drift_over_a_long_run() {
        // 1 kbps = 125 bytes/s: after a drained bucket, exactly 125 bytes per second come back,
        // however the time is cut.
        let params = PolicerParams::new(PolicerConfig {
            meter: Meter::SrTcm {
                cir_kbps: 1,
                cbs: Some(MAX_BURST_BYTES),
                ebs: Some(0),
            },
            colour_mode: ColourMode::Blind,
            packet_byte_offset: 0,
            stat_mode: StatMode::Minimal,
        })
        .unwrap();
        let mut state = params.initial_state(0);
        assert_eq!(
            state.police(&params, 0, MAX_BURST_BYTES as usize, Colour::Green),
            Colour::Green
        );
        assert_eq!(state.tokens(), (0, 0));
        // 10⁶ steps of 7 ns, 13 ns, ~1 ms, ~1 s (odd steps that never divide evenly): about
        // 31 MB of tokens, below the bucket size, so nothing is capped.
        let mut now = 0u64;
        let steps = [7u64, 13, 1_000_003, 999_999_989];
        for i in 0..1_000_000u64 {
            now += steps[(i % 4) as usize];
            state.advance(&params, now);
        }
        let expected_units = u128::from(now) * 125;
        assert_eq!(u128::from(state.tokens1), expected_units);
    }

    #[test]
    fn srtcm_overflows_into_the_excess_bucket() {
        let params = PolicerParams::new(PolicerConfig {
            meter: Meter::SrTcm {
                cir_kbps: 8, // 1000 bytes/s
                cbs: Some(1_000),
                ebs: Some(2_000),
            },
            colour_mode: ColourMode::Blind,
            packet_byte_offset: 0,
            stat_mode: StatMode::OfferedTotalCir,
        })
        .unwrap();
        let mut state = params.initial_state(0);
        assert_eq!(
            state.police(&params, 0, 1_000, Colour::Green),
            Colour::Green
        );
        assert_eq!(
            state.police(&params, 0, 1_000, Colour::Green),
            Colour::Yellow
        );
        assert_eq!(
            state.police(&params, 0, 1_000, Colour::Green),
            Colour::Yellow
        );
        assert_eq!(state.police(&params, 0, 1, Colour::Green), Colour::Red);
        // 3 s: 1000 bytes fill C, the next 2000 overflow into E.
        state.advance(&params, 3 * SEC);
        assert_eq!(state.tokens(), (1_000, 2_000));
        let stats = state.stats(&params);
        assert_eq!(stats.forwarded.unwrap().packets, 3);
        assert_eq!(stats.dropped.unwrap().octets, 1);
    }

    #[test]
    fn rfc4115_excess_bucket_is_independent() {
        let params = PolicerParams::new(PolicerConfig {
            meter: Meter::Rfc4115 {
                cir_kbps: 8,
                cbs: Some(1_000),
                eir_kbps: 16,
                ebs: Some(1_000),
            },
            colour_mode: ColourMode::Aware,
            packet_byte_offset: -100,
            stat_mode: StatMode::OfferedTotalCir,
        })
        .unwrap();
        let mut state = params.initial_state(0);
        // Offset: 1100 bytes count as 1000.
        assert_eq!(
            state.police(&params, 0, 1_100, Colour::Green),
            Colour::Green
        );
        // Colour-aware: a yellow arrival never takes committed tokens.
        assert_eq!(
            state.police(&params, 0, 1_100, Colour::Yellow),
            Colour::Yellow
        );
        assert_eq!(state.police(&params, 0, 1_100, Colour::Green), Colour::Red);
        assert_eq!(state.police(&params, 0, 10, Colour::Red), Colour::Red);
        // 0.5 s: C gets 500 bytes, E gets 1000 (capped).
        state.advance(&params, SEC / 2);
        assert_eq!(state.tokens(), (500, 1_000));
        assert_eq!(
            state.police(&params, SEC / 2, 100, Colour::Green),
            Colour::Green
        );
        // A negative offset never makes a packet cost less than nothing.
        assert_eq!(
            state.police(&params, SEC / 2, 50, Colour::Green),
            Colour::Green
        );
        assert_eq!(state.tokens(), (500, 1_000));
        let per = state.stats(&params).per_colour.unwrap();
        assert_eq!(per.map(|c| c.packets), [3, 1, 2]);
    }

    #[test]
    fn trtcm_colour_aware_yellow_stays_yellow() {
        let mut params = trtcm(8, 8);
        params.colour_aware = true;
        let mut state = params.initial_state(0);
        assert_eq!(
            state.police(&params, 0, 100, Colour::Yellow),
            Colour::Yellow
        );
        assert_eq!(state.police(&params, 0, 100, Colour::Green), Colour::Green);
    }

    #[test]
    fn reconfigure_keeps_counters_and_caps_tokens() {
        let params = trtcm(80_000, 8_000);
        let mut state = params.initial_state(0);
        state.police(&params, 0, 1_000, Colour::Green);
        let smaller = PolicerParams::new(PolicerConfig {
            meter: Meter::TrTcm {
                pir_kbps: 800,
                mbs: Some(2_000),
                cir_kbps: 0,
                cbs: None,
            },
            ..*params.config()
        })
        .unwrap();
        state.reconfigure(&smaller);
        assert_eq!(state.tokens(), (2_000, 0));
        assert_eq!(state.stats(&smaller).forwarded.unwrap().packets, 1);
        // CIR 0: never green.
        assert_eq!(
            state.police(&smaller, 0, 100, Colour::Green),
            Colour::Yellow
        );
        state.clear();
        assert_eq!(state.stats(&smaller).forwarded.unwrap().packets, 0);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let base = PolicerConfig {
            meter: Meter::TrTcm {
                pir_kbps: 1_000,
                mbs: None,
                cir_kbps: 2_000,
                cbs: None,
            },
            colour_mode: ColourMode::Blind,
            packet_byte_offset: 0,
            stat_mode: StatMode::Minimal,
        };
        assert_eq!(
            PolicerParams::new(base).unwrap_err(),
            PolicerError::CirAbovePir {
                cir: 2_000,
                pir: 1_000
            }
        );
        let zero = PolicerConfig {
            meter: Meter::SrTcm {
                cir_kbps: 0,
                cbs: None,
                ebs: None,
            },
            ..base
        };
        assert!(matches!(
            PolicerParams::new(zero),
            Err(PolicerError::Rate { which: "CIR", .. })
        ));
        let huge = PolicerConfig {
            meter: Meter::SrTcm {
                cir_kbps: 10,
                cbs: Some(MAX_BURST_BYTES + 1),
                ebs: None,
            },
            ..base
        };
        assert!(matches!(
            PolicerParams::new(huge),
            Err(PolicerError::Burst { which: "CBS", .. })
        ));
    }

    #[test]
    fn defaults_follow_ten_milliseconds_of_rate() {
        assert_eq!(default_burst(0), 0);
        assert_eq!(default_burst(100), MIN_DEFAULT_BURST_BYTES);
        assert_eq!(default_burst(100_000), 125_000);
        let params = trtcm(100_000, 10_000);
        assert_eq!(params.bursts(), (125_000, 12_500));
    }

    proptest::proptest! {
        /// The compact trTCM colours every packet of a random sequence (sizes around the
        /// bursts, gaps from a clock step backwards to seconds) as the reference
        /// `PolicerParams` + `PolicerState` of the same configuration, with equal buckets
        /// after each packet and after a reconfiguration.
        #[test]
        fn compact_trtcm_meters_as_the_reference(
            pir_kbps in 1u64..=2_000_000,
            cir_percent in 0u64..=100,
            mbs in proptest::option::of(0u64..=50_000),
            cbs in proptest::option::of(0u64..=50_000),
            offset in -200i16..=200,
            start in 0u64..=1_000_000_000_000,
            packets in proptest::collection::vec((-1_000i64..=200_000_000, 0usize..=9_000), 1..200),
            lowered in proptest::option::of((1u64..=2_000_000, 0u64..=50_000)),
        ) {
            let cir_kbps = pir_kbps * cir_percent / 100;
            let config = |pir_kbps, mbs, cir_kbps, cbs| PolicerConfig {
                meter: Meter::TrTcm { pir_kbps, mbs, cir_kbps, cbs },
                colour_mode: ColourMode::Blind,
                packet_byte_offset: offset,
                stat_mode: StatMode::Minimal,
            };
            let params = PolicerParams::new(config(pir_kbps, mbs, cir_kbps, cbs)).unwrap();
            let compact = CompactTrTcm::new(pir_kbps, mbs, cir_kbps, cbs, offset).unwrap();
            let mut reference = params.initial_state(start);
            let mut buckets = compact.full(start);
            proptest::prop_assert_eq!(buckets, reference.buckets());
            let mut now = start;
            for (gap, len) in packets {
                now = now.saturating_add_signed(gap);
                let expected = reference.police(&params, now, len, Colour::Green);
                proptest::prop_assert_eq!(compact.police(&mut buckets, now, len), expected);
                proptest::prop_assert_eq!(buckets, reference.buckets());
            }
            if let Some((pir_kbps, mbs)) = lowered {
                let params = PolicerParams::new(config(pir_kbps, Some(mbs), 0, None)).unwrap();
                let compact = CompactTrTcm::new(pir_kbps, Some(mbs), 0, None, offset).unwrap();
                reference.reconfigure(&params);
                proptest::prop_assert_eq!(compact.reconfigure(buckets), reference.buckets());
            }
        }
    }

    /// Any valid configuration: each meter, colour mode and stat mode, rates and bursts over
    /// the whole accepted range (the edges often), offsets either way.
    fn arb_config() -> impl proptest::strategy::Strategy<Value = PolicerConfig> {
        use proptest::prelude::*;
        let rate = prop_oneof![1u64..=2_000_000, Just(MAX_RATE_KBPS), 1u64..=MAX_RATE_KBPS];
        let burst = proptest::option::of(prop_oneof![0u64..=50_000, Just(MAX_BURST_BYTES)]);
        let meter = prop_oneof![
            (rate.clone(), burst.clone(), burst.clone())
                .prop_map(|(cir_kbps, cbs, ebs)| Meter::SrTcm { cir_kbps, cbs, ebs }),
            (rate.clone(), 0u64..=100, burst.clone(), burst.clone()).prop_map(
                |(pir_kbps, cir_percent, mbs, cbs)| Meter::TrTcm {
                    pir_kbps,
                    mbs,
                    cir_kbps: pir_kbps / 100 * cir_percent,
                    cbs,
                }
            ),
            (rate.clone(), burst.clone(), rate, burst).prop_map(
                |(cir_kbps, cbs, eir_kbps, ebs)| Meter::Rfc4115 {
                    cir_kbps,
                    cbs,
                    eir_kbps,
                    ebs,
                }
            ),
        ];
        (
            meter,
            prop_oneof![Just(ColourMode::Blind), Just(ColourMode::Aware)],
            -200i16..=200,
            prop_oneof![
                Just(StatMode::NoStats),
                Just(StatMode::Minimal),
                Just(StatMode::OfferedTotalCir)
            ],
        )
            .prop_map(|(meter, colour_mode, packet_byte_offset, stat_mode)| {
                PolicerConfig {
                    meter,
                    colour_mode,
                    packet_byte_offset,
                    stat_mode,
                }
            })
    }

    proptest::proptest! {
        /// The one-line policer colours every packet of a random sequence (any arrival colour,
        /// sizes around the bursts, gaps from a clock step backwards to seconds) as the
        /// reference `PolicerParams` + `PolicerState` of any valid configuration, and counts
        /// as it does: equal stats after each packet, after a reconfiguration to another
        /// configuration (counters and capped tokens kept) and after a clear.
        #[test]
        fn line_policer_meters_and_counts_as_the_reference(
            config in arb_config(),
            changed in arb_config(),
            start in 0u64..=1_000_000_000_000,
            packets in proptest::collection::vec(
                (-1_000i64..=200_000_000, 0usize..=9_000, 0u8..3),
                1..120,
            ),
            reconfigure_at in 0usize..120,
            clear_at in 0usize..200,
        ) {
            let colour = |c: u8| match c {
                0 => Colour::Green,
                1 => Colour::Yellow,
                _ => Colour::Red,
            };
            let mut params = PolicerParams::new(config).unwrap();
            let changed = PolicerParams::new(changed).unwrap();
            let mut reference = params.initial_state(start);
            let mut line = LinePolicer::new(&params, start);
            proptest::prop_assert_eq!(line.rates(), params.rates());
            let mut now = start;
            for (i, (gap, len, arrival)) in packets.into_iter().enumerate() {
                if i == reconfigure_at {
                    params = changed;
                    reference.reconfigure(&params);
                    line.reconfigure(&params);
                    proptest::prop_assert_eq!(line.rates(), params.rates());
                }
                if i == clear_at {
                    reference.clear();
                    line.clear();
                }
                now = now.saturating_add_signed(gap);
                let expected = reference.police(&params, now, len, colour(arrival));
                proptest::prop_assert_eq!(line.police(now, len, colour(arrival)), expected);
                proptest::prop_assert_eq!(
                    [line.tokens1, line.tokens2, line.last_ns],
                    reference.buckets()
                );
                proptest::prop_assert_eq!(line.stats(), reference.stats(&params));
            }
        }
    }

    #[test]
    fn compact_trtcm_refuses_what_the_reference_refuses() {
        for (pir, mbs, cir, cbs) in [
            (1_000, None, 2_000, None),
            (0, None, 0, None),
            (MAX_RATE_KBPS + 1, None, 0, None),
            (1_000, Some(MAX_BURST_BYTES + 1), 0, None),
            (1_000, None, 500, Some(MAX_BURST_BYTES + 1)),
        ] {
            let reference = PolicerParams::new(PolicerConfig {
                meter: Meter::TrTcm {
                    pir_kbps: pir,
                    mbs,
                    cir_kbps: cir,
                    cbs,
                },
                colour_mode: ColourMode::Blind,
                packet_byte_offset: 0,
                stat_mode: StatMode::Minimal,
            });
            assert_eq!(
                CompactTrTcm::new(pir, mbs, cir, cbs, 0).unwrap_err(),
                reference.unwrap_err()
            );
        }
        // The largest accepted values fit.
        let largest = CompactTrTcm::new(
            MAX_RATE_KBPS,
            Some(MAX_BURST_BYTES),
            MAX_RATE_KBPS,
            Some(MAX_BURST_BYTES),
            0,
        )
        .unwrap();
        let full = MAX_BURST_BYTES * UNITS_PER_BYTE;
        assert_eq!(largest.full(7), [full, full, 7]);
    }

    #[test]
    fn rate_limit_admits_burst_then_rate() {
        let limit = RateLimit { pps: 10, burst: 2 };
        let mut state = RateLimitState::full(&limit, 0);
        assert!(state.admit(&limit, 0));
        assert!(state.admit(&limit, 0));
        assert!(!state.admit(&limit, 0));
        assert!(state.admit(&limit, SEC / 10));
        assert!(!state.admit(&limit, SEC / 10));
    }
}

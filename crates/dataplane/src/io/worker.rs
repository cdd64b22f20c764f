//! The worker threads: each owns a [`Pipeline`] of its own (stages, tables, counters) and the
//! sockets it reads, polls them, runs its pipeline over each batch, sends what it says to send
//! and hands IP packets to the kernel. No lock is shared on the packet path.
//!
//! **Ports.** A port is read through AF_PACKET (a TPACKET_V3 receive ring per worker, joined
//! in a `PACKET_FANOUT_CPU` group when there are several workers), through AF_XDP (brasa's XDP
//! program redirects the port's frames into one AF_XDP socket per receive queue; queue `i` of
//! the port's list is served by worker `i % workers`, pinned with [`Tuning::cpus`]), or, for
//! TAP devices added at run time ([`Handle::add_tap_port`]), by reading the device. Frames
//! leave through the worker's own AF_XDP socket on the port when it has one, a TPACKET_V2
//! transmit ring otherwise (`sendmmsg` for layer-3 devices), or a write to the TAP. An AF_XDP
//! port whose program cannot be attached falls back to AF_PACKET, with a log line saying why.
//!
//! **Tables across workers.** The control side changes the CAFE tables of every worker's
//! pipeline the same way ([`Handle::call`], between two of each worker's batches; no worker
//! waits for another) and sums their counters on read; ports are added in the same order
//! everywhere, so a port has the same id in every pipeline. Intercept filters idle on every
//! worker are expired by a control thread that merges their activity, so a filter is never
//! expired by one worker while another still sees its traffic. Stages whose state must not
//! diverge (the service stage: MAC learning, policers, punt queue) are shared by all pipelines
//! ([`crate::pipeline::Shared`]), one lock per batch. Control jobs that touch such a stage run
//! on the first worker ([`Handle::submit`]).
//!
//! A transmit ring checks frame lengths against the interface's MTU itself (the kernel does
//! not, for ring frames with a virtio-net header), and so does an AF_XDP socket; each worker
//! follows MTU changes from the kernel's link notifications ([`LinkEvents`]), read before
//! every batch that transmits. If the socket cannot be opened, the MTUs are re-read every
//! tick instead. Frames the kernel dropped because a receive ring was full (or an AF_XDP
//! socket's fill ring was empty) are counted per port, read at least every 100 ms.

use super::afpacket::{RingConfig, RxRing, TxRing, TxRingConfig, TxSocket};
use super::netdev::{self, NetDev};
use super::netlink::LinkEvents;
use super::tap::Tap;
use super::tun::Tun;
use super::xdp::netlink::AddressEvents;
use super::xdp::xsk::{Xsk, XskConfig, XskStats, XskTarget};
use super::xdp::{XdpMode, XdpModeRequest, XdpPort};
use super::{cvt, IoError};
use crate::cafe::intercept::FilterState;
use crate::cafe::InterceptStage;
use crate::packet::BUFFER_SIZE;
use crate::pipeline::{
    pkt_type, Batch, DropReason, IpHandoff, LinkKind, PacketMeta, Pipeline, Port, PortError,
    PortId, Stage, Verdict,
};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a configured interface is read and written.
#[derive(Debug, Clone, Default)]
pub enum PortIo {
    /// AF_PACKET rings (the default, and the fallback of AF_XDP).
    #[default]
    AfPacket,
    /// AF_XDP sockets fed by brasa's XDP program.
    AfXdp(XdpPortConfig),
}

/// An AF_XDP port's settings.
#[derive(Debug, Clone, Default)]
pub struct XdpPortConfig {
    /// Receive queues to serve (empty: every queue the interface has).
    pub queues: Vec<u32>,
    /// Native, generic, or native with generic as fallback.
    pub mode: XdpModeRequest,
    /// Memory and rings of each socket.
    pub umem: XskConfig,
    /// Every frame is the data plane's (an access port whose frames all belong to SAPs);
    /// otherwise only COMET and transit IP to the port's MAC are.
    pub redirect_all: bool,
}

/// One interface the data plane owns.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// Interface name.
    pub name: String,
    /// Fate of IP packets no stage claims.
    pub ip_handoff: IpHandoff,
    /// How frames are read and written.
    pub io: PortIo,
}

impl PortConfig {
    /// An AF_PACKET port.
    pub fn af_packet(name: &str, ip_handoff: IpHandoff) -> Self {
        Self {
            name: name.to_string(),
            ip_handoff,
            io: PortIo::AfPacket,
        }
    }
}

/// What the worker runs on.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The interfaces.
    pub ports: Vec<PortConfig>,
    /// TUN device for packets handed to the kernel (`None`: such packets are dropped and
    /// counted as `kernel_error`).
    pub tun: Option<String>,
    /// Receive ring size.
    pub ring: RingConfig,
    /// Packets per batch.
    pub batch_size: usize,
    /// Period of the stages' ticks (filter expiry).
    pub tick_interval: Duration,
}

/// Makes the stages of one worker's pipeline (called once per worker).
#[derive(Clone)]
pub struct StageFactory(Arc<dyn Fn() -> Vec<Box<dyn Stage>> + Send + Sync>);

impl StageFactory {
    /// Stages made by `make`; a stage shared by every worker is a clone of one
    /// [`crate::pipeline::Shared`].
    pub fn new(make: impl Fn() -> Vec<Box<dyn Stage>> + Send + Sync + 'static) -> Self {
        Self(Arc::new(make))
    }
}

impl Default for StageFactory {
    /// The CAFE pipeline.
    fn default() -> Self {
        Self::new(crate::stages::cafe_stages)
    }
}

impl std::fmt::Debug for StageFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StageFactory")
    }
}

/// Settings of the workers beyond [`WorkerConfig`] (which the daemon builds from its
/// configuration file). [`start`] uses the defaults: one worker, transmit rings, not pinned,
/// the CAFE stages.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Worker threads (0 counts as 1), each with its own pipeline.
    pub workers: usize,
    /// Transmit on AF_PACKET Ethernet ports with `sendmmsg` instead of a transmit ring (for
    /// comparison; layer-3 devices always use `sendmmsg`).
    pub sendmmsg: bool,
    /// Size of each transmit ring.
    pub tx_ring: TxRingConfig,
    /// Pin worker `i` to CPU `cpus[i % cpus.len()]` (`sched_setaffinity`); empty: not pinned.
    pub cpus: Vec<usize>,
    /// The stages of each worker's pipeline.
    pub stages: StageFactory,
}

/// How a port is read, as `brasa show dataplane ports` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoKind {
    /// AF_PACKET rings.
    AfPacket,
    /// AF_XDP sockets.
    AfXdp,
    /// A TAP device.
    Tap,
}

/// One port as `brasa show dataplane ports` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortInfo {
    /// Port id.
    pub id: PortId,
    /// Interface name.
    pub name: String,
    /// How it is read.
    pub io: IoKind,
    /// AF_XDP: the receive queues served, with the worker serving each.
    pub queues: Vec<(u32, usize)>,
    /// AF_XDP: where the program runs.
    pub xdp_mode: Option<XdpMode>,
    /// AF_XDP: zero-copy (true) or copy mode.
    pub zero_copy: Option<bool>,
    /// Why AF_XDP was asked for and AF_PACKET is used.
    pub fallback: Option<String>,
}

/// A control operation run on the first worker between batches, with its pipeline and the
/// workers' clock (ns).
pub type Job = Box<dyn FnOnce(&mut Pipeline, u64) + Send>;

/// What a worker runs between batches.
type WorkerJob = Box<dyn FnOnce(&mut Worker) + Send>;

/// The workers have stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the data plane worker has stopped")]
pub struct WorkerGone;

impl From<WorkerGone> for IoError {
    fn from(_: WorkerGone) -> Self {
        IoError::Stopped
    }
}

/// One worker's mailbox.
#[derive(Clone)]
struct Link {
    jobs: mpsc::Sender<WorkerJob>,
    wake: Arc<OwnedFd>,
}

/// Sends jobs to the workers, adds and removes ports, and stops them. Cloneable.
#[derive(Clone)]
pub struct Handle {
    links: Vec<Link>,
    stop: Arc<AtomicBool>,
    /// Written on stop and never read, so it stays readable and wakes every worker.
    stop_fd: Arc<OwnedFd>,
    /// The ports as shown; its lock also serialises port changes, so every worker sees them
    /// in one order.
    ports: Arc<Mutex<Vec<PortInfo>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Handle {
    /// Queues `job` for the first worker (the one that runs the jobs of stages shared by every
    /// worker) and wakes it.
    pub fn submit(&self, job: Job) -> Result<(), WorkerGone> {
        let link = self.links.first().ok_or(WorkerGone)?;
        link.jobs
            .send(Box::new(move |worker: &mut Worker| {
                let now = worker.now_ns();
                job(&mut worker.pipeline, now)
            }))
            .map_err(|_| WorkerGone)?;
        signal(&link.wake);
        Ok(())
    }

    /// Runs `f` on every worker's pipeline (between two of its batches) and returns the
    /// results in worker order; waits for all of them. For changes to tables every worker
    /// has a copy of, and for counters to sum.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Pipeline, u64) -> R + Send + Sync + 'static,
    ) -> Result<Vec<R>, WorkerGone> {
        self.on_every_worker(move |worker| {
            let now = worker.now_ns();
            f(&mut worker.pipeline, now)
        })
    }

    fn on_every_worker<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Worker) -> R + Send + Sync + 'static,
    ) -> Result<Vec<R>, WorkerGone> {
        let f = Arc::new(f);
        let (tx, rx) = mpsc::channel();
        for (index, link) in self.links.iter().enumerate() {
            let (f, tx) = (f.clone(), tx.clone());
            link.jobs
                .send(Box::new(move |worker: &mut Worker| {
                    let _ = tx.send((index, f(worker)));
                }))
                .map_err(|_| WorkerGone)?;
            signal(&link.wake);
        }
        drop(tx);
        let mut results: Vec<(usize, R)> = rx.iter().collect();
        if results.len() != self.links.len() {
            return Err(WorkerGone);
        }
        results.sort_by_key(|(index, _)| *index);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.links.len()
    }

    /// The ports, as `brasa show dataplane ports` shows them.
    pub fn ports(&self) -> Vec<PortInfo> {
        lock(&self.ports).clone()
    }

    /// Creates the TAP device `name` (not persistent: it disappears when the data plane
    /// closes it or ends) in the calling thread's network namespace and makes it a port of
    /// every worker's pipeline: frames the kernel sends out of the TAP are received like any
    /// port's, and `Verdict::Transmit(id)` writes a frame into it. Returns its port id.
    pub fn add_tap_port(&self, name: &str) -> Result<PortId, IoError> {
        let mut ports = lock(&self.ports);
        let tap = Arc::new(Tap::create(name)?);
        let dev = NetDev::lookup(name)?;
        let port = Port {
            name: name.to_string(),
            link: LinkKind::Ethernet,
            mac: dev.mac,
            ip_handoff: IpHandoff::Kernel,
        };
        let added = self.on_every_worker(move |worker| {
            let id = worker.pipeline.add_port(port.clone())?;
            worker.egress.set(id, Tx::Tap(tap.clone()));
            if usize::from(id) % worker.workers == worker.index {
                worker.taps.push((id, tap.clone()));
                worker.pollfds_changed = true;
            }
            Ok::<PortId, PortError>(id)
        })?;
        let id = match added.first() {
            Some(Ok(id)) if added.iter().all(|r| r.as_ref() == Ok(id)) => *id,
            _ => {
                // Put every worker back as it was: the ones that added it remove it.
                let owned = name.to_string();
                let _ = self.on_every_worker(move |worker| worker.remove_port(&owned));
                let err = added
                    .into_iter()
                    .find_map(Result::err)
                    .unwrap_or(PortError::TooMany);
                return Err(err.into());
            }
        };
        ports.push(PortInfo {
            id,
            name: name.to_string(),
            io: IoKind::Tap,
            queues: Vec::new(),
            xdp_mode: None,
            zero_copy: None,
            fallback: None,
        });
        Ok(id)
    }

    /// Removes the TAP port `name` from every worker and closes the device, which the kernel
    /// then deletes. Only ports added with [`Handle::add_tap_port`] can be removed.
    pub fn remove_port(&self, name: &str) -> Result<(), IoError> {
        let mut ports = lock(&self.ports);
        let Some(at) = ports.iter().position(|p| p.name == name) else {
            return Err(PortError::NotFound(name.to_string()).into());
        };
        if ports[at].io != IoKind::Tap {
            return Err(IoError::NotRemovable(name.to_string()));
        }
        let owned = name.to_string();
        let removed = self.on_every_worker(move |worker| worker.remove_port(&owned))?;
        if let Some(err) = removed.into_iter().find_map(Result::err) {
            return Err(err.into());
        }
        ports.remove(at);
        Ok(())
    }

    /// Asks the workers to stop after the current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        signal(&self.stop_fd);
        for link in &self.links {
            signal(&link.wake);
        }
    }
}

fn signal(eventfd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes to the eventfd.
    unsafe { libc::write(eventfd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
}

fn eventfd() -> Result<OwnedFd, IoError> {
    // SAFETY: eventfd(2); the descriptor is owned from here on.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) }).map_err(
        |source| IoError::Setup {
            what: "eventfd".into(),
            source,
        },
    )?;
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn clear(eventfd: &OwnedFd) {
    let mut counter = [0u8; 8];
    // SAFETY: reads the eventfd counter (non-blocking) into an 8-byte buffer.
    unsafe {
        libc::read(
            eventfd.as_raw_fd(),
            counter.as_mut_ptr().cast(),
            counter.len(),
        )
    };
}

/// How frames leave one port.
enum Tx {
    /// Ethernet: a TPACKET_V2 transmit ring.
    Ring(TxRing),
    /// Layer-3 devices (each frame needs its protocol) or no ring available: `sendmmsg`.
    Socket(TxSocket),
    /// The worker's AF_XDP socket on the port (an index into its sockets).
    Xsk(usize),
    /// A TAP device.
    Tap(Arc<Tap>),
}

impl Tx {
    fn open(name: &str, ifindex: i32, link: LinkKind, tuning: &Tuning) -> Result<Self, IoError> {
        if link == LinkKind::Ethernet && !tuning.sendmmsg {
            match TxRing::open(name, ifindex, tuning.tx_ring) {
                Ok(ring) => return Ok(Tx::Ring(ring)),
                Err(err) => {
                    tracing::warn!(%err, interface = name, "no transmit ring; sending with sendmmsg")
                }
            }
        }
        Ok(Tx::Socket(TxSocket::open(name, ifindex)?))
    }

    /// Sends the frames of `batch` for `port`; returns (accepted, attempted).
    fn send_from_batch(&mut self, batch: &Batch, port: PortId, xsks: &mut [Xsk]) -> (usize, usize) {
        match self {
            Tx::Ring(ring) => ring.send_from_batch(batch, port),
            Tx::Socket(socket) => socket.send_from_batch(batch, port),
            Tx::Xsk(index) => match xsks.get_mut(*index) {
                Some(xsk) => xsk.send_from_batch(batch, port),
                None => (0, 0),
            },
            Tx::Tap(tap) => {
                let mut counts = (0, 0);
                for (buf, meta) in batch.iter() {
                    if meta.verdict == Verdict::Transmit(port) {
                        counts.1 += 1;
                        counts.0 += usize::from(tap.write(buf.as_slice()).is_ok());
                    }
                }
                counts
            }
        }
    }

    /// Retries frames still waiting in a ring; true when some still wait.
    fn flush(&mut self, xsks: &mut [Xsk]) -> bool {
        match self {
            Tx::Ring(ring) => ring.flush(),
            Tx::Xsk(index) => xsks.get_mut(*index).is_some_and(Xsk::flush),
            Tx::Socket(_) | Tx::Tap(_) => false,
        }
    }

    fn refresh(&mut self) {
        if let Tx::Ring(ring) = self {
            if let Err(err) = ring.refresh_mtu() {
                tracing::debug!(%err, "could not read the MTU");
            }
        }
    }

    /// Takes a new MTU for the interface `ifindex`, if this transmits on it through a ring (the
    /// kernel checks what a socket sends itself).
    fn set_mtu(&mut self, ifindex: i32, mtu: u32) {
        if let Tx::Ring(ring) = self {
            if ring.ifindex() == ifindex {
                ring.set_mtu(mtu);
            }
        }
    }
}

/// How one worker's frames leave: a transmit path per port, and the link notifications that
/// keep the MTUs current.
struct Egress {
    ports: Vec<Option<Tx>>,
    /// The ports a batch transmits on (reused), so a batch costs nothing for the others: a
    /// data plane with a TAP per L3 interface has many ports.
    targets: Vec<PortId>,
    /// `None` when the notification socket could not be opened: MTUs are re-read every tick.
    links: Option<LinkEvents>,
}

impl Egress {
    fn new() -> Self {
        let links = LinkEvents::open()
            .inspect_err(|err| {
                tracing::warn!(%err, "MTU changes are followed once per expiry_interval only")
            })
            .ok();
        Self {
            ports: Vec::new(),
            targets: Vec::new(),
            links,
        }
    }

    fn set(&mut self, port: PortId, tx: Tx) {
        let index = usize::from(port);
        if self.ports.len() <= index {
            self.ports.resize_with(index + 1, || None);
        }
        self.ports[index] = Some(tx);
    }

    /// Sends the frames of `batch` that are to be transmitted; returns how many the kernel (or
    /// an MTU check) refused.
    fn send(&mut self, batch: &Batch, xsks: &mut [Xsk]) -> usize {
        self.targets.clear();
        for (_, meta) in batch.iter() {
            if let Verdict::Transmit(port) = meta.verdict {
                if !self.targets.contains(&port) {
                    self.targets.push(port);
                }
            }
        }
        if self.targets.is_empty() {
            return 0;
        }
        if let Some(links) = &mut self.links {
            follow_mtu_changes(links, &mut self.ports, xsks);
        }
        let mut refused = 0;
        for &port in &self.targets {
            match self
                .ports
                .get_mut(usize::from(port))
                .and_then(Option::as_mut)
            {
                Some(tx) => {
                    let (accepted, attempted) = tx.send_from_batch(batch, port, xsks);
                    refused += attempted - accepted;
                }
                // A port without a transmit path (the pipeline counted it as sent): refused.
                None => {
                    refused += batch
                        .iter()
                        .filter(|(_, meta)| meta.verdict == Verdict::Transmit(port))
                        .count()
                }
            }
        }
        refused
    }

    /// Retries frames still waiting in a ring; true when some still wait.
    fn flush(&mut self, xsks: &mut [Xsk]) -> bool {
        self.ports
            .iter_mut()
            .flatten()
            .fold(false, |any, tx| tx.flush(xsks) | any)
    }

    /// The periodic MTU re-read, for a worker without link notifications.
    fn tick(&mut self, xsks: &mut [Xsk]) {
        if self.links.is_none() {
            for port in self.ports.iter_mut().flatten() {
                port.refresh();
            }
            for xsk in xsks.iter_mut() {
                if let Ok(mtu) = netdev_mtu_by_index(xsk.ifindex()) {
                    xsk.set_mtu(mtu);
                }
            }
        }
    }
}

fn netdev_mtu_by_index(ifindex: i32) -> std::io::Result<u32> {
    let mut name = [0u8; libc::IFNAMSIZ];
    // SAFETY: if_indextoname writes at most IFNAMSIZ bytes into `name`.
    let found = unsafe { libc::if_indextoname(ifindex as u32, name.as_mut_ptr().cast()) };
    if found.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let name = String::from_utf8_lossy(&name[..end]).into_owned();
    netdev::mtu(&name).map_err(std::io::Error::other)
}

/// Applies the MTU changes the kernel announced since the last call to the transmit rings and
/// sockets; when notifications were lost, reads every ring's MTU again.
fn follow_mtu_changes(links: &mut LinkEvents, ports: &mut [Option<Tx>], xsks: &mut [Xsk]) {
    let applied = links.drain(|ifindex, mtu| {
        for port in ports.iter_mut().flatten() {
            port.set_mtu(ifindex, mtu);
        }
        for xsk in xsks.iter_mut().filter(|x| x.ifindex() == ifindex) {
            xsk.set_mtu(mtu);
        }
    });
    if let Err(lost) = applied {
        tracing::debug!(%lost, "reading every MTU again");
        for port in ports.iter_mut().flatten() {
            port.refresh();
        }
        for xsk in xsks.iter_mut() {
            if let Ok(mtu) = netdev_mtu_by_index(xsk.ifindex()) {
                xsk.set_mtu(mtu);
            }
        }
    }
}

/// What only the first worker has.
struct Control {
    /// Sysctls changed at start, with the values to put back when the workers stop.
    restore: Vec<(String, String)>,
    /// The other workers and the control thread, joined before the first one returns.
    helpers: Vec<std::thread::JoinHandle<()>>,
    /// The XDP programs (detached when dropped, after the sockets closed).
    xdp: Vec<XdpPort>,
    /// Address notifications, so the XDP programs leave traffic to new host addresses to the
    /// kernel.
    addresses: Option<AddressEvents>,
}

struct Worker {
    index: usize,
    workers: usize,
    pipeline: Pipeline,
    rings: Vec<RxRing>,
    xsks: Vec<Xsk>,
    /// The previous statistics of each socket, to count what they add.
    xsk_stats: Vec<XskStats>,
    /// The TAPs this worker reads.
    taps: Vec<(PortId, Arc<Tap>)>,
    egress: Egress,
    tun: Option<Arc<Tun>>,
    jobs: mpsc::Receiver<WorkerJob>,
    wake: Arc<OwnedFd>,
    control: Option<Control>,
    stop: Arc<AtomicBool>,
    stop_fd: Arc<OwnedFd>,
    batch: Batch,
    /// A TAP frame is read here, then copied into the batch.
    scratch: Vec<u8>,
    pollfds_changed: bool,
    tick_interval: Duration,
    /// The workers' common clock.
    started: Instant,
}

/// How often every worker adds its rings' kernel drop counts.
const RING_STATS_INTERVAL: Duration = Duration::from_millis(100);

/// Opens every interface, the TUN device and the rings (errors come back here, before any
/// thread starts), then starts the worker thread.
pub fn start(config: WorkerConfig) -> Result<(Handle, std::thread::JoinHandle<()>), IoError> {
    start_tuned(config, Tuning::default())
}

fn pin(thread: &std::thread::JoinHandle<()>, cpu: usize) -> Result<(), IoError> {
    use std::os::unix::thread::JoinHandleExt;
    let err = |source| IoError::Setup {
        what: format!("pinning a worker to CPU {cpu}"),
        source,
    };
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(err(std::io::Error::from(std::io::ErrorKind::InvalidInput)));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the thread has not been joined (we hold its handle), so its pthread_t is valid;
    // `set` is a valid cpu_set_t.
    let ret = unsafe {
        libc::pthread_setaffinity_np(
            thread.as_pthread_t(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        )
    };
    if ret != 0 {
        return Err(err(std::io::Error::from_raw_os_error(ret)));
    }
    Ok(())
}

fn spawn(
    name: String,
    run: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, IoError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(run)
        .map_err(|source| IoError::Setup {
            what: "worker thread".into(),
            source,
        })
}

/// What each worker gets of the ports opened at start.
#[derive(Default)]
struct WorkerIo {
    rings: Vec<RxRing>,
    xsks: Vec<Xsk>,
    egress: Option<Egress>,
}

/// The AF_XDP side of one port, opened: its program and the sockets of its queues.
struct XdpOpened {
    port: XdpPort,
    /// (queue, worker, socket)
    sockets: Vec<(u32, usize, Xsk)>,
}

fn open_xdp(
    config: &PortConfig,
    xdp: &XdpPortConfig,
    dev: &NetDev,
    id: PortId,
    workers: usize,
) -> Result<XdpOpened, IoError> {
    if dev.link != LinkKind::Ethernet {
        return Err(IoError::Setup {
            what: format!("XDP on {}", config.name),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "not an Ethernet interface",
            ),
        });
    }
    let queues: Vec<u32> = if xdp.queues.is_empty() {
        (0..netdev::rx_queues(&config.name)?).collect()
    } else {
        xdp.queues.clone()
    };
    let map_size = queues.iter().max().map_or(1, |q| q + 1);
    let port = XdpPort::attach(
        &config.name,
        dev.ifindex,
        dev.mac,
        map_size,
        xdp.redirect_all,
        xdp.mode,
    )?;
    let mtu = netdev::mtu(&config.name)?;
    let mut sockets = Vec::new();
    for (position, &queue) in queues.iter().enumerate() {
        let xsk = Xsk::open(
            &config.name,
            XskTarget {
                ifindex: dev.ifindex,
                queue,
                port: id,
                mac: dev.mac,
                mtu,
            },
            xdp.umem,
        )?;
        port.register(queue, xsk.raw_fd())
            .map_err(|source| IoError::Setup {
                what: format!("XDP on {}: socket map", config.name),
                source,
            })?;
        sockets.push((queue, position % workers, xsk));
    }
    Ok(XdpOpened { port, sockets })
}

/// [`start`] with [`Tuning`]. The returned thread is the first worker's; it joins the others
/// before it ends.
pub fn start_tuned(
    config: WorkerConfig,
    tuning: Tuning,
) -> Result<(Handle, std::thread::JoinHandle<()>), IoError> {
    let workers = tuning.workers.max(1);
    let mut ports = Vec::new();
    let mut infos = Vec::new();
    let mut io: Vec<WorkerIo> = (0..workers).map(|_| WorkerIo::default()).collect();
    // Subscribed to link notifications before any MTU is read, so no change falls in between.
    for worker in io.iter_mut() {
        worker.egress = Some(Egress::new());
    }
    let mut restore = Vec::new();
    let mut xdp_ports = Vec::new();
    for (index, port) in config.ports.iter().enumerate() {
        let dev = NetDev::lookup(&port.name)?;
        let id = PortId::try_from(index).map_err(|_| IoError::Setup {
            what: "too many interfaces".into(),
            source: std::io::Error::other("at most 65535"),
        })?;
        if port.ip_handoff == IpHandoff::Inject {
            // The data plane is this port's only IP path: the kernel must not forward its own copy.
            let path = format!("ipv4/conf/{}/forwarding", port.name);
            if let Ok(previous) = std::fs::read_to_string(format!("/proc/sys/net/{path}")) {
                restore.push((path.clone(), previous.trim().to_string()));
            }
            netdev::write_net_sysctl(&path, "0")?;
        }
        let link = dev.link;
        let mut info = PortInfo {
            id,
            name: port.name.clone(),
            io: IoKind::AfPacket,
            queues: Vec::new(),
            xdp_mode: None,
            zero_copy: None,
            fallback: None,
        };
        let mut ip_handoff = port.ip_handoff;
        let xdp = match &port.io {
            PortIo::AfPacket => None,
            PortIo::AfXdp(xdp) => match open_xdp(port, xdp, &dev, id, workers) {
                Ok(opened) => Some(opened),
                Err(err) => {
                    tracing::warn!(
                        interface = %port.name,
                        %err,
                        "AF_XDP is not available on this interface; using AF_PACKET"
                    );
                    info.fallback = Some(err.to_string());
                    None
                }
            },
        };
        let mut has_xsk = vec![None; workers];
        match xdp {
            Some(XdpOpened { port: xdp, sockets }) => {
                info.io = IoKind::AfXdp;
                info.xdp_mode = Some(xdp.mode());
                info.zero_copy = sockets.first().map(|(_, _, xsk)| xsk.zero_copy());
                for (queue, worker, xsk) in sockets {
                    info.queues.push((queue, worker));
                    let worker_io = &mut io[worker];
                    if has_xsk[worker].is_none() {
                        has_xsk[worker] = Some(worker_io.xsks.len());
                    }
                    worker_io.xsks.push(xsk);
                }
                // The kernel never sees what the program redirects: unclaimed IP goes to it
                // through the TUN device.
                ip_handoff = IpHandoff::Redirected;
                xdp_ports.push(xdp);
            }
            None => {
                let mut group = None;
                for worker_io in io.iter_mut() {
                    let ring = RxRing::open(&port.name, dev.ifindex, id, config.ring)?;
                    if workers > 1 {
                        let joined = ring.join_fanout(group).map_err(|source| IoError::Setup {
                            what: format!("PACKET_FANOUT on {}", port.name),
                            source,
                        })?;
                        group = Some(joined);
                    }
                    worker_io.rings.push(ring);
                }
            }
        }
        for (worker, worker_io) in io.iter_mut().enumerate() {
            let tx = match has_xsk[worker] {
                Some(socket) => Tx::Xsk(socket),
                None => Tx::open(&port.name, dev.ifindex, link, &tuning)?,
            };
            if let Some(egress) = worker_io.egress.as_mut() {
                egress.set(id, tx);
            }
        }
        ports.push(Port {
            name: port.name.clone(),
            link,
            mac: if link == LinkKind::Ethernet {
                dev.mac
            } else {
                Default::default()
            },
            ip_handoff,
        });
        infos.push(info);
    }
    let tun = config
        .tun
        .as_deref()
        .map(Tun::open)
        .transpose()?
        .map(Arc::new);
    let addresses = if xdp_ports.is_empty() {
        None
    } else {
        AddressEvents::open()
            .inspect_err(|err| {
                tracing::warn!(%err, "host addresses added later are not followed by the XDP programs")
            })
            .ok()
    };
    let stop_fd = Arc::new(eventfd()?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut links = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..workers {
        let (tx, rx) = mpsc::channel();
        links.push(Link {
            jobs: tx,
            wake: Arc::new(eventfd()?),
        });
        receivers.push(rx);
    }
    let handle = Handle {
        links: links.clone(),
        stop: stop.clone(),
        stop_fd: stop_fd.clone(),
        ports: Arc::new(Mutex::new(infos)),
    };
    let started = Instant::now();
    let mut built = Vec::new();
    for ((index, worker_io), (jobs, link)) in io
        .into_iter()
        .enumerate()
        .zip(receivers.into_iter().zip(links))
    {
        let mut pipeline = Pipeline::new(ports.clone(), (tuning.stages.0)());
        if workers > 1 {
            if let Some(intercept) = pipeline.stage_mut::<InterceptStage>() {
                intercept.filters.set_replicated(true);
            }
        }
        let xsk_stats = vec![XskStats::default(); worker_io.xsks.len()];
        built.push(Worker {
            index,
            workers,
            pipeline,
            rings: worker_io.rings,
            xsks: worker_io.xsks,
            xsk_stats,
            taps: Vec::new(),
            egress: worker_io.egress.unwrap_or_else(Egress::new),
            tun: tun.clone(),
            jobs,
            wake: link.wake,
            control: None,
            stop: stop.clone(),
            stop_fd: stop_fd.clone(),
            batch: Batch::new(config.batch_size.max(1)),
            scratch: vec![0u8; BUFFER_SIZE],
            pollfds_changed: true,
            tick_interval: config.tick_interval,
            started,
        });
    }
    let pin_to =
        |index: usize| (!tuning.cpus.is_empty()).then(|| tuning.cpus[index % tuning.cpus.len()]);
    let stop_helpers = |helpers: Vec<std::thread::JoinHandle<()>>| {
        handle.stop();
        for helper in helpers {
            let _ = helper.join();
        }
    };
    let mut built = built.into_iter();
    let Some(mut first) = built.next() else {
        return Err(IoError::Setup {
            what: "workers".into(),
            source: std::io::Error::other("no worker"),
        });
    };
    let mut helpers = Vec::new();
    for worker in built {
        let index = worker.index;
        let started = spawn(format!("brasa-dp{index}"), move || worker.run()).and_then(|thread| {
            let pinned = pin_to(index).map_or(Ok(()), |cpu| pin(&thread, cpu));
            helpers.push(thread);
            pinned
        });
        if let Err(err) = started {
            stop_helpers(helpers);
            return Err(err);
        }
    }
    if workers > 1 {
        let control_handle = handle.clone();
        let interval = config.tick_interval;
        let thread = spawn("brasa-dp-ctl".into(), move || {
            expire_across_workers(control_handle, interval, started)
        });
        match thread {
            Ok(thread) => helpers.push(thread),
            Err(err) => {
                stop_helpers(helpers);
                return Err(err);
            }
        }
    }
    first.control = Some(Control {
        restore,
        helpers,
        xdp: xdp_ports,
        addresses,
    });
    let thread = spawn("brasa-dataplane".into(), move || first.run())?;
    if let Some(cpu) = pin_to(0) {
        if let Err(err) = pin(&thread, cpu) {
            // The first worker joins the others when it stops.
            handle.stop();
            let _ = thread.join();
            return Err(err);
        }
    }
    Ok((handle, thread))
}

/// The control thread of several workers: every `interval`, the intercept filters idle on
/// every worker are taken out of every copy and recorded once, their counters summed, on the
/// first worker (where `collect` finds them).
fn expire_across_workers(handle: Handle, interval: Duration, started: Instant) {
    while !handle.stop.load(Ordering::Acquire) {
        let mut pollfd = libc::pollfd {
            fd: handle.stop_fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = interval.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pollfd, 1, timeout) };
        if handle.stop.load(Ordering::Acquire) {
            return;
        }
        let now = started.elapsed().as_nanos() as u64;
        let Ok(activity) = handle.call(|pipeline, _| {
            pipeline
                .stage_mut::<InterceptStage>()
                .map(|stage| stage.filters.activity())
                .unwrap_or_default()
        }) else {
            return;
        };
        let mut latest: HashMap<u32, (u64, u64)> = HashMap::new();
        for (id, last, timeout) in activity.into_iter().flatten() {
            let entry = latest.entry(id).or_insert((last, timeout));
            entry.0 = entry.0.max(last);
        }
        let due: Vec<u32> = latest
            .into_iter()
            .filter(|(_, (last, timeout))| now.saturating_sub(*last) >= *timeout)
            .map(|(id, _)| id)
            .collect();
        if due.is_empty() {
            continue;
        }
        let Ok(taken) = handle.call(move |pipeline, _| {
            pipeline
                .stage_mut::<InterceptStage>()
                .map(|stage| stage.filters.take(&due))
                .unwrap_or_default()
        }) else {
            return;
        };
        let mut merged: Vec<FilterState> = Vec::new();
        for state in taken.into_iter().flatten() {
            match merged.iter_mut().find(|m| m.spec.id == state.spec.id) {
                Some(m) => m.merge(&state),
                None => merged.push(state),
            }
        }
        merged.sort_by_key(|state| state.spec.id);
        let recorded = handle.submit(Box::new(move |pipeline, _| {
            if let Some(stage) = pipeline.stage_mut::<InterceptStage>() {
                for state in merged {
                    stage.filters.record_expired(state);
                }
            }
        }));
        if recorded.is_err() {
            return;
        }
    }
}

/// Runs the pipeline over `batch`, sends and hands over what it says, and empties it.
fn flush(
    pipeline: &mut Pipeline,
    egress: &mut Egress,
    xsks: &mut [Xsk],
    tun: Option<&Tun>,
    batch: &mut Batch,
    now_ns: u64,
) {
    if batch.is_empty() {
        return;
    }
    pipeline.run(batch, now_ns);
    let tx_errors = egress.send(batch, xsks);
    let mut kernel_errors = 0;
    for (buf, meta) in batch.iter() {
        if meta.verdict != Verdict::ToKernel {
            continue;
        }
        let ok = match tun {
            Some(tun) => tun.write(buf.as_slice()).is_ok(),
            None => false,
        };
        if !ok {
            kernel_errors += 1;
        }
    }
    if tx_errors + kernel_errors > 0 {
        pipeline.count_drops(DropReason::TxError, tx_errors as u64);
        pipeline.count_drops(DropReason::KernelError, kernel_errors as u64);
    }
    batch.clear();
}

/// Where each kind of descriptor sits in a worker's poll set.
#[derive(Default)]
struct PollSet {
    fds: Vec<libc::pollfd>,
    taps: std::ops::Range<usize>,
    wake: usize,
    tun: Option<usize>,
    addresses: Option<usize>,
}

impl PollSet {
    fn readable(&self, index: usize) -> bool {
        self.fds
            .get(index)
            .is_some_and(|p| p.revents & libc::POLLIN != 0)
    }
}

impl Worker {
    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn remove_port(&mut self, name: &str) -> Result<(), PortError> {
        let id = self.pipeline.remove_port(name)?;
        if let Some(slot) = self.egress.ports.get_mut(usize::from(id)) {
            *slot = None;
        }
        self.taps.retain(|(port, _)| *port != id);
        self.pollfds_changed = true;
        Ok(())
    }

    /// Adds the frames the kernel dropped on this worker's full receive rings and sockets since
    /// the last call.
    fn count_ring_drops(&mut self) {
        for ring in &self.rings {
            if let Ok(stats) = ring.take_statistics() {
                if stats.drops > 0 {
                    self.pipeline
                        .count_rx_losses(ring.port(), u64::from(stats.drops), 0);
                }
            }
        }
        for (xsk, previous) in self.xsks.iter().zip(self.xsk_stats.iter_mut()) {
            let Ok(now) = xsk.statistics() else {
                continue;
            };
            let lost = now.rx_lost().saturating_sub(previous.rx_lost());
            let empty = now
                .rx_fill_ring_empty
                .saturating_sub(previous.rx_fill_ring_empty);
            if lost + empty > 0 {
                self.pipeline.count_rx_losses(xsk.port(), lost, empty);
            }
            *previous = now;
        }
    }

    fn poll_set(&self) -> PollSet {
        let mut set = PollSet::default();
        let mut push = |fd: i32| {
            set.fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            set.fds.len() - 1
        };
        for ring in &self.rings {
            push(ring.raw_fd());
        }
        for xsk in &self.xsks {
            push(xsk.raw_fd());
        }
        let taps_start = self.rings.len() + self.xsks.len();
        for (_, tap) in &self.taps {
            push(tap.raw_fd());
        }
        push(self.stop_fd.as_raw_fd());
        let wake = push(self.wake.as_raw_fd());
        let tun = if self.control.is_some() {
            self.tun.as_ref().map(|tun| push(tun.raw_fd()))
        } else {
            None
        };
        let addresses = self
            .control
            .as_ref()
            .and_then(|c| c.addresses.as_ref())
            .map(|a| push(a.raw_fd()));
        set.taps = taps_start..taps_start + self.taps.len();
        set.wake = wake;
        set.tun = tun;
        set.addresses = addresses;
        set
    }

    fn run(mut self) {
        let mut last_tick = Instant::now();
        let mut last_stats = Instant::now();
        let mut poll = self.poll_set();
        if self.control.is_some() {
            let stages = self.pipeline.stage_names();
            tracing::info!(
                ports = self.pipeline.ports().len(),
                workers = self.workers,
                ?stages,
                "data plane worker running"
            );
        }
        while !self.stop.load(Ordering::Acquire) {
            if self.pollfds_changed {
                poll = self.poll_set();
                self.pollfds_changed = false;
            }
            let any_ready =
                self.rings.iter().any(RxRing::has_data) || self.xsks.iter().any(Xsk::has_data);
            let (mut tun_readable, mut addresses_changed) = (false, false);
            if !any_ready {
                let unsent = self.egress.flush(&mut self.xsks);
                let timeout = if unsent {
                    1
                } else {
                    self.tick_interval
                        .min(RING_STATS_INTERVAL)
                        .as_millis()
                        .max(1) as i32
                };
                for pollfd in poll.fds.iter_mut() {
                    pollfd.revents = 0;
                }
                // SAFETY: `poll.fds` is a valid array of pollfd.
                unsafe {
                    libc::poll(
                        poll.fds.as_mut_ptr(),
                        poll.fds.len() as libc::nfds_t,
                        timeout,
                    )
                };
                tun_readable = poll.tun.is_some_and(|i| poll.readable(i));
                addresses_changed = poll.addresses.is_some_and(|i| poll.readable(i));
                if poll.readable(poll.wake) {
                    clear(&self.wake);
                }
            }
            let now = self.now_ns();
            // Busy, nothing was polled: every TAP is tried (a read of an empty one is cheap).
            self.receive(now, &poll, any_ready);
            if last_stats.elapsed() >= RING_STATS_INTERVAL {
                self.count_ring_drops();
                last_stats = Instant::now();
            }
            if tun_readable {
                // Whatever the kernel routes into the device is discarded, so it never stays
                // readable and keeps `poll` from sleeping.
                if let Some(tun) = &self.tun {
                    tun.drain();
                }
            }
            if addresses_changed {
                self.follow_addresses();
            }
            self.run_jobs();
            if last_tick.elapsed() >= self.tick_interval {
                self.egress.tick(&mut self.xsks);
                let now = self.now_ns();
                self.pipeline.tick(now);
                if self.control.is_some() {
                    if let Some(tun) = &self.tun {
                        tun.drain();
                    }
                }
                last_tick = Instant::now();
            }
        }
        // Jobs queued from now on fail at once, and those still queued are dropped with their
        // answer channels, so a caller waiting on every worker (the control thread, which this
        // worker joins below) returns instead of waiting for this one.
        drop(std::mem::replace(&mut self.jobs, mpsc::channel().1));
        // Sockets close before the programs that feed them are detached.
        self.xsks.clear();
        if let Some(control) = self.control.take() {
            for helper in control.helpers {
                let _ = helper.join();
            }
            drop(control.xdp);
            for (path, value) in &control.restore {
                if let Err(err) = netdev::write_net_sysctl(path, value) {
                    tracing::warn!(%err, "could not restore a sysctl");
                }
            }
            tracing::info!("data plane worker stopped");
        }
    }

    /// Reads every ring, socket and readable TAP, running the pipeline whenever the batch is
    /// full and once at the end.
    fn receive(&mut self, now: u64, poll: &PollSet, busy: bool) {
        let Worker {
            pipeline,
            rings,
            xsks,
            taps,
            egress,
            tun,
            batch,
            scratch,
            ..
        } = self;
        let mut oversized = 0u64;
        for ring in rings.iter_mut() {
            ring.drain(batch, &mut oversized, |full| {
                flush(pipeline, egress, xsks, tun.as_deref(), full, now)
            });
        }
        for index in 0..xsks.len() {
            while let Some(xsk) = xsks.get_mut(index) {
                xsk.receive(batch, &mut oversized);
                if !batch.is_full() {
                    break;
                }
                flush(pipeline, egress, xsks, tun.as_deref(), batch, now);
            }
        }
        for (index, (port, tap)) in taps.iter().enumerate() {
            if !busy && !poll.readable(poll.taps.start + index) {
                continue;
            }
            // At most one batch per TAP per round, so a busy TAP cannot starve the others.
            for _ in 0..batch.capacity() {
                let Some(len) = tap.read(scratch) else {
                    break;
                };
                if batch.is_full() {
                    flush(pipeline, egress, xsks, tun.as_deref(), batch, now);
                }
                let frame = scratch.get(..len).unwrap_or(&[]);
                if !batch.push(frame, PacketMeta::new(*port, pkt_type::HOST, 0)) {
                    oversized += 1;
                }
            }
        }
        flush(pipeline, egress, xsks, tun.as_deref(), batch, now);
        if oversized > 0 {
            pipeline.count_drops(DropReason::NoRoom, oversized);
        }
    }

    /// Re-reads the host's addresses into the XDP programs (first worker).
    fn follow_addresses(&mut self) {
        let Some(control) = self.control.as_mut() else {
            return;
        };
        if let Some(events) = control.addresses.as_mut() {
            if events.changed() {
                for port in &mut control.xdp {
                    if let Err(err) = port.sync_local_addresses() {
                        tracing::warn!(%err, interface = port.name(), "could not update the host addresses of the XDP program");
                    }
                }
            }
        }
    }

    /// Runs the queued jobs, after counting ring drops so that the statistics a job reads are
    /// current.
    fn run_jobs(&mut self) {
        let jobs: Vec<WorkerJob> = self.jobs.try_iter().collect();
        if jobs.is_empty() {
            return;
        }
        self.count_ring_drops();
        for job in jobs {
            job(self);
        }
    }
}

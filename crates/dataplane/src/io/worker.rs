//! The worker threads: each polls its receive rings, runs the pipeline over each batch, sends
//! what it says to send (a transmit ring per Ethernet port, `sendmmsg` for layer-3 devices)
//! and hands IP packets to the kernel. The first worker also runs control jobs and the
//! periodic ticks. Frames the kernel dropped because a receive ring was full are counted as
//! `rx_ring_full` (read at least every 100 ms, and by the first worker before control jobs).
//!
//! A transmit ring checks frame lengths against the interface's MTU itself (the kernel does
//! not, for ring frames with a virtio-net header), so each worker follows MTU changes from the
//! kernel's link notifications ([`LinkEvents`]), read before every batch that transmits: a
//! frame sent after `ip link set … mtu` returned is checked against the new MTU. The
//! notifications are queued by the time the command returns, so no tick interval stands
//! between the change and the frames it applies to, and reading an empty queue costs one
//! non-blocking `recv` per batch. If the socket cannot be opened, the MTUs are re-read every
//! tick instead.
//!
//! With more than one worker ([`Tuning::workers`]) every worker has its own rings on every
//! port, joined in a `PACKET_FANOUT` group per port that hands each worker the frames received
//! on its share of the CPUs, and the workers share one [`Pipeline`] behind a mutex held only
//! while a batch runs through the stages (tens of nanoseconds per packet, against about a
//! microsecond of kernel work per packet outside it): tables, counters and expiry stay single,
//! and a job sees the whole data plane.

use super::afpacket::{RingConfig, RxRing, TxRing, TxRingConfig, TxSocket};
use super::netdev::{self, NetDev};
use super::netlink::LinkEvents;
use super::tun::Tun;
use super::{cvt, IoError};
use crate::pipeline::{Batch, DropReason, IpHandoff, LinkKind, Pipeline, Port, PortId, Verdict};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One interface the data plane owns.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// Interface name.
    pub name: String,
    /// Fate of IP packets no stage claims.
    pub ip_handoff: IpHandoff,
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

/// Settings of the workers beyond [`WorkerConfig`] (which the daemon builds from its
/// configuration file). [`start`] uses the defaults: one worker, transmit rings, not pinned.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Worker threads (0 counts as 1). Each has its own receive and transmit rings on every
    /// port; frames are spread over them by receiving CPU (`PACKET_FANOUT_CPU`: CPU `c` feeds
    /// worker `c % workers`).
    pub workers: usize,
    /// Transmit on Ethernet ports with `sendmmsg` instead of a transmit ring (for comparison;
    /// layer-3 devices always use `sendmmsg`).
    pub sendmmsg: bool,
    /// Size of each transmit ring.
    pub tx_ring: TxRingConfig,
    /// Pin worker `i` to CPU `cpus[i % cpus.len()]` (`sched_setaffinity`); empty: not pinned.
    pub cpus: Vec<usize>,
    /// Run the service data plane (SAPs, Epipe, VPLS, IES/VPRN interfaces) in front of the CAFE
    /// stages, with this stage configuration; `None`: the CAFE pipeline only.
    pub services: Option<crate::service::ServiceStageConfig>,
}

/// A control operation run on the worker thread between batches, with the pipeline and the
/// worker's clock (ns).
pub type Job = Box<dyn FnOnce(&mut Pipeline, u64) + Send>;

/// The worker has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the data plane worker has stopped")]
pub struct WorkerGone;

/// Sends jobs to the workers and stops them. Cloneable.
#[derive(Clone)]
pub struct Handle {
    jobs: mpsc::Sender<Job>,
    wake: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    /// Written on stop and never read, so it stays readable and wakes every worker.
    stop_fd: Arc<OwnedFd>,
}

impl Handle {
    /// Queues `job` and wakes the worker.
    pub fn submit(&self, job: Job) -> Result<(), WorkerGone> {
        self.jobs.send(job).map_err(|_| WorkerGone)?;
        self.wake();
        Ok(())
    }

    /// Asks the workers to stop after the current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        signal(&self.stop_fd);
        self.wake();
    }

    fn wake(&self) {
        signal(&self.wake);
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

/// How frames leave one port.
enum Tx {
    /// Ethernet: a TPACKET_V2 transmit ring.
    Ring(TxRing),
    /// Layer-3 devices (each frame needs its protocol) or no ring available: `sendmmsg`.
    Socket(TxSocket),
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

    fn send_from_batch(&mut self, batch: &Batch, port: PortId) -> (usize, usize) {
        match self {
            Tx::Ring(ring) => ring.send_from_batch(batch, port),
            Tx::Socket(socket) => socket.send_from_batch(batch, port),
        }
    }

    /// Retries frames still waiting in a ring; true when some still wait.
    fn flush(&mut self) -> bool {
        match self {
            Tx::Ring(ring) => ring.flush(),
            Tx::Socket(_) => false,
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
/// keep the transmit rings' MTUs current.
struct Egress {
    ports: Vec<Tx>,
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
            links,
        }
    }

    /// Sends the frames of `batch` that are to be transmitted; returns how many the kernel (or
    /// an MTU check) refused.
    fn send(&mut self, batch: &Batch) -> usize {
        if let Some(links) = &mut self.links {
            if batch
                .iter()
                .any(|(_, meta)| matches!(meta.verdict, Verdict::Transmit(_)))
            {
                follow_mtu_changes(links, &mut self.ports);
            }
        }
        let mut refused = 0;
        for (port, socket) in self.ports.iter_mut().enumerate() {
            let (accepted, attempted) = socket.send_from_batch(batch, port as PortId);
            refused += attempted - accepted;
        }
        refused
    }

    /// Retries frames still waiting in a ring; true when some still wait.
    fn flush(&mut self) -> bool {
        self.ports
            .iter_mut()
            .fold(false, |any, tx| tx.flush() | any)
    }

    /// The periodic MTU re-read, for a worker without link notifications.
    fn tick(&mut self) {
        if self.links.is_none() {
            for port in &mut self.ports {
                port.refresh();
            }
        }
    }
}

/// Applies the MTU changes the kernel announced since the last call to the transmit rings;
/// when notifications were lost, reads every ring's MTU again.
fn follow_mtu_changes(links: &mut LinkEvents, ports: &mut [Tx]) {
    let applied = links.drain(|ifindex, mtu| {
        for port in ports.iter_mut() {
            port.set_mtu(ifindex, mtu);
        }
    });
    if let Err(lost) = applied {
        tracing::debug!(%lost, "reading every MTU again");
        for port in ports.iter_mut() {
            port.refresh();
        }
    }
}

/// What only the first worker has: the control side.
struct Control {
    jobs: mpsc::Receiver<Job>,
    wake: Arc<OwnedFd>,
    /// Sysctls changed at start, with the values to put back when the workers stop.
    restore: Vec<(String, String)>,
    /// The other workers, joined before the first one returns.
    helpers: Vec<std::thread::JoinHandle<()>>,
}

struct Worker {
    pipeline: Arc<Mutex<Pipeline>>,
    rings: Vec<RxRing>,
    egress: Egress,
    tun: Option<Arc<Tun>>,
    control: Option<Control>,
    stop: Arc<AtomicBool>,
    stop_fd: Arc<OwnedFd>,
    batch: Batch,
    tick_interval: Duration,
    /// The workers' common clock.
    started: Instant,
}

/// How often every worker adds its rings' kernel drop counts.
const RING_STATS_INTERVAL: Duration = Duration::from_millis(100);

fn lock(pipeline: &Mutex<Pipeline>) -> MutexGuard<'_, Pipeline> {
    // A job that panicked took the first worker down; the others keep the tables as they are.
    pipeline
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

fn spawn(worker: Worker, index: usize) -> Result<std::thread::JoinHandle<()>, IoError> {
    let name = if index == 0 {
        "brasa-dataplane".to_string()
    } else {
        format!("brasa-dp{index}")
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(move || worker.run())
        .map_err(|source| IoError::Setup {
            what: "worker thread".into(),
            source,
        })
}

/// [`start`] with [`Tuning`]. The returned thread is the first worker's; it joins the others
/// before it ends.
pub fn start_tuned(
    config: WorkerConfig,
    tuning: Tuning,
) -> Result<(Handle, std::thread::JoinHandle<()>), IoError> {
    let workers = tuning.workers.max(1);
    let mut ports = Vec::new();
    let mut rings: Vec<Vec<RxRing>> = (0..workers).map(|_| Vec::new()).collect();
    // Subscribed to link notifications before any MTU is read, so no change falls in between.
    let mut egress: Vec<Egress> = (0..workers).map(|_| Egress::new()).collect();
    let mut restore = Vec::new();
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
        let mut group = None;
        for (worker_rings, worker_egress) in rings.iter_mut().zip(egress.iter_mut()) {
            let ring = RxRing::open(&port.name, dev.ifindex, id, config.ring)?;
            if workers > 1 {
                let joined = ring.join_fanout(group).map_err(|source| IoError::Setup {
                    what: format!("PACKET_FANOUT on {}", port.name),
                    source,
                })?;
                group = Some(joined);
            }
            worker_rings.push(ring);
            worker_egress
                .ports
                .push(Tx::open(&port.name, dev.ifindex, link, &tuning)?);
        }
        ports.push(Port {
            name: port.name.clone(),
            link,
            mac: if link == LinkKind::Ethernet {
                dev.mac
            } else {
                Default::default()
            },
            ip_handoff: port.ip_handoff,
        });
    }
    let tun = config
        .tun
        .as_deref()
        .map(Tun::open)
        .transpose()?
        .map(Arc::new);
    let wake = Arc::new(eventfd()?);
    let stop_fd = Arc::new(eventfd()?);
    let (jobs_tx, jobs_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = Handle {
        jobs: jobs_tx,
        wake: wake.clone(),
        stop: stop.clone(),
        stop_fd: stop_fd.clone(),
    };
    let stages = match tuning.services {
        Some(config) => crate::stages::service_stages(crate::service::ServiceStage::new(config)),
        None => crate::stages::cafe_stages(),
    };
    let pipeline = Arc::new(Mutex::new(Pipeline::new(ports, stages)));
    let started = Instant::now();
    let worker = |rings, egress, control| Worker {
        pipeline: pipeline.clone(),
        rings,
        egress,
        tun: tun.clone(),
        control,
        stop: stop.clone(),
        stop_fd: stop_fd.clone(),
        batch: Batch::new(config.batch_size.max(1)),
        tick_interval: config.tick_interval,
        started,
    };
    let pin_to =
        |index: usize| (!tuning.cpus.is_empty()).then(|| tuning.cpus[index % tuning.cpus.len()]);
    let stop_helpers = |helpers: Vec<std::thread::JoinHandle<()>>| {
        handle.stop();
        for helper in helpers {
            let _ = helper.join();
        }
    };
    let mut per_worker = rings.into_iter().zip(egress);
    let Some((first_rings, first_egress)) = per_worker.next() else {
        return Err(IoError::Setup {
            what: "workers".into(),
            source: std::io::Error::other("no worker"),
        });
    };
    let mut helpers = Vec::new();
    for (index, (rings, egress)) in per_worker.enumerate().map(|(i, w)| (i + 1, w)) {
        let started = spawn(worker(rings, egress, None), index).and_then(|thread| {
            let pinned = pin_to(index).map_or(Ok(()), |cpu| pin(&thread, cpu));
            helpers.push(thread);
            pinned
        });
        if let Err(err) = started {
            stop_helpers(helpers);
            return Err(err);
        }
    }
    let control = Control {
        jobs: jobs_rx,
        wake,
        restore,
        helpers,
    };
    let thread = spawn(worker(first_rings, first_egress, Some(control)), 0)?;
    if let Some(cpu) = pin_to(0) {
        if let Err(err) = pin(&thread, cpu) {
            // The first worker joins the others when it stops.
            stop_helpers(Vec::new());
            let _ = thread.join();
            return Err(err);
        }
    }
    Ok((handle, thread))
}

fn flush(
    pipeline: &Mutex<Pipeline>,
    egress: &mut Egress,
    tun: Option<&Tun>,
    batch: &mut Batch,
    now_ns: u64,
) {
    if batch.is_empty() {
        return;
    }
    lock(pipeline).run(batch, now_ns);
    let tx_errors = egress.send(batch);
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
        let mut pipeline = lock(pipeline);
        pipeline.count_drops(DropReason::TxError, tx_errors as u64);
        pipeline.count_drops(DropReason::KernelError, kernel_errors as u64);
    }
    batch.clear();
}

impl Worker {
    /// Adds the frames the kernel dropped on this worker's full receive rings since the last
    /// call.
    fn count_ring_drops(&self) {
        let drops: u64 = self
            .rings
            .iter()
            .filter_map(|ring| ring.take_statistics().ok())
            .map(|stats| u64::from(stats.drops))
            .sum();
        if drops > 0 {
            lock(&self.pipeline).count_drops(DropReason::RxRingFull, drops);
        }
    }

    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn run(mut self) {
        let mut last_tick = Instant::now();
        let mut last_stats = Instant::now();
        // Rings, then the stop eventfd; the first worker also polls the wake eventfd and the
        // TUN device.
        let control_fds = self.control.as_ref().map(|control| {
            [
                Some(control.wake.as_raw_fd()),
                self.tun.as_ref().map(|tun| tun.raw_fd()),
            ]
        });
        let mut pollfds: Vec<libc::pollfd> = self
            .rings
            .iter()
            .map(|ring| ring.raw_fd())
            .chain(std::iter::once(self.stop_fd.as_raw_fd()))
            .chain(control_fds.into_iter().flatten().flatten())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let wake_index = self.rings.len() + 1;
        let tun_index = wake_index + 1;
        if self.control.is_some() {
            let stages = lock(&self.pipeline).stage_names();
            tracing::info!(
                ports = self.rings.len(),
                ?stages,
                "data plane worker running"
            );
        }
        while !self.stop.load(Ordering::Acquire) {
            let any_ready = self.rings.iter().any(RxRing::has_data);
            let (mut woken, mut tun_readable) = (false, false);
            if !any_ready {
                let unsent = self.egress.flush();
                let timeout = if unsent {
                    1
                } else {
                    self.tick_interval
                        .min(RING_STATS_INTERVAL)
                        .as_millis()
                        .max(1) as i32
                };
                // SAFETY: `pollfds` is a valid array of pollfd.
                unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
                if self.control.is_some() {
                    let readable = |index: usize| {
                        pollfds
                            .get(index)
                            .is_some_and(|p| p.revents & libc::POLLIN != 0)
                    };
                    woken = readable(wake_index);
                    tun_readable = self.tun.is_some() && readable(tun_index);
                }
            }
            let now = self.now_ns();
            let Worker {
                pipeline,
                rings,
                egress,
                tun,
                batch,
                ..
            } = &mut self;
            let mut oversized = 0u64;
            for ring in rings.iter_mut() {
                ring.drain(batch, &mut oversized, |full| {
                    flush(pipeline, egress, tun.as_deref(), full, now)
                });
            }
            flush(pipeline, egress, tun.as_deref(), batch, now);
            if oversized > 0 {
                lock(pipeline).count_drops(DropReason::NoRoom, oversized);
            }
            if last_stats.elapsed() >= RING_STATS_INTERVAL {
                self.count_ring_drops();
                last_stats = Instant::now();
            }
            if woken {
                if let Some(control) = &self.control {
                    let mut counter = [0u8; 8];
                    // SAFETY: reads the eventfd counter (non-blocking) into an 8-byte buffer.
                    unsafe {
                        libc::read(
                            control.wake.as_raw_fd(),
                            counter.as_mut_ptr().cast(),
                            counter.len(),
                        )
                    };
                }
            }
            if tun_readable {
                // Whatever the kernel routes into the device is discarded, so it never stays
                // readable and keeps `poll` from sleeping.
                if let Some(tun) = &self.tun {
                    tun.drain();
                }
            }
            self.run_jobs();
            if last_tick.elapsed() >= self.tick_interval {
                self.egress.tick();
                if self.control.is_some() {
                    let now = self.now_ns();
                    lock(&self.pipeline).tick(now);
                    if let Some(tun) = &self.tun {
                        tun.drain();
                    }
                }
                last_tick = Instant::now();
            }
        }
        if let Some(control) = self.control.take() {
            for helper in control.helpers {
                let _ = helper.join();
            }
            for (path, value) in &control.restore {
                if let Err(err) = netdev::write_net_sysctl(path, value) {
                    tracing::warn!(%err, "could not restore a sysctl");
                }
            }
            tracing::info!("data plane worker stopped");
        }
    }

    /// Runs the queued control jobs (first worker only), after counting ring drops so that
    /// the statistics a job reads are current.
    fn run_jobs(&self) {
        let Some(control) = &self.control else {
            return;
        };
        let mut jobs = control.jobs.try_iter().peekable();
        if jobs.peek().is_none() {
            return;
        }
        self.count_ring_drops();
        for job in jobs {
            let now = self.now_ns();
            job(&mut lock(&self.pipeline), now);
        }
    }
}

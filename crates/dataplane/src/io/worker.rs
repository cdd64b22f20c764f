//! The worker thread: polls the receive rings, runs the pipeline over each batch, sends what
//! it says to send, hands IP packets to the kernel, runs control jobs and periodic ticks.

use super::afpacket::{RingConfig, RxRing, TxSocket};
use super::netdev::{self, NetDev};
use super::tun::Tun;
use super::{cvt, IoError};
use crate::pipeline::{Batch, DropReason, IpHandoff, LinkKind, Pipeline, Port, PortId, Verdict};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
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

/// A control operation run on the worker thread between batches, with the pipeline and the
/// worker's clock (ns).
pub type Job = Box<dyn FnOnce(&mut Pipeline, u64) + Send>;

/// The worker has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the data plane worker has stopped")]
pub struct WorkerGone;

/// Sends jobs to the worker and stops it. Cloneable.
#[derive(Clone)]
pub struct Handle {
    jobs: mpsc::Sender<Job>,
    wake: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
}

impl Handle {
    /// Queues `job` and wakes the worker.
    pub fn submit(&self, job: Job) -> Result<(), WorkerGone> {
        self.jobs.send(job).map_err(|_| WorkerGone)?;
        self.wake();
        Ok(())
    }

    /// Asks the worker to stop after the current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes to the eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

struct Worker {
    pipeline: Pipeline,
    rings: Vec<RxRing>,
    tx: Vec<TxSocket>,
    tun: Option<Tun>,
    jobs: mpsc::Receiver<Job>,
    wake: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    batch: Batch,
    tick_interval: Duration,
    /// Sysctls changed at start, with the values to put back when the worker stops.
    restore: Vec<(String, String)>,
}

/// Opens every interface, the TUN device and the rings (errors come back here, before any
/// thread starts), then starts the worker thread.
pub fn start(config: WorkerConfig) -> Result<(Handle, std::thread::JoinHandle<()>), IoError> {
    let mut ports = Vec::new();
    let mut rings = Vec::new();
    let mut tx = Vec::new();
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
        rings.push(RxRing::open(&port.name, dev.ifindex, id, config.ring)?);
        tx.push(TxSocket::open(&port.name, dev.ifindex)?);
        let link = dev.link;
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
    let tun = config.tun.as_deref().map(Tun::open).transpose()?;
    // SAFETY: eventfd(2); the descriptor is owned from here on.
    let wake = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) }).map_err(
        |source| IoError::Setup {
            what: "eventfd".into(),
            source,
        },
    )?;
    // SAFETY: fresh descriptor.
    let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
    let (jobs_tx, jobs_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = Worker {
        pipeline: Pipeline::new(ports, crate::stages::cafe_stages()),
        rings,
        tx,
        tun,
        jobs: jobs_rx,
        wake: wake.clone(),
        stop: stop.clone(),
        batch: Batch::new(config.batch_size.max(1)),
        tick_interval: config.tick_interval,
        restore,
    };
    let thread = std::thread::Builder::new()
        .name("brasa-dataplane".into())
        .spawn(move || worker.run())
        .map_err(|source| IoError::Setup {
            what: "worker thread".into(),
            source,
        })?;
    Ok((
        Handle {
            jobs: jobs_tx,
            wake,
            stop,
        },
        thread,
    ))
}

fn flush(
    pipeline: &mut Pipeline,
    tx: &mut [TxSocket],
    tun: Option<&Tun>,
    batch: &mut Batch,
    now_ns: u64,
) {
    if batch.is_empty() {
        return;
    }
    pipeline.run(batch, now_ns);
    let port_count = tx.len();
    for (port, socket) in tx.iter_mut().enumerate().take(port_count) {
        let (accepted, attempted) = socket.send_from_batch(batch, port as PortId);
        for _ in accepted..attempted {
            pipeline.count_drop(DropReason::TxError);
        }
    }
    for (buf, meta) in batch.iter() {
        if meta.verdict != Verdict::ToKernel {
            continue;
        }
        let ok = match tun {
            Some(tun) => tun.write(buf.as_slice()).is_ok(),
            None => false,
        };
        if !ok {
            pipeline.count_drop(DropReason::KernelError);
        }
    }
    batch.clear();
}

impl Worker {
    fn run(mut self) {
        let started = Instant::now();
        let now_ns = || started.elapsed().as_nanos() as u64;
        let mut last_tick = Instant::now();
        let mut pollfds: Vec<libc::pollfd> = self
            .rings
            .iter()
            .map(|ring| libc::pollfd {
                fd: ring.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        pollfds.push(libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        if let Some(tun) = &self.tun {
            pollfds.push(libc::pollfd {
                fd: tun.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        tracing::info!(ports = self.rings.len(), stages = ?self.pipeline.stage_names(), "data plane worker running");
        while !self.stop.load(Ordering::Acquire) {
            let any_ready = self.rings.iter().any(RxRing::has_data);
            if !any_ready {
                let timeout = self.tick_interval.as_millis().clamp(1, 100) as i32;
                // SAFETY: `pollfds` is a valid array of pollfd.
                unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
            }
            let now = now_ns();
            let Worker {
                pipeline,
                rings,
                tx,
                tun,
                batch,
                ..
            } = &mut self;
            let mut oversized = 0u64;
            for ring in rings.iter_mut() {
                ring.drain(batch, &mut oversized, |full| {
                    flush(pipeline, tx, tun.as_ref(), full, now)
                });
            }
            flush(pipeline, tx, tun.as_ref(), batch, now);
            for _ in 0..oversized {
                pipeline.count_drop(DropReason::NoRoom);
            }
            let mut counter = [0u8; 8];
            // SAFETY: reads the eventfd counter (non-blocking) into an 8-byte buffer.
            unsafe {
                libc::read(
                    self.wake.as_raw_fd(),
                    counter.as_mut_ptr().cast(),
                    counter.len(),
                )
            };
            while let Ok(job) = self.jobs.try_recv() {
                job(&mut self.pipeline, now_ns());
            }
            if last_tick.elapsed() >= self.tick_interval {
                self.pipeline.tick(now_ns());
                last_tick = Instant::now();
                if let Some(tun) = &self.tun {
                    tun.drain();
                }
            }
        }
        for (path, value) in &self.restore {
            if let Err(err) = netdev::write_net_sysctl(path, value) {
                tracing::warn!(%err, "could not restore a sysctl");
            }
        }
        tracing::info!("data plane worker stopped");
    }
}

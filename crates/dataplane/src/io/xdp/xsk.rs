//! An AF_XDP socket bound to one receive queue of one interface, with its UMEM (the frame
//! memory shared with the kernel) and its four rings: fill (frames handed to the kernel to
//! receive into), RX (received frames), TX (frames to send) and completion (sent frames given
//! back).
//!
//! The UMEM's first half is for receiving: every one of those frames is either in the fill
//! ring, with the kernel, or in the RX ring, and goes back to the fill ring as soon as its
//! bytes are copied into a batch. The second half is for sending: free, in the TX ring, or
//! with the kernel until it shows up in the completion ring. So the fill ring never runs dry
//! because of the data plane, and a flood that outruns the reader is dropped by the kernel
//! (and counted in [`XskStats`]), never by a frame leaking.
//!
//! Both need-wakeup flags are honoured: the kernel is only kicked (`sendto`, `recvfrom`) when
//! it asked for it, which in zero-copy mode spares a system call per batch.

use crate::io::{cvt, setsockopt, FrameLimit, IoError, Mapping};
use crate::pipeline::{pkt_type, Batch, PacketMeta, PortId, Verdict};
use crate::wire::MacAddr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// Size of an AF_XDP socket's memory and rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// Frames in the UMEM (a power of two, at least 64): half receive, half transmit.
    pub frames: u32,
    /// Bytes per frame (2048 or 4096); the kernel keeps 256 of them as headroom.
    pub frame_size: u32,
    /// Busy-poll budget in microseconds (`SO_BUSY_POLL`), 0 = off.
    pub busy_poll_us: u32,
}

impl Default for XskConfig {
    /// 4096 frames of 4 KiB (16 MiB): 2048 receive frames absorb a two-millisecond reader stall
    /// at 1 Mpps, and a 4 KiB frame holds whatever a packet buffer does.
    fn default() -> Self {
        Self {
            frames: 4096,
            frame_size: 4096,
            busy_poll_us: 0,
        }
    }
}

impl XskConfig {
    /// Checks the sizes the kernel would refuse, with what was expected.
    pub fn validate(&self) -> Result<(), String> {
        if !self.frames.is_power_of_two() || self.frames < 64 {
            return Err(format!(
                "{} UMEM frames: expected a power of two, at least 64",
                self.frames
            ));
        }
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err(format!(
                "UMEM frame size {}: expected 2048 or 4096",
                self.frame_size
            ));
        }
        Ok(())
    }
}

/// What the kernel counted on one socket (cumulative since it was bound).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct XskStats {
    /// Frames dropped for other reasons (e.g. too large for a UMEM frame).
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full (the data plane was behind).
    pub rx_ring_full: u64,
    /// Times a frame found the fill ring empty (no frame to receive into).
    pub rx_fill_ring_empty: u64,
    /// Invalid descriptors in the RX/fill rings.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors in the TX ring.
    pub tx_invalid_descs: u64,
}

impl XskStats {
    /// Frames lost on receipt: ring full or dropped.
    pub fn rx_lost(&self) -> u64 {
        self.rx_dropped + self.rx_ring_full
    }
}

/// One of the four rings (`struct xdp_ring` in shared memory).
struct Ring {
    /// The memory the pointers below point into.
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut u8,
    mask: u32,
    /// This side's copy of its own index (producer or consumer).
    local: u32,
}

impl Ring {
    fn map(
        fd: &OwnedFd,
        offsets: &libc::xdp_ring_offset,
        entries: u32,
        desc_size: usize,
        pgoff: libc::off_t,
    ) -> io::Result<Self> {
        let map_len = offsets.desc as usize + entries as usize * desc_size;
        let map = Mapping::ring(fd, map_len, pgoff, true)?;
        let base = map.as_ptr();
        // SAFETY: the offsets the kernel gave lie inside the mapping.
        unsafe {
            Ok(Self {
                _map: map,
                producer: base.add(offsets.producer as usize).cast(),
                consumer: base.add(offsets.consumer as usize).cast(),
                flags: base.add(offsets.flags as usize).cast(),
                descs: base.add(offsets.desc as usize),
                mask: entries - 1,
                local: 0,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping; the kernel updates it concurrently, hence atomic.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as above.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Consumer side: entries ready to read.
    fn ready(&self) -> u32 {
        self.producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.local)
    }

    /// Consumer side: gives `count` read entries back.
    fn release(&mut self, count: u32) {
        self.local = self.local.wrapping_add(count);
        self.consumer().store(self.local, Ordering::Release);
    }

    /// Producer side: free entries.
    fn free(&self) -> u32 {
        (self.mask + 1).wrapping_sub(
            self.local
                .wrapping_sub(self.consumer().load(Ordering::Acquire)),
        )
    }

    /// Producer side: publishes `count` written entries.
    fn submit(&mut self, count: u32) {
        self.local = self.local.wrapping_add(count);
        self.producer().store(self.local, Ordering::Release);
    }

    /// Address-ring entry `index` (fill and completion rings hold u64 frame addresses).
    fn addr(&self, index: u32) -> *mut u64 {
        // SAFETY: `index & mask` is below the ring's entry count.
        unsafe { self.descs.cast::<u64>().add((index & self.mask) as usize) }
    }

    /// Descriptor-ring entry `index` (RX and TX rings hold `struct xdp_desc`).
    fn desc(&self, index: u32) -> *mut libc::xdp_desc {
        // SAFETY: as above.
        unsafe {
            self.descs
                .cast::<libc::xdp_desc>()
                .add((index & self.mask) as usize)
        }
    }
}

/// An AF_XDP socket on one queue, with its UMEM and rings.
pub struct Xsk {
    // Before `fd`: the UMEM is unmapped before the socket closes (the kernel keeps its own
    // pin of the pages until then, so either order is safe).
    umem: Mapping,
    fd: OwnedFd,
    frame_size: u32,
    fill: Ring,
    completion: Ring,
    rx: Ring,
    tx: Ring,
    /// Transmit frames not in the TX ring or with the kernel.
    free_tx: Vec<u64>,
    zero_copy: bool,
    port: PortId,
    queue: u32,
    mac: MacAddr,
    limit: FrameLimit,
    ifindex: i32,
}

// SAFETY: the UMEM and ring mappings are owned by this value alone and touched only through
// `&mut self` (or read through `&self`).
unsafe impl Send for Xsk {}

/// Reads a socket option into a `T` made of plain integers (all-zero is a valid value).
fn getsockopt<T: Copy>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    // SAFETY: callers only use integer-only C structs, for which all-zero is valid.
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: passes a buffer of `len` bytes that the kernel fills.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// What [`Xsk::open`] needs to know about the interface.
#[derive(Debug, Clone, Copy)]
pub struct XskTarget {
    /// Interface index.
    pub ifindex: i32,
    /// Receive queue.
    pub queue: u32,
    /// The port the frames are tagged with.
    pub port: PortId,
    /// The interface's MAC (for the packet type of received frames).
    pub mac: MacAddr,
    /// The interface's MTU.
    pub mtu: u32,
}

impl Xsk {
    /// Creates the UMEM and the socket and binds it to `target`'s queue: zero-copy when the
    /// driver supports it, copy mode otherwise. `name` is for errors.
    pub fn open(name: &str, target: XskTarget, config: XskConfig) -> Result<Self, IoError> {
        let setup = |what: &str, source| IoError::Setup {
            what: format!("AF_XDP socket on {name} queue {}: {what}", target.queue),
            source,
        };
        config.validate().map_err(|e| {
            setup(
                "configuration",
                io::Error::new(io::ErrorKind::InvalidInput, e),
            )
        })?;
        // SAFETY: socket(2); the descriptor is owned from here on.
        let fd = cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })
            .map_err(|e| setup("socket", e))?;
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let umem = Mapping::anonymous(config.frames as usize * config.frame_size as usize)
            .map_err(|e| setup("UMEM mmap", e))?;
        let half = config.frames / 2;
        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: config.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
            .map_err(|e| setup("XDP_UMEM_REG", e))?;
        for (option, what) in [
            (libc::XDP_UMEM_FILL_RING, "fill ring"),
            (libc::XDP_UMEM_COMPLETION_RING, "completion ring"),
            (libc::XDP_RX_RING, "RX ring"),
            (libc::XDP_TX_RING, "TX ring"),
        ] {
            setsockopt(&fd, libc::SOL_XDP, option, &half).map_err(|e| setup(what, e))?;
        }
        let offsets: libc::xdp_mmap_offsets =
            getsockopt(&fd, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS)
                .map_err(|e| setup("XDP_MMAP_OFFSETS", e))?;
        let addr_size = std::mem::size_of::<u64>();
        let desc_size = std::mem::size_of::<libc::xdp_desc>();
        let fill = Ring::map(
            &fd,
            &offsets.fr,
            half,
            addr_size,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
        )
        .map_err(|e| setup("fill ring mmap", e))?;
        let completion = Ring::map(
            &fd,
            &offsets.cr,
            half,
            addr_size,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
        )
        .map_err(|e| setup("completion ring mmap", e))?;
        let rx = Ring::map(&fd, &offsets.rx, half, desc_size, libc::XDP_PGOFF_RX_RING)
            .map_err(|e| setup("RX ring mmap", e))?;
        let tx = Ring::map(&fd, &offsets.tx, half, desc_size, libc::XDP_PGOFF_TX_RING)
            .map_err(|e| setup("TX ring mmap", e))?;
        let mut xsk = Self {
            umem,
            fd,
            frame_size: config.frame_size,
            fill,
            completion,
            rx,
            tx,
            free_tx: (half..config.frames)
                .map(|frame| u64::from(frame) * u64::from(config.frame_size))
                .collect(),
            zero_copy: false,
            port: target.port,
            queue: target.queue,
            mac: target.mac,
            limit: FrameLimit::new(target.mtu),
            ifindex: target.ifindex,
        };
        // Every receive frame starts in the fill ring.
        for frame in 0..half {
            // SAFETY: the fill ring has `half` free entries and nothing else writes them yet.
            unsafe {
                *xsk.fill.addr(xsk.fill.local.wrapping_add(frame)) =
                    u64::from(frame) * u64::from(config.frame_size)
            };
        }
        xsk.fill.submit(half);
        xsk.bind(target).map_err(|e| setup("bind", e))?;
        let options: libc::xdp_options = getsockopt(&xsk.fd, libc::SOL_XDP, libc::XDP_OPTIONS)
            .unwrap_or(libc::xdp_options { flags: 0 });
        xsk.zero_copy = options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0;
        if config.busy_poll_us > 0 {
            let _ = setsockopt(&xsk.fd, libc::SOL_SOCKET, SO_PREFER_BUSY_POLL, &1i32);
            let _ = setsockopt(
                &xsk.fd,
                libc::SOL_SOCKET,
                SO_BUSY_POLL,
                &(config.busy_poll_us as i32),
            );
            let _ = setsockopt(&xsk.fd, libc::SOL_SOCKET, SO_BUSY_POLL_BUDGET, &64i32);
        }
        Ok(xsk)
    }

    /// Binds with need-wakeup, letting the kernel choose zero-copy where the driver has it.
    fn bind(&self, target: XskTarget) -> io::Result<()> {
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: target.ifindex as u32,
            sxdp_queue_id: target.queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: binds with a pointer to a properly sized sockaddr_xdp.
        cvt(unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }

    /// The descriptor (for polling, and for the XSK map).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// The queue it is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// True when bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// True when received frames wait in the RX ring.
    pub fn has_data(&self) -> bool {
        self.rx.ready() > 0
    }

    /// The kernel's counters of this socket.
    pub fn statistics(&self) -> io::Result<XskStats> {
        let stats: libc::xdp_statistics =
            getsockopt(&self.fd, libc::SOL_XDP, libc::XDP_STATISTICS)?;
        Ok(XskStats {
            rx_dropped: stats.rx_dropped,
            rx_ring_full: stats.rx_ring_full,
            rx_fill_ring_empty: stats.rx_fill_ring_empty_descs,
            rx_invalid_descs: stats.rx_invalid_descs,
            tx_invalid_descs: stats.tx_invalid_descs,
        })
    }

    fn frame(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len)?;
        if end > self.umem.len() {
            return None;
        }
        // SAFETY: `start..end` lies inside the UMEM (checked above), which lives as long as
        // `self`; the kernel does not write a frame while it is in the RX ring.
        Some(unsafe { std::slice::from_raw_parts(self.umem.as_ptr().add(start), len) })
    }

    fn packet_type(&self, frame: &[u8]) -> u8 {
        match frame.get(..6) {
            Some(dst) if dst == self.mac.0 => pkt_type::HOST,
            Some([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) => pkt_type::BROADCAST,
            Some(dst) if dst[0] & 1 != 0 => pkt_type::MULTICAST,
            _ => pkt_type::OTHERHOST,
        }
    }

    /// Copies received frames into `batch` until it is full or the RX ring is empty, and hands
    /// their frames back to the kernel through the fill ring. Returns the number read; frames
    /// too large for a buffer are counted in `oversized`.
    pub fn receive(&mut self, batch: &mut Batch, oversized: &mut u64) -> usize {
        let room = batch.capacity().saturating_sub(batch.len()) as u32;
        let ready = self.rx.ready().min(room);
        if ready == 0 {
            return 0;
        }
        let chunk_mask = !(u64::from(self.frame_size) - 1);
        let start = self.rx.local;
        for i in 0..ready {
            // SAFETY: entries up to the producer index are written by the kernel and ours to
            // read until released.
            let desc = unsafe { *self.rx.desc(start.wrapping_add(i)) };
            match self.frame(desc.addr, desc.len as usize) {
                Some(frame) => {
                    let meta = PacketMeta::new(self.port, self.packet_type(frame), 0);
                    if !batch.push(frame, meta) {
                        *oversized += 1;
                    }
                }
                None => *oversized += 1,
            }
            // The frame's bytes are copied: it goes straight back to the kernel. The fill ring
            // has room, since it holds at most the receive frames not in the RX ring.
            // SAFETY: the fill ring's entry is free (see above) and ours to write.
            unsafe { *self.fill.addr(self.fill.local.wrapping_add(i)) = desc.addr & chunk_mask };
        }
        self.rx.release(ready);
        self.fill.submit(ready);
        if self.fill.needs_wakeup() {
            self.kick_rx();
        }
        ready as usize
    }

    /// The port its frames are tagged with.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// Asks the kernel to receive into the fill ring's frames (a driver in zero-copy mode
    /// waits for this when it set the fill ring's need-wakeup flag).
    fn kick_rx(&self) {
        // SAFETY: recvfrom(2) without a buffer, non-blocking: only wakes the driver.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Asks the kernel to send what the TX ring holds.
    fn kick_tx(&self) {
        // SAFETY: sendto(2) without data, non-blocking: only starts transmission.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
    }

    /// Takes the frames the kernel has finished sending back into the free list.
    fn reclaim(&mut self) {
        let done = self.completion.ready();
        let start = self.completion.local;
        for i in 0..done {
            // SAFETY: completion entries up to the producer index are the kernel's answers.
            self.free_tx
                .push(unsafe { *self.completion.addr(start.wrapping_add(i)) });
        }
        self.completion.release(done);
    }

    /// Takes the interface's MTU as `mtu`.
    pub fn set_mtu(&mut self, mtu: u32) {
        self.limit = FrameLimit::new(mtu);
    }

    /// The interface's kernel index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// The interface takes the frame and it fits a UMEM frame.
    fn length_ok(&self, frame: &[u8]) -> bool {
        self.limit.allows(frame) && frame.len() <= self.frame_size as usize
    }

    /// Queues the packets of `batch` whose verdict is to transmit on `port` and kicks the
    /// kernel if it asked for it. Returns (accepted, attempted): a frame is refused when it is
    /// longer than the MTU allows or no transmit frame is free after reclaiming completions.
    pub fn send_from_batch(&mut self, batch: &Batch, port: PortId) -> (usize, usize) {
        let mut attempted = 0;
        let mut accepted = 0;
        let mut queued = 0u32;
        let mut reclaimed = false;
        for (buf, meta) in batch.iter() {
            if meta.verdict != Verdict::Transmit(port) {
                continue;
            }
            attempted += 1;
            let frame = buf.as_slice();
            if !self.length_ok(frame) {
                continue;
            }
            if self.free_tx.is_empty() && !reclaimed {
                if queued > 0 {
                    self.tx.submit(queued);
                    queued = 0;
                }
                self.kick_tx();
                self.reclaim();
                reclaimed = true;
            }
            if self.tx.free() <= queued {
                continue;
            }
            let Some(addr) = self.free_tx.pop() else {
                continue;
            };
            // SAFETY: `addr` is a transmit frame of the UMEM that only this side holds, and
            // the frame fits it (checked in `length_ok`).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    frame.as_ptr(),
                    self.umem.as_ptr().add(addr as usize),
                    frame.len(),
                );
                *self.tx.desc(self.tx.local.wrapping_add(queued)) = libc::xdp_desc {
                    addr,
                    len: frame.len() as u32,
                    options: 0,
                };
            }
            queued += 1;
            accepted += 1;
        }
        if queued > 0 {
            self.tx.submit(queued);
        }
        self.flush();
        self.reclaim();
        (accepted, attempted)
    }

    /// Kicks the kernel while frames wait in the TX ring and it asks to be woken (copy mode
    /// always does). In copy mode each kick sends at most 32 frames (the kernel's
    /// `TX_BATCH_SIZE`), so it kicks until the ring is empty or a kick makes no progress (the
    /// device is busy: the rest go at the next flush). Returns whether frames still wait.
    pub fn flush(&mut self) -> bool {
        let waiting = |xsk: &Self| {
            xsk.tx
                .local
                .wrapping_sub(xsk.tx.consumer().load(Ordering::Acquire))
        };
        let mut left = waiting(self);
        while left > 0 && (self.tx.needs_wakeup() || !self.zero_copy) {
            self.kick_tx();
            let now = waiting(self);
            if now >= left {
                break;
            }
            left = now;
        }
        left > 0
    }
}

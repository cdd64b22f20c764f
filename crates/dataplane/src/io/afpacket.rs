//! AF_PACKET sockets: a TPACKET_V3 receive ring (the kernel fills whole blocks of frames; one
//! `poll` wakes the reader for many packets) and a transmit socket that sends a batch with one
//! `sendmmsg`.

use super::{cvt, IoError};
use crate::pipeline::{pkt_type, Batch, PacketMeta, PortId, Verdict};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETH_P_ALL: u16 = 0x0003;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const TPACKET3_HDRLEN: usize = 48;

// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then tpacket_hdr_v1).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
// Offsets in `struct tpacket3_hdr`.
const PKT_NEXT_OFFSET: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_STATUS: usize = 20;
const PKT_MAC: usize = 24;
const PKT_VLAN_TCI: usize = 32;
const PKT_VLAN_TPID: usize = 36;
// Offsets in the `struct sockaddr_ll` that follows the header.
const SLL_PROTOCOL: usize = 2;
const SLL_PKTTYPE: usize = 10;

#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// Size of the receive ring.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Bytes per block (a power of two, multiple of the page size).
    pub block_size: u32,
    /// Number of blocks.
    pub block_count: u32,
    /// Milliseconds after which the kernel hands over a partly filled block.
    pub block_timeout_ms: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            block_size: 1 << 18,
            block_count: 16,
            block_timeout_ms: 1,
        }
    }
}

fn packet_socket() -> io::Result<OwnedFd> {
    // Protocol 0: receive nothing until bound to one interface.
    // SAFETY: socket(2); the descriptor is owned from here on.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: passes a pointer to `value` with its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

fn bind(fd: &OwnedFd, ifindex: i32, protocol: u16) -> io::Result<()> {
    // SAFETY: zeroed sockaddr_ll is a valid value; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: binds with a pointer to a properly sized sockaddr_ll.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

fn read_u32(base: *const u8, offset: usize) -> u32 {
    // SAFETY: callers pass offsets inside the mapped ring (checked against the block size).
    unsafe { std::ptr::read_volatile(base.add(offset).cast::<u32>()) }
}

fn read_u16(base: *const u8, offset: usize) -> u16 {
    // SAFETY: as above.
    unsafe { std::ptr::read_unaligned(base.add(offset).cast::<u16>()) }
}

/// A TPACKET_V3 receive ring bound to one interface.
pub struct RxRing {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    block_size: usize,
    block_count: usize,
    next_block: usize,
    port: PortId,
}

// SAFETY: the mapping is owned by this value alone and only touched through `&mut self`.
unsafe impl Send for RxRing {}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `open`.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

impl RxRing {
    /// Opens a ring on interface `ifindex`; its packets are tagged with `port`. Frames the host
    /// itself sends are not delivered.
    pub fn open(
        name: &str,
        ifindex: i32,
        port: PortId,
        config: RingConfig,
    ) -> Result<Self, IoError> {
        let setup = |what: &str, source| IoError::Setup {
            what: format!("AF_PACKET ring on {name}: {what}"),
            source,
        };
        let fd = packet_socket().map_err(|e| setup("socket", e))?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V3)
            .map_err(|e| setup("TPACKET_V3", e))?;
        // Not fatal on kernels before 4.20: classify ignores outgoing frames too.
        let _ = setsockopt(
            &fd,
            libc::SOL_PACKET,
            23, /* PACKET_IGNORE_OUTGOING */
            &1i32,
        );
        let frame_size = 2048u32;
        let req = TpacketReq3 {
            block_size: config.block_size,
            block_nr: config.block_count,
            frame_size,
            frame_nr: config.block_size / frame_size * config.block_count,
            retire_blk_tov: config.block_timeout_ms,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(|e| setup("PACKET_RX_RING", e))?;
        let map_len = config.block_size as usize * config.block_count as usize;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(setup("mmap", io::Error::last_os_error()));
        }
        let ring = Self {
            fd,
            map: map.cast(),
            map_len,
            block_size: config.block_size as usize,
            block_count: config.block_count as usize,
            next_block: 0,
            port,
        };
        bind(&ring.fd, ifindex, ETH_P_ALL).map_err(|e| setup("bind", e))?;
        Ok(ring)
    }

    /// The descriptor, for polling.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// True when the next block is ready.
    pub fn has_data(&self) -> bool {
        let block = self.block_ptr(self.next_block);
        read_u32(block, BLOCK_STATUS) & TP_STATUS_USER != 0
    }

    fn block_ptr(&self, index: usize) -> *mut u8 {
        // SAFETY: `index < block_count`, so the offset is inside the mapping.
        unsafe { self.map.add(index * self.block_size) }
    }

    /// Copies the frames of every ready block into `batch`, calling `flush` whenever it is
    /// full, and gives the blocks back to the kernel. Returns the number of frames read, and
    /// counts in `oversized` those too large for a buffer.
    pub fn drain(
        &mut self,
        batch: &mut Batch,
        oversized: &mut u64,
        mut flush: impl FnMut(&mut Batch),
    ) -> usize {
        let mut total = 0;
        for _ in 0..self.block_count {
            let block = self.block_ptr(self.next_block);
            if read_u32(block, BLOCK_STATUS) & TP_STATUS_USER == 0 {
                break;
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            let count = read_u32(block, BLOCK_NUM_PKTS) as usize;
            let mut offset = read_u32(block, BLOCK_FIRST_PKT) as usize;
            for _ in 0..count {
                if offset + TPACKET3_HDRLEN + 12 > self.block_size {
                    break;
                }
                // SAFETY: `offset` was checked to leave room for the header and address.
                let header = unsafe { block.add(offset) };
                let snaplen = read_u32(header, PKT_SNAPLEN) as usize;
                let mac = usize::from(read_u16(header, PKT_MAC));
                let status = read_u32(header, PKT_STATUS);
                let protocol = u16::from_be(read_u16(header, TPACKET3_HDRLEN + SLL_PROTOCOL));
                // SAFETY: the address follows the header inside the block.
                let packet_type = unsafe { *header.add(TPACKET3_HDRLEN + SLL_PKTTYPE) };
                if offset + mac + snaplen <= self.block_size {
                    // SAFETY: the frame lies inside the block (checked above).
                    let frame = unsafe { std::slice::from_raw_parts(header.add(mac), snaplen) };
                    if batch.is_full() {
                        flush(batch);
                    }
                    let mut meta = PacketMeta::new(self.port, packet_type, protocol);
                    meta.checksum_pending = status & TP_STATUS_CSUMNOTREADY != 0;
                    let pushed = if status & TP_STATUS_VLAN_VALID != 0 && frame.len() >= 12 {
                        let tci = read_u32(header, PKT_VLAN_TCI) as u16;
                        let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                            read_u16(header, PKT_VLAN_TPID)
                        } else {
                            crate::wire::EtherType::VLAN
                        };
                        batch.push_with_vlan(frame, tpid, tci, meta)
                    } else {
                        batch.push(frame, meta)
                    };
                    if !pushed {
                        *oversized += 1;
                    }
                    total += 1;
                }
                let next = read_u32(header, PKT_NEXT_OFFSET) as usize;
                if next == 0 {
                    break;
                }
                offset += next;
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            // SAFETY: hands the block back by writing its status word.
            unsafe {
                std::ptr::write_volatile(block.add(BLOCK_STATUS).cast::<u32>(), TP_STATUS_KERNEL)
            };
            self.next_block = (self.next_block + 1) % self.block_count;
        }
        total
    }
}

/// Frames sent with one system call at most.
pub const MAX_TX_BATCH: usize = 256;

/// A socket that sends frames out of one interface, a batch per `sendmmsg`.
pub struct TxSocket {
    fd: OwnedFd,
    ifindex: i32,
    addrs: Vec<libc::sockaddr_ll>,
    iovecs: Vec<libc::iovec>,
    messages: Vec<libc::mmsghdr>,
}

// SAFETY: the scratch vectors hold pointers only during `send_batch`, which takes `&mut self`.
unsafe impl Send for TxSocket {}

impl TxSocket {
    /// Opens a transmit socket on interface `ifindex` (bypassing the qdisc layer).
    pub fn open(name: &str, ifindex: i32) -> Result<Self, IoError> {
        let setup = |what: &str, source| IoError::Setup {
            what: format!("AF_PACKET send socket on {name}: {what}"),
            source,
        };
        let fd = packet_socket().map_err(|e| setup("socket", e))?;
        let _ = setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &1i32);
        bind(&fd, ifindex, 0).map_err(|e| setup("bind", e))?;
        Ok(Self {
            fd,
            ifindex,
            addrs: Vec::with_capacity(MAX_TX_BATCH),
            iovecs: Vec::with_capacity(MAX_TX_BATCH),
            messages: Vec::with_capacity(MAX_TX_BATCH),
        })
    }

    /// Sends the packets of `batch` whose verdict is to transmit on `port`, `MAX_TX_BATCH` per
    /// system call; for layer-3 devices the packet's protocol becomes the GRE protocol type.
    /// Returns (accepted, attempted).
    pub fn send_from_batch(&mut self, batch: &Batch, port: PortId) -> (usize, usize) {
        let mut accepted = 0;
        let mut attempted = 0;
        let mut frames = batch
            .iter()
            .filter(|(_, meta)| meta.verdict == Verdict::Transmit(port))
            .map(|(buf, meta)| (buf.as_slice(), meta.protocol))
            .peekable();
        while frames.peek().is_some() {
            self.addrs.clear();
            self.iovecs.clear();
            self.messages.clear();
            for (frame, protocol) in frames.by_ref().take(MAX_TX_BATCH) {
                // SAFETY: a zeroed sockaddr_ll is valid; the fields that matter are set.
                let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_protocol = protocol.to_be();
                addr.sll_ifindex = self.ifindex;
                self.addrs.push(addr);
                self.iovecs.push(libc::iovec {
                    iov_base: frame.as_ptr() as *mut libc::c_void,
                    iov_len: frame.len(),
                });
            }
            for (addr, iov) in self.addrs.iter_mut().zip(self.iovecs.iter_mut()) {
                // SAFETY: a zeroed mmsghdr is valid; the pointers set here outlive the call.
                let mut message: libc::mmsghdr = unsafe { std::mem::zeroed() };
                message.msg_hdr.msg_name = (addr as *mut libc::sockaddr_ll).cast();
                message.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                message.msg_hdr.msg_iov = iov;
                message.msg_hdr.msg_iovlen = 1;
                self.messages.push(message);
            }
            attempted += self.messages.len();
            let mut offset = 0;
            while offset < self.messages.len() {
                // SAFETY: `messages[offset..]` are valid entries pointing at live buffers.
                let ret = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        self.messages.as_mut_ptr().add(offset),
                        (self.messages.len() - offset) as libc::c_uint,
                        0,
                    )
                };
                if ret <= 0 {
                    // Skip the frame the kernel refused (too large, queue full) and go on.
                    offset += 1;
                    continue;
                }
                offset += ret as usize;
                accepted += ret as usize;
            }
        }
        (accepted, attempted)
    }
}

/// True for link-layer packet types the pipeline wants to see.
pub fn is_received(packet_type: u8) -> bool {
    packet_type != pkt_type::OUTGOING
}

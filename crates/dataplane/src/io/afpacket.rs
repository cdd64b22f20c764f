//! AF_PACKET sockets: a TPACKET_V3 receive ring (the kernel fills whole blocks of frames; one
//! `poll` wakes the reader for many packets), a TPACKET_V2 transmit ring (frames are written
//! into memory shared with the kernel and a batch leaves with one `send` that carries no data),
//! and a transmit socket that sends a batch with one `sendmmsg` (layer-3 devices, whose frames
//! need a protocol each, and the fallback when a ring cannot be set up).

use super::{cvt, netdev, setsockopt, FrameLimit, IoError, Mapping, ETH_HLEN, VLAN_HLEN};
use crate::packet::BUFFER_SIZE;
use crate::pipeline::{pkt_type, Batch, LinkKind, PacketMeta, PortId, Verdict};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETH_P_ALL: u16 = 0x0003;
const TPACKET_V2: libc::c_int = 1;
const TPACKET_V3: libc::c_int = 2;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_CPU: u32 = 2;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_LOSS: libc::c_int = 14;
const PACKET_VNET_HDR: libc::c_int = 15;
const SO_SNDBUFFORCE: libc::c_int = 32;
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
    /// 64 blocks of 256 KiB (16 MiB). A block is handed over when full or after 1 ms, so the
    /// ring absorbs a reader stall of 64 ms at moderate rates and of ~100 000 minimum-size
    /// frames at high rates; with 16 blocks a 16 ms wait for a CPU already overran it.
    fn default() -> Self {
        Self {
            block_size: 1 << 18,
            block_count: 64,
            block_timeout_ms: 1,
        }
    }
}

/// What the kernel counted on a receive ring since the previous [`RxRing::take_statistics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Frames that reached the socket, dropped ones included.
    pub packets: u32,
    /// Frames dropped because no block was free (the reader was behind).
    pub drops: u32,
    /// Times the ring filled up and the kernel stopped queueing until a block came back.
    pub freezes: u32,
}

#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
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
    // Before `fd`: the ring is unmapped before the socket closes.
    map: Mapping,
    fd: OwnedFd,
    block_size: usize,
    block_count: usize,
    next_block: usize,
    port: PortId,
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
        let map = Mapping::ring(&fd, map_len, 0, false).map_err(|e| setup("mmap", e))?;
        let ring = Self {
            map,
            fd,
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

    /// The port its frames are tagged with.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// Reads and resets the kernel's counters of this ring (`PACKET_STATISTICS`).
    pub fn take_statistics(&self) -> io::Result<RingStats> {
        let mut stats = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: passes a buffer of `len` bytes, which the kernel fills and shrinks `len` to.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&mut stats as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        })?;
        Ok(RingStats {
            packets: stats.packets,
            drops: stats.drops,
            freezes: stats.freeze_q_cnt,
        })
    }

    /// Makes this ring a member of a `PACKET_FANOUT` group that spreads the interface's frames
    /// over its members by the CPU that received them, so a flow received on one CPU stays in
    /// order. `group` is `None` for the first member: the kernel picks an id unused in the
    /// network namespace, which this returns for the other members to join with.
    pub fn join_fanout(&self, group: Option<u16>) -> io::Result<u16> {
        let arg = match group {
            None => (PACKET_FANOUT_CPU | PACKET_FANOUT_FLAG_UNIQUEID) << 16,
            Some(id) => PACKET_FANOUT_CPU << 16 | u32::from(id),
        };
        setsockopt(&self.fd, libc::SOL_PACKET, PACKET_FANOUT, &arg)?;
        let mut value = 0u32;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: passes a 4-byte buffer; the kernel writes the group id, type and flags.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_FANOUT,
                (&mut value as *mut u32).cast(),
                &mut len,
            )
        })?;
        Ok(value as u16)
    }

    /// True when the next block is ready.
    pub fn has_data(&self) -> bool {
        let block = self.block_ptr(self.next_block);
        read_u32(block, BLOCK_STATUS) & TP_STATUS_USER != 0
    }

    fn block_ptr(&self, index: usize) -> *mut u8 {
        // SAFETY: `index < block_count`, so the offset is inside the mapping.
        unsafe { self.map.as_ptr().add(index * self.block_size) }
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
        // Room for a whole batch of skbs in flight; the default (208 KiB) is about 256 of them.
        set_send_buffer(&fd, MAX_TX_BATCH * (BUFFER_SIZE + SKB_OVERHEAD));
        bind(&fd, ifindex, 0).map_err(|e| setup("bind", e))?;
        Ok(Self {
            fd,
            ifindex,
            addrs: Vec::with_capacity(MAX_TX_BATCH),
            iovecs: Vec::with_capacity(MAX_TX_BATCH),
            messages: Vec::with_capacity(MAX_TX_BATCH),
        })
    }

    /// Sends one frame with protocol `protocol` (one `sendto`). Returns whether the kernel took it.
    pub fn send_frame(&mut self, frame: &[u8], protocol: u16) -> bool {
        // SAFETY: a zeroed sockaddr_ll is valid; the fields that matter are set.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol.to_be();
        addr.sll_ifindex = self.ifindex;
        // SAFETY: the frame and the address are valid for the duration of the call.
        let ret = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        ret >= 0
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

/// Bytes the kernel charges to the send buffer for one skb beyond the frame (head and shared
/// info, rounded up).
const SKB_OVERHEAD: usize = 1024;

/// Raises the socket's send buffer to `bytes` (beyond `wmem_max` when the process may), so
/// that a full batch or ring of frames in flight never makes the kernel refuse one.
fn set_send_buffer(fd: &OwnedFd, bytes: usize) {
    let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    if setsockopt(fd, libc::SOL_SOCKET, SO_SNDBUFFORCE, &bytes).is_err() {
        let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &bytes);
    }
}

#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
/// Offset of `tp_len` in `struct tpacket2_hdr`.
const TX_LEN: usize = 4;
/// Where a TPACKET_V2 transmit slot's data starts: after the 32-byte `tpacket2_hdr` (the
/// kernel's `tp_hdrlen - sizeof(struct sockaddr_ll)`).
const TX_DATA_OFFSET: usize = 32;
/// `struct virtio_net_hdr` before each frame (`PACKET_VNET_HDR`): flags, gso_type, hdr_len,
/// gso_size, csum_start, csum_offset.
const VNET_HDR_LEN: usize = 10;
/// Offset of `hdr_len` (little-endian) in the virtio header.
const VNET_HDR_LEN_FIELD: usize = 2;
/// Where the frame itself starts in a slot.
const TX_FRAME_OFFSET: usize = TX_DATA_OFFSET + VNET_HDR_LEN;
const TX_MIN_FRAME_SIZE: usize = 2048;
const TX_BLOCK_SIZE: usize = 1 << 16;

/// Size of a transmit ring.
#[derive(Debug, Clone, Copy)]
pub struct TxRingConfig {
    /// Frame slots (rounded up to whole blocks of 64 KiB). A slot is 2 KiB, or more when the
    /// interface's MTU needs it.
    pub frames: u32,
}

impl Default for TxRingConfig {
    /// 1024 slots: four batches of 256 while the kernel still holds the previous ones.
    fn default() -> Self {
        Self { frames: 1024 }
    }
}

fn align16(value: usize) -> usize {
    (value + 15) & !15
}

/// A TPACKET_V2 transmit ring (`PACKET_TX_RING`, qdisc bypassed) on one Ethernet interface.
///
/// Frames are copied into slots shared with the kernel and marked ready; one `send` without
/// data (`MSG_DONTWAIT`) makes the kernel transmit every ready slot in order. The kernel gives a
/// slot back when the skb built from it is freed (for a veth, once the peer has received it).
///
/// Each slot starts with a virtio-net header (`PACKET_VNET_HDR`) whose `hdr_len` is the whole
/// frame, so the kernel copies the frame into the skb's linear area. Without it the kernel
/// copies only the Ethernet header and attaches the rest as a page of the ring, and a veth
/// (like every path that loops a frame back to a receive path) then allocates a page per
/// frame to copy that fragment out of the ring again: slower for any frame size.
/// A frame is refused (and the caller counts it) when the next slot is still held after a
/// kick (the ring is full), or when it is longer than the interface's MTU allows. The kernel
/// does not check the MTU of ring frames that carry a virtio-net header (they could be GSO
/// frames), so this check is the only one, and it must use the MTU as it is now: the worker
/// passes link notifications on with [`TxRing::set_mtu`]. With `PACKET_LOSS` set, the kernel
/// skips a slot it cannot send instead of stopping the ring. Frames that do not fit a slot
/// (the MTU was raised after opening) go out through a `sendto` socket, after the slots
/// queued before them.
pub struct TxRing {
    // Before `fd`: the ring is unmapped before the socket closes.
    map: Mapping,
    fd: OwnedFd,
    name: String,
    ifindex: i32,
    block_size: usize,
    frame_size: usize,
    frames_per_block: usize,
    frame_count: usize,
    next: usize,
    limit: FrameLimit,
    fallback: TxSocket,
}

impl TxRing {
    /// Opens a transmit ring on Ethernet interface `name` (index `ifindex`).
    pub fn open(name: &str, ifindex: i32, config: TxRingConfig) -> Result<Self, IoError> {
        let setup = |what: &str, source| IoError::Setup {
            what: format!("AF_PACKET transmit ring on {name}: {what}"),
            source,
        };
        let dev = netdev::NetDev::lookup(name)?;
        if dev.link != LinkKind::Ethernet {
            return Err(setup(
                "link type",
                io::Error::new(io::ErrorKind::Unsupported, "not an Ethernet interface"),
            ));
        }
        let fd = packet_socket().map_err(|e| setup("socket", e))?;
        let mtu = netdev::mtu_by_index(&fd, ifindex).map_err(|e| setup("MTU", e))?;
        let frame_size = align16(TX_FRAME_OFFSET + mtu as usize + ETH_HLEN + VLAN_HLEN)
            .clamp(TX_MIN_FRAME_SIZE, align16(TX_FRAME_OFFSET + BUFFER_SIZE));
        let frames_per_block = TX_BLOCK_SIZE / frame_size;
        let block_count = (config.frames.max(1) as usize).div_ceil(frames_per_block);
        let frame_count = frames_per_block * block_count;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V2)
            .map_err(|e| setup("TPACKET_V2", e))?;
        setsockopt(&fd, libc::SOL_PACKET, PACKET_LOSS, &1i32)
            .map_err(|e| setup("PACKET_LOSS", e))?;
        setsockopt(&fd, libc::SOL_PACKET, PACKET_VNET_HDR, &1i32)
            .map_err(|e| setup("PACKET_VNET_HDR", e))?;
        let _ = setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &1i32);
        set_send_buffer(&fd, frame_count * (frame_size + SKB_OVERHEAD));
        let req = TpacketReq {
            block_size: TX_BLOCK_SIZE as u32,
            block_nr: block_count as u32,
            frame_size: frame_size as u32,
            frame_nr: frame_count as u32,
        };
        setsockopt(&fd, libc::SOL_PACKET, PACKET_TX_RING, &req)
            .map_err(|e| setup("PACKET_TX_RING", e))?;
        let map = Mapping::ring(&fd, TX_BLOCK_SIZE * block_count, 0, false)
            .map_err(|e| setup("mmap", e))?;
        let ring = Self {
            map,
            fd,
            name: name.to_string(),
            ifindex,
            block_size: TX_BLOCK_SIZE,
            frame_size,
            frames_per_block,
            frame_count,
            next: 0,
            limit: FrameLimit::new(mtu),
            fallback: TxSocket::open(name, ifindex)?,
        };
        bind(&ring.fd, ifindex, 0).map_err(|e| setup("bind", e))?;
        Ok(ring)
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.frame_count
    }

    /// Longest frame a slot holds.
    pub fn slot_capacity(&self) -> usize {
        self.frame_size - TX_FRAME_OFFSET
    }

    fn slot(&self, index: usize) -> *mut u8 {
        let offset = index / self.frames_per_block * self.block_size
            + index % self.frames_per_block * self.frame_size;
        // SAFETY: `index < frame_count`, so the slot lies inside the mapping.
        unsafe { self.map.as_ptr().add(offset) }
    }

    fn held_by_kernel(&self, index: usize) -> bool {
        read_u32(self.slot(index), 0) & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0
    }

    /// Slots the kernel has not given back yet (queued or being sent).
    pub fn in_flight(&self) -> usize {
        (0..self.frame_count)
            .filter(|&index| self.held_by_kernel(index))
            .count()
    }

    /// Asks the kernel to send every ready slot (it does not wait for them to complete).
    fn kick(&self) {
        // SAFETY: send(2) without data on a socket with a transmit ring.
        unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
    }

    /// Kicks the kernel again if the last queued slot has not been taken (an earlier send met
    /// a full send buffer or a link without carrier). Returns whether slots are still waiting.
    pub fn flush(&mut self) -> bool {
        let last = (self.next + self.frame_count - 1) % self.frame_count;
        if read_u32(self.slot(last), 0) & TP_STATUS_SEND_REQUEST == 0 {
            return false;
        }
        self.kick();
        read_u32(self.slot(last), 0) & TP_STATUS_SEND_REQUEST != 0
    }

    /// Reads the interface's MTU again (frames are checked against it before they are queued).
    pub fn refresh_mtu(&mut self) -> Result<(), IoError> {
        let mtu =
            netdev::mtu_by_index(&self.fd, self.ifindex).map_err(|source| IoError::Interface {
                name: self.name.clone(),
                source,
            })?;
        self.set_mtu(mtu);
        Ok(())
    }

    /// Takes the interface's MTU as `mtu` (from a link notification).
    pub fn set_mtu(&mut self, mtu: u32) {
        self.limit = FrameLimit::new(mtu);
    }

    /// The interface's kernel index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Queues the packets of `batch` whose verdict is to transmit on `port` and kicks the kernel
    /// once. Returns (accepted, attempted).
    pub fn send_from_batch(&mut self, batch: &Batch, port: PortId) -> (usize, usize) {
        let mut accepted = 0;
        let mut attempted = 0;
        let mut queued = 0;
        let mut kicked_when_full = false;
        for (buf, meta) in batch.iter() {
            if meta.verdict != Verdict::Transmit(port) {
                continue;
            }
            attempted += 1;
            let frame = buf.as_slice();
            if !self.limit.allows(frame) {
                continue;
            }
            if frame.len() > self.slot_capacity() {
                if queued > 0 {
                    self.kick();
                    queued = 0;
                }
                accepted += usize::from(self.fallback.send_frame(frame, meta.protocol));
                continue;
            }
            if self.held_by_kernel(self.next) {
                if kicked_when_full {
                    continue;
                }
                // Full: let the kernel take what is queued, then look again.
                self.kick();
                queued = 0;
                kicked_when_full = true;
                if self.held_by_kernel(self.next) {
                    continue;
                }
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            let slot = self.slot(self.next);
            let mut vnet = [0u8; VNET_HDR_LEN];
            vnet[VNET_HDR_LEN_FIELD..VNET_HDR_LEN_FIELD + 2]
                .copy_from_slice(&(frame.len() as u16).to_le_bytes());
            // SAFETY: the slot is ours (status AVAILABLE); the virtio header and `frame` fit
            // after the slot's header (checked against `slot_capacity`).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    vnet.as_ptr(),
                    slot.add(TX_DATA_OFFSET),
                    VNET_HDR_LEN,
                );
                std::ptr::copy_nonoverlapping(
                    frame.as_ptr(),
                    slot.add(TX_FRAME_OFFSET),
                    frame.len(),
                );
                std::ptr::write_volatile(
                    slot.add(TX_LEN).cast::<u32>(),
                    (VNET_HDR_LEN + frame.len()) as u32,
                );
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            // SAFETY: hands the slot to the kernel by writing its status word.
            unsafe { std::ptr::write_volatile(slot.cast::<u32>(), TP_STATUS_SEND_REQUEST) };
            self.next = (self.next + 1) % self.frame_count;
            queued += 1;
            accepted += 1;
        }
        if queued > 0 {
            self.kick();
        }
        (accepted, attempted)
    }
}

/// True for link-layer packet types the pipeline wants to see.
pub fn is_received(packet_type: u8) -> bool {
    packet_type != pkt_type::OUTGOING
}

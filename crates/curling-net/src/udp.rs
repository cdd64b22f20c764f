//! Batched UDP I/O for the shells: `recvmmsg`/`sendmmsg` on a non-blocking socket driven by
//! tokio's readiness (`AsyncFd`), so one wake-up moves up to [`MAX_BATCH`] messages.
//!
//! On top of batching, runs of equal-size datagrams to the same destination (a content's chunks
//! to one next hop) leave as one UDP GSO send (`UDP_SEGMENT`), and sockets ask for UDP GRO
//! (`UDP_GRO`), so coalesced segments arrive as one buffer and are split here. Both fall back
//! to plain datagrams when the kernel refuses them.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use tokio::io::unix::AsyncFd;

/// Datagrams moved per system call at most.
pub const MAX_BATCH: usize = 32;
/// Receive buffer per message (a GRO message can hold up to 64 KiB of segments); longer
/// datagrams are reported truncated (and dropped).
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Receive buffers (messages per `recvmmsg`).
const RECV_SLOTS: usize = 16;
/// Most segments in one GSO send (the kernel's limit is 64).
const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send.
const MAX_GSO_BYTES: usize = 65_000;
/// Space for one cmsg carrying a u16/int (aligned, generous).
const CMSG_BUF: usize = 32;
/// Socket buffer size requested (the kernel caps it at `net.core.[rw]mem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to one IPv4 endpoint, with batched receive and send.
#[derive(Debug)]
pub struct BatchSocket {
    fd: AsyncFd<UdpSocket>,
    local: SocketAddrV4,
    gso: std::sync::atomic::AtomicBool,
}

/// Receive buffers and what the last [`BatchSocket::recv`] filled in.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    /// One entry per datagram: buffer index, byte range, sender, truncated.
    meta: Vec<(usize, std::ops::Range<usize>, SocketAddrV4, bool)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: (0..RECV_SLOTS)
                .map(|_| vec![0u8; MAX_DATAGRAM].into_boxed_slice())
                .collect(),
            meta: Vec::with_capacity(RECV_SLOTS * 4),
        }
    }
}

impl RecvBatch {
    /// The received datagrams: sender, bytes, and whether the datagram was truncated.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddrV4, &[u8], bool)> {
        self.meta.iter().map(|(slot, range, from, truncated)| {
            let bytes = self.bufs[*slot].get(range.clone()).unwrap_or(&[]);
            (*from, bytes, *truncated)
        })
    }

    /// How many datagrams the last receive returned.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True when nothing was received.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }
}

/// Datagrams waiting to be sent; buffers are reused across batches.
#[derive(Default)]
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<SocketAddrV4>,
    len: usize,
}

impl SendBatch {
    /// Queues a copy of `bytes` to `to` and returns the copy for in-place edits.
    pub fn push(&mut self, to: SocketAddrV4, bytes: &[u8]) -> &mut [u8] {
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(bytes.len()));
            self.dests.push(to);
        }
        let buf = &mut self.bufs[self.len];
        buf.clear();
        buf.extend_from_slice(bytes);
        self.dests[self.len] = to;
        self.len += 1;
        &mut self.bufs[self.len - 1]
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the queued datagrams (keeps the buffers).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

fn to_sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut raw: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    raw.sin_family = libc::AF_INET as libc::sa_family_t;
    raw.sin_port = addr.port().to_be();
    raw.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    raw
}

fn from_sockaddr(raw: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr)),
        u16::from_be(raw.sin_port),
    )
}

impl BatchSocket {
    /// Binds `addr` (non-blocking, large socket buffers). Must run inside a tokio runtime.
    pub fn bind(addr: SocketAddrV4) -> io::Result<Self> {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: smaller buffers only mean more loss under load, which clients repair.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.set_nonblocking(true)?;
        // Best effort: without GRO every datagram simply arrives on its own.
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        socket.bind(&std::net::SocketAddr::V4(addr).into())?;
        let socket: UdpSocket = socket.into();
        let local = match socket.local_addr()? {
            std::net::SocketAddr::V4(local) => local,
            std::net::SocketAddr::V6(_) => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "IPv4 only"))
            }
        };
        // SAFETY: the AsyncFd owns `socket`, an open UDP socket whose descriptor stays the
        // same until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(Self {
            fd,
            local,
            gso: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Waits for datagrams and receives up to [`MAX_BATCH`] of them in one call.
    pub async fn recv(&self, batch: &mut RecvBatch) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| recv_batch(inner.get_ref().as_raw_fd(), batch)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends every queued datagram, waiting while the socket buffer is full. Datagrams the
    /// kernel refuses individually are skipped, not retried.
    pub async fn send(&self, batch: &SendBatch) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        let mut sent = 0;
        while sent < batch.len {
            let gso = self.gso.load(Ordering::Relaxed);
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| {
                send_batch(
                    inner.get_ref().as_raw_fd(),
                    &batch.dests[sent..batch.len],
                    &batch.bufs[sent..batch.len],
                    gso,
                )
            }) {
                Ok(Ok(count)) => sent += count.max(1),
                Ok(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(Err(err))
                    if gso
                        && matches!(
                            err.raw_os_error(),
                            Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                        ) =>
                {
                    tracing::debug!(%err, "UDP GSO refused; sending datagrams one by one");
                    self.gso.store(false, Ordering::Relaxed);
                }
                Ok(Err(err)) => {
                    tracing::debug!(%err, to = %batch.dests[sent], "datagram not sent");
                    sent += 1;
                }
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

fn recv_batch(fd: i32, batch: &mut RecvBatch) -> io::Result<()> {
    batch.meta.clear();
    let count = batch.bufs.len().min(RECV_SLOTS);
    // SAFETY: zeroed sockaddr_in / iovec / mmsghdr are valid; every pointer stored below points
    // into these stack arrays or into `batch.bufs`, all of which outlive the recvmmsg call.
    let mut addrs: [libc::sockaddr_in; RECV_SLOTS] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; RECV_SLOTS] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; RECV_SLOTS] = unsafe { std::mem::zeroed() };
    let mut controls = [[0u64; CMSG_BUF / 8]; RECV_SLOTS];
    for i in 0..count {
        iovs[i].iov_base = batch.bufs[i].as_mut_ptr().cast();
        iovs[i].iov_len = batch.bufs[i].len();
        hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
        hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
        hdrs[i].msg_hdr.msg_control = controls[i].as_mut_ptr().cast();
        hdrs[i].msg_hdr.msg_controllen = CMSG_BUF as _;
    }
    // SAFETY: `hdrs[..count]` is initialised as above.
    let received = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    for (i, hdr) in hdrs.iter().enumerate().take(received as usize) {
        let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let len = (hdr.msg_len as usize).min(batch.bufs[i].len());
        let from = from_sockaddr(&addrs[i]);
        let segment = gro_segment_size(&hdr.msg_hdr).filter(|size| *size > 0 && *size < len);
        match segment {
            Some(size) if !truncated => {
                let mut start = 0;
                while start < len {
                    let end = (start + size).min(len);
                    batch.meta.push((i, start..end, from, false));
                    start = end;
                }
            }
            _ => batch.meta.push((i, 0..len, from, truncated)),
        }
    }
    Ok(())
}

/// The GRO segment size the kernel reported for a coalesced message, if any.
fn gro_segment_size(msg: &libc::msghdr) -> Option<usize> {
    // SAFETY: `msg` was filled by recvmmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_control and
    // return null at its end; the data of a SOL_UDP/UDP_GRO cmsg is a c_int.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
                return usize::try_from(data.read_unaligned()).ok();
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// Sends up to [`MAX_BATCH`] messages; with `gso`, each message is a run of equal-size
/// datagrams to one destination (the last may be shorter) sent as UDP GSO segments. Returns how
/// many datagrams were sent.
fn send_batch(fd: i32, dests: &[SocketAddrV4], bufs: &[Vec<u8>], gso: bool) -> io::Result<usize> {
    const MAX_IOVS: usize = 512;
    let total = dests.len().min(bufs.len());
    // Group datagrams into messages: (first datagram, datagram count, segment size).
    let mut groups: [(usize, usize, usize); MAX_BATCH] = [(0, 0, 0); MAX_BATCH];
    let mut group_count = 0;
    let mut at = 0;
    while at < total && group_count < MAX_BATCH && at < MAX_IOVS {
        let size = bufs[at].len();
        let mut run = 1;
        let mut bytes = size;
        if gso {
            while at + run < total
                && at + run < MAX_IOVS
                && run < MAX_SEGMENTS
                && dests[at + run] == dests[at]
                && bufs[at + run].len() <= size
                && bytes + bufs[at + run].len() <= MAX_GSO_BYTES
            {
                bytes += bufs[at + run].len();
                run += 1;
                if bufs[at + run - 1].len() < size {
                    break; // only the last segment may be shorter
                }
            }
        }
        groups[group_count] = (at, run, size);
        group_count += 1;
        at += run;
    }
    let mut addrs: [MaybeUninit<libc::sockaddr_in>; MAX_BATCH] =
        [const { MaybeUninit::uninit() }; MAX_BATCH];
    // SAFETY: zeroed iovec / mmsghdr are valid; pointers set below point into `addrs`, `iovs`,
    // `controls` and `bufs`, which outlive the sendmmsg call; the kernel only reads them.
    let mut iovs: [libc::iovec; MAX_IOVS] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut controls = [[0u64; CMSG_BUF / 8]; MAX_BATCH];
    for (g, &(first, run, size)) in groups.iter().enumerate().take(group_count) {
        for k in 0..run {
            iovs[first + k].iov_base = bufs[first + k].as_ptr() as *mut libc::c_void;
            iovs[first + k].iov_len = bufs[first + k].len();
        }
        let addr = addrs[g].write(to_sockaddr(dests[first]));
        let hdr = &mut hdrs[g].msg_hdr;
        hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
        hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        hdr.msg_iov = &mut iovs[first];
        hdr.msg_iovlen = run as _;
        if run > 1 {
            hdr.msg_control = controls[g].as_mut_ptr().cast();
            // SAFETY: the control buffer holds CMSG_SPACE(u16) bytes (checked by the const
            // assertion below); CMSG_FIRSTHDR on it is non-null and its data fits a u16.
            unsafe {
                hdr.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as _;
                let cmsg = libc::CMSG_FIRSTHDR(hdr);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                (libc::CMSG_DATA(cmsg) as *mut u16).write_unaligned(size as u16);
            }
        }
    }
    // SAFETY: `hdrs[..group_count]` is initialised as above.
    let sent = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), group_count as libc::c_uint, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(groups[..sent as usize].iter().map(|(_, run, _)| run).sum())
}

const _: () = assert!(
    CMSG_BUF >= 24,
    "control buffer too small for one u16/int cmsg"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_round_trip_on_loopback() {
        let a = BatchSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = BatchSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut out = SendBatch::default();
        for i in 0..40u8 {
            // Equal sizes except every 7th, so runs, short last segments and singles all occur.
            let len = if i % 7 == 6 { 4 } else { 10 };
            out.push(b.local_addr(), &vec![i; len])[0] = 200 + (i % 50);
        }
        a.send(&out).await.unwrap();
        let mut seen = Vec::new();
        let mut batch = RecvBatch::default();
        while seen.len() < 40 {
            b.recv(&mut batch).await.unwrap();
            for (from, bytes, truncated) in batch.iter() {
                assert_eq!(from, a.local_addr());
                assert!(!truncated);
                let i = bytes[1];
                assert_eq!(bytes.len(), if i % 7 == 6 { 4 } else { 10 });
                seen.push(i);
            }
        }
        assert_eq!(seen, (0..40).collect::<Vec<u8>>());
    }
}

//! Batched UDP sockets for brasa's tokio shells (the role quinn-udp plays for quinn):
//! `recvmmsg(2)`/`sendmmsg(2)` on a non-blocking socket driven by tokio's readiness
//! ([`AsyncFd`]), so one wake-up moves up to [`MAX_BATCH`] messages, for IPv4 and IPv6.
//!
//! On top of batching, runs of equal-size datagrams to one destination leave as one UDP GSO
//! send (`UDP_SEGMENT`), and sockets may ask for UDP GRO (`UDP_GRO`), so that coalesced
//! segments arrive as one buffer and are split here. Both fall back to plain datagrams when the
//! kernel refuses them. This crate holds all the socket `unsafe` of brasa's UDP shells.
#![warn(missing_docs)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::unix::AsyncFd;

/// Messages moved per system call at most.
pub const MAX_BATCH: usize = 32;
/// Receive buffer per message of a default [`RecvBatch`] (a GRO message can hold up to 64 KiB
/// of segments); longer datagrams are reported truncated.
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Receive buffers of a default [`RecvBatch`].
const DEFAULT_RECV_SLOTS: usize = 16;
/// Most segments in one GSO send (the kernel's limit is 64).
const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send.
const MAX_GSO_BYTES: usize = 65_000;
/// Most datagrams (iovecs) one `sendmmsg` call carries.
const MAX_IOVS: usize = 512;
/// Space for one cmsg carrying a u16/int (aligned, generous).
const CMSG_BUF: usize = 32;

const _: () = assert!(
    CMSG_BUF >= 24,
    "control buffer too small for one u16/int cmsg"
);

/// How a [`BatchSocket`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Kernel receive and send buffer size asked for (capped by `net.core.[rw]mem_max`): bursts
    /// must queue rather than be dropped.
    pub socket_buffer: usize,
    /// Ask the kernel to coalesce received segments (UDP GRO); receive buffers then need
    /// [`MAX_DATAGRAM`] octets each.
    pub gro: bool,
    /// Send runs of equal-size datagrams to one destination as UDP GSO segments.
    pub gso: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket_buffer: 4 << 20,
            gro: true,
            gso: true,
        }
    }
}

/// A UDP socket bound to one endpoint (IPv4 or IPv6), with batched receive and send.
#[derive(Debug)]
pub struct BatchSocket {
    fd: AsyncFd<UdpSocket>,
    local: SocketAddr,
    gso: AtomicBool,
}

/// Receive buffers and what the last [`BatchSocket::recv`] filled in.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    /// One entry per datagram: buffer index, byte range, sender, truncated.
    meta: Vec<(usize, Range<usize>, SocketAddr, bool)>,
    /// Kernel messages the last receive returned (fewer than datagrams when GRO coalesced).
    messages: usize,
}

impl Default for RecvBatch {
    /// 16 buffers of [`MAX_DATAGRAM`] octets: what a socket with GRO needs.
    fn default() -> Self {
        RecvBatch::new(DEFAULT_RECV_SLOTS, MAX_DATAGRAM)
    }
}

impl RecvBatch {
    /// `slots` buffers (at most [`MAX_BATCH`] are used) of `buffer_len` octets each; longer
    /// datagrams arrive cut to `buffer_len` and flagged truncated.
    pub fn new(slots: usize, buffer_len: usize) -> Self {
        let slots = slots.clamp(1, MAX_BATCH);
        RecvBatch {
            bufs: (0..slots)
                .map(|_| vec![0u8; buffer_len].into_boxed_slice())
                .collect(),
            meta: Vec::with_capacity(slots * 4),
            messages: 0,
        }
    }

    /// The received datagrams: sender, bytes, and whether the datagram was truncated.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8], bool)> {
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

    /// How many kernel messages the last receive returned: fewer than [`RecvBatch::len`] when
    /// GRO coalesced segments.
    pub fn messages(&self) -> usize {
        self.messages
    }
}

/// Datagrams waiting to be sent; buffers are reused across batches.
#[derive(Default)]
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<SocketAddr>,
    len: usize,
}

impl SendBatch {
    /// Queues a copy of `bytes` to `to` and returns the copy for in-place edits.
    pub fn push(&mut self, to: impl Into<SocketAddr>, bytes: &[u8]) -> &mut [u8] {
        let buf = self.slot(to.into());
        buf.clear();
        buf.extend_from_slice(bytes);
        buf
    }

    /// Queues `bytes` to `to` without copying them.
    pub fn push_owned(&mut self, to: impl Into<SocketAddr>, bytes: Vec<u8>) {
        *self.slot(to.into()) = bytes;
    }

    fn slot(&mut self, to: SocketAddr) -> &mut Vec<u8> {
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::new());
            self.dests.push(to);
        }
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

/// A socket address in the kernel's form, and its length.
fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let length = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in, and the
            // reference does not outlive `storage`.
            let out = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for a sockaddr_in6.
            let out = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = v6.port().to_be();
            out.sin6_addr.s6_addr = v6.ip().octets();
            out.sin6_flowinfo = v6.flowinfo();
            out.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, length as libc::socklen_t)
}

/// The address the kernel wrote, if it is an IP one (a UDP socket reports nothing else).
fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET; sockaddr_storage is large and
            // aligned enough for it.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for a sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sets a boolean socket option; false when the kernel refuses it.
fn set_flag(socket: &socket2::Socket, level: libc::c_int, option: libc::c_int) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

impl BatchSocket {
    /// Binds `addr` with the default [`Config`] (4 MiB buffers, GRO asked for, GSO used). Must
    /// run inside a tokio runtime.
    pub fn bind(addr: impl Into<SocketAddr>) -> io::Result<Self> {
        Self::bind_with(addr, Config::default())
    }

    /// Binds `addr` (non-blocking) as `config` says. Must run inside a tokio runtime.
    pub fn bind_with(addr: impl Into<SocketAddr>, config: Config) -> io::Result<Self> {
        let addr = addr.into();
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: smaller buffers only mean more loss under a burst.
        let _ = socket.set_recv_buffer_size(config.socket_buffer);
        let _ = socket.set_send_buffer_size(config.socket_buffer);
        socket.set_nonblocking(true)?;
        if config.gro {
            // Best effort: without GRO every datagram simply arrives on its own.
            set_flag(&socket, libc::SOL_UDP, libc::UDP_GRO);
        }
        socket.bind(&addr.into())?;
        let socket: UdpSocket = socket.into();
        let local = socket.local_addr()?;
        // SAFETY: the AsyncFd owns `socket`, an open UDP socket whose descriptor stays the
        // same until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(Self {
            fd,
            local,
            gso: AtomicBool::new(config.gso),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for datagrams and receives up to [`MAX_BATCH`] messages in one call.
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
    /// kernel refuses individually (an unreachable destination, say) are skipped, not retried;
    /// returns how many.
    pub async fn send(&self, batch: &SendBatch) -> io::Result<usize> {
        let mut sent = 0;
        let mut refused = 0;
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
                    refused += 1;
                }
                Err(_would_block) => continue,
            }
        }
        Ok(refused)
    }
}

/// Where one received message's datagrams lie in its buffer: one datagram, or GRO segments of
/// `segment` octets (the last may be shorter) when the kernel coalesced them.
fn split_segments(
    len: usize,
    segment: Option<usize>,
    truncated: bool,
) -> Vec<(Range<usize>, bool)> {
    match segment.filter(|size| *size > 0 && *size < len) {
        Some(size) if !truncated => (0..len)
            .step_by(size)
            .map(|start| (start..(start + size).min(len), false))
            .collect(),
        _ => vec![(0..len, truncated)],
    }
}

fn recv_batch(fd: i32, batch: &mut RecvBatch) -> io::Result<()> {
    batch.meta.clear();
    batch.messages = 0;
    let count = batch.bufs.len().min(MAX_BATCH);
    // SAFETY: zeroed sockaddr_storage / iovec / mmsghdr are valid values; every pointer stored
    // below points into these stack arrays or into `batch.bufs`, all of which outlive the
    // recvmmsg call.
    let mut addrs: [libc::sockaddr_storage; MAX_BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
    let mut controls = [[0u64; CMSG_BUF / 8]; MAX_BATCH];
    for i in 0..count {
        iovs[i].iov_base = batch.bufs[i].as_mut_ptr().cast();
        iovs[i].iov_len = batch.bufs[i].len();
        let hdr = &mut hdrs[i].msg_hdr;
        hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_iov = &mut iovs[i];
        hdr.msg_iovlen = 1;
        hdr.msg_control = controls[i].as_mut_ptr().cast();
        hdr.msg_controllen = CMSG_BUF as _;
    }
    // SAFETY: `hdrs[..count]` is initialised as above; the kernel writes at most `iov_len`
    // octets into each buffer, `msg_namelen` into each address and `msg_controllen` into each
    // control buffer.
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
    batch.messages = received as usize;
    for (i, hdr) in hdrs.iter().enumerate().take(received as usize) {
        let Some(from) = from_sockaddr(&addrs[i]) else {
            continue;
        };
        let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let len = (hdr.msg_len as usize).min(batch.bufs[i].len());
        for (range, truncated) in split_segments(len, gro_segment_size(&hdr.msg_hdr), truncated) {
            batch.meta.push((i, range, from, truncated));
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

/// Groups datagrams into messages: (first datagram, datagram count, segment size). With `gso`,
/// a message is a run of equal-size datagrams to one destination (the last may be shorter).
fn group(dests: &[SocketAddr], bufs: &[Vec<u8>], gso: bool) -> Vec<(usize, usize, usize)> {
    let total = dests.len().min(bufs.len());
    let mut groups = Vec::with_capacity(MAX_BATCH);
    let mut at = 0;
    while at < total && groups.len() < MAX_BATCH && at < MAX_IOVS {
        let size = bufs[at].len();
        let mut run = 1;
        let mut bytes = size;
        if gso && size > 0 {
            while at + run < total
                && at + run < MAX_IOVS
                && run < MAX_SEGMENTS
                && dests[at + run] == dests[at]
                && bufs[at + run].len() <= size
                && !bufs[at + run].is_empty()
                && bytes + bufs[at + run].len() <= MAX_GSO_BYTES
            {
                bytes += bufs[at + run].len();
                run += 1;
                if bufs[at + run - 1].len() < size {
                    break; // only the last segment may be shorter
                }
            }
        }
        groups.push((at, run, size));
        at += run;
    }
    groups
}

/// Sends up to [`MAX_BATCH`] messages (see [`group`]); returns how many datagrams were sent.
fn send_batch(fd: i32, dests: &[SocketAddr], bufs: &[Vec<u8>], gso: bool) -> io::Result<usize> {
    let groups = group(dests, bufs, gso);
    let mut addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)> = groups
        .iter()
        .map(|&(first, _, _)| to_sockaddr(dests[first]))
        .collect();
    // SAFETY: zeroed iovec / mmsghdr are valid values.
    let mut iovs: [libc::iovec; MAX_IOVS] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
    let mut controls = [[0u64; CMSG_BUF / 8]; MAX_BATCH];
    for (g, &(first, run, size)) in groups.iter().enumerate() {
        for k in 0..run {
            iovs[first + k].iov_base = bufs[first + k].as_ptr() as *mut libc::c_void;
            iovs[first + k].iov_len = bufs[first + k].len();
        }
        let hdr = &mut hdrs[g].msg_hdr;
        hdr.msg_name = (&mut addrs[g].0 as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = addrs[g].1;
        hdr.msg_iov = &mut iovs[first];
        hdr.msg_iovlen = run as _;
        if run > 1 {
            hdr.msg_control = controls[g].as_mut_ptr().cast();
            // SAFETY: the control buffer holds CMSG_SPACE(u16) bytes (checked by the const
            // assertion on CMSG_BUF); CMSG_FIRSTHDR on it is non-null and its data fits a u16.
            unsafe {
                hdr.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
                let cmsg = libc::CMSG_FIRSTHDR(hdr);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                (libc::CMSG_DATA(cmsg) as *mut u16).write_unaligned(size as u16);
            }
        }
    }
    // SAFETY: `hdrs[..groups.len()]` is initialised as above and points into `addrs`, `iovs`,
    // `controls` and `bufs`, which outlive the call; the kernel only reads them.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            groups.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(groups[..sent as usize].iter().map(|(_, run, _)| run).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn receive_all(
        socket: &BatchSocket,
        batch: &mut RecvBatch,
        want: usize,
    ) -> Vec<(SocketAddr, Vec<u8>, bool)> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.len() < want {
            tokio::time::timeout_at(deadline, socket.recv(batch))
                .await
                .expect("datagrams arrive")
                .unwrap();
            seen.extend(
                batch
                    .iter()
                    .map(|(from, bytes, truncated)| (from, bytes.to_vec(), truncated)),
            );
        }
        seen
    }

    #[tokio::test]
    async fn batches_go_both_ways_in_order() {
        let a = BatchSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let b = BatchSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let mut out = SendBatch::default();
        for i in 0..40u8 {
            // Equal sizes except every 7th, so runs, short last segments and singles all occur.
            let len = if i % 7 == 6 { 4 } else { 10 };
            out.push(b.local_addr(), &vec![i; len])[0] = 200 + (i % 50);
        }
        assert_eq!(a.send(&out).await.unwrap(), 0);
        let mut batch = RecvBatch::default();
        let seen = receive_all(&b, &mut batch, 40).await;
        for (n, (from, bytes, truncated)) in seen.iter().enumerate() {
            assert_eq!(*from, a.local_addr());
            assert!(!truncated);
            assert_eq!(bytes.len(), if n % 7 == 6 { 4 } else { 10 });
            assert_eq!(bytes[1], n as u8);
            assert_eq!(bytes[0], 200 + (n as u8 % 50));
        }
        assert_eq!(seen.len(), 40);
        // And back, as owned buffers.
        let mut back = SendBatch::default();
        for (_, bytes, _) in &seen {
            back.push_owned(a.local_addr(), bytes.clone());
        }
        assert_eq!(b.send(&back).await.unwrap(), 0);
        let returned = receive_all(&a, &mut batch, 40).await;
        let returned: Vec<Vec<u8>> = returned.into_iter().map(|(_, bytes, _)| bytes).collect();
        let sent: Vec<Vec<u8>> = seen.into_iter().map(|(_, bytes, _)| bytes).collect();
        assert_eq!(returned, sent);
    }

    #[tokio::test]
    async fn ipv6_round_trip() {
        let a = BatchSocket::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).unwrap();
        let b = BatchSocket::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).unwrap();
        let mut out = SendBatch::default();
        for i in 0..5u8 {
            out.push(b.local_addr(), &[i; 3]);
        }
        a.send(&out).await.unwrap();
        let mut batch = RecvBatch::new(8, 4096);
        let seen = receive_all(&b, &mut batch, 5).await;
        assert!(seen.iter().all(|(from, _, _)| *from == a.local_addr()));
        let bytes: Vec<Vec<u8>> = seen.into_iter().map(|(_, b, _)| b).collect();
        assert_eq!(bytes, (0..5u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn gso_segments_arrive_as_separate_datagrams() {
        let sender = BatchSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        // A plain socket without GRO: the kernel must hand each segment over on its own.
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let to = receiver.local_addr().unwrap();
        let mut out = SendBatch::default();
        for i in 0..10u8 {
            out.push(to, &[i; 100]);
        }
        out.push(to, &[99; 30]); // the shorter last segment
        assert_eq!(
            group(&out.dests[..out.len], &out.bufs[..out.len], true).len(),
            1,
            "one GSO message"
        );
        sender.send(&out).await.unwrap();
        let mut buffer = [0u8; 2048];
        for i in 0..10u8 {
            let (len, _) = receiver.recv_from(&mut buffer).unwrap();
            assert_eq!(&buffer[..len], &[i; 100][..]);
        }
        let (len, _) = receiver.recv_from(&mut buffer).unwrap();
        assert_eq!(&buffer[..len], &[99; 30][..]);
    }

    #[tokio::test]
    async fn gro_coalesced_segments_are_split() {
        let sender = BatchSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let receiver = BatchSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let mut out = SendBatch::default();
        for i in 0..20u8 {
            out.push(receiver.local_addr(), &[i; 500]);
        }
        out.push(receiver.local_addr(), &[77; 123]);
        sender.send(&out).await.unwrap();
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        let mut messages = 0;
        while seen.len() < 21 {
            receiver.recv(&mut batch).await.unwrap();
            messages += batch.messages();
            seen.extend(batch.iter().map(|(_, bytes, truncated)| {
                assert!(!truncated);
                bytes.to_vec()
            }));
        }
        assert!(
            messages < seen.len(),
            "the kernel coalesced the GSO send ({messages} messages)"
        );
        let mut expected: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 500]).collect();
        expected.push(vec![77; 123]);
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn zero_length_and_oversized_datagrams() {
        let receiver = BatchSocket::bind_with(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Config {
                gro: false,
                ..Config::default()
            },
        )
        .unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(&[], receiver.local_addr()).unwrap();
        sender.send_to(&[5; 300], receiver.local_addr()).unwrap();
        let mut batch = RecvBatch::new(4, 100);
        let seen = receive_all(&receiver, &mut batch, 2).await;
        assert_eq!(seen[0], (sender.local_addr().unwrap(), Vec::new(), false));
        assert_eq!(seen[1], (sender.local_addr().unwrap(), vec![5; 100], true));
    }

    #[test]
    fn segments_split_at_the_reported_size() {
        assert_eq!(
            split_segments(250, Some(100), false),
            [(0..100, false), (100..200, false), (200..250, false)]
        );
        assert_eq!(split_segments(100, Some(100), false), [(0..100, false)]);
        assert_eq!(split_segments(250, None, false), [(0..250, false)]);
        assert_eq!(split_segments(250, Some(100), true), [(0..250, true)]);
        assert_eq!(split_segments(0, Some(0), false), [(0..0, false)]);
    }
}

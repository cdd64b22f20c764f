//! Batched UDP I/O for the shells: `recvmmsg`/`sendmmsg` on a non-blocking socket driven by
//! tokio's readiness (`AsyncFd`), so one wake-up moves up to [`MAX_BATCH`] datagrams.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use tokio::io::unix::AsyncFd;

/// Datagrams moved per system call at most.
pub const MAX_BATCH: usize = 32;
/// Receive buffer per datagram; longer datagrams are reported truncated (and dropped).
pub const MAX_DATAGRAM: usize = 16 * 1024;
/// Socket buffer size requested (the kernel caps it at `net.core.[rw]mem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to one IPv4 endpoint, with batched receive and send.
#[derive(Debug)]
pub struct BatchSocket {
    fd: AsyncFd<UdpSocket>,
    local: SocketAddrV4,
}

/// Receive buffers and what the last [`BatchSocket::recv`] filled in.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    meta: Vec<(usize, SocketAddrV4, bool)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: (0..MAX_BATCH)
                .map(|_| vec![0u8; MAX_DATAGRAM].into_boxed_slice())
                .collect(),
            meta: Vec::with_capacity(MAX_BATCH),
        }
    }
}

impl RecvBatch {
    /// The received datagrams: sender, bytes, and whether the datagram was truncated.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddrV4, &[u8], bool)> {
        self.meta
            .iter()
            .zip(&self.bufs)
            .map(|((len, from, truncated), buf)| (*from, &buf[..*len], *truncated))
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
        Ok(Self { fd, local })
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

    /// Sends every queued datagram, [`MAX_BATCH`] per call, waiting while the socket buffer
    /// is full. Datagrams the kernel refuses individually are skipped, not retried.
    pub async fn send(&self, batch: &SendBatch) -> io::Result<()> {
        let mut sent = 0;
        while sent < batch.len {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| {
                send_batch(
                    inner.get_ref().as_raw_fd(),
                    &batch.dests[sent..batch.len],
                    &batch.bufs[sent..batch.len],
                )
            }) {
                Ok(Ok(count)) => sent += count.max(1),
                Ok(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => continue,
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
    let count = batch.bufs.len().min(MAX_BATCH);
    // SAFETY: zeroed sockaddr_in / iovec / mmsghdr are valid; every pointer stored below points
    // into these stack arrays or into `batch.bufs`, all of which outlive the recvmmsg call.
    let mut addrs: [libc::sockaddr_in; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..count {
        iovs[i].iov_base = batch.bufs[i].as_mut_ptr().cast();
        iovs[i].iov_len = batch.bufs[i].len();
        hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
        hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
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
    for i in 0..received as usize {
        let truncated = hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let len = (hdrs[i].msg_len as usize).min(batch.bufs[i].len());
        batch.meta.push((len, from_sockaddr(&addrs[i]), truncated));
    }
    Ok(())
}

fn send_batch(fd: i32, dests: &[SocketAddrV4], bufs: &[Vec<u8>]) -> io::Result<usize> {
    let count = dests.len().min(bufs.len()).min(MAX_BATCH);
    let mut addrs: [MaybeUninit<libc::sockaddr_in>; MAX_BATCH] =
        [const { MaybeUninit::uninit() }; MAX_BATCH];
    // SAFETY: zeroed iovec / mmsghdr are valid; pointers set below point into `addrs` and
    // `bufs`, which outlive the sendmmsg call; the kernel only reads through them.
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..count {
        let addr = addrs[i].write(to_sockaddr(dests[i]));
        iovs[i].iov_base = bufs[i].as_ptr() as *mut libc::c_void;
        iovs[i].iov_len = bufs[i].len();
        hdrs[i].msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
        hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `hdrs[..count]` is initialised as above.
    let sent = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), count as libc::c_uint, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_round_trip_on_loopback() {
        let a = BatchSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = BatchSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut out = SendBatch::default();
        for i in 0..40u8 {
            out.push(b.local_addr(), &[i; 10])[0] = 200 + (i % 50);
        }
        a.send(&out).await.unwrap();
        let mut seen = Vec::new();
        let mut batch = RecvBatch::default();
        while seen.len() < 40 {
            b.recv(&mut batch).await.unwrap();
            for (from, bytes, truncated) in batch.iter() {
                assert_eq!(from, a.local_addr());
                assert!(!truncated);
                assert_eq!(bytes.len(), 10);
                seen.push(bytes[1]);
            }
        }
        assert_eq!(seen, (0..40).collect::<Vec<u8>>());
    }
}

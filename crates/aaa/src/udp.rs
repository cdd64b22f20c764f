//! Batched UDP I/O for the shell: `recvmmsg(2)` and `sendmmsg(2)` on a tokio socket, so a burst
//! of datagrams costs one system call and one engine lock instead of one per datagram.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Largest RADIUS datagram (RFC 2865 §3: 4096 octets).
const DATAGRAM: usize = 4096;

/// Receive buffers for up to `capacity` datagrams.
pub(crate) struct RecvBatch {
    buffers: Vec<[u8; DATAGRAM]>,
    addresses: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    received: usize,
}

// The raw pointers inside `iovecs`/`headers` point into `buffers`/`addresses` of the same
// value; they are rebuilt before every use, so moving the batch between threads is sound.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            buffers: vec![[0u8; DATAGRAM]; capacity],
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
            // bytes are a valid value.
            addresses: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            iovecs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            headers: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            received: 0,
        }
    }

    /// Waits until the socket is readable, then takes every queued datagram (up to capacity).
    pub async fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || self.recvmmsg(socket)) {
                Ok(count) => return Ok(count),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
    }

    fn recvmmsg(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for index in 0..self.buffers.len() {
            self.iovecs[index] = libc::iovec {
                iov_base: self.buffers[index].as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
            let header = &mut self.headers[index].msg_hdr;
            header.msg_name = (&mut self.addresses[index] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &mut self.iovecs[index];
            header.msg_iovlen = 1;
            header.msg_control = std::ptr::null_mut();
            header.msg_controllen = 0;
            header.msg_flags = 0;
            self.headers[index].msg_len = 0;
        }
        // SAFETY: every header points at a live iovec and sockaddr_storage of this batch, each
        // iovec at a live buffer of DATAGRAM bytes; the kernel writes at most that much.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = count as usize;
        Ok(self.received)
    }

    /// The `index`-th datagram of the last receive and its source (None if the source family is
    /// not IP, which a UDP socket never reports).
    pub fn datagram(&self, index: usize) -> Option<(SocketAddr, &[u8])> {
        if index >= self.received {
            return None;
        }
        let length = (self.headers[index].msg_len as usize).min(DATAGRAM);
        let from = socket_addr(&self.addresses[index])?;
        Some((from, &self.buffers[index][..length]))
    }
}

fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
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
            // SAFETY: as above, for sockaddr_in6.
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

fn sockaddr_of(address: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let length = match address {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let out = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
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

/// Sends `datagrams` from `socket` with as few `sendmmsg` calls as the socket buffer allows;
/// datagrams that would block are sent one by one after waiting. Returns how many failed.
pub(crate) async fn send_all(socket: &UdpSocket, datagrams: &[(SocketAddr, &[u8])]) -> usize {
    let mut failed = 0;
    let mut next = 0;
    while next < datagrams.len() {
        let chunk = &datagrams[next..];
        match socket.try_io(Interest::WRITABLE, || sendmmsg(socket, chunk)) {
            Ok(sent) if sent > 0 => next += sent,
            Ok(_) => {
                next += 1;
                failed += 1;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let (to, bytes) = chunk[0];
                if socket.send_to(bytes, to).await.is_err() {
                    failed += 1;
                }
                next += 1;
            }
            Err(err) => {
                // One bad destination (e.g. unreachable) must not sink the rest.
                tracing::debug!(%err, to = %chunk[0].0, "send failed");
                failed += 1;
                next += 1;
            }
        }
    }
    failed
}

fn sendmmsg(socket: &UdpSocket, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    const MAX: usize = 64;
    let count = datagrams.len().min(MAX);
    let mut addresses: Vec<(libc::sockaddr_storage, libc::socklen_t)> = datagrams[..count]
        .iter()
        .map(|(to, _)| sockaddr_of(to))
        .collect();
    let mut iovecs: Vec<libc::iovec> = datagrams[..count]
        .iter()
        .map(|(_, bytes)| libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = (0..count)
        .map(|index| {
            // SAFETY: all-zero bytes are a valid mmsghdr.
            let mut header: libc::mmsghdr = unsafe { zeroed() };
            header.msg_hdr.msg_name =
                (&mut addresses[index].0 as *mut libc::sockaddr_storage).cast();
            header.msg_hdr.msg_namelen = addresses[index].1;
            header.msg_hdr.msg_iov = &mut iovecs[index];
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect();
    // SAFETY: every header points at a live address and iovec of this call; the kernel only
    // reads the iovec buffers, which outlive the call.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_arrives_in_one_batch_and_goes_back_in_one_send() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        for n in 0..5u8 {
            client.send_to(&[n; 3], server_addr).await.unwrap();
        }
        let mut batch = RecvBatch::new(16);
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let count = batch.receive(&server).await.unwrap();
            for index in 0..count {
                let (from, bytes) = batch.datagram(index).unwrap();
                assert_eq!(from, client.local_addr().unwrap());
                seen.push(bytes.to_vec());
            }
        }
        assert_eq!(seen, (0..5u8).map(|n| vec![n; 3]).collect::<Vec<_>>());
        let client_addr = client.local_addr().unwrap();
        let replies: Vec<(SocketAddr, &[u8])> =
            seen.iter().map(|b| (client_addr, &b[..])).collect();
        assert_eq!(send_all(&server, &replies).await, 0);
        let mut buffer = [0u8; 16];
        for n in 0..5u8 {
            let (length, _) = client.recv_from(&mut buffer).await.unwrap();
            assert_eq!(&buffer[..length], &[n; 3]);
        }
    }
}

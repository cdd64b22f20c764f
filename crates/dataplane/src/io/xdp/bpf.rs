//! The `bpf(2)` commands the XDP port needs: maps (create, update, delete), loading a program
//! (with the verifier's log when it refuses), attaching it to an interface with a BPF link, and
//! reading the name of a program found attached.

use super::asm::Insn;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_LINK_CREATE: libc::c_int = 28;

/// `BPF_PROG_TYPE_XDP`.
const PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`, the attach type of XDP links.
const ATTACH_XDP: u32 = 37;

/// Map types brasa creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
    /// `BPF_MAP_TYPE_XSKMAP`.
    Xsk = 17,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Size of `struct bpf_prog_info` up to and including `name`.
const PROG_INFO_LEN: usize = 80;
const PROG_INFO_NAME: usize = 64;

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: bpf(2) with a pointer to an attribute struct of the size passed; the kernel
    // zero-extends it to its own `union bpf_attr`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned_fd(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let bytes = name.as_bytes();
    let len = bytes.len().min(15);
    out[..len].copy_from_slice(&bytes[..len]);
    out
}

/// A BPF map, closed (and freed once nothing refers to it) on drop.
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl Map {
    /// Creates a map.
    pub fn create(
        map_type: MapType,
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> io::Result<Self> {
        let mut attr = MapCreateAttr {
            map_type: map_type as u32,
            key_size,
            value_size,
            max_entries,
            map_name: name16(name),
            ..Default::default()
        };
        let fd = owned_fd(bpf(BPF_MAP_CREATE, &mut attr)?);
        Ok(Self {
            fd,
            key_size: key_size as usize,
            value_size: value_size as usize,
        })
    }

    /// The descriptor (for a program's map references).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Sets `key` to `value` (both exactly the map's sizes).
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if key.len() != self.key_size || value.len() != self.value_size {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }

    /// Removes `key`; a missing key is not an error.
    pub fn delete(&self, key: &[u8]) -> io::Result<()> {
        if key.len() != self.key_size {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            ..Default::default()
        };
        match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Why the kernel refused a program.
#[derive(Debug, thiserror::Error)]
#[error("{source}{}", if log.is_empty() { String::new() } else { format!("; verifier: {log}") })]
pub struct LoadError {
    /// The system call's error.
    #[source]
    pub source: io::Error,
    /// The verifier's log (its last lines), when it refused the program.
    pub log: String,
}

/// A loaded XDP program.
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` as an XDP program called `name`. When the verifier refuses it, loads it
    /// again with the log on, so the error says why.
    pub fn load_xdp(name: &str, insns: &[Insn]) -> Result<Self, LoadError> {
        let license = c"GPL";
        let attempt = |log: Option<&mut Vec<u8>>| {
            let mut attr = ProgLoadAttr {
                prog_type: PROG_TYPE_XDP,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: license.as_ptr() as u64,
                prog_name: name16(name),
                expected_attach_type: ATTACH_XDP,
                ..Default::default()
            };
            if let Some(log) = log {
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
            }
            bpf(BPF_PROG_LOAD, &mut attr).map(owned_fd)
        };
        match attempt(None) {
            Ok(fd) => Ok(Self { fd }),
            Err(source) => {
                let mut log = vec![0u8; 64 * 1024];
                let _ = attempt(Some(&mut log));
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let tail: Vec<&str> = text.lines().rev().take(6).collect();
                Err(LoadError {
                    source,
                    log: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                })
            }
        }
    }

    /// The descriptor.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Attaches the program to interface `ifindex` with a BPF link in the mode `flags`
    /// (`XDP_FLAGS_DRV_MODE` or `XDP_FLAGS_SKB_MODE`). The attachment lasts as long as the
    /// returned link's descriptor: the kernel detaches the program when it closes, also when
    /// the process is killed.
    pub fn attach_link(&self, ifindex: i32, flags: u32) -> io::Result<OwnedFd> {
        let mut attr = LinkCreateAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            target_ifindex: ifindex as u32,
            attach_type: ATTACH_XDP,
            flags,
        };
        bpf(BPF_LINK_CREATE, &mut attr).map(owned_fd)
    }
}

/// The name of the loaded program with id `id` (as `bpftool prog` shows it).
pub fn program_name(id: u32) -> io::Result<String> {
    let mut by_id = GetFdByIdAttr {
        id,
        ..Default::default()
    };
    let fd = owned_fd(bpf(BPF_PROG_GET_FD_BY_ID, &mut by_id)?);
    let mut info = [0u8; PROG_INFO_LEN];
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let name = &info[PROG_INFO_NAME..PROG_INFO_NAME + 16];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

//! Packet buffers with headroom, so headers are pushed and popped without copying the payload
//! to a new allocation.

/// Capacity of one buffer: a full 1500-byte Ethernet frame, VLAN tags and a COMET header with
/// the largest key list fit, with room to spare for jumbo-ish frames from veth.
pub const BUFFER_SIZE: usize = 4096;

/// Bytes kept free before a received frame, enough to push a COMET header with 255 keys and
/// two VLAN tags without moving the payload.
pub const HEADROOM: usize = 320;

/// One packet's bytes: `data[start..end]` is the packet, the rest is spare room.
pub struct PacketBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("len", &self.len())
            .finish()
    }
}

impl PacketBuf {
    /// An empty buffer (allocates once; buffers are reused for every packet after that).
    pub fn new() -> Self {
        Self {
            data: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
            start: HEADROOM,
            end: HEADROOM,
        }
    }

    /// Replaces the contents with `bytes` after the headroom. Returns false (and leaves the
    /// buffer empty) when they do not fit.
    pub fn fill(&mut self, bytes: &[u8]) -> bool {
        self.start = HEADROOM;
        match self.data.get_mut(HEADROOM..HEADROOM + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.end = HEADROOM + bytes.len();
                true
            }
            None => {
                self.end = HEADROOM;
                false
            }
        }
    }

    /// The packet bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or(&[])
    }

    /// The packet bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.data.get_mut(self.start..self.end).unwrap_or(&mut [])
    }

    /// Packet length.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when the buffer holds no packet.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Grows the packet at the front by `count` bytes (their contents are unspecified).
    pub fn push_front(&mut self, count: usize) -> bool {
        if count > self.start {
            return false;
        }
        self.start -= count;
        true
    }

    /// Removes `count` bytes from the front.
    pub fn pull_front(&mut self, count: usize) -> bool {
        if count > self.len() {
            return false;
        }
        self.start += count;
        true
    }

    /// Opens a gap of `count` bytes at `offset` by moving the first `offset` bytes towards the
    /// front (the smaller part moves: headers, never the payload). Returns false when there is
    /// not enough headroom or `offset` is beyond the packet.
    pub fn insert_gap(&mut self, offset: usize, count: usize) -> bool {
        if offset > self.len() || count > self.start {
            return false;
        }
        let old = self.start;
        self.start -= count;
        self.data.copy_within(old..old + offset, self.start);
        true
    }

    /// Removes `count` bytes at `offset` by moving the first `offset` bytes towards the end.
    pub fn remove_gap(&mut self, offset: usize, count: usize) -> bool {
        if offset.saturating_add(count) > self.len() {
            return false;
        }
        let old = self.start;
        self.start += count;
        self.data.copy_within(old..old + offset, self.start);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_insert_and_remove_keep_both_sides() {
        let mut buf = PacketBuf::new();
        assert!(buf.fill(&[1, 2, 3, 4, 5]));
        assert!(buf.insert_gap(2, 3));
        assert_eq!(buf.len(), 8);
        buf.as_mut_slice()[2..5].copy_from_slice(&[9, 9, 9]);
        assert_eq!(buf.as_slice(), &[1, 2, 9, 9, 9, 3, 4, 5]);
        assert!(buf.remove_gap(2, 3));
        assert_eq!(buf.as_slice(), &[1, 2, 3, 4, 5]);
        assert!(!buf.remove_gap(4, 3));
        assert!(!buf.insert_gap(6, 1));
    }

    #[test]
    fn headroom_and_capacity_are_bounded() {
        let mut buf = PacketBuf::new();
        assert!(!buf.fill(&vec![0; BUFFER_SIZE]));
        assert!(buf.is_empty());
        assert!(buf.fill(&[0; 10]));
        assert!(buf.push_front(HEADROOM));
        assert!(!buf.push_front(1));
        assert!(buf.pull_front(HEADROOM + 10));
        assert!(!buf.pull_front(1));
    }
}

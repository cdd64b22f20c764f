//! Packet buffers with headroom, so headers are pushed and popped without copying the payload
//! to a new allocation.

/// Capacity of one buffer: a full 1500-byte Ethernet frame, VLAN tags and a COMET header with
/// the largest key list fit, with room to spare for jumbo-ish frames from veth.
pub const BUFFER_SIZE: usize = 4096;

/// Bytes kept free before a received frame, enough to push a COMET header with 255 keys and
/// two VLAN tags without moving the payload.
pub const HEADROOM: usize = 320;

/// One packet's bytes: `data[start..end]` is the packet, the rest is spare room.
///
/// Invariant: `start <= end <= data.len()`. The fields are private to this module and every
/// method that moves `start` or `end` checks its argument against the current bounds before
/// moving them (`holds_bounds` restates the invariant; debug builds assert it after every
/// move), so the packet's slice is handed out without a bounds check.
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
                debug_assert!(self.holds_bounds());
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
        debug_assert!(self.holds_bounds());
        // SAFETY: `start <= end <= data.len()` is the type's invariant: `new` sets
        // `start == end == HEADROOM < BUFFER_SIZE`; `fill` sets `end` past `HEADROOM` only
        // when `data[HEADROOM..end]` exists; `push_front` and `insert_gap` lower `start` by at
        // most `start`; `pull_front` and `remove_gap` raise it by at most `end - start`; no
        // other code writes the fields (private to this module) or resizes `data`. The
        // proptest `every_mutator_keeps_the_bounds` drives every mutator against a model.
        unsafe { self.data.get_unchecked(self.start..self.end) }
    }

    /// The packet bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        debug_assert!(self.holds_bounds());
        // SAFETY: as in `as_slice`: `start <= end <= data.len()` is the type's invariant.
        unsafe { self.data.get_unchecked_mut(self.start..self.end) }
    }

    /// The type's invariant, `start <= end <= data.len()`, which `as_slice` and
    /// `as_mut_slice` rely on instead of a bounds check.
    fn holds_bounds(&self) -> bool {
        self.start <= self.end && self.end <= self.data.len()
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
        debug_assert!(self.holds_bounds());
        true
    }

    /// Removes `count` bytes from the front.
    pub fn pull_front(&mut self, count: usize) -> bool {
        if count > self.len() {
            return false;
        }
        self.start += count;
        debug_assert!(self.holds_bounds());
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
        debug_assert!(self.holds_bounds());
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
        debug_assert!(self.holds_bounds());
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

    /// One call of a `PacketBuf` mutator, for the model test below.
    #[derive(Debug, Clone)]
    enum Op {
        Fill(Vec<u8>),
        PushFront(usize),
        PullFront(usize),
        InsertGap(usize, usize),
        RemoveGap(usize, usize),
        Write(u8),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            prop_oneof![0usize..64, 0usize..BUFFER_SIZE + 64]
                .prop_flat_map(|len| proptest::collection::vec(any::<u8>(), len))
                .prop_map(Op::Fill),
            (0usize..HEADROOM + 64).prop_map(Op::PushFront),
            (0usize..BUFFER_SIZE).prop_map(Op::PullFront),
            (0usize..128, 0usize..HEADROOM + 64).prop_map(|(o, c)| Op::InsertGap(o, c)),
            (0usize..128, 0usize..BUFFER_SIZE).prop_map(|(o, c)| Op::RemoveGap(o, c)),
            any::<u8>().prop_map(Op::Write),
        ]
    }

    proptest::proptest! {
        /// Every mutator, in any order and with arguments in and out of range, keeps
        /// `start <= end <= capacity` (the bound `as_slice` no longer checks) and the packet
        /// a model `Vec` plus a headroom count predicts.
        #[test]
        fn every_mutator_keeps_the_bounds(ops in proptest::collection::vec(op(), 1..40)) {
            let mut buf = PacketBuf::new();
            let mut model: Vec<u8> = Vec::new();
            let mut headroom = HEADROOM;
            for op in ops {
                match op {
                    Op::Fill(bytes) => {
                        let fits = HEADROOM + bytes.len() <= BUFFER_SIZE;
                        proptest::prop_assert_eq!(buf.fill(&bytes), fits);
                        headroom = HEADROOM;
                        model = if fits { bytes } else { Vec::new() };
                    }
                    Op::PushFront(count) => {
                        let fits = count <= headroom;
                        proptest::prop_assert_eq!(buf.push_front(count), fits);
                        if fits {
                            headroom -= count;
                            // The pushed bytes are unspecified: the model takes what is there.
                            let front = buf.as_slice()[..count].to_vec();
                            model.splice(0..0, front);
                        }
                    }
                    Op::PullFront(count) => {
                        let fits = count <= model.len();
                        proptest::prop_assert_eq!(buf.pull_front(count), fits);
                        if fits {
                            headroom += count;
                            model.drain(..count);
                        }
                    }
                    Op::InsertGap(offset, count) => {
                        let fits = offset <= model.len() && count <= headroom;
                        proptest::prop_assert_eq!(buf.insert_gap(offset, count), fits);
                        if fits {
                            headroom -= count;
                            let gap = buf.as_slice()[offset..offset + count].to_vec();
                            model.splice(offset..offset, gap);
                        }
                    }
                    Op::RemoveGap(offset, count) => {
                        let fits = offset + count <= model.len();
                        proptest::prop_assert_eq!(buf.remove_gap(offset, count), fits);
                        if fits {
                            headroom += count;
                            model.drain(offset..offset + count);
                        }
                    }
                    Op::Write(byte) => {
                        buf.as_mut_slice().iter_mut().for_each(|b| *b = byte);
                        model.iter_mut().for_each(|b| *b = byte);
                    }
                }
                proptest::prop_assert!(buf.holds_bounds());
                proptest::prop_assert_eq!(buf.len(), model.len());
                proptest::prop_assert_eq!(buf.as_slice(), model.as_slice());
            }
        }
    }
}

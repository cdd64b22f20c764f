//! RADIUS Identifier allocation towards one server.
//!
//! An Identifier is only 8 bits, and a server tells requests apart by (source address and port,
//! Identifier). Each upstream server therefore gets a growing list of socket slots, each with its
//! own 256 Identifiers; when all Identifiers of every slot are in flight, a new slot (a new source
//! port, opened by the shell) is added. Identifiers rotate within a slot, so a just-released one
//! is not reused while a late answer for it may still arrive.

/// Free/used Identifiers of one socket slot.
#[derive(Debug, Clone)]
struct Slot {
    used: [u64; 4],
    in_use: u16,
    cursor: u8,
}

impl Slot {
    fn new() -> Self {
        Self {
            used: [0; 4],
            in_use: 0,
            cursor: 0,
        }
    }

    fn is_used(&self, id: u8) -> bool {
        self.used[usize::from(id >> 6)] & (1 << (id & 63)) != 0
    }

    fn take(&mut self) -> Option<u8> {
        if self.in_use == 256 {
            return None;
        }
        for step in 0..=255u8 {
            let id = self.cursor.wrapping_add(step);
            if !self.is_used(id) {
                self.used[usize::from(id >> 6)] |= 1 << (id & 63);
                self.in_use += 1;
                self.cursor = id.wrapping_add(1);
                return Some(id);
            }
        }
        None
    }

    fn release(&mut self, id: u8) -> bool {
        if self.is_used(id) {
            self.used[usize::from(id >> 6)] &= !(1 << (id & 63));
            self.in_use -= 1;
            true
        } else {
            false
        }
    }
}

/// Identifier spaces of one upstream server.
#[derive(Debug, Clone)]
pub struct IdSpace {
    slots: Vec<Slot>,
    max_slots: usize,
}

impl IdSpace {
    /// At most `max_slots` sockets (so at most `256 * max_slots` requests in flight).
    pub fn new(max_slots: usize) -> Self {
        Self {
            slots: vec![Slot::new()],
            max_slots: max_slots.max(1),
        }
    }

    /// A free (slot, Identifier), adding a slot when all are full; `None` at the in-flight limit.
    pub fn allocate(&mut self) -> Option<(u16, u8)> {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Some(id) = slot.take() {
                return Some((index as u16, id));
            }
        }
        if self.slots.len() >= self.max_slots {
            return None;
        }
        let mut slot = Slot::new();
        let id = slot.take()?;
        self.slots.push(slot);
        Some(((self.slots.len() - 1) as u16, id))
    }

    /// Returns an Identifier to its slot.
    pub fn release(&mut self, slot: u16, id: u8) -> bool {
        self.slots
            .get_mut(usize::from(slot))
            .is_some_and(|s| s.release(id))
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().map(|s| usize::from(s.in_use)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn fills_a_slot_then_opens_another_and_stops_at_the_limit() {
        let mut ids = IdSpace::new(2);
        let mut seen = HashSet::new();
        for _ in 0..512 {
            let (slot, id) = ids.allocate().unwrap();
            assert!(seen.insert((slot, id)), "({slot},{id}) handed out twice");
        }
        assert_eq!(ids.allocate(), None);
        assert_eq!(ids.in_flight(), 512);
        assert!(ids.release(1, 7));
        assert!(!ids.release(1, 7));
        assert_eq!(ids.allocate(), Some((1, 7)));
    }

    #[test]
    fn rotates_instead_of_reusing_the_last_identifier() {
        let mut ids = IdSpace::new(1);
        let (_, first) = ids.allocate().unwrap();
        ids.release(0, first);
        let (_, second) = ids.allocate().unwrap();
        assert_ne!(first, second);
    }
}

//! A generational slab: connection state addressed by [`ConnId`], where a stale id (its slot
//! since reused) finds nothing instead of someone else's connection.

use crate::ConnId;

enum Slot<T> {
    Occupied { generation: u32, value: T },
    Vacant { generation: u32 },
}

pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, value: T) -> ConnId {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            let generation = match slot {
                Slot::Vacant { generation } => generation.wrapping_add(1),
                Slot::Occupied { .. } => unreachable!("free list holds only vacant slots"),
            };
            *slot = Slot::Occupied { generation, value };
            ConnId { index, generation }
        } else {
            let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 connections");
            self.slots.push(Slot::Occupied {
                generation: 0,
                value,
            });
            ConnId {
                index,
                generation: 0,
            }
        }
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&T> {
        match self.slots.get(id.index as usize)? {
            Slot::Occupied { generation, value } if *generation == id.generation => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        match self.slots.get_mut(id.index as usize)? {
            Slot::Occupied { generation, value } if *generation == id.generation => Some(value),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        match slot {
            Slot::Occupied { generation, .. } if *generation == id.generation => {
                let vacant = Slot::Vacant {
                    generation: id.generation,
                };
                let Slot::Occupied { value, .. } = std::mem::replace(slot, vacant) else {
                    unreachable!()
                };
                self.free.push(id.index);
                self.len -= 1;
                Some(value)
            }
            _ => None,
        }
    }

    /// Ids of every occupied slot.
    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Occupied { generation, .. } => Some(ConnId {
                    index: index as u32,
                    generation: *generation,
                }),
                Slot::Vacant { .. } => None,
            })
            .collect()
    }
}

/// What a connection id stands for in a driver: a TCP connection, or a UDP flow (a peer on a
/// bound socket). Each backend has its own state for both.
pub(crate) enum ConnSlot<C, F> {
    Tcp(C),
    Flow(F),
}

impl<C, F> Slab<ConnSlot<C, F>> {
    // Only the io_uring backend (Linux) looks connections up without changing them.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn tcp(&self, id: ConnId) -> Option<&C> {
        match self.get(id)? {
            ConnSlot::Tcp(c) => Some(c),
            ConnSlot::Flow(_) => None,
        }
    }

    pub(crate) fn tcp_mut(&mut self, id: ConnId) -> Option<&mut C> {
        match self.get_mut(id)? {
            ConnSlot::Tcp(c) => Some(c),
            ConnSlot::Flow(_) => None,
        }
    }

    pub(crate) fn flow_mut(&mut self, id: ConnId) -> Option<&mut F> {
        match self.get_mut(id)? {
            ConnSlot::Flow(f) => Some(f),
            ConnSlot::Tcp(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_find_nothing() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(a.index, b.index);
        assert_ne!(a, b);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.ids(), vec![b]);
    }
}

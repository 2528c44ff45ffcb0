//! Pending amend/cancel times of resting orders: a min-heap with removal by order slot.

use std::cmp::Ordering;

/// Min-heap of one pending timer per order slot, with removal: the heap never holds stale
/// entries, so it is bounded by the number of live orders.
#[derive(Default)]
pub(super) struct Timers {
    heap: Vec<(i64, u64, u32)>,
    pos: Vec<u32>,
}

const NOT_QUEUED: u32 = u32::MAX;

impl Timers {
    fn less(a: &(i64, u64, u32), b: &(i64, u64, u32)) -> bool {
        (a.0, a.1).cmp(&(b.0, b.1)) == Ordering::Less
    }

    fn place(&mut self, i: usize) {
        let slot = self.heap[i].2 as usize;
        self.pos[slot] = i as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !Self::less(&self.heap[i], &self.heap[parent]) {
                break;
            }
            self.heap.swap(i, parent);
            self.place(i);
            i = parent;
        }
        self.place(i);
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let l = 2 * i + 1;
            let r = l + 1;
            let mut m = i;
            if l < self.heap.len() && Self::less(&self.heap[l], &self.heap[m]) {
                m = l;
            }
            if r < self.heap.len() && Self::less(&self.heap[r], &self.heap[m]) {
                m = r;
            }
            if m == i {
                break;
            }
            self.heap.swap(i, m);
            self.place(i);
            i = m;
        }
        self.place(i);
    }

    pub(super) fn set(&mut self, slot: u32, time: i64, stamp: u64) {
        self.remove(slot);
        if self.pos.len() <= slot as usize {
            self.pos.resize(slot as usize + 1, NOT_QUEUED);
        }
        self.heap.push((time, stamp, slot));
        self.sift_up(self.heap.len() - 1);
    }

    pub(super) fn remove(&mut self, slot: u32) {
        let Some(&i) = self.pos.get(slot as usize) else {
            return;
        };
        if i == NOT_QUEUED {
            return;
        }
        let i = i as usize;
        self.pos[slot as usize] = NOT_QUEUED;
        let last = self.heap.len() - 1;
        if i != last {
            self.heap.swap(i, last);
            self.heap.pop();
            self.place(i);
            self.sift_down(i);
            self.sift_up(i);
        } else {
            self.heap.pop();
        }
    }

    pub(super) fn peek(&self) -> Option<(i64, u32)> {
        self.heap.first().map(|&(t, _, slot)| (t, slot))
    }

    pub(super) fn clear(&mut self) {
        for &(_, _, slot) in &self.heap {
            self.pos[slot as usize] = NOT_QUEUED;
        }
        self.heap.clear();
    }
}

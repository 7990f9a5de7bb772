//! A queue of parked threads, for the sleeping primitives (`Mutex`, `WaitGroup`, `Once`).
//!
//! Each waiting thread links a `WaitNode` that lives on its own stack; the queue is protected
//! by the primitive's spin lock, which `park` releases after the thread is marked waiting.

use core::cell::Cell;

use crate::records::g::G;

/// A parked thread's entry. Must stay in place while queued.
pub struct WaitNode {
    g: &'static G,
    next: Cell<*const WaitNode>,
}

impl WaitNode {
    pub fn new(g: &'static G) -> WaitNode {
        WaitNode { g, next: Cell::new(core::ptr::null()) }
    }
}

/// FIFO of parked threads.
pub struct WaitQueue {
    head: *const WaitNode,
    tail: *const WaitNode,
}

// SAFETY: the nodes are only touched under the owning primitive's lock, and their threads are
// parked while linked.
unsafe impl Send for WaitQueue {}

impl WaitQueue {
    pub const fn new() -> WaitQueue {
        WaitQueue { head: core::ptr::null(), tail: core::ptr::null() }
    }

    pub fn push(&mut self, node: &WaitNode) {
        node.next.set(core::ptr::null());
        if self.tail.is_null() {
            self.head = node;
        } else {
            // SAFETY: linked nodes are alive (their threads are parked).
            unsafe { (*self.tail).next.set(node) };
        }
        self.tail = node;
    }

    /// Is no thread queued?
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// The first waiting thread, unlinked.
    pub fn pop(&mut self) -> Option<&'static G> {
        if self.head.is_null() {
            return None;
        }
        // SAFETY: as above.
        let node = unsafe { &*self.head };
        self.head = node.next.get();
        if self.head.is_null() {
            self.tail = core::ptr::null();
        }
        Some(node.g)
    }
}

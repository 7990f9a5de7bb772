//! Frame-pointer backtraces.
//!
//! Prologue is built with frame pointers (the prologue hook forces them), so every frame starts
//! with `push rbp; mov rbp, rsp`: at `[rbp]` is the caller's `rbp` and at `[rbp + 8]` the
//! return address into the caller. Walking that chain gives the return addresses; the runner
//! on the host turns them into function names and lines (lines `    #N 0xADDR`).
//!
//! Invariant: the walk only reads inside the given stack bounds, so a corrupted chain ends the
//! walk instead of faulting. A thread's first frame has `rbp = 0`, which ends it too.

/// Most frames printed.
const MAX_FRAMES: usize = 48;

pub struct Backtrace {
    rip: usize,
    rbp: usize,
    lo: usize,
    hi: usize,
}

impl Backtrace {
    /// A backtrace starting at instruction `rip` with frame pointer `rbp`, on the stack
    /// `lo..hi`.
    pub fn from_frame(rip: usize, rbp: usize, lo: usize, hi: usize) -> Backtrace {
        Backtrace { rip, rbp, lo, hi }
    }

    /// The return addresses, innermost first (the first is `rip` itself).
    pub fn addresses(&self) -> impl Iterator<Item = usize> + '_ {
        let mut rbp = self.rbp;
        let mut first = Some(self.rip);
        let mut count = 0;
        core::iter::from_fn(move || {
            if let Some(rip) = first.take() {
                count += 1;
                return Some(rip);
            }
            if count >= MAX_FRAMES || rbp % 8 != 0 || rbp < self.lo || rbp + 16 > self.hi {
                return None;
            }
            // SAFETY: `rbp..rbp+16` lies inside the stack bounds checked just above.
            let (next, ret) = unsafe { (*(rbp as *const usize), *((rbp + 8) as *const usize)) };
            if ret == 0 || next <= rbp {
                return None; // end of chain (or a loop, which would be corruption)
            }
            rbp = next;
            count += 1;
            // Report the call instruction, not the one after it, so lines match the call site.
            Some(ret - 1)
        })
    }

    /// Prints `  backtrace:` and one line per frame.
    pub fn print(&self) {
        crate::println!("  backtrace:");
        for (i, addr) in self.addresses().enumerate() {
            crate::println!("    #{i:<2} {addr:#018x}");
        }
    }
}

/// A backtrace of the code that calls this (inlined into it), on the current context's stack.
#[inline(always)]
pub fn here() -> Backtrace {
    let g = crate::records::percpu::current();
    let (lo, hi) = g.stack_bounds();
    let rip: usize;
    // SAFETY: reads the instruction pointer.
    unsafe { core::arch::asm!("lea {}, [rip]", out(reg) rip, options(nomem, nostack, preserves_flags)) };
    Backtrace::from_frame(rip, crate::arch::cpu::read_rbp(), lo, hi)
}

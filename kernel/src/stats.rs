//! Statistics: what the scheduler, the stack guards and memory management did, per CPU and in
//! total. Printed by the demo, the shell, and the stress test.

use core::sync::atomic::Ordering;

use crate::records::percpu::online_cpus;
use crate::records::percpu::totals;

/// Prints the scheduler, preemption and memory statistics.
pub fn print() {
    let t = totals();
    let high_water = online_cpus().map(|c| c.runq.high_water.load(Ordering::Relaxed)).max().unwrap_or(0);
    crate::println!("scheduler statistics:");
    crate::println!("  threads created        {}", t.spawns);
    crate::println!("  threads alive          {}", crate::sched::thread::live_threads());
    crate::println!("  context switches       {}", t.switches);
    crate::println!("  run-queue high water   {high_water}");
    crate::println!("  steals                 {}", t.steals);
    crate::println!("  migrations             {}", t.migrations);
    crate::println!("  idle halts             {}", t.idles);
    crate::println!("  timer ticks            {}", t.ticks);
    crate::println!("stack guards and preemption:");
    crate::println!("  slow-path entries      {}", t.morestack);
    crate::println!("  preemption requests    {}", t.preempt_requests);
    crate::println!("  cooperative / async    {} / {}", t.preempt_coop, t.preempt_async);
    crate::println!("  deferred (locks held)  {}", t.preempt_deferred);
    crate::println!("  stack growths          {}", t.stack_growths);
    crate::println!(
        "  stack overflows        {} ({} deferred until the thread could die alone)",
        t.overflows,
        t.overflows_deferred
    );
    crate::println!("  NMIs / unclaimed IRQs  {} / {}", t.nmis, t.unclaimed_irqs);
    let frames = crate::mm::frame::stats();
    let heap = crate::mm::heap::stats();
    crate::println!("memory:");
    crate::println!("  frames used / total    {} / {}", frames.used(), frames.total);
    crate::println!("  heap used / mapped     {} / {} bytes (peak {})", heap.used, heap.mapped, heap.peak);
    crate::println!(
        "  page tables            {} frames ({} of them map the heap)",
        crate::mm::paging::table_frames(),
        crate::mm::paging::heap_table_frames()
    );
    crate::println!(
        "  thread stacks          {} live, {} pooled, {} pages mapped",
        crate::mm::stack::COUNTERS.live.load(Ordering::Relaxed),
        crate::mm::stack::pooled(),
        crate::mm::stack::COUNTERS.pages_mapped.load(Ordering::Relaxed)
    );
}

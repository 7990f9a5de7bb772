// The Go side of Prologue's comparison benchmarks: the same operations as the kernel's
// benchmarks, measured in Go with goroutines, channels and sync.Mutex.
//
// This program is the /init of a tiny initramfs that the `boot` runner boots in QEMU under
// `-icount shift=0,sleep=off` (see boot/src/against/). There the time-stamp counter counts
// executed instructions, so each figure is the number of instructions the whole machine ran --
// this goroutine, the others, the Go runtime, and the Linux kernel beneath (interrupts, system
// calls, other threads such as Go's sysmon) -- between two rdtsc reads.
//
// The runtime runs with GOMAXPROCS=1 (set by runtime.GOMAXPROCS(1) at the start of main; the
// machine has one CPU anyway), so goroutines take turns on one thread, as Prologue's threads do
// on one CPU. Each benchmark first runs once with a tenth of its count (warm-up: the runtime's
// free lists, stacks and caches fill), then runtime.GC() and a few yields let background work
// settle, and then the measured run follows. Nothing is printed until every benchmark is done,
// so no console output ever falls inside a timed region. Each result is one line
//
//	bench NAME: TOTAL instructions / N THINGS = X.Y instructions/THING
//
// (TOTAL is the raw rdtsc delta; THINGS is what the kernel's benchmark of the same name counts),
// and the last line is `bench: done`. A benchmark whose check
// fails prints a line starting with `FAILURE:` instead of its result.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// rdtsc returns the time-stamp counter (written in rdtsc_amd64.s).
func rdtsc() uint64

// The operations counted by each benchmark (each is big enough for a stable per-op figure;
// together they take well under a second of guest time).
const (
	nSpawnJoin   = 20000
	nYield       = 50000 // Gosched calls of main: about two switches each
	nRoundTrip   = 50000
	nBufBatch    = 64 // values per batch of chan_buffered_send_recv
	nBufSendRecv = 1600 * nBufBatch
	nPipeline    = 100000
	pipelineCap  = 64
	nUncontended = 100000
	nContended   = 20000 // iterations per goroutine: 2 * nContended acquisitions
	nSelect      = 100000
)

// output collects the report, printed at the end.
var output strings.Builder

// report records a result: total instructions over n things (thing in the singular).
func report(name string, total uint64, n int, things, thing string) {
	fmt.Fprintf(&output, "bench %s: %d instructions / %d %s = %.1f instructions/%s\n",
		name, total, n, things, float64(total)/float64(n), thing)
}

// fail records a failed check instead of a result.
func fail(name string, format string, args ...any) {
	fmt.Fprintf(&output, "FAILURE: %s: %s\n", name, fmt.Sprintf(format, args...))
}

// settle runs a full garbage collection (which also finishes sweeping) and then yields a few
// times, so that background goroutines woken by it run now rather than in the timed region.
func settle() {
	runtime.GC()
	for i := 0; i < 10; i++ {
		runtime.Gosched()
	}
}

// measure runs fn once with a tenth of n (warm-up), settles, and returns fn(n).
func measure(n int, fn func(n int) uint64) uint64 {
	fn(n / 10)
	settle()
	return fn(n)
}

// spawnJoin times n spawns and joins: each starts a goroutine that stores a value and calls
// wg.Done, and waits for it with wg.Wait. Timed: the whole loop of n spawn+join pairs (each go
// statement also allocates its closure on the heap, as Go does for every such goroutine).
func spawnJoin(n int) uint64 {
	var wg sync.WaitGroup
	slot := -1
	start := rdtsc()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(v int) {
			slot = v
			wg.Done()
		}(i)
		wg.Wait()
	}
	end := rdtsc()
	if slot != n-1 {
		fail("spawn_join", "the last goroutine stored %d, not %d", slot, n-1)
	}
	return end - start
}

// yield times switches between two goroutines that call runtime.Gosched in turn. Gosched puts
// the caller at the tail of the global run queue, so with GOMAXPROCS=1 a call normally switches
// to the other goroutine and the other's call switches back: two switches per round. Not
// always: every 61st time the scheduler looks at the global run queue first (so that it is
// never starved), and it may find there the goroutine that has just yielded and run it again.
// So the switches are counted: after each Gosched, a goroutine that finds that the other one ran
// last counts a switch. The partner is started and has yielded once before the timer starts.
// Timed: n Gosched calls of main, with the partner's calls in between and the counting (a few
// instructions per call). Returns the total and the switches counted in it; on a failed check
// (fewer than n switches: the two did not take turns), records the failure and returns 0
// switches.
func yield(n int) (uint64, int) {
	var wg sync.WaitGroup
	var last, switches atomic.Int64
	var stop atomic.Bool
	ran := func(me int64) {
		if last.Load() != me {
			switches.Add(1)
			last.Store(me)
		}
	}
	wg.Add(1)
	go func() {
		for !stop.Load() {
			runtime.Gosched()
			ran(1)
		}
		wg.Done()
	}()
	runtime.Gosched() // the partner starts and yields back
	ran(0)
	before := switches.Load()
	start := rdtsc()
	for i := 0; i < n; i++ {
		runtime.Gosched()
		ran(0)
	}
	end := rdtsc()
	counted := int(switches.Load() - before)
	stop.Store(true)
	wg.Wait()
	if counted < n {
		fail("yield", "only %d switches in %d Gosched calls: the goroutines did not take turns", counted, n)
		return 0, 0
	}
	return end - start, counted
}

// roundTrip times n round trips over two unbuffered channels: main sends on ping, the partner
// receives and sends the value back on pong, main receives it. One untimed round trip first
// gets the partner running. Timed: n round trips (each: two sends, two receives, two switches).
func roundTrip(n int) uint64 {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for i := 0; i < n+1; i++ {
			pong <- <-ping
		}
	}()
	ping <- 0
	<-pong
	start := rdtsc()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	end := rdtsc()
	return end - start
}

// bufferedSendRecv times n sends and n receives by one goroutine on a buffered channel of
// capacity nBufBatch, in batches: nBufBatch sends fill the buffer (nobody waits on the channel),
// then nBufBatch receives empty it. Timed: n/nBufBatch batches, n sends and n receives in all.
func bufferedSendRecv(n int) uint64 {
	ch := make(chan int, nBufBatch)
	sum := 0
	start := rdtsc()
	for b := 0; b < n/nBufBatch; b++ {
		for i := 0; i < nBufBatch; i++ {
			ch <- i
		}
		for i := 0; i < nBufBatch; i++ {
			sum += <-ch
		}
	}
	end := rdtsc()
	if want := n / nBufBatch * (nBufBatch * (nBufBatch - 1) / 2); sum != want {
		fail("chan_buffered_send_recv", "received a sum of %d, not %d", sum, want)
	}
	return end - start
}

// pipeline times n values passed from a producer goroutine to a consumer (main) through a
// channel of capacity pipelineCap. So that every value goes through the buffer (a send to a
// receiver parked on an empty channel would hand the value over directly), neither side ever
// blocks in the channel: the producer yields (runtime.Gosched) while the buffer is full, the
// consumer while it is empty. So the producer fills the buffer, the consumer drains it, and so on.
// Timed: from just after the producer is created (it has not run yet) until the consumer has
// received the n-th value: n sends, n receives, about 2n/pipelineCap switches, and the
// producer's first start and its exit.
func pipeline(n int) uint64 {
	ch := make(chan int, pipelineCap)
	go func() {
		for i := 0; i < n; i++ {
			for len(ch) == cap(ch) {
				runtime.Gosched()
			}
			ch <- i
		}
	}()
	sum := 0
	start := rdtsc()
	for i := 0; i < n; i++ {
		for len(ch) == 0 {
			runtime.Gosched()
		}
		sum += <-ch
	}
	end := rdtsc()
	if want := n * (n - 1) / 2; sum != want {
		fail("chan_buffered_pipeline", "received a sum of %d, not %d", sum, want)
	}
	return end - start
}

// uncontended times n Lock+Unlock pairs on a sync.Mutex that only this goroutine uses.
// Timed: the loop of n pairs.
func uncontended(n int) uint64 {
	var mu sync.Mutex
	start := rdtsc()
	for i := 0; i < n; i++ {
		mu.Lock()
		mu.Unlock()
	}
	end := rdtsc()
	return end - start
}

// contended hands one sync.Mutex back and forth between two goroutines, n iterations each:
// Lock; Gosched; Unlock; Gosched until the other goroutine has taken the mutex. While one holds
// the mutex and yields, the other blocks in Lock; the holder's Unlock wakes it, and the holder's
// Gosched lets it run and take the mutex. One Gosched after Unlock is not always enough: every
// 61st time the scheduler looks at the global run queue first (so that it is never starved),
// finds the holder that Gosched just put there, and runs it again before the woken goroutine,
// and the holder would take the mutex once more. So it yields until the other has taken it
// (or has finished). The check: the last owner is kept in a variable written under the mutex,
// and every acquisition after the first must have changed hands. Timed: from just after the
// partner is created (it has not run yet) until both have finished, waited for with a
// WaitGroup: 2n acquisitions, with the partner's first start and its exit. Returns the total
// and the number of acquisitions; on a failed check, records the failure and returns 0
// acquisitions.
func contended(n int) (uint64, int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Both are written under mu; the owner's loop after Unlock reads them without it.
	var owner, acquisitions atomic.Int64
	owner.Store(-1)
	changed := 0
	worker := func(me int64) {
		for i := 0; i < n; i++ {
			mu.Lock()
			if acquisitions.Load() > 0 && owner.Load() != me {
				changed++
			}
			owner.Store(me)
			acquisitions.Add(1)
			runtime.Gosched()
			mu.Unlock()
			runtime.Gosched()
			for owner.Load() == me && acquisitions.Load() < int64(2*n) {
				runtime.Gosched()
			}
		}
		wg.Done()
	}
	wg.Add(2)
	go worker(1)
	start := rdtsc()
	worker(0)
	wg.Wait()
	end := rdtsc()
	total := int(acquisitions.Load())
	if changed != total-1 {
		fail("mutex_contended", "only %d of %d acquisitions after the first changed hands", changed, total-1)
		return 0, 0
	}
	return end - start, total
}

// selectTwoReady times n selects over two buffered channels that both hold values at every
// select: each is filled with n+1 values before the timer starts, and a select takes one value
// from one of them, so neither runs empty. Timed: the loop of n selects.
func selectTwoReady(n int) uint64 {
	a, b := make(chan int, n+1), make(chan int, n+1)
	for i := 0; i <= n; i++ {
		a <- i
		b <- i
	}
	taken := 0
	start := rdtsc()
	for i := 0; i < n; i++ {
		select {
		case <-a:
			taken++
		case <-b:
			taken++
		}
	}
	end := rdtsc()
	if taken != n || len(a)+len(b) != n+2 {
		fail("select_two_ready", "took %d values, %d are left (want %d and %d)", taken, len(a)+len(b), n, n+2)
	}
	return end - start
}

// tcsbrk is the TCSBRK ioctl of <asm-generic/ioctls.h> (Go's syscall package lacks it).
const tcsbrk = 0x5409

// drainConsole waits until the console has sent everything written to it (tcdrain: the
// TCSBRK ioctl with argument 1). Once /init exits the kernel panics, and output still queued in
// the serial driver would be lost.
func drainConsole() {
	syscall.Syscall(syscall.SYS_IOCTL, uintptr(1), tcsbrk, 1)
}

func main() {
	runtime.GOMAXPROCS(1)

	report("spawn_join", measure(nSpawnJoin, spawnJoin), nSpawnJoin, "threads", "thread")
	yield(nYield / 10)
	settle()
	if total, switches := yield(nYield); switches > 0 {
		report("yield", total, switches, "switches", "switch")
	}
	report("chan_unbuffered_round_trip", measure(nRoundTrip, roundTrip), nRoundTrip, "round-trips", "round-trip")
	report("chan_buffered_send_recv", measure(nBufSendRecv, bufferedSendRecv), nBufSendRecv, "values", "value")
	report("chan_buffered_pipeline", measure(nPipeline, pipeline), nPipeline, "values", "value")
	report("mutex_uncontended", measure(nUncontended, uncontended), nUncontended, "lock-unlocks", "lock-unlock")

	contended(nContended / 10)
	settle()
	if total, acquisitions := contended(nContended); acquisitions > 0 {
		report("mutex_contended", total, acquisitions, "acquisitions", "acquisition")
	}

	report("select_two_ready", measure(nSelect, selectTwoReady), nSelect, "selects", "select")

	output.WriteString("bench: done\n")
	os.Stdout.WriteString(output.String())
	drainConsole()
}

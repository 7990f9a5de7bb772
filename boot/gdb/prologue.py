# GDB helpers for Prologue's kernel, loaded by the command that `cargo run -- --gdb` prints
# (`gdb -x boot/gdb/prologue.py ...`), like Go's runtime-gdb.py:
#
#   info kthreads     every live kernel thread: id, name, state, CPU, wait reason
#   kthread N bt      thread N's stack, walked from the context it saved when it stopped
#                     (N: a thread id, or any gdb expression giving one, e.g. `ids[0]`)
#
# Where the data lives (read from the kernel's debug information, so the `kernel-gdb` build that
# `--gdb` boots is needed): `kernel::sched::thread::free_list::ALL` is a spin lock around a
# `Vec<&G>` of every thread record ever allocated; records in state `Idle` are free (recycled), the
# others are live threads. A `G` (kernel/src/records/g.rs) has `id`, `name`, `state`,
# `wait_reason`, `last_cpu`, the stack bounds `stack_lo`/`stack_hi`, and `ctx`: the registers
# saved by `mcall` when the thread stopped. `ctx.rsp` points at the return address into the
# thread's code and `ctx.rbp` is its frame pointer, so the stack is walked like the kernel's own
# tracebacks (kernel/src/sched/traceback.rs): frame pointers from `ctx.rbp`, every address checked
# against the stack's bounds. A running thread has no saved context: its stack is that of its CPU
# (`info threads` in gdb lists CPUs; `thread CPU+1` then `bt`).
#
# The helpers only read memory; they never lock anything (the CPUs are stopped while gdb looks).
# Rust's types are wrapped (Atomic<T> -> UnsafeCell<T> -> T, Cell<T> -> UnsafeCell<T> -> T):
# `scalar` unwraps any struct of one field, so the helpers do not depend on those layouts.

import struct

import gdb

ALL_THREADS = "kernel::sched::thread::free_list::ALL"
G_TYPE = "kernel::records::g::G"
G_STATE = "kernel::records::g::GState"
# `WaitReason` variants in the words the kernel's tracebacks use (`WaitReason::as_str`).
WAIT_WORDS = {
    "None": "-",
    "ChanSend": "chan send",
    "ChanReceive": "chan receive",
    "Select": "select",
    "Sleep": "sleep",
    "MutexLock": "mutex lock",
    "WaitGroup": "wait group",
    "Once": "once",
    "Join": "join",
}
# `G::live` of an allocated record (the bytes of "liveG").
LIVE_RECORD = int.from_bytes(b"liveG\0\0\0", "little")
# Frames printed at most by `kthread N bt`.
MAX_FRAMES = 64


def scalar(value):
    """`value` without its one-field wrappers (Atomic, Cell, UnsafeCell, Align1, NonNull)."""
    while True:
        t = value.type.strip_typedefs()
        if t.code != gdb.TYPE_CODE_STRUCT:
            return value
        fields = t.fields()
        if len(fields) != 1:
            return value
        value = value[fields[0]]


def find_field(value, name, depth=8):
    """The first field called `name` in `value` or in the structs inside it (breadth first)."""
    level = [value]
    for _ in range(depth):
        below = []
        for v in level:
            t = v.type.strip_typedefs()
            if t.code != gdb.TYPE_CODE_STRUCT:
                continue
            for f in t.fields():
                if f.name == name:
                    return v[f]
                below.append(v[f])
        level = below
    raise gdb.GdbError("no field %r in %s (is this the kernel-gdb build?)" % (name, value.type))


def read_u64(addr):
    return struct.unpack("<Q", bytes(gdb.selected_inferior().read_memory(addr, 8)))[0]


def state_names():
    """GState values by number, in lower case (`Waiting` -> `waiting`)."""
    names = {}
    for f in gdb.lookup_type(G_STATE).fields():
        names[int(f.enumval)] = f.name.split("::")[-1].lower()
    return names


def thread_records():
    """Every thread record (a `G` value), live or not, in the order of `ALL`."""
    try:
        all_threads = gdb.parse_and_eval(ALL_THREADS)
    except gdb.error as e:
        raise gdb.GdbError(
            "cannot read %s (%s): load the kernel-gdb build's symbols (the command `cargo run -- --gdb` prints)"
            % (ALL_THREADS, e)
        )
    vec = find_field(all_threads, "data")
    vec = scalar(vec)
    length = int(find_field(vec, "len"))
    pointer = int(scalar(find_field(vec, "ptr")))
    g_pointer = gdb.lookup_type(G_TYPE).pointer()
    records = []
    for i in range(length):
        address = read_u64(pointer + 8 * i)
        records.append(gdb.Value(address).cast(g_pointer).dereference())
    return records


class KThread:
    """What the helpers show of one `G`."""

    def __init__(self, g, states):
        self.g = g
        self.address = int(g.address)
        self.id = int(scalar(g["id"]))
        self.live = int(scalar(g["live"])) == LIVE_RECORD
        name = scalar(g["name"])
        length = int(name["len"])
        data = bytes(gdb.selected_inferior().read_memory(name["bytes"].address, length))
        self.name = data.decode("utf-8", "replace")
        self.state = states.get(int(scalar(g["state"])), "?")
        self.cpu = int(scalar(g["last_cpu"]))
        reason = str(scalar(g["wait_reason"])).split("::")[-1]
        self.wait = WAIT_WORDS.get(reason, reason) if self.state == "waiting" else "-"
        self.stack_lo = int(scalar(g["stack_lo"]))
        self.stack_hi = int(scalar(g["stack_hi"]))
        ctx = scalar(g["ctx"])
        self.rsp = int(ctx["rsp"])
        self.rbp = int(ctx["rbp"])

    def cpu_words(self):
        if self.state == "running":
            return str(self.cpu)
        return "%d (last)" % self.cpu


def live_threads():
    states = state_names()
    threads = [KThread(g, states) for g in thread_records()]
    return [t for t in threads if t.live and t.state != "idle"]


def describe(pc):
    """`function at file:line` for code address `pc` (a return address minus one), inlined
    calls named too; gdb's `info symbol` when there is no debug information for it."""
    try:
        block = gdb.block_for_pc(pc)
    except RuntimeError:
        block = None
    functions = []
    while block is not None:
        if block.function is not None:
            functions.append(block.function.print_name)
        block = block.superblock
    if not functions:
        text = gdb.execute("info symbol %#x" % pc, to_string=True).strip()
        return "?? (%s)" % text
    sal = gdb.find_pc_line(pc)
    where = ""
    if sal.symtab is not None:
        where = " at %s:%d" % (sal.symtab.filename, sal.line)
    text = functions[0] + where
    for outer in functions[1:]:
        text += "\n        inlined into " + outer
    return text


def saved_frames(t):
    """Return addresses of thread `t`'s stack, from its saved context, innermost first."""
    lo, hi = t.stack_lo, t.stack_hi
    if not (lo <= t.rsp and t.rsp + 8 <= hi and t.rsp % 8 == 0):
        raise gdb.GdbError("thread %d: saved rsp %#x is outside its stack [%#x, %#x)" % (t.id, t.rsp, lo, hi))
    frames = [read_u64(t.rsp)]
    rbp = t.rbp
    while len(frames) < MAX_FRAMES and lo <= rbp and rbp + 16 <= hi and rbp % 8 == 0:
        ret = read_u64(rbp + 8)
        if ret == 0:
            break
        frames.append(ret)
        above = read_u64(rbp)
        if above <= rbp:
            break
        rbp = above
    return frames


class InfoKThreads(gdb.Command):
    """List the kernel's threads: id, name, state, CPU, wait reason (Prologue's `ps`)."""

    def __init__(self):
        super().__init__("info kthreads", gdb.COMMAND_STATUS, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        threads = live_threads()
        print("%5s  %-24s %-9s %-9s %s" % ("Id", "Name", "State", "CPU", "Waits on"))
        for t in threads:
            print("%5d  %-24s %-9s %-9s %s" % (t.id, '"%s"' % t.name, t.state, t.cpu_words(), t.wait))
        print("%d threads" % len(threads))


class KThreadCommand(gdb.Command):
    """kthread N bt: the backtrace of kernel thread N, from the context it saved when it stopped."""

    def __init__(self):
        super().__init__("kthread", gdb.COMMAND_STACK, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        words = gdb.string_to_argv(arg)
        if len(words) != 2 or words[1] != "bt":
            raise gdb.GdbError("usage: kthread N bt  (N: a thread id of `info kthreads`, or an expression)")
        try:
            wanted = int(gdb.parse_and_eval(words[0]))
        except gdb.error as e:
            raise gdb.GdbError("kthread: %s is not a thread id (%s)" % (words[0], e))
        thread = next((t for t in live_threads() if t.id == wanted), None)
        if thread is None:
            raise gdb.GdbError("no live kernel thread %d (see `info kthreads`)" % wanted)
        print('thread %d "%s" (%s):' % (thread.id, thread.name, thread.state))
        if thread.state == "running":
            print(
                "  running on CPU %d: no saved context; its stack is that CPU's: `thread %d` then `bt`"
                % (thread.cpu, thread.cpu + 1)
            )
            return
        for n, ret in enumerate(saved_frames(thread)):
            print("#%-2d %#018x in %s" % (n, ret, describe(ret - 1)))


InfoKThreads()
KThreadCommand()

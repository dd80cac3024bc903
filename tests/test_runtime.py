"""yfcore.runtime: every public method of Scheduler and Coroutine, and bad input
raising a precise exception instead of crashing the interpreter."""
import os

import numpy as np
import pytest

from yfcore import runtime
from yfcore._yfcore import ffi, lib
from yfcore.runtime import Coroutine, Scheduler

MXCSR_RC = 0x6000


def fpenv():
    m = ffi.new("uint32_t *")
    c = ffi.new("uint16_t *")
    lib.yf_fpenv_get(m, c)
    return m[0], c[0]


@pytest.fixture
def s():
    with Scheduler() as sched:
        yield sched


# --- Scheduler construction ---------------------------------------------------

@pytest.mark.parametrize("size", [0, -1, 12345, 2**40, 8192, 2**29])
def test_bad_stack_size_value(size):
    with pytest.raises(ValueError, match="power of two"):
        Scheduler(size)


@pytest.mark.parametrize("size", ["64k", True, 65536.0, None])
def test_bad_stack_size_type(size):
    with pytest.raises(TypeError, match="stack_size must be an int"):
        Scheduler(size)


def test_bad_guard():
    with pytest.raises(ValueError, match="guard must be one of"):
        Scheduler(guard="bogus")


def test_properties():
    for size in (16384, 65536, 1 << 20):
        with Scheduler(size) as s:
            assert s.stack_size == size
            assert 0 < s.usable_stack < size - os.sysconf("SC_PAGE_SIZE")
            assert s.fpfast is False
    with Scheduler(fpfast=True) as s:
        assert s.fpfast is True


def test_guard_property():
    with Scheduler() as s:
        assert s.guard == ("regions" if runtime.guard_regions_supported() else "mprotect")
    with Scheduler(guard="auto") as s:
        assert s.guard in ("regions", "mprotect")
    with Scheduler(guard="mprotect") as s:
        assert s.guard == "mprotect"
    with Scheduler(guard="none") as s:
        assert s.guard == "none"


def test_guard_regions_on_this_kernel():
    # Linux 6.13 added MADV_GUARD_INSTALL; on such a kernel "auto" must use it.
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    if release < (6, 13):
        pytest.skip(f"kernel {os.uname().release} predates guard regions")
    assert runtime.guard_regions_supported() is True
    with Scheduler() as s:
        assert s.guard == "regions"


# --- spawn, run, resume, status, reap ------------------------------------------

def test_spawn_bad_input(s):
    with pytest.raises(ValueError, match="unknown body"):
        s.spawn("nope")
    with pytest.raises(ValueError, match="between 0 and 2"):
        s.spawn("yield_n", -1)
    with pytest.raises(TypeError, match="arg must be an int"):
        s.spawn("yield_n", "x")
    with pytest.raises(TypeError):
        s.spawn("yield_n", True)
    with pytest.raises(ValueError, match="subprocess"):
        s.spawn("use_stack", s.usable_stack)
    with pytest.raises(ValueError, match="subprocess"):
        s.spawn("use_stack", 10 * s.stack_size)
    # Nothing was created by the refused calls.
    assert s.counts()["created"] == 0


def test_yield_n_life(s):
    co = s.spawn("yield_n", 2)
    assert isinstance(co, Coroutine) and co.id > 0
    assert co.state == "new"
    assert co.token == 0
    assert co.stack_size > 0
    with pytest.raises(RuntimeError, match="has not finished"):
        co.status
    with pytest.raises(RuntimeError, match="has not finished"):
        co.reap()
    co.resume()
    assert co.state == "ready"
    with pytest.raises(RuntimeError, match="has started"):
        co.cancel()
    assert co.state == "ready"
    co.resume()
    co.resume()
    assert co.state == "done"
    assert co.status == 2
    assert co.stack_size == 0 and co.stack_hwm == 0
    with pytest.raises(RuntimeError, match="cannot resume"):
        co.resume()
    with pytest.raises(RuntimeError, match="has started"):
        co.cancel()
    assert repr(co) == f"<Coroutine {co.id} done>"
    assert co.reap() == 2
    assert repr(co) == f"<Coroutine {co.id} reaped>"
    with pytest.raises(LookupError):
        co.reap()
    with pytest.raises(LookupError):
        co.state
    with pytest.raises(LookupError):
        s.find(co.id)


def test_run_is_fifo_and_counts_resumes(s):
    cos = [s.spawn("yield_n", k) for k in (0, 1, 2)]
    assert s.run() == 1 + 2 + 3
    assert [c.status for c in cos] == [0, 1, 2]
    assert s.run() == 0


def test_block_and_wake(s):
    co = s.spawn("block_once")
    with pytest.raises(ValueError, match="stale"):
        co.wake(0)
    co.resume()
    assert co.state == "blocked"
    tok = co.token
    assert tok == 1
    with pytest.raises(RuntimeError, match="blocked"):
        co.resume()
    with pytest.raises(RuntimeError, match="has started"):
        co.cancel()
    with pytest.raises(ValueError, match="stale"):
        co.wake(tok + 1, 5)
    with pytest.raises(ValueError, match="token must be"):
        co.wake(-1)
    with pytest.raises(ValueError, match="token must be"):
        co.wake("1")
    with pytest.raises(ValueError, match="value must be"):
        co.wake(tok, 2**63)
    assert co.state == "blocked"
    co.wake(tok, -7)
    assert co.state == "ready" and co.token == 0
    with pytest.raises(ValueError, match="stale"):
        co.wake(tok, 1)
    assert s.run() == 1
    assert co.status == -7


def test_cancel(s):
    co = s.spawn("yield_n", 5)
    co.cancel(42)
    assert co.state == "done" and co.status == 42
    assert s.run() == 0
    co2 = s.spawn("yield_n", 5)
    co2.cancel()
    assert co2.status == -1
    assert co.reap() == 42 and co2.reap() == -1


def test_find_and_bogus_ids(s):
    co = s.spawn("yield_n", 0)
    assert s.find(co.id).id == co.id
    for bogus in (0, -1, 2**64, co.id + 1, co.id + (1 << 24), "1", None, 1.0):
        with pytest.raises(LookupError):
            Coroutine(s, bogus).state
        with pytest.raises(LookupError):
            s.find(bogus)
    with pytest.raises(LookupError):
        Coroutine(s, 999).resume()
    with pytest.raises(LookupError):
        Coroutine(s, 999).wake(1)


def test_ids_not_reused_after_reap(s):
    seen = set()
    for _ in range(200):
        co = s.spawn("yield_n", 0)
        assert co.id not in seen
        seen.add(co.id)
        s.run()
        co.reap()
    for i in seen:
        with pytest.raises(LookupError):
            s.find(i)


def test_stack_hwm(s):
    page = os.sysconf("SC_PAGE_SIZE")
    co = s.spawn("use_stack", 20000)
    co.resume()
    assert 20000 <= co.stack_hwm <= 20000 + 2 * page
    assert co.stack_hwm <= co.stack_size
    s.run()
    assert co.status >= 0


def test_counts_consistency(s):
    keys = {"live", "ready", "blocked", "done", "created", "switches", "stacks_pooled", "stacks_mapped", "arenas"}
    c = s.counts()
    assert set(c) == keys and all(v == 0 for v in c.values())
    y = s.spawn("yield_n", 1)
    s.spawn("block_once")
    n = s.spawn("yield_n", 0)
    n.cancel(0)
    c = s.counts()
    assert (c["live"], c["ready"], c["blocked"], c["done"], c["created"]) == (3, 2, 0, 1, 3)
    assert c["stacks_mapped"] == 3 and c["stacks_pooled"] == 1 and c["arenas"] == 1
    assert s.run() == 3  # y yields, b blocks, y exits
    c = s.counts()
    assert (c["live"], c["ready"], c["blocked"], c["done"]) == (3, 0, 1, 2)
    assert c["switches"] == 6
    assert c["live"] == c["ready"] + c["blocked"] + c["done"]  # nothing is running from Python
    y.reap()
    n.reap()
    c = s.counts()
    assert (c["live"], c["done"], c["stacks_pooled"]) == (1, 0, 2)
    assert s.trim() > 0


# --- trace ----------------------------------------------------------------------

def test_trace_records(s):
    assert len(s.trace_records()) == 0
    s.trace(16)
    co = s.spawn("yield_n", 3)
    assert s.run() == 4
    t = s.trace_records()
    assert t.dtype == runtime.TRACE_DTYPE
    assert [tuple(int(x) for x in r) for r in t[["from_id", "to_id"]]] == [(0, co.id), (co.id, 0)] * 4
    names = [runtime.REASONS[int(r)] for r in t["reason"]]
    assert names == ["resume", "yield"] * 3 + ["resume", "exit"]
    assert np.all(np.diff(t["t_ns"].astype(np.int64)) >= 0) and t["t_ns"][0] > 0
    s.trace(3)
    s.spawn("yield_n", 3)
    s.run()
    assert len(s.trace_records()) == 3
    assert runtime.REASONS[int(s.trace_records()["reason"][-1])] == "exit"
    s.trace(0)
    assert len(s.trace_records()) == 0


@pytest.mark.parametrize("cap", [-1, 2**40, "8", 1.5])
def test_trace_bad_capacity(s, cap):
    with pytest.raises(ValueError, match="capacity"):
        s.trace(cap)


# --- FP rounding ----------------------------------------------------------------

@pytest.mark.parametrize("fpfast", [False, True])
def test_fp_round_leaves_the_interpreter_alone(fpfast):
    before = fpenv()
    assert before[0] & MXCSR_RC == 0
    with Scheduler(fpfast=fpfast) as s:
        cos = [s.spawn("fp_round", mode) for mode in range(4)]
        assert s.run() == 8
        assert fpenv() == before
        for mode, co in enumerate(cos):
            got = co.reap() & 0xFFFFFFFF
            assert got & MXCSR_RC == mode << 13, hex(got)
            assert got & ~(MXCSR_RC | 0x3F) == before[0] & ~(MXCSR_RC | 0x3F)
    assert fpenv() == before


# --- closing ------------------------------------------------------------------------

def test_closed_scheduler():
    s = Scheduler()
    co = s.spawn("yield_n", 1)
    s.close()
    s.close()  # idempotent
    for call in (lambda: s.spawn("yield_n", 1), s.run, s.counts, s.trim, lambda: s.trace(4),
                 s.trace_records, lambda: s.find(co.id), lambda: s.stack_size, lambda: s.guard,
                 lambda: s.fpfast, lambda: co.state, co.resume, co.reap, lambda: co.wake(1),
                 co.cancel, lambda: co.status, lambda: co.stack_hwm):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_close_with_unfinished_coroutines():
    with Scheduler() as s:
        s.spawn("block_once").resume()
        s.spawn("yield_n", 5).resume()
        s.spawn("yield_n", 5)
    with Scheduler() as s:
        assert s.counts()["live"] == 0


def test_module_facts():
    assert runtime.build_info().startswith("arch=x86_64")
    info = runtime.info()
    assert {"build", "guards", "vm.max_map_count", "page_size", "boost_context"} <= set(info)
    assert set(runtime.STATES.values()) == {"new", "ready", "running", "blocked", "done"}
    assert set(runtime.DEMOS) == {"yield_n", "use_stack", "block_once", "fp_round"}


# --- model-based: the scheduler against a plain Python model ------------------------

from hypothesis import settings, strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule  # noqa: E402

from yfcore.lab.paths import env_flag  # noqa: E402


class Model:
    """One coroutine as the contract describes it."""

    def __init__(self, body, k=0):
        self.body, self.k = body, k
        self.state, self.left, self.token, self.status, self.woken = "new", k, 0, None, None

    def step(self):
        """What one resume does: yield_n yields k times then returns k; block_once blocks, then returns the value."""
        if self.body == "yield_n":
            if self.left:
                self.left -= 1
                self.state = "ready"
            else:
                self.state, self.status = "done", self.k
        elif self.woken is None:
            self.state = "blocked"
            self.token += 1
        else:
            self.state, self.status = "done", self.woken


class SchedulerMachine(RuleBasedStateMachine):
    @initialize(fpfast=st.booleans(), traced=st.booleans())
    def make(self, fpfast, traced):
        # Tracing takes the slow switch; untraced, the fast paths run, and
        # the states and counts below are what is checked (run's order needs the trace).
        self.s = Scheduler(16384, fpfast=fpfast)
        self.traced = traced
        if traced:
            self.s.trace(1 << 12)
        self.m = {}          # id -> Model, unreaped
        self.queue = []      # ids in ready-queue order
        self.reaped = []

    def teardown(self):
        if hasattr(self, "s"):
            self.s.close()

    def pick(self, i):
        ids = sorted(self.m) + self.reaped
        return ids[i % len(ids)]

    def _pick_for(self, i, call, states=None):
        """(id, Coroutine) of the coroutine rule argument i picks, when call(co)
        may succeed on it: not reaped, and in one of `states` (any if None).
        Otherwise call(co) must raise LookupError (reaped) or RuntimeError
        (another state), and the id is None."""
        cid = self.pick(i)
        co = Coroutine(self.s, cid)
        if cid in self.reaped:
            with pytest.raises(LookupError):
                call(co)
            return None, co
        if states is not None and self.m[cid].state not in states:
            with pytest.raises(RuntimeError):
                call(co)
            return None, co
        return cid, co

    def _step(self, cid):
        self.queue.remove(cid)
        mo = self.m[cid]
        mo.step()
        if mo.state == "ready":
            self.queue.append(cid)

    @rule(k=st.integers(0, 3))
    def spawn_yield(self, k):
        co = self.s.spawn("yield_n", k)
        assert co.id not in self.m and co.id not in self.reaped
        self.m[co.id] = Model("yield_n", k)
        self.queue.append(co.id)

    @rule()
    def spawn_block(self):
        co = self.s.spawn("block_once")
        assert co.id not in self.m and co.id not in self.reaped
        self.m[co.id] = Model("block_once")
        self.queue.append(co.id)

    @precondition(lambda self: self.m or self.reaped)
    @rule(i=st.integers(0, 1000))
    def resume(self, i):
        cid, co = self._pick_for(i, lambda co: co.resume(), ("new", "ready"))
        if cid is not None:
            co.resume()
            self._step(cid)

    @rule()
    def run(self):
        n0 = self.s.counts()["switches"]
        order = []
        while self.queue:
            order.append(self.queue[0])
            self._step(self.queue[0])
        assert self.s.run() == len(order)
        if not self.traced:
            return
        t = self.s.trace_records()
        new = t[len(t) - (self.s.counts()["switches"] - n0):] if order else t[:0]
        resumed = [int(r["to_id"]) for r in new if r["reason"] == lib.YF_REASON_RESUME]
        assert resumed == order

    @precondition(lambda self: self.m or self.reaped)
    @rule(i=st.integers(0, 1000), how=st.sampled_from(["right", "next", "previous", "zero"]),
          value=st.integers(-(2**63), 2**63 - 1))
    def wake(self, i, how, value):
        cid, co = self._pick_for(i, lambda co: co.wake(1, value))
        if cid is None:
            return
        mo = self.m[cid]
        token = {"right": mo.token, "next": mo.token + 1, "previous": mo.token - 1, "zero": 0}[how]
        if token < 0:
            token = 0
        if mo.state == "blocked" and token == mo.token and token > 0:
            co.wake(token, value)
            mo.state, mo.woken = "ready", value
            self.queue.append(cid)
        else:
            with pytest.raises(ValueError, match="stale"):
                co.wake(token, value)

    @precondition(lambda self: self.m or self.reaped)
    @rule(i=st.integers(0, 1000), status=st.integers(-(2**63), 2**63 - 1))
    def cancel(self, i, status):
        cid, co = self._pick_for(i, lambda co: co.cancel(status), ("new",))
        if cid is not None:
            co.cancel(status)
            self.queue.remove(cid)
            self.m[cid].state, self.m[cid].status = "done", status

    @precondition(lambda self: self.m or self.reaped)
    @rule(i=st.integers(0, 1000))
    def reap(self, i):
        cid, co = self._pick_for(i, lambda co: co.reap(), ("done",))
        if cid is not None:
            assert co.reap() == self.m.pop(cid).status
            self.reaped.append(cid)

    @invariant()
    def matches_the_model(self):
        if not hasattr(self, "s"):
            return
        c = self.s.counts()
        states = [mo.state for mo in self.m.values()]
        assert c["live"] == len(self.m)
        assert c["ready"] == len(self.queue) == states.count("new") + states.count("ready")
        assert c["blocked"] == states.count("blocked")
        assert c["done"] == states.count("done")
        assert c["created"] == len(self.m) + len(self.reaped)
        # Every stack is either in use by an unfinished coroutine or pooled.
        assert c["stacks_mapped"] == c["stacks_pooled"] + len(self.m) - c["done"]
        for cid, mo in self.m.items():
            co = Coroutine(self.s, cid)
            assert co.state == mo.state, (cid, mo.body, mo.k)
            assert co.token == (mo.token if mo.state == "blocked" else 0)
            if mo.state == "done":
                assert co.status == mo.status
        for cid in self.reaped:
            with pytest.raises(LookupError):
                self.s.find(cid)


SchedulerMachine.TestCase.settings = settings(
    max_examples=50 if env_flag("YF_QUICK") else 500,
    stateful_step_count=30 if env_flag("YF_QUICK") else 60,
    deadline=None,
)
test_scheduler_model = SchedulerMachine.TestCase

"""TimerWheel (csrc/wheel.c): model-based tests against a sorted model, bad input, batches."""
import numpy as np
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from yfcore.lab.paths import env_flag
from yfcore.wheel import MAX_TIME, TimerWheel


class Model:
    """The specification: pending timers keyed by handle; advance(now) takes
    those whose deadline is <= now, in (deadline, arming order); a deadline
    already past when armed is due at the next advance."""

    def __init__(self, now=0):
        self.now = now
        self.seq = 0
        self.pending = {}

    def add(self, handle, deadline, payload):
        self.pending[handle] = (deadline, self.seq, deadline, payload)
        self.seq += 1

    def cancel(self, handle):
        return self.pending.pop(handle)[3]

    def advance(self, now):
        due = sorted((v[0], v[1], h) for h, v in self.pending.items() if v[0] <= now)
        self.now = now
        return [(h, self.pending[h][2], self.pending.pop(h)[3]) for _, _, h in due]


# Small shapes reach every level, the cascades and the far levels with
# deadlines of a few thousand ticks; (8, 8, 8, 8) is the default.
SHAPES = [(2, 3, 2), (1,), (3, 1, 4), (4, 4), (8, 8, 8, 8), (6, 6, 6, 6, 6, 6)]


class WheelMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.w = None

    @rule(shape=st.sampled_from(SHAPES), start=st.sampled_from([0, 5, 2**40 - 3, 2**62]))
    @precondition(lambda self: self.w is None)
    def make(self, shape, start):
        self.w = TimerWheel(shape, now=start, capacity=4096)
        self.m = Model(start)
        self.handles = []

    @rule(delta=st.one_of(st.integers(-20, 300), st.integers(300, 5000), st.integers(2**32, 2**41)),
          payload=st.integers(-(2**63), 2**63 - 1))
    @precondition(lambda self: self.w is not None)
    def add(self, delta, payload):
        d = min(max(self.m.now + delta, 0), MAX_TIME)
        h = self.w.add(d, payload)
        self.m.add(h, d, payload)
        self.handles.append(h)

    @rule(deltas=st.lists(st.integers(-5, 3000), min_size=0, max_size=40))
    @precondition(lambda self: self.w is not None)
    def add_many(self, deltas):
        d = np.clip(np.array(deltas, np.int64) + self.m.now, 0, MAX_TIME)
        p = np.arange(len(d), dtype=np.int64) * 7
        hs = self.w.add_many(d, p)
        for h, dd, pp in zip(hs.tolist(), d.tolist(), p.tolist()):
            self.m.add(h, dd, pp)
            self.handles.append(h)

    @rule(i=st.integers(0, 10**6))
    @precondition(lambda self: self.w is not None and self.handles)
    def cancel(self, i):
        h = self.handles[i % len(self.handles)]
        if h in self.m.pending:
            assert self.w.cancel(h) == self.m.cancel(h)
        else:
            with pytest.raises(LookupError):
                self.w.cancel(h)

    @rule(i=st.integers(0, 10**6), k=st.integers(1, 10))
    @precondition(lambda self: self.w is not None and self.handles)
    def cancel_many(self, i, k):
        pend = [h for h in self.handles if h in self.m.pending]
        chosen = pend[i % max(1, len(pend)):][:k]
        if not chosen:
            return
        got = self.w.cancel_many(np.array(chosen, np.int64))
        assert got.tolist() == [self.m.cancel(h) for h in chosen]

    @rule(step=st.one_of(st.integers(0, 70), st.integers(70, 6000), st.integers(2**32, 2**42)),
          batch=st.booleans())
    @precondition(lambda self: self.w is not None)
    def advance(self, step, batch):
        now = min(self.m.now + step, MAX_TIME)
        want = self.m.advance(now)
        if batch:
            h, d, p = self.w.advance_many(now)
            got = list(zip(h.tolist(), d.tolist(), p.tolist()))
        else:
            got = [tuple(x) for x in self.w.advance(now)]
        assert got == want
        assert self.w.now == now

    @invariant()
    def agrees(self):
        if self.w is None:
            return
        self.w.check()
        assert len(self.w) == len(self.m.pending)
        nd = self.w.next_deadline()
        if not self.m.pending:
            assert nd is None
        else:
            earliest = min(v[2] for v in self.m.pending.values())
            assert nd is not None and nd <= max(earliest, self.m.now)

    def teardown(self):
        if self.w is not None:
            self.w.close()


# Quick mode: 100 x 100 = 10,000 steps, each followed by yf_wheel_check.
WheelMachine.TestCase.settings = settings(
    max_examples=100 if env_flag("YF_QUICK") else 400,
    stateful_step_count=100 if env_flag("YF_QUICK") else 200,
    deadline=None,
)
test_wheel_model = WheelMachine.TestCase


@pytest.mark.parametrize("shape", [(2, 3, 2), (8, 8, 8, 8), (10, 10, 10, 10)])
def test_long_random_run_against_model(shape):
    """A long seeded walk (cascades over many turns) compared step by step."""
    rng = np.random.default_rng(sum(shape))
    w, m = TimerWheel(shape, capacity=1 << 16), Model()
    live = []
    for step in range(3000):
        op = rng.integers(0, 10)
        if op < 5:
            d = int(m.now + rng.integers(-3, 1 << int(rng.integers(1, 16))))
            h = w.add(max(d, 0), step)
            m.add(h, max(d, 0), step)
            live.append(h)
        elif op < 7 and live:
            h = live.pop(int(rng.integers(0, len(live))))
            if h in m.pending:
                assert w.cancel(h) == m.cancel(h)
        else:
            now = m.now + int(rng.integers(0, 1 << int(rng.integers(1, 14))))
            assert [tuple(x) for x in w.advance(now)] == m.advance(now)
        w.check()
    w.close()


def test_expiry_order_and_exactness():
    w = TimerWheel((2, 2))
    hs = [w.add(d, d) for d in (40, 3, 17, 3, 16, 0)]
    assert [e.payload for e in w.advance(2)] == [0]
    assert [e.payload for e in w.advance(16)] == [3, 3, 16]
    assert [e.handle for e in w.advance(39)] == [hs[2]]   # 17 waited on a far level (past 2^4 ticks)
    assert w.advance(39) == []                             # 40 is never early
    assert [e.handle for e in w.advance(40)] == [hs[0]]
    w.close()


def test_never_early_at_every_tick():
    """Across level and overflow boundaries, each timer comes out exactly at its tick."""
    w = TimerWheel((2, 3, 2))
    deadlines = np.arange(1, 2000, 3)
    hs = w.add_many(deadlines, deadlines)
    seen = []
    for now in range(1, 2001):
        out = w.advance(now)
        assert all(e.deadline == now for e in out)
        seen += [e.handle for e in out]
    assert seen == hs.tolist()
    w.close()


def test_advance_many_in_chunks_keeps_order():
    """More expiries than the collect buffer holds: the C call stops early and resumes."""
    w = TimerWheel((4, 4, 4))
    rng = np.random.default_rng(1)
    d = rng.integers(0, 100_000, 20_000)
    w.add_many(d, np.arange(len(d)))
    h, dd, p = w.advance_many(100_000)
    order = np.lexsort((np.arange(len(d)), d))
    assert p.tolist() == order.tolist()
    assert dd.tolist() == d[order].tolist()
    assert len(w) == 0 and w.now == 100_000
    w.check()
    w.close()


def test_advance_rearm_matches_advance_then_add():
    """advance_rearm over many ticks at once = advancing tick by tick and
    re-arming each expiry at its tick + its delay; handles stay pending."""
    rng = np.random.default_rng(2)
    d = rng.integers(0, 300, 500)
    w, ref = TimerWheel((3, 3, 2)), TimerWheel((3, 3, 2))
    hs = w.add_many(d, np.arange(len(d)))
    ref.add_many(d, np.arange(len(d)))
    delays = rng.integers(1, 400, 100_000)
    got_p, got_d, k = [], [], 0
    for now in (0, 5, 5, 90, 700, 2000):
        while True:
            h, dd, p = w.advance_rearm(now, delays[k:k + 64])
            k += len(h)
            got_p += p.tolist()
            got_d += dd.tolist()
            assert all(w.pending(int(x)) for x in h)
            if w.now == now:
                break
        w.check()
    want_p, want_d, j = [], [], 0
    for t in range(0, 2001):
        for e in ref.advance(t):
            want_p.append(e.payload)
            want_d.append(e.deadline)
            ref.add(t + int(delays[j]), e.payload)
            j += 1
    assert got_p == want_p and got_d == want_d and k == j
    assert len(w) == len(d) and all(w.pending(int(x)) for x in hs)
    with pytest.raises(ValueError):
        w.advance_rearm(10, [1])
    with pytest.raises(ValueError):
        w.advance_rearm(3000, [-1])
    w.close()
    ref.close()


def test_occupancy_picture():
    w = TimerWheel((3, 3))
    w.add_many(np.array([1, 2, 2, 9, 60, 100]))
    occ = w.occupancy()
    assert occ.shape == (2, 8)
    assert occ[0].tolist() == [0, 1, 2, 0, 0, 0, 0, 0]
    assert occ[1].tolist() == [0, 1, 0, 0, 0, 0, 0, 1]
    assert occ.sum() == 5          # 100 is beyond 2^6 ticks: on a far level, not pictured
    w.close()


@pytest.mark.parametrize("bits, err", [
    ((), ValueError), ((0,), ValueError), ((11,), ValueError), ((10, 10, 10, 10, 1), ValueError),
    ((1,) * 9, ValueError), ((4.0,), TypeError), ((True,), TypeError),
])
def test_bad_shapes_raise(bits, err):
    with pytest.raises(err, match="bits"):
        TimerWheel(bits)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="capacity"):
        TimerWheel(capacity=0)
    with pytest.raises(ValueError, match="capacity"):
        TimerWheel(capacity=2**40)
    with pytest.raises(ValueError, match="now"):
        TimerWheel(now=-1)
    w = TimerWheel(capacity=3)
    w.add_many(np.array([5, 6]))
    with pytest.raises(MemoryError, match="capacity=3"):
        w.add_many(np.array([7, 8]))
    assert len(w) == 2
    w.close()


def test_bad_input_raises_never_crashes():
    w = TimerWheel()
    other = TimerWheel()
    h = w.add(10, 1)
    with pytest.raises(ValueError, match="deadline"):
        w.add(-1)
    with pytest.raises(ValueError, match="deadline"):
        w.add(2**63)
    with pytest.raises(ValueError, match="deadline"):
        w.add(2**200)
    with pytest.raises(TypeError, match="deadline"):
        w.add("10")
    with pytest.raises(TypeError, match="deadline"):
        w.add(1.5)
    with pytest.raises(ValueError, match="payload"):
        w.add(5, 2**64)
    with pytest.raises(ValueError, match="deadlines"):
        w.add_many(np.array([1, -2]))
    with pytest.raises(TypeError, match="deadlines"):
        w.add_many(np.array([1.0]))
    with pytest.raises(ValueError, match="deadlines"):
        w.add_many(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="payloads"):
        w.add_many(np.array([1, 2]), np.array([1]))
    with pytest.raises(LookupError, match="not issued by this wheel"):
        other.cancel(h)
    with pytest.raises(LookupError, match="not issued by this wheel"):
        w.cancel(12345)
    with pytest.raises(ValueError, match="handle"):
        w.cancel(-1)
    assert w.cancel(h) == 1
    with pytest.raises(LookupError, match="was cancelled"):
        w.cancel(h)
    h2 = w.add(3, 2)
    w.advance(5)
    with pytest.raises(LookupError, match="has expired"):
        w.cancel(h2)
    hs = w.add_many(np.array([20, 30]))
    with pytest.raises(LookupError, match="more than once"):
        w.cancel_many(np.array([hs[0], hs[0]]))
    with pytest.raises(LookupError, match="handles"):
        w.cancel_many(np.array([hs[0], h2]))
    assert len(w) == 2            # all or nothing
    with pytest.raises(ValueError, match="now"):
        w.advance(4)
    with pytest.raises(ValueError, match="now"):
        w.advance(-5)
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.add(1)
    with pytest.raises(ValueError, match="closed"):
        w.cancel(hs[0])
    other.close()


def test_stale_handle_after_slot_reuse():
    w = TimerWheel()
    h = w.add(10)
    w.cancel(h)
    h2 = w.add(11)
    assert h2 != h
    with pytest.raises(LookupError, match="was cancelled"):
        w.cancel(h)
    assert w.pending(h2) and not w.pending(h)
    w.close()


def test_due_timers_come_out_in_deadline_order():
    """Deadlines already past when armed still come out in deadline order."""
    w = TimerWheel(now=100)
    hs = [w.add(d, d) for d in (50, 10, 100, 101)]
    assert [(e.handle, e.deadline) for e in w.advance(101)] == [(hs[1], 10), (hs[0], 50), (hs[2], 100),
                                                                (hs[3], 101)]
    w.add_many(np.array([90, 20, 101, 20]), np.arange(4))
    h, d, p = w.advance_many(101)
    assert d.tolist() == [20, 20, 90, 101] and p.tolist() == [1, 3, 0, 2]
    w.check()
    w.close()


def test_many_far_timers_expire_in_order():
    """Far-future timers (past the default shape's 2^32 ticks) cascade down the
    levels the wheel adds above the caller's; they once waited in a list
    scanned every turn, which made this quadratic (minutes at this size)."""
    rng = np.random.default_rng(5)
    d = rng.integers(2**33, 2**44, 200_000)
    w = TimerWheel(capacity=len(d))
    w.add_many(d, np.arange(len(d)))
    w.check()
    h, dd, p = w.advance_many(int(d.max()))
    order = np.lexsort((np.arange(len(d)), d))
    assert p.tolist() == order.tolist() and dd.tolist() == d[order].tolist()
    assert len(w) == 0
    w.check()
    w.close()


def test_huge_deadlines_use_the_overflow_list():
    w = TimerWheel((4, 4), now=2**62)
    h = w.add(MAX_TIME, 9)
    w.add(2**62 + 10, 1)
    w.check()
    assert [e.payload for e in w.advance(2**62 + 1000)] == [1]
    assert w.next_deadline() <= MAX_TIME
    assert [e.handle for e in w.advance(MAX_TIME)] == [h]
    assert len(w) == 0 and w.next_deadline() is None
    w.close()


def test_close_with_pending_timers_then_gc():
    w = TimerWheel()
    w.add_many(np.arange(1, 1000))
    del w                                # the wheel is freed before its timers' memory


def test_loop_sleeps_never_early_and_within_a_tick_of_nanosleep():
    from yfcore.lab import timer_wheel

    pr = timer_wheel.sleep_pairs(40, 5, hogs=0)
    ev = timer_wheel.pairs_evidence(pr)
    assert ev["n"] == 40 and ev["early"] == 0 and ev["value"] >= 0 and ev["plain_min"] >= 0, ev
    # The loop rounds each deadline up to the next 1 ms tick: in the median
    # pair it ends between 0 and 1 ms after its clock_nanosleep twin (noise
    # of the machine aside, which the median of 40 pairs keeps small).
    assert -0.5 < ev["excess_median"] < 1.5, ev


# ---- KeyedTimerWheel.run: many ticks in one C call ------------------------------

class ModelStop(Exception):
    """model_run reached an entry run() must refuse: exc is the exception
    class, done the ticks completed, out what they gave."""

    def __init__(self, exc, done, out):
        super().__init__(exc.__name__)
        self.exc, self.done, self.out = exc, done, out


def model_run(m: Model, times, adds, cancels, delays):
    """The specification of KeyedTimerWheel.run on the Model (keys are the
    handles, payload = key): per tick the adds, the cancels, then an advance
    in which the k-th expiry (k < len(delays)) is armed again at the tick it
    fired + delays[k]. A due timer (deadline at or before the advance's
    start) fires at the start; a re-arm at or before its firing tick is due
    at the next advance, as add's is. Returns (keys, deadlines, fired per
    tick, rearmed); an add of a pending key or a cancel of a key that is not
    pending raises ModelStop, the entries before it applied."""
    keys, deadlines, fired, k = [], [], [], 0
    for i, (now, tick_adds, tick_cancels) in enumerate(zip(times, adds, cancels)):
        for key, d in tick_adds:
            if key in m.pending:
                raise ModelStop(ValueError, i, (keys, deadlines, fired, k))
            m.add(key, d, key)
        for key in tick_cancels:
            if key not in m.pending:
                raise ModelStop(LookupError, i, (keys, deadlines, fired, k))
            m.cancel(key)
        start, deferred, n = m.now, set(), 0
        while True:
            due = [(v[0], v[1], h) for h, v in m.pending.items() if v[0] <= now and h not in deferred]
            if not due:
                break
            d, _, h = min(due)
            del m.pending[h]
            keys.append(h)
            deadlines.append(d)
            n += 1
            if k < len(delays):
                at = max(d, start) + int(delays[k])
                k += 1
                m.add(h, at, h)
                if at <= max(d, start):
                    deferred.add(h)
        m.now = now
        fired.append(n)
    return keys, deadlines, fired, k


def random_ticks(rng, nkeys, now, pending, nticks, wrong=0.0, jumps=(0, 1, 2, 5, 60, 3000)):
    """nticks ticks of keyed work from the set of pending keys, tracked as if
    nothing expired (so the adds are valid; a cancel may meet a key that
    expired): (times, adds [(key, deadline)], cancels [key]) per tick. With
    probability `wrong` a tick also arms a key it believes pending."""
    times, adds, cancels = [], [], []
    pend = set(pending)
    for _ in range(nticks):
        free = [k for k in range(nkeys) if k not in pend]
        new = rng.choice(free, size=min(len(free), int(rng.integers(0, 8))), replace=False).tolist()
        if pend and rng.random() < wrong:
            new.append(int(rng.choice(sorted(pend))))
        tick_adds = [(int(k), max(0, now + int(rng.integers(-3, 3000)))) for k in new]
        pend |= set(new)
        gone = rng.choice(sorted(pend), size=min(len(pend), int(rng.integers(0, 5))), replace=False).tolist()
        pend -= set(gone)
        now += int(rng.choice(jumps))
        times.append(now)
        adds.append(tick_adds)
        cancels.append([int(k) for k in gone])
    return times, adds, cancels


def flat(per_tick, pick=lambda x: x):
    """A per-tick list of lists as (1-D int64 array, counts)."""
    vals = [pick(x) for tick in per_tick for x in tick]
    return np.array(vals, np.int64), np.array([len(t) for t in per_tick], np.int64)


def run_both(w, m, times, adds, cancels, delays):
    """The same ticks through run() and model_run(): asserts they agree,
    refusals included; returns run()'s Ran (the partial one on a refusal)."""
    d = [] if delays is None else list(delays)
    ak, ac = flat(adds, lambda x: x[0])
    ad, _ = flat(adds, lambda x: x[1])
    ck, cc = flat(cancels)
    try:
        want, stop = model_run(m, times, adds, cancels, d), None
    except ModelStop as e:
        want, stop = e.out, e
    if stop is None:
        r = w.run(times, ak, ad, ck, delays, add_counts=ac, cancel_counts=cc)
    else:
        with pytest.raises(stop.exc) as ei:
            w.run(times, ak, ad, ck, delays, add_counts=ac, cancel_counts=cc)
        assert ei.value.done == stop.done
        r = ei.value.result
    assert r.keys.tolist() == want[0] and r.deadlines.tolist() == want[1]
    assert r.fired.tolist() == want[2] and r.rearmed == want[3]
    return r


@pytest.mark.parametrize("shape", [(2, 3, 2), (1,), (4, 4), (8, 8, 8, 8)])
@pytest.mark.parametrize("seed", range(4))
def test_run_matches_model_and_per_op_api(shape, seed):
    """run() over random ticks gives exactly the model's expiries, per-tick
    counts, re-arms, refusals and pending keys; without delays and
    refusals it also agrees with the same ticks done through
    add/cancel/advance on a twin wheel."""
    from yfcore.wheel import KeyedTimerWheel

    rng = np.random.default_rng(seed * 17 + len(shape))
    nkeys, start = 60, int(rng.choice([0, 7, 2**40]))
    w, m = KeyedTimerWheel(nkeys, shape, start), Model(start)
    seen = {"expiries": 0, "re-arms": 0, "refusals": 0, "twin ticks": 0}
    for call in range(30):
        pend = [k for k in range(nkeys) if w.pending(k)]
        times, adds, cancels = random_ticks(rng, nkeys, m.now, pend, int(rng.integers(0, 9)), wrong=0.05)
        delays = rng.integers(0, 400, int(rng.integers(0, 40))) if call % 3 else None
        # The twin: the model's state before the call, through the per-op API.
        twin = KeyedTimerWheel(nkeys, shape, m.now)
        for key, v in sorted(m.pending.items(), key=lambda kv: kv[1][1]):
            twin.add(key, v[0])
        before = w.now
        r = run_both(w, m, times, adds, cancels, delays)
        refused = len(r.fired) < len(times)
        seen["expiries"] += len(r.keys)
        seen["re-arms"] += r.rearmed
        seen["refusals"] += refused
        if delays is None and not refused:
            got_k, got_d = [], []
            for now, ta, tc in zip(times, adds, cancels):
                for key, dd in ta:
                    twin.add(key, dd)
                for key in tc:
                    twin.cancel(key)
                k2, d2 = twin.advance(now)
                got_k += k2.tolist()
                got_d += d2.tolist()
            assert got_k == r.keys.tolist() and got_d == r.deadlines.tolist()
            assert twin.now == w.now and len(twin) == len(w)
            seen["twin ticks"] += len(times)
        twin.close()
        w.check()
        assert w.now >= before and len(w) == len(m.pending) and w.now == m.now
        assert [k for k in range(nkeys) if w.pending(k)] == sorted(m.pending)
    assert min(seen.values()) > 0, seen
    # Everything left comes out in the model's order.
    keys, dl = w.advance(MAX_TIME)
    want = m.advance(MAX_TIME)
    assert list(zip(keys.tolist(), dl.tolist())) == [(h, d) for h, d, _ in want]
    w.close()


def test_run_two_d_rows_equal_flat_with_counts():
    from yfcore.wheel import KeyedTimerWheel

    rng = np.random.default_rng(3)
    keys = rng.permutation(400)[:320].reshape(40, 8)
    dl = np.arange(40)[:, None] + 1 + rng.integers(0, 50, (40, 8))
    delays = rng.integers(1, 50, 500)
    a, b = KeyedTimerWheel(400, (3, 3)), KeyedTimerWheel(400, (3, 3))
    times = np.arange(1, 41)
    ra = a.run(times, keys, dl, delays=delays)
    rb = b.run(times, keys.ravel(), dl.ravel(), delays=delays, add_counts=np.full(40, 8))
    rc = KeyedTimerWheel(400, (3, 3)).run(times, keys, dl, delays=delays, collect=False)
    assert ra.keys.tolist() == rb.keys.tolist() and ra.fired.tolist() == rb.fired.tolist() == rc.fired.tolist()
    assert ra.rearmed == rb.rearmed == rc.rearmed > 0 and rc.keys is None and rc.deadlines is None
    a.close()
    b.close()


def test_run_stops_at_the_bad_entry_and_says_where():
    """A key armed twice or cancelled when not pending stops the call there:
    the ticks before it are done, the tick's earlier entries applied, and
    the exception names the entry and carries what ran."""
    from yfcore.wheel import KeyedTimerWheel

    w = KeyedTimerWheel(16, (2, 2))
    times = [1, 2, 3, 4]
    adds = np.array([[0, 1], [2, 3], [4, 4], [5, 6]])
    dl = np.array([[1, 9], [2, 9], [9, 9], [9, 9]])
    with pytest.raises(ValueError, match=r"add_keys\[2, 1\]: key 4 is already pending") as ei:
        w.run(times, adds, dl, delays=[0])
    assert ei.value.done == 2 and w.now == 2
    # Key 0 fired at tick 0 and was re-armed with the one delay, 0: due, so
    # it fired again at the start of tick 1, then expired; 2 expired at 2.
    assert ei.value.result.keys.tolist() == [0, 0, 2] and ei.value.result.fired.tolist() == [1, 2]
    assert ei.value.result.rearmed == 1
    # 1 and 3 armed, and the first 4 of tick 2 (the second one stopped the call).
    assert [k for k in range(16) if w.pending(k)] == [1, 3, 4]
    w.check()
    with pytest.raises(LookupError, match=r"cancel_keys\[3\] \(tick 1\): key 2 is not pending") as ei:
        w.run([5, 6], cancel_keys=[1, 3, 4, 2], cancel_counts=[1, 3])
    assert ei.value.done == 1 and w.now == 5
    assert ei.value.result.keys.tolist() == [] and ei.value.result.fired.tolist() == [0]
    assert [k for k in range(16) if w.pending(k)] == []
    w.check()
    w.close()


def test_run_refuses_bad_arguments_before_doing_anything():
    from yfcore.wheel import KeyedTimerWheel

    w = KeyedTimerWheel(8, (2, 2), now=10)
    w.add(1, 20)
    bad = [
        (TypeError, "times", dict(times=[1.5])),
        (ValueError, "times", dict(times=[9])),
        (ValueError, r"times\[2\]", dict(times=[10, 12, 11])),
        (ValueError, "times", dict(times=np.zeros((2, 2), np.int64))),
        (ValueError, "add_keys", dict(times=[11], add_keys=[[8]], add_deadlines=[[12]])),
        (ValueError, "add_keys", dict(times=[11], add_keys=[[-1]], add_deadlines=[[12]])),
        (TypeError, "add_keys", dict(times=[11], add_keys=[[1.0]], add_deadlines=[[12]])),
        (TypeError, "add_keys", dict(times=[11], add_keys=[[True]], add_deadlines=[[12]])),
        (ValueError, "add_deadlines", dict(times=[11], add_keys=[[2]], add_deadlines=[[-12]])),
        (ValueError, "add_deadlines", dict(times=[11], add_keys=[[2]], add_deadlines=[[12, 13]])),
        (ValueError, "add_deadlines", dict(times=[11], add_keys=[[2]])),
        (ValueError, "rows", dict(times=[11, 12], add_keys=[[2]], add_deadlines=[[12]])),
        (ValueError, "add_counts", dict(times=[11], add_keys=[2], add_deadlines=[12])),
        (ValueError, "add_counts", dict(times=[11], add_keys=[2], add_deadlines=[12], add_counts=[2])),
        (ValueError, "add_counts", dict(times=[11], add_keys=[2], add_deadlines=[12], add_counts=[1, 0])),
        (ValueError, "add_counts", dict(times=[11], add_keys=[2], add_deadlines=[12], add_counts=[-1])),
        (ValueError, "cancel_keys", dict(times=[11], cancel_keys=[[9]])),
        (ValueError, "cancel_keys", dict(times=[11], cancel_keys=[[1]], cancel_counts=[1])),
        (ValueError, "cancel_counts", dict(times=[11], cancel_keys=[1])),
        (ValueError, "delays", dict(times=[11], delays=[-1])),
        (TypeError, "delays", dict(times=[11], delays=["1"])),
        (TypeError, "collect", dict(times=[11], collect=1)),
        (ValueError, "cancel_keys", dict(times=[11], cancel_counts=[1])),
    ]
    for exc, name, kw in bad:
        with pytest.raises(exc, match=name):
            w.run(**kw)
        assert len(w) == 1 and w.now == 10 and w.pending(1), kw
    w.check()
    with pytest.raises(ValueError, match="already pending"):
        w.add(1, 30)
    with pytest.raises(LookupError, match="not pending"):
        w.cancel(2)
    with pytest.raises(ValueError, match="key"):
        w.add(8, 30)
    with pytest.raises(ValueError, match="key"):
        w.pending(-1)
    with pytest.raises(ValueError, match="now"):
        w.advance(3)
    with pytest.raises(ValueError, match="keys"):
        KeyedTimerWheel(0)
    assert w.run([]).fired.tolist() == []
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.run([11])
    with pytest.raises(ValueError, match="closed"):
        w.pending(1)

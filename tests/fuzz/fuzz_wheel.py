"""Coverage-guided fuzzing of TimerWheel's public API (csrc/wheel.c) against a sorted model.

Each input is a wheel shape (1-5 levels of 1-10 bits), a starting tick and a
sequence of operations: add and add_many with deadlines near, far (past every
level) or already past; cancel and cancel_many of pending, stale and made-up
handles; advance and advance_many by small and huge steps, and backwards;
and KeyedTimerWheel.run over a few ticks of any keys (refusals included),
against the model of run in tests/test_wheel.py.
Expiries must come out exactly as the model says (deadline, then arming
order, also for deadlines already past when armed; as in tests/test_wheel.py), and yf_wheel_check must hold after
every operation.

Run by `tests/sanitize.py --only fuzz` (see fuzz_sbuf.py).
"""
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["yfcore"]):
    import numpy as np
    from yfcore.wheel import KeyedTimerWheel, TimerWheel

# The specification tests/test_wheel.py checks the wheel against.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from test_wheel import Model, run_both  # noqa: E402

KEYS = 32

MAX_OPS = 40
MAX_TIME = 2**63 - 1
STARTS = (0, 5, 2**32 - 3, 2**40 + 7, 2**62)


def _delta(fdp) -> int:
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind == 0:
        return fdp.ConsumeIntInRange(-50, 300)
    if kind == 1:
        return fdp.ConsumeIntInRange(300, 70000)
    if kind == 2:
        return fdp.ConsumeIntInRange(2**20, 2**42)
    return fdp.ConsumeIntInRange(-(2**40), 2**62)


def _deadline(m: Model, fdp) -> int:
    return min(max(m.now + _delta(fdp), 0), MAX_TIME)


def _expect(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError(f"{fn.__name__}{args!r} did not raise {exc.__name__}")


def _run(fdp, kw: KeyedTimerWheel, km: Model) -> None:
    """KeyedTimerWheel.run over a few ticks of any keys (arming a pending
    key or cancelling one that is not must stop the call where the model
    says), against tests/test_wheel.py's model_run."""
    times, adds, cancels, now = [], [], [], km.now
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        adds.append([(fdp.ConsumeIntInRange(0, KEYS - 1), _deadline(km, fdp))
                     for _ in range(fdp.ConsumeIntInRange(0, 4))])
        cancels.append([fdp.ConsumeIntInRange(0, KEYS - 1) for _ in range(fdp.ConsumeIntInRange(0, 2))])
        now = min(now + (fdp.ConsumeIntInRange(0, 70), fdp.ConsumeIntInRange(0, 2**34))[fdp.ConsumeIntInRange(0, 1)],
                  MAX_TIME)
        times.append(now)
    delays = [fdp.ConsumeIntInRange(0, 300) for _ in range(fdp.ConsumeIntInRange(0, 20))]
    run_both(kw, km, times, adds, cancels, np.array(delays, np.int64) if delays else None)
    kw.check()
    assert len(kw) == len(km.pending) and kw.now == km.now
    assert [k for k in range(KEYS) if kw.pending(k)] == sorted(km.pending)


def _step(fdp, w: TimerWheel, m: Model, gone: list) -> None:
    op = fdp.ConsumeIntInRange(0, 8)
    pend = list(m.pending)
    if op == 0:
        d = _deadline(m, fdp)
        p = fdp.ConsumeIntInRange(-(2**63), 2**63 - 1)
        m.add(w.add(d, p), d, p)
    elif op == 1:
        k = fdp.ConsumeIntInRange(0, 64)
        ds = [_deadline(m, fdp) for _ in range(k)]
        ps = [fdp.ConsumeIntInRange(-(2**40), 2**40) for _ in range(k)]
        hs = w.add_many(np.array(ds, np.int64), np.array(ps, np.int64))
        assert len(hs) == k
        for h, d, p in zip(hs.tolist(), ds, ps):
            m.add(h, d, p)
    elif op == 2 and pend:
        h = pend[fdp.ConsumeIntInRange(0, len(pend) - 1)]
        assert w.cancel(h) == m.pending.pop(h)[3]
        gone.append(h)
    elif op == 3:
        # A stale handle, or a made-up one: LookupError and nothing changes.
        h = gone[fdp.ConsumeIntInRange(0, len(gone) - 1)] if gone and fdp.ConsumeBool() \
            else fdp.ConsumeIntInRange(0, 2**63 - 1)
        if h not in m.pending:
            assert not w.pending(h)
            _expect(LookupError, w.cancel, h)
    elif op == 4 and pend:
        k = fdp.ConsumeIntInRange(1, len(pend))
        start = fdp.ConsumeIntInRange(0, len(pend) - k)
        chosen = pend[start:start + k]
        if fdp.ConsumeBool() and gone:
            # One bad handle in the batch: all or nothing.
            bad = chosen + [gone[-1]]
            _expect(LookupError, w.cancel_many, np.array(bad, np.int64))
        else:
            got = w.cancel_many(np.array(chosen, np.int64)).tolist()
            assert got == [m.pending.pop(h)[3] for h in chosen]
            gone.extend(chosen)
    elif op in (5, 6):
        step = (fdp.ConsumeIntInRange(0, 70), fdp.ConsumeIntInRange(0, 2**34),
                fdp.ConsumeIntInRange(0, 2**44))[fdp.ConsumeIntInRange(0, 2)]
        now = min(m.now + step, MAX_TIME)
        want = m.advance(now)
        if op == 5:
            got = [tuple(e) for e in w.advance(now)]
        else:
            h, d, p = w.advance_many(now)
            got = list(zip(h.tolist(), d.tolist(), p.tolist()))
        assert got == want, (now, got[:5], want[:5], len(got), len(want))
        gone.extend(h for h, _, _ in want)
    elif op == 7 and m.now > 0:
        _expect(ValueError, w.advance, m.now - fdp.ConsumeIntInRange(1, m.now))
    elif op == 8:
        nd = w.next_deadline()
        if not m.pending:
            assert nd is None
        else:
            earliest = min(v[0] for v in m.pending.values())
            assert nd is not None and nd <= max(earliest, m.now), (nd, earliest, m.now)
    del gone[:-256]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    levels = fdp.ConsumeIntInRange(1, 5)
    bits = []
    for _ in range(levels):
        bits.append(fdp.ConsumeIntInRange(1, min(10, 40 - sum(bits) - (levels - len(bits) - 1))))
    start = STARTS[fdp.ConsumeIntInRange(0, len(STARTS) - 1)]
    w = TimerWheel(tuple(bits), now=start, capacity=4096)
    m = Model(start)
    kw, km = KeyedTimerWheel(KEYS, tuple(bits), start), Model(start)
    gone = []
    try:
        for _ in range(MAX_OPS):
            if fdp.remaining_bytes() == 0:
                break
            if fdp.ConsumeIntInRange(0, 9) == 9:
                _run(fdp, kw, km)
                continue
            _step(fdp, w, m, gone)
            w.check()
            assert len(w) == len(m.pending) and w.now == m.now, (len(w), len(m.pending), w.now, m.now)
            for h in list(m.pending)[:8]:
                assert w.pending(h)
        # Everything still pending comes out, in order, by the end of time.
        assert [tuple(e) for e in w.advance(MAX_TIME)] == m.advance(MAX_TIME)
        assert len(w) == 0
    finally:
        w.close()
        kw.close()


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

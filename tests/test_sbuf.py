"""yfcore.sbuf.SockBuf: a model-based random walk against a bytearray (with
yf_sbuf_check after every step), bad input raising precise exceptions, the
memoryview guards, and real sockets (socketpair and TCP loopback)."""
import errno
import gc
import os
import socket
import threading

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from yfcore.lab import socket_buffer
from yfcore.sbuf import SEEK_CUR, SEEK_END, SEEK_SET, SockBuf

QUICK = os.environ.get("YF_QUICK", "") not in ("", "0")
MAX = 4096


class SockBufModel(RuleBasedStateMachine):
    """The buffer and a bytearray with a cursor, driven by the same operations."""

    def __init__(self):
        super().__init__()
        self.sb = SockBuf(64, MAX)
        self.data = bytearray()
        self.cur = 0
        self.reserved = 0

    @rule(payload=st.binary(max_size=300))
    def write(self, payload):
        if len(self.data) + len(payload) > MAX:
            with pytest.raises(OSError, match="max_size"):
                self.sb.write(payload)
        else:
            assert self.sb.write(payload) == len(payload)
            self.data += payload
        self.reserved = 0

    @rule(n=st.integers(-1, 300))
    def read(self, n):
        got = self.sb.read(n)
        end = len(self.data) if n < 0 else min(len(self.data), self.cur + n)
        assert got == self.data[self.cur:end]
        self.cur = end

    @rule(n=st.integers(0, 300))
    def peek(self, n):
        if n > len(self.data) - self.cur:
            with pytest.raises(ValueError, match="follow the cursor"):
                self.sb.peek(n)
        else:
            with self.sb.peek(n) as mv:
                assert mv.readonly and bytes(mv) == self.data[self.cur:self.cur + n]

    @rule(n=st.integers(-1, 300))
    def peekv(self, n):
        views = self.sb.peekv(n)
        end = len(self.data) if n < 0 else min(len(self.data), self.cur + n)
        assert b"".join(bytes(v) for v in views) == self.data[self.cur:end]
        for v in views:
            v.release()

    @rule(off=st.integers(-400, 400), whence=st.sampled_from([SEEK_SET, SEEK_CUR, SEEK_END]))
    def seek(self, off, whence):
        base = {SEEK_SET: 0, SEEK_CUR: self.cur, SEEK_END: len(self.data)}[whence]
        if 0 <= base + off <= len(self.data):
            assert self.sb.seek(off, whence) == base + off
            self.cur = base + off
        else:
            with pytest.raises(ValueError, match="outside"):
                self.sb.seek(off, whence)

    @rule()
    def consume(self):
        assert self.sb.consume() == self.cur
        del self.data[:self.cur]
        self.cur = 0

    @rule(frac=st.floats(0, 1))
    def truncate(self, frac):
        size = int(len(self.data) * frac)
        assert self.sb.truncate(size) == size
        del self.data[size:]
        self.cur = min(self.cur, size)
        self.reserved = 0

    @rule(n=st.integers(0, 600), fill=st.integers(0, 255), frac=st.floats(0, 1))
    def reserve_commit(self, n, fill, frac):
        if len(self.data) + n > MAX:
            with pytest.raises(OSError, match="max_size"):
                self.sb.reserve(n)
            return
        views = self.sb.reserve(n)
        assert sum(len(v) for v in views) == n
        for v in views:
            v[:] = bytes([fill]) * len(v)
            v.release()
        k = int(n * frac)
        self.sb.commit(k)
        self.data += bytes([fill]) * k
        self.reserved = 0

    @precondition(lambda self: self.reserved == 0)
    @rule(n=st.integers(1, 10))
    def commit_without_reservation(self, n):
        with pytest.raises(ValueError, match="reservation"):
            self.sb.commit(n)

    checked_steps = 0

    @invariant()
    def agrees(self):
        SockBufModel.checked_steps += 1
        self.sb.check()
        assert len(self.sb) == len(self.data) and self.sb.tell() == self.cur

    def teardown(self):
        self.sb.close()


def test_model_random_walk():
    # >= 10,000 checked steps in quick mode (runs of up to 100 steps), on top
    # of the 200,000-step C random walk in tests/c/test_sbuf.c.
    examples = 150 if QUICK else 600
    before = SockBufModel.checked_steps
    SockBufModel.TestCase.settings = settings(max_examples=examples, stateful_step_count=100, deadline=None)
    SockBufModel.TestCase().runTest()
    steps = SockBufModel.checked_steps - before
    assert steps >= 10_000, f"only {steps} checked steps ran"


# ---- bad input ------------------------------------------------------------------

@pytest.mark.parametrize("cs", [0, 32, 100, 2**21, -64])
def test_bad_chunk_size(cs):
    with pytest.raises(ValueError, match="chunk_size"):
        SockBuf(cs)


@pytest.mark.parametrize("bad", ["4096", 4096.0, None, True])
def test_chunk_size_type(bad):
    with pytest.raises(TypeError, match="chunk_size must be an int"):
        SockBuf(bad)


# (call, exception, message pattern, errno): each refused on a buffer of
# ten bytes under a 1000-byte limit, which it leaves as it was.
BAD_CALLS = {
    "write-str": (lambda sb: sb.write("text"), TypeError, "bytes-like.*str", None),
    "write-int": (lambda sb: sb.write(5), TypeError, "bytes-like.*int", None),
    "read-negative": (lambda sb: sb.read(-2), ValueError, "n must be between", None),
    "read-str": (lambda sb: sb.read("3"), TypeError, "n must be an int", None),
    "peek-past-end": (lambda sb: sb.peek(11), ValueError, "only 10 bytes follow", None),
    "peek-negative": (lambda sb: sb.peek(-1), ValueError, "n must be between", None),
    "seek-before-head": (lambda sb: sb.seek(-1), ValueError, "outside", None),
    "seek-past-tail": (lambda sb: sb.seek(11), ValueError, "outside", None),
    "seek-whence": (lambda sb: sb.seek(0, 3), ValueError, "whence", None),
    "seek-huge": (lambda sb: sb.seek(2**64), ValueError, "offset", None),
    "truncate-past-tail": (lambda sb: sb.truncate(11), ValueError, "size must be between", None),
    "write-past-max": (lambda sb: sb.write(bytes(991)), OSError, "max_size 1000", errno.ENOBUFS),
    "reserve-past-max": (lambda sb: sb.reserve(2**40), OSError, "max_size", None),
    "reserve-huge": (lambda sb: sb.reserve(2**63), ValueError, "n must be between", None),
    "recv-zero": (lambda sb: sb.recv_from(0, 0), ValueError, "n must be between", None),
    "recv-negative-fd": (lambda sb: sb.recv_from(-1), ValueError, "fd must be between", None),
    "send-str": (lambda sb: sb.send_to("sock"), TypeError, "fd must be an int", None),
    "recv-bad-fd": (lambda sb: sb.recv_from(2**31 - 1), OSError, None, errno.EBADF),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_arguments_raise_precisely(case):
    call, exc, match, err = BAD_CALLS[case]
    with SockBuf(64, 1000) as sb:
        sb.write(b"0123456789")
        with pytest.raises(exc, match=match) as e:
            call(sb)
        if err is not None:
            assert e.value.errno == err
        assert sb.read() == b"0123456789"
        sb.check()


def test_absurd_size_without_limit():
    with SockBuf(64) as sb:
        with pytest.raises(MemoryError):
            sb.reserve(2**55)
        assert len(sb) == 0
        sb.check()


def test_closed_buffer():
    sb = SockBuf()
    sb.close()
    sb.close()
    with pytest.raises(ValueError, match="closed"):
        sb.write(b"x")


# ---- memoryview guards ----------------------------------------------------------

def test_peek_is_zero_copy_within_a_chunk_and_a_copy_across():
    with SockBuf(64) as sb:
        sb.write(bytes(range(128)))
        before = sb.stats()["copied"]
        with sb.peek(64) as mv:
            assert bytes(mv) == bytes(range(64))
        assert sb.stats()["copied"] == before
        sb.seek(60)
        with sb.peek(8) as mv:
            assert bytes(mv) == bytes(range(60, 68))
        assert sb.stats()["copied"] == before + 8


def test_live_views_block_freeing_operations():
    sb = SockBuf(64)
    sb.write(bytes(200))
    sb.seek(100)
    mv = sb.peek(10)
    part = mv[2:5]
    del mv
    for op in (sb.consume, sb.truncate, sb.close, lambda: sb.take_messages(1)):
        with pytest.raises(BufferError, match="still alive"):
            op()
    del part
    assert sb.consume() == 100
    views = sb.reserve(10)
    with pytest.raises(BufferError):
        sb.send_to(0)
    views[0].release()
    sb.close()


def test_views_keep_the_memory_alive():
    sb = SockBuf(64)
    sb.write(b"hello world")
    mv = sb.peek(5)
    del sb
    gc.collect()
    assert bytes(mv) == b"hello"


def test_reserve_then_commit_is_zero_copy():
    with SockBuf(64) as sb:
        views = sb.reserve(100)
        assert [len(v) for v in views] == [64, 36]
        views[0][:5] = b"abcde"
        del views
        sb.commit(5)
        assert sb.read() == b"abcde" and sb.stats()["copied"] == 5


def test_layout_and_ring_text():
    with SockBuf(64) as sb:
        sb.write(bytes(300))
        sb.seek(70)
        sb.consume()
        lay = sb.layout()
        # The consumed chunk went to the back of the ring as a spare.
        assert (lay["first"], lay["head"], lay["size"], len(lay["addrs"])) == (1, 6, 230, 5)
        text = socket_buffer.ring_text(lay)
        assert "head@6" in text and "tail@44" in text and text.count("spare") == 1


# ---- sockets ------------------------------------------------------------------

def test_socketpair_roundtrip():
    a, b = socket.socketpair()
    data = os.urandom(100_000)
    out, inp = SockBuf(256), SockBuf(1024)
    out.write(data)
    got = 0
    while len(out):
        out.send_to(a)
        got += inp.recv_from(b, 1 << 20)
        out.check()
        inp.check()
    while got < len(data):
        got += inp.recv_from(b)
    assert inp.read() == data and inp.stats()["copied"] == len(data)
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        inp.recv_from(b)
    a.close()
    b.setblocking(True)
    assert inp.recv_from(b) == 0
    b.close()


def test_tcp_loopback_messages():
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    frames = [(n).to_bytes(4, "little") + bytes([n % 251]) * n for n in range(16, 1025, 7)]

    def feed():
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"".join(frames))

    t = threading.Thread(target=feed)
    t.start()
    conn, _ = srv.accept()
    sb = SockBuf(4096)
    count = total = s = 0
    while True:
        k, b, c = sb.take_messages(1000)
        count, total, s = count + k, total + b, s + c
        sb.check()
        if sb.recv_from(conn) == 0:
            break
    k, b, c = sb.take_messages(1000)
    count, total, s = count + k, total + b, s + c
    t.join()
    conn.close()
    srv.close()
    lens = range(16, 1025, 7)
    assert count == len(frames) and total == sum(lens)
    assert s == sum(n + 2 * (n % 251) for n in lens)
    with pytest.raises(ValueError, match="max_len"):
        sb.write((2000).to_bytes(4, "little"))
        sb.take_messages(1, max_len=1000)


def test_stream_consumers_agree_with_the_feeder():
    # Each consumer checks its checksum against the feeder's (RuntimeError otherwise).
    y = socket_buffer.stream_yf(3000, seed=3, chunk_size=4096)
    rows = [socket_buffer.stream_sockbuf(3000, seed=3, chunk_size=4096), socket_buffer.stream_sockbuf(3000, seed=3, chunk_size=4096, batch=True),
            socket_buffer.stream_bytearray(3000, seed=3, size=8192), socket_buffer.stream_asyncio(3000, seed=3)]
    assert all(r["bytes"] == y["bytes"] > 3000 * 16 for r in rows)
    # The Python paths over SockBuf copy exactly what the C consumer copies:
    # the same payloads straddle the same chunk boundaries.
    assert 0 < y["copied_per_byte"] < 0.5 and rows[0]["copied_per_byte"] == rows[1]["copied_per_byte"] > 0
    # The bytearray idiom copies only its compactions; asyncio copies every byte more than once.
    assert 0 < rows[2]["copied_per_byte"] < 0.5 and rows[3]["copied_per_byte"] > 1


def test_frames_batches_lie_in_one_chunk_and_cover_every_message():
    import random
    import struct

    import numpy as np

    rng = random.Random(5)
    msgs = [rng.randbytes(rng.randint(0, 700)) for _ in range(400)]
    sb = SockBuf(1024)
    sb.write(b"".join(struct.pack("<I", len(m)) + m for m in msgs))
    got, copied_before = [], sb.stats()["copied"]
    while True:
        view, offs, lens = sb.frames(64)
        if len(offs) == 0:
            break
        assert len(view) <= 1024 and len(offs) <= 64
        a = np.frombuffer(view, np.uint8)
        got += [bytes(a[o:o + n]) for o, n in zip(offs.tolist(), lens.tolist())]
        with pytest.raises(BufferError):
            sb.frames(64)
        del view, a
        sb.check()
    assert got == msgs and len(sb) == 0 and sb.stats()["copied"] > copied_before
    sb.write((2000).to_bytes(4, "little") + b"x" * 2000)
    with pytest.raises(ValueError, match="max_len"):
        sb.frames(4, max_len=1000)


def test_burst_returns_memory():
    trace = socket_buffer.burst(quick=True)
    v = socket_buffer.burst_verdict(trace)
    assert v["drained"] == 1 and v["peak"] >= v["peak_size"] > 4 * v["before"]

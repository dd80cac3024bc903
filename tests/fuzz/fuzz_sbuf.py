"""Coverage-guided fuzzing of SockBuf (csrc/sbuf.c) against a bytearray model.

Each input is a chunk size, a size limit and a sequence of operations (write,
read, peek, peekv, seek, truncate, consume, reserve+commit, take_messages on
length-prefixed frames whose lengths may be corrupt, recv_from and send_to
through a socketpair); after every operation the buffer's invariants
(yf_sbuf_check) and its contents from the cursor must match the model.

Run by `tests/sanitize.py --only fuzz` against the ASan+UBSan build with
libFuzzer's coverage; by hand:
    python tests/sanitize.py --only fuzz --fuzz-seconds 600
Any libFuzzer flag can follow when run directly (see tests/sanitize.py for
the environment it needs).
"""
import errno
import socket
import struct
import sys

import atheris

with atheris.instrument_imports(include=["yfcore"]):
    from yfcore.sbuf import SockBuf

MAX_OPS = 48
PEER = socket.socketpair()
for _s in PEER:
    _s.setblocking(False)


class Model:
    def __init__(self, max_size: int):
        self.data = bytearray()
        self.cur = 0
        self.max_size = max_size

    def room(self, n: int) -> bool:
        return not self.max_size or len(self.data) + n <= self.max_size


def _bytes(fdp, most: int) -> bytes:
    return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, most))


def _frames(fdp) -> bytes:
    """A few length-prefixed messages; a length may lie (too long, too short, huge)."""
    out = bytearray()
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        payload = _bytes(fdp, 300)
        n = len(payload)
        lie = fdp.ConsumeIntInRange(0, 7)
        if lie == 5:
            n += fdp.ConsumeIntInRange(1, 64)
        elif lie == 6:
            n = max(0, n - fdp.ConsumeIntInRange(1, 64))
        elif lie == 7:
            n = fdp.ConsumeIntInRange(0, 2**32 - 1)
        out += struct.pack("<I", n) + payload
    return bytes(out)


def _parse(data: bytes, start: int, n: int, max_len: int):
    """What take_messages should find from `start`: (messages, bytes, checksum, end, bad)."""
    k = b = s = 0
    p = start
    while k < n and len(data) - p >= 4:
        length = struct.unpack_from("<I", data, p)[0]
        if length > max_len:
            return k, b, s, p, True
        if len(data) - p - 4 < length:
            break
        m = data[p + 4:p + 4 + length]
        if length:
            s += length + m[0] + m[-1]
        b += length
        p += 4 + length
        k += 1
    return k, b, s, p, False


def _drain_peer() -> bytes:
    out = bytearray()
    while True:
        try:
            got = PEER[1].recv(1 << 16)
        except BlockingIOError:
            return bytes(out)
        if not got:
            return bytes(out)
        out += got


def _refused(what: str, call, exc: type, err: int | None = None) -> None:
    """call() must raise exc (with errno err when given): the buffer refused `what`."""
    try:
        call()
    except exc as e:
        if err is not None:
            assert e.errno == err, e
    else:
        raise AssertionError(f"{what} accepted")


def _write(sb, m, data: bytes):
    if m.room(len(data)):
        assert sb.write(data) == len(data)
        m.data += data
    else:
        _refused(f"write of {len(data)} past max_size {m.max_size}", lambda: sb.write(data), OSError,
                 errno.ENOBUFS)


def _step(fdp, sb, m: Model) -> None:
    op = fdp.ConsumeIntInRange(0, 11)
    avail = len(m.data) - m.cur
    if op == 0:
        _write(sb, m, _bytes(fdp, 5000))
    elif op == 1:
        _write(sb, m, _frames(fdp))
    elif op == 2:
        n = fdp.ConsumeIntInRange(-1, 6000)
        got = sb.read(n)
        want = m.data[m.cur:] if n < 0 else m.data[m.cur:m.cur + n]
        assert got == want, (len(got), len(want))
        m.cur += len(got)
    elif op == 3:
        n = fdp.ConsumeIntInRange(0, 6000)
        if n > avail:
            _refused(f"peek({n}) with {avail} bytes after the cursor", lambda: sb.peek(n), ValueError)
        else:
            with sb.peek(n) as v:
                assert bytes(v) == m.data[m.cur:m.cur + n]
    elif op == 4:
        n = fdp.ConsumeIntInRange(-1, 6000)
        views = sb.peekv(n)
        got = b"".join(bytes(v) for v in views)
        for v in views:
            v.release()
        want = m.data[m.cur:] if n < 0 else m.data[m.cur:m.cur + n]
        assert got == want, (len(got), len(want))
    elif op == 5:
        whence = fdp.ConsumeIntInRange(0, 2)
        off = fdp.ConsumeIntInRange(-7000, 7000)
        target = off + (0, m.cur, len(m.data))[whence]
        if 0 <= target <= len(m.data):
            assert sb.seek(off, whence) == target
            m.cur = target
        else:
            _refused(f"seek({off}, {whence}) to {target} outside [0, {len(m.data)}]",
                     lambda: sb.seek(off, whence), ValueError)
    elif op == 6:
        size = fdp.ConsumeIntInRange(0, len(m.data))
        assert sb.truncate(size) == size
        del m.data[size:]
        m.cur = min(m.cur, size)
    elif op == 7:
        assert sb.consume() == m.cur
        del m.data[:m.cur]
        m.cur = 0
    elif op == 8:
        n = fdp.ConsumeIntInRange(0, 9000)
        if not m.room(n):
            _refused(f"reserve({n}) past max_size", lambda: sb.reserve(n), OSError, errno.ENOBUFS)
            return
        views = sb.reserve(n)
        assert sum(len(v) for v in views) == n
        fill = bytes((i * 7 + n) & 0xFF for i in range(n))
        at = 0
        for v in views:
            v[:] = fill[at:at + len(v)]
            at += len(v)
            v.release()
        k = fdp.ConsumeIntInRange(0, n)
        sb.commit(k)
        m.data += fill[:k]
    elif op == 9:
        n = fdp.ConsumeIntInRange(0, 8)
        max_len = fdp.ConsumeIntInRange(0, 1000)
        want_k, want_b, want_s, end, bad = _parse(m.data, m.cur, n, max_len)
        if bad and want_k == 0:
            _refused("take_messages of a length over max_len at the cursor",
                     lambda: sb.take_messages(n, max_len), ValueError)
            # Nothing consumed: the cursor stays on the bad length.
        else:
            # A bad length after good messages ends the batch before it.
            assert sb.take_messages(n, max_len) == (want_k, want_b, want_s)
            del m.data[:end]
            m.cur = 0
    elif op == 10:
        data = _bytes(fdp, 4000)
        if data:
            PEER[1].sendall(data)
        n = fdp.ConsumeIntInRange(1, 5000)
        if not data:
            _refused("recv_from an empty non-blocking socket", lambda: sb.recv_from(PEER[0], n), BlockingIOError)
        else:
            got = 0
            want = min(n, len(data))
            if m.max_size:
                want = min(want, m.max_size - len(m.data))
            if want > 0:
                got = sb.recv_from(PEER[0], n)
                assert 0 < got <= n, got
                m.data += data[:got]
            # What recv_from left in the socket goes nowhere.
            left = bytearray()
            while True:
                try:
                    chunk = PEER[0].recv(1 << 16)
                except BlockingIOError:
                    break
                left += chunk
            assert bytes(left) == data[got:], (len(left), len(data), got)
    elif op == 11:
        put = sb.send_to(PEER[0])
        sent = _drain_peer()
        assert sent == m.data[m.cur:m.cur + put], (len(sent), put)
        del m.data[:m.cur + put]
        m.cur = 0


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    chunk = 64 << fdp.ConsumeIntInRange(0, 6)
    max_size = (0, fdp.ConsumeIntInRange(1, 20000))[fdp.ConsumeIntInRange(0, 1)]
    sb = SockBuf(chunk, max_size)
    m = Model(max_size)
    try:
        for _ in range(MAX_OPS):
            if fdp.remaining_bytes() == 0:
                break
            _step(fdp, sb, m)
            sb.check()
            assert len(sb) == len(m.data) and sb.tell() == m.cur, (len(sb), len(m.data), sb.tell(), m.cur)
        assert sb.read() == m.data[m.cur:]
    finally:
        sb.close()


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

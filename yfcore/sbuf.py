"""SockBuf: a Pythonic, file-like wrapper of the chunked socket buffer (csrc/sbuf.c).

Positions are byte offsets from the head (0); the cursor is where read, peek
and seek work; the tail is the end of the data (len(sb)). consume() drops what
lies before the cursor, and only consume() and truncate() give memory back.

Memoryviews. peek(), peekv() and reserve() hand out memoryviews of the
buffer's own chunks, without copying (peek copies only when the range
straddles two chunks, into memory the view owns). Such a view must never
outlive its chunk, so:

* a view keeps the C buffer alive: dropping or garbage-collecting the SockBuf
  while a view exists frees nothing;
* consume(), truncate(), send_to(), take_messages(), frames() and close() may free
  chunks, so they raise BufferError while any view (or a slice of one) is
  alive, as bytearray does when resized under an export. Release views with
  ``mv.release()``, a ``with`` block, or ``del``.

A view is a window, not a snapshot: it shows the buffer's bytes as they are
now. Reserve views have a lifetime: the reservation ends with commit(),
write(), reserve(), truncate(), recv_from() or close(), and its views are
released then, so a stale view raises ValueError instead of writing into
stored data. A slice (or an export, such as numpy.frombuffer) of a reserve
view cannot be released from here: while one is alive those calls raise
BufferError. Liveness is read from reference counts, which is exact on
CPython.

Any thread may use a SockBuf; a lock serialises the calls (see
yfcore._handle), so a recv_from blocked on an idle socket holds the buffer
until it returns (shut the socket down to end it). A signal interrupts a
blocking recv_from or send_to: its Python handler runs, and unless it
raises, the call goes on.
"""
import errno as _errno
import os
import sys

from ._handle import Owned, checker, counters, error, fileno, guarded, held, integer
from ._yfcore import ffi, lib

__all__ = ["SockBuf", "SEEK_SET", "SEEK_CUR", "SEEK_END", "CHUNK_MIN", "CHUNK_MAX"]

SEEK_SET, SEEK_CUR, SEEK_END = lib.YF_SEEK_SET, lib.YF_SEEK_CUR, lib.YF_SEEK_END
CHUNK_MIN, CHUNK_MAX = lib.YF_SBUF_CHUNK_MIN, lib.YF_SBUF_CHUNK_MAX
# Bytes the C side refuses in one request; Python checks it first so that an
# absurd size names itself.
_REQ_MAX = lib.YF_SBUF_REQ_MAX
_FD_MAX = 2**31 - 1


def _int(name: str, v, lo: int, hi: int) -> int:
    return integer(name, v, lo, hi)


def _fileno(sock) -> int:
    return fileno("fd", sock, _FD_MAX)


def _refs_when_unused() -> int:
    # The reference count a held buffer object shows inside _prune when no
    # memoryview exports it: measured, not assumed, so the check stays exact.
    probe = [ffi.buffer(ffi.new("char[1]"))]
    return [sys.getrefcount(b) for b in probe][0]


def _release_views(pairs) -> None:
    # A function of its own, so that no frame of a later traceback holds a
    # view or its buffer.
    for pair in pairs:
        try:
            pair[1].release()
        except BufferError:     # exported (numpy.frombuffer, ...): cannot be released
            pass


def _reservation_refs(pairs) -> list:
    return [sys.getrefcount(p[0]) for p in pairs]


def _reservation_refs_when_unused() -> int:
    # The same for a reservation's buffer, held by the exports list and by
    # a (buffer, view) pair, as _end_reservation counts it.
    buf = ffi.buffer(ffi.new("char[1]"))
    exports, pairs = [buf], [(buf, None)]
    del buf
    n = _reservation_refs(pairs)[0]
    del exports
    return n


_UNUSED = _refs_when_unused()
_RESERVED_UNUSED = _reservation_refs_when_unused()


class SockBuf(Owned):
    """A ring of chunk_size-byte chunks (a power of two in [64, 1 MiB]) holding
    at most max_size bytes (0: no limit); writing past max_size raises
    OSError(ENOBUFS) and loses nothing already stored."""

    _what = "SockBuf"
    _shared = True

    def __init__(self, chunk_size: int = 16384, max_size: int = 0):
        self._fresh()
        chunk_size = _int("chunk_size", chunk_size, CHUNK_MIN, CHUNK_MAX)
        if chunk_size & (chunk_size - 1):
            raise ValueError(f"chunk_size must be a power of two, got {chunk_size}")
        max_size = _int("max_size", max_size, 0, _REQ_MAX)
        sb = lib.yf_sbuf_new(chunk_size, max_size)
        if sb == ffi.NULL:
            raise MemoryError("yf_sbuf_new: out of memory")
        self._chunk_size = chunk_size
        self._max_size = max_size
        self._exports = []
        self._reserved = []      # (buffer, memoryview) of the live reservation's views
        # The gc destructor frees the C buffer when neither this object nor
        # any view holds it (views keep it through their own pointers).
        self._open(ffi.gc(sb, lib.yf_sbuf_free))

    # ---- plumbing ----------------------------------------------------------

    def _prune(self) -> int:
        self._exports = [b for b in self._exports if sys.getrefcount(b) > _UNUSED]
        return len(self._exports)

    def _may_free(self, what: str) -> None:
        live = self._prune()
        if live:
            raise BufferError(
                f"{what}: {live} memoryview(s) from peek()/peekv()/reserve() still alive; "
                "release them (mv.release(), a with block, or del) first: their chunks may be freed"
            )

    def _end_reservation(self, what: str) -> None:
        """Release the reservation's views (a stale one then raises instead of
        writing); BufferError while a slice or export of one is still alive."""
        if not self._reserved:
            return
        _release_views(self._reserved)
        held = sum(n > _RESERVED_UNUSED for n in _reservation_refs(self._reserved))
        if held:
            raise BufferError(
                f"{what}: {held} view(s) of the reservation (a slice or an export of a reserve() view) "
                "still alive; release them first: the reservation's memory becomes data"
            )
        self._reserved = []

    def _view(self, addr, n: int, writable: bool) -> memoryview:
        # The pointer carries a do-nothing destructor that holds the C
        # buffer, so the chunk memory outlives every view of it.
        keep = ffi.gc(ffi.cast("char *", addr), lambda _p, owner=self._h: None)
        buf = ffi.buffer(keep, n)
        if len(self._exports) >= 64:
            self._prune()
        self._exports.append(buf)
        mv = memoryview(buf)
        if writable:
            self._reserved.append((buf, mv))
            return mv
        return mv.toreadonly()

    def _error(self, what: str, n: int | None = None) -> Exception:
        e = ffi.errno
        if e == _errno.ENOBUFS:
            return OSError(e, f"{what}: {n} more bytes would exceed max_size {self._max_size} "
                              f"(holding {lib.yf_sbuf_size(self._h)}); nothing stored was lost")
        return error(what, e)

    def _before_close(self) -> None:
        self._end_reservation("close()")
        self._may_free("close()")

    def _destroy(self, sb) -> None:
        ffi.release(sb)

    def _finalize(self) -> None:
        # Views may still hold the buffer: the gc destructor frees it when
        # the last one goes.
        self._h = None

    # ---- file-like ---------------------------------------------------------

    @guarded
    def write(self, data) -> int:
        """Append bytes-like data at the tail, all or nothing; return its length."""
        sb = self._h
        if isinstance(data, str):
            raise TypeError("data must be a bytes-like object, got str (encode it first)")
        try:
            src = ffi.from_buffer(data)
        except TypeError:
            raise TypeError(f"data must be a bytes-like object, got {type(data).__name__}") from None
        n = len(src)
        if n > _REQ_MAX:
            raise ValueError(f"write of {n} bytes is absurd (limit {_REQ_MAX})")
        self._end_reservation("write()")
        if lib.yf_sbuf_write(sb, src, n) < 0:
            raise self._error("write", n)
        return n

    @guarded
    def read(self, n: int = -1) -> bytes:
        """Up to n bytes from the cursor (all with n = -1), advancing it; b"" at the tail."""
        sb = self._h
        n = _int("n", n, -1, _REQ_MAX)
        avail = lib.yf_sbuf_size(sb) - lib.yf_sbuf_tell(sb)
        n = avail if n < 0 else min(n, avail)
        out = bytearray(n)
        got = lib.yf_sbuf_read(sb, ffi.from_buffer(out), n) if n else 0
        return bytes(out[:got])

    @guarded
    def peek(self, n: int) -> memoryview:
        """A read-only view of the n bytes at the cursor, which does not move.
        Zero-copy when they lie in one chunk, else a copy the view owns.
        ValueError when fewer than n bytes follow the cursor."""
        sb = self._h
        n = _int("n", n, 0, _REQ_MAX)
        avail = lib.yf_sbuf_size(sb) - lib.yf_sbuf_tell(sb)
        if n > avail:
            raise ValueError(f"peek({n}): only {avail} bytes follow the cursor")
        p = ffi.new("void **")
        if n == 0:
            return memoryview(b"")
        # Without scratch the call succeeds only when no copy is needed.
        if lib.yf_sbuf_peek(sb, n, p, ffi.NULL) == 0:
            return self._view(p[0], n, writable=False)
        scratch = bytearray(n)
        if lib.yf_sbuf_peek(sb, n, p, ffi.from_buffer(scratch)) < 0:
            raise self._error("peek")
        return memoryview(scratch).toreadonly()

    @guarded
    def peekv(self, n: int = -1) -> list[memoryview]:
        """Read-only zero-copy views of up to n bytes from the cursor (all with
        -1), one per chunk: what send_to() hands writev."""
        sb = self._h
        n = _int("n", n, -1, _REQ_MAX)
        avail = lib.yf_sbuf_size(sb) - lib.yf_sbuf_tell(sb)
        n = avail if n < 0 else min(n, avail)
        cnt = n // self._chunk_size + 2
        iov = ffi.new("yf_iovec[]", cnt)
        k = lib.yf_sbuf_peekv(sb, iov, cnt, n)
        return [self._view(iov[i].base, iov[i].len, writable=False) for i in range(k)]

    @guarded
    def seek(self, offset: int, whence: int = SEEK_SET) -> int:
        """Move the cursor (SEEK_SET, SEEK_CUR, SEEK_END as in os); return it.
        ValueError before the head or past the tail."""
        sb = self._h
        offset = _int("offset", offset, -(2**63), 2**63 - 1)
        whence = _int("whence", whence, 0, 2)
        pos = lib.yf_sbuf_seek(sb, offset, whence)
        if pos < 0:
            raise ValueError(f"seek({offset}, {whence}) lands outside [0, {len(self)}]")
        return pos

    @guarded
    def tell(self) -> int:
        return lib.yf_sbuf_tell(self._h)

    @guarded
    def __len__(self) -> int:
        return lib.yf_sbuf_size(self._h)

    @property
    def size(self) -> int:
        """Bytes held (head to tail)."""
        return len(self)

    chunk_size = held("_chunk_size", "Bytes per chunk, a power of two.")
    max_size = held("_max_size", "The most bytes it holds (0: no limit).")

    @guarded
    def truncate(self, size: int | None = None) -> int:
        """Drop everything after position size (default: the cursor); return size."""
        sb = self._h
        size = self.tell() if size is None else size
        size = _int("size", size, 0, lib.yf_sbuf_size(sb))
        self._end_reservation("truncate()")
        self._may_free("truncate()")
        lib.yf_sbuf_truncate(sb, size)
        return size

    @guarded
    def consume(self) -> int:
        """Drop the bytes before the cursor (the head moves to it); return how many."""
        sb = self._h
        self._may_free("consume()")
        return lib.yf_sbuf_consume(sb)

    # ---- zero-copy input and output ---------------------------------------

    @guarded
    def reserve(self, n: int) -> list[memoryview]:
        """Writable views covering exactly n bytes past the tail (chunks are
        allocated as needed); fill them, then commit() how many were written.
        A later write, reserve or truncate cancels the reservation."""
        sb = self._h
        n = _int("n", n, 0, _REQ_MAX)
        if self._max_size and n > self._max_size - len(self):
            raise OSError(_errno.ENOBUFS, f"reserve: {n} more bytes would exceed max_size {self._max_size} "
                                          f"(holding {len(self)}); nothing stored was lost")
        self._end_reservation("reserve()")
        cnt = n // self._chunk_size + 2
        try:
            iov = ffi.new("yf_iovec[]", cnt)
        except MemoryError:
            raise MemoryError(f"reserve({n}): out of memory for {cnt} iovecs") from None
        k = lib.yf_sbuf_reserve(sb, n, iov, cnt)
        if k < 0:
            raise self._error("reserve", n)
        return [self._view(iov[i].base, iov[i].len, writable=True) for i in range(k)]

    @guarded
    def commit(self, n: int) -> None:
        """Declare the first n reserved bytes written (they join the data)."""
        sb = self._h
        n = _int("n", n, 0, _REQ_MAX)
        info = ffi.new("uint64_t[6]")
        lib.yf_sbuf_layout(sb, info, ffi.NULL, 0)
        if n > info[4]:
            raise ValueError(f"commit({n}) exceeds the outstanding reservation ({info[4]} bytes)")
        self._end_reservation("commit()")
        if lib.yf_sbuf_commit(sb, n) < 0:
            raise ValueError(f"commit({n}) exceeds the outstanding reservation")

    @guarded
    def recv_from(self, sock, n: int = 65536) -> int:
        """One readv from a socket (or fd) straight into the buffer, at most n
        bytes; return the count, 0 at EOF. A non-blocking socket with nothing
        to read raises BlockingIOError."""
        sb = self._h
        fd = _fileno(sock)
        n = _int("n", n, 1, _REQ_MAX)
        self._end_reservation("recv_from()")
        while True:
            got = lib.yf_sbuf_recv(sb, fd, n)
            if got >= 0:
                return got
            if ffi.errno != _errno.EINTR:
                raise self._error("recv_from", n)
            # Back in Python, pending signal handlers run before the next
            # bytecode (KeyboardInterrupt ends the wait); then read again.

    @guarded
    def send_to(self, sock) -> int:
        """One writev of the bytes from the cursor to a socket (or fd), then
        consume what was sent (and what lay before the cursor); return the count."""
        sb = self._h
        fd = _fileno(sock)
        self._may_free("send_to()")
        while True:
            put = lib.yf_sbuf_send(sb, fd)
            if put >= 0:
                return put
            if ffi.errno != _errno.EINTR:
                raise self._error("send_to")

    @guarded
    def take_messages(self, n: int, max_len: int = 1 << 20) -> tuple[int, int, int]:
        """Parse up to n length-prefixed messages (4-byte little-endian length,
        payload) in C, then consume them: (messages, payload bytes, checksum),
        the checksum summing len + first + last byte of each. A length over
        max_len ends the batch before it (the messages before it are
        returned); ValueError when it is the first at the cursor (nothing is
        consumed, the cursor stays on it)."""
        sb = self._h
        n = _int("n", n, 0, 2**63 - 1)
        max_len = _int("max_len", max_len, 0, _REQ_MAX)
        self._may_free("take_messages()")
        s = ffi.new("uint64_t *")
        b = ffi.new("uint64_t *")
        k = lib.yf_sbuf_take_msgs(sb, n, max_len, s, b)
        if k < 0:
            if ffi.errno == _errno.EMSGSIZE:
                raise ValueError(f"a message at the cursor is longer than max_len {max_len}")
            raise self._error("take_messages")
        return k, b[0], s[0]

    @guarded
    def frames(self, n: int = 1024, max_len: int = 1 << 20):
        """The batch path for length-prefixed messages: consume what lies
        before the cursor, then return (view, offsets, lengths) for up to n
        whole messages from it whose payloads share one chunk; payload i is
        view[offsets[i]:offsets[i] + lengths[i]] (numpy uint32 arrays), and
        the cursor moves past them. A first payload across two chunks is
        copied alone (counted in stats()["copied"]) and returned as a batch
        of one. (memoryview(b""), empty arrays) when no whole message is
        buffered. BufferError while a view from an earlier call is alive,
        ValueError for a length over max_len (the cursor stays on it)."""
        import numpy as np

        sb = self._h
        n = _int("n", n, 0, 1 << 24)
        max_len = _int("max_len", max_len, 0, 2**32 - 1)
        self._may_free("frames()")
        off = np.empty(n, np.uint32)
        lens = np.empty(n, np.uint32)
        base, span = ffi.new("void **"), ffi.new("size_t *")
        k = lib.yf_sbuf_frames(sb, n, max_len, base, ffi.from_buffer("uint32_t[]", off),
                               ffi.from_buffer("uint32_t[]", lens), span)
        if k < 0:
            if ffi.errno == _errno.EMSGSIZE:
                raise ValueError(f"a message at the cursor is longer than max_len {max_len}")
            raise self._error("frames")
        view = self._view(base[0], span[0], writable=False) if span[0] else memoryview(b"")
        return view, off[:k], lens[:k]

    # ---- inspection --------------------------------------------------------

    stats = counters("yf_sbuf_stats *", lib.yf_sbuf_stats_get,
                     ("size", "capacity", "chunks", "high_water", "bytes_in", "bytes_out", "copied",
                      "chunk_allocs", "chunk_frees"))
    check = checker("yf_sbuf_check", lib.yf_sbuf_check)

    @guarded
    def layout(self) -> dict:
        """The chunk ring as it is now: ring_cap, first (slot of chunk 0), head
        (offset in chunk 0), chunk_size, reserved, cursor, size, and addrs (the
        chunk addresses in ring order from chunk 0)."""
        sb = self._h
        info = ffi.new("uint64_t[6]")
        st = self.stats()
        addrs = ffi.new("uint64_t[]", max(1, st["chunks"]))
        n = lib.yf_sbuf_layout(sb, info, addrs, st["chunks"])
        keys = ("ring_cap", "first", "head", "chunk_size", "reserved", "chunks")
        return {**dict(zip(keys, info)), "cursor": self.tell(), "size": len(self), "addrs": list(addrs[0:n])}

"""Notebook 06 helpers: the message-stream benchmark (the yf socket buffer
from C and from Python, against the pure-Python idioms), the copies sweep,
the burst experiment, and the chunk-ring picture.

The stream: csrc/programs/msg_feeder.c, a separate process, writes n
length-prefixed messages (4-byte little-endian length, payload of uniform
random size 16..1024 bytes) to a TCP loopback connection; the consumer folds
len + first + last byte of each payload into a checksum, which must equal
the feeder's. "Delivered" = payload bytes handed to the consumer. Every
Python system hands every message to the same fold(); the batch path hands
each batch to the same fold written in numpy.

* yf: one cffi call, yf_bench_sbuf_stream (readv into reserved chunks,
  parsing in C): the buffer without Python in the loop.
* sockbuf / sockbuf batch: SockBuf.recv_from, then frames() (the messages
  of one chunk: one view, numpy offsets and lengths); per message a
  memoryview slice to fold(), or the batch to one numpy fold.
* bytearray: recv_into the free tail of one bytearray, memoryview slices to
  fold() (no copy), the unparsed rest moved to the front when the free tail
  runs under half; copies = the bytes those moves moved, counted as they
  happen.
* asyncio: StreamReader.readexactly; copies counted at feed_data plus the
  two copies readexactly makes of each byte it returns (its code).
The yf systems' copies are the buffer's own counter.
"""
import socket
import struct
import subprocess
import time

from .bench import interleaved, quick as _quick_env, sizes as _sizes
from .provenance import provenance
from .stats import summary
from .toolchain import compile_program

__all__ = ["STREAM", "SYSTEMS", "fold", "stream_yf", "stream_sockbuf", "stream_bytearray", "stream_asyncio",
           "stream_ceiling", "stream", "chunk_sweep", "prediction_error", "predicted_copies",
           "burst", "burst_verdict", "ring_text", "chunk_state",
           "speed_bars", "few_copies_evidence", "elastic_evidence"]

# Message sizes (uniform, inclusive), bytes per readv / recv_into, and the
# longest message either consumer accepts.
# Both consumers ask the kernel for up to 1 MiB per call: fewer system calls
# lift both (measured: 64 KiB reads cost yf about a quarter of its rate).
STREAM = {"min": 16, "max": 1024, "recv_max": 1 << 20, "max_len": 1 << 20}
CHUNK = 16384



def _feeder():
    return compile_program("msg_feeder")


class _Feed:
    """A listening loopback socket and a feeder process connected to it."""

    def __init__(self, n: int, seed: int):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        port = self.lsock.getsockname()[1]
        self.proc = subprocess.Popen([str(_feeder()), str(port), str(n), str(seed), str(STREAM["min"]),
                                      str(STREAM["max"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lsock.settimeout(60)
        self.conn, _ = self.lsock.accept()
        self.conn.settimeout(None)

    def finish(self) -> tuple[int, int, int]:
        out, err = self.proc.communicate(timeout=60)
        self.conn.close()
        self.lsock.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"msg_feeder exited {self.proc.returncode}: {err.strip()}")
        n, b, s = map(int, out.split())
        return n, b, s

    def abort(self):
        self.proc.kill()
        self.proc.wait()
        self.conn.close()
        self.lsock.close()


def _verify(who: str, want: tuple[int, int, int], got: tuple[int, int, int]) -> None:
    if want != got:
        raise RuntimeError(f"{who} consumer disagrees with the feeder: (messages, bytes, checksum) "
                           f"{got} != {want}")


def stream_yf(n: int, seed: int = 1, chunk_size: int = CHUNK) -> dict:
    """One round of the stream through the yf socket buffer: {"mb_per_s",
    "copied_per_byte", "bytes", "ns"}; RuntimeError if the checksum differs."""
    from .._handle import borrow
    from ..labkernels import ffi, lib
    from ..sbuf import SockBuf

    sb = SockBuf(chunk_size)
    s, b = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    feed = _Feed(n, seed)
    try:
        with borrow(sb) as p:
            ns = lib.yf_bench_sbuf_stream(n, p, feed.conn.fileno(), STREAM["recv_max"], STREAM["max_len"], s, b)
        if ns < 0:
            raise OSError(ffi.errno, f"yf_bench_sbuf_stream: {ffi.errno}")
    except BaseException:
        feed.abort()
        raise
    _verify("yf", feed.finish(), (n, b[0], s[0]))
    st = sb.stats()
    sb.close()
    return {"mb_per_s": b[0] / ns * 1e3, "copied_per_byte": st["copied"] / b[0], "bytes": b[0], "ns": ns,
            "high_water": st["high_water"]}


def fold(msg) -> int:
    """The one consumer every Python system hands each message to: length +
    first + last payload byte (messages are never empty here), the
    feeder's checksum term."""
    return len(msg) + msg[0] + msg[-1]


def _fold_batch(view, offs, lens) -> int:
    """fold() over a whole batch at once: numpy over one view of the chunk."""
    import numpy as np

    a = np.frombuffer(view, np.uint8)
    ends = offs + lens
    ends -= 1
    return int(lens.sum()) + int(a.take(offs).sum()) + int(a.take(ends).sum())


def _consume_sockbuf(conn, n: int, chunk_size: int, batch: bool) -> tuple[int, int, int, int]:
    from ..sbuf import SockBuf

    sb = SockBuf(chunk_size)
    count = total = s = 0
    recv_max = STREAM["recv_max"]
    try:
        while count < n:
            view, offs, lens = sb.frames(4096, STREAM["max_len"])
            k = len(offs)
            if k == 0:
                del view
                if sb.recv_from(conn, recv_max) == 0:
                    raise ConnectionResetError(f"the feeder closed after {count} of {n} messages")
                continue
            if batch:
                s += _fold_batch(view, offs, lens)
                total += int(lens.sum())
            else:
                for o, ln in zip(offs.tolist(), lens.tolist()):
                    s += fold(view[o:o + ln])
                    total += ln
            count += k
            del view
        copied = sb.stats()["copied"]
    finally:
        sb.close()
    return count, total, s, copied


def _stream_python(who: str, consume, n: int, seed: int) -> dict:
    feed = _Feed(n, seed)
    try:
        t = time.perf_counter_ns()
        count, total, s, copied = consume(feed.conn)
        ns = time.perf_counter_ns() - t
    except BaseException:
        feed.abort()
        raise
    _verify(who, feed.finish(), (count, total, s))
    return {"mb_per_s": total / ns * 1e3, "copied_per_byte": copied / total, "bytes": total, "ns": ns}


def stream_sockbuf(n: int, seed: int = 1, chunk_size: int = CHUNK, batch: bool = False) -> dict:
    """One round through SockBuf from Python: recv_from (readv into the
    chunks), frames() for the messages of one chunk at a time, and each
    payload handed to fold() as a memoryview slice (`batch`: the whole batch
    to one numpy fold). Copies: the buffer's own counter. Same keys as stream_yf."""
    return _stream_python("sockbuf batch" if batch else "sockbuf", lambda c: _consume_sockbuf(c, n, chunk_size, batch),
                          n, seed)


def _consume_bytearray(conn: socket.socket, n: int, size: int) -> tuple[int, int, int, int]:
    # The idiom: one bytearray, recv_into its free tail, messages handed out
    # as memoryview slices (no copy), and the unparsed rest moved to the
    # front when the free tail falls under half the buffer. Each such move
    # is a memmove of `rest` bytes, counted as it happens.
    buf = bytearray(size)
    mv = memoryview(buf)
    half = size // 2
    unpack = struct.Struct("<I").unpack_from
    r = w = count = total = s = copied = 0
    while count < n:
        while w - r >= 4 and count < n:
            (length,) = unpack(buf, r)
            if length > size - 4:
                raise ValueError(f"a {length}-byte message cannot fit a {size}-byte buffer")
            end = r + 4 + length
            if end > w:
                break
            s += fold(mv[r + 4:end])
            total += length
            r = end
            count += 1
        if count == n:
            break
        if size - w < half:
            rest = w - r
            mv[:rest] = mv[r:w]
            copied += rest
            r, w = 0, rest
        got = conn.recv_into(mv[w:])
        if not got:
            raise ConnectionResetError(f"the feeder closed after {count} of {n} messages")
        w += got
    return count, total, s, copied


def stream_bytearray(n: int, seed: int = 1, size: int = 2 * STREAM["recv_max"]) -> dict:
    """One round through the best pure-Python idiom: a `size`-byte bytearray,
    recv_into its free tail, memoryview slices to fold(), compaction of the
    unparsed rest when the free tail is under half; copies = the bytes those
    compactions moved. Same keys as stream_yf."""
    if size < 2 * (4 + STREAM["max"]):
        raise ValueError(f"size must hold two of the longest frames ({2 * (4 + STREAM['max'])} bytes), got {size}")
    return _stream_python("bytearray", lambda c: _consume_bytearray(c, n, size), n, seed)


def _consume_asyncio(conn: socket.socket, n: int) -> tuple[int, int, int, int]:
    import asyncio

    async def main():
        reader, writer = await asyncio.open_connection(sock=conn)
        received = 0
        feed = reader.feed_data

        def counting_feed(data):
            nonlocal received
            received += len(data)
            feed(data)

        # The instance attribute shadows the method the protocol calls: every
        # chunk the transport read is seen before StreamReader copies it.
        reader.feed_data = counting_feed
        count = total = s = 0
        while count < n:
            length = int.from_bytes(await reader.readexactly(4), "little")
            msg = await reader.readexactly(length)
            s += fold(msg)
            total += length
            count += 1
        writer.transport.abort()
        # StreamReader (CPython 3.10-3.12) copies each received chunk into its
        # bytearray (extend), and readexactly(k) returns bytes(buffer[:k]): a
        # slice and a bytes, two copies of each of the 4 + length bytes read.
        return count, total, s, received + 2 * (total + 4 * count)

    # A thread of its own: inside Jupyter this thread already runs an event
    # loop, and asyncio.run refuses to start a second one in it.
    import threading

    out: dict = {}

    def run():
        try:
            out["result"] = asyncio.run(main())
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    t = threading.Thread(target=run, name="asyncio-stream")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


def stream_asyncio(n: int, seed: int = 1) -> dict:
    """One round through asyncio streams: readexactly(4), then
    readexactly(length), each message (bytes) to fold(). Copies: the bytes
    fed to the StreamReader (counted) plus two per byte readexactly returns
    (read from CPython's StreamReader code, not counted by a probe). Same
    keys as stream_yf."""
    return _stream_python("asyncio", lambda c: _consume_asyncio(c, n), n, seed)


def stream_ceiling(n: int, seed: int = 1) -> dict:
    """The transport's own rate for the same stream: recv_into one 1 MiB
    buffer and discard, no parsing. {"mb_per_s", "bytes", "ns"}."""
    feed = _Feed(n, seed)
    buf = bytearray(STREAM["recv_max"])
    total = 0
    try:
        t = time.perf_counter_ns()
        while got := feed.conn.recv_into(buf):
            total += got
        ns = time.perf_counter_ns() - t
    except BaseException:
        feed.abort()
        raise
    want = feed.finish()
    if total != want[1] + 4 * want[0]:
        raise RuntimeError(f"ceiling reader got {total} bytes, the feeder wrote {want[1] + 4 * want[0]}")
    return {"mb_per_s": want[1] / ns * 1e3, "bytes": want[1], "ns": ns}


SYSTEMS = {
    "yf": stream_yf,
    "sockbuf": stream_sockbuf,
    "sockbuf batch": lambda n, seed: stream_sockbuf(n, seed, batch=True),
    "bytearray": stream_bytearray,
    "asyncio": stream_asyncio,
}


def stream(quick: bool | None = None, progress: bool = False, rounds: int | None = None,
           ceiling: bool = False, systems=tuple(SYSTEMS)) -> dict:
    """`yfcore bench sbuf`: MB/s of payload delivered and bytes copied per byte
    delivered, for each system of SYSTEMS (yf: the C consumer; sockbuf: SockBuf
    from Python, each message to fold(); sockbuf batch: one numpy fold per
    batch; bytearray: the pure-Python idiom; asyncio: StreamReader),
    interleaved rounds; the systems of one round read the same stream (same
    feeder seed). With `ceiling`, "recv only" (stream_ceiling: no parsing)
    shows what the socket itself delivers, in payload MB/s."""
    n = _sizes("sbuf", quick)["messages"]
    unknown = [x for x in systems if x not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}")
    fns = {name: SYSTEMS[name] for name in systems}
    if ceiling:
        fns["recv only"] = stream_ceiling
    copies = {name: [] for name in fns}
    state = {"round": {}, "seed": 0}

    def run(name):
        def one():
            # A new seed each round, shared by the competitors of that round.
            if name in state["round"]:
                state["round"].clear()
                state["seed"] += 1
            state["round"][name] = True
            r = fns[name](n, state["seed"])
            copies[name].append(r.get("copied_per_byte"))
            return r["mb_per_s"]
        return one

    samples = interleaved({name: run(name) for name in fns}, rounds=rounds, progress=progress)
    out = {}
    for name, xs in samples.items():
        out[name] = {"mb_per_s": summary(xs)}
        # interleaved's warm-up round is discarded: drop its copy count too.
        cp = copies[name][-len(xs):]
        if cp[0] is not None:
            out[name]["copied_per_byte"] = summary(cp) | {"samples": cp}
        out[name]["samples"] = xs
    out["provenance"] = provenance(quick=quick)
    return out


def predicted_copies(chunk_size: int, lo: int = STREAM["min"], hi: int = STREAM["max"]) -> float:
    """Copied bytes per delivered byte when a payload is copied whenever it
    straddles a chunk boundary and messages fall at uniform offsets: a frame
    of 4 + L bytes straddles with probability about (4 + L - 1) / C, costing L.
    E[L (L + 3)] / (C E[L]), plus the 4-byte headers' own rare copies."""
    ls = range(lo, hi + 1)
    el = sum(ls) / len(ls)
    ell = sum(x * (x + 3) for x in ls) / len(ls)
    hdr = 4 * 3 / chunk_size * (1 / el)
    return ell / (chunk_size * el) + hdr


def chunk_sweep(chunk_sizes=(1024, 4096, 16384, 65536), buffer_sizes=(4096, 16384, 65536, 262144, 1 << 21),
                quick: bool | None = None, rounds: int | None = None) -> dict:
    """Copies per byte delivered against memory granule: SockBuf at each chunk
    size (the C consumer; the Python paths copy exactly the same bytes) and
    the bytearray idiom at each buffer size, interleaved rounds, one seed per
    round. {"sockbuf": {chunk: {"copied_per_byte", "mb_per_s"}}, "bytearray":
    {size: {...}}}, each a summary."""
    n = _sizes("sbuf", quick)["sweep_messages"]
    got: dict[str, list] = {}
    state = {"seed": 1000}

    def one(key, fn):
        got[key] = []

        def f():
            state["seed"] += 1
            r = fn(state["seed"])
            got[key].append(r)
            return r["mb_per_s"]
        return f

    comp = {}
    for c in chunk_sizes:
        comp[f"sockbuf {c}"] = one(f"sockbuf {c}", lambda seed, c=c: stream_yf(n, seed, chunk_size=c))
    for b in buffer_sizes:
        comp[f"bytearray {b}"] = one(f"bytearray {b}", lambda seed, b=b: stream_bytearray(n, seed, size=b))
    samples = interleaved(comp, rounds=rounds)
    out: dict[str, dict] = {"sockbuf": {}, "bytearray": {}}
    for key, xs in samples.items():
        system, size = key.split()
        rs = got[key][-len(xs):]
        out[system][int(size)] = {"copied_per_byte": summary(r["copied_per_byte"] for r in rs),
                                  "mb_per_s": summary(xs)}
    return out


def prediction_error(sweep: dict) -> float:
    """The largest |measured / predicted - 1| of SockBuf's copies over the sweep's chunk sizes."""
    return max(abs(r["copied_per_byte"]["median"] / predicted_copies(c) - 1) for c, r in sweep["sockbuf"].items())


# ---- the burst experiment ----------------------------------------------------

def _frames(rng, k: int) -> bytes:
    parts = []
    for _ in range(k):
        n = rng.randint(STREAM["min"], STREAM["max"])
        parts.append(struct.pack("<I", n) + rng.randbytes(n))
    return b"".join(parts)


def burst(quick: bool | None = None, chunk_size: int = 4096, seed: int = 6) -> dict:
    """Memory held by a SockBuf through steady traffic, a burst, and steady
    traffic again, over a socketpair. Every step the peer sends some messages
    (4 steady, 40 in the burst), the consumer drains the socket with
    recv_from and parses at most 12 messages (take_messages): the burst piles
    up, then drains. Returns per-step lists "size", "capacity", "chunks" and
    the phase boundaries "burst_start", "burst_end"."""
    import random

    from ..sbuf import SockBuf

    z = _sizes("sbuf", quick)
    steady, bsteps = z["steady_steps"], z["burst_steps"]
    rng = random.Random(seed)
    a, b = socket.socketpair()
    b.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sb = SockBuf(chunk_size)
    trace = {"size": [], "capacity": [], "chunks": [], "messages": 0}
    plan = [4] * steady + [40] * bsteps + [4] * (2 * steady)
    for k in plan:
        a.sendall(_frames(rng, k))
        while True:
            try:
                if sb.recv_from(b, 65536) == 0:
                    break
            except BlockingIOError:
                break
        trace["messages"] += sb.take_messages(12)[0]
        st = sb.stats()
        for key in ("size", "capacity", "chunks"):
            trace[key].append(st[key])
        sb.check()
    a.close()
    b.close()
    trace.update(burst_start=steady, burst_end=steady + bsteps, chunk_size=chunk_size,
                 sent=sum(plan), allocs=sb.stats()["chunk_allocs"])
    sb.close()
    return trace


def burst_verdict(trace: dict) -> dict:
    """The numbers of claim sbuf-elastic: capacity before the burst (median of
    the steady phase's second half), at the peak, and at the end (median of
    the last quarter), and their ratios; peak_slack_chunks = the largest
    capacity minus the largest number of bytes held, in chunks (the receive
    reservation plus a few chunks when the buffer grows by chunks; a share of
    the burst for a buffer that doubles)."""
    import statistics

    cap = trace["capacity"]
    s0 = trace["burst_start"]
    before = statistics.median(cap[s0 // 2:s0])
    peak = max(cap)
    tail = cap[len(cap) - len(cap) // 4:]
    after = statistics.median(tail)
    peak_size = max(trace["size"])
    return {"before": before, "peak": peak, "after": after, "peak_size": peak_size,
            "after_over_before": after / before, "peak_over_before": peak / before,
            "peak_slack_chunks": (peak - peak_size) / trace["chunk_size"],
            "drained": int(trace["messages"] == trace["sent"])}


def chunk_state(lay: dict, i: int) -> str:
    cs, head = lay["chunk_size"], lay["head"]
    start = i * cs
    tail = head + lay["size"]
    if start < tail:
        return "data"
    if start < tail + lay["reserved"]:
        return "reserved"
    return "spare"


def ring_text(lay: dict) -> str:
    """SockBuf.layout() as text: one line per ring slot holding a chunk."""
    cs = lay["chunk_size"]
    lines = [f"ring of {lay['ring_cap']} slots, {lay['chunks']} chunks of {cs} bytes; chunk 0 in slot "
             f"{lay['first']}, head at offset {lay['head']}, cursor {lay['cursor']}, tail {lay['size']}"]
    for i, addr in enumerate(lay["addrs"]):
        slot = (lay["first"] + i) % lay["ring_cap"]
        marks = []
        for name, pos in (("head", 0), ("cursor", lay["cursor"]), ("tail", lay["size"])):
            absn = lay["head"] + pos
            if absn // cs == i or (name == "tail" and absn == (i + 1) * cs and i == len(lay["addrs"]) - 1):
                marks.append(f"{name}@{absn - i * cs}")
        lines.append(f"slot {slot:>3}  chunk {i:>3}  0x{addr:012x}  {chunk_state(lay, i):<8} {' '.join(marks)}")
    return "\n".join(lines)


def speed_bars(result: dict) -> list[tuple[str, float, str]]:
    """The project's speed bars on one stream() result: (bar, measured, wanted)."""
    from .stats import ratio

    return [
        ("yf MB/s over bytearray's", ratio(result["yf"]["samples"], result["bytearray"]["samples"])["median"],
         ">= 3"),
        ("yf bytes copied per byte delivered", result["yf"]["copied_per_byte"]["median"], "<= 0.1"),
    ]


# ---- evidence for the verdicts (named after the rules' variables) ---------------

def few_copies_evidence(res: dict, sweep: dict) -> dict:
    """Evidence of sbuf-few-copies from stream() and chunk_sweep()."""
    return {"yf_copies": res["yf"]["copied_per_byte"], "bytearray_copies": res["bytearray"]["copied_per_byte"],
            "asyncio_copies": res["asyncio"]["copied_per_byte"], "predicted": predicted_copies(CHUNK),
            "prediction_error": prediction_error(sweep),
            "chunk_size": CHUNK, "min_len": STREAM["min"], "max_len": STREAM["max"]}


def elastic_evidence(trace: dict) -> dict:
    """Evidence of sbuf-elastic from burst()."""
    v = burst_verdict(trace)
    return {k: v[k] for k in ("before", "peak", "peak_size", "after", "after_over_before", "peak_over_before",
                              "peak_slack_chunks", "drained")}

"""Notebook 06 helpers: the message-stream benchmark (yf socket buffer against
a Python bytearray buffer), the burst experiment, and the chunk-ring picture.

The stream: csrc/programs/msg_feeder.c, a separate process, writes n
length-prefixed messages (4-byte little-endian length, payload of uniform
random size 16..1024 bytes) to a TCP loopback connection; the consumer parses
every message and folds len + first + last byte of each payload into a
checksum, which must equal the feeder's. "Delivered" = payload bytes handed
to the consumer.

* yf: one cffi call, yf_bench_sbuf_stream, alternates readv into reserved
  chunk memory (yf_sbuf_recv) with parsing in C (yf_sbuf_take_msgs); each
  payload is handed out by peek, zero-copy unless it straddles two chunks.
  Copies are the buffer's own counter.
* bytearray: what a Python user writes: recv_into the free tail of a
  bytearray, struct.unpack_from for the length, a slice per message (a copy),
  and a compaction (memmove of the unparsed rest) when the free tail runs
  short. Copies are counted in Python: every slice and every compaction.
"""
import socket
import struct
import subprocess
import time

from .bench import interleaved, quick as _quick_env, sizes as _sizes
from .provenance import provenance
from .stats import summary
from .toolchain import compile_program

__all__ = ["STREAM", "stream_yf", "stream_bytearray", "stream_ceiling", "stream", "chunk_sweep",
           "predicted_copies", "burst", "burst_verdict", "ring_text", "chunk_state",
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


def _consume_bytearray(conn: socket.socket, n: int, recv_max: int) -> tuple[int, int, int, int]:
    buf = bytearray(2 * recv_max)
    mv = memoryview(buf)
    cap = len(buf)
    unpack = struct.Struct("<I").unpack_from
    r = w = count = total = s = copied = 0
    while count < n:
        while w - r >= 4 and count < n:
            (length,) = unpack(buf, r)
            end = r + 4 + length
            if end > w:
                break
            msg = buf[r + 4:end]
            s += length + msg[0] + msg[-1]
            copied += length
            total += length
            r = end
            count += 1
        if count == n:
            break
        if cap - w < recv_max:
            rest = w - r
            mv[:rest] = mv[r:w]
            copied += rest
            r, w = 0, rest
        got = conn.recv_into(mv[w:w + recv_max])
        if not got:
            raise ConnectionResetError(f"the feeder closed after {count} of {n} messages")
        w += got
    return count, total, s, copied


def stream_bytearray(n: int, seed: int = 1) -> dict:
    """One round of the stream through the Python bytearray consumer; same keys as stream_yf."""
    feed = _Feed(n, seed)
    try:
        t = time.perf_counter_ns()
        count, total, s, copied = _consume_bytearray(feed.conn, n, STREAM["recv_max"])
        ns = time.perf_counter_ns() - t
    except BaseException:
        feed.abort()
        raise
    _verify("bytearray", feed.finish(), (count, total, s))
    return {"mb_per_s": total / ns * 1e3, "copied_per_byte": copied / total, "bytes": total, "ns": ns}


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


def stream(quick: bool | None = None, progress: bool = False, rounds: int | None = None,
           ceiling: bool = False) -> dict:
    """`yfcore bench sbuf`: MB/s of payload delivered and bytes copied per byte
    delivered, yf against bytearray, interleaved rounds; the consumers of one
    round read the same stream (same feeder seed). With `ceiling`, a third
    system "recv only" (stream_ceiling: no parsing) shows what the socket
    itself delivers, in payload MB/s."""
    n = _sizes("sbuf", quick)["messages"]
    fns = {"yf": stream_yf, "bytearray": stream_bytearray}
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


def chunk_sweep(chunk_sizes=(1024, 4096, 16384, 65536), quick: bool | None = None,
                rounds: int | None = None) -> dict:
    """copied_per_byte and MB/s of the yf consumer for each chunk size
    (interleaved rounds, one seed per round): {chunk_size: {"copied_per_byte":
    summary, "mb_per_s": summary}}."""
    n = _sizes("sbuf", quick)["sweep_messages"]
    got = {c: [] for c in chunk_sizes}
    state = {"seed": 1000}

    def one(c):
        def f():
            state["seed"] += 1
            r = stream_yf(n, state["seed"], chunk_size=c)
            got[c].append(r)
            return r["mb_per_s"]
        return f

    samples = interleaved({str(c): one(c) for c in chunk_sizes}, rounds=rounds)
    out = {}
    for c in chunk_sizes:
        rs = got[c][-len(samples[str(c)]):]
        out[c] = {"copied_per_byte": summary(r["copied_per_byte"] for r in rs),
                  "mb_per_s": summary(samples[str(c)])}
    return out


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
    the last quarter), and their ratios."""
    import statistics

    cap = trace["capacity"]
    s0 = trace["burst_start"]
    before = statistics.median(cap[s0 // 2:s0])
    peak = max(cap)
    tail = cap[len(cap) - len(cap) // 4:]
    after = statistics.median(tail)
    return {"before": before, "peak": peak, "after": after, "peak_size": max(trace["size"]),
            "after_over_before": after / before, "peak_over_before": peak / before,
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

def few_copies_evidence(res: dict) -> dict:
    """Evidence of sbuf-few-copies from stream()."""
    return {"yf_copies": res["yf"]["copied_per_byte"], "bytearray_copies": res["bytearray"]["copied_per_byte"],
            "chunk_size": CHUNK, "min_len": STREAM["min"], "max_len": STREAM["max"]}


def elastic_evidence(trace: dict) -> dict:
    """Evidence of sbuf-elastic from burst()."""
    v = burst_verdict(trace)
    return {k: v[k] for k in ("before", "peak", "after", "after_over_before", "peak_over_before", "drained")}

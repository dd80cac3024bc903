"""Three echo servers written the way a Python user would write each, for the
one C load client (csrc/programs/echo_load.c) to drive over loopback:

  yfcore   Python functions as coroutine bodies on yfcore's loop: one body
           accepts, one body per connection waits for its socket, reads and
           writes back (plain blocking-style code; the waits switch)
  asyncio  asyncio streams: one task per connection, await read, write, drain
  gevent   gevent's StreamServer: one greenlet per connection, recv, sendall

Run as `python -m yfcore.lab.echo_servers KIND`: the server listens on
127.0.0.1 on a free port, prints the port on a line of its own and serves
until it is killed. Each runs in a process of its own, so no server's state
(an event loop, a monkey-patched socket module, a scheduler) touches another's.
"""
import socket
import sys

KINDS = ("yfcore", "asyncio", "gevent")
BUF = 65536


def _listener() -> socket.socket:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1024)
    return ls


def _ready(ls: socket.socket) -> None:
    print(ls.getsockname()[1], flush=True)


def serve_yfcore() -> None:
    import yfcore
    from yfcore import Loop, Scheduler

    sched = Scheduler(yfcore.PY_STACK_SIZE)
    loop = Loop(sched)
    ls = _listener()
    ls.setblocking(False)

    def connection(c):
        with c:
            while True:
                yfcore.wait_fd(c, 1)
                data = c.recv(BUF)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    try:
                        view = view[c.send(view):]
                    except BlockingIOError:
                        yfcore.wait_fd(c, 4)

    def acceptor():
        while True:
            yfcore.wait_fd(ls, 1)
            try:
                c, _ = ls.accept()
            except BlockingIOError:
                continue
            c.setblocking(False)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sched.spawn(connection, c)

    sched.spawn(acceptor)
    _ready(ls)
    loop.run()


def serve_asyncio() -> None:
    import asyncio

    async def connection(reader, writer):
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := await reader.read(BUF):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main():
        ls = _listener()
        server = await asyncio.start_server(connection, sock=ls)
        _ready(ls)
        await server.serve_forever()

    asyncio.run(main())


def serve_gevent() -> None:
    from gevent.server import StreamServer

    def connection(c, _addr):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := c.recv(BUF):
            c.sendall(data)

    server = StreamServer(("127.0.0.1", 0), connection, backlog=1024)
    server.init_socket()
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in KINDS:
        sys.exit(f"usage: python -m yfcore.lab.echo_servers {'|'.join(KINDS)}")
    globals()[f"serve_{sys.argv[1]}"]()

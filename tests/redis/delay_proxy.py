#!/usr/bin/env python3
"""delay_proxy.py - a TCP proxy that holds every byte back DELAY ms in each
direction, to put a local redis-server "one millisecond away".

    delay_proxy.py --listen-port-file F --to HOST:PORT [--delay-ms 1] [--stall-ms N]

Listens on a free loopback port (written to F once listening), connects each
client to HOST:PORT, and forwards what either side sends after the delay,
in order.  SIGUSR1 makes the server slow: what arrives from then on is held
back --stall-ms instead, until SIGUSR2.  SIGTERM stops it (and every connection with it); the tests stop
it to make the server unreachable and start a new one on the same port to
bring it back (--port P).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import time


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: list) -> None:
    """Copies reader to writer, each piece sent delay[0] s after it arrived."""
    queue: collections.deque = collections.deque()
    ready = asyncio.Event()
    done = False

    async def send() -> None:
        while True:
            while not queue:
                if done:
                    return
                ready.clear()
                await ready.wait()
            due, data = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.append((time.monotonic() + delay[0], data))
            ready.set()
    except (ConnectionError, OSError):
        pass
    done = True
    ready.set()
    try:
        await sender
        writer.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        sender.cancel()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen-port-file", required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--delay-ms", type=float, default=1.0)
    ap.add_argument("--stall-ms", type=float, default=6000.0)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    host, port = a.to.rsplit(":", 1)
    delay = [a.delay_ms / 1000.0]
    conns: set = set()

    async def client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(host, int(port))
        except OSError:
            w.close()
            return
        for s in (w, uw):
            sock = s.get_extra_info("socket")
            if sock is not None:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.update((w, uw))
        await asyncio.gather(pump(r, uw, delay), pump(ur, w, delay), return_exceptions=True)
        for s in (w, uw):
            conns.discard(s)
            s.close()

    server = await asyncio.start_server(client, "127.0.0.1", a.port, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    tmp = a.listen_port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{bound}\n")
    os.rename(tmp, a.listen_port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: delay.__setitem__(0, a.stall_ms / 1000.0))
    loop.add_signal_handler(signal.SIGUSR2, lambda: delay.__setitem__(0, a.delay_ms / 1000.0))
    await stop.wait()
    server.close()
    for s in list(conns):
        s.transport.abort()
    os._exit(0)  # every connection dropped at once, as a lost server would


if __name__ == "__main__":
    asyncio.run(main())

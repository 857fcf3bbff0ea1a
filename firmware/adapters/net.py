"""TCP transports: HDLC frames over TCP and the IEC 62056-47 wrapper, one sans-IO link
per TCP connection. The only protocol knowledge here is 'bytes in, bytes out'."""
import asyncio
import time

_READ_SIZE = 2048


class LinkRegistry:
    """Live links, so one ticker can drive every link's inactivity timer."""

    def __init__(self):
        self.links = []

    def tick_all(self, now_ms):
        for conn in self.links:
            conn.tick(now_ms)


class Connection:
    """One byte stream bound to one link and its server sessions."""

    def __init__(self, link, server, writer):
        self.link = link
        self.server = server
        self.writer = writer
        self.sessions = {}

    def feed(self, data):
        self.link.receive_data(data)
        self.server.pump(self.link, self.sessions, time.ticks_ms())
        return self.link.data_to_send()

    def tick(self, now_ms):
        self.link.tick(now_ms)
        self.server.pump(self.link, self.sessions, now_ms)
        out = self.link.data_to_send()
        if out:
            self.writer.write(out)

    def close(self):
        self.server.close_sessions(self.sessions)


async def serve_stream(reader, writer, conn, registry):
    registry.links.append(conn)
    try:
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                break
            out = conn.feed(data)
            if out:
                writer.write(out)
                await writer.drain()
            if getattr(conn.link, "closed", False):
                break  # the link lost its framing: only a new connection recovers
    except OSError:
        pass  # peer reset: the link simply ends
    finally:
        registry.links.remove(conn)
        conn.close()
        writer.close()


async def listen(host, port, make_link, server, registry):
    async def on_client(reader, writer):
        await serve_stream(reader, writer, Connection(make_link(), server, writer), registry)

    return await asyncio.start_server(on_client, host, port)


async def ticker(registry, period_ms=1000):
    while True:
        await asyncio.sleep_ms(period_ms)
        registry.tick_all(time.ticks_ms())

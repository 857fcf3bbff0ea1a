"""TCP transports: HDLC frames over TCP and the IEC 62056-47 wrapper, one sans-IO link
per TCP connection, driven by one select.poll loop. The only protocol knowledge here
is 'bytes in, bytes out'.

A plain poll loop rather than asyncio: it reads into one preallocated buffer, so a
busy link costs no allocation per read, and it leaves the RAM asyncio's module and
stream objects would take to the meter (the whole meter must run in a 64 KB heap)."""
import select
import socket
import time

_RX = memoryview(bytearray(512))
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR


class Connection:
    """One byte stream bound to one link and the server sessions on it."""

    def __init__(self, sock, link, server):
        self.sock = sock
        self.link = link
        self.server = server
        self.sessions = {}

    def feed(self, data):
        self.link.receive_data(data)
        self.flush(time.ticks_ms())

    def flush(self, now_ms):
        self.server.pump(self.link, self.sessions, now_ms)
        out = self.link.data_to_send()
        if out:
            sent = self.sock.write(out) or 0
            if sent < len(out):  # socket buffer full: finish this reply blocking
                self.sock.setblocking(True)
                self.sock.write(out[sent:])
                self.sock.setblocking(False)

    def tick(self, now_ms):
        self.link.tick(now_ms)
        self.flush(now_ms)

    def close(self):
        self.server.close_sessions(self.sessions)
        self.sock.close()


class Loop:
    def __init__(self, server, buffers):
        """buffers: the link buffer pairs (dlms.events.link_buffers), one per connection
        served at once over all ports: planned at start-up, while the heap is one free
        run, so a connection never needs a large block the fragmented heap might no
        longer have."""
        self.server = server
        self.buffers = list(buffers)  # the free ones
        self.poll = select.poll()
        self.listeners = {}  # listening socket -> (link factory, its idle links)
        self.connections = {}  # client socket -> Connection

    def listen(self, host, port, make_link):
        """Serve a port: make_link(buffers) builds a link around a free buffer pair when
        a connection finds no idle link of the port (links are kept for the next
        connection: built once, they need no RAM again). A connection that finds no
        free pair is closed at once (the client sees the refusal as a closed connection)."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(socket.getaddrinfo(host, port)[0][-1])
        sock.listen(2)
        self.listeners[sock] = (make_link, [])
        self.poll.register(sock, select.POLLIN)

    def _accept(self, sock):
        client, _ = sock.accept()
        if not self.buffers:
            # A client that closes and at once reconnects: the end of its old
            # connection may still be queued; serve those ends before refusing.
            for other, events in self.poll.poll(0):
                if other in self.connections and events & _READABLE:
                    self._read(other)
        if not self.buffers:
            client.close()
            return
        make_link, idle = self.listeners[sock]
        pair = self.buffers.pop()
        try:
            if idle:
                link = idle.pop()
                link.attach(pair)
            else:
                link = make_link(pair)
            conn = Connection(client, link, self.server)
        except MemoryError:
            self.buffers.append(pair)
            client.close()
            raise
        conn.idle = idle
        client.setblocking(False)  # readinto returns what has arrived, never waits
        self.connections[client] = conn  # conn.server: the loop's, set once built
        self.poll.register(client, select.POLLIN)

    def _drop(self, sock):
        self.poll.unregister(sock)
        conn = self.connections.pop(sock)
        conn.close()
        conn.link.reset()
        self.buffers.append(conn.link.buffers)
        conn.idle.append(conn.link)

    def _read(self, sock):
        conn = self.connections[sock]
        try:
            n = sock.readinto(_RX)
            if n is None:
                return  # spurious wake-up: nothing to read yet
            if n:
                conn.feed(_RX[:n])
        except OSError:
            n = 0  # peer reset: the link simply ends
        if not n or conn.link.closed:
            self._drop(sock)  # closed by the peer, or the link lost its framing

    def run(self, periodic, period_ms=250):
        """Serve forever; periodic(now_ms) runs at least every period_ms, and every
        link's timers are ticked with it."""
        last = time.ticks_ms()
        while True:
            for sock, events in self.poll.poll(period_ms):
                try:
                    if sock in self.listeners:
                        self._accept(sock)
                    elif events & _READABLE and sock in self.connections:  # not dropped meanwhile
                        self._read(sock)
                except MemoryError:
                    self._out_of_memory(sock)  # on a listener the new connection is already closed
            now = time.ticks_ms()
            if time.ticks_diff(now, last) >= period_ms:
                last = now
                for sock in list(self.connections):
                    try:
                        self.connections[sock].tick(now)
                    except MemoryError:
                        self._out_of_memory(sock)
                periodic(now)

    def _out_of_memory(self, sock):
        """The heap could not serve this connection (too fragmented for a reply): it
        is dropped, as a lost line would be, and the meter goes on serving the others
        and metering; nothing stored depends on a connection."""
        print("net: out of memory, connection dropped")
        if sock in self.connections:
            self._drop(sock)

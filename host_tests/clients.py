"""Thin synchronous DLMS clients for the black-box tests, over plain TCP sockets or a
serial device.

Two independent client stacks, so the meter is judged by more than one reading of the
standard:

* `GuruxClient`  - gurux-dlms `GXDLMSClient` (InterfaceType.HDLC or WRAPPER), driven the
  way Gurux's own readers drive it: send the request frames, feed what comes back to
  `getData` until a whole reply is in, answer "more data" with `receiverReady`.
* `CosemClient`  - dlms-cosem `DlmsClient` with its `HdlcTransport` or `TcpTransport`.

Both keep every byte they send and receive (`link.sent`, `link.received`), so a test can
look at the frames themselves (segmentation bit, block-transfer APDUs).

    with GuruxClient.tcp(port, "hdlc") as c:   # SNRM/UA + AARQ/AARE
        c.read("0-0:42.0.0.255", 1, 2)
"""
import logging
import re
import socket
import time

import serial
import structlog

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXDLMSException, GXReplyData, _GXObjectFactory
from gurux_dlms.enums import Authentication, DataType, InterfaceType, ObjectType

from dlms_cosem import cosem, enumerations, utils
from dlms_cosem.client import DlmsClient
from dlms_cosem.io import BlockingTcpIO, HdlcTransport, SerialIO, TcpTransport
from dlms_cosem.security import LowLevelSecurityAuthentication, NoSecurityAuthentication

# dlms-cosem logs every frame at debug level through structlog: keep warnings only.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

PUBLIC, LLS, MANAGEMENT = 16, 32, 1
LLS_PASSWORD = b"12345678"
SERVER_LOGICAL, SERVER_PHYSICAL = 1, 16


def obis_dotted(obis):
    """'1-0:1.8.0.255' or '1.0.1.8.0.255' -> '1.0.1.8.0.255' (gurux's form)."""
    parts = [int(p) for p in re.split(r"[-:.]", obis)]
    if len(parts) != 6:
        raise ValueError("OBIS needs 6 groups: %r" % obis)
    return ".".join(str(p) for p in parts)


def obis_bytes(obis):
    return bytes(int(p) for p in obis_dotted(obis).split("."))


# ---------------------------------------------------------------------------------
# Byte links: the same small API over a TCP socket and a serial device.
# ---------------------------------------------------------------------------------
class _Link:
    timeout = 5.0

    def __init__(self):
        self.sent = []       # every chunk written, in order
        self.received = []   # every chunk read, in order

    def send(self, data):
        data = bytes(data)
        self.sent.append(data)
        self._write(data)

    def recv(self, timeout=None):
        """Some bytes (at least one); raises TimeoutError; b'' when the peer closed."""
        data = self._read(self.timeout if timeout is None else timeout)
        if data:
            self.received.append(data)
        return data

    def recv_quiet(self, wait=0.3):
        """Everything that arrives within `wait` seconds (b'' if nothing)."""
        out = b""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                chunk = self.recv(left)
            except TimeoutError:
                return out
            if not chunk:
                return out
            out += chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TcpLink(_Link):
    def __init__(self, host, port, timeout=5.0):
        super().__init__()
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _write(self, data):
        self.sock.sendall(data)

    def _read(self, timeout):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096)
        except socket.timeout:
            raise TimeoutError("no reply within %.1f s" % timeout) from None

    def closed_by_peer(self, wait=0.5):
        try:
            return self.recv(wait) == b""
        except TimeoutError:
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class SerialLink(_Link):
    def __init__(self, device, baudrate=9600, timeout=5.0):
        super().__init__()
        self.timeout = timeout
        self.port = serial.Serial(device, baudrate=baudrate, timeout=timeout)

    def _write(self, data):
        self.port.write(data)
        self.port.flush()

    def _read(self, timeout):
        self.port.timeout = timeout
        first = self.port.read(1)
        if not first:
            raise TimeoutError("no reply within %.1f s" % timeout)
        return first + self.port.read(self.port.in_waiting)

    def close(self):
        self.port.close()


# ---------------------------------------------------------------------------------
# gurux-dlms
# ---------------------------------------------------------------------------------
class GuruxClient:
    """GXDLMSClient over a _Link. Errors surface as gurux's own exceptions:
    GXDLMSException (.errorCode = data-access-result, or .result/.diagnostic for a
    refused AARE), GXDLMSExceptionResponse, GXDLMSConfirmedServiceError."""

    def __init__(self, link, interface="hdlc", client=PUBLIC, password=None, max_info=128,
                 max_pdu=None, server_logical=SERVER_LOGICAL, server_physical=SERVER_PHYSICAL):
        self.link = link
        self.interface = interface
        if interface == "hdlc":
            kind, server = InterfaceType.HDLC, GXDLMSClient.getServerAddress(server_logical, server_physical)
        elif interface == "wrapper":
            kind, server = InterfaceType.WRAPPER, server_logical
        else:
            raise ValueError("interface is 'hdlc' or 'wrapper'")
        auth = Authentication.LOW if password is not None else Authentication.NONE
        self.client = GXDLMSClient(True, client, server, auth, password, kind)
        self.client.hdlcSettings.maxInfoTX = max_info
        self.client.hdlcSettings.maxInfoRX = max_info
        if max_pdu is not None:
            self.client.maxReceivePDUSize = max_pdu
        self.aare = None

    @classmethod
    def tcp(cls, port, interface="hdlc", host="127.0.0.1", timeout=5.0, **kw):
        return cls(TcpLink(host, port, timeout), interface, **kw)

    # -- the exchange loop ------------------------------------------------------------
    def _exchange(self, frame, reply):
        """Send one frame and read until gurux says the reply (frame) is whole."""
        if frame is not None:
            self.link.send(frame)
        notify = GXReplyData()
        buf = GXByteBuffer()
        while not self.client.getData(buf, reply, notify):
            notify.clear()
            chunk = self.link.recv()
            if not chunk:
                raise ConnectionError("meter closed the connection")
            buf.set(chunk)

    def exchange(self, frames, reply=None):
        """Send a request (one frame or the list gurux made) and collect the whole reply,
        asking for further frames/blocks while gurux says there is more data."""
        reply = GXReplyData() if reply is None else reply
        if isinstance(frames, (list, tuple)):
            for f in frames:
                reply.clear()
                self.exchange(f, reply)
            return reply
        self._exchange(frames, reply)
        while reply.isMoreData():
            self._exchange(None if reply.isStreaming() else self.client.receiverReady(reply), reply)
        if reply.error:
            raise GXDLMSException(reply.error)
        return reply

    # -- association ----------------------------------------------------------------
    def connect(self):
        """SNRM/UA (HDLC) then AARQ/AARE. A refused AARE raises GXDLMSException
        with .result and .diagnostic."""
        snrm = self.client.snrmRequest()
        if snrm is not None:
            reply = self.exchange(snrm)
            self.client.parseUAResponse(reply.data)
        self.associate()
        return self

    def associate(self):
        reply = self.exchange(self.client.aarqRequest())
        self.aare = bytes(reply.data.array()) if hasattr(reply.data, "array") else None
        self.client.parseAareResponse(reply.data)
        return self

    def release(self):
        frames = self.client.releaseRequest()
        if frames:
            return self.exchange(frames)
        return None

    def disconnect(self):
        frame = self.client.disconnectRequest()
        if frame is not None and self.interface == "hdlc":
            return self.exchange(frame)
        return None

    def close(self):
        self.link.close()

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self.release()
                self.disconnect()
        finally:
            self.close()

    # -- services ---------------------------------------------------------------------
    @staticmethod
    def make_object(obis, class_id):
        obj = _GXObjectFactory.createObject(ObjectType(class_id))
        obj.logicalName = obis_dotted(obis)
        return obj

    def read_object(self, obj, attr):
        reply = self.exchange(self.client.read(obj, attr)[0])
        if obj.getDataType(attr) == DataType.NONE:
            obj.setDataType(attr, reply.valueType)
        self.client.updateValue(obj, attr, reply.value)
        return reply.value

    def read(self, obis, class_id, attr):
        """The value as gurux decodes it (GXByteBuffer/bytes, int, GXDateTime, list...)."""
        obj = self.make_object(obis, class_id)
        value = self.read_object(obj, attr)
        return value, obj

    def read_list(self, items):
        """GET-with-list: items = [(obis, class_id, attr), ...] -> list of values."""
        pairs = [(self.make_object(o, c), a) for o, c, a in items]
        values = []
        reply = GXReplyData()
        for frames in self.client.readList(pairs):
            reply.clear()
            self.exchange(frames, reply)
            if reply.value:
                values.extend(reply.value)
        self.client.updateValues(pairs, values)
        return values, [o for o, _ in pairs]

    def write_object(self, obj, attr):
        return self.exchange(self.client.write(obj, attr))

    def get_object_list(self):
        """Reads 0-0:40.0.0.255 attribute 2 (block transfer as needed) and parses it."""
        reply = self.exchange(self.client.getObjectsRequest())
        return self.client.parseObjects(reply.data, True)

    def request_frames_for_read(self, obis, class_id, attr):
        """The frame gurux would send for a GET (advances gurux's HDLC send counter:
        send it, or send a corrupt copy and then this one, as a retransmission)."""
        return self.client.read(self.make_object(obis, class_id), attr)[0]


# ---------------------------------------------------------------------------------
# dlms-cosem
# ---------------------------------------------------------------------------------
class _RecordingIO:
    """Wraps a dlms-cosem IO object and records the bytes in a _Link-like way."""

    def __init__(self, io):
        self.io = io
        self.sent = []
        self.received = []

    def connect(self):
        self.io.connect()

    def disconnect(self):
        self.io.disconnect()

    def send(self, data):
        self.sent.append(bytes(data))
        self.io.send(data)

    def recv(self, amount=1):
        data = self.io.recv(amount)
        self.received.append(bytes(data))
        return data

    def recv_until(self, end):
        data = self.io.recv_until(end)
        self.received.append(bytes(data))
        return data


class CosemClient:
    """dlms-cosem DlmsClient. `get` returns the parsed value (dlms-cosem's own
    A-XDR parser); `get_raw` the A-XDR bytes."""

    def __init__(self, port, interface="hdlc", client=PUBLIC, password=None, max_pdu=65535,
                 host="127.0.0.1", timeout=5, device=None):
        if device is not None:
            io = SerialIO(port_name=device, timeout=timeout)
        else:
            io = BlockingTcpIO(host=host, port=port, timeout=timeout)
        self.io = _RecordingIO(io)
        if interface == "hdlc":
            transport = HdlcTransport(client_logical_address=client, server_logical_address=SERVER_LOGICAL,
                                      server_physical_address=SERVER_PHYSICAL, io=self.io, timeout=timeout)
        elif interface == "wrapper":
            transport = TcpTransport(client_logical_address=client, server_logical_address=SERVER_LOGICAL,
                                     io=self.io, timeout=timeout)
        else:
            raise ValueError("interface is 'hdlc' or 'wrapper'")
        auth = NoSecurityAuthentication() if password is None else LowLevelSecurityAuthentication(secret=password)
        self.dlms = DlmsClient(transport=transport, authentication=auth, max_pdu_size=max_pdu, timeout=timeout)
        self.aare = None

    def connect(self):
        self.dlms.connect()
        self.aare = self.dlms.associate()
        return self

    def release(self):
        return self.dlms.release_association()

    def disconnect(self):
        self.dlms.disconnect()

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        if exc[0] is None:
            self.release()
        try:
            self.disconnect()
        except Exception:
            if exc[0] is None:
                raise

    @staticmethod
    def attribute(obis, class_id, attr):
        return cosem.CosemAttribute(interface=enumerations.CosemInterface(class_id),
                                    instance=cosem.Obis.from_bytes(obis_bytes(obis)), attribute=attr)

    def get_raw(self, obis, class_id, attr):
        return self.dlms.get(self.attribute(obis, class_id, attr))

    def get(self, obis, class_id, attr):
        return utils.parse_as_dlms_data(self.get_raw(obis, class_id, attr))

    def get_many(self, items):
        """GET-with-list; returns dlms-cosem's GetResponseWithList event."""
        from dlms_cosem.cosem.attribute_with_selection import CosemAttributeWithSelection
        attrs = [CosemAttributeWithSelection(attribute=self.attribute(*it), access_selection=None) for it in items]
        return self.dlms.get_many(attrs)

    def set(self, obis, class_id, attr, data_bytes):
        """SET-normal with A-XDR encoded data; returns dlms-cosem's SetResponse event."""
        return self.dlms.set(self.attribute(obis, class_id, attr), data_bytes)

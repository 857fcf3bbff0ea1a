"""The management client (SAP 1: HLS mechanism 5 GMAC, LN-ciphering context, every
APDU authenticated and encrypted under security suite 0) with two independent stacks,
over HDLC-over-TCP and the IEC 62056-47 wrapper, plus what the security tests need to
look at the ciphered traffic itself.

* `SecureGuruxClient` - gurux-dlms `GXDLMSSecureClient` (service-specific glo-* APDUs),
  the exchange loop of `clients.GuruxClient`, HLS pass 3/4 after the AARE.
* `SecureCosemClient` - dlms-cosem `DlmsClient` with `HighLevelSecurityGmacAuthentication`
  (general-glo-ciphering 0xDB); every APDU is recorded at its transport.

Both start from the invocation counter the meter expects next, read first by the
public client (SAP 16, no security) from 0-0:43.1.0.255 (IDIS), unless given one.
Both can send a raw APDU inside the association (`send_apdu`: a captured APDU again,
or a tampered one) with correct link framing, and list the APDUs they sent and
received (`sent_apdus()`, `received_apdus()`).

Helpers: `hdlc_apdus` / `wrapper_apdus` (APDUs out of captured link bytes),
`security_header` (SC and IC of a ciphered APDU or of an AARE's user-information),
`decipher` (an APDU opened with the keys, by `cryptography`), `meter_counters`
(every invocation counter the meter used in captured responses).

    with SecureGuruxClient.tcp(meter.hdlc_port, "hdlc") as c:
        c.read("1-0:1.8.0.255", 3, 2)
"""
import json
import pathlib
import types

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from gurux_dlms import GXByteBuffer, GXReplyData
from gurux_dlms.GXDLMS import GXDLMS
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.secure import GXDLMSSecureClient

from dlms_cosem import cosem, enumerations
from dlms_cosem.client import DlmsClient
from dlms_cosem.io import BlockingTcpIO, HdlcTransport, TcpTransport
from dlms_cosem.security import HighLevelSecurityGmacAuthentication

import clients
from clients import (MANAGEMENT, SERVER_LOGICAL, SERVER_PHYSICAL, CosemClient, GuruxClient,
                     TcpLink, _RecordingIO)

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEST_KEYS = json.loads((ROOT / "boards" / "UNIX" / "test_keys.json").read_text())
EK = bytes.fromhex(TEST_KEYS["ek"])
AK = bytes.fromhex(TEST_KEYS["ak"])
KEK = bytes.fromhex(TEST_KEYS["kek"])
METER_TITLE = bytes.fromhex(TEST_KEYS["system_title"])
GURUX_TITLE = bytes.fromhex("4D4D4D0000000001")
COSEM_TITLE = bytes.fromhex("4D4D4D0000000002")
INVOCATION_COUNTER = "0-0:43.1.0.255"
SECURITY_SETUP = "0-0:43.0.0.255"

# Global key ids of global_key_transfer (Blue Book 4.4.7, key_id enum).
KEY_UNICAST, KEY_BROADCAST, KEY_AUTHENTICATION, KEY_MASTER = 0, 1, 2, 3

LLC_REQUEST = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"

# Ciphered APDU tags (Green Book 9.5): service-specific glo-*/ded-* with the security
# header right after the length; general-glo/ded-ciphering with a system title first.
SERVICE_CIPHERED = frozenset([0x21, 0x28, 0x2E, 0x48, 0x4E] + list(range(0xC8, 0xD8)) + [0xCA, 0xD2])
GENERAL_CIPHERED = frozenset([0xDB, 0xDC])
AARQ, AARE = 0x60, 0x61
EXCEPTION_RESPONSE = 0xD8


def port_of(meter, interface):
    return meter.hdlc_port if interface == "hdlc" else meter.wrapper_port


def next_counter(port, interface="wrapper"):
    """IDIS: the public client (no security) reads the counter the meter expects next
    from the management client."""
    with GuruxClient.tcp(port, interface) as c:
        value = c.read(INVOCATION_COUNTER, 1, 2)[0]
    if not isinstance(value, int):
        raise AssertionError("0-0:43.1.0.255 is not an integer: %r" % (value,))
    return value


# ---------------------------------------------------------------------------------
# gurux-dlms
# ---------------------------------------------------------------------------------
class SecureGuruxClient(GuruxClient):
    """GuruxClient whose GXDLMSClient is a GXDLMSSecureClient: management client,
    HLS-GMAC, security AUTHENTICATION_ENCRYPTION (all overridable)."""

    def __init__(self, link, interface="hdlc", counter=0, ek=EK, ak=AK, title=GURUX_TITLE,
                 client=MANAGEMENT, authentication=Authentication.HIGH_GMAC,
                 security=Security.AUTHENTICATION_ENCRYPTION, max_info=128, max_pdu=None):
        super().__init__(link, interface, client=client, max_info=max_info, max_pdu=max_pdu)
        kind = InterfaceType.HDLC if interface == "hdlc" else InterfaceType.WRAPPER
        c = GXDLMSSecureClient(True, client, self.client.serverAddress, authentication, None, kind)
        c.hdlcSettings.maxInfoTX = c.hdlcSettings.maxInfoRX = max_info
        if max_pdu is not None:
            c.maxReceivePDUSize = max_pdu
        c.ciphering.security = security
        c.ciphering.systemTitle = bytes(title)
        c.ciphering.blockCipherKey = bytes(ek)
        c.ciphering.authenticationKey = bytes(ak)
        c.ciphering.invocationCounter = counter
        self.client = c

    @classmethod
    def tcp(cls, port, interface="hdlc", host="127.0.0.1", timeout=5.0, counter=None, **kw):
        if counter is None:
            counter = next_counter(port, interface)
        return cls(TcpLink(host, port, timeout), interface, counter=counter, **kw)

    @property
    def counter(self):
        return self.client.ciphering.invocationCounter

    @counter.setter
    def counter(self, value):
        self.client.ciphering.invocationCounter = value

    def associate(self):
        super().associate()
        if self.client.authentication == Authentication.HIGH_GMAC:
            reply = self.exchange(self.client.getApplicationAssociationRequest())
            self.client.parseApplicationAssociationResponse(reply.data)
        return self

    def send_apdu(self, apdu):
        """Send a raw APDU in the next frame of this link (HDLC: the next I-frame
        sequence numbers; wrapper: the client and server wPorts). Returns the APDU
        the meter answered with (raw, taken from the captured bytes), or None when
        nothing came within the link timeout. gurux sees the answer too, so its
        HDLC sequence numbers stay in step."""
        settings = self.client.settings
        if self.interface == "hdlc":
            frame = GXDLMS.getHdlcFrame(settings, settings.getNextSend(True), GXByteBuffer(LLC_REQUEST + bytes(apdu)))
        else:
            frame = GXDLMS.getWrapperFrame(settings, None, GXByteBuffer(bytes(apdu)))
        before = len(self.received_apdus())
        try:
            self._exchange(frame, GXReplyData())
        except TimeoutError:
            return None
        except Exception:  # gurux's own reading of an exception-response etc.
            pass
        after = self.received_apdus()
        return after[before] if len(after) > before else None

    def sent_apdus(self):
        return link_apdus(self.link.sent, self.interface, LLC_REQUEST)

    def received_apdus(self):
        return link_apdus(self.link.received, self.interface, LLC_RESPONSE)


# ---------------------------------------------------------------------------------
# dlms-cosem
# ---------------------------------------------------------------------------------
# dlms-cosem 25.1 delimits HDLC frames by the 0x7E flag alone: its HdlcTransport reads
# "up to the next 0x7E" and its HdlcConnection._find_frame cuts the buffer at the next
# 0x7E. IEC 62056-46 delimits a frame by its length field, and an 0x7E octet inside a
# frame is legal: ciphered payloads hold one about once in 256 octets, and when it is
# the last octet of the FCS, dlms-cosem takes the real closing flag for the opening
# flag of another frame and waits for ever (seen here with the object list). The two
# pieces below make dlms-cosem read and cut frames by their length field.
class _WholeFramesIO(_RecordingIO):
    """Answers HdlcTransport.recv_frame's two recv_until(flag) calls with the
    opening flag, then with the rest of the frame as its format field sizes it,
    closing flag included: never more, never less."""

    def __init__(self, io):
        super().__init__(io)
        self._opened = False

    def recv_until(self, end):
        if end != b"\x7e":
            return super().recv_until(end)
        if not self._opened:
            octet = self.recv(1)
            while octet != b"\x7e":  # inter-frame fill, if any
                octet = self.recv(1)
            self._opened = True
            return octet
        self._opened = False
        fmt = self.recv(2)
        length = ((fmt[0] & 0x07) << 8) | fmt[1]  # format, addresses ... FCS
        return fmt + self.recv(length - 2 + 1)  # the rest and the closing flag


def _find_frame_by_length(connection):
    """HdlcConnection._find_frame by the length field (flag, format with the 11-bit
    length of format..FCS, closing flag)."""
    buf = connection.buffer
    while buf.startswith(b"\x7e\x7e"):  # a closing flag seen before, or fill
        del buf[0]
    if not buf.startswith(b"\x7e"):
        buf.insert(0, 0x7E)
    if len(buf) < 3:
        return None
    end = (((buf[1] & 0x07) << 8) | buf[2]) + 2
    if len(buf) < end:
        return None
    connection.buffer_search_position = end
    return buf[:end]


class _ApduRecorder:
    """Wraps a dlms-cosem transport: every APDU it sends and receives, whole."""

    def __init__(self, transport):
        self.transport = transport
        self.sent = []
        self.received = []

    def __getattr__(self, name):
        return getattr(self.transport, name)

    def send_request(self, apdu):
        self.sent.append(bytes(apdu))
        reply = self.transport.send_request(apdu)
        self.received.append(bytes(reply))
        return reply


class SecureCosemClient(CosemClient):
    """dlms-cosem DlmsClient as the management client (HLS-GMAC, security suite 0,
    authenticated and encrypted general-glo-ciphering). `get`, `get_raw`, `set` as in
    clients.CosemClient; `action(obis, class_id, method, data_bytes)`."""

    def __init__(self, port, interface="hdlc", counter=None, ek=EK, ak=AK, title=COSEM_TITLE,
                 client=MANAGEMENT, max_pdu=65535, host="127.0.0.1", timeout=5):
        if counter is None:
            counter = next_counter(port, interface)
        tcp = BlockingTcpIO(host=host, port=port, timeout=timeout)
        self.io = _WholeFramesIO(tcp) if interface == "hdlc" else _RecordingIO(tcp)
        if interface == "hdlc":
            transport = HdlcTransport(client_logical_address=client, server_logical_address=SERVER_LOGICAL,
                                      server_physical_address=SERVER_PHYSICAL, io=self.io, timeout=timeout)
            transport.hdlc_connection._find_frame = types.MethodType(_find_frame_by_length,
                                                                     transport.hdlc_connection)
        elif interface == "wrapper":
            transport = TcpTransport(client_logical_address=client, server_logical_address=SERVER_LOGICAL,
                                     io=self.io, timeout=timeout)
        else:
            raise ValueError("interface is 'hdlc' or 'wrapper'")
        self.interface = interface
        self.transport = _ApduRecorder(transport)
        self.dlms = DlmsClient(transport=self.transport,
                               authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
                               encryption_key=bytes(ek), authentication_key=bytes(ak),
                               client_system_title=bytes(title), client_initial_invocation_counter=counter,
                               max_pdu_size=max_pdu, timeout=timeout)
        self.aare = None

    @property
    def counter(self):
        return self.dlms.client_invocation_counter

    def action(self, obis, class_id, method, data_bytes):
        m = cosem.CosemMethod(enumerations.CosemInterface(class_id),
                              cosem.Obis.from_bytes(clients.obis_bytes(obis)), method)
        return self.dlms.action(m, data_bytes)

    def send_apdu(self, apdu):
        """A raw APDU through the transport (HDLC framing and sequence numbers kept
        by dlms-cosem); the meter's answer APDU, or None when none came in time."""
        try:
            return self.transport.send_request(bytes(apdu))
        except Exception:  # dlms-cosem raises on a read timeout
            return None

    def sent_apdus(self):
        return list(self.transport.sent)

    def received_apdus(self):
        return list(self.transport.received)


# ---------------------------------------------------------------------------------
# Captured traffic
# ---------------------------------------------------------------------------------
def link_apdus(chunks, interface, llc):
    return hdlc_apdus(chunks, llc) if interface == "hdlc" else wrapper_apdus(chunks)


def wrapper_apdus(chunks):
    """The APDUs of captured wrapper traffic (version 1, source, destination, length)."""
    data = b"".join(chunks)
    out = []
    while len(data) >= 8:
        n = int.from_bytes(data[6:8], "big")
        out.append(data[8:8 + n])
        data = data[8 + n:]
    return out


def _hdlc_frames(data):
    """(segmented, control, info) of each frame of captured HDLC bytes."""
    pos = 0
    while pos + 3 <= len(data):
        if data[pos] != 0x7E:
            pos += 1
            continue
        fmt = int.from_bytes(data[pos + 1:pos + 3], "big")
        if fmt >> 12 != 0xA:
            pos += 1  # a closing flag shared as opening, or noise
            continue
        length = fmt & 0x7FF
        frame = data[pos + 1:pos + 1 + length]
        p = 2
        for _ in range(2):  # destination, then source address (last octet has bit 0 set)
            while p < len(frame) and not frame[p] & 1:
                p += 1
            p += 1
        control = frame[p] if p < len(frame) else 0
        info = frame[p + 3:-2] if length > p + 3 else b""  # after the HCS, before the FCS
        yield bool(fmt & 0x0800), control, bytes(info)
        pos += 1 + length


def hdlc_apdus(chunks, llc):
    """The APDUs of captured HDLC traffic: the information fields of I-frames,
    segments joined, the LLC header removed."""
    out = []
    partial = None
    for segmented, control, info in _hdlc_frames(b"".join(chunks)):
        if control & 1:  # S- and U-frames (RR, SNRM, UA, DISC) carry no APDU
            continue
        partial = info if partial is None else partial + info
        if not segmented:
            out.append(partial[3:] if partial.startswith(llc) else partial)
            partial = None
    return out


def _length(buf, pos):
    """A-XDR/BER length at pos -> (length, position after it)."""
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    return int.from_bytes(buf[pos + 1:pos + 1 + n], "big"), pos + 1 + n


def _aare_user_information(apdu):
    """The glo-initiate-response (or other) inside an AARE's user-information, or None."""
    _, pos = _length(apdu, 1)
    while pos < len(apdu):
        tag = apdu[pos]
        n, start = _length(apdu, pos + 1)
        if tag == 0xBE:  # user-information [30]: an octet string (04 len ...)
            inner_len, inner = _length(apdu, start + 1)
            return apdu[inner:inner + inner_len]
        pos = start + n
    return None


def security_header(apdu):
    """(tag, system title or None, SC, IC, ciphered body) of a ciphered APDU, also
    found inside an AARQ's or AARE's user-information; None if not ciphered."""
    if apdu and apdu[0] in (AARQ, AARE):
        apdu = _aare_user_information(apdu)
    if not apdu:
        return None
    tag, pos, title = apdu[0], 1, None
    if tag in GENERAL_CIPHERED:
        n, pos = _length(apdu, pos)
        title, pos = bytes(apdu[pos:pos + n]), pos + n
    elif tag not in SERVICE_CIPHERED:
        return None
    n, pos = _length(apdu, pos)
    content = apdu[pos:pos + n]
    return tag, title, content[0], int.from_bytes(content[1:5], "big"), bytes(content[5:])


def decipher(apdu, sender_title, ek=EK, ak=AK):
    """The plaintext of an authenticated-and-encrypted APDU (SC 0x30), checked by the
    `cryptography` AES-GCM (InvalidTag when the keys do not open it): IV = sender system title || IC, AAD = SC || AK."""
    tag, title, sc, ic, body = security_header(apdu)
    if sc & 0x30 != 0x30:
        raise ValueError("SC 0x%02x is not authenticated and encrypted" % sc)
    iv = bytes(title or sender_title) + ic.to_bytes(4, "big")
    # DLMS tags are 12 octets: the AEAD class wants 16, the GCM mode takes 12.
    d = Cipher(algorithms.AES(bytes(ek)), modes.GCM(iv, body[-12:], min_tag_length=12)).decryptor()
    d.authenticate_additional_data(bytes([sc]) + bytes(ak))
    return d.update(body[:-12]) + d.finalize()


# Plain request tag -> glo-* request tag (Green Book 9.5).
GLO_REQUEST = {0xC0: 0xC8, 0xC1: 0xC9, 0xC3: 0xCB}


def encipher(plain, title, ic, general, ek=EK, ak=AK, sc=0x30):
    """plain protected by the client (system title `title`) with counter ic, as
    general-glo-ciphering (general=True, dlms-cosem's form) or as the service-specific
    glo-* APDU (gurux's form): what a client library would send."""
    iv = bytes(title) + ic.to_bytes(4, "big")
    e = Cipher(algorithms.AES(bytes(ek)), modes.GCM(iv)).encryptor()
    e.authenticate_additional_data(bytes([sc]) + bytes(ak))
    body = e.update(bytes(plain)) + e.finalize()
    content = bytes([sc]) + ic.to_bytes(4, "big") + body + e.tag[:12]
    head = bytes([0xDB, len(title)]) + bytes(title) if general else bytes([GLO_REQUEST[plain[0]]])
    return head + _encode_length(len(content)) + content


def _encode_length(n):
    return bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")


def hls_reply_counter(plain):
    """IC of the meter's f(CtoS) in a deciphered reply_to_HLS_authentication
    action-response (... 09 11 SC(0x10) IC(4) GMAC(12)), or None."""
    at = plain.find(b"\x09\x11\x10")
    return int.from_bytes(plain[at + 3:at + 7], "big") if plain[:1] == b"\xc7" and at >= 0 else None


def meter_counters(apdus, ek=EK, ak=AK):
    """Every invocation counter the meter used in captured response APDUs, in order:
    the security headers of its ciphered APDUs (AARE user-information included)
    and, where the keys open it, the IC of its HLS f(CtoS)."""
    out = []
    for apdu in apdus:
        header = security_header(apdu)
        if header is None:
            continue
        out.append(header[3])
        try:
            ic = hls_reply_counter(decipher(apdu, METER_TITLE, ek, ak))
        except Exception:
            ic = None
        if ic is not None:
            out.append(ic)
    return out


# ---------------------------------------------------------------------------------
# global_key_transfer
# ---------------------------------------------------------------------------------
def key_transfer_data(new_keys, kek=KEK):
    """A-XDR parameter of global_key_transfer: array of structure {key_id enum,
    key_wrapped octet-string}, each key wrapped under the KEK (RFC 3394).
    new_keys: [(key id, 16-byte key), ...]."""
    out = bytearray([0x01, len(new_keys)])
    for key_id, key in new_keys:
        wrapped = aes_key_wrap(kek, bytes(key))
        out += bytes([0x02, 0x02, 0x16, key_id, 0x09, len(wrapped)]) + wrapped
    return bytes(out)

# HDLC data link layer, server side: IEC 62056-46 / DLMS UA Green Book, "Data link
# layer using the HDLC protocol" (ISO/IEC 13239 frame format type 3, unbalanced
# operation, normal response mode).
#
# Owns: the frame codec (flags, format field, addresses, control, HCS, FCS); the
# secondary station's state machine (NDM, NRM, frame-reject condition; SNRM, UA, I,
# RR, RNR, UI, DISC, DM, FRMR); parameter negotiation; send and receive windows;
# segmentation both ways; the LLC header; the inactivity and inter-octet timeouts.
# Sans-IO: receive_data() takes bytes, next_event() hands up whole APDUs,
# data_to_send() returns frames; time only comes in through tick(). It never looks
# inside an APDU. This is the one place where a bad frame becomes a wire response:
# parse_frame() raises DecodeError naming a stats counter and the link drops and
# counts the frame (a corrupt frame is never answered: the client repeats its poll).
#
# Decisions the Green Book leaves to the implementation (docs: report of the link
# layer helper):
# - Replies carry the server address exactly as the client wrote it (same size, same
#   value, all-station lower address included); clients such as Gurux compare it.
# - Upper address ALL_STATION (broadcast to every logical device): only UI frames
#   are taken, handed up as "no reply" APDUs, never answered. Lower address
#   ALL_STATION with our upper address is answered (point to point, e.g. an optical
#   probe that does not know the physical address) unless multidrop=True, where it is
#   a broadcast too. NO_STATION and other addresses are silently ignored.
# - An unknown client SAP gets DM to a polled command (a clear refusal, no timeout).
# - Before SNRM (NDM) a polled I, RR, RNR or DISC gets DM and nothing is delivered; a
#   UI frame is handed up as "no reply" (unconfirmed services) and never answered.
# - Information field longer than the negotiated maximum: FRMR (Y). A frame too long
#   for the receive buffer is judged by its header: with a good HCS its length is
#   trusted and its body skipped; a candidate header with a bad HCS is dropped at
#   once, so a 0x7E in noise never holds back the real frame behind it.
# - UA information field: 05/06 as 2-byte values, 07/08 as 4-byte values, as in the
#   DLMS UA example exchange (Kmethy); gurux and dlms-cosem parse any size.
# - Commands are answered only when their P bit is set (NRM: a secondary transmits
#   only when polled). A poll that needs an APDU from the server (final I-frame, RR,
#   RNR, UI) is answered lazily by data_to_send() once every event has been taken:
#   with the queued I-frames, else with RR.
# - Retransmission is go-back-N: a poll whose N(R) does not acknowledge everything we
#   sent rewinds to N(R) (a client that lost our answer repeats its request or polls).
# - On an optical port that echoes, our own frames come back; a received frame equal
#   to what we just sent is dropped as echo (only when the address bytes make it
#   ambiguous: client SAP == our logical address, one-byte form).
import struct
# Builtins used per request, as module names (why: dlms/security.py).
from builtins import bytearray, bytes, len, memoryview, min, type
from micropython import const

from dlms.crc import crc16_range, GOOD_RESIDUE
from dlms.errors import DecodeError
from dlms.events import NEED_DATA, EV_CONNECT, EV_APDU, EV_DISCONNECT, link_buffers

_MAX_INFO = const(2030)  # Green Book: largest max_info_field_length (11-bit length field)
_FLAG = const(0x7E)
_FLAG_BYTES = b"\x7e"
_OVERHEAD = const(12)  # format 2 + destination <= 4 + source 1 + control 1 + HCS 2 + FCS 2
_MIN_LEN = const(7)  # format 2 + destination 1 + source 1 + control 1 + FCS 2
_TICKS_MASK = const(0x3FFFFFFF)  # MicroPython ticks period; exact for monotonic counts too

# Control field (Green Book, "Control field format"): P/F is bit 5 in every frame.
_PF = const(0x10)
_RR = const(0x01)
_RNR = const(0x05)
_SNRM = const(0x83)
_DISC = const(0x43)
_UA = const(0x63)
_DM = const(0x0F)
_FRMR = const(0x87)
_UI = const(0x03)

# FRMR information field, third octet (ISO/IEC 13239): W invalid control field,
# X information field not permitted, Y information field too long, Z invalid N(R).
_FRMR_W = const(0x01)
_FRMR_X = const(0x02)
_FRMR_Y = const(0x04)
_FRMR_Z = const(0x08)

# LLC header (Green Book, "LLC sublayer"): destination LSAP E6, source LSAP E6
# (command, client -> server) or E7 (response), quality 00.
_LLC_RESPONSE = memoryview(b"\xe6\xe7\x00")

# Link states (public: tests and adapters read link.state).
NDM = const(0)  # normal disconnected mode
NRM = const(1)  # normal response mode: data link connected
FRMR_COND = const(2)  # frame-reject condition: only SNRM or DISC lead out of it

# Frame kinds, the input alphabet of the state table.
_K_I = const(0)
_K_RR = const(1)
_K_RNR = const(2)
_K_SNRM = const(3)
_K_DISC = const(4)
_K_UI = const(5)
_K_RESP = const(6)  # UA, DM, FRMR: responses, never a command to a server
_K_BAD = const(7)  # REJ, SREJ and undefined controls: not in the DLMS repertoire

_NO_INFO = (_K_RR, _K_RNR, _K_DISC)  # commands that carry no information field
_S_KINDS = (_K_RR, _K_RNR, _K_BAD, _K_BAD)  # S-frame type bits 2-3: RR 0x01, RNR 0x05, REJ 0x09, SREJ 0x0D
_U_KINDS = {_SNRM: _K_SNRM, _DISC: _K_DISC, _UI: _K_UI, _UA: _K_RESP, _DM: _K_RESP, _FRMR: _K_RESP}

_STATS = (
    "frames", "dropped", "too_long", "bad_address", "bad_hcs", "bad_fcs", "other_address",
    "unknown_client", "broadcast", "echo", "bad_snrm", "bad_llc", "apdu_too_long",
    "out_of_sequence", "retransmit", "frmr", "timeouts", "partial_dropped",
    "reply_suppressed", "tx_dropped", "tx_overflow",
)


def link_stats():
    """A fresh counter dict for HDLCLink(stats=), made in one allocation of its size."""
    return dict.fromkeys(_STATS, 0)


def frame_kind(control):
    """Kind of a control byte: I (bit 0 = 0), S (bits 0-1 = 01), U (11, P/F masked)."""
    if not control & 1:
        return _K_I
    if not control & 2:
        return _S_KINDS[(control >> 2) & 3]
    return _U_KINDS.get(control & 0xEF, _K_BAD)


def parse_frame(buf, s, e):
    """Check one frame buf[s:e] (format field .. FCS, flags excluded; buf a memoryview
    or bytes). Returns (dst_pos, dst_len, src_pos, src_len, control, info_start,
    info_end, segmented). Raises DecodeError whose message is the stats counter to
    bump. Both directions parse: a client address is 1 byte, a server's 1, 2 or 4."""
    if e - s < _MIN_LEN:
        raise DecodeError("dropped")
    f = buf[s]
    if f & 0xF0 != 0xA0 or ((f & 7) << 8 | buf[s + 1]) != e - s:
        raise DecodeError("dropped")
    # Addresses: 7 bits per byte, bit 0 set on the last byte (Green Book, "Address
    # field"); 3-byte addresses do not exist.
    i = s + 2
    j = _address_end(buf, i, e)
    k = _address_end(buf, j, e)
    h = k + 1  # end of header (after the control byte)
    if h + 2 == e:  # no information field: no HCS, the FCS covers the header
        if crc16_range(0xFFFF, buf, s, e) != GOOD_RESIDUE:
            raise DecodeError("bad_fcs")
        return i, j - i, j, k - j, buf[k], h, h, f & 8
    if h + 4 > e:
        raise DecodeError("dropped")
    # Running a field and its own correct CRC through the register leaves the fixed
    # residue, so HCS and FCS are checked in one pass over the frame.
    if crc16_range(0xFFFF, buf, s, h + 2) != GOOD_RESIDUE:
        raise DecodeError("bad_hcs")
    if crc16_range(GOOD_RESIDUE, buf, h + 2, e) != GOOD_RESIDUE:
        raise DecodeError("bad_fcs")
    return i, j - i, j, k - j, buf[k], h + 2, e - 2, f & 8


def _address_end(buf, i, e):
    """Index after the address starting at buf[i]."""
    j = i
    lim = min(i + 4, e - 3)  # control and FCS must follow
    while j < lim:
        if buf[j] & 1:
            if j == i + 2:
                break
            return j + 1
        j += 1
    raise DecodeError("bad_address")


def _header_end(mv, s, end, e):
    """Judge the header of a frame whose format field is mv[s] and whose closing flag
    is due at mv[e], with only mv[:end] received. Returns the index after the HCS
    when the header is complete and the HCS good; 0 when it cannot be a frame (bad
    address, impossible length); -3 when the HCS is bad; -1 when more bytes are
    needed; -2 when the frame has no information field (no HCS: only its FCS can
    tell)."""
    if e - s < _MIN_LEN:
        return 0
    k = s + 2
    for _ in (0, 1):  # destination, then source address
        j = k
        while True:
            if j >= end:
                return -1
            if j - k >= 4 or j >= e - 3:
                return 0
            if mv[j] & 1:
                break
            j += 1
        if j - k == 2:
            return 0  # 3-byte addresses do not exist
        k = j + 1
    h = k + 1  # after the control byte
    if h + 2 == e:
        return -2
    if h + 4 > e:
        return 0
    if h + 2 > end:
        return -1
    if crc16_range(0xFFFF, mv, s, h + 2) != GOOD_RESIDUE:
        return -3
    return h + 2


def decode_server_address(buf, i, n):
    """(upper, lower) of an n-byte server address at buf[i]; lower is None in the
    one-byte form. Four-byte form: 14 bits each, high 7 bits first."""
    if n == 1:
        return buf[i] >> 1, None
    if n == 2:
        return buf[i] >> 1, buf[i + 1] >> 1
    if n == 4:
        return (buf[i] >> 1) << 7 | buf[i + 1] >> 1, (buf[i + 2] >> 1) << 7 | buf[i + 3] >> 1
    raise DecodeError("bad_address")


def encode_server_address(upper, lower=None, size=None):
    """Server address bytes; size 1 (upper only), 2 or 4 (default: the smallest)."""
    if size is None:
        size = 1 if lower is None else (2 if upper < 0x80 and lower < 0x80 else 4)
    if size == 1 and lower is None and 0 <= upper < 0x80:
        return bytes(((upper << 1) | 1,))
    if size == 2 and 0 <= upper < 0x80 and 0 <= lower < 0x80:
        return bytes((upper << 1, (lower << 1) | 1))
    if size == 4 and 0 <= upper < 0x4000 and 0 <= lower < 0x4000:
        return bytes(((upper >> 7) << 1, (upper & 0x7F) << 1, (lower >> 7) << 1, ((lower & 0x7F) << 1) | 1))
    raise ValueError("server address")


def encode_client_address(sap):
    if not 0 <= sap < 0x80:
        raise ValueError("client address")
    return bytes(((sap << 1) | 1,))


def encode_frame_into(out, o, control, segmented, addr, p1=None, p2=None):
    """Write one frame with both flags at out[o:] (out: bytearray or memoryview with
    room, len(addr) + 12 + len(p1) + len(p2) bytes); addr = destination + source
    address bytes; information field = p1 + p2 (either may be None: the link sends
    the LLC header and an APDU slice without joining them). Returns the offset after
    the closing flag. Hot path: no allocation beyond the slice objects of the copies,
    CRC in place."""
    n = (0 if p1 is None else len(p1)) + (0 if p2 is None else len(p2))
    al = len(addr)
    length = al + 5 + (n + 2 if n else 0)
    out[o] = _FLAG
    out[o + 1] = 0xA0 | (0x08 if segmented else 0) | (length >> 8)
    out[o + 2] = length & 0xFF
    k = o + 3 + al
    out[o + 3:k] = addr
    out[k] = control
    k += 1
    reg = crc16_range(0xFFFF, out, o + 1, k)
    if n:
        reg ^= 0xFFFF  # HCS, low byte first
        out[k] = reg & 0xFF
        out[k + 1] = reg >> 8
        k += 2
        i = k
        if p1 is not None:
            k += len(p1)
            out[i:k] = p1
        if p2 is not None:
            out[k:k + len(p2)] = p2
            k += len(p2)
        reg = crc16_range(GOOD_RESIDUE, out, i, k)  # FCS continues after a correct HCS
    reg ^= 0xFFFF
    out[k] = reg & 0xFF
    out[k + 1] = reg >> 8
    out[k + 2] = _FLAG
    return k + 3


def encode_frame(control, dst, src, info=None, segmented=False):
    """A whole frame as bytes (tools and tests; the link writes into its own buffer)."""
    out = bytearray(len(dst) + len(src) + (len(info) if info else 0) + _OVERHEAD)
    return bytes(out[:encode_frame_into(out, 0, control, segmented, bytes(dst) + bytes(src), info or None)])


class HDLCLink:
    """Server (secondary station) side of one HDLC line; see the module comment."""

    closed = False  # the transport's question; an HDLC line never loses its framing for good

    def __init__(self, server_logical=1, server_physical=16, clients=(16, 1, 102), max_info_tx=128,
                 max_info_rx=128, window=1, inactivity_ms=120000, inter_octet_ms=25, max_apdu=2048,
                 multidrop=False, buffers=None, stats=None):
        if not (1 <= max_info_tx <= _MAX_INFO and 1 <= max_info_rx <= _MAX_INFO and 1 <= window <= 7):
            raise ValueError("HDLC limits")
        if not (0 < server_logical < 0x3FFF and 0 <= server_physical < 0x3FFE):
            raise ValueError("HDLC server address")
        # Counters: the link's own, or the port's (a dict from link_stats(), shared by
        # the links the transport builds per connection, so they outlive a connection).
        self.stats = stats if stats is not None else link_stats()
        self._logical = server_logical
        self._physical = server_physical
        self._clients = tuple(clients)
        self._multidrop = multidrop
        self._cfg = (max_info_tx, max_info_rx, window)
        self._max_apdu = max_apdu
        self._inactivity_ms = inactivity_ms
        self._inter_ms = inter_octet_ms
        # Buffers, sized once from our own limits (negotiation can only shrink them).
        self._rx = bytearray(max_info_rx + _OVERHEAD + 2)
        self._rxmv = memoryview(self._rx)
        self._rxlen = 0
        self._out = bytearray(window * (max_info_tx + _OVERHEAD + 2) + 96)
        self._outmv = memoryview(self._out)
        self._olen = 0
        # Reassembly of segmented APDUs (LLC included) and the outgoing APDU when it is
        # not bytes: rooms of at least max_apdu + 3 octets, lent by the transport.
        self.attach(buffers or link_buffers(max_apdu + 3))
        self._ra_over = False  # too long: discarding up to the final segment
        self._fhdr = memoryview(bytearray(5))  # reply addresses of the frame being handled
        self._fhl = 0
        self._chdr = memoryview(bytearray(5))  # reply addresses of the connected client
        self._chl = 0
        self._ua = bytearray(23)
        self._frmr_info = bytearray(3)
        self._events = []
        self._evflags = []
        self._evhead = 0
        self._mute = False
        self._bcast = False
        self._skip = 0  # bytes of a rejected oversized frame still to come
        self._echo = None
        self._echo_pos = 0
        self._rx_seen = False
        self._rx_time = 0
        self._activity = False
        self._last = 0
        self._txq = []
        self._offs = [0] * 8  # start offset in the outgoing message of frame N(S) (set when sent)
        self.state = NDM
        self.client = None
        self._reset_link()

    # ---- sans-IO interface (docs/INTERFACES.md, "Links") ----

    def receive_data(self, data):
        src = memoryview(data)
        n = len(src)
        if n:
            self._rx_seen = True
        cap = len(self._rx)
        pos = 0
        while pos < n:
            if self._skip:  # the rest of a rejected oversized frame
                k = min(self._skip, n - pos)
                self._skip -= k
                pos += k
                continue
            k = min(cap - self._rxlen, n - pos)
            if not k:  # cannot happen with a consistent _max_len; never loop forever
                self.stats["dropped"] += 1
                self._rxlen = 0
                continue
            self._rxmv[self._rxlen:self._rxlen + k] = src[pos:pos + k]
            self._rxlen += k
            pos += k
            self._scan()

    def next_event(self):
        h = self._evhead
        events = self._events
        if h == len(events):
            self._mute = False
            return NEED_DATA
        ev = events[h]
        self._mute = self._evflags[h]  # the APDU came in a UI/broadcast frame: no reply
        h += 1
        if h == len(events):
            events.clear()
            self._evflags.clear()
            h = 0
        self._evhead = h
        return ev

    def send_apdu(self, client, apdu):
        """Queue a whole APDU; it leaves in frames of at most the negotiated size, as
        the client polls. The link keeps a reference to a bytes apdu and a copy of any
        other (a view of the server's response buffer is reused for the next reply)."""
        if self._mute:
            self.stats["reply_suppressed"] += 1
            return
        if self.state != NRM or client != self.client:
            self.stats["tx_dropped"] += 1
            return
        if self._tx is None:
            if type(apdu) is not bytes:
                self._txbuf[:] = apdu
                apdu = self._txbuf
            self._start(apdu)
        else:  # a reply queued behind another (rare): a view gets its own copy
            self._txq.append(apdu if type(apdu) is bytes else bytes(apdu))

    def data_to_send(self):
        if self._poll and self._evhead == len(self._events):
            self._poll = False
            self._answer_poll()
        n = self._olen
        if not n:
            return b""
        self._olen = 0
        out = bytes(self._outmv[:n])
        self._echo = out
        self._echo_pos = 0
        return out

    def tick(self, now_ms):
        if self._rx_seen:
            self._rx_seen = False
            self._rx_time = now_ms
        elif self._rxlen > 1 and (now_ms - self._rx_time) & _TICKS_MASK >= self._inter_ms:
            # Green Book, inter-octet time-out: a frame that stopped half-way is dropped
            # so that the next one is not taken as its continuation.
            self.stats["partial_dropped"] += 1
            self._rxlen = 0
            self._skip = 0
        if self.state != NDM and self._inactivity_ms:
            if self._activity:
                self._activity = False
                self._last = now_ms
            elif (now_ms - self._last) & _TICKS_MASK >= self._inactivity_ms:
                # Green Book, inactivity time-out: the link falls back to NDM silently.
                self.stats["timeouts"] += 1
                self._drop_link()

    # ---- framing ----

    def _scan(self):
        """Cut frames out of the receive buffer by their length field (a 0x7E inside a
        frame is data); skip garbage up to the next flag; keep an unfinished frame."""
        rx = self._rx
        mv = self._rxmv
        end = self._rxlen
        p = 0
        while True:
            p = rx.find(_FLAG_BYTES, p, end)
            if p < 0:
                p = end  # no flag at all: echo, noise or mode-E leftovers
                break
            if p + 3 > end:
                break
            f = rx[p + 1]
            if f & 0xF0 != 0xA0:
                p += 1  # a closing or idle flag, or a 0x7E in garbage
                continue
            e = p + 1 + ((f & 7) << 8 | rx[p + 2])  # where the closing flag must be
            if e >= end or e - p - 1 > self._max_len:
                # Unfinished or oversized: judge the header as soon as it is in, so
                # that a 0x7E in garbage does not hold back the real frame behind it.
                h = _header_end(mv, p + 1, end, e)
                if h == 0 or h == -3:
                    self.stats["bad_hcs" if h else "dropped"] += 1
                    p += 1
                    continue
                if e - p - 1 > self._max_len:
                    if h == -1:
                        break  # header not complete yet
                    if h < 0:  # no HCS to trust the length by: hunt for a flag
                        self.stats["too_long"] += 1
                        p += 1
                        continue
                    # Header and HCS are good, so the length is trusted: reject the
                    # frame (ISO/IEC 13239 FRMR, Y: information field too long) and
                    # skip its body without hunting for flags inside it.
                    self.stats["too_long"] += 1
                    self._on_oversize(mv, p + 1, h)
                    if e < end:
                        p = e
                        continue
                    self._skip = e - end
                    p = end
                    break
                break
            if rx[e] != _FLAG:
                self.stats["dropped"] += 1
                p += 1
                continue
            self._on_frame(mv, p + 1, e)
            p = e  # the closing flag may open the next frame
        if p:
            rem = end - p
            if rem:
                mv[0:rem] = mv[p:end]
            self._rxlen = rem

    def _on_frame(self, mv, s, e):
        try:
            i, dl, j, sl, c, i0, i1, seg = parse_frame(mv, s, e)
        except DecodeError as err:
            self.stats[err.args[0]] += 1
            return
        client = self._route(mv, s, e, i, dl, j, sl, c)
        if client < 0:
            return
        kind = frame_kind(c)
        if self._bcast:
            # Green Book: a frame to the all-station address is a broadcast: only UI
            # frames are taken, and no broadcast is ever answered.
            self.stats["broadcast"] += 1
            if kind == _K_UI:
                self._deliver(client, mv, i0, i1, True)
            return
        self.stats["frames"] += 1
        st = self._state_for(client, kind, dl)
        if i1 - i0 > self.rx_max or (i1 > i0 and kind in _NO_INFO):
            # ISO/IEC 13239 frame reject: Y information field too long; W+X an
            # information field where the command allows none. NDM: DM, as usual.
            if st == NRM:
                self._frmr(c, _FRMR_Y if i1 - i0 > self.rx_max else _FRMR_W | _FRMR_X)
            elif st == NDM:
                self._h_dm(c, client, mv, i0, i1, seg)
            else:
                self._h_frmr_again(c, client, mv, i0, i1, seg)
            return
        _TABLE[st][kind](self, c, client, mv, i0, i1, seg)

    def _on_oversize(self, mv, s, h):
        """An oversized frame whose header and HCS are good (h: index after the HCS)."""
        try:
            i = s + 2
            j = _address_end(mv, i, h)
            k = _address_end(mv, j, h)
        except DecodeError:
            return
        c = mv[k]
        client = self._route(mv, s, 0, i, j - i, j, k - j, c)
        if client < 0 or self._bcast:
            return
        if self._state_for(client, frame_kind(c), j - i) == NRM:
            self._frmr(c, _FRMR_Y)

    def _state_for(self, client, kind, dl):
        """Row of the state table for a frame from client (activity bookkeeping)."""
        st = self.state
        if st != NDM:
            if client == self.client:
                self._activity = True
                self._chdr[0:dl + 1] = self._fhdr[0:dl + 1]
                self._chl = dl + 1
            elif kind != _K_SNRM:
                st = NDM  # towards any other client we are disconnected
        return st

    def _route(self, mv, s, e, i, dl, j, sl, c):
        """Address filter. Returns the client SAP of a frame for us (self._bcast tells
        a broadcast; self._fhdr holds the reply addresses), or -1 when the frame is
        ignored (counted). e == 0: oversized frame, only the header is known."""
        self._bcast = False
        try:
            upper, lower = decode_server_address(mv, i, dl)
        except DecodeError:
            self.stats["bad_address"] += 1
            return -1
        # Green Book, "Reserved special HDLC addresses": ALL_STATION is 0x7F in the
        # 7-bit fields, 0x3FFF in the 14-bit ones; NO_STATION (0) is never ours.
        all_station = 0x3FFF if dl == 4 else 0x7F
        bcast = False
        if upper == all_station:
            bcast = True
        elif upper != self._logical:
            self.stats["other_address"] += 1  # another device, or our own echo
            return -1
        if lower is not None and lower != self._physical:
            if lower != all_station:
                self.stats["other_address"] += 1
                return -1
            bcast = bcast or self._multidrop
        if sl != 1:
            self.stats["bad_address"] += 1  # a client address is one byte
            return -1
        src = mv[j]
        if self._echo is not None:
            # Only when the addresses cannot tell (see the module comment); an
            # oversized frame cannot be compared and counts as echo too.
            if dl == 1 and mv[i] == src and (not e or self._is_echo(mv, s, e)):
                self.stats["echo"] += 1
                return -1
            self._echo = None
        h = self._fhdr
        h[0] = src
        h[1:1 + dl] = mv[i:i + dl]
        self._fhl = dl + 1
        client = src >> 1
        if client not in self._clients:
            self.stats["unknown_client"] += 1
            if c & _PF and not bcast and frame_kind(c) != _K_RESP:
                self._reply(_DM | _PF)
            return -1
        self._bcast = bcast
        return client

    def _is_echo(self, mv, s, e):
        p = self._echo_pos
        n = e - s + 2
        if self._echo[p:p + n] == bytes(mv[s - 1:e + 1]):
            self._echo_pos = p + n
            return True
        return False

    # ---- output ----

    def _write(self, addr, control, seg, p1, p2):
        need = len(addr) + _OVERHEAD + (0 if p1 is None else len(p1)) + (0 if p2 is None else len(p2))
        if self._olen + need > len(self._out):
            self.stats["tx_overflow"] += 1
            return
        self._olen = encode_frame_into(self._outmv, self._olen, control, seg, addr, p1, p2)

    def _reply(self, control, info=None):
        """Answer the frame being handled, to whichever client sent it."""
        self._write(self._fhdr[0:self._fhl], control, False, info, None)

    def _send(self, control, seg=False, p1=None, p2=None):
        """Send to the connected client."""
        self._write(self._chdr[0:self._chl], control, seg, p1, p2)

    # ---- link state ----

    def _reset_link(self):
        max_tx, max_rx, _ = self._cfg
        self.tx_max = max_tx  # negotiated values, valid in NRM
        self.rx_max = max_rx
        self.window_tx = 1
        self.window_rx = 1
        self._max_len = max_rx + _OVERHEAD
        self._vs = self._vr = self._va = 0  # V(S), V(R), oldest unacknowledged N(S)
        self._tx = None  # outgoing message (memoryview of the APDU), LLC in front
        self._tx_total = 0
        self._tx_off = 0
        self._txq.clear()
        self._ra_over = False
        self._ra[:] = b""
        self._poll = False
        self._rnr = False

    def attach(self, buffers):
        """Work in this pair of link buffers (the transport lends one to each
        connection; a pair comes back emptied by its last link's reset())."""
        self.buffers = buffers
        self._ra, self._txbuf = buffers

    def reset(self):
        """A fresh, disconnected link for the transport's next connection (links are
        reused so that no connection needs new RAM); statistics are kept."""
        self.state = NDM
        self.client = None
        self._reset_link()
        self._rxlen = 0
        self._skip = 0
        self._rx_seen = False
        self._activity = False
        self._olen = 0
        self._events.clear()
        self._evflags.clear()
        self._evhead = 0
        self._mute = False
        self._bcast = False
        self._echo = None
        self._echo_pos = 0

    def _drop_link(self):
        if self.state != NDM:
            self._event(EV_DISCONNECT, self.client, None, False)
        self.state = NDM
        self.client = None
        self._reset_link()

    def _event(self, kind, client, payload, noreply):
        self._events.append((kind, client, payload))
        self._evflags.append(noreply)

    def _negotiate(self, mv, i0, i1):
        """Negotiated (tx_max, rx_max, window_tx, window_rx) from an SNRM information
        field, or None when it is malformed. Green Book, "HDLC parameter negotiation":
        format 0x81, group 0x80, then id/length/value with 05 max info transmit, 06 max
        info receive, 07 window transmit, 08 window receive (the client's view); an
        absent parameter, or an absent field, means the default 128 / 1."""
        tx = rx = 128
        wtx = wrx = 1
        if i1 > i0:
            if i1 - i0 < 3 or mv[i0] != 0x81 or mv[i0 + 1] != 0x80 or i0 + 3 + mv[i0 + 2] != i1:
                return None
            k = i0 + 3
            while k < i1:
                if k + 2 > i1:
                    return None
                pid = mv[k]
                n = mv[k + 1]
                k += 2
                if not 1 <= n <= 4 or k + n > i1:
                    return None
                v = 0
                for b in mv[k:k + n]:
                    v = v << 8 | b
                k += n
                if pid == 5:
                    tx = v
                elif pid == 6:
                    rx = v
                elif pid == 7:
                    wtx = v
                elif pid == 8:
                    wrx = v
            if not (tx and rx and wtx and wrx):
                return None
        max_tx, max_rx, win = self._cfg
        return min(max_tx, rx), min(max_rx, tx), min(win, wrx), min(win, wtx)

    def _ack(self, nr):
        """Take N(R): every frame sent before it is acknowledged. False when N(R) is
        outside [oldest unacknowledged, V(S)] (ISO/IEC 13239: invalid N(R) -> FRMR)."""
        va = self._va
        d = (nr - va) & 7
        if d > ((self._vs - va) & 7):
            return False
        if d:
            self._va = nr
            if nr == self._vs and self._tx is not None and self._tx_off == self._tx_total:
                self._tx = None  # whole message delivered and acknowledged
                if self._txq:
                    self._start(self._txq.pop(0))
        return True

    def _rewind(self):
        # Go-back-N: the poll did not acknowledge everything, resend from N(R).
        if self._vs != self._va:
            self.stats["retransmit"] += 1
            self._tx_off = self._offs[self._va]
            self._vs = self._va

    def _start(self, apdu):
        self._tx = memoryview(apdu)
        self._tx_total = len(apdu) + 3
        self._tx_off = 0

    def _append(self, mv, i0, i1):
        if self._ra_over:
            return
        if len(self._ra) + i1 - i0 > self._max_apdu + 3:
            self._ra_over = True  # bounded: never buffer more than max_apdu
            return
        self._ra.extend(mv[i0:i1])  # a room: no allocation up to its capacity

    def _deliver(self, client, mv, a, b, noreply):
        # Every APDU from the client starts with the LLC header E6 E6 00.
        if b - a < 4 or mv[a] != 0xE6 or mv[a + 1] != 0xE6 or mv[a + 2] != 0:
            self.stats["bad_llc"] += 1
            return
        if b - a - 3 > self._max_apdu:
            self.stats["apdu_too_long"] += 1
            return
        self._event(EV_APDU, client, bytes(mv[a + 3:b]), noreply)

    def _answer_poll(self):
        """Answer the outstanding poll: queued I-frames up to the window, last one with
        F=1 (segmentation bit on all but the message's last frame), else RR."""
        if self.state != NRM:
            return
        if self._tx is None and self._txq:
            self._start(self._txq.pop(0))
        if self._tx is None or self._rnr or self._tx_off >= self._tx_total:
            self._send(_RR | _PF | self._vr << 5)
            return
        total = self._tx_total
        while True:
            off = self._tx_off
            end = min(off + self.tx_max, total)
            ns = self._vs
            last = end == total
            final = last or ((ns + 1 - self._va) & 7) >= self.window_tx
            self._offs[ns] = off
            # Virtual message = LLC E6 E7 00 + APDU: the LLC goes in the first frame only.
            p1 = _LLC_RESPONSE[off:end if end < 3 else 3] if off < 3 else None
            a = off - 3 if off > 3 else 0
            p2 = self._tx[a:end - 3] if end - 3 > a else None
            self._send(self._vr << 5 | ns << 1 | (_PF if final else 0), not last, p1, p2)
            self._vs = (ns + 1) & 7
            self._tx_off = end
            if final:
                return

    def _frmr(self, c, why):
        self.stats["frmr"] += 1
        self.state = FRMR_COND
        self._poll = False
        fi = self._frmr_info
        fi[0] = c  # rejected control field
        fi[1] = self._vr << 5 | self._vs << 1
        fi[2] = why
        if c & _PF:
            self._reply(_FRMR | _PF, fi)

    # ---- handlers: (self, control, client, buffer, info_start, info_end, segmented) ----

    def _h_ignore(self, c, client, mv, i0, i1, seg):
        pass

    def _h_dm(self, c, client, mv, i0, i1, seg):
        if c & _PF:
            self._reply(_DM | _PF)

    def _h_snrm(self, c, client, mv, i0, i1, seg):
        neg = self._negotiate(mv, i0, i1)
        if neg is None:
            self.stats["bad_snrm"] += 1
            if client == self.client:
                self._drop_link()
            self._h_dm(c, client, mv, i0, i1, seg)
            return
        # Green Book: SNRM in NRM re-initialises the link (sequence numbers to 0); the
        # association above it ends, hence EV_DISCONNECT before EV_CONNECT.
        self._drop_link()
        self.tx_max, self.rx_max, self.window_tx, self.window_rx = neg
        self._max_len = self.rx_max + _OVERHEAD
        self.state = NRM
        self.client = client
        self._chdr[0:self._fhl] = self._fhdr[0:self._fhl]
        self._chl = self._fhl
        self._activity = True
        self._event(EV_CONNECT, client, None, False)
        if c & _PF:
            struct.pack_into(">5BH2BH2BI2BI", self._ua, 0, 0x81, 0x80, 0x14, 5, 2, self.tx_max, 6, 2,
                             self.rx_max, 7, 4, self.window_tx, 8, 4, self.window_rx)
            self._reply(_UA | _PF, self._ua)

    def _h_disc(self, c, client, mv, i0, i1, seg):
        self._drop_link()
        if c & _PF:
            self._reply(_UA | _PF)

    def _h_i(self, c, client, mv, i0, i1, seg):
        if not self._ack(c >> 5):
            self._frmr(c, _FRMR_Z)
            return
        if (c >> 1) & 7 != self._vr:
            # Out of sequence (a repeat, or a frame after a lost one): discard it and
            # answer the poll with what the client is missing, or RR with our V(R).
            self.stats["out_of_sequence"] += 1
            if c & _PF:
                self._rewind()
                self._poll = True
            return
        self._vr = (self._vr + 1) & 7
        if seg:
            # Green Book: a non-final segment is acknowledged with RR; the client
            # then sends the next one.
            self._append(mv, i0, i1)
            if c & _PF:
                self._send(_RR | _PF | self._vr << 5)
            return
        if self._ra or self._ra_over:  # the final segment of a segmented APDU
            self._append(mv, i0, i1)
            if self._ra_over:
                self.stats["apdu_too_long"] += 1
            else:
                self._deliver(client, memoryview(self._ra), 0, len(self._ra), False)
            self._ra[:] = b""
            self._ra_over = False
        else:
            self._deliver(client, mv, i0, i1, False)
        if c & _PF:
            self._rewind()
            self._poll = True

    def _h_rr(self, c, client, mv, i0, i1, seg):
        if not self._ack(c >> 5):
            self._frmr(c, _FRMR_Z)
            return
        self._rnr = False
        if c & _PF:
            self._rewind()
            self._poll = True

    def _h_rnr(self, c, client, mv, i0, i1, seg):
        if not self._ack(c >> 5):
            self._frmr(c, _FRMR_Z)
            return
        self._rnr = True  # the client is busy: RR only until it sends RR
        if c & _PF:
            self._poll = True

    def _h_ui(self, c, client, mv, i0, i1, seg):
        # Connectionless (Green Book: UI frames carry unconfirmed services, in NDM too):
        # handed up as "no reply". Before SNRM a UI frame is never answered, not even
        # with DM; from the connected client a poll is answered like any other.
        self._deliver(client, mv, i0, i1, True)
        if c & _PF and self.state == NRM and client == self.client:
            self._poll = True

    def _h_bad(self, c, client, mv, i0, i1, seg):
        self._frmr(c, _FRMR_W)

    def _h_frmr_again(self, c, client, mv, i0, i1, seg):
        # ISO/IEC 13239: in the frame-reject condition the FRMR is repeated to every
        # poll until SNRM or DISC.
        if c & _PF:
            self._reply(_FRMR | _PF, self._frmr_info)


# State table: _TABLE[state][frame kind] -> handler. Kinds in order
# I, RR, RNR, SNRM, DISC, UI, RESP, BAD. Frames from a client other than the
# connected one are looked up in the NDM row.
_L = HDLCLink
_TABLE = (
    # NDM: only SNRM connects; every other polled command gets DM.
    (_L._h_dm, _L._h_dm, _L._h_dm, _L._h_snrm, _L._h_dm, _L._h_ui, _L._h_ignore, _L._h_dm),
    # NRM
    (_L._h_i, _L._h_rr, _L._h_rnr, _L._h_snrm, _L._h_disc, _L._h_ui, _L._h_ignore, _L._h_bad),
    # FRMR condition
    (_L._h_frmr_again, _L._h_frmr_again, _L._h_frmr_again, _L._h_snrm, _L._h_disc,
     _L._h_frmr_again, _L._h_ignore, _L._h_frmr_again),
)
del _L

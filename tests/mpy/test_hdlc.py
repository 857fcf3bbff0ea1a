# Tests of dlms/hdlc.py, the HDLC server link (IEC 62056-46, frame format type 3).
# Published frames come from shared/vectors/hdlc_frames.json: every frame is decoded
# (whole, one byte at a time, with garbage around it) and re-encoded; the meter's own
# answers are compared byte for byte with the captures wherever the same negotiation
# makes a standard meter send the same frame. Client frames that no capture holds are
# built with encode_frame, itself checked byte-exact against all 38 captures.
from dlms.hdlc import (HDLCLink, link_stats, parse_frame, encode_frame, encode_frame_into, frame_kind,
                       encode_server_address, decode_server_address, encode_client_address,
                       NDM, NRM, FRMR_COND)
from dlms.events import NEED_DATA, EV_CONNECT, EV_APDU, EV_DISCONNECT, link_buffers
from dlms.wrapper import WrapperLink, encode_header
from dlms.errors import DecodeError
from dlms.crc import crc16
from testutil import load_vectors, unhex, raises, feed_bytewise

_V = load_vectors("hdlc_frames")
_F = {f["id"]: f for f in _V["frames"]}
LLC_REQ = b"\xe6\xe6\x00"
LLC_RSP = b"\xe6\xe7\x00"
S1 = b"\x03"  # server upper 1, one-byte form
S1_17 = b"\x02\x23"  # 1/17, two bytes
S1_17_4 = b"\x00\x02\x00\x23"  # 1/17, four bytes
C16 = b"\x21"
C1 = b"\x03"
GARBAGE = b"\x00\x7e\xa0\x50\x21\x7e\x7e\x06\x2f\x3f\x21\x0d\x0a\xff\x7e"


def fx(name):
    return unhex(_F[name]["frame_hex"])


def apdu(name):
    return unhex(_F[name]["apdu_hex"])


def cframe(control, info=None, dst=S1, src=C16, seg=False):
    """A client's command frame (P bit is part of control)."""
    return encode_frame(control, dst, src, info, seg)


def i_ctl(ns, nr, p=True):
    return nr << 5 | (0x10 if p else 0) | ns << 1


def rr_ctl(nr):
    return nr << 5 | 0x11


def snrm_info(tx=None, rx=None, wtx=None, wrx=None, size=2):
    """Green Book SNRM information field; values as the client sees them."""
    body = b""
    for pid, v, n in ((5, tx, size), (6, rx, size), (7, wtx, 4), (8, wrx, 4)):
        if v is not None:
            body += bytes((pid, n)) + v.to_bytes(n, "big")
    return b"\x81\x80" + bytes((len(body),)) + body


class Client:
    """Drives a link the way server.pump and the TCP adapter do: bytes in, events
    drained (APDUs answered through reply(apdu) -> bytes or None), bytes out."""

    def __init__(self, link, reply=None):
        self.link = link
        self.reply = reply
        self.events = []

    def send(self, data, mode="whole"):
        if mode == "whole":
            self.link.receive_data(data)
        elif mode == "bytewise":
            feed_bytewise(self.link.receive_data, data)
        else:  # garbage / echo before and after
            self.link.receive_data(GARBAGE + data + GARBAGE[:5])
        return self.drain()

    def drain(self):
        while True:
            ev = self.link.next_event()
            if ev is NEED_DATA:
                break
            self.events.append(ev)
            if ev[0] == EV_APDU and self.reply is not None:
                r = self.reply(ev[2])
                if r is not None:
                    self.link.send_apdu(ev[1], r)
        return self.link.data_to_send()

    def take(self):
        ev, self.events = self.events, []
        return ev


def frames(out):
    """Split a run of output frames (each with both flags) into parsed tuples."""
    res = []
    k = 0
    while k < len(out):
        assert out[k] == 0x7E
        n = ((out[k + 1] & 7) << 8 | out[k + 2]) + 2
        f = out[k:k + n]
        assert f[-1] == 0x7E
        i, dl, j, sl, c, i0, i1, seg = parse_frame(f, 1, n - 1)
        res.append((c, bytes(f[i0:i1]), bool(seg), bytes(f[i:i + dl]), bytes(f[j:j + sl])))
        k += n
    return res


def connect(link=None, dst=S1, src=C16, info=None, reply=None, **kw):
    link = link or HDLCLink(**kw)
    cl = Client(link, reply)
    out = cl.send(cframe(0x93, info, dst, src))
    assert frames(out)[0][0] == 0x73, out
    assert cl.take() == [(EV_CONNECT, src[0] >> 1, None)]
    return link, cl


# ---- codec ----

def test_parse_every_published_frame():
    for f in _V["frames"]:
        fr = unhex(f["frame_hex"])
        i, dl, j, sl, c, i0, i1, seg = parse_frame(fr, 1, len(fr) - 1)
        assert fr[i:i + dl] == unhex(f["destination_address_hex"]), f["id"]
        assert fr[j:j + sl] == unhex(f["source_address_hex"]), f["id"]
        assert c == int(f["control"], 16), f["id"]
        assert bool(seg) == f["segmentation"], f["id"]
        assert fr[i0:i1] == unhex(f["information_hex"]), f["id"]
        assert len(fr) - 2 == f["length_field"], f["id"]
        srv = f["destination_address"] if f["direction"] == "client->server" else f["source_address"]
        si, sn = (i, dl) if f["direction"] == "client->server" else (j, sl)
        upper, lower = decode_server_address(fr, si, sn)
        assert upper == srv["upper"] and lower == srv.get("lower"), f["id"]
        if f["llc"]:
            assert fr[i0:i0 + 3] == unhex(f["llc"]) and fr[i0 + 3:i1] == apdu(f["id"]), f["id"]


def test_encode_every_published_frame_byte_exact():
    for f in _V["frames"]:
        info = unhex(f["information_hex"]) or None
        got = encode_frame(int(f["control"], 16), unhex(f["destination_address_hex"]),
                           unhex(f["source_address_hex"]), info, f["segmentation"])
        assert got == unhex(f["frame_hex"]), f["id"]


def test_encode_into_offset_and_split_information_field():
    f = _F["AMS-GET-response-double-long-unsigned"]
    out = bytearray(100)
    end = encode_frame_into(out, 7, 0x52, False, b"\x21\x03", LLC_RSP, apdu(f["id"]))
    assert out[7:end] == fx(f["id"]) and out[:7] == bytes(7)
    # Lengths of 128 and more: the 11-bit length field spans both format bytes.
    big = encode_frame(0x10, S1, C16, bytes(300), True)
    assert big[1] == 0xA8 | (len(big) - 2) >> 8 and big[2] == (len(big) - 2) & 0xFF
    assert parse_frame(big, 1, len(big) - 1)[5:] == (8, 308, 8)


def test_encode_frame_into_makes_no_copies():
    # The hot path: no buffer is made per frame, whatever its size (the few slice
    # objects of the in-place copies are all that is allocated); CRC in place.
    import gc
    out = memoryview(bytearray(1100))
    used = []
    for n in (10, 1000):
        info = bytes(n)
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        encode_frame_into(out, 0, 0x10, False, b"\x21\x03", LLC_RSP, info)
        used.append(gc.mem_alloc() - a)
        gc.enable()
    assert used[0] == used[1] and used[0] <= 128, used


def test_address_encoding_examples():
    for ex in _V["address_encoding_examples"]:
        b = unhex(ex["bytes"])
        m = ex["meaning"]
        if m.startswith("server"):
            upper, lower = decode_server_address(b, 0, len(b))
            assert encode_server_address(upper, lower, len(b)) == b, m
        else:
            assert encode_client_address(b[0] >> 1) == b, m
    assert decode_server_address(unhex("002254D3"), 0, 4) == (17, 5481)
    assert decode_server_address(unhex("0002FEFF"), 0, 4) == (1, 0x3FFF)
    assert encode_server_address(1) == S1 and encode_server_address(1, 17) == S1_17
    assert encode_server_address(1, 256) == unhex("00020401")
    raises(ValueError, encode_server_address, 0x80)
    raises(ValueError, encode_server_address, 1, 0x4000, 4)
    raises(ValueError, encode_client_address, 0x80)
    raises(DecodeError, decode_server_address, b"\x00\x00\x03", 0, 3)


def test_parse_rejects_malformed():
    good = fx("GEN-GET-1.0.1.8.0.255-attr2")
    e = len(good) - 1
    raises(DecodeError, parse_frame, good, 1, e - 1)  # length field disagrees
    raises(DecodeError, parse_frame, good[:6], 1, 5)  # too short
    bad = bytearray(good)
    bad[1] = 0xB0  # not format type 3
    raises(DecodeError, parse_frame, bad, 1, e)
    three = encode_frame(0x93, b"\x00\x02\x23", C16)  # 3-byte address does not exist
    assert str(raises(DecodeError, parse_frame, three, 1, len(three) - 1)) == "bad_address"
    long_addr = encode_frame(0x93, b"\x00\x00\x00\x00\x03", C16)
    raises(DecodeError, parse_frame, long_addr, 1, len(long_addr) - 1)
    no_end = bytearray(encode_frame(0x93, S1, C16))
    no_end[4] &= 0xFE  # the source address never ends
    raises(DecodeError, parse_frame, no_end, 1, len(no_end) - 1)


def test_negative_vectors_rejected_by_parse_frame():
    expect = {"JD-SNRM-E650-length-mismatch": "dropped", "AMS-comment-bad-FCS": "bad_fcs",
              "PUB-copypaste-bad-HCS-FCS": "bad_hcs"}
    for f in _V["negative_examples"]:
        fr = unhex(f["frame_hex"])
        err = raises(DecodeError, parse_frame, fr, 1, len(fr) - 1)
        assert err.args[0] == expect[f["id"]], f["id"]


def test_frame_kinds():
    assert [frame_kind(c) for c in (0x10, 0x00, 0xFE)] == [0, 0, 0]  # I
    assert frame_kind(0x93) == frame_kind(0x83) != frame_kind(0x53)
    assert frame_kind(0x19) == frame_kind(0x0D) == frame_kind(0xFF)  # REJ, SREJ, undefined


# ---- the receiver: framing by length, any split, garbage ----

class _Cutter(HDLCLink):
    """Records every frame the scanner cuts out (addresses not looked at)."""

    def __init__(self):
        HDLCLink.__init__(self, max_info_rx=512)
        self.got = []

    def _on_frame(self, mv, s, e):
        self.got.append(bytes(mv[s - 1:e + 1]))


def test_scanner_cuts_every_published_frame_whole_bytewise_and_with_garbage():
    allf = [unhex(f["frame_hex"]) for f in _V["frames"]]
    for fr in allf:
        for feed in ("whole", "bytewise", "garbage"):
            c = _Cutter()
            if feed == "whole":
                c.receive_data(fr)
            elif feed == "bytewise":
                feed_bytewise(c.receive_data, fr)
            else:
                c.receive_data(GARBAGE + fr + GARBAGE)
            assert c.got == [fr], (feed, fr)
    # Back to back, the closing flag of one frame opening the next; split anywhere.
    stream = b"".join(f[:-1] for f in allf) + b"\x7e"
    for step in (1, 2, 3, 7, 64, 1000, len(stream)):
        c = _Cutter()
        for k in range(0, len(stream), step):
            c.receive_data(stream[k:k + step])
        assert c.got == allf, step


def test_scanner_0x7e_inside_a_frame_is_data():
    info = LLC_REQ + b"\x7e\x7e\xa0\x07\x7e" + bytes(20)
    fr = cframe(0x10, info)
    c = _Cutter()
    feed_bytewise(c.receive_data, b"\x7e\x7e" + fr)
    assert c.got == [fr]


def test_garbage_candidate_does_not_hold_back_the_real_frame():
    # A 0x7E in noise followed by something that looks like a long frame header:
    # its HCS fails as soon as the header is in, and the SNRM behind it is answered.
    link = HDLCLink()
    cl = Client(link)
    out = cl.send(b"\x7e\xa0\x50\x03\x21\x10\x00\x00" + cframe(0x93))
    assert frames(out)[0][0] == 0x73
    assert link.stats["bad_hcs"] == 1


def test_negative_vectors_dropped_and_counted_by_the_link():
    expect = {"JD-SNRM-E650-length-mismatch": "dropped", "AMS-comment-bad-FCS": "bad_fcs",
              "PUB-copypaste-bad-HCS-FCS": "bad_hcs"}
    noise = HDLCLink()
    noise.receive_data(GARBAGE + GARBAGE[:5])  # what the garbage alone counts
    for f in _V["negative_examples"]:
        fr = unhex(f["frame_hex"])
        for mode in ("whole", "bytewise", "garbage"):
            link = HDLCLink(server_physical=16)
            cl = Client(link)
            out = cl.send(fr + b"\x7e", mode)
            assert out == b"" and cl.take() == [] and link.state == NDM, f["id"]
            c = expect[f["id"]]
            base = noise.stats[c] if mode == "garbage" else 0
            assert link.stats[c] == base + 1, (f["id"], mode, link.stats)
            assert link.stats["frames"] == 0


def test_bad_hcs_or_fcs_dropped_and_link_unchanged():
    link, cl = connect()
    get = cframe(i_ctl(0, 0), LLC_REQ + b"\xc0\x01\xc1")
    # 7E A0 0F | 03 21 10 | HCS 6-7 | E6 E6 00 C0 01 C1 | FCS 14-15 | 7E
    for pos, counter in ((4, "bad_hcs"), (6, "bad_hcs"), (12, "bad_fcs"), (15, "bad_fcs")):
        bad = bytearray(get)
        bad[pos] ^= 0x40
        assert cl.send(bytes(bad)) == b"" and cl.take() == []
        assert link.stats[counter] >= 1
    cl.reply = lambda a: b"\xc4"
    out = cl.send(get)  # the good copy still has N(S) = 0: nothing was taken before
    assert cl.take() == [(EV_APDU, 16, b"\xc0\x01\xc1")]
    assert frames(out) == [(i_ctl(0, 1), LLC_RSP + b"\xc4", False, C16, S1)]


def test_links_of_one_port_count_in_its_counters():
    # A port's links (the transport builds more than one) count in the port's counters.
    port = link_stats()
    bad = bytearray(cframe(i_ctl(0, 0), LLC_REQ + b"\xc0\x01\xc1"))
    bad[12] ^= 0x40
    for _ in range(2):
        link, cl = connect(stats=port)
        cl.send(bytes(bad))
        assert link.stats is port
    assert port["bad_fcs"] == 2 and HDLCLink().stats["bad_fcs"] == 0


def test_partial_frame_dropped_after_inter_octet_timeout():
    link = HDLCLink(inter_octet_ms=25)
    cl = Client(link)
    snrm = cframe(0x93)
    link.receive_data(snrm[:6])
    link.tick(1000)
    link.tick(1030)  # the rest never came
    assert link.stats["partial_dropped"] == 1
    assert frames(cl.send(snrm))[0][0] == 0x73


# ---- connection: SNRM / UA and negotiation ----

def test_snrm_without_parameters_ua_published():
    link = HDLCLink(server_physical=17)
    for mode in ("whole", "bytewise", "garbage"):
        cl = Client(link)
        assert cl.send(fx("KM-1-SNRM-no-params"), mode) == fx("KM-1-UA-params"), mode
        ev = cl.take()
        assert ev[-1] == (EV_CONNECT, 16, None), mode
    assert (link.tx_max, link.rx_max, link.window_tx, link.window_rx) == (128, 128, 1, 1)


def test_snrm_with_parameters_ua_published():
    # Client 1, 1-byte values, window RX 7 -> UA 128/128, windows 1 (our window 1).
    link = HDLCLink(server_physical=17)
    assert Client(link).send(fx("CL-SNRM-params-client1")) == fx("DC-UA-4byte-client1")
    # Client proposes 2030: a meter with 512 answers 512 (Natris capture).
    link = HDLCLink(server_physical=17, max_info_tx=512, max_info_rx=512)
    assert Client(link).send(fx("GX-SNRM-params-2byte")) == fx("GX-UA-params-2byte")
    assert (link.tx_max, link.rx_max) == (512, 512)
    # One-byte server address, 512 proposed and accepted (Kamstrup capture).
    link = HDLCLink(max_info_tx=512, max_info_rx=512)
    out = Client(link).send(cframe(0x93, snrm_info(512, 512, 1, 1)))
    assert out == fx("AMS-UA-params")
    # Bare SNRM to a meter with a smaller limit and another physical address: the
    # Kamstrup UA (client 17, server 1/0, 116 bytes).
    link = HDLCLink(server_physical=0, clients=(17,), max_info_tx=116, max_info_rx=116)
    assert Client(link).send(cframe(0x93, None, b"\x02\x01", b"\x23")) == fx("JD-UA-Kamstrup")


def test_negotiation_takes_the_minimum_each_way():
    link, cl = connect(info=snrm_info(tx=100, rx=300, wtx=2, wrx=5, size=2), max_info_tx=256,
                       max_info_rx=256, window=3)
    # Client transmits 100 -> we receive 100; client receives 300 -> we send min(256, 300).
    assert (link.tx_max, link.rx_max, link.window_tx, link.window_rx) == (256, 100, 3, 2)
    # 1-byte and 4-byte values, only some parameters present: the others default.
    link, cl = connect(info=b"\x81\x80\x06\x05\x01\x40\x06\x01\x50", max_info_tx=256, max_info_rx=256)
    assert (link.tx_max, link.rx_max, link.window_tx, link.window_rx) == (80, 64, 1, 1)
    link, cl = connect(info=b"\x81\x80\x00")  # empty group: defaults
    assert (link.tx_max, link.rx_max) == (128, 128)
    # A bare SNRM means 128 / window 1, even when the meter could do more.
    link, cl = connect(max_info_tx=512, max_info_rx=512, window=7)
    assert (link.tx_max, link.rx_max, link.window_tx, link.window_rx) == (128, 128, 1, 1)


def test_ua_information_field_format():
    link = HDLCLink(max_info_tx=512, max_info_rx=256, window=7)
    out = Client(link).send(cframe(0x93, snrm_info(1000, 1000, 7, 7)))
    (c, info, seg, dst, src), = frames(out)
    # Green Book: 81 80 len, 05/06 max info (2 bytes), 07/08 window (4 bytes), server's view.
    assert info == unhex("818014" "05020200" "06020100" "070400000007" "080400000007")
    assert (dst, src) == (C16, S1)


def test_malformed_snrm_refused_with_dm():
    for info in (b"\x81\x80\x05\x05\x02\x00", b"\x82\x80\x00", b"\x81\x80\x04\x05\x01\x00\x00",
                 b"\x81\x80\x03\x05\x01\x00", b"\x81"):
        link = HDLCLink()
        cl = Client(link)
        out = cl.send(cframe(0x93, info))
        assert frames(out) == [(0x1F, b"", False, C16, S1)], info
        assert cl.take() == [] and link.state == NDM and link.stats["bad_snrm"] == 1


def test_new_snrm_while_connected_resets_the_link():
    link, cl = connect(reply=lambda a: b"\x61\x00")
    cl.send(cframe(i_ctl(0, 0), LLC_REQ + b"\x60\x00"))
    cl.send(cframe(i_ctl(1, 1), LLC_REQ + b"\x60\x01"))
    cl.take()
    out = cl.send(cframe(0x93))
    assert frames(out)[0][0] == 0x73
    assert cl.take() == [(EV_DISCONNECT, 16, None), (EV_CONNECT, 16, None)]
    out = cl.send(cframe(i_ctl(0, 0), LLC_REQ + b"\x60\x02"))  # numbering restarts at 0
    assert cl.take() == [(EV_APDU, 16, b"\x60\x02")]
    assert frames(out) == [(i_ctl(0, 1), LLC_RSP + b"\x61\x00", False, C16, S1)]
    # Another client's SNRM takes the link over: the first association ends.
    out = cl.send(cframe(0x93, None, S1, C1))
    assert cl.take() == [(EV_DISCONNECT, 16, None), (EV_CONNECT, 1, None)]
    assert frames(out) == [(0x73, frames(out)[0][1], False, C1, S1)]


# ---- I-frames, LLC, published exchanges ----

def test_aarq_aare_published_two_byte_address():
    f = _F["DC-AARE-I-frame-2byte"]
    for mode in ("whole", "bytewise", "garbage"):
        link = HDLCLink(server_physical=17)
        cl = Client(link, reply=lambda a: apdu(f["id"]))
        cl.send(fx("DC-SNRM-2byte"), mode)
        assert cl.take() == [(EV_CONNECT, 16, None)]
        out = cl.send(fx("DC-AARQ-I-frame-2byte"), mode)
        assert cl.take() == [(EV_APDU, 16, apdu("DC-AARQ-I-frame-2byte"))], mode
        assert out == fx(f["id"]), mode


def test_aarq_aare_published_one_byte_address():
    link, cl = connect(reply=lambda a: apdu("JD-AARE-I-frame-SN"))
    out = cl.send(cframe(0x10, LLC_REQ + apdu("KM-2-AARQ-I-frame")))
    assert cl.take() == [(EV_APDU, 16, apdu("KM-2-AARQ-I-frame"))]
    assert out == fx("JD-AARE-I-frame-SN")


def test_aarq_four_byte_address_published():
    link = HDLCLink(server_physical=17)
    cl = Client(link, reply=lambda a: b"\x61\x00")
    cl.send(fx("KM-1-SNRM-no-params"))
    out = cl.send(fx("KM-2-AARQ-I-frame"))
    assert cl.take()[-1] == (EV_APDU, 16, apdu("KM-2-AARQ-I-frame"))
    assert frames(out) == [(0x30, LLC_RSP + b"\x61\x00", False, C16, S1_17_4)]


def test_get_request_response_published():
    # AMS capture: GET with N(S)=1 N(R)=1, answer N(S)=1 N(R)=2 (1-byte address).
    resp = apdu("AMS-GET-response-double-long-unsigned")
    link, cl = connect(reply=lambda a: b"\x61\x00" if a[0] == 0x60 else resp)
    cl.send(cframe(0x10, LLC_REQ + apdu("KM-2-AARQ-I-frame")))
    cl.take()
    out = cl.send(fx("AMS-GET-request-class1"))
    assert cl.take() == [(EV_APDU, 16, apdu("AMS-GET-request-class1"))]
    assert out == fx("AMS-GET-response-double-long-unsigned")


def test_get_requests_with_every_address_form_answered_in_kind():
    cases = (("PUB-GET-1.0.1.8.0.255-2byte-PLC", 16, b"\x02\x21", C16),
             ("GEN-GET-1.0.1.8.0.255-attr2", 16, S1, C16),
             ("PUB-GET-1.0.1.8.0.255-4byte-broadcast-lower", 16, unhex("0002FEFF"), C1))
    for name, phys, dst, src in cases:
        link, cl = connect(dst=dst, src=src, server_physical=phys, reply=lambda a: b"\xc4\x01")
        cl.send(cframe(0x10, LLC_REQ + b"\x60\x00", dst, src))
        cl.take()
        out = cl.send(fx(name))
        assert cl.take() == [(EV_APDU, src[0] >> 1, apdu(name))], name
        # Replies carry the server address as the client wrote it (all-station too).
        assert frames(out) == [(i_ctl(1, 2), LLC_RSP + b"\xc4\x01", False, src, dst)], name


def test_request_without_llc_header_dropped():
    link, cl = connect(reply=lambda a: b"\xc4")
    out = cl.send(cframe(i_ctl(0, 0), b"\xc0\x01\xc1\x00"))
    assert cl.take() == [] and link.stats["bad_llc"] == 1
    assert frames(out) == [(rr_ctl(1), b"", False, C16, S1)]  # the frame was in sequence


def test_segmented_response_published_stream_window_3():
    # cosemlib capture: three frames N(S) 1, 2, 3 with N(R) 2, P/F only on the last:
    # a window of 3 negotiated (client RX window 7), max info 128.
    parts = [unhex(_F["CL-stream-%d" % k]["information_hex"]) for k in (1, 2, 3)]
    whole = (parts[0] + parts[1] + parts[2])[3:]
    link = HDLCLink(server_physical=17, window=3)
    cl = Client(link, reply=lambda a: b"\x61\x00" if a[0] == 0x60 else whole)
    out = cl.send(fx("CL-SNRM-params-client1"))
    assert frames(out)[0][1].endswith(unhex("070400000003080400000001"))
    out = cl.send(cframe(i_ctl(0, 0), LLC_REQ + b"\x60\x00", S1_17_4, C1))
    assert frames(out) == [(0x30, LLC_RSP + b"\x61\x00", False, C1, S1_17_4)]
    out = cl.send(cframe(i_ctl(1, 1), LLC_REQ + b"\xc0\x01\xc1", S1_17_4, C1))
    assert out == fx("CL-stream-1") + fx("CL-stream-2") + fx("CL-stream-3")


def _collect_segments(cl, first_out, llc=True):
    """Poll with RR until the last segment; returns (apdu, frames seen)."""
    got = []
    out = first_out
    while True:
        (c, info, seg, dst, src), = frames(out)
        assert (c & 1) == 0 and (c & 0x10), hex(c)  # I-frame, final (window 1)
        assert len(info) <= 128
        got.append((c, info, seg))
        if not seg:
            break
        out = cl.send(cframe(rr_ctl((c >> 1 & 7) + 1 & 7)))
    data = b"".join(g[1] for g in got)
    if not llc:
        return data, got
    assert data[:3] == LLC_RSP  # the LLC header in the first segment only
    return data[3:], got


def test_600_byte_response_segmented_and_polled_with_rr():
    big = bytes((i * 7) & 0xFF for i in range(600))
    link, cl = connect(reply=lambda a: big)
    out = cl.send(cframe(i_ctl(0, 0), LLC_REQ + b"\xc0\x01\xc1"))
    data, got = _collect_segments(cl, out)
    assert data == big
    assert [len(g[1]) for g in got] == [128, 128, 128, 128, 91]
    assert [g[2] for g in got] == [True, True, True, True, False]
    assert [g[0] >> 1 & 7 for g in got] == [0, 1, 2, 3, 4]
    assert all(g[0] >> 5 == 1 for g in got)
    # A lost segment: the client polls again with the old N(R) -> sent again.
    out = cl.send(cframe(i_ctl(1, 5), LLC_REQ + b"\xc0\x01\xc2"))
    (c, info, seg, _, _), = frames(out)
    assert (c >> 1 & 7, seg, info) == (5, True, LLC_RSP + big[:125])
    again = cl.send(cframe(rr_ctl(5)))
    assert again == out and link.stats["retransmit"] == 1
    data, got = _collect_segments(cl, cl.send(cframe(rr_ctl(6))), False)
    assert data == big[125:] and [g[0] >> 1 & 7 for g in got] == [6, 7, 0, 1]


def test_segmented_request_reassembled():
    payload = bytes(range(256)) + bytes(44)  # 300-byte APDU in 128-byte segments
    msg = LLC_REQ + payload
    link, cl = connect(reply=lambda a: b"\xc5\x01")
    ns = 0
    for k in range(0, len(msg), 128):
        seg = k + 128 < len(msg)
        out = cl.send(cframe(i_ctl(ns, 0), msg[k:k + 128], seg=seg))
        ns += 1
        if seg:
            assert frames(out) == [(rr_ctl(ns), b"", False, C16, S1)]
            assert cl.take() == []
    assert cl.take() == [(EV_APDU, 16, payload)]
    assert frames(out) == [(i_ctl(0, 3), LLC_RSP + b"\xc5\x01", False, C16, S1)]
    # A repeated segment is not appended twice.
    link, cl = connect()
    s0 = cframe(i_ctl(0, 0), msg[:128], seg=True)
    cl.send(s0)
    assert frames(cl.send(s0)) == [(rr_ctl(1), b"", False, C16, S1)]
    assert link.stats["out_of_sequence"] == 1
    cl.send(cframe(i_ctl(1, 0), msg[128:256], seg=True))
    cl.send(cframe(i_ctl(2, 0), msg[256:]))
    assert cl.take() == [(EV_APDU, 16, payload)]
    # An APDU longer than max_apdu is dropped whole, counted, and the link goes on.
    link, cl = connect(max_apdu=200)
    for k, m in enumerate((msg[:128], msg[128:256], msg[256:])):
        cl.send(cframe(i_ctl(k, 0), m, seg=k < 2))
    assert cl.take() == [] and link.stats["apdu_too_long"] == 1 and link.state == NRM


def test_segmented_request_reassembled_in_a_lent_buffer_pair():
    # The transport lends one pair to each connection's link, whatever its port: a
    # wrapper link may have left bytes in it; the HDLC link starts from empty rooms.
    pair = link_buffers(8 + 400)
    wrapper = WrapperLink(1, 400, pair)
    wrapper.receive_data(encode_header(16, 1, 3) + b"\xc0\x01\x02" + b"\x00\x01")
    wrapper.send_apdu(16, b"\xc4\x01\x01")
    payload = bytes(range(256)) + bytes(44)
    msg = LLC_REQ + payload
    link, cl = connect(max_apdu=400, buffers=pair)
    for k, m in enumerate((msg[:128], msg[128:256], msg[256:])):
        cl.send(cframe(i_ctl(k, 0), m, seg=k < 2))
    assert cl.take() == [(EV_APDU, 16, payload)]
    assert link.buffers is pair and len(pair[0]) == 0  # emptied once delivered


def test_out_of_sequence_i_frame_not_delivered_rr_with_current_nr():
    link, cl = connect(reply=lambda a: b"\xc4\x00")
    cl.send(cframe(i_ctl(0, 0), LLC_REQ + b"\xc0\x00"))
    cl.take()
    out = cl.send(cframe(i_ctl(3, 1), LLC_REQ + b"\xc0\x03"))  # N(S) 3, expected 1
    assert cl.take() == [] and link.stats["out_of_sequence"] == 1
    assert frames(out) == [(rr_ctl(1), b"", False, C16, S1)]
    out = cl.send(cframe(i_ctl(1, 1), LLC_REQ + b"\xc0\x01"))
    assert cl.take() == [(EV_APDU, 16, b"\xc0\x01")]
    assert frames(out) == [(i_ctl(1, 2), LLC_RSP + b"\xc4\x00", False, C16, S1)]
    # A repeat (the client lost our answer): not delivered again; the unacknowledged
    # answer is sent again (ISO/IEC 13239 checkpoint retransmission).
    again = cl.send(cframe(i_ctl(1, 1), LLC_REQ + b"\xc0\x01"))
    assert cl.take() == [] and again == out and link.stats["out_of_sequence"] == 2


def test_rr_poll_with_nothing_to_send_and_rnr():
    link, cl = connect()
    assert frames(cl.send(cframe(rr_ctl(0)))) == [(rr_ctl(0), b"", False, C16, S1)]
    cl.reply = lambda a: b"\xc4"
    assert frames(cl.send(cframe(0x15 | 0 << 5))) == [(rr_ctl(0), b"", False, C16, S1)]  # RNR
    out = cl.send(cframe(i_ctl(0, 0), LLC_REQ + b"\xc0"))
    assert frames(out) == [(rr_ctl(1), b"", False, C16, S1)]  # client busy: RR only
    out = cl.send(cframe(rr_ctl(0)))
    assert frames(out) == [(i_ctl(0, 1), LLC_RSP + b"\xc4", False, C16, S1)]


def test_unpolled_frames_not_answered():
    link, cl = connect(reply=lambda a: b"\xc4")
    out = cl.send(cframe(i_ctl(0, 0, p=False), LLC_REQ + b"\xc0"))
    assert out == b"" and cl.take() == [(EV_APDU, 16, b"\xc0")]
    out = cl.send(cframe(rr_ctl(0)))
    assert frames(out) == [(i_ctl(0, 1), LLC_RSP + b"\xc4", False, C16, S1)]


# ---- DISC, DM, FRMR ----

def test_disc_ua_published_and_disconnect_event():
    link, cl = connect()
    for mode in ("whole", "bytewise", "garbage"):
        if link.state == NDM:
            connect(link)
        out = cl.send(fx("AMS-DISC"), mode)
        assert out == fx("DC-UA-after-DISC"), mode
        assert cl.take() == [(EV_DISCONNECT, 16, None)] and link.state == NDM
    # Two-byte address form, physical 16.
    link, cl = connect(dst=b"\x02\x21")
    assert frames(cl.send(fx("PUB-DISC-2byte-PLC"))) == [(0x73, b"", False, C16, b"\x02\x21")]
    assert cl.take() == [(EV_DISCONNECT, 16, None)]


def test_dm_when_disconnected():
    link = HDLCLink()
    cl = Client(link, reply=lambda a: b"\xc4")
    assert cl.send(fx("AMS-DISC")) == fx("CONSTRUCTED-DM-1byte")
    link = HDLCLink(server_physical=17)
    cl = Client(link, reply=lambda a: b"\xc4")
    assert cl.send(cframe(0x53, None, S1_17)) == fx("CONSTRUCTED-DM-2byte")
    # I-frame and RR before SNRM: DM, never delivered, never answered with data.
    assert cl.send(fx("DC-AARQ-I-frame-2byte")) == fx("CONSTRUCTED-DM-2byte")
    assert cl.send(cframe(rr_ctl(0), None, S1_17)) == fx("CONSTRUCTED-DM-2byte")
    assert cl.take() == [] and link.state == NDM
    # After DISC too.
    link, cl = connect(reply=lambda a: b"\xc4")
    cl.send(fx("AMS-DISC"))
    cl.take()
    assert cl.send(fx("GEN-GET-1.0.1.8.0.255-attr2")) == fx("CONSTRUCTED-DM-1byte")
    assert cl.take() == []


def test_ui_before_snrm_never_answered():
    link = HDLCLink()
    cl = Client(link, reply=lambda a: b"\xc4\x01")
    out = cl.send(cframe(0x13, LLC_REQ + b"\xc0\x01\xc1", S1, b"\xcd"))  # client 102, P=1
    assert out == b""
    assert cl.take() == [(EV_APDU, 102, b"\xc0\x01\xc1")]  # unconfirmed service: taken
    assert link.stats["reply_suppressed"] == 1 and link.state == NDM


def test_invalid_control_field_frmr():
    link, cl = connect(reply=lambda a: b"\xc4")
    cl.send(cframe(i_ctl(0, 0), LLC_REQ + b"\xc0"))
    cl.take()
    out = cl.send(cframe(0x19 | 1 << 5))  # REJ: not in the DLMS repertoire
    # FRMR info: rejected control, V(R) << 5 | V(S) << 1, W.
    assert frames(out) == [(0x97, bytes((0x39, 1 << 5 | 1 << 1, 0x01)), False, C16, S1)]
    assert link.state == FRMR_COND and link.stats["frmr"] == 1
    assert frames(cl.send(cframe(rr_ctl(1))))[0][0] == 0x97  # repeated to every poll
    assert cl.take() == []
    assert frames(cl.send(cframe(0x53))) == [(0x73, b"", False, C16, S1)]  # DISC recovers
    assert cl.take() == [(EV_DISCONNECT, 16, None)]


def test_invalid_nr_and_information_not_permitted_frmr():
    link, cl = connect()
    out = cl.send(cframe(rr_ctl(3)))  # acknowledges frames never sent
    assert frames(out) == [(0x97, bytes((rr_ctl(3), 0, 0x08)), False, C16, S1)]
    link, cl = connect()
    out = cl.send(cframe(rr_ctl(0), b"\x01\x02"))  # RR with an information field
    assert frames(out) == [(0x97, bytes((rr_ctl(0), 0, 0x03)), False, C16, S1)]
    out = cl.send(cframe(0x93))  # SNRM recovers
    assert frames(out)[0][0] == 0x73 and link.state == NRM


def test_information_field_too_long_frmr():
    for n in (130, 200, 600):  # in the buffer / header only / longer than the buffer
        for mode in ("whole", "bytewise"):
            link, cl = connect(reply=lambda a: b"\xc4")
            out = cl.send(cframe(i_ctl(0, 0), LLC_REQ + bytes(n - 3)), mode)
            assert frames(out) == [(0x97, bytes((0x10, 0, 0x04)), False, C16, S1)], (n, mode)
            assert cl.take() == [] and link.state == FRMR_COND
            assert link.stats["too_long"] == (0 if n == 130 else 1)
            # The body was skipped, not searched for flags: the next frame is seen.
            out = cl.send(cframe(0x93))
            assert frames(out)[0][0] == 0x73, (n, mode)


def test_a_link_reused_for_the_next_connection_starts_clean():
    # The transport keeps a link for the port's next connection: a frame cut off
    # half-way (its rest was to be skipped) must not eat the next client's first bytes.
    link, cl = connect(reply=lambda a: b"\xc4")
    frame = cframe(i_ctl(0, 0), LLC_REQ + bytes(597))
    cl.send(frame[:200])  # an oversized frame, cut: the link waits to skip its rest
    link.reset()
    connect(link)  # the next connection's SNRM is answered at once


# ---- addresses ----

def test_frames_for_other_addresses_ignored_silently():
    link = HDLCLink(server_physical=17)
    cl = Client(link)
    for name in ("PUB-GET-1.0.1.8.0.255-2byte-PLC", "PUB-DISC-2byte-PLC", "JD-RR-E650-4byte",
                 "CL-RR-client3"):
        assert cl.send(fx(name)) == b"", name
    assert link.stats["other_address"] == 4 and cl.take() == []
    assert cl.send(cframe(0x93, None, b"\x05")) == b""  # logical device 2
    assert cl.send(cframe(0x93, None, b"\x00\x01")) == b""  # NO_STATION upper
    # Our own answers (addressed to the client) coming back are not for us either.
    assert cl.send(fx("KM-1-UA-params") + fx("DC-UA-2byte")) == b""
    assert link.state == NDM and link.stats["frames"] == 0


def test_unknown_client_gets_dm():
    link = HDLCLink()
    cl = Client(link)
    # GX capture: client 0x20 is not one of ours (16, 1, 102).
    assert cl.send(fx("GX-GET-request-1.0.12.7.0.255")) == encode_frame(0x1F, b"\x41", S1)
    assert cl.take() == [] and link.stats["unknown_client"] == 1
    for sap in (16, 1, 102):
        link, cl2 = connect(src=bytes((sap << 1 | 1,)))


def test_all_station_addresses():
    # Lower all-station with our upper address: a point-to-point probe that does not
    # know the physical address connects; replies carry the address as written.
    for dst in (b"\x02\xff", unhex("0002FEFF")):
        link = HDLCLink(server_physical=17)
        cl = Client(link)
        (c, info, seg, d, s), = frames(cl.send(cframe(0x93, None, dst)))
        assert (c, d, s) == (0x73, C16, dst)
    # Upper all-station (broadcast): UI taken but never answered, other frames ignored.
    for dst in (b"\xff", b"\xfe\xff", unhex("FEFEFEFF")):
        link = HDLCLink()
        cl = Client(link, reply=lambda a: b"\xc4")
        assert cl.send(cframe(0x13, LLC_REQ + b"\xc2\x01", dst, b"\xcd")) == b""
        assert cl.take() == [(EV_APDU, 102, b"\xc2\x01")]
        assert cl.send(cframe(0x93, None, dst)) == b"" and link.state == NDM
        assert link.stats["broadcast"] == 2 and link.stats["reply_suppressed"] == 1
    # Broadcast UI while connected: still no answer, the link carries on.
    link, cl = connect(reply=lambda a: b"\xc4")
    assert cl.send(cframe(0x13, LLC_REQ + b"\xc2\x01", b"\xff")) == b""
    assert cl.take() == [(EV_APDU, 16, b"\xc2\x01")] and link.state == NRM
    # Multidrop: the lower all-station address is a broadcast too.
    link = HDLCLink(multidrop=True)
    assert Client(link).send(cframe(0x93, None, b"\x02\xff")) == b""


def test_optical_echo_of_own_frames_skipped():
    # Client SAP 1 and one-byte server address 1: our frames look like the client's.
    link, cl = connect(src=C1, reply=lambda a: b"\xc4\x01")
    req = cframe(i_ctl(0, 0), LLC_REQ + b"\xc0\x01", S1, C1)
    out = cl.send(req)
    assert out == encode_frame(i_ctl(0, 1), C1, S1, LLC_RSP + b"\xc4\x01")
    assert cl.take() == [(EV_APDU, 1, b"\xc0\x01")]
    assert cl.send(out) == b"" and cl.take() == [] and link.stats["echo"] == 1
    out = cl.send(cframe(i_ctl(1, 1), LLC_REQ + b"\xc0\x02", S1, C1))
    assert cl.take() == [(EV_APDU, 1, b"\xc0\x02")]


# ---- time ----

def test_inactivity_timeout_drops_the_link():
    link, cl = connect(inactivity_ms=5000, reply=lambda a: b"\xc4")
    link.tick(1000)
    link.tick(5999)
    assert cl.drain() == b"" and cl.take() == [] and link.state == NRM
    cl.send(cframe(rr_ctl(0)))  # activity restarts the timer
    link.tick(6500)
    link.tick(11499)
    assert link.state == NRM
    link.tick(11500)
    assert link.state == NDM and link.stats["timeouts"] == 1
    assert cl.drain() == b""  # silent: the link just falls back to NDM
    assert cl.take() == [(EV_DISCONNECT, 16, None)]
    assert cl.send(fx("GEN-GET-1.0.1.8.0.255-attr2")) == fx("CONSTRUCTED-DM-1byte")
    link.tick(100000)
    assert cl.take() == []  # no second disconnect


def test_inactivity_timer_wraps_with_ticks():
    link, cl = connect(inactivity_ms=5000)
    link.tick(0x3FFFFFFF - 1000)
    link.tick(3000)  # ticks_ms wrapped: 4001 ms elapsed
    assert link.state == NRM
    link.tick(4000)
    assert link.state == NDM


# ---- the contract with server.pump ----

def test_send_apdu_contract():
    link = HDLCLink()
    link.send_apdu(16, b"\xc4")  # not connected: dropped, counted
    assert link.stats["tx_dropped"] == 1 and link.data_to_send() == b""
    link, cl = connect()
    link.send_apdu(1, b"\xc4")  # not the connected client
    assert link.stats["tx_dropped"] == 1
    assert link.next_event() is NEED_DATA and link.data_to_send() == b""


def test_constructor_limits():
    raises(ValueError, HDLCLink, max_info_tx=0)
    raises(ValueError, HDLCLink, max_info_rx=2031)
    raises(ValueError, HDLCLink, window=8)
    raises(ValueError, HDLCLink, server_logical=0)
    HDLCLink(server_logical=1, server_physical=16, clients=(16, 1, 102), max_info_tx=128,
             max_info_rx=128, window=1, inactivity_ms=120000)

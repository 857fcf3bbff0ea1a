"""Black-box: bad input on both links. Each refusal is checked, and each is followed by
a valid read that must still succeed (the meter keeps serving)."""
import contextlib
import random

import pytest

from clients import CosemClient, GuruxClient, TcpLink

LDN = "0-0:42.0.0.255"
ENERGY = "1-0:1.8.0.255"
# AARQ, LN referencing, no security, public client (Green Book): with the application
# context's last arc as a parameter, 1 = LN, 7 = not a DLMS context.
INITIATE = bytes.fromhex("be10040e01000000065f1f040000181dffff")


def aarq(context_arc=1):
    body = bytes.fromhex("a109060760857405080101")[:-1] + bytes((context_arc,)) + INITIATE
    return bytes((0x60, len(body))) + body


def wrap(apdu, client=16, server=1):
    return bytes((0, 1, client >> 8, client & 0xFF, server >> 8, server & 0xFF, len(apdu) >> 8, len(apdu) & 0xFF)) + apdu


def unwrap(data):
    assert data[:2] == b"\x00\x01" and len(data) >= 8, data.hex()
    assert int.from_bytes(data[6:8], "big") == len(data) - 8, data.hex()
    return data[8:]


def fcs16(data):
    """CRC-16/X.25 (HDLC FCS), written out here so the test does not trust the meter's."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return (~crc & 0xFFFF).to_bytes(2, "little")


def still_serves(meter):
    with GuruxClient.tcp(meter.hdlc_port, "hdlc") as c:
        assert len(c.read(LDN, 1, 2)[0]) == 16
    with CosemClient(meter.wrapper_port, "wrapper") as c:
        assert len(c.get(LDN, 1, 2)) == 16


@contextlib.contextmanager
def wrapper_link(meter, associate=True):
    """A raw wrapper connection (associated as the public client unless told not
    to); on leaving, the meter must still serve both clients."""
    link = TcpLink("127.0.0.1", meter.wrapper_port)
    try:
        if associate:
            link.send(wrap(aarq()))
            link.aare = unwrap(link.recv())
            assert bytes.fromhex("a203020100") in link.aare
        yield link
    finally:
        link.close()
    still_serves(meter)


def session_on(c):
    """A whole valid session on the client's link: connect, read, release, disconnect."""
    c.connect()
    assert len(c.read(LDN, 1, 2)[0]) == 16
    c.release()
    c.disconnect()


def gurux_on(link):
    return GuruxClient(link, "hdlc")


def test_random_bytes_then_a_valid_session_on_the_same_connection(meter):
    rng = random.Random(2026)
    link = TcpLink("127.0.0.1", meter.hdlc_port)
    c = gurux_on(link)
    try:
        for _ in range(20):
            link.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        assert link.recv_quiet(0.6) == b"", "garbage was answered"
        session_on(c)
    finally:
        c.close()
    still_serves(meter)


@pytest.mark.parametrize("spoil", ["hcs", "fcs", "truncated", "other_address"])
def test_spoiled_snrm_is_not_answered(meter, spoil):
    link = TcpLink("127.0.0.1", meter.hdlc_port)
    c = gurux_on(link)
    try:
        snrm = bytearray(c.client.snrmRequest())
        if spoil == "hcs":  # SNRM has no info field, so its only check sequence is the FCS;
            snrm = bytearray(c.client.aarqRequest()[0])  # spoil the HCS of an I-frame instead
            snrm[9] ^= 0xFF
        elif spoil == "fcs":
            snrm[-2] ^= 0x01
        elif spoil == "truncated":
            snrm = snrm[: len(snrm) // 2]
        else:  # server physical address 17 instead of 16
            body = bytearray(snrm[1:-3])
            body[3] = (17 << 1) | 1
            snrm = bytearray(b"\x7e" + body + fcs16(body) + b"\x7e")
        link.send(bytes(snrm))
        assert b"\x73" not in link.recv_quiet(0.6), "a spoiled frame was acknowledged"
        c = gurux_on(link)  # fresh gurux state, same TCP connection
        session_on(c)
    finally:
        c.close()
    still_serves(meter)


def with_send_sequence(frame, ns):
    """The I-frame with another N(S), check sequences recomputed (HCS and FCS)."""
    body = bytearray(frame[1:-3])
    body[5] = (body[5] & 0xF1) | (ns << 1)
    body[6:8] = fcs16(body[:6])
    return b"\x7e" + bytes(body) + fcs16(body) + b"\x7e"


def test_i_frame_out_of_sequence_is_not_delivered(meter):
    link = TcpLink("127.0.0.1", meter.hdlc_port)
    c = gurux_on(link)
    try:
        c.connect()
        frame = c.request_frames_for_read(ENERGY, 3, 2)
        link.send(frame)
        first = link.recv_quiet(0.5)
        assert b"\xe6\xe7\x00\xc4\x01" in first  # answered once
        # The same N(S) again (our reply was "lost"): at most the same reply frame
        # again, never a second delivery to the server.
        link.send(frame)
        assert link.recv_quiet(0.5) in (b"", first)
        # N(S) two ahead: frames were lost on the way in; nothing is delivered. Its
        # N(R) still says our reply was not received, so that reply may come again.
        ns = (frame[6] >> 1) & 7  # 7E, format (2), server address (2), client address, control
        link.send(with_send_sequence(frame, (ns + 2) & 7))
        assert link.recv_quiet(0.5) in (b"", first)
    finally:
        c.close()
    still_serves(meter)


def test_aarq_with_an_unknown_application_context_gets_a_complete_refusal(meter):
    with wrapper_link(meter, associate=False) as link:
        link.send(wrap(aarq(context_arc=7)))
        aare = unwrap(link.recv())
        assert aare[0] == 0x61
        assert bytes.fromhex("a203020101") in aare  # result: rejected-permanent
        assert bytes.fromhex("a305a103020102") in aare  # application-context-name-not-supported
        link.send(wrap(aarq()))  # the same connection then associates normally
        aare = unwrap(link.recv())
        assert bytes.fromhex("a203020100") in aare
        link.send(wrap(bytes.fromhex("c001c100010000") + bytes((42, 0, 0, 255, 2, 0))))
        reply = unwrap(link.recv())
        assert reply[:4] == b"\xc4\x01\xc1\x00" and len(reply) == 4 + 2 + 16


def test_unknown_apdu_and_truncated_get_get_exception_responses(meter):
    with wrapper_link(meter) as link:
        link.send(wrap(b"\xc0\x01\xc1\x00\x03\x01\x00"))  # GET cut in the middle of the OBIS
        reply = unwrap(link.recv())
        assert reply[0] == 0xD8, reply.hex()  # exception-response
        link.send(wrap(b"\xee\x01\x02"))  # no such APDU
        reply = unwrap(link.recv())
        assert reply[0] == 0xD8, reply.hex()


def test_request_larger_than_the_negotiated_pdu(meter):
    """A GET-with-list longer than the meter's max receive PDU (its AARE says: 1024, or
    256 on a core meter) gets an exception-response (service-not-allowed, pdu-too-long);
    one beyond what the wrapper takes in at all (the PDU + 64 for a ciphering header) is
    skipped unanswered. The connection serves on after both."""
    item = bytes.fromhex("000300000100ff0200")  # clock time: 9 octets per descriptor
    with wrapper_link(meter) as link:
        initiate = link.aare.index(b"\x5f\x1f\x04")  # conformance, then the max PDU
        max_pdu = int.from_bytes(link.aare[initiate + 7:initiate + 9], "big")
        assert max_pdu in (256, 1024)
        n = (max_pdu - 4) // 9 + 1  # descriptors: the first count that passes the PDU
        link.send(wrap(b"\xc0\x03\xc1" + bytes((n,)) + item * n))  # 4 + 9n octets
        assert unwrap(link.recv()) == b"\xd8\x01\x04"  # service-not-allowed, pdu-too-long
        link.send(wrap(b"\xc0\x03\xc1\x81\xc8" + item * 200))  # 1805 octets
        assert link.recv_quiet(0.8) == b""
        link.send(wrap(bytes.fromhex("c001c100010000") + bytes((42, 0, 0, 255, 2, 0))))
        assert unwrap(link.recv())[:4] == b"\xc4\x01\xc1\x00"


def test_wrapper_header_for_another_server_wport_is_skipped(meter):
    with wrapper_link(meter, associate=False) as link:
        link.send(wrap(aarq(), server=7))
        assert link.recv_quiet(0.5) == b""
        link.send(wrap(aarq()))
        assert bytes.fromhex("a203020100") in unwrap(link.recv())


def test_connections_beyond_the_planned_ones_are_closed_and_the_rest_served(meter):
    # The meter plans link buffers for two connections at once, over all ports: a
    # third is closed at once, the two go on, and a pair freed serves the next client.
    with GuruxClient.tcp(meter.hdlc_port, "hdlc") as a, GuruxClient.tcp(meter.wrapper_port, "wrapper") as b:
        extra = TcpLink("127.0.0.1", meter.hdlc_port)
        try:
            assert extra.closed_by_peer(wait=2.0)
        finally:
            extra.close()
        assert len(a.read(LDN, 1, 2)[0]) == len(b.read(LDN, 1, 2)[0]) == 16
    for port, interface in ((meter.hdlc_port, "hdlc"), (meter.wrapper_port, "wrapper")):
        with GuruxClient.tcp(port, interface) as c:  # reconnecting at once is served
            assert c.read(ENERGY, 3, 2)[0] >= 0

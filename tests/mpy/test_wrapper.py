# Tests of dlms/wrapper.py: the IEC 62056-47 wrapper, server side. APDUs framed by
# the 8-octet header whole, byte by byte and several per chunk; payloads handed out as
# views of the link's buffer stay right whether or not they are taken before more
# bytes come; refusals (too long, another wPort: skipped; another version: closed);
# replies queued in the link's own room (the server's response buffer is reused).
from dlms.events import EV_APDU, EV_DISCONNECT, NEED_DATA
from dlms.wrapper import WrapperLink, encode_header

GET = bytes.fromhex("C001C100030100010800FF0200")


def wrap(apdu, source=16, destination=1):
    return encode_header(source, destination, len(apdu)) + apdu


def drain(link):
    """The events, each payload copied as the server's pump would take it now."""
    out = []
    while True:
        ev = link.next_event()
        if ev is NEED_DATA:
            return out
        out.append((ev[0], ev[1], None if ev[2] is None else bytes(ev[2])))


def test_apdu_whole_bytewise_and_several_per_chunk():
    link = WrapperLink(1, 64)
    link.receive_data(wrap(GET))
    assert drain(link) == [(EV_APDU, 16, GET)]
    data = wrap(GET, 32) + wrap(b"\x62\x00", 16)
    for k in range(len(data)):
        link.receive_data(data[k:k + 1])
    assert drain(link) == [(EV_APDU, 32, GET), (EV_APDU, 16, b"\x62\x00")]
    link.receive_data(data + wrap(GET)[:5])  # two whole, one started
    assert drain(link) == [(EV_APDU, 32, GET), (EV_APDU, 16, b"\x62\x00")]
    link.receive_data(wrap(GET)[5:])
    assert drain(link) == [(EV_APDU, 16, GET)]


def test_payloads_not_taken_survive_more_bytes():
    link = WrapperLink(1, 64)
    link.receive_data(wrap(GET) + wrap(b"\x01\x02\x03", 32))
    # Not drained: the next bytes move the buffer, the pending APDUs must not change.
    link.receive_data(wrap(b"\xAA" * 40, 1) + bytes(20))
    link.receive_data(bytes(40))
    events = drain(link)
    assert events[:2] == [(EV_APDU, 16, GET), (EV_APDU, 32, b"\x01\x02\x03")], events
    assert events[2] == (EV_APDU, 1, b"\xAA" * 40)


def test_too_long_and_other_wport_skipped_stream_goes_on():
    link = WrapperLink(1, 16)
    link.receive_data(wrap(bytes(40)) + wrap(GET, destination=7) + wrap(GET))
    assert drain(link) == [(EV_APDU, 16, GET)]
    assert link.stats["too_long"] == 1 and link.stats["other_wport"] == 1
    # a long APDU arriving in pieces is skipped piece by piece
    big = wrap(bytes(100))
    link.receive_data(big[:30])
    link.receive_data(big[30:] + wrap(GET))
    assert drain(link) == [(EV_APDU, 16, GET)] and not link.closed


def test_a_read_larger_than_the_room_is_taken_in_pieces():
    # The room holds one message (8 + 16 octets here, 8 + 320 on a core meter, whose
    # reads are 512): a larger read is parsed piece by piece, the room never grows.
    link = WrapperLink(1, 16)
    link.receive_data(wrap(b"\x01" * 16) + wrap(bytes(40)) + wrap(GET, 32) + wrap(b"\x02\x03"))
    assert len(link.buffers[0]) <= 8 + 16
    assert drain(link) == [(EV_APDU, 16, b"\x01" * 16), (EV_APDU, 32, GET), (EV_APDU, 16, b"\x02\x03")]


def test_other_version_closes_the_link():
    link = WrapperLink(1, 64)
    link.receive_data(wrap(GET))
    link.receive_data(b"\x00\x02" + wrap(GET)[2:])
    assert drain(link) == [(EV_APDU, 16, GET), (EV_DISCONNECT, 16, None)]
    assert link.closed and link.stats["bad_version"] == 1
    link.receive_data(wrap(GET))  # a closed link takes nothing more
    assert drain(link) == []
    link.reset()
    link.receive_data(wrap(GET))
    assert drain(link) == [(EV_APDU, 16, GET)]


def test_replies_copied_at_once_and_sent_together():
    link = WrapperLink(1, 64)
    shared = bytearray(b"\xC4\x01\xC1\x00\x11\x05")
    link.send_apdu(16, memoryview(shared))
    shared[5] = 0x06  # the server reuses its buffer for the next reply
    link.send_apdu(32, memoryview(shared))
    out = bytes(link.data_to_send())
    assert out == wrap(b"\xC4\x01\xC1\x00\x11\x05", 1, 16) + wrap(b"\xC4\x01\xC1\x00\x11\x06", 1, 32)
    assert link.data_to_send() == b""
    link.send_apdu(16, b"\x01")
    assert bytes(link.data_to_send()) == wrap(b"\x01", 1, 16)

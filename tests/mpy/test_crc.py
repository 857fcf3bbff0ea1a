# Tests of dlms/crc.py: CRC-16/X.25 (the HCS/FCS of IEC 62056-46) against its published
# check value, an independent bitwise reference, and the HCS/FCS fields of every
# published frame in shared/vectors/hdlc_frames.json.
import micropython
from dlms.crc import crc16, crc16_update, crc16_range, GOOD_RESIDUE, PRESET
from testutil import load_vectors, unhex


def _bitwise(data):
    """Reference: the polynomial bit by bit (reflected 0x8408), no table."""
    reg = 0xFFFF
    for b in data:
        reg ^= b
        for _ in range(8):
            reg = (reg >> 1) ^ 0x8408 if reg & 1 else reg >> 1
    return reg ^ 0xFFFF


def test_check_value_from_vectors():
    v = load_vectors("hdlc_frames")["crc_check"]
    assert crc16(b"123456789") == int(v["check_123456789"], 16) == 0x906E
    assert PRESET == int(v["init"], 16)


def test_matches_bitwise_reference_every_table_entry_and_lengths():
    for n in range(256):  # one byte exercises exactly one table entry
        assert crc16(bytes((n,))) == _bitwise(bytes((n,))), n
    data = bytes((i * 37 + 11) & 0xFF for i in range(300))
    for n in (0, 1, 2, 7, 127, 128, 129, 255, 256, 300):
        assert crc16(data[:n]) == _bitwise(data[:n]), n


def test_any_buffer_type_and_ranges():
    data = b"\x7e123456789\x7e"
    for buf in (data, bytearray(data), memoryview(data)):
        assert crc16(buf[1:10]) == 0x906E
        assert crc16_range(0xFFFF, buf, 1, 10) ^ 0xFFFF == 0x906E
        assert crc16_update(0xFFFF, buf[1:10]) ^ 0xFFFF == 0x906E
    assert crc16_range(0x1234, data, 5, 5) == 0x1234  # empty range: register unchanged
    assert crc16(b"") == 0


def test_update_is_incremental():
    data = b"123456789"
    for cut in range(len(data) + 1):
        reg = crc16_update(crc16_update(0xFFFF, data[:cut]), data[cut:])
        assert reg ^ 0xFFFF == 0x906E


def test_good_residue_after_data_and_its_own_crc():
    for data in (b"", b"\x00", b"123456789", bytes(range(200))):
        c = crc16(data)
        assert crc16_update(0xFFFF, data + bytes((c & 0xFF, c >> 8))) == GOOD_RESIDUE


def test_hcs_and_fcs_of_every_published_frame():
    for f in load_vectors("hdlc_frames")["frames"]:
        fr = unhex(f["frame_hex"])
        body = fr[1:-1]
        fcs = body[-2] | body[-1] << 8
        assert crc16(body[:-2]) == fcs, f["id"]
        assert "%02X%02X" % (body[-2], body[-1]) == f["fcs_hex"], f["id"]
        if f["hcs_hex"]:
            # HCS covers format .. control: header length = 2 + addresses + 1.
            h = 2 + len(f["destination_address_hex"]) // 2 + len(f["source_address_hex"]) // 2 + 1
            assert crc16(body[:h]) == body[h] | body[h + 1] << 8, f["id"]


def test_negative_examples_have_the_published_defects():
    for f in load_vectors("hdlc_frames")["negative_examples"]:
        body = unhex(f["frame_hex"])[1:-1]
        fcs_ok = crc16_update(0xFFFF, body) == GOOD_RESIDUE
        if f["fcs_ok"] is False:
            assert not fcs_ok, f["id"]


def test_no_allocation():
    buf = bytearray(range(128))
    micropython.heap_lock()
    try:
        reg = crc16_range(0xFFFF, buf, 0, 128)
    finally:
        micropython.heap_unlock()
    assert reg ^ 0xFFFF == _bitwise(buf)

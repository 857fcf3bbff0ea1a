# AES key wrap (RFC 3394) against the published vectors in aes_keywrap_rfc3394.json,
# including the corrupted one that unwrap must refuse.
from testutil import load_vectors, raises, unhex
from dlms.keywrap import unwrap, wrap


def _vectors():
    return load_vectors("aes_keywrap_rfc3394")["vectors"]


def test_published_vectors_wrap_and_unwrap():
    done = 0
    for v in _vectors():
        if v["key_data"] is None:
            continue
        kek, key, wrapped = unhex(v["kek"]), unhex(v["key_data"]), unhex(v["wrapped"])
        if len(kek) == 24:
            # cryptolib has no AES-192: such a KEK is refused, never mis-wrapped.
            raises(ValueError, wrap, kek, key)
            raises(ValueError, unwrap, kek, wrapped)
            continue
        if wrap(kek, key) != wrapped:
            raise AssertionError("wrap " + v["id"])
        if unwrap(kek, wrapped) != key:
            raise AssertionError("unwrap " + v["id"])
        done += 1
    if done < 7:  # RFC 3394 4.1, 4.3, 4.5, 4.6 and the four NIST KW_AE_128 vectors
        raise AssertionError("only %d vectors ran" % done)


def test_corrupted_vector_fails_unwrap():
    ran = 0
    for v in _vectors():
        if v.get("expected_result") == "unwrap must fail":
            raises(ValueError, unwrap, unhex(v["kek"]), unhex(v["wrapped"]))
            ran += 1
    if not ran:
        raise AssertionError("no negative vector found")


def test_every_single_bit_flip_fails_unwrap():
    v = _vectors()[0]  # RFC 3394 4.1
    kek, wrapped = unhex(v["kek"]), bytearray(unhex(v["wrapped"]))
    for i in range(len(wrapped) * 8):
        wrapped[i >> 3] ^= 1 << (i & 7)
        raises(ValueError, unwrap, kek, wrapped)
        wrapped[i >> 3] ^= 1 << (i & 7)
    unwrap(kek, wrapped)  # restored: accepted again


def test_wrong_kek_fails_unwrap():
    v = _vectors()[0]
    kek = bytearray(unhex(v["kek"]))
    kek[0] ^= 0x80
    raises(ValueError, unwrap, kek, unhex(v["wrapped"]))


def test_bad_lengths():
    kek = bytes(16)
    for key in (b"", bytes(8), bytes(15), bytes(17), bytes(20)):
        raises(ValueError, wrap, kek, key)
    for blob in (b"", bytes(8), bytes(16), bytes(23), bytes(25)):
        raises(ValueError, unwrap, kek, blob)
    for bad_kek in (b"", bytes(8), bytes(15), bytes(24), bytes(33)):
        raises(ValueError, wrap, bad_kek, bytes(16))
        raises(ValueError, unwrap, bad_kek, bytes(24))


def test_inputs_may_be_any_byte_buffer():
    v = _vectors()[0]
    kek, key, wrapped = unhex(v["kek"]), unhex(v["key_data"]), unhex(v["wrapped"])
    if wrap(bytearray(kek), memoryview(key)) != wrapped:
        raise AssertionError("wrap from bytearray/memoryview")
    if unwrap(memoryview(kek), bytearray(wrapped)) != key:
        raise AssertionError("unwrap from memoryview/bytearray")

# dlms.keywrap: AES key wrap (RFC 3394, NIST SP 800-38F "KW") with the default IV.
# DLMS/COSEM uses it with the master key (KEK) in Security setup global_key_transfer
# (Green Book 9.2.9: new global keys arrive wrapped). AES is cryptolib's ECB, so the KEK
# may be 16 or 32 bytes (cryptolib has no AES-192); key data is 16 bytes or more, a
# multiple of 8. Every bad length and every failed integrity check is a ValueError.
from micropython import const
import cryptolib

_ECB = const(1)
_IV = b"\xa6\xa6\xa6\xa6\xa6\xa6\xa6\xa6"


def _kek(kek):
    if len(kek) != 16 and len(kek) != 32:
        raise ValueError("KEK must be 16 or 32 bytes")
    return cryptolib.aes(kek, _ECB)


def wrap(kek, key_data):
    """RFC 3394 2.2.1: returns 8 + len(key_data) bytes."""
    n = len(key_data) >> 3
    if len(key_data) & 7 or n < 2:
        raise ValueError("key data must be a multiple of 8 bytes, at least 16")
    aes = _kek(kek)
    r = bytearray(8 + len(key_data))  # A || R[1] .. R[n]
    r[:8] = _IV
    r[8:] = key_data
    b = bytearray(16)
    t = 0
    for _ in range(6):
        for i in range(1, n + 1):
            t += 1
            b[:8] = r[:8]
            b[8:] = r[8 * i : 8 * i + 8]
            aes.encrypt(b, b)  # B = AES(K, A | R[i])
            r[8 * i : 8 * i + 8] = b[8:]
            _xor_counter(b, t)  # A = MSB(64, B) ^ t
            r[:8] = b[:8]
    return bytes(r)


def unwrap(kek, wrapped):
    """RFC 3394 2.2.2: returns the key data; ValueError if the integrity check fails."""
    n = (len(wrapped) >> 3) - 1
    if len(wrapped) & 7 or n < 2:
        raise ValueError("wrapped key must be a multiple of 8 bytes, at least 24")
    aes = _kek(kek)  # a fresh cryptolib object: each one either encrypts or decrypts
    r = bytearray(wrapped)
    b = bytearray(16)
    t = 6 * n
    for _ in range(6):
        for i in range(n, 0, -1):
            b[:8] = r[:8]
            _xor_counter(b, t)  # A ^ t
            b[8:] = r[8 * i : 8 * i + 8]
            aes.decrypt(b, b)  # B = AES-1(K, (A ^ t) | R[i])
            r[:8] = b[:8]
            r[8 * i : 8 * i + 8] = b[8:]
            t -= 1
    # Compare all 8 bytes without an early exit.
    d = 0
    for i in range(8):
        d |= r[i] ^ _IV[i]
    if d:
        raise ValueError("key unwrap integrity check failed")
    return bytes(r[8:])


def _xor_counter(b, t):
    # XOR the 64-bit big-endian step counter t into b[0:8].
    i = 7
    while t:
        b[i] ^= t & 0xFF
        t >>= 8
        i -= 1

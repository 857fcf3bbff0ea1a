# dlms._gcm: pure-Python AES-GCM (NIST SP 800-38D, 96-bit IV), the twin of the C module
# _dlmsgcm (firmware/cmodules/dlmsgcm/dlmsgcm.c). Same class, methods, buffer rules and
# exception types; dlms/gcm.py picks one of the two. AES itself is cryptolib's ECB; the
# counter mode and GHASH are here, in viper.
#
#   g = AESGCM(key16)
#   g.encrypt(iv, plaintext, aad, tag_len=12)  -> bytes ciphertext || tag
#   g.decrypt(iv, ciphertext, aad, tag_len=12) -> bytes plaintext   (ValueError on bad tag)
#   g.encrypt_into(iv, plaintext, aad, out, tag_len=12)  -> bytes written
#   g.decrypt_into(iv, ciphertext, aad, out, tag_len=12) -> bytes written
#
# key 16 bytes, iv 12 bytes, tag_len 4..16 or 0 (no tag: DLMS SC 0x20/0x21, counter mode
# only), else ValueError. Inputs: any buffer except str (TypeError). out: writable (else
# TypeError), long enough (else ValueError), in place or disjoint (else ValueError); on an
# authentication failure decrypt_into leaves out[:len(ct) - tag_len] zeroed, as mbedTLS does.
# One caveat the twin cannot see: a memoryview over a multi-byte array (array('H')) is
# measured in elements here but in bytes by the C module. Pass byte buffers.
#
# GHASH uses Shoup's 4-bit table: 16 multiples of H per key (256 bytes), 16-bit words so
# that every intermediate value stays a small positive int on 32-bit targets (ESP32,
# RP2040) as on 64-bit ones. An object is not re-entrant: it keeps per-key scratch
# buffers so that the *_into methods allocate nothing.
import micropython
from micropython import const
import cryptolib

_ECB = const(1)
_CH = const(8)  # counter blocks per cryptolib call
_CHB = const(128)  # = 16 * _CH

# Layout of the per-key state bytearray. Halfword indexes (viper ptr16):
_M = const(0)  # 16 entries x 8 halfwords: M[n] = H * n, n a 4-bit polynomial
_Y = const(128)  # GHASH accumulator Y, 8 halfwords, most significant first
_R4 = const(136)  # 16 halfwords: reduction of the 4 bits shifted out by Z * x^4
_X = const(152)  # the block being multiplied, 8 halfwords
# Byte offsets (viper ptr8):
_PAD = const(320)  # zero-padded copy of a final partial block
_EK0 = const(336)  # E(K, J0), masks the tag
_TAG = const(352)  # computed tag
_LEN = const(368)  # len(A) || len(C) in bits, the last GHASH block
_ST_SIZE = const(384)

_EMPTY = b""


@micropython.viper
def _ghash_init(st: ptr16, h: ptr8):
    # M[8] = H (the nibble's high bit is the x^0 coefficient in GCM's reflected order).
    i = 0
    while i < 8:
        st[64 + i] = (h[2 * i] << 8) | h[2 * i + 1]
        i += 1
    # M[4] = M[8] * x, M[2] = M[4] * x, M[1] = M[2] * x. Multiplying by x is a right shift
    # by one; a bit falling off the end (x^128) comes back as x^7 + x^2 + x + 1 = 0xE1..
    src = 64
    dst = 32
    while dst >= 8:
        carry = st[src + 7] & 1
        i = 7
        while i > 0:
            st[dst + i] = (st[src + i] >> 1) | ((st[src + i - 1] & 1) << 15)
            i -= 1
        top = st[src] >> 1
        if carry:
            top = top ^ 0xE100
        st[dst] = top
        src = dst
        dst = dst >> 1
    # Every other multiple is a sum of those four (M[0] stays zero).
    n = 3
    while n < 16:
        hi = 8
        while hi > n:
            hi = hi >> 1
        if hi != n:
            a = hi * 8
            b = (n ^ hi) * 8
            d = n * 8
            i = 0
            while i < 8:
                st[d + i] = st[a + i] ^ st[b + i]
                i += 1
        n += 1
    # R4[r]: bits 8, 4, 2, 1 of r were the coefficients of x^124..x^127; times x^4 they are
    # x^128..x^131, i.e. 0xE100 >> 0..3 in the top halfword.
    r = 0
    while r < 16:
        v = 0
        bit = 8
        red = 0xE100
        while bit:
            if r & bit:
                v = v ^ red
            bit = bit >> 1
            red = red >> 1
        st[_R4 + r] = v
        r += 1


@micropython.viper
def _ghash(st: ptr16, data: ptr8, off: int, n: int):
    # Y = (Y ^ block) * H for each 16-byte block of data[off:off + n], the last one padded
    # with zeros.
    s8 = ptr8(st)
    y0 = st[_Y]
    y1 = st[_Y + 1]
    y2 = st[_Y + 2]
    y3 = st[_Y + 3]
    y4 = st[_Y + 4]
    y5 = st[_Y + 5]
    y6 = st[_Y + 6]
    y7 = st[_Y + 7]
    p = off
    end = off + n
    while p < end:
        src = data
        q = p
        if end - p < 16:
            i = 0
            while i < 16:
                if p + i < end:
                    s8[_PAD + i] = data[p + i]
                else:
                    s8[_PAD + i] = 0
                i += 1
            src = s8
            q = _PAD
        st[_X] = y0 ^ ((src[q] << 8) | src[q + 1])
        st[_X + 1] = y1 ^ ((src[q + 2] << 8) | src[q + 3])
        st[_X + 2] = y2 ^ ((src[q + 4] << 8) | src[q + 5])
        st[_X + 3] = y3 ^ ((src[q + 6] << 8) | src[q + 7])
        st[_X + 4] = y4 ^ ((src[q + 8] << 8) | src[q + 9])
        st[_X + 5] = y5 ^ ((src[q + 10] << 8) | src[q + 11])
        st[_X + 6] = y6 ^ ((src[q + 12] << 8) | src[q + 13])
        st[_X + 7] = y7 ^ ((src[q + 14] << 8) | src[q + 15])
        # Horner over the 32 nibbles, highest degree (last nibble) first:
        # Z = Z * x^4 + M[nibble].
        y0 = 0
        y1 = 0
        y2 = 0
        y3 = 0
        y4 = 0
        y5 = 0
        y6 = 0
        y7 = 0
        j = _X + 7
        while j >= _X:
            v = st[j]
            k = 0
            while k < 4:
                r = y7 & 0xF
                y7 = (y7 >> 4) | ((y6 & 0xF) << 12)
                y6 = (y6 >> 4) | ((y5 & 0xF) << 12)
                y5 = (y5 >> 4) | ((y4 & 0xF) << 12)
                y4 = (y4 >> 4) | ((y3 & 0xF) << 12)
                y3 = (y3 >> 4) | ((y2 & 0xF) << 12)
                y2 = (y2 >> 4) | ((y1 & 0xF) << 12)
                y1 = (y1 >> 4) | ((y0 & 0xF) << 12)
                y0 = (y0 >> 4) ^ st[_R4 + r]
                t = (v & 0xF) << 3
                v = v >> 4
                y0 = y0 ^ st[t]
                y1 = y1 ^ st[t + 1]
                y2 = y2 ^ st[t + 2]
                y3 = y3 ^ st[t + 3]
                y4 = y4 ^ st[t + 4]
                y5 = y5 ^ st[t + 5]
                y6 = y6 ^ st[t + 6]
                y7 = y7 ^ st[t + 7]
                k += 1
            j -= 1
        p += 16
    st[_Y] = y0
    st[_Y + 1] = y1
    st[_Y + 2] = y2
    st[_Y + 3] = y3
    st[_Y + 4] = y4
    st[_Y + 5] = y5
    st[_Y + 6] = y6
    st[_Y + 7] = y7


@micropython.viper
def _start(st: ptr16, cb: ptr8, iv: ptr8):
    # Y = 0; every counter block = IV || (counter set later).
    i = 0
    while i < 8:
        st[_Y + i] = 0
        i += 1
    b = 0
    while b < _CHB:
        i = 0
        while i < 12:
            cb[b + i] = iv[i]
            i += 1
        b += 16


@micropython.viper
def _set_counters(cb: ptr8, ctr: int, k: int):
    b = 12
    end = 16 * k
    while b < end:
        cb[b] = (ctr >> 24) & 0xFF
        cb[b + 1] = (ctr >> 16) & 0xFF
        cb[b + 2] = (ctr >> 8) & 0xFF
        cb[b + 3] = ctr & 0xFF
        ctr += 1
        b += 16


@micropython.viper
def _xor(dst: ptr8, src: ptr8, pos: int, m: int, ks: ptr8, ksoff: int):
    i = 0
    while i < m:
        dst[pos + i] = src[pos + i] ^ ks[ksoff + i]
        i += 1


@micropython.viper
def _copy(dst: ptr8, doff: int, src: ptr8, soff: int, m: int):
    i = 0
    while i < m:
        dst[doff + i] = src[soff + i]
        i += 1


@micropython.viper
def _zero(dst: ptr8, m: int):
    i = 0
    while i < m:
        dst[i] = 0
        i += 1


@micropython.viper
def _lengths(st: ptr8, na: int, nc: int):
    # 64-bit big-endian bit lengths; messages here are far below 2**27 bytes.
    i = 0
    while i < 16:
        st[_LEN + i] = 0
        i += 1
    na = na << 3
    nc = nc << 3
    i = 7
    while i >= 4:
        st[_LEN + i] = na & 0xFF
        st[_LEN + 8 + i] = nc & 0xFF
        na = na >> 8
        nc = nc >> 8
        i -= 1


@micropython.viper
def _make_tag(st: ptr16):
    # T = E(K, J0) ^ GHASH, as bytes.
    s8 = ptr8(st)
    i = 0
    while i < 8:
        y = st[_Y + i]
        s8[_TAG + 2 * i] = (y >> 8) ^ s8[_EK0 + 2 * i]
        s8[_TAG + 2 * i + 1] = (y & 0xFF) ^ s8[_EK0 + 2 * i + 1]
        i += 1


@micropython.viper
def _tag_differs(st: ptr8, src: ptr8, pos: int, t: int) -> int:
    # Constant time over the tag length: no early exit on the first differing byte.
    d = 0
    i = 0
    while i < t:
        d = d | (st[_TAG + i] ^ src[pos + i])
        i += 1
    return d


@micropython.viper
def _overlaps(s: ptr8, sn: int, d: ptr8, dn: int) -> int:
    # 1 when [s, s + sn) and [d, d + dn) share a byte and do not start together. Unsigned
    # address arithmetic inside viper: no int object for an address, so no allocation.
    a = uint(s)
    b = uint(d)
    if a == b or sn == 0 or dn == 0:
        return 0
    if a < b + uint(dn) and b < a + uint(sn):
        return 1
    return 0


def _bytes(x):
    # Inputs: bytes-like, as raw bytes; str refused as in the C module.
    t = type(x)
    if t is bytes or t is bytearray or t is memoryview:
        return x
    if t is str:
        raise TypeError("bytes-like object required")
    return bytes(memoryview(x))  # TypeError without the buffer protocol


def _out_len(x):
    # Writable buffer's length in bytes; TypeError when it is not writable.
    t = type(x)
    if t is bytearray:
        return len(x)
    if t is memoryview:
        n = len(x)
        if n:
            x[0] = x[0]  # TypeError on a read-only view; allocates nothing
        else:
            x[0:0] = _EMPTY
        return n
    if t is bytes or t is str:
        raise TypeError("writable buffer required")
    n = len(bytes(memoryview(x)))  # e.g. array.array: its size in bytes
    x[0:0] = x[0:0]  # TypeError if it cannot be written
    return n


def _check(iv, tag_len):
    if len(iv) != 12:
        raise ValueError("iv must be 12 bytes")
    if tag_len != 0 and (tag_len < 4 or tag_len > 16):
        raise ValueError("tag_len must be 0 or 4..16")


class AESGCM:
    def __init__(self, key):
        key = _bytes(key)
        if len(key) != 16:
            raise ValueError("key must be 16 bytes")
        self._aes = cryptolib.aes(key, _ECB)
        st = bytearray(_ST_SIZE)
        self._aes.encrypt(st[:16], memoryview(st)[_PAD : _PAD + 16])  # H = E(K, 0^128)
        _ghash_init(st, memoryview(st)[_PAD : _PAD + 16])
        self._st = st
        self._cb = bytearray(_CHB)
        self._ks = bytearray(_CHB)
        cbv = memoryview(self._cb)
        self._cbv = [cbv[: 16 * k] for k in range(_CH + 1)]

    def encrypt(self, iv, plaintext, aad, tag_len=12):
        iv = _bytes(iv)
        plaintext = _bytes(plaintext)
        aad = _bytes(aad)
        _check(iv, tag_len)
        n = len(plaintext)
        out = bytearray(n + tag_len)
        self._run(iv, plaintext, n, aad, out, tag_len, False)
        return bytes(out)

    def decrypt(self, iv, ciphertext, aad, tag_len=12):
        iv = _bytes(iv)
        ciphertext = _bytes(ciphertext)
        aad = _bytes(aad)
        _check(iv, tag_len)
        n = len(ciphertext) - tag_len
        if n < 0:
            raise ValueError("ciphertext shorter than tag")
        out = bytearray(n)
        self._run(iv, ciphertext, n, aad, out, tag_len, True)
        return bytes(out)

    def encrypt_into(self, iv, plaintext, aad, out, tag_len=12):
        iv = _bytes(iv)
        plaintext = _bytes(plaintext)
        aad = _bytes(aad)
        room = _out_len(out)
        _check(iv, tag_len)
        n = len(plaintext)
        _check_out(plaintext, n, out, room, n + tag_len)
        self._run(iv, plaintext, n, aad, out, tag_len, False)
        return n + tag_len

    def decrypt_into(self, iv, ciphertext, aad, out, tag_len=12):
        iv = _bytes(iv)
        ciphertext = _bytes(ciphertext)
        aad = _bytes(aad)
        room = _out_len(out)
        _check(iv, tag_len)
        n = len(ciphertext) - tag_len
        if n < 0:
            raise ValueError("ciphertext shorter than tag")
        _check_out(ciphertext, n + tag_len, out, room, n)
        self._run(iv, ciphertext, n, aad, out, tag_len, True)
        return n

    def _run(self, iv, src, n, aad, dst, tag_len, decrypt):
        # GHASH covers AAD then ciphertext; when decrypting, the tag is checked before a
        # byte of dst is written, so in-place decryption of a forged message only zeroes.
        st = self._st
        ks = self._ks
        aes = self._aes
        cb = self._cb
        _start(st, cb, iv)
        # First cryptolib call: J0 (counter 1, for the tag) and the first data blocks.
        k = ((n + 15) >> 4) + 1
        if k > _CH:
            k = _CH
        _set_counters(cb, 1, k)
        aes.encrypt(self._cbv[k], ks)
        if tag_len:
            _copy(st, _EK0, ks, 0, 16)
            _ghash(st, aad, 0, len(aad))
            if decrypt:
                _ghash(st, src, 0, n)
                self._finish(n, len(aad))
                if _tag_differs(st, src, n, tag_len):
                    _zero(dst, n)
                    raise ValueError("authentication failed")
        m = (k - 1) << 4
        if m > n:
            m = n
        _xor(dst, src, 0, m, ks, 16)
        pos = m
        ctr = k + 1
        while pos < n:
            k = (n - pos + 15) >> 4
            if k > _CH:
                k = _CH
            _set_counters(cb, ctr, k)
            aes.encrypt(self._cbv[k], ks)
            m = n - pos
            if m > _CHB:
                m = _CHB
            _xor(dst, src, pos, m, ks, 0)
            pos += m
            ctr += k
        if tag_len and not decrypt:
            _ghash(st, dst, 0, n)
            self._finish(n, len(aad))
            _copy(dst, n, st, _TAG, tag_len)

    def _finish(self, n, na):
        st = self._st
        _lengths(st, na, n)
        _ghash(st, st, _LEN, 16)
        _make_tag(st)


def _check_out(src, src_len, out, room, need):
    if room < need:
        raise ValueError("out too small")
    # In place (same start) or disjoint, as in the C module.
    if _overlaps(src, src_len, out, need):
        raise ValueError("out overlaps input")

# AES-GCM: the C module _dlmsgcm (mbedTLS) and its pure-Python twin dlms._gcm, imported
# explicitly and run side by side: every published vector (NIST CAVP / GCM spec, DLMS
# Green Book and captures), agreement on random inputs, and the same exception type in
# every error case. dlms.gcm (the facade) is checked last.
import gc
import os
import random
from array import array

import micropython

from testutil import load_vectors, raises, unhex
import dlms._gcm

try:
    import _dlmsgcm
except ImportError:
    _dlmsgcm = None

TWIN = ("python", dlms._gcm.AESGCM)
IMPLS = (TWIN, ("c", _dlmsgcm.AESGCM)) if _dlmsgcm else (TWIN,)


def _eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %s, want %s" % (what, bytes(got).hex(), bytes(want).hex()))


def _outcome(fn, *args, **kwargs):
    # ("ok", result) or ("raise", exception type): what must agree across implementations.
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as e:
        return ("raise", type(e))


def test_c_module_is_built_in():
    # build/micropython is built with USER_C_MODULES=firmware/cmodules; without _dlmsgcm
    # every other test here would silently check the twin alone.
    if _dlmsgcm is None:
        raise AssertionError("_dlmsgcm missing: build with tools/build_micropython.sh")


# --- published vectors -----------------------------------------------------------------


def test_nist_vectors():
    vectors = load_vectors("nist_gcm_aes128")["vectors"]
    for name, cls in IMPLS:
        for v in vectors:
            what = "%s %s" % (name, v["id"])
            g = cls(unhex(v["key"]))
            iv, aad = unhex(v["iv"]), unhex(v["aad"])
            ct, tag, t = unhex(v["ciphertext"]), unhex(v["tag"]), v["tag_bits"] // 8
            if v["expected_result"] == "pass":
                pt = unhex(v["plaintext"])
                if v["direction"] == "encrypt":
                    _eq(g.encrypt(iv, pt, aad, t), ct + tag, what)
                _eq(g.decrypt(iv, ct + tag, aad, t), pt, what)
            else:
                raises(ValueError, g.decrypt, iv, ct + tag, aad, t)


def _ber_len(n):
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return bytes([0x82, n >> 8, n & 0xFF])


def _dlms_case(v):
    # gcm_dlms.json "conventions": IV = system title || invocation counter; the AAD
    # follows the security control byte; tags are the leftmost 12 bytes.
    sc = unhex(v["security_control"])
    st, ic = unhex(v["system_title"]), unhex(v["invocation_counter"])
    iv = st + ic
    _eq(iv, unhex(v["iv"]), v["id"] + " iv")
    data = unhex(v.get("plaintext_apdu") or v.get("challenge") or "")
    mode = sc[0] & 0x30
    ak = unhex(v["authentication_key"] or "")
    aad = {0x10: sc + ak + data, 0x30: sc + ak, 0x20: b""}[mode]
    _eq(aad, unhex(v["aad"]), v["id"] + " aad")
    return sc, st, ic, iv, aad, data, mode


def _ciphered_apdu(v, sc, st, ic, output):
    body = sc + ic + output
    if v["glo_tag"] == "DB":  # general-glo-ciphering carries the system title
        return b"\xdb" + _ber_len(len(st)) + st + _ber_len(len(body)) + body
    return unhex(v["glo_tag"]) + _ber_len(len(body)) + body


def test_dlms_vectors():
    vectors = load_vectors("gcm_dlms")["vectors"]
    for name, cls in IMPLS:
        for v in vectors:
            what = "%s %s" % (name, v["id"])
            sc, st, ic, iv, aad, data, mode = _dlms_case(v)
            g = cls(unhex(v["block_cipher_key"]))
            tag = unhex(v.get("auth_tag_12") or "")
            if mode == 0x10:  # authentication only: GMAC over SC || AK || data
                _eq(g.encrypt(iv, b"", aad), tag, what)
                _eq(g.decrypt(iv, tag, aad), b"", what)
                output = data + tag
                if "expected_f" in v:  # HLS-GMAC: f(challenge) = SC || IC || tag
                    _eq(sc + ic + tag, unhex(v["expected_f"]), what)
            elif mode == 0x30:  # authenticated encryption
                ct = unhex(v["ciphertext"])
                output = ct + tag
                _eq(g.encrypt(iv, data, aad), output, what)
                _eq(g.decrypt(iv, output, aad), data, what)
                if "auth_tag_16" in v:
                    _eq(g.encrypt(iv, data, aad, 16), ct + unhex(v["auth_tag_16"]), what)
            else:  # 0x20 (and suite 1's 0x21): encryption only, no tag
                output = unhex(v["ciphertext"])
                _eq(g.encrypt(iv, data, b"", 0), output, what)
                _eq(g.decrypt(iv, output, b"", 0), data, what)
            if "expected_ciphered_apdu" in v:
                apdu = unhex(v["expected_ciphered_apdu"])
                _eq(apdu[-len(output) - 5 :], sc + ic + output, what + " apdu tail")
                if "glo_tag" in v:
                    _eq(_ciphered_apdu(v, sc, st, ic, output), apdu, what + " apdu")
            if tag:  # one flipped bit anywhere is refused
                bad = bytearray(output if mode == 0x30 else tag)
                bad[-1] ^= 1
                raises(ValueError, g.decrypt, iv, bad, aad)


# --- both implementations agree ----------------------------------------------------------


def _rand(n):
    return bytes(random.getrandbits(8) for _ in range(n))


def test_random_inputs_agree():
    random.seed(3394)
    for n in range(301):
        key, iv, aad = _rand(16), _rand(12), _rand(random.getrandbits(6))
        pt = _rand(n)
        tag_len = (12, 16, 0, 4, 13)[n % 5]
        outs = [cls(key).encrypt(iv, pt, aad, tag_len) for _, cls in IMPLS]
        for out in outs[1:]:
            _eq(out, outs[0], "encrypt n=%d" % n)
        for _, cls in IMPLS:
            _eq(cls(key).decrypt(iv, outs[0], aad, tag_len), pt, "decrypt n=%d" % n)


def _error_cases(cls):
    k, iv = bytes(range(16)), bytes(12)
    g = cls(k)
    good = g.encrypt(iv, b"0123456789", b"aad")
    flipped = bytearray(good)
    flipped[3] ^= 0x40
    buf = bytearray(64)
    mv = memoryview(buf)
    good_rw = bytearray(good)
    # (name, callable, args, kwargs)
    return (
        ("bad tag", g.decrypt, (iv, flipped, b"aad"), {}),
        ("bad aad", g.decrypt, (iv, good, b"aaD"), {}),
        ("tag length mismatch", g.decrypt, (iv, good, b"aad"), {"tag_len": 16}),
        ("truncated by one", g.decrypt, (iv, good[:-1], b"aad"), {}),
        ("shorter than tag", g.decrypt, (iv, good[:11], b"aad"), {}),
        ("empty ciphertext", g.decrypt, (iv, b"", b""), {}),
        ("key 0", cls, (b"",), {}),
        ("key 15", cls, (k[:15],), {}),
        ("key 17", cls, (k + b"\0",), {}),
        ("key 24", cls, (k + k[:8],), {}),
        ("key 32", cls, (k + k,), {}),
        ("key None", cls, (None,), {}),
        ("key str", cls, ("0123456789abcdef",), {}),
        ("key int", cls, (16,), {}),
        ("iv 0", g.encrypt, (b"", b"", b""), {}),
        ("iv 11", g.encrypt, (iv[:11], b"x", b""), {}),
        ("iv 13", g.decrypt, (iv + b"\0", good, b"aad"), {}),
        ("iv 16", g.encrypt, (bytes(16), b"x", b""), {}),
        ("tag_len 17", g.encrypt, (iv, b"x", b""), {"tag_len": 17}),
        ("tag_len 3", g.encrypt, (iv, b"x", b""), {"tag_len": 3}),
        ("tag_len -1", g.decrypt, (iv, good, b"aad"), {"tag_len": -1}),
        ("plaintext None", g.encrypt, (iv, None, b""), {}),
        ("plaintext int", g.encrypt, (iv, 5, b""), {}),
        ("plaintext list", g.encrypt, (iv, [1, 2], b""), {}),
        ("aad str", g.encrypt, (iv, b"", "aad"), {}),
        ("iv None", g.decrypt, (None, good, b"aad"), {}),
        ("missing aad", g.encrypt, (iv, b"x"), {}),
        ("out bytes", g.encrypt_into, (iv, b"x", b"", bytes(64)), {}),
        ("out read-only view", g.encrypt_into, (iv, b"x", b"", memoryview(bytes(64))), {}),
        ("out empty read-only", g.encrypt_into, (iv, b"", b"", memoryview(b"")), {"tag_len": 0}),
        ("out None", g.decrypt_into, (iv, good, b"aad", None), {}),
        ("out too small", g.encrypt_into, (iv, b"0123456789", b"", bytearray(21)), {}),
        ("out too small dec", g.decrypt_into, (iv, good, b"aad", bytearray(9)), {}),
        ("out overlaps ahead", g.encrypt_into, (iv, mv[:10], b"", mv[4:]), {}),
        ("out overlaps behind", g.encrypt_into, (iv, mv[8:18], b"", mv), {}),
        ("out overlaps dec", g.decrypt_into, (iv, good_rw, b"aad", memoryview(good_rw)[1:]), {}),
        ("bad tag into", g.decrypt_into, (iv, flipped, b"aad", bytearray(10)), {}),
    )


# What each error case must raise (a published rule, not a measurement): both
# implementations are held to this table, hence to each other.
_EXPECTED = {
    "key None": TypeError,
    "key str": TypeError,
    "key int": TypeError,
    "plaintext None": TypeError,
    "plaintext int": TypeError,
    "plaintext list": TypeError,
    "aad str": TypeError,
    "iv None": TypeError,
    "missing aad": TypeError,
    "out bytes": TypeError,
    "out read-only view": TypeError,
    "out empty read-only": TypeError,
    "out None": TypeError,
}


def test_error_cases_agree():
    tables = [_error_cases(cls) for _, cls in IMPLS]
    for i, case in enumerate(tables[0]):
        want = _EXPECTED.get(case[0], ValueError)
        for (name, _), table in zip(IMPLS, tables):
            label, fn, args, kwargs = table[i]
            got = _outcome(fn, *args, **kwargs)
            if got != ("raise", want):
                raise AssertionError("%s %s: %r, want %s" % (name, label, got, want.__name__))


def test_failed_decrypt_into_zeroes_out():
    k, iv = bytes(range(16)), bytes(12)
    for name, cls in IMPLS:
        g = cls(k)
        ct = bytearray(g.encrypt(iv, b"secret message!!", b""))
        ct[0] ^= 1
        out = bytearray(b"\xee" * 20)
        raises(ValueError, g.decrypt_into, iv, ct, b"", out)
        _eq(out, bytes(16) + b"\xee" * 4, name)
        raises(ValueError, g.decrypt_into, iv, ct, b"", ct)  # in place: plaintext never appears
        _eq(ct[:16], bytes(16), name + " in place")


def test_into_matches_allocating_calls():
    k, iv, aad = bytes(range(16)), bytes(range(12)), b"\x30" + bytes(16)
    for name, cls in IMPLS:
        g = cls(k)
        for n in (0, 1, 16, 33, 130, 300):
            pt = bytes((i * 13) & 0xFF for i in range(n))
            want = g.encrypt(iv, pt, aad)
            out = bytearray(n + 20)
            if g.encrypt_into(iv, pt, aad, out) != n + 12:
                raise AssertionError("encrypt_into length")
            _eq(out[: n + 12], want, "%s encrypt_into %d" % (name, n))
            _eq(out[n + 12 :], bytes(8), "%s no write past the result" % name)
            back = bytearray(n)
            if g.decrypt_into(iv, want, aad, memoryview(back)) != n:
                raise AssertionError("decrypt_into length")
            _eq(back, pt, "%s decrypt_into %d" % (name, n))
            # in place, through a memoryview slice of a larger frame buffer
            frame = bytearray(5 + n + 12)
            frame[5 : 5 + n] = pt
            view = memoryview(frame)[5:]
            g.encrypt_into(iv, view[:n], aad, view)
            _eq(frame[5:], want, "%s in place encrypt %d" % (name, n))
            g.decrypt_into(iv, view, aad, view)
            _eq(frame[5 : 5 + n], pt, "%s in place decrypt %d" % (name, n))


def test_buffer_types_and_keywords():
    k, iv = bytes(range(16)), bytes(range(12))
    pt, aad = bytes(range(40)), b"header"
    for name, cls in IMPLS:
        want = cls(k).encrypt(iv, pt, aad)
        # array("H", b) holds b's raw bytes: both read typed arrays as raw bytes
        for conv in (bytes, bytearray, memoryview, lambda b: array("B", b), lambda b: array("H", b)):
            g = cls(conv(k))
            _eq(g.encrypt(conv(iv), conv(pt), conv(aad)), want, name + " buffer type")
            _eq(g.decrypt(conv(iv), conv(want), conv(aad)), pt, name + " buffer type")
        _eq(cls(k).encrypt(iv=iv, plaintext=pt, aad=aad, tag_len=12), want, name + " keywords")
        _eq(cls(k).decrypt(iv, want[:-4], aad, tag_len=8), pt, name + " tag_len keyword")
        _eq(cls(k).decrypt(iv=iv, ciphertext=want, aad=aad), pt, name + " keywords")
        out = bytearray(len(want))
        cls(k).encrypt_into(iv=iv, plaintext=pt, aad=aad, out=out, tag_len=12)
        _eq(out, want, name + " keywords into")
        out = array("B", bytes(len(pt)))
        cls(k).decrypt_into(iv, want, aad, out)
        _eq(bytes(out), pt, name + " array out")


def test_truncated_tags_are_prefixes():
    # NIST SP 800-38D 5.2.1.2: a t-byte tag is the leftmost t bytes of the full tag.
    k, iv = bytes(range(16)), bytes(range(12))
    for name, cls in IMPLS:
        g = cls(k)
        full = g.encrypt(iv, b"abc", b"x", 16)
        for t in range(4, 17):
            _eq(g.encrypt(iv, b"abc", b"x", t), full[: 3 + t], "%s tag_len %d" % (name, t))
            _eq(g.decrypt(iv, full[: 3 + t], b"x", t), b"abc", name)


def test_into_allocates_nothing():
    k, iv, aad = bytes(range(16)), bytes(range(12)), b"\x30" + bytes(16)
    pt = bytes(200)
    for name, cls in IMPLS:
        g = cls(k)
        out = bytearray(212)
        back = bytearray(200)
        head = memoryview(out)[:200]
        g.encrypt_into(iv, pt, aad, out)  # warm up
        micropython.heap_lock()
        try:
            g.encrypt_into(iv, pt, aad, out)
            g.decrypt_into(iv, out, aad, back)
            g.encrypt_into(iv, head, aad, out)  # in place
        finally:
            micropython.heap_unlock()
        _eq(back, pt, name)


def test_many_keys_are_released():
    # The C object frees mbedTLS's context in __del__; thousands must come and go.
    for name, cls in IMPLS:
        for i in range(3000):
            cls(bytes([i & 0xFF]) * 16).encrypt(bytes(12), b"x", b"")
        gc.collect()


def test_facade_picks_the_c_module_unless_told():
    from dlms import gcm

    forced = os.getenv("DLMS_GCM") == "python"
    want = "python" if forced or _dlmsgcm is None else "c"
    if gcm.IMPLEMENTATION != want:
        raise AssertionError("IMPLEMENTATION %s, want %s" % (gcm.IMPLEMENTATION, want))
    expect_cls = dlms._gcm.AESGCM if want == "python" else _dlmsgcm.AESGCM
    if gcm.AESGCM is not expect_cls:
        raise AssertionError("facade exports the wrong class")

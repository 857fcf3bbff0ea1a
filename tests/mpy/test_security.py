# Security suite 0 (dlms/security.py) and the key set (dlms/keys.py): published
# vectors (Green Book Table 40, Table 43 HLS-GMAC, the ciphered AARQ, RFC 3394),
# counters refused when replayed, stale or equal, forged and mis-keyed APDUs
# refused without consuming a counter, answers in the form of the request.
import struct

from testutil import load_vectors, raises, unhex

from dlms import counters, acse, keys, keywrap, security
from dlms.counters import OwnCounter, PeerCounter
from dlms.errors import AccessError
from dlms.security import (CipherSession, SecurityContext, SecurityError, DECIPHERING_ERROR,
                           INVOCATION_COUNTER_ERROR)

GB_ST = unhex("4D4D4D0000BC614E")       # Green Book example system title
CLIENT_ST = unhex("4D4D4D0000000001")   # Table 43 client system title
OTHER_ST = unhex("4D4D4D0000000002")
EK = keys.TEST_KEYS["ek"]
AK = keys.TEST_KEYS["ak"]
BK = keys.TEST_KEYS["bk"]
GET_CLOCK = unhex("C0010000080000010000FF0200")   # get-request-normal, clock attribute 2
GET_RESPONSE = unhex("C401C1000600000001")        # get-response-normal, double-long-unsigned 1


class MemStore:
    """Just enough of adapters.store.Store for the counters: in RAM."""

    def __init__(self):
        self.records = {}

    def get(self, name):
        return self.records.get(name)

    def load(self, name):
        return self.records.get(name), 0

    def put(self, name, payload):
        self.records[name] = bytes(payload)

    def exists(self, name):
        return name in self.records


class FixedCounter:
    """An own counter that hands out given values (to reproduce vectors)."""

    def __init__(self, *values):
        self.values = list(values)

    def next(self):
        return self.values.pop(0)


class FakeAarq:
    def __init__(self, calling_ap_title, user_information):
        self.calling_ap_title = calling_ap_title
        self.user_information = user_information


def _vector(vid):
    for v in load_vectors("gcm_dlms")["vectors"]:
        if v["id"] == vid:
            return v
    raise KeyError(vid)


def _ctx(server_st=OTHER_ST, own=None, policy=security.POLICY_AUTHENTICATED_ENCRYPTED, urandom=None):
    store = MemStore()
    peers = {"ek": PeerCounter(store, "ic_ek"), "bk": PeerCounter(store, "ic_bk")}
    return SecurityContext(dict(keys.TEST_KEYS), server_st, own or OwnCounter(store, "own_ek", 10),
                           peers, policy, urandom)


def _frame(tag, content, system_title=None):
    out = bytearray((tag,))
    if system_title is not None:
        out.append(len(system_title))
        out.extend(system_title)
    out.append(len(content))
    out.extend(content)
    return bytes(out)


def _client_apdu(tag, ic, plain=GET_CLOCK, sc=0x30, key=EK, st=GB_ST, general_st=None):
    return _frame(tag, security.protect(sc, key, AK, st, ic, plain), general_st)


def _session(ctx=None, client_st=GB_ST):
    ctx = ctx or _ctx()
    return ctx, CipherSession(ctx, client_st)


def _reply_content(reply, general):
    # -> (tag, system title or None, SC||IC||out)
    tag = reply[0]
    pos = 1
    st = None
    if general:
        st = reply[2:2 + reply[1]]
        pos = 2 + reply[1]
    n = reply[pos]
    if n & 0x80:
        raise AssertionError("short lengths only in these tests")
    assert len(reply) == pos + 1 + n
    return tag, st, reply[pos + 1:]


# --- security header: Green Book Table 40 -----------------------------------

def test_protect_table40_vectors():
    for sc in ("10", "20", "30"):
        v = _vector("GB-T40-glo-get-request-SC" + sc)
        content = security.protect(int(sc, 16), unhex(v["block_cipher_key"]), unhex(v["authentication_key"]),
                                   unhex(v["system_title"]), int(v["invocation_counter"], 16),
                                   unhex(v["plaintext_apdu"]))
        expected = unhex(v["expected_ciphered_apdu"])
        assert _frame(expected[0], content) == expected, sc


def test_unprotect_table40_vectors():
    for sc in ("10", "20", "30"):
        v = _vector("GB-T40-glo-get-request-SC" + sc)
        apdu = unhex(v["expected_ciphered_apdu"])
        got = security.unprotect(unhex(v["block_cipher_key"]), unhex(v["authentication_key"]),
                                 unhex(v["system_title"]), apdu[2:])
        assert got == (int(sc, 16), 0x01234567, unhex(v["plaintext_apdu"])), sc


def test_protect_third_party_sc30_vector():
    v = _vector("dlms-cli-README-SC30")
    content = security.protect(0x30, unhex(v["block_cipher_key"]), unhex(v["authentication_key"]),
                               unhex(v["system_title"]), 0x80000001, unhex(v["plaintext_apdu"]))
    assert _frame(0xC8, content) == unhex(v["expected_ciphered_apdu"])


def test_unprotect_tampered_tag_rejected():
    apdu = bytearray(unhex(_vector("GB-T40-glo-get-request-SC30")["expected_ciphered_apdu"]))
    apdu[-1] ^= 1
    e = raises(SecurityError, security.unprotect, EK, AK, GB_ST, bytes(apdu[2:]))
    assert e.kind == DECIPHERING_ERROR
    apdu = bytearray(unhex(_vector("GB-T40-glo-get-request-SC10")["expected_ciphered_apdu"]))
    apdu[8] ^= 1   # the plaintext of an authenticated-only APDU is covered too
    assert raises(SecurityError, security.unprotect, EK, AK, GB_ST, bytes(apdu[2:])).kind == DECIPHERING_ERROR


def test_unprotect_wrong_key_or_system_title_rejected():
    content = unhex(_vector("GB-T40-glo-get-request-SC30")["expected_ciphered_apdu"])[2:]
    raises(SecurityError, security.unprotect, BK, AK, GB_ST, content)
    raises(SecurityError, security.unprotect, EK, BK, GB_ST, content)
    raises(SecurityError, security.unprotect, EK, AK, OTHER_ST, content)


def test_unprotect_bad_sc_or_short_rejected():
    good = unhex(_vector("GB-T40-glo-get-request-SC30")["expected_ciphered_apdu"])[2:]
    for sc in (0x31, 0xB0, 0x00, 0x40):   # suite 1, compression, no protection
        raises(SecurityError, security.unprotect, EK, AK, GB_ST, bytes((sc,)) + good[1:])
    for n in (0, 1, 4, 5, 16):             # no header, no room for the tag
        raises(SecurityError, security.unprotect, EK, AK, GB_ST, good[:n])


# --- sessions: service-specific, general, dedicated ------------------------

def test_session_unwraps_green_book_glo_get_request():
    ctx, s = _session()
    apdu = unhex(_vector("GB-T40-glo-get-request-SC30")["expected_ciphered_apdu"])
    plain, form = s.unwrap(apdu)
    assert plain == GET_CLOCK
    assert ctx.peer_counters["ek"].value == 0x01234567


def test_service_specific_request_answered_service_specific():
    ctx, s = _session()
    plain, form = s.unwrap(_client_apdu(0xC8, 5))
    reply = s.wrap(GET_RESPONSE, form)
    tag, _, content = _reply_content(reply, False)
    assert tag == 0xCC
    sc, ic, pt = security.unprotect(EK, AK, OTHER_ST, content)
    assert (sc, pt) == (0x30, GET_RESPONSE) and ic >= 1
    # set and action map to their own response tags
    _, form = s.unwrap(_client_apdu(0xC9, 6, unhex("C1010000080000010000FF02000900")))
    assert s.wrap(unhex("C5010000"), form)[0] == 0xCD
    _, form = s.unwrap(_client_apdu(0xCB, 7, unhex("C3010000080000010000FF0100")))
    assert s.wrap(unhex("C701000000"), form)[0] == 0xCF


def test_each_reply_has_a_fresh_increasing_counter():
    ctx, s = _session()
    _, form = s.unwrap(_client_apdu(0xC8, 1))
    seen = []
    for _ in range(25):   # crosses several reserve blocks of the own counter (10)
        content = _reply_content(s.wrap(GET_RESPONSE, form), False)[2]
        seen.append(security.unprotect(EK, AK, OTHER_ST, content)[1])
    assert all(b > a for a, b in zip(seen, seen[1:])) and seen[0] >= 1


def test_replayed_apdu_rejected():
    ctx, s = _session()
    apdu = _client_apdu(0xC8, 100)
    s.unwrap(apdu)
    e = raises(SecurityError, s.unwrap, apdu)
    assert e.kind == INVOCATION_COUNTER_ERROR and e.expected == 101


def test_stale_and_equal_counters_rejected():
    ctx, s = _session()
    s.unwrap(_client_apdu(0xC8, 100))
    e = raises(SecurityError, s.unwrap, _client_apdu(0xC8, 99))
    assert e.kind == INVOCATION_COUNTER_ERROR
    e = raises(SecurityError, s.unwrap, _client_apdu(0xC8, 100, unhex("C0010100080000010000FF0200")))
    assert e.kind == INVOCATION_COUNTER_ERROR
    s.unwrap(_client_apdu(0xC8, 101))


def test_counter_survives_the_association():
    # One counter per key: a new association does not start it again.
    ctx, s = _session()
    s.unwrap(_client_apdu(0xC8, 50))
    s2 = CipherSession(ctx, GB_ST)
    assert raises(SecurityError, s2.unwrap, _client_apdu(0xC8, 50)).kind == INVOCATION_COUNTER_ERROR


def test_forged_apdu_does_not_consume_counter():
    ctx, s = _session()
    apdu = bytearray(_client_apdu(0xC8, 7))
    apdu[-3] ^= 0x40
    assert raises(SecurityError, s.unwrap, bytes(apdu)).kind == DECIPHERING_ERROR
    big = bytearray(_client_apdu(0xC8, 0xFFFFFFFF))
    big[-1] ^= 1
    raises(SecurityError, s.unwrap, bytes(big))
    assert ctx.peer_counters["ek"].value == 0
    assert s.unwrap(_client_apdu(0xC8, 7))[0] == GET_CLOCK


def test_wrong_key_rejected():
    ctx, s = _session()
    other = unhex("00112233445566778899AABBCCDDEEFF")
    assert raises(SecurityError, s.unwrap, _client_apdu(0xC8, 1, key=other)).kind == DECIPHERING_ERROR
    assert raises(SecurityError, s.unwrap, _client_apdu(0xC8, 2, st=CLIENT_ST)).kind == DECIPHERING_ERROR


def test_unprotected_or_weaker_requests_rejected():
    ctx, s = _session()
    for apdu in (GET_CLOCK, unhex("C101"), unhex("C3"), b"", unhex("DD00")):
        assert raises(SecurityError, s.unwrap, apdu).kind == DECIPHERING_ERROR
    for sc in (0x10, 0x20):    # policy: authenticated and encrypted
        assert raises(SecurityError, s.unwrap, _client_apdu(0xC8, 3, sc=sc)).kind == DECIPHERING_ERROR
    assert ctx.peer_counters["ek"].value == 0


def test_malformed_ciphered_apdus_rejected():
    ctx, s = _session()
    good = _client_apdu(0xC8, 9)
    for bad in (good[:1], good[:2], good[:-1], good + b"\x00", good[:1] + b"\x85" + good[2:],
                b"\xC8\x04\x30\x00\x00\x00", unhex("DB09") + GB_ST, unhex("DB08") + GB_ST):
        assert raises(SecurityError, s.unwrap, bad).kind == DECIPHERING_ERROR
    # a glo-get-request that holds a set-request
    e = raises(SecurityError, s.unwrap, _client_apdu(0xC8, 10, unhex("C1010000080000010000FF02000900")))
    assert e.kind == DECIPHERING_ERROR


def test_general_glo_round_trip_carries_system_titles():
    ctx, s = _session()
    apdu = _client_apdu(0xDB, 11, general_st=GB_ST)
    plain, form = s.unwrap(apdu)
    assert plain == GET_CLOCK
    reply = s.wrap(GET_RESPONSE, form)
    tag, st, content = _reply_content(reply, True)
    assert tag == 0xDB and st == OTHER_ST
    assert security.unprotect(EK, AK, st, content)[2] == GET_RESPONSE
    # an exception-response is never ciphered
    assert s.wrap(unhex("D80101"), form) == unhex("D80101")


def test_general_glo_from_another_system_title_refused():
    ctx, s = _session()
    apdu = security.protect(0x30, EK, AK, CLIENT_ST, 12, GET_CLOCK)
    assert raises(SecurityError, s.unwrap, _frame(0xDB, apdu, CLIENT_ST)).kind == DECIPHERING_ERROR
    # the meter's own system title is no better
    assert raises(SecurityError, s.unwrap, _client_apdu(0xDB, 13, general_st=OTHER_ST)).kind == DECIPHERING_ERROR


def test_general_glo_with_empty_system_title_uses_the_association_one():
    ctx, s = _session()
    plain, form = s.unwrap(_client_apdu(0xDB, 14, general_st=b""))
    assert plain == GET_CLOCK and s.wrap(GET_RESPONSE, form)[0] == 0xDB


def test_general_glo_data_notification_vector_deciphers():
    v = _vector("dlms-cosem-general-glo-ciphering-data-notification")
    apdu = unhex(v["expected_ciphered_apdu"])
    key = unhex(v["block_cipher_key"])
    sc, ic, plain = security.unprotect(key, key, apdu[2:10], apdu[11:])
    assert (sc, ic, plain) == (0x30, 0x1E5, unhex(v["plaintext_apdu"]))


def test_sc10_association_answers_authenticated_only():
    ctx, s = _session(_ctx(policy=security.POLICY_AUTHENTICATED))
    apdu = unhex(_vector("GB-T40-glo-get-request-SC10")["expected_ciphered_apdu"])
    plain, form = s.unwrap(apdu)
    assert plain == GET_CLOCK
    content = _reply_content(s.wrap(GET_RESPONSE, form), False)[2]
    assert content[0] == 0x10 and content[5:-12] == GET_RESPONSE
    assert security.unprotect(EK, AK, OTHER_ST, content)[2] == GET_RESPONSE


def test_broadcast_key_has_its_own_counter():
    ctx, s = _session()
    s.unwrap(_client_apdu(0xC8, 500))
    plain, form = s.unwrap(_client_apdu(0xC8, 1, sc=0x70, key=BK))
    assert plain == GET_CLOCK and ctx.peer_counters["bk"].value == 1
    assert ctx.peer_counters["ek"].value == 500
    assert raises(SecurityError, s.unwrap, _client_apdu(0xC8, 1, sc=0x70, key=BK)).kind == INVOCATION_COUNTER_ERROR
    assert raises(SecurityError, s.unwrap, _client_apdu(0xC8, 2, sc=0x70, key=EK)).kind == DECIPHERING_ERROR
    content = _reply_content(s.wrap(GET_RESPONSE, form), False)[2]
    assert content[0] == 0x30   # answered under the unicast key


def test_plain_policy_passes_plain_apdus():
    ctx, s = _session(_ctx(policy=security.POLICY_NONE))
    plain, form = s.unwrap(GET_CLOCK)
    assert plain == GET_CLOCK and form is None and s.wrap(GET_RESPONSE, form) == GET_RESPONSE


def test_session_refuses_bad_client_system_titles():
    ctx = _ctx()
    for st in (None, b"", b"1234567", b"123456789", OTHER_ST):
        raises(SecurityError, CipherSession, ctx, st)


# --- AARQ / AARE and the dedicated key -------------------------------------

def _gb_aarq():
    return acse.decode_aarq(unhex(_vector("GB-AARQ-glo-initiate-request-SC30")["enclosing_aarq"]))


def test_green_book_ciphered_aarq_deciphers():
    v = _vector("GB-AARQ-glo-initiate-request-SC30")
    aarq = _gb_aarq()
    assert aarq.user_information_ciphered and aarq.calling_ap_title == GB_ST
    ctx = _ctx()
    assert security.decipher_initiate_request(aarq, ctx) == unhex(v["plaintext_apdu"])
    assert ctx.peer_counters["ek"].value == 0x01234567
    # the same AARQ again is a replay
    e = raises(SecurityError, security.decipher_initiate_request, aarq, ctx)
    assert e.kind == INVOCATION_COUNTER_ERROR and e.expected == 0x01234568


def test_aarq_session_keeps_dedicated_key_and_serves_ded_apdus():
    ctx = _ctx()
    aarq = _gb_aarq()
    s = CipherSession(ctx, aarq.calling_ap_title)
    s.decipher_initiate_request(aarq)
    dk = unhex("00112233445566778899AABBCCDDEEFF")
    assert s.dedicated_key == dk
    plain, form = s.unwrap(_client_apdu(0xD0, 1, key=dk))    # own counter per dedicated key
    assert plain == GET_CLOCK
    tag, _, content = _reply_content(s.wrap(GET_RESPONSE, form), False)
    assert tag == 0xD4 and security.unprotect(dk, AK, OTHER_ST, content)[2] == GET_RESPONSE
    assert raises(SecurityError, s.unwrap, _client_apdu(0xD0, 1, key=dk)).kind == INVOCATION_COUNTER_ERROR
    assert raises(SecurityError, s.unwrap, _client_apdu(0xD0, 2, key=EK)).kind == DECIPHERING_ERROR
    # general-ded-ciphering answered in kind
    plain, form = s.unwrap(_client_apdu(0xDC, 3, key=dk, general_st=GB_ST))
    tag, st, content = _reply_content(s.wrap(GET_RESPONSE, form), True)
    assert tag == 0xDC and st == OTHER_ST and security.unprotect(dk, AK, st, content)[2] == GET_RESPONSE


def test_ded_apdu_without_dedicated_key_refused():
    ctx, s = _session()
    dk = unhex("00112233445566778899AABBCCDDEEFF")
    assert raises(SecurityError, s.unwrap, _client_apdu(0xD0, 1, key=dk)).kind == DECIPHERING_ERROR
    assert raises(SecurityError, s.unwrap, _client_apdu(0xDC, 1, key=dk, general_st=GB_ST)).kind == DECIPHERING_ERROR


def test_aarq_refusals():
    ctx = _ctx()
    plain_ui = unhex("01000000065F1F0400007E1F04B0")
    raises(SecurityError, security.decipher_initiate_request, FakeAarq(GB_ST, plain_ui), ctx)
    raises(SecurityError, security.decipher_initiate_request, FakeAarq(GB_ST, None), ctx)
    ui = _gb_aarq().user_information
    raises(SecurityError, security.decipher_initiate_request, FakeAarq(None, ui), ctx)
    raises(SecurityError, security.decipher_initiate_request, FakeAarq(CLIENT_ST, ui), ctx)
    raises(SecurityError, security.decipher_initiate_request, FakeAarq(GB_ST, ui[:-1]), ctx)
    raises(SecurityError, security.decipher_initiate_request, FakeAarq(GB_ST, ui + b"\x00"), ctx)
    # a client may not use the meter's own system title
    raises(SecurityError, security.decipher_initiate_request, _gb_aarq(), _ctx(server_st=GB_ST))
    # an authenticated-only AARQ is below the policy
    weak = _frame(0x21, security.protect(0x10, EK, AK, GB_ST, 1, plain_ui))
    raises(SecurityError, security.decipher_initiate_request, FakeAarq(GB_ST, weak), ctx)
    assert ctx.peer_counters["ek"].value == 0
    ok = _frame(0x21, security.protect(0x30, EK, AK, GB_ST, 1, plain_ui))
    assert security.decipher_initiate_request(FakeAarq(GB_ST, ok), ctx) == plain_ui


def test_initiate_response_matches_green_book_rlre_vector():
    v = _vector("RLRE-glo-initiate-response-SC30")
    ctx = _ctx(server_st=GB_ST, own=FixedCounter(0x01234567))
    s = CipherSession(ctx, CLIENT_ST)
    assert s.cipher_initiate_response(unhex(v["plaintext_apdu"])) == unhex(v["expected_ciphered_apdu"])


# --- HLS mechanism 5 (GMAC) ---------------------------------------------------

CTOS = unhex("4B35366956616759")
STOC = unhex("503677524A323146")


def _hls_session(own_values=(0x01234567,)):
    ctx = _ctx(server_st=GB_ST, own=FixedCounter(*own_values), urandom=lambda n: STOC)
    s = CipherSession(ctx, CLIENT_ST)
    return ctx, s


def _f_stoc(ic):
    return security.hls_f(EK, AK, CLIENT_ST, ic, STOC)


def test_hls_gmac_table43_both_directions():
    pass3 = _vector("GB-T43-HLS5-pass3-f_StoC")
    pass4 = _vector("GB-T43-HLS5-pass4-f_CtoS")
    ctx, s = _hls_session()
    assert s.hls_challenge(unhex(pass4["challenge"]), 16) == unhex(pass3["challenge"])
    f = s.verify_client_reply(unhex(pass3["expected_f"]))
    assert f == unhex(pass4["expected_f"])
    assert ctx.peer_counters["ek"].value == 1


def test_hls_wrong_reply_refused_once_and_for_all():
    pass3 = unhex(_vector("GB-T43-HLS5-pass3-f_StoC")["expected_f"])
    ctx, s = _hls_session()
    s.hls_challenge(CTOS)
    bad = bytearray(pass3)
    bad[-1] ^= 1
    assert raises(SecurityError, s.verify_client_reply, bytes(bad)).kind == DECIPHERING_ERROR
    raises(SecurityError, s.verify_client_reply, pass3)   # no second attempt on one challenge
    ctx, s = _hls_session()
    raises(SecurityError, s.verify_client_reply, pass3)   # no challenge at all
    for bad in (b"", pass3[:-1], pass3 + b"\x00", b"\x30" + pass3[1:]):
        ctx, s = _hls_session()
        s.hls_challenge(CTOS)
        raises(SecurityError, s.verify_client_reply, bad)


def test_hls_reply_with_wrong_key_refused():
    ctx, s = _hls_session()
    s.hls_challenge(CTOS)
    forged = security.hls_f(BK, AK, CLIENT_ST, 1, STOC)
    assert raises(SecurityError, s.verify_client_reply, forged).kind == DECIPHERING_ERROR


def test_hls_challenge_lengths():
    ctx = _ctx()
    s = CipherSession(ctx, GB_ST)
    a = s.hls_challenge(CTOS)
    b = s.hls_challenge(CTOS)
    assert len(a) == 32 and a != b
    assert len(s.hls_challenge(CTOS, 64)) == 64
    raises(SecurityError, s.hls_challenge, b"1234567")
    raises(SecurityError, s.hls_challenge, bytes(65))
    raises(SecurityError, s.hls_challenge, None)


def _associate(ctx, aarq_ic):
    # Ciphered AARQ (counter aarq_ic) then the session, as the server does.
    ui = _frame(0x21, security.protect(0x30, EK, AK, CLIENT_ST, aarq_ic, unhex("01000000065F1F0400007E1F04B0")))
    s = CipherSession(ctx, CLIENT_ST)
    s.decipher_initiate_request(FakeAarq(CLIENT_ST, ui))
    s.hls_challenge(CTOS)
    return s


def _carrier(ic, f):
    # glo-action-request: reply_to_HLS_authentication with f as its octet-string
    plain = unhex("C30181000F0000280000FF010109") + bytes((len(f),)) + f
    return _frame(0xCB, security.protect(0x30, EK, AK, CLIENT_ST, ic, plain))


def test_hls_counter_may_equal_the_carrier_counter():
    # dlms-cosem: f(StoC) takes the counter the carrying APDU then uses.
    ctx, _ = _hls_session((7,))
    s = _associate(ctx, 10)
    f = _f_stoc(11)
    s.unwrap(_carrier(11, f))
    assert s.verify_client_reply(f)[:5] == unhex("1000000007")
    assert ctx.peer_counters["ek"].value == 11


def test_hls_counter_may_sit_between_aarq_and_carrier():
    # gurux: f(StoC) takes counter n, the carrying APDU n + 1.
    ctx, _ = _hls_session((7,))
    s = _associate(ctx, 10)
    f = _f_stoc(11)
    s.unwrap(_carrier(12, f))
    s.verify_client_reply(f)
    assert ctx.peer_counters["ek"].value == 12


def test_hls_counter_older_than_accepted_refused():
    ctx, _ = _hls_session((7,))
    s = _associate(ctx, 10)
    f = _f_stoc(10)   # the AARQ's counter again
    s.unwrap(_carrier(11, f))
    assert raises(SecurityError, s.verify_client_reply, f).kind == INVOCATION_COUNTER_ERROR


def test_hls_counter_above_carrier_is_consumed():
    ctx, _ = _hls_session((7,))
    s = _associate(ctx, 10)
    f = _f_stoc(20)
    s.unwrap(_carrier(11, f))
    s.verify_client_reply(f)
    assert ctx.peer_counters["ek"].value == 20
    assert raises(SecurityError, s.unwrap, _carrier(15, f)).kind == INVOCATION_COUNTER_ERROR


# --- key set and global_key_transfer ---------------------------------------

def _kw(vid):
    for v in load_vectors("aes_keywrap_rfc3394")["vectors"]:
        if v["id"] == vid:
            return v
    raise KeyError(vid)


def _transfer(*entries):
    return (1, [(2, [(22, kid), (9, wrapped)]) for kid, wrapped in entries])


def test_key_transfer_rfc3394_vector_applied():
    v = _kw("RFC3394-4.1")
    assert unhex(v["kek"]) == keys.TEST_KEYS["kek"]
    old = dict(keys.TEST_KEYS)
    new = keys.apply_key_transfer(old, old["kek"], _transfer((0, unhex(v["wrapped"]))))
    assert new["ek"] == unhex(v["key_data"])
    assert old == keys.TEST_KEYS                 # the old set is untouched
    assert keys.replaced(old, new) == ["ek"]
    assert new["ak"] == old["ak"] and new["kek"] == old["kek"]


def test_key_transfer_several_keys_under_current_kek():
    old = dict(keys.TEST_KEYS)
    kek = old["kek"]
    want = {"ek": bytes(range(0x10, 0x20)), "bk": bytes(range(0x20, 0x30)),
            "ak": bytes(range(0x30, 0x40)), "kek": bytes(range(0x40, 0x50))}
    new = keys.apply_key_transfer(old, kek, _transfer(
        (3, keywrap.wrap(kek, want["kek"])), (0, keywrap.wrap(kek, want["ek"])),
        (1, keywrap.wrap(kek, want["bk"])), (2, keywrap.wrap(kek, want["ak"]))))
    for name in want:
        assert new[name] == want[name], name
    assert sorted(keys.replaced(old, new)) == ["ak", "bk", "ek", "kek"]


def test_key_transfer_bad_wrap_changes_nothing():
    old = dict(keys.TEST_KEYS)
    good = unhex(_kw("RFC3394-4.1")["wrapped"])
    bad = unhex(_kw("RFC3394-4.1-corrupted")["wrapped"])
    for data in (_transfer((0, good), (2, bad)), _transfer((0, bad)),
                 _transfer((0, keywrap.wrap(bytes(16), unhex("00112233445566778899AABBCCDDEEFF")))),
                 _transfer((0, good[:-8])), _transfer((0, good), (0, good)), _transfer((4, good)),
                 _transfer((0, keywrap.wrap(old["kek"], bytes(24))))):
        raises(AccessError, keys.apply_key_transfer, old, old["kek"], data)
        assert old == keys.TEST_KEYS
    for data in ((1, []), (2, []), (1, [(9, good)]), (1, [(2, [(22, 0)])]), (1, [(2, [(17, 0), (9, good)])])):
        raises(AccessError, keys.apply_key_transfer, old, old["kek"], data)
    assert old == keys.TEST_KEYS


def test_keys_record_round_trip():
    payload = keys.encode_keys(keys.TEST_KEYS)
    assert len(payload) == keys.PAYLOAD_LEN == 73 and payload[0] == 1
    assert payload[1:9] == GB_ST and payload[9:25] == EK and payload[25:41] == AK
    assert keys.decode_keys(payload) == keys.TEST_KEYS
    for bad in (payload[:-1], payload + b"\x00", b"\x02" + payload[1:], None):
        raises(ValueError, keys.decode_keys, bad)
    raises(ValueError, keys.encode_keys, dict(keys.TEST_KEYS, ek=bytes(15)))


def test_load_keys_sim_device_and_provisioned():
    assert keys.load_keys(MemStore(), {"sim": True}) == keys.TEST_KEYS
    assert keys.is_test_keys(keys.load_keys(MemStore(), {"sim": True}))
    assert keys.load_keys(MemStore(), {"sim": False}) is None
    assert keys.load_keys(MemStore(), {}) is None
    mine = dict(keys.TEST_KEYS, ek=bytes(range(1, 17)), ak=bytes(range(2, 18)), bk=bytes(range(3, 19)),
                kek=bytes(range(4, 20)), system_title=OTHER_ST)
    store = MemStore()
    keys.save_keys(store, mine)
    for board in ({}, {"sim": True}):
        assert keys.load_keys(store, board) == mine
    assert not keys.is_test_keys(mine)
    store.records["keys"] = b"\x01garbage"        # unreadable: no fallback, not even on the simulator
    assert keys.load_keys(store, {"sim": True}) is None


def test_load_keys_through_the_real_store():
    import os
    from adapters.store import Store
    d = "/tmp/test_security_%d" % struct.unpack("<I", os.urandom(4))[0]
    store = Store(d)
    keys.save_keys(store, keys.TEST_KEYS)
    assert keys.load_keys(Store(d), {}) == keys.TEST_KEYS
    for name in ("keys.a", "keys.b"):
        try:
            os.remove(d + "/" + name)
        except OSError:
            pass
    os.rmdir(d)


# --- the meter's context from its store ----------------------------------------

def test_load_security_from_store():
    st = MemStore()
    assert security.load_security(st, {"sim": False}) is None          # device, no keys
    ctx = security.load_security(st, {"sim": True})
    assert ctx.keys == keys.TEST_KEYS and ctx.system_title == keys.TEST_KEYS["system_title"]
    assert ctx.policy == security.POLICY_AUTHENTICATED_ENCRYPTED and ctx.store is st
    assert ctx.own_counter.next() == 1 and ctx.expected_counter() == 1  # never 0
    ctx.accept_counter("ek", 5)
    st.put(security.POLICY_RECORD, b"\x10")
    again = security.load_security(st, {"sim": True})
    # After a restart the peer counter skips the reads that may not have reached flash.
    span = counters.PeerCounter.LAZY_SPAN
    assert again.expected_counter() == 6 + span and again.own_counter.next() > 1 and again.policy == 0x10
    st.put(security.POLICY_RECORD, b"\x07")                             # not a policy
    assert security.load_security(st, {"sim": True}).policy == 0x30
    provisioned = dict(keys.TEST_KEYS, ek=bytes(16))
    keys.save_keys(st, provisioned)
    assert security.load_security(st, {"sim": False}).keys == provisioned


def test_replace_keys_resets_only_replaced_counters():
    ctx = _ctx()
    ctx.own_counter.next()
    ctx.accept_counter("ek", 9)
    ctx.accept_counter("bk", 4)
    assert ctx.replace_keys(dict(keys.TEST_KEYS, bk=bytes(16))) == ["bk"]
    assert ctx.peer_counters["bk"].value == 0 and ctx.expected_counter() == 10 and ctx.own_counter.value == 2
    assert ctx.replace_keys(dict(keys.TEST_KEYS, ek=bytes(16), bk=bytes(16))) == ["ek"]
    assert ctx.own_counter.value == 1 and ctx.expected_counter() == 1
    assert ctx.cipher("ek") is not None and ctx.keys["ek"] == bytes(16)


def test_describe_keys():
    assert "TEST KEYS" in keys.describe_keys(keys.TEST_KEYS)
    assert "NO KEYS" in keys.describe_keys(None)
    assert "4D4D4D0000000042" in keys.describe_keys(dict(keys.TEST_KEYS, system_title=unhex("4D4D4D0000000042"),
                                                         ek=bytes(16), ak=bytes(16), bk=bytes(16), kek=bytes(16)))



def test_lengths_in_every_form_and_truncation():
    # unwrap reads short-form lengths in place and hands the others to the A-XDR
    # parser: a request of 200 octets (long form 0x81 nn), and short ones written with
    # a needless long form (0x82 00 nn, also for the system title), open alike; cut or
    # padded ones are refused without consuming a counter.
    from dlms.axdr import encode_length
    set_big = unhex("C101C1000100002B0100FF0200") + b"\x09\x81\xb4" + bytes(180)
    ctx, s = _session()
    ic = 0
    for plain, tag in ((set_big, 0xC9), (set_big, 0xDB), (GET_CLOCK, 0xC8), (GET_CLOCK, 0xDB)):
        for short in (True, False):
            ic += 1
            content = security.protect(0x30, EK, AK, GB_ST, ic, plain)
            n = len(content)
            length = encode_length(n) if short else b"\x82" + struct.pack(">H", n)
            head = bytes((tag,))
            if tag == 0xDB:
                head += (b"\x08" if short else b"\x82\x00\x08") + GB_ST
            apdu = head + length + content
            assert raises(SecurityError, s.unwrap, apdu[:-1]).kind == DECIPHERING_ERROR
            assert raises(SecurityError, s.unwrap, apdu + b"\x00").kind == DECIPHERING_ERROR
            got, form = s.unwrap(apdu)
            assert got == plain and form[0] == (1 if tag == 0xDB else 0), (tag, short)
    assert ctx.peer_counters["ek"].value == ic

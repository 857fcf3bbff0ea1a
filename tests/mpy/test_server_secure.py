# The server with security (dlms/server.py + dlms/security.py + the real object
# table): the management client's ciphered AARQ and HLS-GMAC pass 3/4 (Green Book
# Table 43), ciphered GET/SET/ACTION in every form, counters, refusals with their
# AARE diagnostics and exception-responses, the security event log, the lock-out,
# global_key_transfer and security_activate end to end, persistence across restarts.
from testutil import value, load_vectors, unhex
from test_store import TempDir

from adapters.store import Store
from cosem.base import obis
from cosem.table import build_objects
from dlms import acse, apdu, ber, errors, keys, keywrap, security
from dlms import axdr
from dlms.axdr import decode_data, decode_length
from dlms.security import SecurityContext
from dlms.server import DlmsServer
from dlms.counters import PeerCounter

GB_ST = unhex("4D4D4D0000BC614E")       # the meter (test keys)
CLIENT_ST = unhex("4D4D4D0000000001")   # Table 43 client
EK = keys.TEST_KEYS["ek"]
AK = keys.TEST_KEYS["ak"]
KEK = keys.TEST_KEYS["kek"]
DK = unhex("00112233445566778899AABBCCDDEEFF")
CTOS = unhex("4B35366956616759")        # Table 43 'K56iVagY'
STOC = unhex("503677524A323146")        # Table 43 'P6wRJ21F'
CONFIG = {"ldn": b"MPY0000000000001", "max_pdu": 512, "lls_password": b"12345678",
          "hdlc": {"physical": 16, "logical": 1, "max_info": 128, "window": 1, "inactivity_s": 120}}
MANAGEMENT, PUBLIC = 1, 16

GET_ENERGY = unhex("C001C100030100010800FF0200")
GET_IC = unhex("C001C1000100002B0100FF0200")
GET_POLICY = unhex("C001C100400000 2B0000FF0200")
SECURITY_LOG = obis("0-0:99.98.1.255")


def _vector(vid):
    for v in load_vectors("gcm_dlms")["vectors"]:
        if v["id"] == vid:
            return v
    raise KeyError(vid)


class FakeClock:
    def __init__(self, t=800000000):
        self.t = t

    def now(self):
        return self.t

    def set(self, seconds):
        self.t = seconds


class Meter:
    """The meter as main.py builds it, on a store in `path`."""

    def __init__(self, path, board=None, context=None):
        self.clock = FakeClock()
        self.store = Store(path)
        sec = context or security.load_security(self.store, board or {"sim": True}, lambda n: STOC)
        self.security = sec
        self.table = build_objects(CONFIG, self.clock, store=self.store, security=sec)
        self.server = DlmsServer(self.table, CONFIG, clock=self.clock, security=sec, events=self.table.security_log)

    def events(self):
        rows = value(self.table.security_log.get(2, None))[1]
        return [row[1][1][1] for row in rows]


def initiate(dedicated_key=None, conformance=0x401E1D, max_pdu=0x400):
    out = bytearray(b"\x01")
    if dedicated_key:
        out += bytes((1, len(dedicated_key))) + dedicated_key
    else:
        out.append(0)
    out += b"\x00\x00\x06\x5f\x1f\x04\x00" + conformance.to_bytes(3, "big") + max_pdu.to_bytes(2, "big")
    return bytes(out)


def frame(tag, content, system_title=None):
    out = bytearray((tag,))
    if system_title is not None:
        out += bytes((len(system_title),)) + system_title
    out += bytes((len(content),)) + content
    return bytes(out)


def aarq(ic, st=CLIENT_ST, context=3, mechanism=5, ctos=CTOS, key=EK, sc=0x30, plain=None):
    body = bytearray()
    ber.tlv_into(body, 0xA1, ber.tlv(ber.OBJECT_IDENTIFIER, ber.encode_oid((2, 16, 756, 5, 8, 1, context))))
    if st is not None:
        ber.tlv_into(body, 0xA6, ber.tlv(ber.OCTET_STRING, st))
    if mechanism:
        body += b"\x8a\x02\x07\x80"
        ber.tlv_into(body, 0x8B, ber.encode_oid((2, 16, 756, 5, 8, 2, mechanism)))
    if ctos is not None:
        ber.tlv_into(body, 0xAC, ber.tlv(0x80, ctos))
    plain = plain or initiate()
    ui = frame(0x21, security.protect(sc, key, AK, st or CLIENT_ST, ic, plain)) if context == 3 else plain
    ber.tlv_into(body, 0xBE, ber.tlv(ber.OCTET_STRING, ui))
    return ber.tlv(0x60, body)


def ciphered(tag, ic, plain, key=EK, sc=0x30):
    general = tag in (0xDB, 0xDC)
    return frame(tag, security.protect(sc, key, AK, CLIENT_ST, ic, plain), CLIENT_ST if general else None)


def deciphered(reply, key=EK):
    """(tag, plain) of a ciphered response."""
    pos = 1
    if reply[0] in (0xDB, 0xDC):
        if bytes(reply[2:2 + reply[1]]) != GB_ST:
            raise AssertionError("general ciphering without the meter's system title")
        pos = 2 + reply[1]
    n, pos = decode_length(reply, pos)
    assert pos + n == len(reply)
    return reply[0], security.unprotect(key, AK, GB_ST, reply[pos:])[2]


def action_hls(f):
    return unhex("C301C1000F0000280000FF0101") + bytes((9, len(f))) + f


def hls_associate(meter, ic=1, plain=None):
    """AARQ (counter ic) and pass 3/4 (carrier counter ic + 1, f counter ic + 1);
    -> (association, next client counter)."""
    assoc = meter.server.open_session(MANAGEMENT)
    aare = acse.decode_aare(assoc.handle_apdu(aarq(ic, plain=plain), 0))
    assert aare.result == acse.RESULT_ACCEPTED, aare.result_source_diagnostic
    f = security.hls_f(EK, AK, CLIENT_ST, ic + 1, aare.responding_authentication_value)
    tag, plain = deciphered(assoc.handle_apdu(ciphered(0xCB, ic + 1, action_hls(f)), 0))
    assert tag == 0xCF and plain[:4] == unhex("C701C100"), plain
    assert not assoc.pending
    return assoc, ic + 2


def refusal(reply):
    aare = acse.decode_aare(reply)
    return aare.result, aare.result_source_diagnostic


# --- AARQ and HLS pass 3/4 ---------------------------------------------------------

def test_management_association_table43_pass4():
    # Own counter pinned so that f(CtoS) is the Green Book's Table 43 pass-4 value.
    pass4 = _vector("GB-T43-HLS5-pass4-f_CtoS")
    with TempDir() as d:
        store = Store(d)
        own = FixedCounter(5, 0x01234567, 0x01234568)
        peers = {"ek": security.PeerCounter(store, "p_ek")}
        ctx = SecurityContext(dict(keys.TEST_KEYS), GB_ST, own, peers, urandom=lambda n: STOC, store=store)
        m = Meter(d, context=ctx)
        assoc = m.server.open_session(MANAGEMENT)
        aare = acse.decode_aare(assoc.handle_apdu(aarq(1), 0))
        assert aare.result == acse.RESULT_ACCEPTED
        assert aare.result_source_diagnostic == (acse.SOURCE_SERVICE_USER, acse.DIAG_AUTHENTICATION_REQUIRED)
        assert aare.responding_ap_title == GB_ST and aare.mechanism_name == acse.MECH_HLS_GMAC
        assert aare.responding_authentication_value == STOC and aare.responder_acse_requirements == 1
        ui = aare.user_information
        assert ui[0] == 0x28 and ui[2] == 0x30
        rsp = acse.decode_initiate_response(security.unprotect(EK, AK, GB_ST, ui[2:])[2])
        assert rsp.negotiated_conformance & acse.CONF_GENERAL_PROTECTION
        assert assoc.pending
        f = security.hls_f(EK, AK, CLIENT_ST, 2, STOC)
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xCB, 2, action_hls(f)), 0))
        assert plain == unhex("C701C100010009") + bytes((17,)) + unhex(pass4["expected_f"])
        assert not assoc.pending


class FixedCounter:
    def __init__(self, *values):
        self.values = list(values)

    def next(self):
        return self.values.pop(0)


def test_full_exchange_reads_energy_with_real_counters():
    with TempDir() as d:
        m = Meter(d)
        assoc, ic = hls_associate(m)
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xC8, ic, GET_ENERGY), 0))
        assert tag == 0xCC and plain == unhex("C401C100150000000000000000")
        # the meter's counters: never 0, increasing
        assert m.security.own_counter.value > 3


def test_only_hls_reply_before_pass3():
    with TempDir() as d:
        m = Meter(d)
        assoc = m.server.open_session(MANAGEMENT)
        assoc.handle_apdu(aarq(1), 0)
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xC8, 2, GET_ENERGY), 0))
        assert plain == bytes((0xC4, 1, 0xC1, 1, errors.READ_WRITE_DENIED))
        other_action = unhex("C301C100400000 2B0000FF01011600")
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xCB, 3, other_action), 0))
        assert plain == bytes((0xC7, 1, 0xC1, errors.READ_WRITE_DENIED, 0))
        # a plain APDU is never served on a ciphered association
        reply = assoc.handle_apdu(GET_ENERGY, 0)
        assert reply == bytes((0xD8, 1, apdu.SERVICE_DECIPHERING_ERROR))
        assert assoc.pending


def test_wrong_hls_reply_ends_association_and_is_logged():
    with TempDir() as d:
        m = Meter(d)
        assoc = m.server.open_session(MANAGEMENT)
        assoc.handle_apdu(aarq(1), 0)
        f = security.hls_f(keys.TEST_KEYS["bk"], AK, CLIENT_ST, 2, STOC)   # wrong key
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xCB, 2, action_hls(f)), 0))
        assert plain == bytes((0xC7, 1, 0xC1, errors.OTHER_REASON, 0))
        assert not assoc.associated
        assert m.events() == [security.EVENT_DECIPHERING_FAILURE, security.EVENT_AUTHENTICATION_FAILURE]
        assert assoc.handle_apdu(ciphered(0xC8, 3, GET_ENERGY), 0)[0] == 0xD8


def test_aarq_refusals_and_diagnostics():
    with TempDir() as d:
        m = Meter(d)
        s = m.server.open_session(MANAGEMENT)
        user, rej, trans = acse.SOURCE_SERVICE_USER, acse.RESULT_REJECTED_PERMANENT, acse.RESULT_REJECTED_TRANSIENT
        # plain LN context for the management client
        assert refusal(s.handle_apdu(aarq(1, context=1), 0)) == (rej, (user, acse.DIAG_APPLICATION_CONTEXT_NAME_NOT_SUPPORTED))
        # no security at all
        assert refusal(s.handle_apdu(aarq(1, mechanism=0, ctos=None), 0)) == (rej, (user, acse.DIAG_AUTHENTICATION_REQUIRED))
        assert refusal(s.handle_apdu(aarq(1, mechanism=1), 0)) == (rej, (user, acse.DIAG_AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED))
        assert refusal(s.handle_apdu(aarq(1, ctos=None), 0)) == (rej, (user, acse.DIAG_AUTHENTICATION_REQUIRED))
        assert refusal(s.handle_apdu(aarq(1, ctos=b"short"), 0)) == (rej, (user, acse.DIAG_AUTHENTICATION_FAILURE))
        # no or a wrong system title
        assert refusal(s.handle_apdu(aarq(1, st=GB_ST), 0)) == (rej, (user, acse.DIAG_CALLING_AP_TITLE_NOT_RECOGNIZED))
        # the two tries without security are logged as failed authentication
        failed = [security.EVENT_AUTHENTICATION_FAILURE] * 2
        assert m.events() == failed
        # wrong key: does not decipher -> no-reason-given with an InitiateError
        aare = acse.decode_aare(s.handle_apdu(aarq(5, key=keys.TEST_KEYS["bk"]), 0))
        assert (aare.result, aare.result_source_diagnostic) == (rej, (user, acse.DIAG_NO_REASON_GIVEN))
        assert aare.user_information == acse.encode_initiate_error(acse.INITIATE_ERROR_OTHER)
        assert m.events() == failed + [security.EVENT_DECIPHERING_FAILURE, security.EVENT_AUTHENTICATION_FAILURE]
        # a good AARQ, then the same counter again (replay) and an older one
        assert refusal(s.handle_apdu(aarq(5), 0))[0] == acse.RESULT_ACCEPTED
        assert refusal(s.handle_apdu(aarq(5), 0)) == (rej, (user, acse.DIAG_NO_REASON_GIVEN))
        assert refusal(s.handle_apdu(aarq(4), 0)) == (rej, (user, acse.DIAG_NO_REASON_GIVEN))
        assert m.events()[-2:] == [security.EVENT_REPLAY, security.EVENT_AUTHENTICATION_FAILURE]
        # a device board without keys refuses, transiently
        m2 = Meter(d + "x", board={"sim": False})
        assert m2.security is None
        assert refusal(m2.server.open_session(MANAGEMENT).handle_apdu(aarq(1), 0)) == (trans, (user, acse.DIAG_NO_REASON_GIVEN))


def test_initiate_error_of_a_ciphered_aarq_is_ciphered():
    with TempDir() as d:
        m = Meter(d)
        aare = acse.decode_aare(m.server.open_session(MANAGEMENT).handle_apdu(aarq(1, plain=initiate(conformance=0x100000)), 0))
        assert aare.result == acse.RESULT_REJECTED_PERMANENT
        ui = aare.user_information
        assert ui[0] == 0x2E
        assert security.unprotect(EK, AK, GB_ST, ui[2:])[2] == acse.encode_initiate_error(acse.INITIATE_ERROR_INCOMPATIBLE_CONFORMANCE)


def test_hls_lockout_grows_and_expires():
    with TempDir() as d:
        m = Meter(d)
        s = m.server.open_session(MANAGEMENT)
        bad = keys.TEST_KEYS["bk"]
        for ic in (1, 2, 3):
            assert refusal(s.handle_apdu(aarq(ic, key=bad), 0))[1][1] == acse.DIAG_NO_REASON_GIVEN
        locked = (acse.RESULT_REJECTED_TRANSIENT, (acse.SOURCE_SERVICE_USER, acse.DIAG_AUTHENTICATION_FAILURE))
        assert refusal(s.handle_apdu(aarq(10), 0)) == locked    # even with the right key
        m.clock.t += 2
        assert refusal(s.handle_apdu(aarq(11, key=bad), 0))[0] == acse.RESULT_REJECTED_PERMANENT
        m.clock.t += 3
        assert refusal(s.handle_apdu(aarq(12), 0)) == locked    # now 4 s
        m.clock.t += 1
        assert refusal(s.handle_apdu(aarq(13), 0))[0] == acse.RESULT_ACCEPTED
        # the public client is never locked out
        pub = m.server.open_session(PUBLIC)
        assert refusal(pub.handle_apdu(aarq(0, context=1, mechanism=0, ctos=None), 0))[0] == acse.RESULT_ACCEPTED
        # a completed HLS clears the count
        f = security.hls_f(EK, AK, CLIENT_ST, 14, STOC)
        s.handle_apdu(ciphered(0xCB, 14, action_hls(f)), 0)
        assert not s.pending and not m.server.authentication_locked()
        m.clock.t -= 100000    # a clock set backwards cannot lock anything


# --- ciphered xDLMS APDUs ------------------------------------------------------------

def test_every_ciphered_form_answered_in_kind():
    with TempDir() as d:
        m = Meter(d)
        assoc, ic = hls_associate(m, plain=initiate(DK))
        for tag, key, want in ((0xC8, EK, 0xCC), (0xD0, DK, 0xD4), (0xDB, EK, 0xDB), (0xDC, DK, 0xDC)):
            rtag, plain = deciphered(assoc.handle_apdu(ciphered(tag, ic, GET_ENERGY, key), 0), key)
            assert rtag == want and plain == unhex("C401C100150000000000000000"), (tag, rtag)
            ic += 1
        set_req = unhex("C101C100030100010800FF0200") + unhex("0600000001")
        for tag, key, want in ((0xC9, EK, 0xCD), (0xD1, DK, 0xD5)):
            rtag, plain = deciphered(assoc.handle_apdu(ciphered(tag, ic, set_req, key), 0), key)
            assert rtag == want and plain == bytes((0xC5, 1, 0xC1, errors.READ_WRITE_DENIED))
            ic += 1
        reset = unhex("C301C100030100010800FF01010F00")
        for tag, key, want in ((0xCB, EK, 0xCF), (0xD3, DK, 0xD7)):
            rtag, plain = deciphered(assoc.handle_apdu(ciphered(tag, ic, reset, key), 0), key)
            assert rtag == want and plain[:4] == bytes((0xC7, 1, 0xC1, errors.READ_WRITE_DENIED))
            ic += 1


def test_ciphered_block_transfer_fits_the_client_pdu():
    # The object list in blocks, ciphered in both forms: every APDU the client gets,
    # protection included, within min(client, meter) max PDU; blocks numbered from 1
    # and joining up to one A-XDR array (the meter builds them in place in one buffer).
    get_list = unhex("C001C1000F0000280000FF0200")
    for client_pdu in (1024, 100):
        for tag in (0xC8, 0xDB):
            with TempDir() as d:
                m = Meter(d)
                assoc, ic = hls_associate(m, plain=initiate(max_pdu=client_pdu))
                limit = min(client_pdu, CONFIG["max_pdu"])
                data, number, request = bytearray(), 0, get_list
                while True:
                    reply = assoc.handle_apdu(ciphered(tag, ic, request), 0)
                    ic += 1
                    assert len(reply) <= limit, (client_pdu, tag, len(reply))
                    plain = deciphered(reply)[1]
                    assert plain[:3] == unhex("C402C1") and plain[8] == 0, plain[:9]
                    number += 1
                    assert int.from_bytes(plain[4:8], "big") == number
                    n, pos = decode_length(plain, 9)
                    assert pos + n == len(plain)
                    data += plain[pos:]
                    if plain[3]:
                        break
                    request = unhex("C002C1") + number.to_bytes(4, "big")
                assert number > 1
                objects, end = decode_data(data)
                assert end == len(data) and objects[0] == axdr.ARRAY and len(objects[1]) > 20


def test_replayed_tampered_and_plain_apdus_refused_and_logged():
    with TempDir() as d:
        m = Meter(d)
        assoc, ic = hls_associate(m)
        ok = ciphered(0xC8, ic, GET_ENERGY)
        assert assoc.handle_apdu(ok, 0)[0] == 0xCC
        # replay: invocation-counter-error with the counter expected next
        assert assoc.handle_apdu(ok, 0) == bytes((0xD8, 1, 6)) + (ic + 1).to_bytes(4, "big")
        assert assoc.handle_apdu(ciphered(0xC8, ic - 1, GET_ENERGY), 0)[:3] == bytes((0xD8, 1, 6))
        bad = bytearray(ciphered(0xC8, ic + 1, GET_ENERGY))
        bad[-1] ^= 1
        assert assoc.handle_apdu(bytes(bad), 0) == bytes((0xD8, 1, 5))
        # the forged APDU consumed nothing: its counter is still good
        assert assoc.handle_apdu(ciphered(0xC8, ic + 1, GET_ENERGY), 0)[0] == 0xCC
        # authenticated only is below the policy
        assert assoc.handle_apdu(ciphered(0xC8, ic + 2, GET_ENERGY, sc=0x10), 0) == bytes((0xD8, 1, 5))
        assert m.events() == [security.EVENT_REPLAY, security.EVENT_REPLAY, security.EVENT_DECIPHERING_FAILURE,
                              security.EVENT_DECIPHERING_FAILURE]
        assert assoc.associated


def test_ciphered_apdus_without_ciphered_association():
    with TempDir() as d:
        m = Meter(d)
        s = m.server.open_session(MANAGEMENT)
        assert s.handle_apdu(ciphered(0xC8, 1, GET_ENERGY), 0) == bytes((0xD8, 1, 1))
        pub = m.server.open_session(PUBLIC)
        pub.handle_apdu(aarq(0, context=1, mechanism=0, ctos=None), 0)
        assert pub.handle_apdu(ciphered(0xDB, 1, GET_ENERGY), 0) == bytes((0xD8, 1, 1))


def test_public_client_reads_expected_counter():
    with TempDir() as d:
        m = Meter(d)
        pub = m.server.open_session(PUBLIC)
        pub.handle_apdu(aarq(0, context=1, mechanism=0, ctos=None), 0)
        assert pub.handle_apdu(GET_IC, 0) == unhex("C401C1000600000001")
        assoc, ic = hls_associate(m, ic=41)
        assert pub.handle_apdu(GET_IC, 0) == unhex("C401C100060000002B")   # 42 accepted -> 43
        # the public client sees neither the security setup nor the security log
        assert pub.handle_apdu(GET_POLICY, 0) == bytes((0xC4, 1, 0xC1, 1, errors.READ_WRITE_DENIED))


def test_counters_persist_across_restart():
    with TempDir() as d:
        m = Meter(d)
        assoc, ic = hls_associate(m, ic=7)
        own = m.security.own_counter.value
        m2 = Meter(d)   # power cut and restart on the same store
        assert m2.security.own_counter.value >= own
        # Counters that may not have reached flash (reads) are skipped after a restart.
        ic += PeerCounter.LAZY_SPAN
        assert m2.security.expected_counter() == ic
        s = m2.server.open_session(MANAGEMENT)
        assert refusal(s.handle_apdu(aarq(ic - 1), 0))[0] == acse.RESULT_REJECTED_PERMANENT
        assert refusal(s.handle_apdu(aarq(ic), 0))[0] == acse.RESULT_ACCEPTED


# --- security setup through the server ----------------------------------------------

def _key_transfer(*entries):
    items = b"".join(b"\x02\x02\x16" + bytes((kid,)) + b"\x09\x18" + keywrap.wrap(KEK, key) for kid, key in entries)
    return unhex("C301C100400000 2B0000FF0201") + b"\x01" + bytes((len(entries),)) + items


def test_global_key_transfer_applies_after_the_response():
    new_ek = unhex("A0A1A2A3A4A5A6A7A8A9AAABACADAEAF")
    with TempDir() as d:
        m = Meter(d)
        assoc, ic = hls_associate(m)
        reply = assoc.handle_apdu(ciphered(0xCB, ic, _key_transfer((0, new_ek))), 0)
        tag, plain = deciphered(reply, EK)    # the response still under the old key
        assert plain == bytes((0xC7, 1, 0xC1, 0, 0))
        assert m.security.keys["ek"] == new_ek
        assert m.events()[-1] == security.EVENT_KEY_CHANGED
        # counters of the replaced key start again; the old key no longer works
        assert m.security.expected_counter() == 1
        assert assoc.handle_apdu(ciphered(0xC8, ic + 1, GET_ENERGY), 0) == bytes((0xD8, 1, 5))
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xC8, 1, GET_ENERGY, new_ek), 0), new_ek)
        assert tag == 0xCC
        # persisted: a restart comes up with the new key
        assert Meter(d).security.keys["ek"] == new_ek


def test_bad_key_transfer_changes_nothing():
    with TempDir() as d:
        m = Meter(d)
        assoc, ic = hls_associate(m)
        request = bytearray(_key_transfer((0, DK), (2, DK)))
        request[-1] ^= 1   # the second wrap no longer unwraps
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xCB, ic, bytes(request)), 0))
        assert plain == bytes((0xC7, 1, 0xC1, errors.OTHER_REASON, 0))
        assert m.security.keys == keys.TEST_KEYS and not m.store.exists(keys.KEYS_RECORD)
        assert security.EVENT_KEY_CHANGED not in m.events()


def test_security_activate_only_strengthens():
    with TempDir() as d:
        m = Meter(d)
        assoc, ic = hls_associate(m)
        weaker = unhex("C301C100400000 2B0000FF01011624")
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xCB, ic, weaker), 0))
        assert plain == bytes((0xC7, 1, 0xC1, errors.OTHER_REASON, 0))
        same = unhex("C301C100400000 2B0000FF0101166C")
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xCB, ic + 1, same), 0))
        assert plain == bytes((0xC7, 1, 0xC1, 0, 0))
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xC8, ic + 2, GET_POLICY), 0))
        assert plain == unhex("C401C100166C")


def test_security_activate_strengthens_after_the_response_and_persists():
    with TempDir() as d:
        store = Store(d)
        store.put(security.POLICY_RECORD, b"\x10")   # authenticated only
        m = Meter(d)
        assert m.security.policy == 0x10
        assoc, ic = hls_associate(m)
        stronger = unhex("C301C100400000 2B0000FF0101166C")
        tag, plain = deciphered(assoc.handle_apdu(ciphered(0xCB, ic, stronger, sc=0x10), 0))
        assert plain[:4] == bytes((0xC7, 1, 0xC1, 0))
        assert m.security.policy == 0x30 and m.events()[-1] == security.EVENT_POLICY_CHANGED
        assert assoc.handle_apdu(ciphered(0xC8, ic + 1, GET_ENERGY, sc=0x10), 0) == bytes((0xD8, 1, 5))
        assert Meter(d).security.policy == 0x30


def test_lls_failure_logged_and_reader_cannot_call_security_methods():
    with TempDir() as d:
        m = Meter(d)
        reader = m.server.open_session(32)
        assert refusal(reader.handle_apdu(aarq(0, context=1, mechanism=1, ctos=b"wrong"), 0))[1][1] == \
            acse.DIAG_AUTHENTICATION_FAILURE
        assert m.events() == [security.EVENT_AUTHENTICATION_FAILURE]
        assert refusal(reader.handle_apdu(aarq(0, context=1, mechanism=1, ctos=b"12345678"), 0))[0] == \
            acse.RESULT_ACCEPTED
        for method in (b"\x01\x01\x16\x6c", _key_transfer((0, DK))[11:]):
            request = unhex("C301C100400000 2B0000FF") + method
            assert reader.handle_apdu(request, 0) == bytes((0xC7, 1, 0xC1, errors.READ_WRITE_DENIED, 0))
        assert reader.handle_apdu(GET_POLICY, 0) == unhex("C401C100166C")


def test_events_without_a_log_go_to_the_ram_ring():
    with TempDir() as d:
        store = Store(d)
        sec = security.load_security(store, {"sim": True}, lambda n: STOC)
        clock = FakeClock(1234)
        table = build_objects(CONFIG, clock, security=sec)
        assert table.security_log is None and table.find(SECURITY_LOG) is None
        server = DlmsServer(table, CONFIG, clock=clock, security=sec)
        server.open_session(MANAGEMENT).handle_apdu(aarq(1, key=DK), 0)
        assert server.events.entries == [(1234, security.EVENT_DECIPHERING_FAILURE),
                                         (1234, security.EVENT_AUTHENTICATION_FAILURE)]


# --- the pre-established broadcast client (102) --------------------------------------

BK = keys.TEST_KEYS["bk"]


def broadcast_set_time(ic, key=BK, sc=0x70, invoke=0x01, st=CLIENT_ST):
    """general-glo-ciphering of an unconfirmed SET of the clock's time (invoke-id 1,
    service class clear) under `key`; SC 0x70 = broadcast key, authenticated and
    encrypted."""
    when = unhex("07E80A0F02 0C0000 00 0000 00")  # 2024-10-15 12:00:00 UTC
    plain = unhex("C101") + bytes((invoke,)) + unhex("000800000100 00FF 02 00") + b"\x09\x0c" + when
    return frame(0xDB, security.protect(sc, key, AK, st, ic, plain), st)


def test_broadcast_set_is_applied_and_never_answered():
    with TempDir() as d:
        m = Meter(d)
        assoc = m.server.open_session(102)
        before = m.clock.now()
        assert assoc.handle_apdu(broadcast_set_time(5), 0) is None
        assert m.clock.now() != before and m.clock.now() % 86400 == 12 * 3600
        m.clock.set(before)
        assert assoc.handle_apdu(broadcast_set_time(5), 0) is None       # replayed counter
        assert assoc.handle_apdu(broadcast_set_time(6, key=EK, sc=0x30), 0) is None  # not the broadcast key
        assert assoc.handle_apdu(broadcast_set_time(7, invoke=0xC1), 0) is None     # confirmed: not for 102
        assert m.clock.now() == before
        assert m.events()[-1] == security.EVENT_REPLAY or security.EVENT_REPLAY in m.events()
        assert assoc.handle_apdu(broadcast_set_time(8), 0) is None
        assert m.clock.now() % 86400 == 12 * 3600


def test_broadcast_client_cannot_associate_nor_read():
    with TempDir() as d:
        m = Meter(d)
        assoc = m.server.open_session(102)
        assert assoc.handle_apdu(aarq(1), 0) is None
        assert assoc.handle_apdu(GET_ENERGY, 0) is None

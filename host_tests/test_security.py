"""Black-box security tests (issue 3): the management client (SAP 1, HLS mechanism 5
GMAC, LN-ciphering context, every APDU authenticated and encrypted) with gurux-dlms
(GXDLMSSecureClient) and dlms-cosem, over HDLC-over-TCP and the IEC 62056-47 wrapper.

What the libraries see is checked against the bytes themselves: every APDU after the
AARQ must carry a security header and open under the test keys with a third AES-GCM
(`cryptography`, secure_clients.decipher).

Refusals (wrong keys, replay, stale counter, tampered tag, unsecured management,
public write) each run on a meter of their own, so a failure cannot leave the HLS
lock-out of one test in the way of the next, and each ends with the meter serving the
next valid client. The association tests and the replay/tamper tests run with the
meter on the AES-GCM C module and forced onto the pure-Python twin (DLMS_GCM=python).
"""
import struct

import pytest
from dlms_cosem.exceptions import DlmsClientException
from gurux_dlms import GXDLMSException
from gurux_dlms.enums import Authentication, Security

from clients import CosemClient, GuruxClient, TcpLink
from meter import Meter
from secure_clients import (AK, COSEM_TITLE, EK, EXCEPTION_RESPONSE, GURUX_TITLE, KEK, KEY_AUTHENTICATION,
                            KEY_UNICAST, METER_TITLE, SECURITY_SETUP, SecureCosemClient, SecureGuruxClient,
                            LLC_RESPONSE, decipher, encipher, key_transfer_data, link_apdus, meter_counters, next_counter,
                            port_of, security_header, _hdlc_frames)

ENERGY_IMPORT = "1-0:1.8.0.255"
ENERGY_EXPORT = "1-0:2.8.0.255"
CLOCK = "0-0:1.0.0.255"
OBJECT_LIST = "0-0:40.0.0.255"
SECURITY_LOG = "0-0:99.98.1.255"
SECURITY_LOG_CODE = "0-0:96.11.1.255"

# Security event codes (IDIS; firmware/dlms/security.py).
AUTHENTICATION_FAILURE, DECIPHERING_FAILURE, REPLAY, KEY_CHANGED, ACCESS_DENIED = 46, 47, 48, 204, 206
# Exception-response service errors (Green Book 9.5).
SERVICE_DECIPHERING_ERROR, SERVICE_INVOCATION_COUNTER_ERROR = 5, 6
READ_WRITE_DENIED = 3
REJECTED_PERMANENT = 1

GCMS = ["c", "python"]
CLIENTS = [("gurux", "hdlc"), ("gurux", "wrapper"), ("cosem", "hdlc"), ("cosem", "wrapper")]
CLIENT_IDS = ["-".join(c) for c in CLIENTS]


# ---------------------------------------------------------------------------------
# Meters
# ---------------------------------------------------------------------------------
def _check_gcm(m, gcm):
    """The environment reached the meter process itself (run_meter.sh execs it)."""
    with open("/proc/%d/environ" % m.proc.pid, "rb") as f:
        forced = b"DLMS_GCM=python" in f.read().split(b"\0")
    assert forced == (gcm == "python"), "meter does not run on the %s GCM" % gcm


def _start(path, gcm, mp):
    if gcm == "python":
        mp.setenv("DLMS_GCM", "python")
    else:
        mp.delenv("DLMS_GCM", raising=False)
    m = Meter(path)
    m.start()
    _check_gcm(m, gcm)
    return m


@pytest.fixture(scope="module", params=GCMS, ids=lambda g: "gcm-" + g)
def shared_meter(request, tmp_path_factory):
    """One meter per GCM implementation for the tests that make no HLS failure."""
    with pytest.MonkeyPatch.context() as mp:
        m = _start(tmp_path_factory.mktemp("secure") / "state", request.param, mp)
    yield m
    m.stop()


@pytest.fixture(params=GCMS, ids=lambda g: "gcm-" + g)
def gcm_meter(request, tmp_path, monkeypatch):
    """A meter of the test's own, on each GCM implementation (the environment stays
    set for the test, so a restart keeps it)."""
    m = _start(tmp_path / "state", request.param, monkeypatch)
    yield m
    m.stop()


@pytest.fixture
def c_meter(tmp_path, monkeypatch):
    """A meter of the test's own on the C GCM module."""
    m = _start(tmp_path / "state", "c", monkeypatch)
    yield m
    m.stop()


# ---------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------
def management(library, meter, interface, **kw):
    """An unconnected management client of the library on the meter's port."""
    port = port_of(meter, interface)
    if library == "gurux":
        return SecureGuruxClient.tcp(port, interface, **kw)
    return SecureCosemClient(port, interface, **kw)


def read(c, obis, class_id, attr):
    if isinstance(c, SecureGuruxClient):
        return c.read(obis, class_id, attr)[0]
    return c.get(obis, class_id, attr)


def finish(c):
    """Release and close, whatever state the association is in."""
    try:
        c.release()
    finally:
        if isinstance(c, SecureGuruxClient):
            c.close()
        else:
            c.disconnect()


def close(c):
    if isinstance(c, SecureGuruxClient):
        c.close()
    else:
        try:
            c.disconnect()
        except Exception:
            pass


def aare_result(apdu):
    """(result, diagnostic) of an AARE (A2: result, A3: result-source-diagnostic)."""
    assert apdu[0] == 0x61, apdu.hex()
    pos, fields = 2 if apdu[1] < 0x80 else 2 + (apdu[1] & 0x7F), {}
    while pos < len(apdu):
        tag, n = apdu[pos], apdu[pos + 1]
        fields[tag] = apdu[pos + 2:pos + 2 + n]
        pos += 2 + n
    return fields[0xA2][-1], fields[0xA3][-1]


def assert_refused_association(c):
    """The association attempt fails, and the meter's answer is a refused AARE
    (never an accepted one the library happened to dislike)."""
    with pytest.raises((GXDLMSException, DlmsClientException)):
        c.connect()
    aares = [a for a in c.received_apdus() if a and a[0] == 0x61]
    assert len(aares) == 1, [a.hex() for a in c.received_apdus()]
    assert aare_result(aares[0])[0] == REJECTED_PERMANENT, aares[0].hex()
    close(c)
    return aares[0]


def security_log(meter, ek=EK, ak=AK):
    """(event codes of the security event log, its event code object) read by a valid
    management client; also proves the meter still serves one."""
    c = SecureCosemClient(meter.wrapper_port, "wrapper", ek=ek, ak=ak).connect()
    try:
        rows = c.get(SECURITY_LOG, 7, 2)
        code = c.get(SECURITY_LOG_CODE, 1, 2)
        assert c.get(SECURITY_LOG, 7, 7) == len(rows)  # entries in use
    finally:
        finish(c)
    assert all(len(r) == 2 and len(r[0]) == 12 for r in rows), rows  # (date-time, code)
    return [r[1] for r in rows], code


def assert_logged(meter, before, *codes):
    """The log grew by exactly `codes` (in order) since `before`; the code object
    shows the last of them."""
    after, last = security_log(meter)
    assert after[:len(before)] == before
    assert after[len(before):] == list(codes), (before, after)
    assert last == codes[-1]


def assert_serves(meter, library="gurux", interface="hdlc"):
    """The next valid management client associates and reads energy."""
    c = management(library, meter, interface).connect()
    try:
        assert isinstance(read(c, ENERGY_IMPORT, 3, 2), int)
    finally:
        finish(c)


def exception_service_error(reply):
    """service-error of an exception-response (D8 state-error service-error ...)."""
    assert reply is not None and reply[0] == EXCEPTION_RESPONSE, reply and reply.hex()
    return reply[2]


def client_title(c):
    return GURUX_TITLE if isinstance(c, SecureGuruxClient) else COSEM_TITLE


def ciphered_gets(c):
    """The ciphered GET requests the client sent (deciphered plaintext starts C0)."""
    out = []
    for a in c.sent_apdus():
        if security_header(a) is not None and a[0] != 0x60:
            if decipher(a, client_title(c))[0] == 0xC0:
                out.append(a)
    return out


def set_counter(c, value):
    if isinstance(c, SecureGuruxClient):
        c.counter = value
    else:
        c.dlms.client_invocation_counter = value


# ---------------------------------------------------------------------------------
# The management client: association, registers, object list
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("library,interface", CLIENTS, ids=CLIENT_IDS)
def test_management_reads_registers_and_object_list(shared_meter, library, interface):
    port = port_of(shared_meter, interface)
    with GuruxClient.tcp(port, interface) as public:
        public_energy = public.read(ENERGY_IMPORT, 3, 2)[0]
    # Small client PDU (and HDLC max info 128, gurux's default here): the object list
    # needs GET block transfer and, on HDLC, segmented frames.
    c = management(library, shared_meter, interface, max_pdu=256).connect()
    try:
        energy = read(c, ENERGY_IMPORT, 3, 2)
        assert isinstance(energy, int) and energy >= public_energy
        assert list(read(c, ENERGY_IMPORT, 3, 3)) == [-3, 30]  # Wh
        assert isinstance(read(c, ENERGY_EXPORT, 3, 2), int)
        assert list(read(c, ENERGY_EXPORT, 3, 3)) == [-3, 30]
        if library == "gurux":
            names = {o.logicalName for o in c.get_object_list()}
        else:
            names = {".".join(str(b) for b in row[2]) for row in c.get(OBJECT_LIST, 15, 2)}
        for name in ("1.0.1.8.0.255", "0.0.43.0.0.255", "0.0.43.1.0.255", "0.0.99.98.1.255", "0.0.1.0.0.255"):
            assert name in names
        assert len(names) > 30  # management sees everything
    finally:
        finish(c)

    # The wire: after the AARQ, every request and every answer is authenticated and
    # encrypted, and opens under the test keys with a third AES-GCM.
    sent, received = c.sent_apdus(), c.received_apdus()
    assert security_header(sent[0])[2] == 0x30  # the AARQ's glo-initiate-request
    assert security_header(received[0])[2] == 0x30  # the AARE's glo-initiate-response
    plain_answers = []
    for a in sent[1:-1]:  # between AARQ and RLRQ
        assert security_header(a)[2] == 0x30, a.hex()
        decipher(a, client_title(c))
    for a in received[1:-1]:
        assert security_header(a)[2] == 0x30, a.hex()
        plain_answers.append(decipher(a, METER_TITLE))
    blocks = [p for p in plain_answers if p[:2] == b"\xc4\x02"]  # get-response-with-datablock
    assert len(blocks) >= 4, [p[:2].hex() for p in plain_answers]
    if interface == "hdlc" and library == "gurux":
        frames = list(_hdlc_frames(b"".join(c.link.received)))
        assert any(seg for seg, _, _ in frames)  # segmented I-frames
        assert max(len(info) for _, _, info in frames) <= 128


@pytest.mark.parametrize("writer,reader", [(("gurux", "hdlc"), ("cosem", "wrapper")),
                                           (("cosem", "hdlc"), ("gurux", "wrapper"))],
                         ids=["gurux-sets-cosem-reads", "cosem-sets-gurux-reads"])
def test_time_zone_set_by_one_library_read_by_the_other(shared_meter, writer, reader):
    r = management(reader[0], shared_meter, reader[1]).connect()
    try:
        before = read(r, CLOCK, 8, 3)
    finally:
        finish(r)
    value = -120 if before != -120 else 60
    w = management(writer[0], shared_meter, writer[1]).connect()
    try:
        if writer[0] == "gurux":
            clock = w.make_object(CLOCK, 8)
            clock.timeZone = value
            w.write_object(clock, 3)
        else:
            response = w.set(CLOCK, 8, 3, b"\x10" + struct.pack(">h", value))  # long
            assert response.result.value == 0, response
    finally:
        finish(w)
    r = management(reader[0], shared_meter, reader[1]).connect()
    try:
        assert read(r, CLOCK, 8, 3) == value
    finally:
        finish(r)


# ---------------------------------------------------------------------------------
# Refused and logged, each followed by the next valid client
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("library,interface,keys", [
    ("gurux", "hdlc", {"ak": bytes(range(16, 32))}),
    ("cosem", "wrapper", {"ak": bytes(range(16, 32))}),
    ("gurux", "wrapper", {"ek": bytes(range(32, 48))}),
    ("cosem", "hdlc", {"ek": bytes(range(32, 48))}),
], ids=["wrong-ak-gurux-hdlc", "wrong-ak-cosem-wrapper", "wrong-ek-gurux-wrapper", "wrong-ek-cosem-hdlc"])
def test_wrong_key_is_refused_and_logged(c_meter, library, interface, keys):
    before, _ = security_log(c_meter)
    expected = next_counter(c_meter.wrapper_port)
    assert_refused_association(management(library, c_meter, interface, **keys))
    # The AARQ was not authentic: its counter is not consumed.
    assert next_counter(c_meter.wrapper_port) == expected
    assert_logged(c_meter, before, DECIPHERING_FAILURE, AUTHENTICATION_FAILURE)
    assert_serves(c_meter, library, interface)


@pytest.mark.parametrize("library,interface,below", [("gurux", "wrapper", 1), ("cosem", "hdlc", 1),
                                                     ("cosem", "wrapper", 7)],
                         ids=["equal-gurux-wrapper", "equal-cosem-hdlc", "below-cosem-wrapper"])
def test_stale_invocation_counter_is_refused_and_logged(c_meter, library, interface, below):
    assert_serves(c_meter, library, interface)  # some counters accepted
    for _ in range(3):
        assert_serves(c_meter, "gurux", "wrapper")
    before, _ = security_log(c_meter)
    expected = next_counter(c_meter.wrapper_port)
    stale = expected - below  # below = 1: the last counter accepted
    assert_refused_association(management(library, c_meter, interface, counter=stale))
    assert next_counter(c_meter.wrapper_port) == expected
    assert_logged(c_meter, before, REPLAY, AUTHENTICATION_FAILURE)
    assert_serves(c_meter, library, interface)


@pytest.mark.parametrize("library,interface", CLIENTS, ids=CLIENT_IDS)
def test_replayed_apdu_is_refused_and_logged(gcm_meter, library, interface):
    before, _ = security_log(gcm_meter)
    c = management(library, gcm_meter, interface).connect()
    try:
        assert isinstance(read(c, ENERGY_IMPORT, 3, 2), int)
        captured = ciphered_gets(c)[-1]
        answers = len(c.received_apdus())
        reply = c.send_apdu(captured)  # the same APDU, the same counter, again
        if reply is not None:  # exception-response (never ciphered), or no delivery
            assert exception_service_error(reply) == SERVICE_INVOCATION_COUNTER_ERROR
        assert all(a[0] == EXCEPTION_RESPONSE for a in c.received_apdus()[answers:])
        # The association goes on with the next counter.
        assert isinstance(read(c, ENERGY_IMPORT, 3, 2), int)
    finally:
        finish(c)
    assert_logged(gcm_meter, before, REPLAY)
    assert_serves(gcm_meter, library, interface)


@pytest.mark.parametrize("library,interface", CLIENTS, ids=CLIENT_IDS)
def test_tampered_tag_is_refused_and_logged(gcm_meter, library, interface):
    before, _ = security_log(gcm_meter)
    c = management(library, gcm_meter, interface).connect()
    try:
        read(c, ENERGY_IMPORT, 3, 2)
        template = ciphered_gets(c)[-1]
        title = client_title(c)
        last = max(security_header(a)[3] for a in c.sent_apdus() if security_header(a))
        fresh = encipher(decipher(template, title), title, last + 1, template[0] == 0xDB)
        assert len(fresh) == len(template) and fresh[:2] == template[:2]
        for position in (-1, -12):  # last and first octet of the 12-octet tag
            tampered = bytearray(fresh)
            tampered[position] ^= 0x01
            reply = c.send_apdu(bytes(tampered))
            assert exception_service_error(reply) == SERVICE_DECIPHERING_ERROR
        # A forged APDU consumes no counter: the untampered one is served.
        reply = c.send_apdu(fresh)
        assert reply[0] == {0xC8: 0xCC, 0xDB: 0xDB}[fresh[0]], reply.hex()  # in the request's form
        plain = decipher(reply, METER_TITLE)
        assert plain[:2] == b"\xc4\x01" and plain[3] == 0  # get-response-normal, data
        set_counter(c, last + 2)
        assert isinstance(read(c, ENERGY_IMPORT, 3, 2), int)
    finally:
        finish(c)
    assert_logged(gcm_meter, before, DECIPHERING_FAILURE, DECIPHERING_FAILURE)
    assert_serves(gcm_meter, library, interface)


@pytest.mark.parametrize("library,interface", [("gurux", "wrapper"), ("cosem", "hdlc")],
                         ids=["gurux-wrapper", "cosem-hdlc"])
def test_management_without_security_is_refused_and_logged(gcm_meter, library, interface):
    before, _ = security_log(gcm_meter)
    port = port_of(gcm_meter, interface)
    if library == "gurux":  # LN context, no authentication, no ciphering
        c = SecureGuruxClient(TcpLink("127.0.0.1", port), interface, authentication=Authentication.NONE,
                              security=Security.NONE)
    else:
        c = CosemClient(port, interface, client=1)  # NoSecurityAuthentication, LN context
        c.received_apdus = lambda: link_apdus(c.io.received, interface, LLC_RESPONSE)
    with pytest.raises((GXDLMSException, DlmsClientException)):
        c.connect()
    aare = [a for a in c.received_apdus() if a[:1] == b"\x61"]
    c.close() if library == "gurux" else c.disconnect()
    assert len(aare) == 1 and aare_result(aare[0])[0] == REJECTED_PERMANENT
    assert security_header(aare[0]) is None  # nothing ciphered for an unsecured AARQ
    assert_logged(gcm_meter, before, AUTHENTICATION_FAILURE)
    assert_serves(gcm_meter, library, interface)


@pytest.mark.parametrize("library,interface", [("gurux", "hdlc"), ("cosem", "wrapper")],
                         ids=["gurux-hdlc", "cosem-wrapper"])
def test_public_client_write_is_refused_and_logged(c_meter, library, interface):
    before, _ = security_log(c_meter)
    port = port_of(c_meter, interface)
    if library == "gurux":
        with GuruxClient.tcp(port, interface) as p:
            zone, clock = p.read(CLOCK, 8, 3)
            clock.timeZone = zone + 60
            with pytest.raises(GXDLMSException) as e:
                p.write_object(clock, 3)
            assert e.value.errorCode == READ_WRITE_DENIED
    else:
        with CosemClient(port, interface) as p:
            zone = p.get(CLOCK, 8, 3)
            response = p.set(CLOCK, 8, 3, b"\x10" + struct.pack(">h", zone + 60))
            assert response.result.value == READ_WRITE_DENIED
    assert_logged(c_meter, before, ACCESS_DENIED)
    c = management(library, c_meter, interface).connect()
    try:
        assert read(c, CLOCK, 8, 3) == zone  # unchanged, and the next valid client served
    finally:
        finish(c)


# ---------------------------------------------------------------------------------
# Key change through global_key_transfer
# ---------------------------------------------------------------------------------
NEW_EK = bytes(range(0x20, 0x30))
NEW_AK = bytes(range(0x40, 0x50))


def assert_keys_work(m, ek, ak):
    for library, interface in (("gurux", "wrapper"), ("cosem", "hdlc")):
        c = management(library, m, interface, ek=ek, ak=ak).connect()
        try:
            assert isinstance(read(c, ENERGY_IMPORT, 3, 2), int)
        finally:
            finish(c)


def test_key_change_through_global_key_transfer(c_meter):
    c = SecureCosemClient(c_meter.hdlc_port, "hdlc").connect()
    try:
        c.action(SECURITY_SETUP, 64, 2, key_transfer_data([(KEY_UNICAST, NEW_EK), (KEY_AUTHENTICATION, NEW_AK)]))
        answer = c.received_apdus()[-1]
    finally:
        finish(c)
    # Green Book 9.2.9: the action-response still goes out under the old keys.
    plain = decipher(answer, METER_TITLE, EK, AK)
    assert plain[:2] == b"\xc7\x01" and plain[3] == 0, plain.hex()
    for restart in (False, True):
        if restart:
            c_meter.restart()  # kill -9 and boot on the same state
        assert_keys_work(c_meter, NEW_EK, NEW_AK)
        assert_refused_association(management("gurux", c_meter, "hdlc"))  # the old keys
        assert_keys_work(c_meter, NEW_EK, NEW_AK)
    codes, _ = security_log(c_meter, NEW_EK, NEW_AK)
    # The change, then two refusals of the old keys (deciphering, authentication).
    assert codes == [KEY_CHANGED] + [DECIPHERING_FAILURE, AUTHENTICATION_FAILURE] * 2, codes


def test_key_transfer_under_a_wrong_kek_changes_nothing(c_meter):
    from dlms_cosem.client import ActionError

    c = SecureCosemClient(c_meter.wrapper_port, "wrapper").connect()
    try:
        with pytest.raises(ActionError):
            c.action(SECURITY_SETUP, 64, 2, key_transfer_data([(KEY_UNICAST, NEW_EK)], kek=bytes(16)))
        assert isinstance(read(c, ENERGY_IMPORT, 3, 2), int)
    finally:
        finish(c)
    assert_keys_work(c_meter, EK, AK)
    assert KEK != bytes(16)


# ---------------------------------------------------------------------------------
# Power cut: the meter's own invocation counter never goes back
# ---------------------------------------------------------------------------------
def test_meter_counter_only_grows_across_kill_9(c_meter):
    seen = []
    for round_ in range(3):
        first = None
        # gurux over the wrapper with many GETs (the first round crosses the
        # counter's reserved block of 1000), dlms-cosem over HDLC.
        g = SecureGuruxClient.tcp(c_meter.wrapper_port, "wrapper").connect()
        for _ in range(1100 if round_ == 0 else 5):
            read(g, ENERGY_IMPORT, 3, 2)
        finish(g)
        k = SecureCosemClient(c_meter.hdlc_port, "hdlc").connect()
        read(k, ENERGY_IMPORT, 3, 2)
        finish(k)
        now = []
        for client in (g, k):
            headers = [security_header(a)[3] for a in client.received_apdus() if security_header(a)]
            assert headers == sorted(headers) and len(set(headers)) == len(headers), headers
            now += meter_counters(client.received_apdus())
        first = meter_counters(g.received_apdus()[:1])[0]  # in the first AARE after the boot
        if seen:
            assert first > max(seen), (first, max(seen))
        assert len(set(seen + now)) == len(seen + now)  # no IV used twice
        seen += now
        c_meter.kill()  # power cut: no chance to write anything
        c_meter.start()

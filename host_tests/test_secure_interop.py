"""Black-box: the management client (HLS-5 GMAC, authenticated and encrypted APDUs) with
gurux-dlms (GXDLMSSecureClient, service-specific glo-* APDUs) and dlms-cosem (general-glo
ciphering), and the refusals, each followed by a client the meter still serves. The
meter runs once on the AES-GCM C module and once forced onto the pure-Python twin."""
import os

import pytest
from dlms_cosem import cosem, enumerations
from dlms_cosem.client import DlmsClient
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import HighLevelSecurityGmacAuthentication
from dlms_cosem.utils import parse_as_dlms_data
from gurux_dlms import GXDLMSClient, GXDLMSException
from gurux_dlms.enums import Authentication, InterfaceType

from clients import AK, EK, MANAGEMENT, GuruxClient, TcpLink, next_counter, secure
from meter import Meter

ENERGY = "1-0:1.8.0.255"
SECURITY_LOG_CODE = "0-0:96.11.1.255"
EXCEPTION_RESPONSE = 0xD8
CIPHERED_GET_RESPONSES = (0xCC, 0xDB)  # glo-get-response, general-glo-ciphering


def cosem_management(port, counter, ek=EK, title="4D4D4D0000000002"):
    io = BlockingTcpIO(host="127.0.0.1", port=port)
    return DlmsClient(transport=TcpTransport(client_logical_address=MANAGEMENT, server_logical_address=1, io=io),
                      authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
                      encryption_key=ek, authentication_key=AK, client_system_title=bytes.fromhex(title),
                      client_initial_invocation_counter=counter)


def attribute(obis, class_id, attr):
    return cosem.CosemAttribute(enumerations.CosemInterface(class_id),
                                cosem.Obis.from_bytes(bytes(int(p) for p in obis.replace("-", ".").replace(":", ".").split("."))),
                                attr)


@pytest.fixture(scope="module", params=["c", "python"], ids=lambda g: "gcm-" + g)
def secure_meter(request, tmp_path_factory):
    saved = os.environ.get("DLMS_GCM")
    os.environ["DLMS_GCM"] = request.param
    try:
        m = Meter(tmp_path_factory.mktemp("secure") / "state")
        m.start()
    finally:
        os.environ.pop("DLMS_GCM") if saved is None else os.environ.__setitem__("DLMS_GCM", saved)
    yield m
    m.stop()


def wrapped_apdu(data):
    assert data[:2] == b"\x00\x01", data.hex()
    return data[8:]


def still_serves(m):
    c = secure(m.wrapper_port).connect()
    try:
        assert isinstance(c.read(ENERGY, 3, 2)[0], int)
    finally:
        c.release()
        c.close()


@pytest.mark.parametrize("interface", ["wrapper", "hdlc"])
def test_gurux_management_client_with_hls_gmac(secure_meter, interface):
    port = secure_meter.wrapper_port if interface == "wrapper" else secure_meter.hdlc_port
    c = secure(secure_meter.wrapper_port, interface)
    c.link = TcpLink("127.0.0.1", port)
    c.connect()
    try:
        assert isinstance(c.read(ENERGY, 3, 2)[0], int)
        assert list(c.read(ENERGY, 3, 3)[0]) == [-3, 30]
        assert len(c.get_object_list()) > 30  # block transfer, every object for management
        received = b"".join(c.link.received)
        assert b"\xe6\xe7\x00\xc4" not in received  # no plain GET response on HDLC
        if interface == "wrapper":  # every answer after the AARE is ciphered
            assert all(a in CIPHERED_GET_RESPONSES + (0x61, 0xCF, 0x63) for a in response_tags(c.link.received))
    finally:
        c.release()
        c.disconnect()
        c.close()


def test_dlms_cosem_management_client_uses_general_ciphering(secure_meter):
    counter = next_counter(secure_meter.wrapper_port)
    with cosem_management(secure_meter.wrapper_port, counter).session() as c:
        assert isinstance(parse_as_dlms_data(c.get(attribute(ENERGY, 3, 2))), int)
        # time zone set by dlms-cosem, read back by gurux
        c.set(attribute("0-0:1.0.0.255", 8, 3), b"\x10\x00\x3c")
    g = secure(secure_meter.wrapper_port).connect()
    try:
        assert g.read("0-0:1.0.0.255", 8, 3)[0] == 60
    finally:
        g.release()
        g.close()


def test_replayed_and_tampered_apdus_are_refused(secure_meter):
    c = secure(secure_meter.wrapper_port).connect()
    try:
        request = bytes(c.request_frames_for_read(ENERGY, 3, 2))
        c.link.send(request)
        assert wrapped_apdu(c.link.recv())[0] in CIPHERED_GET_RESPONSES
        c.link.send(request)  # the same counter again
        assert wrapped_apdu(c.link.recv())[0] == EXCEPTION_RESPONSE
        tampered = bytearray(c.request_frames_for_read(ENERGY, 3, 2))
        tampered[-1] ^= 0x01  # last octet of the GMAC tag
        c.link.send(bytes(tampered))
        assert wrapped_apdu(c.link.recv())[0] == EXCEPTION_RESPONSE
    finally:
        c.close()
    c = secure(secure_meter.wrapper_port).connect()  # the security log is management's
    try:
        assert c.read(SECURITY_LOG_CODE, 1, 2)[0] in (47, 48)  # deciphering failure / replay
        assert c.read("0-0:99.98.1.255", 7, 7)[0] >= 2  # entries in use
    finally:
        c.release()
        c.close()


def test_stale_counter_and_wrong_keys_are_refused(tmp_path):
    m = Meter(tmp_path / "state")
    m.start()
    try:
        still_serves(m)
        stale = next_counter(m.wrapper_port) - 5
        for kw in ({"counter": stale}, {"ek": bytes(16)}):
            c = secure(m.wrapper_port, **kw)
            try:
                with pytest.raises(GXDLMSException):
                    c.connect()
            finally:
                c.close()
        c = secure(m.wrapper_port, ak=bytes(16))  # wrong AK: AARE or pass 3/4 fails
        try:
            with pytest.raises(Exception):
                c.connect()
        finally:
            c.close()
        m.proc.poll()
        assert m.running()
    finally:
        m.stop()


def test_management_without_security_and_public_write_are_refused(secure_meter):
    plain = GXDLMSClient(True, MANAGEMENT, 1, Authentication.NONE, None, InterfaceType.WRAPPER)
    c = GuruxClient(TcpLink("127.0.0.1", secure_meter.wrapper_port), "wrapper")
    c.client = plain
    try:
        with pytest.raises(GXDLMSException):
            c.connect()
    finally:
        c.close()
    with GuruxClient.tcp(secure_meter.wrapper_port, "wrapper") as p:
        _, clock = p.read("0-0:1.0.0.255", 8, 3)
        with pytest.raises(GXDLMSException) as e:
            p.write_object(clock, 3)
        assert e.value.errorCode == 3
    still_serves(secure_meter)


def responses(received):
    """The APDUs of captured wrapper traffic."""
    data = b"".join(received)
    while len(data) >= 8:
        n = int.from_bytes(data[6:8], "big")
        yield data[8:8 + n]
        data = data[8 + n:]


def response_tags(received):
    return [a[0] for a in responses(received) if a]


def _length(buf, pos):
    return (buf[pos], pos + 1) if buf[pos] < 0x80 else (int.from_bytes(buf[pos + 1:pos + 1 + (buf[pos] & 0x7F)], "big"), pos + 1 + (buf[pos] & 0x7F))


def meter_counters(received):
    """Invocation counters of the meter's ciphered responses in captured wrapper
    traffic (service-specific glo-* or general-glo-ciphering)."""
    out = []
    for apdu in responses(received):
        if not apdu or apdu[0] not in (0xCC, 0xCD, 0xCF, 0xDB):
            continue
        pos = 1
        if apdu[0] == 0xDB:
            n, pos = _length(apdu, pos)
            pos += n  # the meter's system title
        _, pos = _length(apdu, pos)
        out.append(int.from_bytes(apdu[pos + 1:pos + 5], "big"))  # SC, then IC
    return out


def test_meter_counter_survives_kill_9(tmp_path):
    m = Meter(tmp_path / "state")
    m.start()
    try:
        seen = []
        for _ in range(3):
            c = secure(m.wrapper_port).connect()
            for _ in range(5):
                c.read(ENERGY, 3, 2)
            c.release()
            c.close()
            seen += meter_counters(c.link.received)
            assert seen and seen == sorted(seen) and len(set(seen)) == len(seen)
            m.kill()  # power cut: no chance to write anything
            m.start()
        c = secure(m.wrapper_port).connect()
        c.read(ENERGY, 3, 2)
        c.close()
        after = meter_counters(c.link.received)
        assert min(after) > max(seen), (max(seen), after)
    finally:
        m.stop()


def test_key_change_through_global_key_transfer(tmp_path):
    """New EK and AK wrapped under the master key (RFC 3394): the answer still comes
    under the old keys, then only the new keys associate, also after a restart."""
    from gurux_dlms.objects.enums.GlobalKeyType import GlobalKeyType
    from gurux_dlms.objects import GXDLMSSecuritySetup

    kek = bytes.fromhex(json_keys()["kek"])
    new_ek, new_ak = bytes(range(0x20, 0x30)), bytes(range(0x40, 0x50))
    m = Meter(tmp_path / "state")
    m.start()
    try:
        c = secure(m.wrapper_port).connect()
        try:
            setup = GXDLMSSecuritySetup("0.0.43.0.0.255")
            c.exchange(setup.globalKeyTransfer(c.client, kek, [(GlobalKeyType.UNICAST_ENCRYPTION, new_ek),
                                                                (GlobalKeyType.AUTHENTICATION, new_ak)]))
        finally:
            c.close()
        for restart in (False, True):
            if restart:
                m.restart()
            old = secure(m.wrapper_port)
            try:
                with pytest.raises(Exception):
                    old.connect()
            finally:
                old.close()
            c = secure(m.wrapper_port, ek=new_ek, ak=new_ak).connect()
            try:
                assert isinstance(c.read(ENERGY, 3, 2)[0], int)
            finally:
                c.release()
                c.close()
    finally:
        m.stop()


def json_keys():
    import json

    from conftest import ROOT

    return json.loads((ROOT / "boards" / "UNIX" / "test_keys.json").read_text())

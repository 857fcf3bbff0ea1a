# Server: ACSE and xDLMS services over a small fake object table, driven with the
# published APDUs of shared/vectors/axdr_apdus.json.
from testutil import load_vectors, unhex
from dlms import acse, apdu, errors
from dlms.axdr import decode_data
from dlms.errors import AccessError
from dlms.server import DlmsServer

_APDUS = None


def vec(name):
    global _APDUS
    if _APDUS is None:
        _APDUS = {a["id"]: unhex(a["apdu_hex"]) for a in load_vectors("axdr_apdus")["apdus"]}
    return _APDUS[name]


ENERGY = bytes((1, 0, 1, 8, 0, 255))
LDN = bytes((0, 0, 42, 0, 0, 255))


class FakeRegister:
    class_id = 3

    def __init__(self):
        self.value = 5009
        self.big = [(9, bytes(40))] * 60

    def get(self, attr, ctx):
        if attr == 2:
            return (6, self.value)
        if attr == 3:
            return (2, [(15, 0), (22, 30)])
        if attr == 4:
            return (1, self.big)
        raise AccessError(errors.OBJECT_UNAVAILABLE)

    def set(self, attr, value, ctx):
        if value[0] != 6:
            raise AccessError(errors.TYPE_UNMATCHED)
        self.value = value[1]

    def action(self, method, params, ctx):
        return (17, 7)


class FakeAssociation:
    def verify_secret(self, secret):
        return secret == b"12345678"


CONF = 0x1E1D  # get, set, action, selective access, block transfer, with-list


class FakeTable:
    def __init__(self):
        self.reg = FakeRegister()

    def client(self, sap):
        policy = {16: ("public", 0), 32: ("reader", 1)}.get(sap)
        if policy:
            return {"sap": sap, "name": policy[0], "mechanism": policy[1], "context": 1, "conformance": CONF}

    def association_for(self, sap):
        return FakeAssociation()

    def lookup(self, class_id, instance):
        return self.reg if (class_id, instance) == (3, ENERGY) else None

    def attribute_access(self, client, obj, attr):
        return 3 if client == 32 else 1

    def method_access(self, client, obj, method):
        return 1 if client == 32 else 0


def associate(client=16, aarq="AARQ-LN-no-security-GB"):
    server = DlmsServer(FakeTable(), {"max_pdu": 256, "lls_password": b"12345678"})
    assoc = server.open_session(client)
    aare = acse.decode_aare(assoc.handle_apdu(vec(aarq), 0))
    return server, assoc, aare


def test_public_association_accepted():
    _, assoc, aare = associate()
    if aare.result != acse.RESULT_ACCEPTED or not assoc.associated:
        raise AssertionError("AARE not accepted: %r" % aare.result)
    rsp = acse.decode_initiate_response(aare.user_information)
    if rsp.server_max_receive_pdu_size != 256 or rsp.vaa_name != 7:
        raise AssertionError("initiate response")
    if not rsp.negotiated_conformance & acse.CONF_GET:
        raise AssertionError("GET not negotiated")


def test_unknown_context_refused_with_diagnostic():
    request = bytearray(vec("AARQ-LN-no-security-GB"))
    request[10] = 2  # application context SN instead of LN
    server = DlmsServer(FakeTable(), {})
    aare = acse.decode_aare(server.open_session(16).handle_apdu(bytes(request), 0))
    if aare.result != acse.RESULT_REJECTED_PERMANENT:
        raise AssertionError("should refuse")
    if aare.result_source_diagnostic != (acse.SOURCE_SERVICE_USER, acse.DIAG_APPLICATION_CONTEXT_NAME_NOT_SUPPORTED):
        raise AssertionError("diagnostic %r" % (aare.result_source_diagnostic,))


def test_unknown_client_refused():
    server = DlmsServer(FakeTable(), {})
    aare = acse.decode_aare(server.open_session(77).handle_apdu(vec("AARQ-LN-no-security-GB"), 0))
    if aare.result != acse.RESULT_REJECTED_PERMANENT:
        raise AssertionError("unknown client accepted")


def test_lls_without_password_refused_for_lls_client():
    _, assoc, aare = associate(client=32)
    if aare.result_source_diagnostic[1] != acse.DIAG_AUTHENTICATION_REQUIRED or assoc.associated:
        raise AssertionError("LLS client without password must be refused")


def test_get_before_association_is_exception():
    server = DlmsServer(FakeTable(), {})
    reply = server.open_session(16).handle_apdu(vec("GET-request-normal-register-1.0.1.8.0.255-attr2"), 0)
    if reply != vec("ExceptionResponse-service-not-allowed-operation-not-possible"):
        raise AssertionError(reply.hex())


def test_get_normal_matches_published_response():
    _, assoc, _ = associate()
    reply = assoc.handle_apdu(vec("GET-request-normal-register-1.0.1.8.0.255-attr2"), 0)
    if reply != vec("GET-response-normal-double-long-unsigned-dc"):
        raise AssertionError(reply.hex())


def test_get_undefined_object_and_attribute():
    _, assoc, _ = associate()
    request = bytearray(vec("GET-request-normal-register-1.0.1.8.0.255-attr2"))
    request[9] = 9  # 1-0:1.8.9.255: not in the table
    if assoc.handle_apdu(bytes(request), 0) != bytes((0xC4, 1, 0xC1, 1, errors.OBJECT_UNDEFINED)):
        raise AssertionError("object-undefined expected")
    request[9] = 0
    request[11] = 9  # attribute 9
    if assoc.handle_apdu(bytes(request), 0) != bytes((0xC4, 1, 0xC1, 1, errors.OBJECT_UNAVAILABLE)):
        raise AssertionError("object-unavailable expected")


def test_get_block_transfer_reassembles():
    _, assoc, _ = associate()
    request = bytearray(vec("GET-request-normal-register-1.0.1.8.0.255-attr2"))
    request[11] = 4
    reply = assoc.handle_apdu(bytes(request), 0)
    raw = bytearray()
    number = 0
    while True:
        if reply[:2] != b"\xc4\x02" or len(reply) > 256:
            raise AssertionError("block expected: " + reply[:8].hex())
        last, block = reply[3], int.from_bytes(reply[4:8], "big")
        if block != number + 1 or reply[8] != 0:
            raise AssertionError("block numbering")
        number = block
        n = reply[9]
        start = 10
        if n & 0x80:
            size = n & 0x7F
            n = int.from_bytes(reply[10:10 + size], "big")
            start = 10 + size
        raw.extend(reply[start:start + n])
        if last:
            break
        reply = assoc.handle_apdu(bytes((0xC0, 2, 0xC1)) + block.to_bytes(4, "big"), 0)
    value, end = decode_data(raw)
    if end != len(raw) or value != (1, [(9, bytes(40))] * 60):
        raise AssertionError("reassembled data differs")


def test_get_next_without_transfer():
    _, assoc, _ = associate()
    reply = assoc.handle_apdu(vec("GET-request-next-block1"), 0)
    if reply[-2:] != bytes((1, errors.NO_LONG_GET_IN_PROGRESS)):
        raise AssertionError(reply.hex())


def test_public_set_denied_and_lls_set_type_checked():
    _, assoc, _ = associate()
    set_req = bytes((0xC1, 1, 0xC1, 0, 3)) + ENERGY + bytes((2, 0, 6, 0, 0, 0, 1))
    if assoc.handle_apdu(set_req, 0) != bytes((0xC5, 1, 0xC1, errors.READ_WRITE_DENIED)):
        raise AssertionError("public SET must be denied")
    server = DlmsServer(FakeTable(), {"lls_password": b"12345678"})
    lls = server.open_session(32)
    aare = acse.decode_aare(lls.handle_apdu(vec("AARQ-LN-LLS-GB"), 0))
    if aare.result != acse.RESULT_ACCEPTED:
        raise AssertionError("LLS with the right password refused: %r" % (aare.result_source_diagnostic,))
    if lls.handle_apdu(set_req, 0) != bytes((0xC5, 1, 0xC1, 0)):
        raise AssertionError("LLS SET")
    wrong_type = set_req[:-5] + bytes((18, 0, 1))
    if lls.handle_apdu(wrong_type, 0) != bytes((0xC5, 1, 0xC1, errors.TYPE_UNMATCHED)):
        raise AssertionError("type-unmatched expected")


def test_malformed_and_unknown_requests():
    _, assoc, _ = associate()
    truncated = vec("GET-request-normal-register-1.0.1.8.0.255-attr2")[:7]
    if assoc.handle_apdu(truncated, 0)[0] != apdu.EXCEPTION_RESPONSE:
        raise AssertionError("truncated GET")
    if assoc.handle_apdu(b"\x99\x01", 0)[:2] != bytes((0xD8, apdu.STATE_SERVICE_UNKNOWN)):
        raise AssertionError("unknown APDU")
    if assoc.handle_apdu(bytes((0xC0, 1, 0xC1)) + bytes(400), 0)[:3] != bytes((0xD8, 1, apdu.SERVICE_PDU_TOO_LONG)):
        raise AssertionError("oversized PDU")
    # The association survives all of that.
    if assoc.handle_apdu(vec("GET-request-normal-register-1.0.1.8.0.255-attr2"), 0) != vec("GET-response-normal-double-long-unsigned-dc"):
        raise AssertionError("association lost")


def test_release():
    _, assoc, _ = associate()
    if assoc.handle_apdu(vec("RLRQ-normal"), 0) != vec("RLRE-normal-E350"):
        raise AssertionError("RLRE")
    if assoc.associated:
        raise AssertionError("still associated")

# xDLMS GET/SET/ACTION codecs (firmware/dlms/apdu.py) against the published
# vectors in axdr_apdus.json. Request vectors are decoded and checked against
# the vectors' gurux_dlms decodes; response vectors are rebuilt with our
# encoders from the fields gurux decoded, byte for byte.
from testutil import load_vectors, raises, unhex

from dlms import apdu
from dlms import axdr as A
from dlms.errors import DecodeError


def _vector(ident):
    for v in load_vectors("axdr_apdus")["apdus"]:
        if v["id"] == ident:
            return v
    raise AssertionError("no vector " + ident)


def _vectors(prefix):
    return [v for v in load_vectors("axdr_apdus")["apdus"] if v["id"].startswith(prefix)]


def _xml_all(v, name):
    """Every Value="..." of <name .../> elements in the gurux decode."""
    xml = v["decode_gurux_dlms"]
    found = []
    at = xml.find("<" + name + " Value=\"")
    while at >= 0:
        at += len(name) + 9
        end = xml.find("\"", at)
        if end < 0:
            break
        found.append(xml[at:end])
        at = xml.find("<" + name + " Value=\"", end)
    return found


def _xml(v, name):
    found = _xml_all(v, name)
    return found[0] if found else None


def _check_descriptors(v, descriptors, id_name="AttributeId"):
    assert [int(x, 16) for x in _xml_all(v, "ClassId")] == [d[0] for d in descriptors]
    assert _xml_all(v, "InstanceId") == [d[1].hex().upper() for d in descriptors]
    assert [int(x, 16) for x in _xml_all(v, id_name)] == [d[2] for d in descriptors]


# --- GET ----------------------------------------------------------------------

def test_get_request_normal_vectors():
    vs = _vectors("GET-request-normal")
    assert len(vs) == 3
    for v in vs:
        buf = unhex(v["apdu_hex"])
        choice, invoke, descriptor, end = apdu.decode_get_request(buf)
        assert choice == apdu.GET_NORMAL and end == len(buf)
        assert invoke == int(_xml(v, "InvokeIdAndPriority"), 16)
        _check_descriptors(v, [descriptor])
        assert descriptor[3] is None                      # no access selection
    # The Kamstrup client sends 0x81: invoke-id 1, unconfirmed, high priority.
    _, invoke, _, _ = apdu.decode_get_request(unhex(_vector("GET-request-normal-class1-Kamstrup")["apdu_hex"]))
    assert invoke & apdu.INVOKE_ID_MASK == 1 and invoke & apdu.PRIORITY_HIGH
    assert not invoke & apdu.SERVICE_CLASS_CONFIRMED


def test_get_request_next_vector():
    v = _vector("GET-request-next-block1")
    buf = unhex(v["apdu_hex"])
    assert apdu.decode_get_request(buf) == (apdu.GET_NEXT, 0xC1, int(_xml(v, "BlockNumber"), 16), len(buf))


def test_get_request_with_list_vector():
    v = _vector("GET-request-with-list")
    buf = unhex(v["apdu_hex"])
    choice, invoke, descriptors, end = apdu.decode_get_request(buf)
    assert choice == apdu.GET_WITH_LIST and invoke == 0xC1 and end == len(buf)
    assert 'AttributeDescriptorList Qty="02"' in v["decode_gurux_dlms"] and len(descriptors) == 2
    _check_descriptors(v, descriptors)
    assert descriptors[1] == (8, unhex("0000010000FF"), 2, None)


def test_get_request_with_selective_access():
    # Constructed (no published one): profile generic 1.0.99.1.0.255 attr 2,
    # access-selector 2 (entry descriptor) structure{from 1, to 0, col 1, col 0}.
    params = (A.STRUCTURE, [(A.DOUBLE_LONG_UNSIGNED, 1), (A.DOUBLE_LONG_UNSIGNED, 0),
                            (A.LONG_UNSIGNED, 1), (A.LONG_UNSIGNED, 0)])
    buf = unhex("C001C1" "0007" "0100630100FF" "02" "01" "02") + A.encode_data(params)
    choice, invoke, descriptor, end = apdu.decode_get_request(buf)
    assert descriptor == (7, unhex("0100630100FF"), 2, (2, params)) and end == len(buf)


def test_negative_attribute_id():
    # Attribute and method ids are Integer8.
    _, _, descriptor, _ = apdu.decode_get_request(unhex("C001C100010000010000FFFF00"))
    assert descriptor[2] == -1


def test_get_response_normal_vectors():
    for ident in ("GET-response-normal-double-long-unsigned-Kamstrup",
                  "GET-response-normal-double-long-unsigned-dc"):
        v = _vector(ident)
        invoke = int(_xml(v, "InvokeIdAndPriority"), 16)
        value = (A.DOUBLE_LONG_UNSIGNED, int(_xml(v, "UInt32"), 16))
        assert apdu.encode_get_response_normal(invoke, value) == unhex(v["apdu_hex"])
        # Data already A-XDR encoded is sent as is.
        assert apdu.encode_get_response_normal(invoke, A.encode_data(value)) == unhex(v["apdu_hex"])
    assert int(_xml(_vector("GET-response-normal-double-long-unsigned-Kamstrup"), "UInt32"), 16) == 12345679


def test_get_response_data_access_error_vector():
    v = _vector("GET-response-normal-data-access-error")
    assert _xml(v, "DataAccessError") == "HardwareFault"
    assert apdu.encode_get_response_normal(0xC1, 1) == unhex(v["apdu_hex"])


def test_get_response_with_datablock_vector():
    v = _vector("GET-response-with-datablock")
    buf = unhex(v["apdu_hex"])
    assert _xml(v, "LastBlock") == "00" and int(_xml(v, "BlockNumber"), 16) == 1
    # Header C4 02 C1 | last-block | block-number | raw-data choice | 82 04 9E.
    raw = buf[12:]
    assert len(raw) == 0x049E
    # The stored gurux decode is cut short inside RawData: compare its prefix.
    xml = v["decode_gurux_dlms"]
    shown = xml[xml.index('<RawData Value="') + 16:]
    assert len(shown) > 100 and raw.hex().upper().startswith(shown)
    assert apdu.encode_get_response_with_datablock(0xC1, False, 1, raw) == buf
    # The block is the first part of an array of 0x05A0 structures: alone it
    # is truncated Data.
    raises(DecodeError, A.decode_data, raw)
    assert apdu.encode_get_response_with_datablock(0xC1, True, 2, 14) == unhex("C402C101000000020 10E".replace(" ", ""))


def test_get_response_with_list():
    # Get-Response-With-List: SEQUENCE OF Get-Data-Result (constructed).
    out = apdu.encode_get_response_with_list(0xC1, [(A.UNSIGNED, 5), 4])
    assert out == unhex("C403C102" "001105" "0104")


# --- SET ----------------------------------------------------------------------

# No published SET APDU: these are assembled from the ASN.1 of Set-Request and
# the descriptor of the published GET vector for the clock (class 8).
CLOCK = "0008" "0000010000FF" "02"
DATE_TIME = "07E30C130402000000FFC400"


def test_set_request_normal():
    buf = unhex("C101C1" + CLOCK + "00" "19" + DATE_TIME)
    choice, invoke, (descriptor, value), end = apdu.decode_set_request(buf)
    assert (choice, invoke, end) == (apdu.SET_NORMAL, 0xC1, len(buf))
    assert descriptor == (8, unhex("0000010000FF"), 2, None)
    assert value == (A.DATE_TIME, unhex(DATE_TIME))


def test_set_request_with_list():
    buf = unhex("C104C102" + CLOCK + "00" + "0001" "0000600A01FF" "02" "00" "02" "19" + DATE_TIME + "1100")
    choice, invoke, (descriptors, values), end = apdu.decode_set_request(buf)
    assert choice == apdu.SET_WITH_LIST and end == len(buf)
    assert [d[0] for d in descriptors] == [8, 1]
    assert values == [(A.DATE_TIME, unhex(DATE_TIME)), (A.UNSIGNED, 0)]


def test_set_request_datablocks():
    buf = unhex("C102C1" + CLOCK + "00" "00" "00000001" "03" "190102")
    choice, invoke, (descriptor, block), end = apdu.decode_set_request(buf)
    assert choice == apdu.SET_WITH_FIRST_DATABLOCK and block == (False, 1, unhex("190102"))
    buf = unhex("C103C1" "01" "00000002" "820100") + bytes(256)
    assert apdu.decode_set_request(buf) == (apdu.SET_WITH_DATABLOCK, 0xC1, (True, 2, bytes(256)), len(buf))
    buf = unhex("C105C101" + CLOCK + "00" "01" "00000001" "00")
    choice, _, (descriptors, block), end = apdu.decode_set_request(buf)
    assert choice == apdu.SET_WITH_LIST_AND_FIRST_DATABLOCK and len(descriptors) == 1
    assert block == (True, 1, b"") and end == len(buf)


def test_set_response_encoders():
    # Set-Response choices 1-5 (Green Book 9.5).
    assert apdu.encode_set_response_normal(0xC1, 0) == unhex("C501C100")
    assert apdu.encode_set_response_with_list(0xC1, [0, 3]) == unhex("C505C1020003")
    assert apdu.encode_set_response_datablock(0xC1, 1) == unhex("C502C100000001")
    assert apdu.encode_set_response_last_datablock(0xC1, 0, 2) == unhex("C503C10000000002")


# --- ACTION -------------------------------------------------------------------

def test_action_request_vector():
    v = _vector("ActionRequest-reply_to_HLS_authentication-Kaifa")
    buf = unhex(v["apdu_hex"])
    choice, invoke, (method, params), end = apdu.decode_action_request(buf)
    assert choice == apdu.ACTION_NORMAL and end == len(buf)
    assert invoke == int(_xml(v, "InvokeIdAndPriority"), 16)
    _check_descriptors(v, [method], "MethodId")
    assert params == (A.OCTET_STRING, unhex(_xml(v, "OctetString")))


def test_action_request_without_parameters_and_other_choices():
    method = "000F" "0000280000FF" "01"
    assert apdu.decode_action_request(unhex("C301C1" + method + "00")) == \
        (apdu.ACTION_NORMAL, 0xC1, ((15, unhex("0000280000FF"), 1), None), 13)
    # Present null-data differs from absent parameters.
    _, _, (_, params), _ = apdu.decode_action_request(unhex("C301C1" + method + "0100"))
    assert params == (A.NULL, None)
    buf = unhex("C303C102" + method + method + "02" "0F01" "00")
    assert apdu.decode_action_request(buf)[2][1] == [(A.INTEGER, 1), (A.NULL, None)]
    assert apdu.decode_action_request(unhex("C302C100000003")) == (apdu.ACTION_NEXT_PBLOCK, 0xC1, 3, 7)
    choice, _, (m, block), _ = apdu.decode_action_request(unhex("C304C1" + method + "0000000001" "0100"))
    assert choice == apdu.ACTION_WITH_FIRST_PBLOCK and block == (False, 1, unhex("00"))
    assert apdu.decode_action_request(unhex("C306C10100000002" "00"))[2] == (True, 2, b"")
    choice, _, (ms, block), _ = apdu.decode_action_request(unhex("C305C101" + method + "0100000001" "00"))
    assert choice == apdu.ACTION_WITH_LIST_AND_FIRST_PBLOCK and len(ms) == 1


def test_action_response_vector():
    v = _vector("ActionResponse-reply_to_HLS_authentication-Kaifa")
    assert _xml(v, "Result") == "Success"
    value = (A.OCTET_STRING, unhex(_xml(v, "OctetString")))
    assert apdu.encode_action_response_normal(int(_xml(v, "InvokeIdAndPriority"), 16), 0, value) \
        == unhex(v["apdu_hex"])


def test_action_response_other_forms():
    assert apdu.encode_action_response_normal(0xC1, 0) == unhex("C701C10000")
    assert apdu.encode_action_response_normal(0xC1, 0, 3) == unhex("C701C100010103")
    assert apdu.encode_action_response_with_list(0xC1, [(0, None), (0, (A.UNSIGNED, 1))]) == \
        unhex("C703C102" "0000" "0001001101")


# --- exception-response / confirmed-service-error ----------------------------------

def test_exception_response_vector():
    v = _vector("ExceptionResponse-service-not-allowed-operation-not-possible")
    assert _xml(v, "StateError") == "ServiceNotAllowed" and _xml(v, "ServiceError") == "OperationNotPossible"
    assert apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED,
                                          apdu.SERVICE_OPERATION_NOT_POSSIBLE) == unhex(v["apdu_hex"])
    # invocation-counter-error carries the expected counter.
    assert apdu.encode_exception_response(1, apdu.SERVICE_INVOCATION_COUNTER_ERROR, 0x01234568) == \
        unhex("D801060123456 8".replace(" ", ""))
    raises(ValueError, apdu.encode_exception_response, 1, apdu.SERVICE_INVOCATION_COUNTER_ERROR)


def test_confirmed_service_error():
    # The InitiateError of the published refused AARE: 0E 01 06 01.
    assert apdu.encode_confirmed_service_error(apdu.CSE_INITIATE, apdu.SE_INITIATE, 1) == unhex("0E010601")
    raises(ValueError, apdu.encode_confirmed_service_error, 1, 6, 256)


# --- robustness ------------------------------------------------------------------

REQUESTS = {0xC0: apdu.decode_get_request, 0xC1: apdu.decode_set_request, 0xC3: apdu.decode_action_request}


def test_every_prefix_is_truncated():
    bufs = [unhex(v["apdu_hex"]) for v in load_vectors("axdr_apdus")["apdus"]
            if unhex(v["apdu_hex"])[0] in REQUESTS]
    assert len(bufs) == 6
    bufs += [unhex("C101C1" + CLOCK + "00" "19" + DATE_TIME),
             unhex("C102C1" + CLOCK + "00" "00" "00000001" "03" "190102"),
             unhex("C104C101" + CLOCK + "01" "02" "0F01" "01" "1100")]
    for buf in bufs:
        decode = REQUESTS[buf[0]]
        decode(buf)
        for k in range(len(buf)):
            raises(DecodeError, decode, buf[:k])
            raises(DecodeError, decode, memoryview(buf)[:k])


def test_trailing_bytes_and_memoryview():
    buf = unhex(_vector("GET-request-normal-register-1.0.1.8.0.255-attr2")["apdu_hex"])
    whole = apdu.decode_get_request(buf)
    assert apdu.decode_get_request(buf + b"\x00\x01")[3] == len(buf)
    assert apdu.decode_get_request(memoryview(buf)) == whole
    assert apdu.decode_get_request(b"\x00" + buf, 1) == whole[:3] + (len(buf) + 1,)


def test_malformed_requests():
    raises(DecodeError, apdu.decode_get_request, unhex("C004C100000001"))      # unknown choice
    raises(DecodeError, apdu.decode_get_request, unhex("C101C100000001"))      # SET tag
    raises(DecodeError, apdu.decode_set_request, unhex("C106C1"))
    raises(DecodeError, apdu.decode_action_request, unhex("C307C1"))
    raises(DecodeError, apdu.decode_get_request, unhex("C003C184FFFFFFFF00"))  # forged count
    raises(DecodeError, apdu.decode_get_request, unhex("C001C100010000010000FF02010107"))  # bad Data tag
    raises(DecodeError, apdu.decode_get_request, b"")


def test_encoders_reject_out_of_range():
    raises(ValueError, apdu.encode_get_response_normal, 256, (A.NULL, None))
    raises(ValueError, apdu.encode_get_response_normal, 0xC1, 300)
    raises(ValueError, apdu.encode_get_response_normal, 0xC1, (A.UNSIGNED, 256))
    raises(ValueError, apdu.encode_get_response_with_datablock, 0xC1, False, 1 << 32, b"")
    raises(ValueError, apdu.encode_set_response_normal, 0xC1, -1)
    raises(ValueError, apdu.encode_action_response_normal, 0xC1, 251 + 5)

# ACSE and xDLMS initiate codecs (firmware/dlms/acse.py) and the BER subset
# (firmware/dlms/ber.py), against the published AARQ/AARE/RLRQ/RLRE vectors.
# Decoded fields are checked against the vectors' gurux_dlms decodes; every
# APDU kind we encode is re-encoded from its decoded fields byte for byte.
from testutil import load_vectors, raises, unhex

from dlms import acse, ber
from dlms.errors import DecodeError


def _vectors(prefix):
    return [v for v in load_vectors("axdr_apdus")["apdus"] if v["id"].startswith(prefix)]


def _gcm_vector(ident):
    for v in load_vectors("gcm_dlms")["vectors"]:
        if v["id"] == ident:
            return v
    raise AssertionError("no vector " + ident)


def _xml(v, name):
    """Value="..." of the first <name .../> element in the gurux decode, or None."""
    xml = v["decode_gurux_dlms"]
    at = xml.find("<" + name + " Value=\"")
    if at < 0:
        return None
    at += len(name) + 9
    return xml[at:xml.index("\"", at)]


def _hexu(b):
    return b.hex().upper()


# Gurux's names for the conformance bits (its XML) -> our constants.
CONFORMANCE_NAMES = {
    "GeneralProtection": acse.CONF_GENERAL_PROTECTION,
    "GeneralBlockTransfer": acse.CONF_GENERAL_BLOCK_TRANSFER,
    "Attribute0SupportedWithSet": acse.CONF_ATTRIBUTE0_WITH_SET,
    "PriorityMgmtSupported": acse.CONF_PRIORITY_MGMT,
    "Attribute0SupportedWithGet": acse.CONF_ATTRIBUTE0_WITH_GET,
    "BlockTransferWithGetOrRead": acse.CONF_BLOCK_TRANSFER_WITH_GET,
    "BlockTransferWithSetOrWrite": acse.CONF_BLOCK_TRANSFER_WITH_SET,
    "BlockTransferWithAction": acse.CONF_BLOCK_TRANSFER_WITH_ACTION,
    "MultipleReferences": acse.CONF_MULTIPLE_REFERENCES,
    "DataNotification": acse.CONF_DATA_NOTIFICATION,
    "Access": acse.CONF_ACCESS,
    "Get": acse.CONF_GET,
    "Set": acse.CONF_SET,
    "SelectiveAccess": acse.CONF_SELECTIVE_ACCESS,
    "EventNotification": acse.CONF_EVENT_NOTIFICATION,
    "Action": acse.CONF_ACTION,
}


def _check_conformance(v, conformance):
    """Every bit gurux names is set; where its decode is not cut short, no other."""
    xml = v["decode_gurux_dlms"]
    named = 0
    at = xml.find("<ConformanceBit Name=\"")
    while at >= 0:
        at += 22
        end = xml.find("\"", at)
        if end < 0:
            break                          # the stored decode was truncated here
        named |= CONFORMANCE_NAMES[xml[at:end]]
        at = xml.find("<ConformanceBit Name=\"", end)
    assert named and named & conformance == named, (v["id"], hex(named), hex(conformance))
    if "Conformance>" in xml[xml.rfind("ConformanceBit"):]:
        assert named == conformance, (v["id"], hex(named), hex(conformance))


CONTEXT_NAMES = {"LN": acse.CONTEXT_LN, "LN_WITH_CIPHERING": acse.CONTEXT_LN_CIPHERED}
MECHANISM_NAMES = {"Low": acse.MECH_LLS, "HighGmac": acse.MECH_HLS_GMAC}


def test_conformance_bit_numbering():
    # BIT STRING bit 0 is the MSB of the first octet: bit n -> 1 << (23 - n).
    assert acse.CONF_GENERAL_PROTECTION == 1 << 22      # bit 1
    assert acse.CONF_ATTRIBUTE0_WITH_GET == 1 << 13     # bit 10
    assert acse.CONF_GET == 1 << 4                      # bit 19
    assert acse.CONF_ACTION == 1                        # bit 23


# --- AARQ ---------------------------------------------------------------------

def test_aarq_vectors():
    vs = _vectors("AARQ-")
    assert len(vs) == 5
    for v in vs:
        buf = unhex(v["apdu_hex"])
        a = acse.decode_aarq(buf)
        assert a.end == len(buf)
        assert a.application_context_name == CONTEXT_NAMES[_xml(v, "ApplicationContextName")]
        mech = _xml(v, "MechanismName")
        assert a.mechanism_name == (MECHANISM_NAMES[mech] if mech else None)
        auth = _xml(v, "CallingAuthentication")
        assert (a.calling_authentication_value and _hexu(a.calling_authentication_value)) == auth
        req = _xml(v, "SenderACSERequirements")
        assert a.sender_acse_requirements == (int(req) if req else None)
        title = _xml(v, "CallingAPTitle")
        assert (a.calling_ap_title and _hexu(a.calling_ap_title)) == title
        assert a.calling_ae_qualifier is None and a.protocol_version is None
        glo = _xml(v, "glo_InitiateRequest")
        if glo:
            # gurux shows the glo-initiate-request after its tag and length.
            assert a.user_information_ciphered
            assert a.user_information[0] == acse.GLO_INITIATE_REQUEST
            assert _hexu(a.user_information[2:]) == glo
        else:
            assert not a.user_information_ciphered
            r = acse.decode_initiate_request(a.user_information)
            assert r.end == len(a.user_information)
            assert r.proposed_dlms_version_number == int(_xml(v, "ProposedDlmsVersionNumber"), 16)
            max_pdu = _xml(v, "ProposedMaxPduSize")
            if max_pdu:
                assert r.client_max_receive_pdu_size == int(max_pdu, 16)
            assert r.dedicated_key is None and r.response_allowed
            assert r.proposed_quality_of_service is None
            _check_conformance(v, r.proposed_conformance)


def test_aarq_values_from_descriptions():
    # Green Book AARQ: conformance 007E1F, client-max-receive-pdu-size 1200.
    a = acse.decode_aarq(unhex(_vectors("AARQ-LN-no-security-GB")[0]["apdu_hex"]))
    r = acse.decode_initiate_request(a.user_information)
    assert (r.proposed_conformance, r.client_max_receive_pdu_size) == (0x007E1F, 1200)
    a = acse.decode_aarq(unhex(_vectors("AARQ-LN-HLS5-GMAC-GB")[0]["apdu_hex"]))
    assert a.calling_authentication_value == b"K56iVagY"
    assert a.sender_acse_requirements == acse.ACSE_AUTHENTICATION


def test_ciphered_aarq_matches_gcm_vector():
    g = _gcm_vector("GB-AARQ-glo-initiate-request-SC30")
    a = acse.decode_aarq(unhex(g["enclosing_aarq"]))
    assert a.user_information == unhex(g["expected_ciphered_apdu"])
    assert a.calling_ap_title == unhex(g["system_title"])
    # Its plaintext is the published InitiateRequest with a dedicated key.
    r = acse.decode_initiate_request(unhex(g["plaintext_apdu"]))
    assert r.dedicated_key == unhex("00112233445566778899AABBCCDDEEFF")


def test_initiate_request_dedicated_key_vector():
    v = _vectors("InitiateRequest-")[0]
    buf = unhex(v["apdu_hex"])
    r = acse.decode_initiate_request(buf)
    assert _hexu(r.dedicated_key) == _xml(v, "DedicatedKey")
    assert r.response_allowed and r.proposed_quality_of_service is None
    assert r.proposed_dlms_version_number == 6 and r.client_max_receive_pdu_size == 1200
    assert r.end == len(buf)
    _check_conformance(v, r.proposed_conformance)


def test_initiate_request_optional_fields():
    # response-allowed FALSE and a quality-of-service of -1 behind their flags.
    r = acse.decode_initiate_request(unhex("01000100 01FF 06 5F1F0400001E1D 0400".replace(" ", "")))
    assert r.response_allowed is False and r.proposed_quality_of_service == -1
    assert r.proposed_conformance == 0x1E1D and r.client_max_receive_pdu_size == 0x400
    raises(DecodeError, acse.decode_initiate_request, unhex("0100000006 5F1F0300001E1D 0400".replace(" ", "")))
    raises(DecodeError, acse.decode_initiate_request, unhex("0800065F1F040000501F01F40007"))


def test_aarq_unknown_names_and_ignored_fields():
    # Foreign application context / mechanism OIDs decode as UNKNOWN so the
    # server can refuse with the proper diagnostic; called-AP-title (A2) and
    # implementation-information (9D) are skipped.
    body = (unhex("A109060760857405080901") + unhex("A203040100") + unhex("9D0141")
            + unhex("8B06 2A864886F70D".replace(" ", "")) + unhex("BE0404020100"))
    a = acse.decode_aarq(ber.tlv(0x60, body))
    assert a.application_context_name == acse.UNKNOWN
    assert a.mechanism_name == acse.UNKNOWN
    assert a.user_information == unhex("0100") and not a.user_information_ciphered


def test_aarq_malformed():
    good = unhex(_vectors("AARQ-LN-LLS-GB")[0]["apdu_hex"])
    raises(DecodeError, acse.decode_aarq, b"\x61" + good[1:])              # not an AARQ
    raises(DecodeError, acse.decode_aarq, ber.tlv(0x60, unhex("BE0404020100")))  # no context
    raises(DecodeError, acse.decode_aarq, unhex("6080") + good[2:])         # indefinite length
    raises(DecodeError, acse.decode_aarq, ber.tlv(0x60, unhex("BF1F00")))  # multi-octet tag
    # Junk after the OID inside the explicit [1] tag.
    raises(DecodeError, acse.decode_aarq, ber.tlv(0x60, unhex("A10A0607608574050801010000")))
    # A field overrunning the APDU.
    raises(DecodeError, acse.decode_aarq, ber.tlv(0x60, unhex("A1096060")))
    # Authentication value not in the charstring alternative.
    raises(DecodeError, acse.decode_aarq, ber.tlv(0x60, unhex("A109060760857405080101AC03810100")))


def test_trailing_bytes_reported():
    buf = unhex(_vectors("AARQ-LN-no-security-GB")[0]["apdu_hex"])
    a = acse.decode_aarq(buf + b"\x00\x00")
    assert a.end == len(buf)
    a = acse.decode_aarq(b"\xE6\xE6\x00" + buf, 3)
    assert a.end == len(buf) + 3


# --- AARE ---------------------------------------------------------------------

def _reencode_aare(e):
    source, diagnostic = e.result_source_diagnostic
    return acse.encode_aare(e.result, source, diagnostic, e.application_context_name,
                            responding_ap_title=e.responding_ap_title,
                            responder_acse_requirements=e.responder_acse_requirements,
                            mechanism_name=e.mechanism_name,
                            responding_authentication_value=e.responding_authentication_value,
                            user_information=e.user_information)


def test_aare_vectors_decode_and_reencode():
    vs = _vectors("AARE-")
    assert len(vs) == 5
    for v in vs:
        buf = unhex(v["apdu_hex"])
        e = acse.decode_aare(buf)
        assert e.end == len(buf)
        assert e.application_context_name == CONTEXT_NAMES[_xml(v, "ApplicationContextName")]
        assert e.result == int(_xml(v, "AssociationResult"), 16)
        assert e.result_source_diagnostic == (acse.SOURCE_SERVICE_USER, int(_xml(v, "ACSEServiceUser"), 16))
        mech = _xml(v, "MechanismName")
        assert e.mechanism_name == (MECHANISM_NAMES[mech] if mech else None)
        auth = _xml(v, "RespondingAuthentication")
        assert (e.responding_authentication_value and _hexu(e.responding_authentication_value)) == auth
        req = _xml(v, "ResponderACSERequirement")
        assert e.responder_acse_requirements == (int(req) if req else None)
        assert _reencode_aare(e) == buf, v["id"]
        if e.user_information[0] == acse.INITIATE_RESPONSE:
            r = acse.decode_initiate_response(e.user_information)
            assert r.end == len(e.user_information)
            assert r.negotiated_dlms_version_number == int(_xml(v, "NegotiatedDlmsVersionNumber"), 16)
            max_pdu = _xml(v, "NegotiatedMaxPduSize")      # None where the decode is cut short
            if max_pdu:
                assert r.server_max_receive_pdu_size == int(max_pdu, 16)
            assert r.vaa_name == 7
            _check_conformance(v, r.negotiated_conformance)
            assert acse.encode_initiate_response(r.negotiated_conformance, r.server_max_receive_pdu_size,
                                                 r.vaa_name) == e.user_information


def test_aare_built_from_parameters():
    # Green Book AARE: accepted, service-user null, conformance 00501F, PDU 500.
    info = acse.encode_initiate_response(0x00501F, 500)
    assert info == unhex(_vectors("InitiateResponse-GB")[0]["apdu_hex"])
    aare = acse.encode_aare(acse.RESULT_ACCEPTED, acse.SOURCE_SERVICE_USER, acse.DIAG_NULL,
                            acse.CONTEXT_LN, user_information=info)
    assert aare == unhex(_vectors("AARE-accepted-no-security-GB")[0]["apdu_hex"])
    aare = acse.encode_aare(acse.RESULT_ACCEPTED, acse.SOURCE_SERVICE_USER, acse.DIAG_AUTHENTICATION_REQUIRED,
                            acse.CONTEXT_LN, responder_acse_requirements=acse.ACSE_AUTHENTICATION,
                            mechanism_name=acse.MECH_HLS_GMAC, responding_authentication_value=b"P6wRJ21F",
                            user_information=info)
    assert aare == unhex(_vectors("AARE-HLS5-GMAC-StoC-GB")[0]["apdu_hex"])


def test_refused_aare_with_initiate_error():
    v = _vectors("AARE-rejected-dlms-version-GB")[0]
    assert _xml(v, "Initiate") == "DlmsVersionTooLow"
    info = acse.encode_initiate_error(acse.INITIATE_ERROR_DLMS_VERSION_TOO_LOW)
    assert info == unhex("0E010601")
    aare = acse.encode_aare(acse.RESULT_REJECTED_PERMANENT, acse.SOURCE_SERVICE_USER,
                            acse.DIAG_NO_REASON_GIVEN, acse.CONTEXT_LN, user_information=info)
    assert aare == unhex(v["apdu_hex"])
    e = acse.decode_aare(aare)
    assert not e.user_information_ciphered


def test_aare_ciphered_fields_round_trip():
    # No published ciphered AARE: check the optional fields survive a round trip.
    info = unhex(_gcm_vector("RLRE-glo-initiate-response-SC30")["expected_ciphered_apdu"])
    aare = acse.encode_aare(acse.RESULT_ACCEPTED, acse.SOURCE_SERVICE_USER, acse.DIAG_AUTHENTICATION_REQUIRED,
                            acse.CONTEXT_LN_CIPHERED, responding_ap_title=unhex("4D4D4D0000BC614E"),
                            responder_acse_requirements=1, mechanism_name=acse.MECH_HLS_GMAC,
                            responding_authentication_value=bytes(range(16)), user_information=info)
    e = acse.decode_aare(aare)
    assert e.responding_ap_title == unhex("4D4D4D0000BC614E") and e.user_information == info
    assert e.user_information_ciphered and e.application_context_name == acse.CONTEXT_LN_CIPHERED
    assert _reencode_aare(e) == aare
    e = acse.decode_aare(acse.encode_aare(1, acse.SOURCE_SERVICE_PROVIDER, 2, acse.CONTEXT_LN))
    assert e.result_source_diagnostic == (2, 2) and e.user_information is None


def test_aare_encode_rejects_bad_arguments():
    raises(ValueError, acse.encode_aare, 0, 3, 0, acse.CONTEXT_LN)
    raises(ValueError, acse.encode_aare, 0, 1, 0, 200)
    raises(ValueError, acse.encode_aare, 0, 1, 0, acse.CONTEXT_LN, None, 0x100)
    raises(ValueError, acse.encode_aare, 0, 1, 0, acse.CONTEXT_LN, None, None, -1)
    raises(ValueError, acse.encode_initiate_response, 1 << 24, 500)
    raises(ValueError, acse.encode_initiate_response, 0x1F, 0x10000)
    raises(ValueError, acse.encode_initiate_response, 0x1F, 500, 7, 128)
    raises(ValueError, acse.encode_initiate_error, 256)


# --- RLRQ / RLRE ----------------------------------------------------------------

def test_release_vectors():
    v = _vectors("RLRQ-normal")[0]
    q = acse.decode_rlrq(unhex(v["apdu_hex"]))
    assert _xml(v, "Reason") == "Normal"
    assert q.reason == acse.RELEASE_NORMAL and q.user_information is None and q.end == 5
    for v in _vectors("RLRE-"):
        buf = unhex(v["apdu_hex"])
        e = acse.decode_rlre(buf)
        assert _xml(v, "Reason") == "Normal" and e.reason == acse.RELEASE_NORMAL
        assert acse.encode_rlre(e.reason, e.user_information) == buf
    e = acse.decode_rlre(unhex(_vectors("RLRE-with-InitiateResponse")[0]["apdu_hex"]))
    r = acse.decode_initiate_response(e.user_information)
    assert r.negotiated_quality_of_service == 0 and r.server_max_receive_pdu_size == 0x4C8
    assert acse.encode_initiate_response(r.negotiated_conformance, r.server_max_receive_pdu_size,
                                         r.vaa_name, r.negotiated_quality_of_service) == e.user_information


def test_rlre_with_glo_initiate_response():
    g = _gcm_vector("RLRE-glo-initiate-response-SC30")
    info = unhex(g["expected_ciphered_apdu"])
    assert acse.encode_rlre(acse.RELEASE_NORMAL, info) == unhex(g["enclosing_apdu"])
    e = acse.decode_rlre(unhex(g["enclosing_apdu"]))
    assert e.user_information == info and e.user_information_ciphered
    # Its published plaintext: InitiateResponse, conformance 007C1F, PDU 0x400.
    r = acse.decode_initiate_response(unhex(g["plaintext_apdu"]))
    assert (r.negotiated_conformance, r.server_max_receive_pdu_size, r.vaa_name) == (0x7C1F, 0x400, 7)
    assert acse.encode_initiate_response(0x7C1F, 0x400) == unhex(g["plaintext_apdu"])


def test_rlrq_with_user_information_and_no_reason():
    q = acse.decode_rlrq(acse.encode_rlrq(None, unhex("2100")))
    assert q.reason is None and q.user_information == unhex("2100") and q.user_information_ciphered
    assert acse.encode_rlre(None) == unhex("6300")


# --- truncation over every ACSE vector -------------------------------------------

DECODERS = {"AARQ": acse.decode_aarq, "AARE": acse.decode_aare, "RLRQ": acse.decode_rlrq,
            "RLRE": acse.decode_rlre, "InitiateRequest": acse.decode_initiate_request,
            "InitiateResponse": acse.decode_initiate_response}


def test_every_prefix_is_truncated():
    bufs = [(DECODERS[v["id"].split("-")[0]], unhex(v["apdu_hex"]))
            for v in load_vectors("axdr_apdus")["apdus"] if v["id"].split("-")[0] in DECODERS]
    assert len(bufs) == 15
    bufs.append((acse.decode_rlre, unhex(_gcm_vector("RLRE-glo-initiate-response-SC30")["enclosing_apdu"])))
    for decode, buf in bufs:
        decode(buf)
        for k in range(len(buf)):
            raises(DecodeError, decode, buf[:k])
            raises(DecodeError, decode, memoryview(buf)[:k])


# --- BER subset -------------------------------------------------------------------

def test_ber_oid():
    # 2.16.756.5.8.1.1, the LN application context, as in every AARQ vector.
    assert ber.encode_oid((2, 16, 756, 5, 8, 1, 1)) == unhex("60857405080101")
    assert ber.decode_oid(unhex("60857405080205"), 0, 7) == (2, 16, 756, 5, 8, 2, 5)
    # 1.2.840.113549 (RSA Data Security, X.690 style example with 3-octet arc).
    assert ber.encode_oid((1, 2, 840, 113549)) == unhex("2A864886F70D")
    assert ber.decode_oid(unhex("2A864886F70D"), 0, 6) == (1, 2, 840, 113549)
    raises(DecodeError, ber.decode_oid, unhex("6085"), 0, 2)          # arc cut short
    raises(DecodeError, ber.decode_oid, unhex("608085"), 0, 3)        # non-minimal arc
    raises(DecodeError, ber.decode_oid, b"", 0, 0)
    raises(ValueError, ber.encode_oid, (3, 1))


def test_ber_integer_and_bit_string():
    for v, h in ((0, "00"), (127, "7F"), (128, "0080"), (256, "0100"), (-1, "FF"),
                 (-128, "80"), (-129, "FF7F")):
        assert ber.encode_integer(v) == unhex(h), v
        assert ber.decode_integer(unhex(h), 0, len(unhex(h))) == v
    raises(DecodeError, ber.decode_integer, b"", 0, 0)
    # acse-requirements 8A 02 07 80: one bit, authentication.
    assert ber.decode_bit_string(unhex("0780"), 0, 2) == (1, b"\x80")
    assert ber.encode_bit_string(1, b"\x80") == unhex("0780")
    assert ber.encode_bit_string(16, b"\x12\x34") == unhex("001234")
    raises(DecodeError, ber.decode_bit_string, unhex("08FF"), 0, 2)
    raises(DecodeError, ber.decode_bit_string, unhex("01"), 0, 1)


def test_ber_long_lengths():
    for n in (127, 128, 255, 256):
        t = ber.tlv(0x04, bytes(n))
        assert ber.read_tlv(t, 0, len(t)) == (0x04, len(t) - n, len(t))
        raises(DecodeError, ber.read_tlv, t, 0, len(t) - 1)
    t = ber.tlv(0x04, bytes(4096))
    assert t[:4] == unhex("04821000") and ber.read_tlv(t, 0, len(t)) == (0x04, 4, len(t))
    # 65536 announced (3-octet form), fewer present.
    raises(DecodeError, ber.read_tlv, unhex("0483010000") + bytes(4096), 0, 4101)

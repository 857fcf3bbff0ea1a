# Association control: the ACSE APDUs AARQ/AARE (open) and RLRQ/RLRE (release)
# as profiled by the Green Book (9.4.2, ISO/IEC 8650-1 subset), and the xDLMS
# InitiateRequest / InitiateResponse / InitiateError carried in their
# user-information. Pure codecs: which association to accept, and with what
# diagnostic, is decided by server.py.
#
# The ACSE APDUs are BER; their user-information is an OCTET STRING holding an
# A-XDR xDLMS APDU, either plain (InitiateRequest 0x01) or ciphered
# (glo-initiate-request 0x21, ...), which security.py unwraps.
from micropython import const

from dlms import ber
from dlms.apdu import encode_confirmed_service_error, CSE_INITIATE, SE_INITIATE
from dlms.axdr import decode_length, decode_uint, encode_uint_into
from dlms.errors import DecodeError

AARQ = const(0x60)
AARE = const(0x61)
RLRQ = const(0x62)
RLRE = const(0x63)

# Returned for an OBJECT IDENTIFIER outside the DLMS UA arcs, so the server can
# answer application-context-name-not-supported / mechanism-name-not-recognised.
UNKNOWN = const(-1)

# Application context names 2.16.756.5.8.1.N (Green Book 9.4.2.2.2).
CONTEXT_LN = const(1)
_CONTEXT_SN = const(2)
CONTEXT_LN_CIPHERED = const(3)
CONTEXT_SN_CIPHERED = const(4)
_CONTEXT_ARCS = (2, 16, 756, 5, 8, 1)

# Authentication mechanism names 2.16.756.5.8.2.N (Green Book 9.4.2.2.3).
MECH_LOWEST = const(0)
MECH_LLS = const(1)
_MECH_HLS = const(2)
_MECH_HLS_MD5 = const(3)
_MECH_HLS_SHA1 = const(4)
MECH_HLS_GMAC = const(5)
_MECH_HLS_SHA256 = const(6)
_MECH_HLS_ECDSA = const(7)
_MECH_ARCS = (2, 16, 756, 5, 8, 2)

# ACSE-requirements / protocol-version BIT STRINGs, as ints with BIT STRING
# bit n at 1 << n: authentication(0) is the only functional unit DLMS uses.
ACSE_AUTHENTICATION = const(1)
_PROTOCOL_VERSION1 = const(1)

# Association-result (ISO/IEC 8650-1).
RESULT_ACCEPTED = const(0)
RESULT_REJECTED_PERMANENT = const(1)
RESULT_REJECTED_TRANSIENT = const(2)

# Associate-source-diagnostic: the CHOICE tag says who gave the diagnostic.
SOURCE_SERVICE_USER = const(1)
SOURCE_SERVICE_PROVIDER = const(2)

# acse-service-user diagnostics.
DIAG_NULL = const(0)
DIAG_NO_REASON_GIVEN = const(1)
DIAG_APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = const(2)
DIAG_CALLING_AP_TITLE_NOT_RECOGNIZED = const(3)
_DIAG_CALLING_AP_INVOCATION_ID_NOT_RECOGNIZED = const(4)
_DIAG_CALLING_AE_QUALIFIER_NOT_RECOGNIZED = const(5)
_DIAG_CALLING_AE_INVOCATION_ID_NOT_RECOGNIZED = const(6)
_DIAG_CALLED_AP_TITLE_NOT_RECOGNIZED = const(7)
_DIAG_CALLED_AP_INVOCATION_ID_NOT_RECOGNIZED = const(8)
_DIAG_CALLED_AE_QUALIFIER_NOT_RECOGNIZED = const(9)
_DIAG_CALLED_AE_INVOCATION_ID_NOT_RECOGNIZED = const(10)
DIAG_AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED = const(11)
_DIAG_AUTHENTICATION_MECHANISM_NAME_REQUIRED = const(12)
DIAG_AUTHENTICATION_FAILURE = const(13)
DIAG_AUTHENTICATION_REQUIRED = const(14)
# acse-service-provider diagnostics.
_DIAG_PROVIDER_NULL = const(0)
DIAG_PROVIDER_NO_REASON_GIVEN = const(1)
_DIAG_PROVIDER_NO_COMMON_ACSE_VERSION = const(2)

# Release-request-reason / Release-response-reason.
RELEASE_NORMAL = const(0)
_RELEASE_URGENT = const(1)          # RLRQ
_RELEASE_NOT_FINISHED = const(1)    # RLRE
_RELEASE_USER_DEFINED = const(30)

# xDLMS APDUs found in user-information.
_INITIATE_REQUEST = const(0x01)
INITIATE_RESPONSE = const(0x08)
CONFIRMED_SERVICE_ERROR = const(0x0E)
GLO_INITIATE_REQUEST = const(0x21)
_GLO_INITIATE_RESPONSE = const(0x28)
_PLAIN_USER_INFORMATION = (_INITIATE_REQUEST, INITIATE_RESPONSE, CONFIRMED_SERVICE_ERROR)

# InitiateError values (ServiceError "initiate"), for encode_initiate_error.
INITIATE_ERROR_OTHER = const(0)
INITIATE_ERROR_DLMS_VERSION_TOO_LOW = const(1)
INITIATE_ERROR_INCOMPATIBLE_CONFORMANCE = const(2)
INITIATE_ERROR_PDU_SIZE_TOO_SHORT = const(3)
_INITIATE_ERROR_REFUSED_BY_VDE_HANDLER = const(4)

DLMS_VERSION = const(6)
_VAA_NAME_LN = const(0x0007)   # Green Book: LN referencing answers with 0x0007
_VAA_NAME_SN = const(0xFA00)   # base name of the SN association object

# Conformance block (Green Book 9.5, Conformance ::= [APPLICATION 31] IMPLICIT
# BIT STRING (SIZE(24))). BIT STRING bit 0 is the most significant bit of the
# first octet, so held as a 24-bit int, bit n has the mask 1 << (23 - n).
_CONF_RESERVED_ZERO = const(0x800000)               # bit 0
CONF_GENERAL_PROTECTION = const(0x400000)          # bit 1
CONF_GENERAL_BLOCK_TRANSFER = const(0x200000)      # bit 2
_CONF_READ = const(0x100000)                        # bit 3 (SN)
_CONF_WRITE = const(0x080000)                       # bit 4 (SN)
_CONF_UNCONFIRMED_WRITE = const(0x040000)           # bit 5 (SN)
_CONF_DELTA_VALUE_ENCODING = const(0x020000)        # bit 6 (reserved-six before Ed. 9)
_CONF_RESERVED_SEVEN = const(0x010000)              # bit 7
CONF_ATTRIBUTE0_WITH_SET = const(0x008000)         # bit 8
CONF_PRIORITY_MGMT = const(0x004000)               # bit 9
CONF_ATTRIBUTE0_WITH_GET = const(0x002000)         # bit 10
CONF_BLOCK_TRANSFER_WITH_GET = const(0x001000)     # bit 11
CONF_BLOCK_TRANSFER_WITH_SET = const(0x000800)     # bit 12
CONF_BLOCK_TRANSFER_WITH_ACTION = const(0x000400)  # bit 13
CONF_MULTIPLE_REFERENCES = const(0x000200)         # bit 14
_CONF_INFORMATION_REPORT = const(0x000100)          # bit 15 (SN)
CONF_DATA_NOTIFICATION = const(0x000080)           # bit 16
CONF_ACCESS = const(0x000040)                      # bit 17
_CONF_PARAMETERIZED_ACCESS = const(0x000020)        # bit 18 (SN)
CONF_GET = const(0x000010)                         # bit 19
CONF_SET = const(0x000008)                         # bit 20
CONF_SELECTIVE_ACCESS = const(0x000004)            # bit 21
CONF_EVENT_NOTIFICATION = const(0x000002)          # bit 22
CONF_ACTION = const(0x000001)                      # bit 23

# The conformance block is BER inside A-XDR: tag 5F 1F ([APPLICATION 31]),
# length 4, 0 unused bits, then the 3 octets.
_CONFORMANCE_HEADER = b"\x5f\x1f\x04\x00"


# --- ACSE field decoders: (buf, start, stop) of the field's contents -> value ----

def _single(buf, start, stop, tag):
    # An EXPLICIT tag wraps exactly one element.
    s, e = ber.expect_tlv(buf, start, stop, tag)
    if e != stop:
        raise DecodeError("junk after explicitly tagged element")
    return s, e


def _dlms_arc(arcs, prefix):
    if len(arcs) == len(prefix) + 1 and arcs[:-1] == prefix:
        return arcs[-1]
    return UNKNOWN


def _application_context(buf, start, stop):
    s, e = _single(buf, start, stop, ber.OBJECT_IDENTIFIER)
    return _dlms_arc(ber.decode_oid(buf, s, e), _CONTEXT_ARCS)


def _mechanism(buf, start, stop):
    return _dlms_arc(ber.decode_oid(buf, start, stop), _MECH_ARCS)


def _octets(buf, start, stop):
    s, e = _single(buf, start, stop, ber.OCTET_STRING)
    return bytes(buf[s:e])


def _integer(buf, start, stop):
    s, e = _single(buf, start, stop, ber.INTEGER)
    return ber.decode_integer(buf, s, e)


def _implicit_integer(buf, start, stop):
    return ber.decode_integer(buf, start, stop)


def _requirements(buf, start, stop):
    nbits, data = ber.decode_bit_string(buf, start, stop)
    value = 0
    for n in range(nbits):
        if data[n >> 3] & (0x80 >> (n & 7)):
            value |= 1 << n
    return value


def _authentication_value(buf, start, stop):
    # Authentication-value CHOICE: DLMS uses charstring [0] IMPLICIT GraphicString.
    s, e = _single(buf, start, stop, ber.CONTEXT | 0)
    return bytes(buf[s:e])


def _diagnostic(buf, start, stop):
    tag, s, e = ber.read_tlv(buf, start, stop)
    source = tag ^ (ber.CONTEXT | ber.CONSTRUCTED)
    if e != stop or source not in (SOURCE_SERVICE_USER, SOURCE_SERVICE_PROVIDER):
        raise DecodeError("bad result-source-diagnostic")
    return source, _integer(buf, s, e)


# {BER tag: (attribute name, decoder)}. Fields the server has no use for
# (called-AP-title, AP/AE invocation ids, implementation-information) are
# absent from the tables and skipped.
_USER_INFORMATION = ("user_information", _octets)
_AARQ_FIELDS = {
    0x80: ("protocol_version", _requirements),
    0xA1: ("application_context_name", _application_context),
    0xA6: ("calling_ap_title", _octets),
    0xA7: ("calling_ae_qualifier", _octets),
    0x8A: ("sender_acse_requirements", _requirements),
    0x8B: ("mechanism_name", _mechanism),
    0xAC: ("calling_authentication_value", _authentication_value),
    0xBE: _USER_INFORMATION,
}
_AARE_FIELDS = {
    0x80: ("protocol_version", _requirements),
    0xA1: ("application_context_name", _application_context),
    0xA2: ("result", _integer),
    0xA3: ("result_source_diagnostic", _diagnostic),
    0xA4: ("responding_ap_title", _octets),
    0xA5: ("responding_ae_qualifier", _octets),
    0x88: ("responder_acse_requirements", _requirements),
    0x89: ("mechanism_name", _mechanism),
    0xAA: ("responding_authentication_value", _authentication_value),
    0xBE: _USER_INFORMATION,
}
_RELEASE_FIELDS = {
    0x80: ("reason", _implicit_integer),
    0xBE: _USER_INFORMATION,
}


class AcseApdu:
    """A decoded ACSE APDU: one attribute per entry of its field table (None
    when absent), plus .tag, .end (position after the APDU) and
    .user_information_ciphered (True unless user_information is a plain
    InitiateRequest/InitiateResponse/ConfirmedServiceError)."""

    def __init__(self, tag, fields):
        self.tag = tag
        self.end = 0
        for name, _ in fields.values():
            setattr(self, name, None)
        self.user_information_ciphered = False


def _decode_acse(buf, pos, apdu_tag, fields, required):
    start, stop = ber.expect_tlv(buf, pos, len(buf), apdu_tag)
    apdu = AcseApdu(apdu_tag, fields)
    apdu.end = stop
    p = start
    while p < stop:
        tag, s, e = ber.read_tlv(buf, p, stop)
        field = fields.get(tag)
        if field is not None:
            setattr(apdu, field[0], field[1](buf, s, e))
        p = e
    for name in required:
        if getattr(apdu, name) is None:
            raise DecodeError("mandatory ACSE field missing")
    info = apdu.user_information
    if info is not None:
        apdu.user_information_ciphered = not info or info[0] not in _PLAIN_USER_INFORMATION
    return apdu


def decode_aarq(buf, pos=0):
    return _decode_acse(buf, pos, AARQ, _AARQ_FIELDS, ("application_context_name",))


def decode_aare(buf, pos=0):
    return _decode_acse(buf, pos, AARE, _AARE_FIELDS,
                        ("application_context_name", "result", "result_source_diagnostic"))


def decode_rlrq(buf, pos=0):
    return _decode_acse(buf, pos, RLRQ, _RELEASE_FIELDS, ())


def decode_rlre(buf, pos=0):
    return _decode_acse(buf, pos, RLRE, _RELEASE_FIELDS, ())


# --- ACSE encoders ------------------------------------------------------------

def _requirements_bits(value):
    # Inverse of _requirements: at least one bit, as many as the highest set.
    if not isinstance(value, int) or value < 0 or value > 0xFF:
        raise ValueError("acse-requirements out of range")
    nbits = 1
    while value >> nbits:
        nbits += 1
    octet = 0
    for n in range(nbits):
        if value & (1 << n):
            octet |= 0x80 >> n
    return ber.encode_bit_string(nbits, bytes((octet,)))


def _dlms_oid(prefix, arc):
    if not isinstance(arc, int) or arc < 0 or arc > 0x7F:
        raise ValueError("DLMS OID arc out of range")
    return ber.encode_oid(prefix + (arc,))


def encode_aare(result, diagnostic_kind, diagnostic, application_context,
                responding_ap_title=None, responder_acse_requirements=None,
                mechanism_name=None, responding_authentication_value=None,
                user_information=None):
    """The whole AARE (0x61), fields in the order of its ASN.1 SEQUENCE.
    diagnostic_kind: SOURCE_SERVICE_USER or SOURCE_SERVICE_PROVIDER."""
    if diagnostic_kind not in (SOURCE_SERVICE_USER, SOURCE_SERVICE_PROVIDER):
        raise ValueError("diagnostic_kind is 1 (service-user) or 2 (service-provider)")
    body = bytearray()
    ber.tlv_into(body, 0xA1, ber.tlv(ber.OBJECT_IDENTIFIER, _dlms_oid(_CONTEXT_ARCS, application_context)))
    ber.tlv_into(body, 0xA2, ber.tlv(ber.INTEGER, ber.encode_integer(result)))
    ber.tlv_into(body, 0xA3, ber.tlv(ber.CONTEXT | ber.CONSTRUCTED | diagnostic_kind,
                                     ber.tlv(ber.INTEGER, ber.encode_integer(diagnostic))))
    if responding_ap_title is not None:
        ber.tlv_into(body, 0xA4, ber.tlv(ber.OCTET_STRING, responding_ap_title))
    if responder_acse_requirements is not None:
        ber.tlv_into(body, 0x88, _requirements_bits(responder_acse_requirements))
    if mechanism_name is not None:
        ber.tlv_into(body, 0x89, _dlms_oid(_MECH_ARCS, mechanism_name))
    if responding_authentication_value is not None:
        ber.tlv_into(body, 0xAA, ber.tlv(ber.CONTEXT | 0, responding_authentication_value))
    if user_information is not None:
        ber.tlv_into(body, 0xBE, ber.tlv(ber.OCTET_STRING, user_information))
    return ber.tlv(AARE, body)


def _encode_release(tag, reason, user_information):
    body = bytearray()
    if reason is not None:
        ber.tlv_into(body, 0x80, ber.encode_integer(reason))
    if user_information is not None:
        ber.tlv_into(body, 0xBE, ber.tlv(ber.OCTET_STRING, user_information))
    return ber.tlv(tag, body)


def encode_rlre(reason=RELEASE_NORMAL, user_information=None):
    """RLRE (0x63); reason None leaves the optional field out."""
    return _encode_release(RLRE, reason, user_information)


def encode_rlrq(reason=RELEASE_NORMAL, user_information=None):
    return _encode_release(RLRQ, reason, user_information)


# --- xDLMS InitiateRequest / InitiateResponse (A-XDR) ------------------------

def _byte(buf, pos):
    if pos >= len(buf):
        raise DecodeError("truncated xDLMS initiate")
    return buf[pos]


def _signed8(b):
    return b - 0x100 if b & 0x80 else b


def _conformance(buf, pos):
    end = pos + 7
    if end > len(buf):
        raise DecodeError("truncated conformance")
    if bytes(buf[pos:pos + 4]) != _CONFORMANCE_HEADER:
        raise DecodeError("bad conformance block")
    return (buf[pos + 4] << 16) | (buf[pos + 5] << 8) | buf[pos + 6], end


class InitiateRequest:
    """Decoded xDLMS InitiateRequest (Green Book 9.5)."""

    def __init__(self):
        self.dedicated_key = None
        self.response_allowed = True
        self.proposed_quality_of_service = None
        self.proposed_dlms_version_number = 0
        self.proposed_conformance = 0
        self.client_max_receive_pdu_size = 0
        self.end = 0


def decode_initiate_request(buf, pos=0):
    if _byte(buf, pos) != _INITIATE_REQUEST:
        raise DecodeError("not an InitiateRequest")
    req = InitiateRequest()
    pos += 1
    # A-XDR: OPTIONAL and DEFAULT components are preceded by a usage flag octet
    # (0 = absent / default value).
    if _byte(buf, pos):
        n, pos = decode_length(buf, pos + 1)
        if pos + n > len(buf):
            raise DecodeError("truncated dedicated-key")
        req.dedicated_key = bytes(buf[pos:pos + n])
        pos += n
    else:
        pos += 1
    if _byte(buf, pos):                       # response-allowed DEFAULT TRUE
        req.response_allowed = _byte(buf, pos + 1) != 0
        pos += 2
    else:
        pos += 1
    if _byte(buf, pos):                       # proposed-quality-of-service [0] Integer8
        req.proposed_quality_of_service = _signed8(_byte(buf, pos + 1))
        pos += 2
    else:
        pos += 1
    req.proposed_dlms_version_number = _byte(buf, pos)
    req.proposed_conformance, pos = _conformance(buf, pos + 1)
    req.client_max_receive_pdu_size, pos = decode_uint(buf, pos, 2)
    req.end = pos
    return req


class InitiateResponse:
    """Decoded xDLMS InitiateResponse (Green Book 9.5)."""

    def __init__(self):
        self.negotiated_quality_of_service = None
        self.negotiated_dlms_version_number = 0
        self.negotiated_conformance = 0
        self.server_max_receive_pdu_size = 0
        self.vaa_name = 0
        self.end = 0


def decode_initiate_response(buf, pos=0):
    if _byte(buf, pos) != INITIATE_RESPONSE:
        raise DecodeError("not an InitiateResponse")
    rsp = InitiateResponse()
    pos += 1
    if _byte(buf, pos):
        rsp.negotiated_quality_of_service = _signed8(_byte(buf, pos + 1))
        pos += 2
    else:
        pos += 1
    rsp.negotiated_dlms_version_number = _byte(buf, pos)
    rsp.negotiated_conformance, pos = _conformance(buf, pos + 1)
    rsp.server_max_receive_pdu_size, pos = decode_uint(buf, pos, 2)
    rsp.vaa_name, pos = decode_uint(buf, pos, 2)
    rsp.end = pos
    return rsp


def encode_initiate_response(negotiated_conformance, server_max_receive_pdu_size,
                             vaa_name=_VAA_NAME_LN, negotiated_quality_of_service=None,
                             negotiated_dlms_version_number=DLMS_VERSION):
    out = bytearray((INITIATE_RESPONSE,))
    if negotiated_quality_of_service is None:
        out.append(0)
    else:
        q = negotiated_quality_of_service
        if not isinstance(q, int) or q < -0x80 or q > 0x7F:
            raise ValueError("quality-of-service is an Integer8")
        out.append(1)
        out.append(q & 0xFF)
    encode_uint_into(out, negotiated_dlms_version_number, 1)
    out.extend(_CONFORMANCE_HEADER)
    encode_uint_into(out, negotiated_conformance, 3)
    encode_uint_into(out, server_max_receive_pdu_size, 2)
    encode_uint_into(out, vaa_name, 2)
    return bytes(out)


def encode_initiate_error(initiate_error):
    """confirmedServiceError initiateError(1) ServiceError initiate(6): the
    user-information of an AARE refused for an xDLMS reason (Green Book 9.4.2,
    e.g. INITIATE_ERROR_DLMS_VERSION_TOO_LOW, INITIATE_ERROR_PDU_SIZE_TOO_SHORT)."""
    return encode_confirmed_service_error(CSE_INITIATE, SE_INITIATE, initiate_error)

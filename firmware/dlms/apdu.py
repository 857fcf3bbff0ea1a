# xDLMS services with logical name referencing (Green Book 9.5, COSEMpdu
# ASN.1): decoders for GET/SET/ACTION requests, encoders for their responses,
# exception-response and confirmed-service-error. Pure A-XDR codecs: access
# rights, block transfer state and which error to answer with belong to
# server.py. Release (RLRQ/RLRE) lives in acse.py.
#
# Decoders take the whole APDU (service tag included) as bytes, bytearray or
# memoryview and return (choice, invoke_id_and_priority, payload, end), end
# being the position after the APDU; they raise DecodeError, never
# IndexError. Payload shapes, by choice:
#   attribute descriptor  (class_id, instance_id: 6 bytes, attribute_id, access)
#                         access = None or (selector, A-XDR value)
#   method descriptor     (class_id, instance_id, method_id)
#   datablock (DataBlock-SA)  (last_block: bool, block_number, raw_data: bytes)
# Encoders return bytes. A get-data-result (GET and ACTION responses) is given
# as an A-XDR value tuple (data), an int (data-access-result) or bytes-like
# (Data already A-XDR encoded, sent as is).
# Builtins used per request, as module names (why: dlms/security.py).
from builtins import bytes, isinstance, len
from micropython import const

from dlms.axdr import decode_data, decode_length, decode_uint, encode_data_into, \
    encode_length_into, encode_uint_into
from dlms.errors import DecodeError

GET_REQUEST = const(0xC0)
SET_REQUEST = const(0xC1)
_EVENT_NOTIFICATION_REQUEST = const(0xC2)
ACTION_REQUEST = const(0xC3)
GET_RESPONSE = const(0xC4)
_SET_RESPONSE = const(0xC5)
_ACTION_RESPONSE = const(0xC7)
EXCEPTION_RESPONSE = const(0xD8)
CONFIRMED_SERVICE_ERROR = const(0x0E)

# Get-Request / Get-Response choices.
GET_NORMAL = const(1)
GET_NEXT = const(2)             # request: next; response: with-datablock
_GET_WITH_DATABLOCK = const(2)
GET_WITH_LIST = const(3)
# Set-Request choices.
SET_NORMAL = const(1)
SET_WITH_FIRST_DATABLOCK = const(2)
SET_WITH_DATABLOCK = const(3)
SET_WITH_LIST = const(4)
SET_WITH_LIST_AND_FIRST_DATABLOCK = const(5)
# Set-Response choices.
_SET_RESPONSE_NORMAL = const(1)
_SET_RESPONSE_DATABLOCK = const(2)
_SET_RESPONSE_LAST_DATABLOCK = const(3)
_SET_RESPONSE_LAST_DATABLOCK_WITH_LIST = const(4)
_SET_RESPONSE_WITH_LIST = const(5)
# Action-Request choices.
ACTION_NORMAL = const(1)
ACTION_NEXT_PBLOCK = const(2)
_ACTION_WITH_LIST = const(3)
ACTION_WITH_FIRST_PBLOCK = const(4)
ACTION_WITH_LIST_AND_FIRST_PBLOCK = const(5)
_ACTION_WITH_PBLOCK = const(6)
# Action-Response choices.
_ACTION_RESPONSE_NORMAL = const(1)
_ACTION_RESPONSE_WITH_PBLOCK = const(2)
_ACTION_RESPONSE_WITH_LIST = const(3)
_ACTION_RESPONSE_NEXT_PBLOCK = const(4)

# Invoke-Id-And-Priority (Green Book 9.5): bits 0-3 invoke-id, bit 6
# service-class (1 = confirmed), bit 7 priority (1 = high). Responses echo it.
INVOKE_ID_MASK = const(0x0F)
SERVICE_CLASS_CONFIRMED = const(0x40)
PRIORITY_HIGH = const(0x80)

# ExceptionResponse state-error / service-error.
STATE_SERVICE_NOT_ALLOWED = const(1)
STATE_SERVICE_UNKNOWN = const(2)
SERVICE_OPERATION_NOT_POSSIBLE = const(1)
SERVICE_NOT_SUPPORTED = const(2)
SERVICE_OTHER_REASON = const(3)
SERVICE_PDU_TOO_LONG = const(4)
SERVICE_DECIPHERING_ERROR = const(5)
SERVICE_INVOCATION_COUNTER_ERROR = const(6)   # carries the expected counter (u32)

# ConfirmedServiceError: the service it answers, then a ServiceError CHOICE.
CSE_INITIATE = const(1)
_CSE_GET_STATUS = const(2)
_CSE_GET_NAME_LIST = const(3)
_CSE_GET_VARIABLE_ATTRIBUTE = const(4)
_CSE_READ = const(5)
_CSE_WRITE = const(6)
_SE_APPLICATION_REFERENCE = const(0)
_SE_HARDWARE_RESOURCE = const(1)
_SE_VDE_STATE_ERROR = const(2)
_SE_SERVICE = const(3)
_SE_DEFINITION = const(4)
_SE_ACCESS = const(5)
SE_INITIATE = const(6)
_SE_LOAD_DATA_SET = const(7)
_SE_CHANGE_SCOPE = const(8)
_SE_TASK = const(9)
_SE_OTHER = const(10)

_DESCRIPTOR_SIZE = const(9)   # class-id u16, instance-id 6 octets, attribute/method id


# --- decoding helpers: (buf, pos) -> (value, next_pos) -----------------------

def _byte(buf, pos):
    if pos >= len(buf):
        raise DecodeError("truncated APDU")
    return buf[pos]


def _object(buf, pos):
    # Cosem-Attribute-Descriptor / Cosem-Method-Descriptor without the access
    # part; the id is an Integer8 (Blue Book: negative ids are manufacturer's).
    end = pos + _DESCRIPTOR_SIZE
    if end > len(buf):
        raise DecodeError("truncated COSEM descriptor")
    ident = buf[pos + 8]
    return (buf[pos] << 8) | buf[pos + 1], bytes(buf[pos + 2:pos + 8]), \
        ident - 0x100 if ident & 0x80 else ident, end


def _attribute(buf, pos):
    # Cosem-Attribute-Descriptor-With-Selection: access-selection is OPTIONAL,
    # so an A-XDR usage flag precedes it.
    class_id, instance, attr, pos = _object(buf, pos)
    access = None
    if _byte(buf, pos):
        selector = _byte(buf, pos + 1)
        value, pos = decode_data(buf, pos + 2)
        access = (selector, value)
    else:
        pos += 1
    return (class_id, instance, attr, access), pos


def _method(buf, pos):
    class_id, instance, method, pos = _object(buf, pos)
    return (class_id, instance, method), pos


def _count(buf, pos):
    # SEQUENCE OF: an A-XDR length, each element at least one byte long.
    n, pos = decode_length(buf, pos)
    if n > len(buf) - pos:
        raise DecodeError("truncated SEQUENCE OF")
    return n, pos


def _list(buf, pos, item):
    n, pos = _count(buf, pos)
    items = []
    for _ in range(n):
        value, pos = item(buf, pos)
        items.append(value)
    return items, pos


def _datablock(buf, pos):
    # DataBlock-SA ::= SEQUENCE { last-block BOOLEAN, block-number Unsigned32,
    # raw-data OCTET STRING }
    last = _byte(buf, pos) != 0
    block, pos = decode_uint(buf, pos + 1, 4)
    n, pos = decode_length(buf, pos)
    end = pos + n
    if end > len(buf):
        raise DecodeError("truncated raw-data")
    return (last, block, bytes(buf[pos:end])), end


def _block_number(buf, pos):
    return decode_uint(buf, pos, 4)


def _pair(first, second):
    """Decoder of SEQUENCE { first, second } from the decoders of its parts."""
    def decode(buf, pos):
        a, pos = first(buf, pos)
        b, pos = second(buf, pos)
        return (a, b), pos
    return decode


def _sequence_of(item):
    return lambda buf, pos: _list(buf, pos, item)


def _optional_data(buf, pos):
    # method-invocation-parameters Data OPTIONAL: None when absent, distinct
    # from a present null-data (0, None).
    if _byte(buf, pos):
        return decode_data(buf, pos + 1)
    return None, pos + 1


_attributes = _sequence_of(_attribute)
_methods = _sequence_of(_method)
_data_list = _sequence_of(decode_data)


# {choice: payload decoder}; the payload follows invoke-id-and-priority.
_GET_REQUEST = {
    GET_NORMAL: _attribute,                                        # descriptor
    GET_NEXT: _block_number,                                       # block number
    GET_WITH_LIST: _attributes,                                    # [descriptor, ...]
}
_SET_REQUEST = {
    SET_NORMAL: _pair(_attribute, decode_data),                    # (descriptor, value)
    SET_WITH_FIRST_DATABLOCK: _pair(_attribute, _datablock),       # (descriptor, datablock)
    SET_WITH_DATABLOCK: _datablock,                                # datablock
    SET_WITH_LIST: _pair(_attributes, _data_list),                 # ([descriptor], [value])
    SET_WITH_LIST_AND_FIRST_DATABLOCK: _pair(_attributes, _datablock),  # ([descriptor], datablock)
}
_ACTION_REQUEST = {
    ACTION_NORMAL: _pair(_method, _optional_data),                 # (method, params or None)
    ACTION_NEXT_PBLOCK: _block_number,                             # block number
    _ACTION_WITH_LIST: _pair(_methods, _data_list),                 # ([method], [value])
    ACTION_WITH_FIRST_PBLOCK: _pair(_method, _datablock),          # (method, datablock)
    ACTION_WITH_LIST_AND_FIRST_PBLOCK: _pair(_methods, _datablock),  # ([method], datablock)
    _ACTION_WITH_PBLOCK: _datablock,                                # datablock
}


def _decode_request(buf, pos, tag, choices):
    if _byte(buf, pos) != tag:
        raise DecodeError("unexpected APDU tag")
    choice = _byte(buf, pos + 1)
    payload = choices.get(choice)
    if payload is None:
        raise DecodeError("unknown service choice")
    invoke = _byte(buf, pos + 2)
    value, end = payload(buf, pos + 3)
    return choice, invoke, value, end


def decode_get_request(buf, pos=0):
    return _decode_request(buf, pos, GET_REQUEST, _GET_REQUEST)


def decode_set_request(buf, pos=0):
    return _decode_request(buf, pos, SET_REQUEST, _SET_REQUEST)


def decode_action_request(buf, pos=0):
    return _decode_request(buf, pos, ACTION_REQUEST, _ACTION_REQUEST)


# --- encoders ----------------------------------------------------------------

def _u8(out, v):
    # bytearray.append truncates silently on MicroPython: check the range here.
    if not isinstance(v, int) or v < 0 or v > 0xFF:
        raise ValueError("octet out of range")
    out.append(v)


def _head(tag, choice, invoke):
    out = bytearray((tag, choice))
    _u8(out, invoke)
    return out


def _get_data_result(out, result):
    # Get-Data-Result ::= CHOICE { data [0] Data, data-access-result [1] }
    if isinstance(result, int):
        out.append(1)
        _u8(out, result)
    elif isinstance(result, tuple):
        out.append(0)
        encode_data_into(out, result)
    else:
        out.append(0)
        out.extend(result)


def encode_get_response_normal(invoke_id_and_priority, result):
    out = _head(GET_RESPONSE, GET_NORMAL, invoke_id_and_priority)
    _get_data_result(out, result)
    return bytes(out)


def _block_head(invoke_id_and_priority, last_block, block_number):
    out = _head(GET_RESPONSE, _GET_WITH_DATABLOCK, invoke_id_and_priority)
    out.append(1 if last_block else 0)
    encode_uint_into(out, block_number, 4)
    return out


def datablock_head(invoke_id_and_priority, last_block, block_number, n):
    """A GET response with-datablock up to its raw-data of n octets, which follow it:
    lets the server read a block's data into place and put this head before it."""
    out = _block_head(invoke_id_and_priority, last_block, block_number)
    out.append(0)
    encode_length_into(out, n)
    return out


def encode_get_response_with_datablock(invoke_id_and_priority, last_block, block_number, result):
    """DataBlock-G: result is the raw-data (bytes-like, a slice of the encoded
    Data) or an int data-access-result."""
    if not isinstance(result, int):
        return bytes(datablock_head(invoke_id_and_priority, last_block, block_number, len(result)) + result)
    out = _block_head(invoke_id_and_priority, last_block, block_number)
    out.append(1)
    _u8(out, result)
    return bytes(out)


def encode_get_response_with_list(invoke_id_and_priority, results):
    out = _head(GET_RESPONSE, GET_WITH_LIST, invoke_id_and_priority)
    encode_length_into(out, len(results))
    for result in results:
        _get_data_result(out, result)
    return bytes(out)


def encode_set_response_normal(invoke_id_and_priority, result):
    out = _head(_SET_RESPONSE, _SET_RESPONSE_NORMAL, invoke_id_and_priority)
    _u8(out, result)
    return bytes(out)


def encode_set_response_with_list(invoke_id_and_priority, results):
    out = _head(_SET_RESPONSE, _SET_RESPONSE_WITH_LIST, invoke_id_and_priority)
    encode_length_into(out, len(results))
    for result in results:
        _u8(out, result)
    return bytes(out)


def encode_set_response_datablock(invoke_id_and_priority, block_number):
    out = _head(_SET_RESPONSE, _SET_RESPONSE_DATABLOCK, invoke_id_and_priority)
    encode_uint_into(out, block_number, 4)
    return bytes(out)


def encode_set_response_last_datablock(invoke_id_and_priority, result, block_number):
    out = _head(_SET_RESPONSE, _SET_RESPONSE_LAST_DATABLOCK, invoke_id_and_priority)
    _u8(out, result)
    encode_uint_into(out, block_number, 4)
    return bytes(out)


def _action_response(out, result, return_parameters):
    # Action-Response-With-Optional-Data: result, then return-parameters
    # Get-Data-Result OPTIONAL behind its usage flag.
    _u8(out, result)
    if return_parameters is None:
        out.append(0)
    else:
        out.append(1)
        _get_data_result(out, return_parameters)


def encode_action_response_normal(invoke_id_and_priority, result, return_parameters=None):
    out = _head(_ACTION_RESPONSE, _ACTION_RESPONSE_NORMAL, invoke_id_and_priority)
    _action_response(out, result, return_parameters)
    return bytes(out)


def encode_action_response_with_list(invoke_id_and_priority, responses):
    """responses: [(action_result, return_parameters or None), ...]"""
    out = _head(_ACTION_RESPONSE, _ACTION_RESPONSE_WITH_LIST, invoke_id_and_priority)
    encode_length_into(out, len(responses))
    for result, return_parameters in responses:
        _action_response(out, result, return_parameters)
    return bytes(out)


def encode_exception_response(state_error, service_error, invocation_counter=None):
    """ExceptionResponse (0xD8). invocation-counter-error carries the counter
    value the server expects (Green Book 9.5, service-error [6] Unsigned32)."""
    out = bytearray((EXCEPTION_RESPONSE,))
    _u8(out, state_error)
    _u8(out, service_error)
    if service_error == SERVICE_INVOCATION_COUNTER_ERROR:
        if invocation_counter is None:
            raise ValueError("invocation-counter-error needs the expected counter")
        encode_uint_into(out, invocation_counter, 4)
    return bytes(out)


def encode_confirmed_service_error(service, error_kind, error_value):
    """ConfirmedServiceError (0x0E): service CHOICE (CSE_*), ServiceError
    CHOICE (SE_*) and its ENUMERATED value."""
    out = bytearray((CONFIRMED_SERVICE_ERROR,))
    _u8(out, service)
    _u8(out, error_kind)
    _u8(out, error_value)
    return bytes(out)

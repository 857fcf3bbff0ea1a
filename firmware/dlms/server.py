"""Routes whole APDUs to the object model and back.

Owns: association state per client (ACSE), the xDLMS services GET/SET/ACTION with
block transfer, and the one mapping from DlmsError to a wire response (AARE refusal,
data-access-result, action-result, exception-response). Knows nothing of frames."""
from micropython import const

from dlms import acse, apdu
from dlms.errors import AccessError, DecodeError
from dlms import errors
from dlms.axdr import decode_data, encode_data
from dlms.events import NEED_DATA, EV_APDU, EV_CONNECT, EV_DISCONNECT

# Smallest client PDU worth serving: a GET response block header plus some data.
_MIN_CLIENT_PDU = const(12)
# Response header of a GET with-datablock: tag, choice, invoke, last, block(4), choice,
# raw-data length (up to 3 octets).
_BLOCK_OVERHEAD = const(12)


class Association:
    """The state of one client's application association; also the `ctx` handed to
    COSEM objects (client, negotiated context, table, now)."""

    def __init__(self, server, client):
        self.server = server
        self.table = server.table
        self.client = client
        self.server_sap = 1
        # The clients the meter accepts, their mechanism, context and offered
        # conformance (Green Book 9.4.6.1) live in the object table, beside their rights.
        policy = server.table.client(client) or {}
        self.client_name = policy.get("name")
        self.mechanism = policy.get("mechanism")
        self.context = policy.get("context")
        self.offered_conformance = policy.get("conformance", 0)
        self.associated = False
        self.conformance = 0
        self.client_max_pdu = 0
        self.now = 0
        self._get_blocks = None     # (invoke, encoded data, next offset, last block number)
        self._set_blocks = None     # (invoke, descriptor, received bytes, last block number)

    @property
    def max_pdu(self):
        return min(self.client_max_pdu, self.server.max_pdu)

    def close(self):
        self.associated = False
        self._get_blocks = self._set_blocks = None

    def handle_apdu(self, request, now):
        """One request APDU in, the response APDU (or None) out."""
        self.now = now
        if not request:
            return None
        handler = _HANDLERS.get(request[0])
        if handler is None:
            return apdu.encode_exception_response(apdu.STATE_SERVICE_UNKNOWN, apdu.SERVICE_NOT_SUPPORTED)
        if handler is not _aarq and not self.associated:
            return _not_allowed(request[0])
        if len(request) > self.server.max_pdu:
            return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_PDU_TOO_LONG)
        try:
            return handler(self, request)
        except DecodeError:
            return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_OPERATION_NOT_POSSIBLE)
        except Exception as e:  # a bug must cost one answer, never the meter
            print("server: internal error on APDU 0x%02x:" % request[0], repr(e))
            return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_OTHER_REASON)

    # --- attribute and method access through the table ------------------------

    def _object(self, class_id, instance):
        obj = self.table.lookup(class_id, instance)
        if obj is None:
            raise AccessError(errors.OBJECT_UNDEFINED)
        return obj

    def read(self, descriptor):
        class_id, instance, attr, access = descriptor
        obj = self._object(class_id, instance)
        if not self.table.attribute_access(self.client, obj, attr) & 1:
            raise AccessError(errors.READ_WRITE_DENIED)
        if access is not None:
            return obj.get_selective(attr, access[0], access[1], self)
        return obj.get(attr, self)

    def write(self, descriptor, value):
        class_id, instance, attr, access = descriptor
        obj = self._object(class_id, instance)
        if not self.table.attribute_access(self.client, obj, attr) & 2:
            raise AccessError(errors.READ_WRITE_DENIED)
        obj.set(attr, value, self)

    def invoke(self, descriptor, params):
        class_id, instance, method = descriptor
        obj = self._object(class_id, instance)
        if not self.table.method_access(self.client, obj, method):
            raise AccessError(errors.READ_WRITE_DENIED)
        return obj.action(method, params, self)


def _not_allowed(tag):
    # Green Book 9.3.5: confirmed service requests outside an association are
    # answered with an exception-response; release requests get a plain RLRE.
    if tag == acse.RLRQ:
        return acse.encode_rlre(acse.RELEASE_NORMAL)
    return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_OPERATION_NOT_POSSIBLE)


# --- ACSE --------------------------------------------------------------------

def _refuse(context, diagnostic, user_information=None, source=acse.SOURCE_SERVICE_USER):
    return acse.encode_aare(acse.RESULT_REJECTED_PERMANENT, source, diagnostic, context,
                            user_information=user_information)


def _authenticate(assoc, aarq):
    """None when the client proved who it is, else the AARE diagnostic."""
    mechanism = aarq.mechanism_name if aarq.mechanism_name is not None else acse.MECH_LOWEST
    if mechanism != assoc.mechanism:
        if assoc.mechanism != acse.MECH_LOWEST and mechanism == acse.MECH_LOWEST:
            return acse.DIAG_AUTHENTICATION_REQUIRED
        return acse.DIAG_AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED
    if mechanism == acse.MECH_LLS:
        if aarq.calling_authentication_value is None:
            return acse.DIAG_AUTHENTICATION_REQUIRED
        association = assoc.table.association_for(assoc.client)
        if association is None or not association.verify_secret(aarq.calling_authentication_value):
            return acse.DIAG_AUTHENTICATION_FAILURE
    return None


def _aarq(assoc, request):
    assoc.close()
    try:
        aarq = acse.decode_aarq(request)
    except DecodeError:
        return _refuse(acse.CONTEXT_LN, acse.DIAG_PROVIDER_NO_REASON_GIVEN, source=acse.SOURCE_SERVICE_PROVIDER)
    context = aarq.application_context_name
    if assoc.context is None:
        return _refuse(context if context in (1, 2, 3, 4) else acse.CONTEXT_LN, acse.DIAG_NO_REASON_GIVEN)
    if context != assoc.context:
        return _refuse(assoc.context, acse.DIAG_APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
    diagnostic = _authenticate(assoc, aarq)
    if diagnostic is not None:
        return _refuse(context, diagnostic)
    if aarq.user_information is None or aarq.user_information_ciphered:
        return _refuse(context, acse.DIAG_NO_REASON_GIVEN)
    try:
        initiate = acse.decode_initiate_request(aarq.user_information)
    except DecodeError:
        return _refuse(context, acse.DIAG_NO_REASON_GIVEN, acse.encode_initiate_error(acse.INITIATE_ERROR_OTHER))
    if initiate.proposed_dlms_version_number < acse.DLMS_VERSION:
        return _refuse(context, acse.DIAG_NO_REASON_GIVEN,
                       acse.encode_initiate_error(acse.INITIATE_ERROR_DLMS_VERSION_TOO_LOW))
    # 0 means "no limit stated" is not allowed by the Green Book; tiny PDUs cannot
    # carry a block header.
    if initiate.client_max_receive_pdu_size < _MIN_CLIENT_PDU:
        return _refuse(context, acse.DIAG_NO_REASON_GIVEN,
                       acse.encode_initiate_error(acse.INITIATE_ERROR_PDU_SIZE_TOO_SHORT))
    conformance = initiate.proposed_conformance & assoc.offered_conformance
    if not conformance:
        return _refuse(context, acse.DIAG_NO_REASON_GIVEN,
                       acse.encode_initiate_error(acse.INITIATE_ERROR_INCOMPATIBLE_CONFORMANCE))
    assoc.conformance = conformance
    assoc.client_max_pdu = initiate.client_max_receive_pdu_size
    assoc.associated = True
    return acse.encode_aare(
        acse.RESULT_ACCEPTED, acse.SOURCE_SERVICE_USER, acse.DIAG_NULL, context,
        user_information=acse.encode_initiate_response(conformance, assoc.server.max_pdu),
    )


def _rlrq(assoc, request):
    try:
        acse.decode_rlrq(request)
    except DecodeError:
        pass  # a malformed release still ends the association: the client wants out
    assoc.close()
    return acse.encode_rlre(acse.RELEASE_NORMAL)


# --- GET ---------------------------------------------------------------------

def _data_result(assoc, descriptor):
    """Encoded Data, or an int data-access-result."""
    try:
        return encode_data(assoc.read(descriptor))
    except AccessError as e:
        return e.code


def _get(assoc, request):
    choice, invoke, value, end = apdu.decode_get_request(request)
    if end != len(request):
        raise DecodeError("trailing bytes after GET request")
    if choice == apdu.GET_NEXT:
        return _get_next(assoc, invoke, value)
    assoc._get_blocks = None
    if choice == apdu.GET_NORMAL:
        result = _data_result(assoc, value)
        response = apdu.encode_get_response_normal(invoke, result)
        if isinstance(result, int) or len(response) <= assoc.max_pdu:
            return response
        return _start_blocks(assoc, invoke, result)
    if not assoc.conformance & acse.CONF_MULTIPLE_REFERENCES:
        return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_NOT_SUPPORTED)
    results = [_data_result(assoc, d) for d in value]
    response = apdu.encode_get_response_with_list(invoke, results)
    if len(response) <= assoc.max_pdu:
        return response
    # Block transfer of a with-list result carries the list encoding (count and
    # each Get-Data-Result) as raw data: the response minus its 3-byte head.
    return _start_blocks(assoc, invoke, response[3:])


def _start_blocks(assoc, invoke, raw):
    if not assoc.conformance & acse.CONF_BLOCK_TRANSFER_WITH_GET:
        return apdu.encode_get_response_normal(invoke, errors.OTHER_REASON)
    assoc._get_blocks = (invoke, raw, 0, 0)
    return _next_block(assoc)


def _next_block(assoc):
    invoke, raw, offset, number = assoc._get_blocks
    size = assoc.max_pdu - _BLOCK_OVERHEAD
    chunk = raw[offset:offset + size]
    offset += len(chunk)
    number += 1
    last = offset >= len(raw)
    assoc._get_blocks = None if last else (invoke, raw, offset, number)
    return apdu.encode_get_response_with_datablock(invoke, last, number, chunk)


def _get_next(assoc, invoke, block_number):
    blocks = assoc._get_blocks
    if blocks is None:
        return apdu.encode_get_response_with_datablock(invoke, True, block_number, errors.NO_LONG_GET_IN_PROGRESS)
    if block_number != blocks[3]:
        assoc._get_blocks = None
        return apdu.encode_get_response_with_datablock(invoke, True, block_number, errors.LONG_GET_ABORTED)
    return _next_block(assoc)


# --- SET ---------------------------------------------------------------------

def _write_result(assoc, descriptor, value):
    try:
        assoc.write(descriptor, value)
        return errors.SUCCESS
    except AccessError as e:
        return e.code


def _set(assoc, request):
    choice, invoke, value, end = apdu.decode_set_request(request)
    if end != len(request):
        raise DecodeError("trailing bytes after SET request")
    handler = _SET_CHOICES.get(choice)
    if handler is None:
        return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_NOT_SUPPORTED)
    return handler(assoc, invoke, value)


def _set_normal(assoc, invoke, value):
    descriptor, data = value
    return apdu.encode_set_response_normal(invoke, _write_result(assoc, descriptor, data))


def _set_with_list(assoc, invoke, value):
    descriptors, values = value
    if len(descriptors) != len(values):
        raise DecodeError("SET with-list: counts differ")
    results = [_write_result(assoc, d, v) for d, v in zip(descriptors, values)]
    return apdu.encode_set_response_with_list(invoke, results)


def _set_first_block(assoc, invoke, value):
    descriptor, (last, number, raw) = value
    assoc._set_blocks = (invoke, descriptor, bytearray(raw), number)
    return _set_block_done(assoc, invoke, last, number)


def _set_next_block(assoc, invoke, block):
    last, number, raw = block
    pending = assoc._set_blocks
    if pending is None:
        return apdu.encode_set_response_last_datablock(invoke, errors.NO_LONG_SET_IN_PROGRESS, number)
    if number != pending[3] + 1 or len(pending[2]) + len(raw) > assoc.server.max_pdu * 8:
        assoc._set_blocks = None
        return apdu.encode_set_response_last_datablock(invoke, errors.LONG_SET_ABORTED, number)
    pending[2].extend(raw)
    assoc._set_blocks = (pending[0], pending[1], pending[2], number)
    return _set_block_done(assoc, invoke, last, number)


def _set_block_done(assoc, invoke, last, number):
    if not last:
        return apdu.encode_set_response_datablock(invoke, number)
    _, descriptor, raw, _ = assoc._set_blocks
    assoc._set_blocks = None
    try:
        value, end = decode_data(raw)
        result = _write_result(assoc, descriptor, value) if end == len(raw) else errors.TYPE_UNMATCHED
    except DecodeError:
        result = errors.TYPE_UNMATCHED
    return apdu.encode_set_response_last_datablock(invoke, result, number)


_SET_CHOICES = {
    apdu.SET_NORMAL: _set_normal,
    apdu.SET_WITH_LIST: _set_with_list,
    apdu.SET_WITH_FIRST_DATABLOCK: _set_first_block,
    apdu.SET_WITH_DATABLOCK: _set_next_block,
}


# --- ACTION ------------------------------------------------------------------

def _action(assoc, request):
    choice, invoke, value, end = apdu.decode_action_request(request)
    if end != len(request):
        raise DecodeError("trailing bytes after ACTION request")
    if choice != apdu.ACTION_NORMAL:
        return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_NOT_SUPPORTED)
    descriptor, params = value
    try:
        returned = assoc.invoke(descriptor, params)
    except AccessError as e:
        return apdu.encode_action_response_normal(invoke, e.code)
    return apdu.encode_action_response_normal(invoke, errors.SUCCESS, returned)


_HANDLERS = {
    acse.AARQ: _aarq,
    acse.RLRQ: _rlrq,
    apdu.GET_REQUEST: _get,
    apdu.SET_REQUEST: _set,
    apdu.ACTION_REQUEST: _action,
}


class DlmsServer:
    """The logical device: its object table, its clients and their associations."""

    def __init__(self, table, board):
        self.table = table
        self.max_pdu = board.get("max_pdu", 1024)

    def open_session(self, client):
        return Association(self, client)

    def close_sessions(self, sessions):
        for assoc in sessions.values():
            assoc.close()
        sessions.clear()

    def describe_clients(self):
        return ["%d: %s" % (sap, self.table.client(sap)["name"]) for sap in self.table.clients()]

    def pump(self, link, sessions, now):
        """Drain a link's events: open, feed and close associations."""
        while True:
            event = link.next_event()
            if event is NEED_DATA:
                return
            kind, client, payload = event
            if kind == EV_APDU:
                assoc = sessions.get(client)
                if assoc is None:
                    assoc = sessions[client] = self.open_session(client)
                reply = assoc.handle_apdu(payload, now)
                if reply is not None:
                    link.send_apdu(client, reply)
            elif kind == EV_CONNECT or kind == EV_DISCONNECT:
                assoc = sessions.pop(client, None)
                if assoc is not None:
                    assoc.close()

"""Routes whole APDUs to the object model and back.

Owns: association state per client (ACSE), the xDLMS services GET/SET/ACTION with
block transfer, the ciphered association (the CipherSession of dlms/security.py
unwraps every request and wraps its response; HLS-GMAC pass 3/4 gates the
association), the security event hook and the authentication lock-out, and the one
mapping from DlmsError to a wire response (AARE refusal, data-access-result,
action-result, exception-response). Knows nothing of frames.

AARE refusals of a ciphered association (Green Book 9.4.2, as gurux answers):
  application context or mechanism not the client's   application-context-name-not-
                                                       supported / authentication-required
  no or bad calling-AP-title (client system title)     calling-AP-title-not-recognized
  glo-initiate-request not decipherable, stale counter no-reason-given + InitiateError
  meter without keys (device not provisioned)          rejected-transient, no-reason-given
  HLS locked out (below)                               rejected-transient, authentication-failure
Lock-out: from the 3rd consecutive failed HLS attempt on (AARQ that does not
decipher, replayed AARQ, wrong f(StoC)), new HLS associations are refused for
2, 4, 8 ... seconds of the meter's clock (at most an hour) after the last failure;
a completed HLS resets it. Not persisted: a restart forgets it."""
# Builtins used per request, as module names (why: dlms/security.py).
from builtins import bytes, isinstance, len, memoryview, min, type
from micropython import const

from dlms import acse, apdu, security
from dlms.errors import AccessError, DecodeError
from dlms import errors
from dlms.axdr import decode_data, encode_data
from dlms.events import NEED_DATA, EV_APDU, EV_CONNECT, EV_DISCONNECT
from dlms.security import CIPHER_OVERHEAD, TAG_LEN, WRAP_HEADROOM, CipherSession, SecurityError

# Smallest client PDU worth serving: a GET response block header plus some data.
_MIN_CLIENT_PDU = const(12)
# Response header of a GET with-datablock: tag, choice, invoke, last, block(4), choice,
# raw-data length (up to 3 octets).
_BLOCK_OVERHEAD = const(12)
# Header of a GET response normal: tag, choice, invoke, result choice.
_NORMAL_OVERHEAD = const(4)
# Where a response's data go in the response buffer: room for the largest head before
# them and for the ciphering's before that.
_TX_DATA = WRAP_HEADROOM + _BLOCK_OVERHEAD

_CIPHERED_CONTEXTS = (acse.CONTEXT_LN_CIPHERED, acse.CONTEXT_SN_CIPHERED)
_ACSE_TAGS = (acse.AARQ, acse.RLRQ)
# Ciphered request tags, known to the server even without a ciphered association.
_CIPHERED_TAGS = tuple(security.REQUESTS) + (security.GENERAL_GLO_CIPHERING, security.GENERAL_DED_CIPHERING)
# The one method a pending (HLS pass 1/2 done) association may call:
# reply_to_HLS_authentication of the current Association LN 0-0:40.0.0.255.
_HLS_METHOD = (15, b"\x00\x00\x28\x00\x00\xff", 1)
_FREE_FAILURES = const(3)
_LOCK_BASE_S = const(2)
_LOCK_MAX_S = const(3600)
_EVENT_OF_KIND = {
    security.DECIPHERING_ERROR: security.EVENT_DECIPHERING_FAILURE,
    security.INVOCATION_COUNTER_ERROR: security.EVENT_REPLAY,
}
_RECENT_EVENTS = const(16)


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
        self.pre_established = policy.get("pre_established", False)
        self.associated = False
        self.pending = False        # HLS: AARE sent, pass 3/4 not done yet
        self.cipher = None          # security.CipherSession of a ciphered association
        self.conformance = 0
        self.client_max_pdu = 0
        self.now = 0
        self._after = None          # run once the response exists (after_reply)
        self._get_blocks = None     # (invoke, encoded data, next offset, last block number)
        self._set_blocks = None     # (invoke, descriptor, received bytes, last block number)

    @property
    def max_pdu(self):
        """The largest plain response APDU: what the client receives is the ciphered
        APDU, so a ciphered association leaves room for the protection."""
        n = min(self.client_max_pdu, self.server.max_pdu)
        return n - CIPHER_OVERHEAD if self.cipher is not None else n

    def close(self):
        self.associated = self.pending = False
        self.cipher = None
        self._get_blocks = self._set_blocks = None

    def after_reply(self, fn):
        """Run fn once the response to the current request has been made (and
        protected under the keys in force): new keys and policies take effect
        after the response that acknowledges them (Green Book 9.2.9)."""
        if self._after is None:
            self._after = []
        self._after.append(fn)

    def security_event(self, code):
        self.server.security_event(code)

    @property
    def client_system_title(self):
        return self.cipher.client_system_title if self.cipher is not None else b""

    def handle_apdu(self, request, now):
        """One request APDU in, the response APDU (or None) out. The one place
        where errors become responses."""
        self.now = now
        if not request:
            return None
        if len(request) > self.server.max_pdu:  # as received, protection included
            return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_PDU_TOO_LONG)
        if type(request) is not bytes:
            request = bytes(request)  # a view of a link's buffer: decoders may keep slices
        if self.pre_established:
            self._broadcast(request)
            return None
        try:
            reply = self._handle(request)
        except SecurityError as e:
            # Never ciphered: it may answer an APDU that could not be deciphered.
            self.server.security_failure(e)
            reply = apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, e.kind, e.expected)
        except DecodeError:
            reply = apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_OPERATION_NOT_POSSIBLE)
        except Exception as e:  # a bug must cost one answer, never the meter
            print("server: internal error on APDU 0x%02x:" % request[0], repr(e))
            reply = apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_OTHER_REASON)
        after, self._after = self._after, None
        for fn in after or ():
            try:
                fn()
            except Exception as e:
                print("server: deferred action failed:", repr(e))
        return reply

    def _broadcast(self, request):
        """The pre-established (broadcast) client: general-glo-ciphering under the
        broadcast key carrying an unconfirmed SET, e.g. a time synchronisation to
        every meter at once. Anything else is dropped; nothing is ever answered
        (a broadcast has no one to answer), refusals are logged."""
        sec = self.server.security
        if sec is None or request[0] != security.GENERAL_GLO_CIPHERING:
            return
        try:
            cipher = CipherSession(sec, security.general_system_title(request))
            plain, _ = cipher.unwrap(request)
            if cipher.last_kind != security.KEY_BROADCAST:
                return
        except SecurityError as e:
            self.server.security_failure(e)
            return
        except DecodeError:
            return
        # Unconfirmed SET only: service-class bit of invoke-id-and-priority clear.
        if len(plain) > 3 and plain[0] == apdu.SET_REQUEST and not plain[2] & apdu.SERVICE_CLASS_CONFIRMED:
            self.associated = True
            self.conformance = self.offered_conformance
            self.client_max_pdu = self.server.max_pdu
            try:
                _set(self, plain)
            except Exception as e:  # never the meter for a broadcast
                print("server: broadcast SET failed:", repr(e))

    def _handle(self, request):
        cipher = self.cipher
        if cipher is None or request[0] in _ACSE_TAGS:
            return self._serve(request)
        plain, form = cipher.unwrap(request)
        start, end = self.server.place(self._serve(plain))
        return cipher.wrap_into(self.server.tx, start, end, form)

    def _serve(self, request):
        tag = request[0]
        handler = _HANDLERS.get(tag)
        if handler is None:
            if tag in _CIPHERED_TAGS:  # ciphered, but no ciphered association
                return _not_allowed(tag)
            return apdu.encode_exception_response(apdu.STATE_SERVICE_UNKNOWN, apdu.SERVICE_NOT_SUPPORTED)
        if handler is not _aarq and not self.associated:
            return _not_allowed(tag)
        return handler(self, request)

    def reply_to_hls(self, f_stoc):
        """HLS-GMAC pass 3/4 (Association LN method 1): the client's f(StoC) in,
        the meter's f(CtoS) out. A wrong reply ends the association once the
        action-response (other-reason) is out, and counts towards the lock-out."""
        if self.cipher is None or not self.pending:
            raise AccessError(errors.READ_WRITE_DENIED, "no HLS pending")
        try:
            f_ctos = self.cipher.verify_client_reply(f_stoc)
        except SecurityError as e:
            self.server.security_failure(e, True)
            self.after_reply(self.close)
            raise AccessError(errors.OTHER_REASON, "HLS authentication failed")
        self.pending = False
        self.server.authentication_passed()
        return f_ctos

    # --- attribute and method access through the table ------------------------

    def _object(self, class_id, instance):
        obj = self.table.lookup(class_id, instance)
        if obj is None:
            raise AccessError(errors.OBJECT_UNDEFINED)
        return obj

    def read(self, descriptor):
        class_id, instance, attr, access = descriptor
        if self.pending:
            raise AccessError(errors.READ_WRITE_DENIED, "HLS not completed")
        obj = self._object(class_id, instance)
        if not self.table.attribute_access(self.client, obj, attr) & 1:
            raise AccessError(errors.READ_WRITE_DENIED)
        if access is not None:
            return obj.get_selective(attr, access[0], access[1], self)
        return obj.get(attr, self)

    def write(self, descriptor, value):
        class_id, instance, attr, access = descriptor
        if self.pending:
            raise AccessError(errors.READ_WRITE_DENIED, "HLS not completed")
        obj = self._object(class_id, instance)
        if not self.table.attribute_access(self.client, obj, attr) & 2:
            self.security_event(security.EVENT_ACCESS_DENIED)
            raise AccessError(errors.READ_WRITE_DENIED)
        obj.set(attr, value, self)

    def invoke(self, descriptor, params):
        class_id, instance, method = descriptor
        if self.pending and (class_id, bytes(instance), method) != _HLS_METHOD:
            raise AccessError(errors.READ_WRITE_DENIED, "HLS not completed")
        obj = self._object(class_id, instance)
        if not self.table.method_access(self.client, obj, method):
            self.security_event(security.EVENT_ACCESS_DENIED)
            raise AccessError(errors.READ_WRITE_DENIED)
        return obj.action(method, params, self)


def _not_allowed(tag):
    # Green Book 9.3.5: confirmed service requests outside an association are
    # answered with an exception-response; release requests get a plain RLRE.
    if tag == acse.RLRQ:
        return acse.encode_rlre(acse.RELEASE_NORMAL)
    return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_OPERATION_NOT_POSSIBLE)


# --- ACSE --------------------------------------------------------------------

def _refuse(context, diagnostic, user_information=None, source=acse.SOURCE_SERVICE_USER,
            result=acse.RESULT_REJECTED_PERMANENT):
    return acse.encode_aare(result, source, diagnostic, context, user_information=user_information)


def _authenticate(assoc, aarq):
    """None when the client proved who it is (or, for HLS, may go on to pass 3),
    else the AARE diagnostic."""
    mechanism = aarq.mechanism_name if aarq.mechanism_name is not None else acse.MECH_LOWEST
    if mechanism != assoc.mechanism:
        if assoc.mechanism != acse.MECH_LOWEST and mechanism == acse.MECH_LOWEST:
            assoc.security_event(security.EVENT_AUTHENTICATION_FAILURE)  # tried without security
            return acse.DIAG_AUTHENTICATION_REQUIRED
        return acse.DIAG_AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED
    value = aarq.calling_authentication_value
    if mechanism == acse.MECH_LLS:
        if value is None:
            return acse.DIAG_AUTHENTICATION_REQUIRED
        association = assoc.table.association_for(assoc.client)
        if association is None or not association.verify_secret(value):
            assoc.security_event(security.EVENT_AUTHENTICATION_FAILURE)
            return acse.DIAG_AUTHENTICATION_FAILURE
    elif mechanism == acse.MECH_HLS_GMAC:
        # GMAC needs the keys and the client system title of a ciphered context.
        if aarq.application_context_name not in _CIPHERED_CONTEXTS:
            return acse.DIAG_AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED
        if value is None:
            return acse.DIAG_AUTHENTICATION_REQUIRED
        if not security.HLS_CHALLENGE_MIN <= len(value) <= security.HLS_CHALLENGE_MAX:
            return acse.DIAG_AUTHENTICATION_FAILURE
    elif mechanism != acse.MECH_LOWEST:
        return acse.DIAG_AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED
    return None


def _initiate_request(assoc, aarq):
    """(plain InitiateRequest, None), or (None, the refusal AARE). In a ciphered
    context the glo-initiate-request is deciphered and its counter checked, and
    the association gets its CipherSession."""
    context = aarq.application_context_name
    if context not in _CIPHERED_CONTEXTS:
        if aarq.user_information is None or aarq.user_information_ciphered:
            return None, _refuse(context, acse.DIAG_NO_REASON_GIVEN)
        return aarq.user_information, None
    sec = assoc.server.security
    if sec is None:  # a device board whose keys are not provisioned yet
        return None, _refuse(context, acse.DIAG_NO_REASON_GIVEN, result=acse.RESULT_REJECTED_TRANSIENT)
    try:
        cipher = CipherSession(sec, aarq.calling_ap_title)
    except SecurityError:
        return None, _refuse(context, acse.DIAG_CALLING_AP_TITLE_NOT_RECOGNIZED)
    try:
        plain = cipher.decipher_initiate_request(aarq)
    except SecurityError as e:
        assoc.server.security_failure(e, assoc.mechanism == acse.MECH_HLS_GMAC)
        return None, _refuse(context, acse.DIAG_NO_REASON_GIVEN, acse.encode_initiate_error(acse.INITIATE_ERROR_OTHER))
    assoc.cipher = cipher
    return plain, None


def _initiate_error(assoc, context, error):
    # Answered in the protection the AARQ came in (glo-confirmed-service-error).
    information = acse.encode_initiate_error(error)
    if assoc.cipher is not None:
        information = assoc.cipher.cipher_initiate_response(information)
        assoc.cipher = None
    return _refuse(context, acse.DIAG_NO_REASON_GIVEN, information)


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
        if assoc.context in _CIPHERED_CONTEXTS:  # a secured client trying a plain context
            assoc.security_event(security.EVENT_AUTHENTICATION_FAILURE)
        return _refuse(assoc.context, acse.DIAG_APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
    if assoc.mechanism == acse.MECH_HLS_GMAC and assoc.server.authentication_locked():
        return _refuse(context, acse.DIAG_AUTHENTICATION_FAILURE, result=acse.RESULT_REJECTED_TRANSIENT)
    diagnostic = _authenticate(assoc, aarq)
    if diagnostic is not None:
        return _refuse(context, diagnostic)
    plain, refusal = _initiate_request(assoc, aarq)
    if refusal is not None:
        return refusal
    try:
        initiate = acse.decode_initiate_request(plain)
    except DecodeError:
        return _initiate_error(assoc, context, acse.INITIATE_ERROR_OTHER)
    if initiate.proposed_dlms_version_number < acse.DLMS_VERSION:
        return _initiate_error(assoc, context, acse.INITIATE_ERROR_DLMS_VERSION_TOO_LOW)
    # 0 means "no limit stated" is not allowed by the Green Book; tiny PDUs cannot
    # carry a block header.
    assoc.client_max_pdu = initiate.client_max_receive_pdu_size
    if assoc.max_pdu < _MIN_CLIENT_PDU:  # what a response may hold, protection deducted
        return _initiate_error(assoc, context, acse.INITIATE_ERROR_PDU_SIZE_TOO_SHORT)
    conformance = initiate.proposed_conformance & assoc.offered_conformance
    if not conformance:
        return _initiate_error(assoc, context, acse.INITIATE_ERROR_INCOMPATIBLE_CONFORMANCE)
    assoc.conformance = conformance
    assoc.associated = True
    return _accept(assoc, aarq, acse.encode_initiate_response(conformance, assoc.server.max_pdu))


def _accept(assoc, aarq, information):
    context = aarq.application_context_name
    cipher = assoc.cipher
    if cipher is None:
        return acse.encode_aare(acse.RESULT_ACCEPTED, acse.SOURCE_SERVICE_USER, acse.DIAG_NULL, context,
                                user_information=information)
    # HLS pass 2: accepted, authentication-required, with the meter's challenge
    # StoC; until pass 3/4 only reply_to_HLS_authentication is served.
    hls = assoc.mechanism == acse.MECH_HLS_GMAC
    assoc.pending = hls
    return acse.encode_aare(
        acse.RESULT_ACCEPTED, acse.SOURCE_SERVICE_USER,
        acse.DIAG_AUTHENTICATION_REQUIRED if hls else acse.DIAG_NULL, context,
        responding_ap_title=assoc.server.security.system_title,
        responder_acse_requirements=acse.ACSE_AUTHENTICATION if hls else None,
        mechanism_name=acse.MECH_HLS_GMAC if hls else None,
        responding_authentication_value=cipher.hls_challenge(aarq.calling_authentication_value) if hls else None,
        user_information=cipher.cipher_initiate_response(information),
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
    """Encoded Data, a stream (an object's large value: read(n) and done, e.g. a
    profile buffer or the object list), or an int data-access-result."""
    try:
        value = assoc.read(descriptor)
        return value if hasattr(value, "read") else encode_data(value)
    except AccessError as e:
        return e.code


def _whole(result, limit):
    """A result as bytes: streams are read out (with-list, no block transfer);
    OTHER_REASON when a stream exceeds the limit."""
    if not hasattr(result, "read"):
        return result
    try:
        data = result.read(limit)
        return errors.OTHER_REASON if not result.done else data
    except AccessError as e:
        return e.code


class _Chunks:
    """Encoded bytes served block by block through readinto(buf) / done, as the
    streams are."""

    def __init__(self, data):
        self.data = memoryview(data)

    @property
    def done(self):
        return not self.data

    def readinto(self, buf):
        n = min(len(buf), len(self.data))
        buf[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


def _get(assoc, request):
    choice, invoke, value, end = apdu.decode_get_request(request)
    if end != len(request):
        raise DecodeError("trailing bytes after GET request")
    if choice == apdu.GET_NEXT:
        return _get_next(assoc, invoke, value)
    assoc._get_blocks = None
    blocks = assoc.conformance & acse.CONF_BLOCK_TRANSFER_WITH_GET
    if choice == apdu.GET_NORMAL:
        result = _data_result(assoc, value)
        if hasattr(result, "read"):
            # A stream's size is unknown: read into place what one APDU holds. All
            # of it goes as a normal response (some clients take no single-block
            # transfer), else it is block 1 of a transfer.
            room = assoc.max_pdu - (_BLOCK_OVERHEAD if blocks else _NORMAL_OVERHEAD)
            try:
                n = result.readinto(memoryview(assoc.server.tx)[_TX_DATA:_TX_DATA + room])
                whole = result.done
            except AccessError as e:
                return apdu.encode_get_response_normal(invoke, e.code)
            if whole:  # an empty raw Data is exactly the head of the response
                return _in_place(assoc, apdu.encode_get_response_normal(invoke, b""), n)
            if not blocks:
                return apdu.encode_get_response_normal(invoke, errors.OTHER_REASON)
            assoc._get_blocks = (invoke, result, 1)
            return _in_place(assoc, apdu.datablock_head(invoke, False, 1, n), n)
        response = apdu.encode_get_response_normal(invoke, result)
        if isinstance(result, int) or len(response) <= assoc.max_pdu:
            return response
        return _start_blocks(assoc, invoke, _Chunks(result))
    if not assoc.conformance & acse.CONF_MULTIPLE_REFERENCES:
        return apdu.encode_exception_response(apdu.STATE_SERVICE_NOT_ALLOWED, apdu.SERVICE_NOT_SUPPORTED)
    results = [_whole(_data_result(assoc, d), assoc.server.max_pdu) for d in value]
    response = apdu.encode_get_response_with_list(invoke, results)
    if len(response) <= assoc.max_pdu:
        return response
    # Block transfer of a with-list result carries the list encoding (count and
    # each Get-Data-Result) as raw data: the response minus its 3-byte head.
    return _start_blocks(assoc, invoke, _Chunks(response[3:]))


def _start_blocks(assoc, invoke, stream):
    if not assoc.conformance & acse.CONF_BLOCK_TRANSFER_WITH_GET:
        return apdu.encode_get_response_normal(invoke, errors.OTHER_REASON)
    assoc._get_blocks = (invoke, stream, 0)
    return _next_block(assoc)


def _next_block(assoc):
    """The next DataBlock-G, its data read into place in the response buffer (no
    block-sized allocation)."""
    invoke, stream, number = assoc._get_blocks
    number += 1
    try:
        n = stream.readinto(memoryview(assoc.server.tx)[_TX_DATA:_TX_DATA + assoc.max_pdu - _BLOCK_OVERHEAD])
        last = stream.done
    except AccessError as e:  # e.g. the profile buffer moved under the transfer
        assoc._get_blocks = None
        return apdu.encode_get_response_with_datablock(invoke, True, number, e.code)
    assoc._get_blocks = None if last else (invoke, stream, number)
    return _in_place(assoc, apdu.datablock_head(invoke, last, number, n), n)


def _in_place(assoc, head, n):
    """The response whose n data octets are in the response buffer at _TX_DATA: its
    head goes right before them; a view of the whole is returned."""
    server = assoc.server
    start = server.tx_start = _TX_DATA - len(head)
    server.tx[start:_TX_DATA] = head
    return memoryview(server.tx)[start:_TX_DATA + n]


def _get_next(assoc, invoke, block_number):
    blocks = assoc._get_blocks
    if blocks is None:
        return apdu.encode_get_response_with_datablock(invoke, True, block_number, errors.NO_LONG_GET_IN_PROGRESS)
    if block_number != blocks[2]:
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


class RecentEvents:
    """The security log when the table has none (no store): the last
    _RECENT_EVENTS (clock seconds or None, event code), oldest first."""

    def __init__(self, clock=None):
        self.clock = clock
        self.entries = []

    def record(self, code, now=None):
        if now is None and self.clock is not None:
            now = self.clock.now()
        self.entries.append((now, code))
        if len(self.entries) > _RECENT_EVENTS:
            self.entries.pop(0)


def response_buffer(board):
    """The server's response buffer, for a board's max_pdu: made apart so that the
    meter can take it first, while its heap is still one free run (a microcontroller's
    heap gets too fragmented to promise 1 KB at run time)."""
    return bytearray(_TX_DATA + board.get("max_pdu", 1024) + TAG_LEN)


class DlmsServer:
    """The logical device: its object table, its clients and their associations.

    clock: the meter's time source (now() -> seconds), for the lock-out;
    security: security.SecurityContext, or None (ciphered associations refused);
    events: the security event log (record(code): cosem.profile.EventLog), or
    None for a RecentEvents ring in RAM."""

    def __init__(self, table, board, clock=None, security=None, events=None, tx=None):
        self.table = table
        self.max_pdu = board.get("max_pdu", 1024)
        # THE response buffer (response_buffer()): large responses are built in it
        # and protected in place, so serving a block allocates nothing its size. A
        # memoryview response is a view of it, starting at tx_start; links copy it.
        self.tx = tx if tx is not None else response_buffer(board)
        self.tx_start = 0
        self.clock = clock
        self.security = security
        self.events = events if events is not None else RecentEvents(clock)
        self._failures = 0          # consecutive failed HLS attempts
        self._locked_until = 0
        self._lock_s = 0

    # --- security events and the HLS lock-out ----------------------------------

    def place(self, reply):
        """(start, end) of a reply in the response buffer, for protection in place: a
        view made by _in_place is there already, any other reply is copied in."""
        if isinstance(reply, memoryview):
            return self.tx_start, self.tx_start + len(reply)
        end = WRAP_HEADROOM + len(reply)
        self.tx[WRAP_HEADROOM:end] = reply
        return WRAP_HEADROOM, end

    def security_event(self, code):
        """THE hook every security event goes through (failed authentication,
        refused counters, bad tags, key and policy changes)."""
        try:
            self.events.record(code)
        except Exception as e:  # a failing log must not cost the answer
            print("server: security event %d not logged:" % code, repr(e))

    def security_failure(self, e, authentication=False):
        """A refused ciphered APDU (SecurityError e), logged by kind; with
        authentication, a failed HLS attempt: also logged as an authentication
        failure and counted for the lock-out."""
        self.security_event(_EVENT_OF_KIND.get(e.kind, security.EVENT_DECIPHERING_FAILURE))
        if not authentication:
            return
        self.security_event(security.EVENT_AUTHENTICATION_FAILURE)
        self._failures += 1
        n = self._failures - _FREE_FAILURES
        if n >= 0:
            self._lock_s = min(_LOCK_BASE_S << min(n, 12), _LOCK_MAX_S)
            self._locked_until = self._seconds() + self._lock_s

    def authentication_passed(self):
        self._failures = 0
        self._locked_until = self._lock_s = 0

    def authentication_locked(self):
        # Bounded by the lock length, so a clock set backwards cannot lock longer.
        left = self._locked_until - self._seconds()
        return 0 < left <= self._lock_s

    def _seconds(self):
        return self.clock.now() if self.clock is not None else 0

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

# Association LN (IC 15, version 1, Blue Book 4.4.3): what an association may
# see and do. Two kinds of instance share this class:
#   - the current association 0-0:40.0.0.255 (client None): every attribute
#     describes whoever is asking, taken from ctx;
#   - one instance per configured client (IDIS style, 0-0:40.0.E.255): the
#     same attributes for that client, from the object table's client policy.
# The object table owns the lists and the rights; this class only shapes them
# into the A-XDR the Blue Book defines.
#
# ctx (the calling association, dlms/server.py's Association) must have
# `client` (client SAP). Read when present, else the client policy's value:
# `server_sap`, `context` (application context id, 1 LN or 3 LN ciphered),
# `mechanism`, `conformance` (negotiated, 24-bit int), `max_pdu` (largest PDU
# the server may send this client), `pending` (True between AARE and HLS pass
# 4) and `reply_to_hls(bytes) -> bytes`, the security layer's HLS pass 3/4 hook.
from micropython import const

from dlms.acse import DLMS_VERSION, MECH_LLS
from dlms.axdr import encode_length_into

from cosem.base import CosemObject, Pieces
from dlms.errors import AccessError, OTHER_REASON, READ_WRITE_DENIED

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_ARRAY = const(1)
_BIT_STRING = const(4)
_ENUM = const(22)
_INTEGER = const(15)
_LONG_UNSIGNED = const(18)
_OCTET_STRING = const(9)
_STRUCTURE = const(2)
_UNSIGNED = const(17)

# association_status enum.
_NON_ASSOCIATED = const(0)
_ASSOCIATION_PENDING = const(1)
_ASSOCIATED = const(2)

# Object identifiers 2.16.756.5.8.1.x and 2.16.756.5.8.2.x as the BER contents
# octets (60 85 74 = 2.16.756, then 05 08 ...). Attributes 4 and 6 are sent as
# this octet-string, the form of current Blue Book editions; Gurux's client
# parses it (it tests for the leading 0x60) as well as the old 7-member
# structure, and dlms-cosem takes any data.
_CONTEXT_ARC = b"\x60\x85\x74\x05\x08\x01"
_MECHANISM_ARC = b"\x60\x85\x74\x05\x08\x02"

# Longest LLS password accepted (Green Book: the secret is an octet-string;
# DLMS clients commonly allow 8..64 characters).
_MAX_SECRET = const(64)


# Access items with the id and mode octets (3 and 5) to fill in: attribute_access_item
# structure {integer id, enum mode, null selectors}, method_access_item structure
# {integer id, enum mode}.
_ATTR_ITEM = b"\x02\x03\x0f\x00\x16\x00\x00"
_METHOD_ITEM = b"\x02\x02\x0f\x00\x16\x00"


def _entry(t, client, obj):
    """object_list_element (class, version, logical name, access rights) in A-XDR,
    written into one buffer of its final size: the value tree encode_data would take
    costs a small object per field, ~1 KB per object, too much for a 64 KB heap."""
    attrs, methods = obj.ATTRIBUTES, obj.METHODS
    out = bytearray(21 + 7 * len(attrs) + 6 * len(methods))
    out[0:9] = bytes((_STRUCTURE, 4, _LONG_UNSIGNED, obj.class_id >> 8, obj.class_id & 0xFF,
                      _UNSIGNED, obj.version, _OCTET_STRING, 6))
    out[9:15] = obj.logical_name
    out[15:19] = bytes((_STRUCTURE, 2, _ARRAY, len(attrs)))
    k = 19
    for a in attrs:
        out[k:k + 7] = _ATTR_ITEM
        out[k + 3] = a[0]
        out[k + 5] = t.attribute_access(client, obj, a[0])
        k += 7
    out[k] = _ARRAY
    out[k + 1] = len(methods)
    k += 2
    for m in methods:
        out[k:k + 6] = _METHOD_ITEM
        out[k + 3] = m[0]
        out[k + 5] = t.method_access(client, obj, m[0])
        k += 6
    return out


class AssociationLN(CosemObject):
    class_id = 15
    version = 1
    ATTRIBUTES = (
        (1, "logical_name", None),
        (2, "object_list", None),
        (3, "associated_partners_id", None),
        (4, "application_context_name", None),
        (5, "xdlms_context_info", None),
        (6, "authentication_mechanism_name", None),
        (7, "secret", _OCTET_STRING),
        (8, "association_status", None),
        (9, "security_setup_reference", None),
    )
    METHODS = (
        (1, "reply_to_HLS_authentication", _OCTET_STRING),
        (2, "change_HLS_secret", _OCTET_STRING),
        (3, "add_object", _STRUCTURE),
        (4, "remove_object", _STRUCTURE),
    )

    def __init__(self, logical_name, table, client=None, secret=None, security_setup=None):
        """client None: the current association. table: the ObjectTable (for
        object lists, rights and client policy). secret: the LLS password of
        an LLS client's instance."""
        super().__init__(logical_name)
        self.table = table
        self.client = client
        self.secret = secret
        self.security_setup = security_setup or b"\x00\x00\x2b\x00\x00\xff"

    def _client(self, ctx):
        return ctx.client if self.client is None else self.client

    def _policy(self, ctx):
        p = self.table.client(self._client(ctx))
        if p is None:
            raise AccessError(OTHER_REASON, "no policy for this client")
        return p

    def _from_ctx(self, ctx, name, default):
        # Only the current association reflects the live session.
        return getattr(ctx, name, default) if self.client is None else default

    def verify_secret(self, password):
        """Constant-time comparison of an LLS password (AARQ calling-authentication)."""
        s = self.secret
        if s is None or password is None or len(password) != len(s):
            return False
        diff = 0
        for k in range(len(s)):
            diff |= s[k] ^ password[k]
        return diff == 0

    # --- attributes --------------------------------------------------------

    def get_object_list(self, ctx):
        # Produced one entry at a time as the GET blocks go out: the list grows
        # with the meter's objects and would not fit a small heap whole.
        client = self._client(ctx)
        t = self.table
        objects = t.objects_for(client)
        head = bytearray((_ARRAY,))
        encode_length_into(head, len(objects))
        return Pieces(head, (_entry(t, client, obj) for obj in objects))

    def get_associated_partners_id(self, ctx):
        server_sap = self._from_ctx(ctx, "server_sap", self.table.server_sap)
        return (_STRUCTURE, [(_INTEGER, self._client(ctx)), (_LONG_UNSIGNED, server_sap)])

    def get_application_context_name(self, ctx):
        context = self._from_ctx(ctx, "context", self._policy(ctx)["context"])
        return (_OCTET_STRING, _CONTEXT_ARC + bytes((context,)))

    def get_xdlms_context_info(self, ctx):
        p = self._policy(ctx)
        conformance = self._from_ctx(ctx, "conformance", p["conformance"])
        max_pdu = self.table.max_pdu
        return (_STRUCTURE, [
            (_BIT_STRING, (24, conformance.to_bytes(3, "big"))),
            (_LONG_UNSIGNED, max_pdu),   # what the server receives
            (_LONG_UNSIGNED, self._from_ctx(ctx, "max_pdu", max_pdu)),
            (_UNSIGNED, DLMS_VERSION),
            (_INTEGER, 0),           # quality_of_service: not used
            (_OCTET_STRING, b""),    # cyphering_info: the dedicated key is never shown
        ])

    def get_authentication_mechanism_name(self, ctx):
        mech = self._from_ctx(ctx, "mechanism", self._policy(ctx)["mechanism"])
        return (_OCTET_STRING, _MECHANISM_ARC + bytes((mech,)))

    def get_secret(self, ctx):
        # Write-only whatever any table says: a secret never leaves the meter.
        raise AccessError(READ_WRITE_DENIED, "secret is write-only")

    def set_secret(self, value, ctx):
        # Only an LLS client's own instance holds a password; HLS-GMAC secrets
        # are keys, replaced through the security setup object.
        if self.client is None or self._policy(ctx)["mechanism"] != MECH_LLS:
            raise AccessError(READ_WRITE_DENIED, "no LLS secret here")
        if not 1 <= len(value[1]) <= _MAX_SECRET:
            raise AccessError(OTHER_REASON, "secret length")
        self.secret = bytes(value[1])

    def get_association_status(self, ctx):
        if self._client(ctx) != ctx.client:
            # Other clients' sessions are not tracked by the object model.
            return (_ENUM, _NON_ASSOCIATED)
        return (_ENUM, _ASSOCIATION_PENDING if getattr(ctx, "pending", False) else _ASSOCIATED)

    def get_security_setup_reference(self, ctx):
        return (_OCTET_STRING, self.security_setup)

    # --- methods -------------------------------------------------------------
    # change_HLS_secret, add_object and remove_object are declared, not
    # implemented: HLS-GMAC keys change through security setup, and the object
    # list is fixed by the table.

    def do_reply_to_HLS_authentication(self, value, ctx):
        # HLS pass 3/4 belongs to the session (it holds the challenges and
        # keys): the security layer provides ctx.reply_to_hls.
        hook = getattr(ctx, "reply_to_hls", None)
        if self.client is not None or hook is None:
            raise AccessError(READ_WRITE_DENIED, "no HLS authentication here")
        return (_OCTET_STRING, hook(value[1]))

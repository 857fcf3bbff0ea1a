# Security setup (IC 64, version 1, Blue Book 4.4.7): the COSEM face of the
# meter's security context (dlms/security.py SecurityContext). Shows the policy,
# the suite and both system titles; security_activate may only strengthen the
# policy; global_key_transfer replaces keys wrapped under the master key.
#
# Both methods persist what they accept *before* answering and apply it *after*
# the response (ctx.after_reply): the response still goes out under the old keys
# and policy (Green Book 9.2.9), and a power cut in between leaves the meter with
# what it told the client. Certificates (suites 1/2) are declared, not provided.
#
# ctx (dlms/server.py Association) provides: client_system_title, after_reply(fn),
# security_event(code).
from micropython import const

from cosem.base import CosemObject
from dlms import keys

from dlms.errors import AccessError, HARDWARE_FAULT, OTHER_REASON, TEMPORARY_FAILURE
from dlms.security import (EVENT_KEY_CHANGED, EVENT_POLICY_CHANGED, POLICY_RECORD,
                           POLICY_AUTHENTICATED, POLICY_ENCRYPTED)

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_ARRAY = const(1)
_ENUM = const(22)
_OCTET_STRING = const(9)

_SUITE_0 = const(0)  # AES-GCM-128

# security_policy of version 1 is a set of bits (Blue Book 4.4.7): 2 authenticated
# request, 3 encrypted request, 5 authenticated response, 6 encrypted response.
# The meter answers in the protection of the request, so a policy (the SC bits
# every request carries) covers the request and the response bits alike.
_V1_BITS = ((POLICY_AUTHENTICATED, 0x24), (POLICY_ENCRYPTED, 0x48))


def policy_to_v1(policy):
    v = 0
    for sc, bits in _V1_BITS:
        if policy & sc:
            v |= bits
    return v


def policy_from_v1(value):
    """The SC policy of a version-1 security_policy value; other-reason for a
    combination this meter cannot enforce (signatures, request without response)."""
    policy = 0
    for sc, bits in _V1_BITS:
        if value & bits == bits:
            policy |= sc
    if policy_to_v1(policy) != value:
        raise AccessError(OTHER_REASON, "security policy not supported")
    return policy


class SecuritySetup(CosemObject):
    class_id = 64
    version = 1
    ATTRIBUTES = (
        (1, "logical_name", None),
        (2, "security_policy", None),
        (3, "security_suite", None),
        (4, "client_system_title", None),
        (5, "server_system_title", None),
        (6, "certificates", None),
    )
    METHODS = (
        (1, "security_activate", _ENUM),
        (2, "global_key_transfer", _ARRAY),
        (3, "key_agreement", None),
        (4, "generate_key_pair", None),
        (5, "generate_certificate_request", None),
        (6, "import_certificate", None),
        (7, "export_certificate", None),
        (8, "remove_certificate", None),
    )

    def __init__(self, logical_name, security):
        """security: the server's SecurityContext, or None on a board whose keys
        are not provisioned (then every method answers temporary-failure)."""
        super().__init__(logical_name)
        self.security = security

    def _context(self):
        if self.security is None:
            raise AccessError(TEMPORARY_FAILURE, "no keys provisioned")
        return self.security

    # --- attributes ----------------------------------------------------------

    def get_security_policy(self, ctx):
        return (_ENUM, policy_to_v1(self.security.policy) if self.security else 0)

    def get_security_suite(self, ctx):
        return (_ENUM, _SUITE_0)

    def get_client_system_title(self, ctx):
        return (_OCTET_STRING, getattr(ctx, "client_system_title", b""))

    def get_server_system_title(self, ctx):
        return (_OCTET_STRING, self.security.system_title if self.security else b"")

    def get_certificates(self, ctx):
        return (_ARRAY, [])

    # --- methods ---------------------------------------------------------------

    def do_security_activate(self, value, ctx):
        sec = self._context()
        policy = policy_from_v1(value[1])
        if policy & sec.policy != sec.policy:
            raise AccessError(OTHER_REASON, "security policy may only be strengthened")
        if policy == sec.policy:
            return None
        _persist(sec.store, lambda store: store.put(POLICY_RECORD, bytes((policy,))))

        def apply():
            sec.policy = policy
            ctx.security_event(EVENT_POLICY_CHANGED)

        ctx.after_reply(apply)
        return None

    def do_global_key_transfer(self, value, ctx):
        sec = self._context()
        # Unwrapped and checked as a whole: one bad entry and nothing changes.
        new = keys.apply_key_transfer(sec.keys, sec.keys.get("kek"), value)
        _persist(sec.store, lambda store: keys.save_keys(store, new))

        def apply():
            sec.replace_keys(new)
            ctx.security_event(EVENT_KEY_CHANGED)

        ctx.after_reply(apply)
        return None


def _persist(store, write):
    # Persisted before the answer, or refused: never acknowledge what a restart loses.
    if store is None:
        raise AccessError(HARDWARE_FAULT, "no store to persist in")
    try:
        write(store)
    except OSError:
        raise AccessError(HARDWARE_FAULT, "not persisted")

# THE object table of the meter: which COSEM objects exist, and per client SAP
# what each client sees of them and may do (attribute and method access).
# The server checks these rights before it calls an object; the association
# objects show them to clients as object_list. Both come from the data below,
# so what a client is told and what it is allowed cannot differ.
from micropython import const

from dlms.acse import (
    CONF_ACTION,
    CONF_BLOCK_TRANSFER_WITH_ACTION,
    CONF_BLOCK_TRANSFER_WITH_GET,
    CONF_BLOCK_TRANSFER_WITH_SET,
    CONF_GENERAL_PROTECTION,
    CONF_GET,
    CONF_MULTIPLE_REFERENCES,
    CONF_SELECTIVE_ACCESS,
    CONF_SET,
    CONTEXT_LN,
    CONTEXT_LN_CIPHERED,
    MECH_HLS_GMAC,
    MECH_LLS,
    MECH_LOWEST,
)
from dlms.axdr import DOUBLE_LONG_UNSIGNED, OCTET_STRING, VISIBLE_STRING
from cosem.association import AssociationLN
from cosem.base import obis
from cosem.clock import Clock
from cosem.data import Data, Register, UNIT_WH
from cosem.hdlc_setup import HdlcSetup
from cosem.profile import EventCode, EventLog
from cosem.sap import SapAssignment
from cosem.security_setup import SecuritySetup

# Client SAPs (IDIS). READER is this project's LLS test client: IDIS defines
# none, and LLS must be testable against a real client.
MANAGEMENT = const(1)
PUBLIC = const(16)
READER = const(32)
PRE_ESTABLISHED = const(102)

_CONF_READ = CONF_GET | CONF_BLOCK_TRANSFER_WITH_GET | CONF_SELECTIVE_ACCESS | CONF_MULTIPLE_REFERENCES
_CONF_ALL = _CONF_READ | CONF_SET | CONF_ACTION | CONF_BLOCK_TRANSFER_WITH_SET | CONF_BLOCK_TRANSFER_WITH_ACTION

# Client policy, in the column order of ACCESS below:
# (SAP, name, E of its Association LN 0-0:40.0.E.255, authentication mechanism,
#  application context, conformance offered).
CLIENTS = (
    (PUBLIC, "public", 1, MECH_LOWEST, CONTEXT_LN, _CONF_READ),
    (READER, "reader (LLS)", 4, MECH_LLS, CONTEXT_LN, _CONF_READ | CONF_SET),
    (MANAGEMENT, "management (HLS-GMAC)", 2, MECH_HLS_GMAC, CONTEXT_LN_CIPHERED, _CONF_ALL | CONF_GENERAL_PROTECTION),
    # Broadcast with the broadcast key: unconfirmed SET (time synchronisation).
    (PRE_ESTABLISHED, "pre-established (broadcast)", 3, MECH_LOWEST, CONTEXT_LN_CIPHERED, CONF_SET),
)

# Access rights: one string per client (columns as CLIENTS), one character per
# attribute of the class, "/", one per method. None: the client does not see
# the object at all (absent from its object_list).
#   attributes: "-" no access, "r" read, "w" write, "b" read and write
#   methods:    "-" no access, "x" access
# Billing registers (MID) carry no "w", "b" or "x" for anyone: BILLING below is
# enforced when the table is built, not only by review.
ACCESS = (
    # OBIS              public              reader (LLS)        management          pre-established
    ("0-0:42.0.0.255", ("rr", "rr", "rr", None)),                                   # logical device name
    ("0-0:1.0.0.255", ("rrrrrrrrr/------", "rbbrrrrrr/------", "rbbrbbbbr/x-x--x", "-w-------/------")),
    ("0-0:40.0.0.255", ("rrrrrr-rr/----", "rrrrrr-rr/----", "rrrrrr-rr/x---", "rrrrrr-rr/----")),
    ("0-0:40.0.1.255", ("rrrrrr-rr/----", None, "rrrrrr-rr/----", None)),           # public's association
    ("0-0:40.0.4.255", (None, "rrrrrr-rr/----", "rrrrrrwrr/----", None)),           # reader's association
    ("0-0:40.0.2.255", (None, None, "rrrrrr-rr/----", None)),                       # management's association
    ("0-0:40.0.3.255", (None, None, "rrrrrr-rr/----", None)),                       # pre-established's
    ("0-0:41.0.0.255", ("rr/-", "rr/-", "rr/-", None)),                             # SAP assignment
    ("0-0:22.0.0.255", (None, "rrrrrrrrr", "rrrrrrrrr", None)),                     # IEC HDLC setup
    ("1-0:1.8.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # active energy import
    ("1-0:2.8.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # active energy export
    ("0-0:43.1.0.255", ("rr", "rr", "rr", None)),                                   # invocation counter
    ("0-0:43.0.0.255", (None, "rrrrrr/--------", "rrrrrr/xx------", None)),           # security setup
    ("0-0:99.98.1.255", (None, None, "rrrrrrrr/--", None)),                         # security event log
    ("0-0:96.11.1.255", (None, None, "rr", None)),                                  # its last event code
    ("1-0:0.2.0.255", (None, "rr", "rr", None)),                                    # firmware identifier
)

# Objects that exist only when build_objects is given a store.
NEEDS_STORE = ("0-0:99.98.1.255", "0-0:96.11.1.255")

# Registers that are never written nor reset through DLMS (MID billing data).
BILLING = ("1-0:1.8.0.255", "1-0:2.8.0.255")

_NONE = {}  # rights of an unknown client (never written)
_ATTR_CODES = "-rwb"  # index = attribute access code
_METHOD_CODES = "-x"  # index = method access code


def _zero():
    return 0


def _check(text, codes, count, what):
    if len(text) != count:
        raise ValueError("%s: %d access characters for %d" % (what, len(text), count))
    for ch in text:
        if ch not in codes:
            raise ValueError("%s: unknown access character %r" % (what, ch))


class ObjectTable:
    def __init__(self, server_sap=1, max_pdu=1024):
        self.server_sap = server_sap
        self.max_pdu = max_pdu
        self._objects = []        # table order: the order of every object_list
        self._by_name = {}        # logical name -> object
        self._access = {}         # client -> {logical name: (attr codes, method codes)}
        self._clients = {}        # client -> policy dict
        self._associations = {}   # client -> its AssociationLN instance

    # --- building ----------------------------------------------------------

    def add(self, obj):
        if obj.logical_name in self._by_name:
            raise ValueError("duplicate logical name")
        self._objects.append(obj)
        self._by_name[obj.logical_name] = obj
        return obj

    def add_client(self, sap, name, association, mechanism, context, conformance):
        self._clients[sap] = {
            "sap": sap, "name": name, "association": association.logical_name,
            "mechanism": mechanism, "context": context, "conformance": conformance,
        }
        self._associations[sap] = association
        self._access[sap] = {}

    def grant(self, client, obj, rights):
        """rights: "attrs/methods" string as in ACCESS. Kept as the string itself
        (ROM in frozen firmware): decoding per request is cheaper than the RAM
        a table of decoded codes costs on a 64 KB heap."""
        what = "%r for client %d" % (obj, client)
        attrs, _, methods = rights.partition("/")
        _check(attrs, _ATTR_CODES, len(obj.ATTRIBUTES), what)
        _check(methods, _METHOD_CODES, len(obj.METHODS), what)
        self._access[client][obj.logical_name] = rights

    # --- queries (server and association objects) -------------------------

    def lookup(self, class_id, logical_name):
        """The object with this class and logical name, or None."""
        obj = self._by_name.get(bytes(logical_name))
        return obj if obj is not None and obj.class_id == class_id else None

    def find(self, logical_name):
        """The object with this logical name whatever its class, or None (lets
        the server tell object-class-inconsistent from object-undefined)."""
        return self._by_name.get(bytes(logical_name))

    def objects(self):
        return list(self._objects)

    def objects_for(self, client):
        """Objects the client sees, in table order (its object_list)."""
        rights = self._access.get(client)
        if rights is None:
            return []
        return [o for o in self._objects if o.logical_name in rights]

    def visible(self, client, obj):
        rights = self._access.get(client)
        return rights is not None and obj.logical_name in rights

    def attribute_access(self, client, obj, attr):
        """0 no access, 1 read, 2 write, 3 read-write (0 for unknown ids)."""
        r = self._access.get(client, _NONE).get(obj.logical_name)
        if r is None or not 1 <= attr <= len(obj.ATTRIBUTES):
            return 0
        return _ATTR_CODES.index(r[attr - 1])

    def method_access(self, client, obj, method):
        """0 no access, 1 access (0 for unknown ids)."""
        r = self._access.get(client, _NONE).get(obj.logical_name)
        if r is None or not 1 <= method <= len(obj.METHODS):
            return 0
        return _METHOD_CODES.index(r[len(obj.ATTRIBUTES) + method])

    def client(self, sap):
        """Policy dict of a configured client (sap, name, association, mechanism,
        context, conformance), or None for an unknown client SAP."""
        return self._clients.get(sap)

    def clients(self):
        return [c[0] for c in CLIENTS if c[0] in self._clients]

    def association_for(self, client):
        """The client's own Association LN (holds e.g. the LLS secret), or None."""
        return self._associations.get(client)


def _ldn(config):
    ldn = config.get("ldn")
    if ldn is None:
        flag = config.get("flag_id", b"MPY")
        ldn = flag + (b"%013d" % config.get("serial", 0))
    if len(ldn) != 16:
        raise ValueError("logical device name is 16 octets")
    return ldn


def build_objects(config, clock_source, sources=None, store=None, security=None):
    """The meter's ObjectTable. config: the board dict (ldn or flag_id+serial,
    hdlc, max_pdu, lls_password, optional clock settings and firmware_id).
    sources: optional callables from the metering and security layers:
    energy_import, energy_export (Wh, int), invocation_counter (int).
    store: adapters.store.Store for the logs (none: no security event log).
    security: the dlms.security.SecurityContext (or None: no keys) behind the
    security setup object and the invocation counter."""
    src = sources or {}
    hdlc = config.get("hdlc", {})
    server_sap = hdlc.get("logical", 1)
    t = ObjectTable(server_sap, config.get("max_pdu", 1024))
    ldn = _ldn(config)

    t.add(Data(obis("0-0:42.0.0.255"), (OCTET_STRING, ldn)))
    clock = t.add(Clock(obis("0-0:1.0.0.255"), clock_source, config.get("clock")))
    t.add(AssociationLN(obis("0-0:40.0.0.255"), t))
    for sap, name, e, mechanism, context, conformance in CLIENTS:
        secret = config.get("lls_password") if mechanism == MECH_LLS else None
        assoc = AssociationLN(bytes((0, 0, 40, 0, e, 255)), t, sap, secret)
        t.add_client(sap, name, assoc, mechanism, context, conformance)
    for sap, _, _, _, _, _ in CLIENTS:
        t.add(t.association_for(sap))
    t.add(SapAssignment(obis("0-0:41.0.0.255"), ((server_sap, ldn),)))
    t.add(HdlcSetup(obis("0-0:22.0.0.255"), hdlc))
    t.add(Register(obis("1-0:1.8.0.255"), DOUBLE_LONG_UNSIGNED, src.get("energy_import", _zero), 0, UNIT_WH))
    t.add(Register(obis("1-0:2.8.0.255"), DOUBLE_LONG_UNSIGNED, src.get("energy_export", _zero), 0, UNIT_WH))
    ic = src.get("invocation_counter") or (security.expected_counter if security else _zero)
    t.add(Data(obis("0-0:43.1.0.255"), lambda: (DOUBLE_LONG_UNSIGNED, ic())))
    t.add(SecuritySetup(obis("0-0:43.0.0.255"), security))
    t.security_log = None  # record(code): the server's security event hook writes here
    if store is not None:
        code = t.add(EventCode(obis("0-0:96.11.1.255")))
        t.security_log = t.add(EventLog(obis("0-0:99.98.1.255"), clock, code, store, name="seclog"))
    t.add(Data(obis("1-0:0.2.0.255"), (VISIBLE_STRING, config.get("firmware_id", b"MPY-DLMS 0.1"))))

    _apply_access(t)
    return t


def _apply_access(t):
    listed = set()
    billing = [obis(b) for b in BILLING]
    for name, rights in ACCESS:
        obj = t.find(obis(name))
        if obj is None and name in NEEDS_STORE:
            continue
        if obj is None:
            raise ValueError("ACCESS names a missing object " + name)
        listed.add(obj.logical_name)
        for k in range(len(CLIENTS)):
            if rights[k] is None:
                continue
            if obj.logical_name in billing and ("w" in rights[k] or "b" in rights[k] or "x" in rights[k]):
                raise ValueError("billing register must stay read-only: " + name)
            t.grant(CLIENTS[k][0], obj, rights[k])
    for obj in t.objects():
        if obj.logical_name not in listed:
            raise ValueError("no ACCESS row for %r" % obj)

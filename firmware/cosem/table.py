# THE object table of the meter: which COSEM objects exist, and per client SAP
# what each client sees of them and may do (attribute and method access).
# The server checks these rights before it calls an object; the association
# objects show them to clients as object_list. Both come from the data below,
# so what a client is told and what it is allowed cannot differ.
# Builtins used per request, as module names (why: dlms/security.py).
from builtins import bytes, isinstance, len
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

from metering.energy import E_ACTIVE_EXPORT, E_ACTIVE_IMPORT, E_REACTIVE_EXPORT, E_REACTIVE_IMPORT, E_REACTIVE_Q1
from cosem.association import AssociationLN
from cosem.base import obis
from cosem.clock import Clock
from cosem.data import Data, Register, StatusWord
from cosem.demand import DemandRegister
from cosem.hdlc_setup import HdlcSetup
from cosem.profile import CHANGE_CODES, EventCode, EventLog, ProfileGeneric
from cosem.sap import SapAssignment
from cosem.security_setup import SecuritySetup

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_DOUBLE_LONG_UNSIGNED = const(6)
_LONG = const(16)
_LONG64_UNSIGNED = const(21)
_LONG_UNSIGNED = const(18)
_OCTET_STRING = const(9)
_VISIBLE_STRING = const(10)

# Client SAPs (IDIS). READER is this project's LLS test client: IDIS defines
# none, and LLS must be testable against a real client.
MANAGEMENT = const(1)
PUBLIC = const(16)
READER = const(32)
PRE_ESTABLISHED = const(102)

_CONF_READ = CONF_GET | CONF_BLOCK_TRANSFER_WITH_GET | CONF_SELECTIVE_ACCESS | CONF_MULTIPLE_REFERENCES
_CONF_ALL = _CONF_READ | CONF_SET | CONF_ACTION | CONF_BLOCK_TRANSFER_WITH_SET | CONF_BLOCK_TRANSFER_WITH_ACTION

# Client policy, in the column order of access_rights() below:
# (SAP, name, E of its Association LN 0-0:40.0.E.255, authentication mechanism,
#  application context, conformance offered).
def client_policies():
    """Built when called, freed after start-up: module-level tables would hold RAM for good."""
    return (
        (PUBLIC, "public", 1, MECH_LOWEST, CONTEXT_LN, _CONF_READ),
        (READER, "reader (LLS)", 4, MECH_LLS, CONTEXT_LN, _CONF_READ | CONF_SET),
        (MANAGEMENT, "management (HLS-GMAC)", 2, MECH_HLS_GMAC, CONTEXT_LN_CIPHERED, _CONF_ALL | CONF_GENERAL_PROTECTION),
        # Broadcast with the broadcast key: unconfirmed SET (time synchronisation).
        (PRE_ESTABLISHED, "pre-established (broadcast)", 3, MECH_LOWEST, CONTEXT_LN_CIPHERED, CONF_SET),
    )

# Access rights: one string per client (columns as client_policies()), one character per
# attribute of the class, "/", one per method. None: the client does not see
# the object at all (absent from its object_list).
#   attributes: "-" no access, "r" read, "w" write, "b" read and write
#   methods:    "-" no access, "x" access
# Billing registers (MID) carry no "w", "b" or "x" for anyone: BILLING below is
# enforced when the table is built, not only by review.
def access_rights():
    """Built when called, freed after start-up: module-level tables would hold RAM for good."""
    return (
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
        ("1-0:0.2.0.255", ("rr", "rr", "rr", None)),                                    # active firmware identifier
        ("1-0:0.2.8.255", ("rr", "rr", "rr", None)),                                    # its signature (legal metrology)
        # Metering registers (registers() below), read-only for everyone.
        ("1-0:3.8.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # reactive energy import
        ("1-0:4.8.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # reactive energy export
        ("1-0:5.8.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # reactive energy QI
        ("1-0:6.8.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # QII
        ("1-0:7.8.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # QIII
        ("1-0:8.8.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # QIV
        ("1-0:32.7.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                          # voltage
        ("1-0:31.7.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                          # current
        ("1-0:1.7.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # active power import
        ("1-0:2.7.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                           # active power export
        ("1-0:13.7.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                          # power factor
        ("1-0:14.7.0.255", ("rrr/-", "rrr/-", "rrr/-", None)),                          # frequency
        ("1-0:1.4.0.255", ("rrrrrrrrr/--", "rrrrrrrrr/--", "rrrrrrrbb/x-", None)),      # demand, import power
        ("0-0:96.10.1.255", ("rr", "rr", "rr", None)),                                  # status word (profiles)
        ("1-0:99.1.0.255", ("rrrrrrrr/--", "rrrrrrrr/--", "rrrbrrrr/xx", None)),        # load profile
        ("1-0:99.2.0.255", ("rrrrrrrr/--", "rrrrrrrr/--", "rrrrrrrr/xx", None)),        # daily profile
        ("0-0:99.98.0.255", (None, "rrrrrrrr/--", "rrrrrrrr/--", None)),                # standard event log
        ("0-0:96.11.0.255", (None, "rr", "rr", None)),                                  # its last event code
        ("0-0:99.97.0.255", (None, "rrrrrrrr/--", "rrrrrrrr/--", None)),                # power failure log
        ("0-0:96.11.2.255", (None, "rr", "rr", None)),                                  # its last event code
        ("0-0:99.98.4.255", ("rrrrrrrr/--", "rrrrrrrr/--", "rrrrrrrr/--", None)),       # audit log (metrology)
        ("0-0:96.11.4.255", ("rr", "rr", "rr", None)),                                  # its last event code
        ("0-0:96.15.4.255", ("rr", "rr", "rr", None)),                                  # audit event counter
    )

# Metering registers: OBIS, getter of the metering task, A-XDR type, scaler, unit.
# The scaler and unit are the getter's (metering/task.py, SCALER_UNIT; a test keeps
# the two tables equal). A (getter, argument) pair passes the argument. Energy is
# published in mWh (scaler -3) as long64-unsigned: fine enough to verify accuracy
# over an hour at 5 % of nominal current, and it does not wrap in a meter's life.
# It is the energy as last saved (billed_mwh), so a value read is never lost.
def registers():
    """Built when called, freed after start-up: module-level tables would hold RAM for good."""
    return (
        ("1-0:1.8.0.255", ("billed_mwh", E_ACTIVE_IMPORT), _LONG64_UNSIGNED, -3, 30),
        ("1-0:2.8.0.255", ("billed_mwh", E_ACTIVE_EXPORT), _LONG64_UNSIGNED, -3, 30),
        ("1-0:3.8.0.255", ("billed_mwh", E_REACTIVE_IMPORT), _LONG64_UNSIGNED, -3, 32),
        ("1-0:4.8.0.255", ("billed_mwh", E_REACTIVE_EXPORT), _LONG64_UNSIGNED, -3, 32),
        ("1-0:5.8.0.255", ("billed_mwh", E_REACTIVE_Q1), _LONG64_UNSIGNED, -3, 32),
        ("1-0:6.8.0.255", ("billed_mwh", E_REACTIVE_Q1 + 1), _LONG64_UNSIGNED, -3, 32),
        ("1-0:7.8.0.255", ("billed_mwh", E_REACTIVE_Q1 + 2), _LONG64_UNSIGNED, -3, 32),
        ("1-0:8.8.0.255", ("billed_mwh", E_REACTIVE_Q1 + 3), _LONG64_UNSIGNED, -3, 32),
        ("1-0:32.7.0.255", "voltage", _LONG_UNSIGNED, -2, 35),
        ("1-0:31.7.0.255", "current", _DOUBLE_LONG_UNSIGNED, -3, 33),
        ("1-0:1.7.0.255", "power_import", _DOUBLE_LONG_UNSIGNED, -2, 27),
        ("1-0:2.7.0.255", "power_export", _DOUBLE_LONG_UNSIGNED, -2, 27),
        ("1-0:13.7.0.255", "power_factor", _LONG, -3, 255),
        ("1-0:14.7.0.255", "frequency", _LONG_UNSIGNED, -3, 44),
    )

# Profiles: OBIS, capture period (s), depth, columns (OBIS, attribute): the clock,
# the status word, then energy registers. Captured in table order.
def profiles():
    """Built when called, freed after start-up: module-level tables would hold RAM for good."""
    return (
        ("1-0:99.1.0.255", 900, 960, (("0-0:1.0.0.255", 2), ("0-0:96.10.1.255", 2), ("1-0:1.8.0.255", 2),
                                      ("1-0:2.8.0.255", 2), ("1-0:3.8.0.255", 2), ("1-0:4.8.0.255", 2))),
        ("1-0:99.2.0.255", 86400, 62, (("0-0:1.0.0.255", 2), ("0-0:96.10.1.255", 2), ("1-0:1.8.0.255", 2),
                                       ("1-0:2.8.0.255", 2))),
    )

# Event logs: OBIS, event code object, store name, depth.
def logs():
    """Built when called, freed after start-up: module-level tables would hold RAM for good."""
    return (
        ("0-0:99.98.0.255", "0-0:96.11.0.255", "stdlog", 100),
        ("0-0:99.97.0.255", "0-0:96.11.2.255", "pwrlog", 100),
        ("0-0:99.98.4.255", "0-0:96.11.4.255", "auditlog", 200),
    )

# Objects that exist only when build_objects is given a store.
NEEDS_STORE = ("0-0:99.98.1.255", "0-0:96.11.1.255", "1-0:99.1.0.255", "1-0:99.2.0.255",
               "0-0:99.98.0.255", "0-0:96.11.0.255", "0-0:99.97.0.255", "0-0:96.11.2.255",
               "0-0:99.98.4.255", "0-0:96.11.4.255", "0-0:96.15.4.255")

# Registers that are never written nor reset through DLMS (MID billing data).
BILLING = ("1-0:1.8.0.255", "1-0:2.8.0.255")

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
        # logical name -> object, and -> its access_rights() row (one string or None per
        # client column; the rows are constants, ROM in frozen firmware, so rights cost
        # no heap). Made by index() once the table is complete, each dict in one
        # allocation of its final size: a dict grown entry by entry leaves freed
        # tables behind as holes, and a 64 KB heap has no room for holes.
        self._by_name = None
        self._rights = None
        self._column = {}         # client -> its column in those rows
        self._clients = {}        # client -> policy dict
        self._associations = {}   # client -> its AssociationLN instance

    # --- building ----------------------------------------------------------

    def add(self, obj):
        if self.find(obj.logical_name) is not None:
            raise ValueError("duplicate logical name")
        self._objects.append(obj)
        return obj

    def index(self):
        names = [obj.logical_name for obj in self._objects]
        self._by_name = dict.fromkeys(names)  # sized from len(names) at once
        self._rights = dict.fromkeys(names)
        for obj in self._objects:
            self._by_name[obj.logical_name] = obj

    def add_client(self, sap, name, association, mechanism, context, conformance):
        self._clients[sap] = {
            "sap": sap, "name": name, "association": association.logical_name,
            "mechanism": mechanism, "context": context, "conformance": conformance,
            # Green Book 9.3.3: a pre-established association exists without AARQ;
            # here the broadcast client, whose unconfirmed services are never answered.
            "pre_established": sap == PRE_ESTABLISHED,
        }
        self._associations[sap] = association
        self._column[sap] = len(self._column)

    def grant(self, obj, row):
        """row: the object's rights per client, in add_client order: an
        "attrs/methods" string as in access_rights(), or None (not visible). Kept
        as the strings themselves: decoding per request is cheaper than the RAM
        a table of decoded codes costs on a 64 KB heap."""
        for rights in row:
            if rights is not None:
                attrs, _, methods = rights.partition("/")
                what = "%r: %r" % (obj, rights)
                _check(attrs, _ATTR_CODES, len(obj.ATTRIBUTES), what)
                _check(methods, _METHOD_CODES, len(obj.METHODS), what)
        self._rights[obj.logical_name] = row

    def _rights_of(self, client, obj):
        row = self._rights.get(obj.logical_name)
        k = self._column.get(client)
        return None if row is None or k is None else row[k]

    # --- queries (server and association objects) -------------------------

    def lookup(self, class_id, logical_name):
        """The object with this class and logical name, or None."""
        by_name = self._by_name  # None only while the table is being built
        obj = by_name.get(bytes(logical_name)) if by_name is not None else self.find(logical_name)
        return obj if obj is not None and obj.class_id == class_id else None

    def find(self, logical_name):
        """The object with this logical name whatever its class, or None (lets
        the server tell object-class-inconsistent from object-undefined)."""
        name = bytes(logical_name)
        if self._by_name is None:  # still being built: a scan, the index comes last
            for obj in self._objects:
                if obj.logical_name == name:
                    return obj
            return None
        return self._by_name.get(name)

    def objects(self):
        return list(self._objects)

    def objects_for(self, client):
        """Objects the client sees, in table order (its object_list)."""
        return [o for o in self._objects if self._rights_of(client, o) is not None]

    def visible(self, client, obj):
        return self._rights_of(client, obj) is not None

    def attribute_access(self, client, obj, attr):
        """0 no access, 1 read, 2 write, 3 read-write (0 for unknown ids)."""
        r = self._rights_of(client, obj)
        if r is None or not 1 <= attr <= len(obj.ATTRIBUTES):
            return 0
        return _ATTR_CODES.index(r[attr - 1])

    def method_access(self, client, obj, method):
        """0 no access, 1 access (0 for unknown ids)."""
        r = self._rights_of(client, obj)
        if r is None or not 1 <= method <= len(obj.METHODS):
            return 0
        return _METHOD_CODES.index(r[len(obj.ATTRIBUTES) + method])

    def client(self, sap):
        """Policy dict of a configured client (sap, name, association, mechanism,
        context, conformance), or None for an unknown client SAP."""
        return self._clients.get(sap)

    def clients(self):
        return list(self._clients)  # in client_policies() order

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


def build_objects(config, clock_source, sources=None, store=None, security=None, core=False):
    """The meter's ObjectTable. config: the board dict (ldn or flag_id+serial,
    hdlc, max_pdu, lls_password, optional clock settings and firmware_id).
    sources: optional callables from the metering and security layers:
    energy_import, energy_export (Wh, int), invocation_counter (int).
    store: adapters.store.Store for the logs (none: no security event log).
    security: the dlms.security.SecurityContext (or None: no keys) behind the
    security setup object and the invocation counter. core: a core meter, without
    the profiles and the logs other than the security event log (main.core_meter)."""
    src = sources if sources is not None else {}
    hdlc = config.get("hdlc", {})
    server_sap = hdlc.get("logical", 1)
    t = ObjectTable(server_sap, config.get("max_pdu", 1024))
    ldn = _ldn(config)

    t.add(Data(obis("0-0:42.0.0.255"), (_OCTET_STRING, ldn)))
    clock = t.add(Clock(obis("0-0:1.0.0.255"), clock_source, config.get("clock")))
    t.add(AssociationLN(obis("0-0:40.0.0.255"), t))
    policies = client_policies()
    for sap, name, e, mechanism, context, conformance in policies:
        secret = config.get("lls_password") if mechanism == MECH_LLS else None
        assoc = AssociationLN(bytes((0, 0, 40, 0, e, 255)), t, sap, secret)
        t.add_client(sap, name, assoc, mechanism, context, conformance)
    for sap, _, _, _, _, _ in policies:
        t.add(t.association_for(sap))
    t.add(SapAssignment(obis("0-0:41.0.0.255"), ((server_sap, ldn),)))
    t.add(HdlcSetup(obis("0-0:22.0.0.255"), hdlc))
    for name, getter, tag, scaler, unit in registers():
        t.add(Register(obis(name), tag, _reader(src, getter), scaler, unit))
    ic = _source(src, "invocation_counter") or (security.expected_counter if security else _zero)
    t.add(Data(obis("0-0:43.1.0.255"), lambda: (_DOUBLE_LONG_UNSIGNED, ic())))
    t.add(SecuritySetup(obis("0-0:43.0.0.255"), security))
    t.security_log = None  # record(code): the server's security event hook writes here
    if store is not None:
        code = t.add(EventCode(obis("0-0:96.11.1.255")))
        t.security_log = t.add(EventLog(obis("0-0:99.98.1.255"), clock, code, store, name="seclog"))
    t.add(Data(obis("1-0:0.2.0.255"), (_VISIBLE_STRING, config.get("firmware_id", b"MPY-DLMS 0.1"))))
    t.add(Data(obis("1-0:0.2.8.255"), (_OCTET_STRING, config.get("firmware_signature", b""))))
    t.demand = t.add(DemandRegister(obis("1-0:1.4.0.255"), _reader(src, ("energy_mwh", E_ACTIVE_IMPORT)), 900, 1,
                                    -3, 27, tag=_DOUBLE_LONG_UNSIGNED, clock=clock))
    t.status = t.add(StatusWord(obis("0-0:96.10.1.255")))
    t.profiles, t.event_log, t.power_log, t.audit_log = [], None, None, None
    if store is not None and not core:
        _add_logs_and_profiles(t, clock, store)

    _apply_access(t)
    return t


def _source(src, name):
    """A value source by name: sources is a dict of callables, or the metering task."""
    return src.get(name) if isinstance(src, dict) else getattr(src, name, None)


def _reader(src, getter):
    if isinstance(getter, tuple):
        fn = _source(src, getter[0])
        arg = getter[1]
        return (lambda: fn(arg)) if fn else _zero
    return _source(src, getter) or _zero


def _add_logs_and_profiles(t, clock, store):
    """Event logs first (the audit log hears of every profile change), then profiles."""
    made = []
    for name, code_name, store_name, depth in logs():
        code = t.add(EventCode(obis(code_name)))
        made.append(t.add(EventLog(obis(name), clock, code, store, depth, name=store_name)))
    t.event_log, t.power_log, t.audit_log = made
    t.audit_count = t.add(Data(obis("0-0:96.15.4.255"), lambda: (_DOUBLE_LONG_UNSIGNED, t.audit_log.count())))

    def audit(obj, what):
        t.audit_log.record(CHANGE_CODES[what])

    for name, period, depth, columns in profiles():
        cols = [(t.find(obis(o)), a, 0) for o, a in columns]
        t.profiles.append(t.add(ProfileGeneric(obis(name), cols, store, depth, period, clock=clock,
                                               resolve=t.lookup, on_change=audit)))


def _apply_access(t):
    t.index()
    listed = set()
    billing = [obis(b) for b in BILLING]
    for name, rights in access_rights():
        obj = t.find(obis(name))
        if obj is None and name in NEEDS_STORE:
            continue
        if obj is None:
            raise ValueError("ACCESS names a missing object " + name)
        listed.add(obj.logical_name)
        if obj.logical_name in billing:
            for r in rights:
                if r is not None and ("w" in r or "b" in r or "x" in r):
                    raise ValueError("billing register must stay read-only: " + name)
        t.grant(obj, rights)
    for obj in t.objects():
        if obj.logical_name not in listed:
            raise ValueError("no ACCESS row for %r" % obj)

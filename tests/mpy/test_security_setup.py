# Security setup (IC 64 v1, cosem/security_setup.py) against a fake calling
# association: attributes, the version-1 policy bits, security_activate (only
# stronger, applied after the response), global_key_transfer (RFC 3394 vector,
# all-or-nothing, applied after the response, counters of replaced keys reset),
# and the test-keys file agreeing with the firmware's copy.
import json

from testutil import load_vectors, raises, unhex
from test_security import MemStore

from cosem.base import obis
from cosem.security_setup import SecuritySetup, policy_from_v1, policy_to_v1
from dlms import keys, keywrap, security
from dlms.axdr import ARRAY, ENUM, OCTET_STRING, STRUCTURE
from dlms.counters import OwnCounter, PeerCounter
from dlms.errors import (AccessError, HARDWARE_FAULT, OTHER_REASON, READ_WRITE_DENIED,
                         TEMPORARY_FAILURE, TYPE_UNMATCHED)
from dlms.security import SecurityContext

LN = obis("0-0:43.0.0.255")
CLIENT_ST = unhex("4D4D4D0000000001")
KEK = keys.TEST_KEYS["kek"]


class Ctx:
    """The calling association as the object sees it."""

    def __init__(self):
        self.client_system_title = CLIENT_ST
        self.deferred = []
        self.events = []

    def after_reply(self, fn):
        self.deferred.append(fn)

    def security_event(self, code):
        self.events.append(code)

    def reply_sent(self):
        for fn in self.deferred:
            fn()
        self.deferred = []


def setup(policy=security.POLICY_AUTHENTICATED_ENCRYPTED, store=True):
    st = MemStore()
    peers = {"ek": PeerCounter(st, "p_ek"), "bk": PeerCounter(st, "p_bk")}
    sec = SecurityContext(dict(keys.TEST_KEYS), keys.TEST_KEYS["system_title"], OwnCounter(st, "own", 10),
                          peers, policy, store=st if store else None)
    return SecuritySetup(LN, sec), sec, st


def code(fn, *args):
    return raises(AccessError, fn, *args).code


def transfer(*entries):
    return (ARRAY, [(STRUCTURE, [(ENUM, kid), (OCTET_STRING, wrapped)]) for kid, wrapped in entries])


def test_attributes():
    obj, sec, _ = setup()
    ctx = Ctx()
    assert obj.get(1, ctx) == (OCTET_STRING, LN)
    assert obj.get(2, ctx) == (ENUM, 0x6C)
    assert obj.get(3, ctx) == (ENUM, 0)
    assert obj.get(4, ctx) == (OCTET_STRING, CLIENT_ST)
    assert obj.get(5, ctx) == (OCTET_STRING, keys.TEST_KEYS["system_title"])
    assert obj.get(6, ctx) == (ARRAY, [])
    assert obj.class_id == 64 and obj.version == 1 and len(obj.METHODS) == 8


def test_without_keys():
    obj = SecuritySetup(LN, None)
    ctx = Ctx()
    assert obj.get(2, ctx) == (ENUM, 0) and obj.get(5, ctx) == (OCTET_STRING, b"")
    assert code(obj.action, 1, (ENUM, 0x6C), ctx) == TEMPORARY_FAILURE
    assert code(obj.action, 2, transfer(), ctx) == TEMPORARY_FAILURE


def test_policy_bits():
    assert [policy_to_v1(p) for p in (0, 0x10, 0x20, 0x30)] == [0, 0x24, 0x48, 0x6C]
    for p in (0, 0x10, 0x20, 0x30):
        assert policy_from_v1(policy_to_v1(p)) == p
    for v in (0x04, 0x20, 0x80, 0x7C, 0x6D):   # request without response, signatures, junk
        assert raises(AccessError, policy_from_v1, v).code == OTHER_REASON


def test_security_activate_strengthens_after_the_reply():
    obj, sec, st = setup(security.POLICY_AUTHENTICATED)
    ctx = Ctx()
    assert code(obj.action, 1, (ENUM, 0), ctx) == OTHER_REASON          # weaker
    assert code(obj.action, 1, (ENUM, 0x48), ctx) == OTHER_REASON       # not a superset
    assert code(obj.action, 1, (17, 0x6C), ctx) == TYPE_UNMATCHED         # unsigned, not enum
    assert obj.action(1, (ENUM, 0x24), ctx) is None and not ctx.deferred   # the same: no change
    assert obj.action(1, (ENUM, 0x6C), ctx) is None
    assert sec.policy == 0x10 and st.get(security.POLICY_RECORD) == b"\x30"   # persisted first
    ctx.reply_sent()
    assert sec.policy == 0x30 and ctx.events == [security.EVENT_POLICY_CHANGED]


def test_security_activate_refused_when_it_cannot_persist():
    obj, sec, _ = setup(security.POLICY_AUTHENTICATED, store=False)
    assert code(obj.action, 1, (ENUM, 0x6C), Ctx()) == HARDWARE_FAULT
    assert sec.policy == 0x10


def test_global_key_transfer_rfc3394_vector():
    v = [x for x in load_vectors("aes_keywrap_rfc3394")["vectors"] if x["id"].startswith("RFC3394-4.1")][0]
    obj, sec, st = setup()
    ctx = Ctx()
    old_ek = sec.keys["ek"]
    for _ in range(3):
        sec.own_counter.next()
    sec.accept_counter("ek", 40)
    sec.accept_counter("bk", 9)
    assert obj.action(2, transfer((0, unhex(v["wrapped"]))), ctx) is None
    assert sec.keys["ek"] == old_ek                                       # not yet
    assert keys.decode_keys(st.get(keys.KEYS_RECORD))["ek"] == unhex(v["key_data"])   # but durable
    ctx.reply_sent()
    assert sec.keys["ek"] == unhex(v["key_data"]) and ctx.events == [security.EVENT_KEY_CHANGED]
    assert sec.own_counter.value == 1 and sec.expected_counter() == 1    # ek replaced
    assert sec.peer_counters["bk"].value == 9                            # bk kept


def test_global_key_transfer_all_or_nothing():
    obj, sec, st = setup()
    ctx = Ctx()
    good = keywrap.wrap(KEK, bytes(range(16)))
    bad = bytearray(good)
    bad[3] ^= 1
    assert code(obj.action, 2, transfer((0, good), (2, bytes(bad))), ctx) == OTHER_REASON
    assert code(obj.action, 2, transfer((0, good), (0, good)), ctx) == OTHER_REASON
    assert code(obj.action, 2, transfer((9, good)), ctx) == OTHER_REASON
    assert code(obj.action, 2, transfer(), ctx) == OTHER_REASON
    assert code(obj.action, 2, (ARRAY, [(ENUM, 0)]), ctx) == TYPE_UNMATCHED
    assert code(obj.action, 2, (OCTET_STRING, good), ctx) == TYPE_UNMATCHED
    assert sec.keys == keys.TEST_KEYS and st.get(keys.KEYS_RECORD) is None and not ctx.deferred


def test_authentication_key_change_keeps_counters():
    obj, sec, st = setup()
    ctx = Ctx()
    sec.accept_counter("ek", 40)
    obj.action(2, transfer((2, keywrap.wrap(KEK, bytes(16)))), ctx)
    ctx.reply_sent()
    assert sec.ak == bytes(16) and sec.expected_counter() == 41


def test_certificate_methods_declared_not_implemented():
    obj, _, _ = setup()
    for m in range(3, 9):
        assert code(obj.action, m, (ENUM, 0), Ctx()) == READ_WRITE_DENIED


def test_test_keys_file_matches_firmware_copy():
    with open("boards/UNIX/test_keys.json") as f:
        doc = json.load(f)
    for name in ("system_title", "ek", "ak", "bk", "kek"):
        assert unhex(doc[name]) == keys.TEST_KEYS[name], name

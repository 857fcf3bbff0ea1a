# The meter's key set for security suite 0: where it comes from, how it is stored,
# and how global_key_transfer (Security setup, IC 64, method 2) replaces it.
#
# A key set is a dict:
#   'system_title'  the meter's own system title (8 octets)
#   'ek'  global unicast encryption key      'bk'  global broadcast encryption key
#   'ak'  authentication key                  'kek' master key (key-encryption key)
# all keys 16 octets (AES-128).
#
# Keys file: the Store record "keys" (adapters/store.py: two slots keys.a / keys.b
# with header and CRC-32, so a cut while saving leaves the old or the new set,
# never a mix). Its payload, written by tools/provision_keys.py and by save_keys:
#   version (1 octet, = 1) || system title (8) || ek (16) || ak (16) || bk (16) || kek (16)
# 73 octets, in that order, no other framing.
#
# A board that has no keys record refuses ciphered associations (load_keys -> None);
# only a board that says sim: True falls back to TEST_KEYS, published example values
# that must never protect a meter in the field.
from dlms import keywrap
from dlms.errors import AccessError, OTHER_REASON, TYPE_UNMATCHED

KEYS_RECORD = "keys"
FORMAT_VERSION = 1
KEY_LEN = 16
_ORDER = ("ek", "ak", "bk", "kek")
PAYLOAD_LEN = 1 + 8 + KEY_LEN * len(_ORDER)

# Test key set of the simulator. system title, ek and ak: the Green Book examples
# (DLMS UA 1000-2, Table 40/43 ciphering examples, see shared/vectors/gcm_dlms.json);
# kek: the KEK of the key-wrap example (RFC 3394 4.1, which the Green Book's key
# transfer example uses); bk: has no published example, chosen here (ek reversed).
TEST_KEYS = {
    "system_title": b"\x4d\x4d\x4d\x00\x00\xbc\x61\x4e",  # 4D4D4D0000BC614E
    "ek": b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",  # 000102...0F
    "ak": b"\xd0\xd1\xd2\xd3\xd4\xd5\xd6\xd7\xd8\xd9\xda\xdb\xdc\xdd\xde\xdf",  # D0D1...DF
    "bk": b"\x0f\x0e\x0d\x0c\x0b\x0a\x09\x08\x07\x06\x05\x04\x03\x02\x01\x00",  # 0F0E...00
    "kek": b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",  # 000102...0F
}

# global_key_transfer key_id (Blue Book IC 64: key_id enum).
KEY_IDS = {0: "ek", 1: "bk", 2: "ak", 3: "kek"}

# A-XDR tags used by the key_transfer parameter.
_ARRAY = 1
_STRUCTURE = 2
_OCTET_STRING = 9
_ENUM = 22


def encode_keys(keys):
    """The keys-file payload of a key set (ValueError on a bad length)."""
    st = keys["system_title"]
    if len(st) != 8:
        raise ValueError("system title is 8 octets")
    out = bytearray((FORMAT_VERSION,))
    out.extend(st)
    for name in _ORDER:
        k = keys[name]
        if len(k) != KEY_LEN:
            raise ValueError("key %s is not 16 octets" % name)
        out.extend(k)
    return bytes(out)


def decode_keys(payload):
    """The key set in a keys-file payload; ValueError if it is not one."""
    if payload is None or len(payload) != PAYLOAD_LEN or payload[0] != FORMAT_VERSION:
        raise ValueError("not a version-1 keys record")
    keys = {"system_title": bytes(payload[1:9])}
    pos = 9
    for name in _ORDER:
        keys[name] = bytes(payload[pos:pos + KEY_LEN])
        pos += KEY_LEN
    return keys


def load_keys(store, board):
    """The provisioned key set; TEST_KEYS on a simulator board without one; None
    (no ciphered association) on a device board without one or with an unreadable
    one. The caller says loudly when it runs on TEST_KEYS (is_test_keys)."""
    payload = store.get(KEYS_RECORD)
    if payload is not None:
        try:
            return decode_keys(payload)
        except ValueError:
            return None
    if store.exists(KEYS_RECORD):
        return None  # written once, now unreadable: do not fall back to anything
    if board.get("sim"):
        return dict(TEST_KEYS)
    return None


def save_keys(store, keys):
    """Persist a key set (atomically: old or new survives a cut)."""
    store.put(KEYS_RECORD, encode_keys(keys))


def describe_keys(keys):
    """The start-up line about the key set (loud for the test keys)."""
    if keys is None:
        return ("NO KEYS: ciphered associations are refused until keys are provisioned"
                " (tools/provision_keys.py)")
    if is_test_keys(keys):
        return ("*** TEST KEYS *** (Green Book examples, boards/UNIX/test_keys.json): public values,"
                " for the simulator only, never for a meter in the field")
    return "keys: provisioned, system title " + "".join("%02X" % b for b in keys["system_title"])


def is_test_keys(keys):
    return keys is not None and any(keys.get(n) == TEST_KEYS[n] for n in _ORDER)


def replaced(old, new):
    """Kinds whose key value differs between two key sets: the counters that
    belong to exactly these are reset (never those of an unchanged key, whose IVs
    would then repeat)."""
    return [n for n in _ORDER if old.get(n) != new.get(n)]


def _key_entry(entry):
    if not isinstance(entry, tuple) or len(entry) != 2 or entry[0] != _STRUCTURE:
        raise AccessError(TYPE_UNMATCHED, "key_data entry is not a structure")
    fields = entry[1]
    if len(fields) != 2 or fields[0][0] != _ENUM or fields[1][0] != _OCTET_STRING:
        raise AccessError(TYPE_UNMATCHED, "key_data entry is not {enum, octet-string}")
    name = KEY_IDS.get(fields[0][1])
    if name is None:
        raise AccessError(OTHER_REASON, "unknown key_id")
    return name, fields[1][1]


def apply_key_transfer(keys, kek, key_data):
    """global_key_transfer: key_data is the A-XDR method parameter, an array of
    structure {key_id enum, key_wrapped octet-string}. Every key is unwrapped with
    RFC 3394 under kek (the current master key, even when the master key itself is
    among those replaced). Returns the new key set; the caller persists it
    (save_keys), answers, and only then applies it (Green Book: new keys take
    effect after the response), resetting the counters of replaced(old, new).
    Raises AccessError (TYPE_UNMATCHED for a malformed parameter, OTHER_REASON for a
    failed unwrap, an unknown or repeated key_id, a key that is not 16 octets) and
    then changes nothing."""
    if not isinstance(key_data, tuple) or len(key_data) != 2 or key_data[0] != _ARRAY:
        raise AccessError(TYPE_UNMATCHED, "key_data is not an array")
    if not key_data[1]:
        raise AccessError(OTHER_REASON, "no key in key_transfer")
    if not kek:
        raise AccessError(OTHER_REASON, "no master key")
    new = dict(keys)
    seen = []
    for entry in key_data[1]:
        name, wrapped = _key_entry(entry)
        if name in seen:
            raise AccessError(OTHER_REASON, "key_id repeated")
        seen.append(name)
        try:
            key = keywrap.unwrap(kek, bytes(wrapped))
        except ValueError:
            raise AccessError(OTHER_REASON, "key unwrap failed")
        if len(key) != KEY_LEN:
            raise AccessError(OTHER_REASON, "unwrapped key is not 16 octets")
        new[name] = key
    return new

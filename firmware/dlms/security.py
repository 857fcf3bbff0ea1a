# Security suite 0 (AES-GCM-128) for xDLMS APDUs, sans-IO (Green Book 9.2.7).
#
# Owns: the security header (security control byte SC, invocation counter IC),
# the service-specific ciphered APDUs (glo-*/ded-*) and general-glo/ded-ciphering,
# the check of every received counter against the counter of its key, the
# ciphered AARQ/AARE user-information, and HLS mechanism 5 (GMAC) pass 3/4.
# Does not own: which association may use ciphering (server.py), key storage
# (keys.py), counter persistence (counters.py), the GCM arithmetic (gcm.py).
#
# Wire forms (A-XDR; "len" is an A-XDR length):
#   service-specific  tag || len || SC || IC(4) || out
#   general-glo/ded   tag || len || system-title || len || SC || IC(4) || out
#   out: SC 0x30 ciphertext || T;  SC 0x10 plaintext || T;  SC 0x20 ciphertext
#   IV = system title of the sender (8) || IC (4, big-endian); T = 12 bytes.
#   AAD: SC 0x30 -> SC || AK;  SC 0x10 -> SC || AK || plaintext;  SC 0x20 none.
#
# Every request counter must be strictly greater than the last one accepted
# under its key (counters.PeerCounter); the meter's own counter comes from
# counters.OwnCounter, one fresh value per protected APDU. A counter is only
# consumed once the tag has verified, so forged APDUs cannot burn counters.
# The builtins used per APDU, bound as names of this module: MicroPython looks a name up
# in the module's globals before the builtins, and a miss there probes the whole table
# (which it keeps nearly full); a name found is one cached lookup.
from builtins import bytes, len, memoryview
import os
import struct
import micropython
from micropython import const

from dlms import acse
from dlms.counters import OwnCounter, PeerCounter
from dlms.keys import load_keys, replaced
from dlms.axdr import decode_length, encode_length
from dlms.counters import CounterUnavailable, ReplayError
from dlms.errors import DecodeError, ProtocolError
from dlms.gcm import AESGCM

# SecurityError.kind: the exception-response service-error it maps to
# (apdu.SERVICE_DECIPHERING_ERROR / SERVICE_INVOCATION_COUNTER_ERROR).
DECIPHERING_ERROR = const(5)
INVOCATION_COUNTER_ERROR = const(6)

# Security control byte (Green Book 9.2.7.1, Table 37).
_SC_SUITE_MASK = const(0x0F)
_SC_AUTHENTICATED = const(0x10)
_SC_ENCRYPTED = const(0x20)
_SC_BROADCAST = const(0x40)     # key set: 0 unicast, 1 broadcast
_SC_COMPRESSED = const(0x80)
_SC_AUTHENTICATED_ENCRYPTED = const(0x30)
_SC_PROTECTION = const(0x30)

# Security policy: the SC protection bits every request must carry.
POLICY_NONE = const(0)
POLICY_AUTHENTICATED = const(0x10)
POLICY_ENCRYPTED = const(0x20)
POLICY_AUTHENTICATED_ENCRYPTED = const(0x30)

# Security events (IDIS fraud detection log codes; 204/205 are this firmware's
# own, in the 200-254 range IDIS leaves to the manufacturer, as in cosem/profile.py).
EVENT_AUTHENTICATION_FAILURE = const(46)
EVENT_DECIPHERING_FAILURE = const(47)
EVENT_REPLAY = const(48)
EVENT_ACCESS_DENIED = const(206)  # a SET or ACTION the client's access rights refuse
EVENT_KEY_CHANGED = const(204)
EVENT_POLICY_CHANGED = const(205)

# Store records of the security state (adapters/store.py): the policy (1 octet),
# the meter's own counter under 'ek' and the peer counters per global key.
POLICY_RECORD = "policy"
_OWN_COUNTER_RECORD = "ic_own_ek"
_PEER_COUNTER_RECORDS = (("ek", "ic_peer_ek"), ("bk", "ic_peer_bk"))
_POLICIES = (0, 0x10, 0x20, 0x30)

TAG_LEN = const(12)
# Room wrap_into needs before a plain APDU: tag, system-title length and title,
# content length (3), SC, IC(4). A response grows by at most CIPHER_OVERHEAD.
WRAP_HEADROOM = const(18)
CIPHER_OVERHEAD = const(WRAP_HEADROOM + TAG_LEN)
_GET_REQUEST = const(0xC0)
_SYSTEM_TITLE_LEN = const(8)
_HLS_SC = const(0x10)          # Green Book 9.2.7.4: f() is always authentication only
_HLS_F_LEN = const(17)         # SC || IC || T
HLS_CHALLENGE_MIN = const(8)   # Green Book: challenges are 8..64 octets
HLS_CHALLENGE_MAX = const(64)

# Key kinds: names in the key dict (keys.py) and in SecurityContext.peer_counters.
KEY_GLOBAL = const("ek")
KEY_BROADCAST = const("bk")
KEY_DEDICATED = const("dk")    # per association, from the InitiateRequest

GENERAL_GLO_CIPHERING = const(0xDB)
GENERAL_DED_CIPHERING = const(0xDC)
EXCEPTION_RESPONSE = const(0xD8)
_INITIATE_REQUEST = const(0x01)
_GLO_INITIATE_REQUEST = const(0x21)

# Ciphered request tag -> (plain request tag inside, key kind, ciphered response
# tag) (Green Book 9.5 COSEMpdu; gurux Command enum for the numbers).
REQUESTS = {
    0xC8: (0xC0, KEY_GLOBAL, 0xCC),      # glo-get-request -> glo-get-response
    0xC9: (0xC1, KEY_GLOBAL, 0xCD),      # glo-set
    0xCB: (0xC3, KEY_GLOBAL, 0xCF),      # glo-action
    0xD0: (0xC0, KEY_DEDICATED, 0xD4),   # ded-get
    0xD1: (0xC1, KEY_DEDICATED, 0xD5),   # ded-set
    0xD3: (0xC3, KEY_DEDICATED, 0xD7),   # ded-action
}
# Plain response tag -> (glo tag, ded tag). A confirmed-service-error is ciphered
# too (glo 0x2E / ded 0x4E); an exception-response never is (it may answer an
# APDU that could not be deciphered).
RESPONSES = {
    0xC4: (0xCC, 0xD4),   # get-response
    0xC5: (0xCD, 0xD5),   # set-response
    0xC7: (0xCF, 0xD7),   # action-response
    0xC2: (0xCA, 0xD2),   # event-notification-request
    0x0E: (0x2E, 0x4E),   # confirmed-service-error
    0x08: (0x28, 0x48),   # initiate-response
}

# reply_form: (general, sc, key kind) or None (plain association).
_FORM_SERVICE = const(0)
_FORM_GENERAL = const(1)


class SecurityError(ProtocolError):
    """A ciphered APDU refused. .kind is DECIPHERING_ERROR (bad tag, bad or
    insufficient SC, unknown key, wrong system title, malformed, unprotected) or
    INVOCATION_COUNTER_ERROR (replayed or stale counter; .expected is then the
    lowest counter the meter would accept, for the exception-response)."""

    def __init__(self, kind, msg, expected=None):
        super().__init__(msg)
        self.kind = kind
        self.expected = expected


def _deciphering(msg):
    return SecurityError(DECIPHERING_ERROR, msg)


# --- the security header: protect / unprotect ------------------------------------

def _cipher(key):
    return key if isinstance(key, AESGCM) else AESGCM(key)


def _check_sc(sc):
    if sc & _SC_SUITE_MASK:
        raise _deciphering("security suite %d not supported" % (sc & _SC_SUITE_MASK))
    if sc & _SC_COMPRESSED:
        raise _deciphering("compression not supported")
    if not sc & _SC_PROTECTION:
        raise _deciphering("SC without protection")


def protect(sc, key, ak, system_title, ic, plaintext):
    """SC || IC || out (see the file header). key: 16 bytes or an AESGCM."""
    _check_sc(sc)
    n = len(plaintext)
    buf = bytearray(5 + n + TAG_LEN)
    buf[5:5 + n] = plaintext
    start, end = protect_into(sc, _cipher(key), aad_buffer(ak), iv_buffer(system_title), ic, buf, 5, 5 + n)
    return bytes(memoryview(buf)[start:end])


# The IV (system title || IC) of each sender and the AAD of the common modes (SC || AK)
# are kept in buffers filled in but for the IC and the SC, which each APDU writes: a
# ciphered APDU then costs no allocation and no copy for them.
def iv_buffer(system_title, error=ValueError):
    if len(system_title) != _SYSTEM_TITLE_LEN:
        raise error("system title is 8 octets")
    return bytearray(system_title) + bytes(4)


def aad_buffer(ak):
    return bytearray(1) + ak


# protect_into, unseal and the CipherSession methods that call them run for every
# ciphered APDU: they are compiled to machine code (native emitter), which halves
# what the Python around the two GCM calls costs, and they avoid calls and temporaries.
@micropython.native
def protect_into(sc, g, aad, iv, ic, buf, start, end):
    """protect() in place, under the AESGCM g, with an SC already checked, the AAD
    and the sender's IV buffers: the plaintext buf[start:end] becomes out, SC || IC
    goes in the 5 bytes before start and T in the TAG_LEN after end; -> (start, end)
    of SC || IC || out. No allocation the size of the APDU."""
    start -= 5
    struct.pack_into(">BI", buf, start, sc, ic)
    iv[8:12] = buf[start + 1:start + 5]
    aad[0] = sc
    mode = sc & _SC_PROTECTION
    mv = memoryview(buf)
    if mode == _SC_AUTHENTICATED_ENCRYPTED:
        text = mv[start + 5:end]
        return start, end + g.encrypt_into(iv, text, aad, mv[start + 5:end + TAG_LEN]) - len(text)
    if mode == _SC_AUTHENTICATED:
        return start, end + g.encrypt_into(iv, b"", bytes(aad) + mv[start + 5:end], mv[end:end + TAG_LEN])
    text = mv[start + 5:end]
    g.encrypt_into(iv, text, b"", text, 0)
    return start, end


def unprotect(key, ak, system_title, content):
    """content = SC || IC || out -> (sc, ic, plaintext). Raises SecurityError
    (DECIPHERING_ERROR) on a bad SC, a short content or a bad tag. Does not look at
    counters: callers check ic against the key's counter."""
    iv = iv_buffer(system_title, _deciphering)
    return unseal(_cipher(key), aad_buffer(ak), iv, content, 0, len(content))


@micropython.native
def unseal(g, aad, iv, buf, start, end):
    """unprotect() of the content buf[start:end] under the AESGCM g, with the AAD
    buffer and the sender's IV buffer."""
    if end - start < 5:
        raise _deciphering("security header truncated")
    sc = buf[start]
    if sc & (_SC_SUITE_MASK | _SC_COMPRESSED) or not sc & _SC_PROTECTION:
        _check_sc(sc)  # raises, saying why
    iv[8:12] = buf[start + 1:start + 5]
    ic = struct.unpack_from(">I", iv, 8)[0]
    aad[0] = sc
    mode = sc & _SC_PROTECTION
    if mode != _SC_ENCRYPTED and end - start < 5 + TAG_LEN:
        raise _deciphering("authentication tag truncated")
    body = memoryview(buf)[start + 5:end]
    try:
        if mode == _SC_AUTHENTICATED_ENCRYPTED:
            return sc, ic, g.decrypt(iv, body, aad)
        if mode == _SC_AUTHENTICATED:
            plaintext = bytes(body[:-TAG_LEN])
            g.decrypt(iv, body[-TAG_LEN:], bytes(aad) + plaintext)
            return sc, ic, plaintext
    except ValueError:
        raise _deciphering("authentication tag mismatch")
    return sc, ic, g.decrypt(iv, body, b"", 0)


def hls_f(key, ak, system_title, ic, challenge):
    """HLS-GMAC f(challenge) = SC(0x10) || IC || GMAC(SC || AK || challenge) under
    IV = system_title || IC (Green Book 9.2.7.4, Table 43). key: 16 bytes or an AESGCM."""
    g = _cipher(key)
    head = struct.pack(">BI", _HLS_SC, ic)
    tag = g.encrypt(bytes(system_title) + head[1:], b"", head[:1] + ak + challenge)
    return head + tag


# --- the server-wide context ---------------------------------------------------

class SecurityContext:
    """What every ciphered association of the meter shares.

    keys: dict of 16-byte keys 'ek' (global unicast encryption), 'ak'
      (authentication), 'bk' (global broadcast encryption, optional), 'kek'
      (master, used by keys.apply_key_transfer only);
    system_title: the meter's 8-byte system title;
    own_counter: counters.OwnCounter of the current 'ek' (next() -> fresh IC);
    peer_counters: {'ek': PeerCounter, 'bk': PeerCounter} (a missing kind refuses
      APDUs under that key);
    policy: SC bits every request must carry (POLICY_*, default authenticated
      and encrypted);
    urandom: source of HLS challenges (os.urandom; tests inject their own);
    store: the adapters.store.Store the key set and the policy persist in (None
      in tests that never change them)."""

    def __init__(self, keys, system_title, own_counter, peer_counters,
                 policy=POLICY_AUTHENTICATED_ENCRYPTED, urandom=None, store=None):
        self.iv = iv_buffer(system_title)  # the meter's IVs (ValueError unless 8 octets)
        self.system_title = bytes(system_title)
        self.own_counter = own_counter
        self.peer_counters = peer_counters
        self.policy = policy
        self.urandom = urandom or os.urandom
        self.store = store
        self.set_keys(keys)

    def expected_counter(self):
        """The lowest counter the meter accepts next under 'ek' (the value of the
        invocation counter object 0-0:43.1.0.255, read by the public client so a
        head-end can continue from it)."""
        peer = self.peer_counters.get(KEY_GLOBAL)
        return 0 if peer is None else (peer.value + 1) & 0xFFFFFFFF

    def replace_keys(self, new):
        """Install a transferred key set, already persisted (keys.save_keys), once
        the response acknowledging it is out. The counters of a replaced
        encryption key start again (its IVs are new); those of an unchanged key
        never do. Returns the names of the replaced keys."""
        changed = replaced(self.keys, new)
        self.set_keys(new)
        if KEY_GLOBAL in changed:
            self.own_counter.reset_for_new_key()
        for kind in (KEY_GLOBAL, KEY_BROADCAST):
            peer = self.peer_counters.get(kind)
            if kind in changed and peer is not None:
                peer.reset_for_new_key()
        return changed

    def set_keys(self, keys):
        """Install a new key set (after a key transfer has been answered). The
        caller resets the counters of every replaced key."""
        self.keys = keys
        self.ak = bytes(keys["ak"])
        self.aad = aad_buffer(self.ak)
        # Built now, not at the first association: a GCM context is a 400-byte block
        # the fragmented run-time heap of a microcontroller may no longer have.
        self._ciphers = {kind: AESGCM(keys[kind]) for kind in (KEY_GLOBAL, KEY_BROADCAST) if keys.get(kind)}

    @micropython.native
    def cipher(self, kind):
        """AESGCM of a global key kind ('ek', 'bk'), built with the key set."""
        g = self._ciphers.get(kind)
        if g is None:
            raise _deciphering("no %s key" % kind)
        return g

    @micropython.native
    def accept_counter(self, kind, ic, durable=True):
        """Check ic against the peer counter of kind and persist it (lazily for
        reads: counters.PeerCounter); returns the counter value before the update.
        SecurityError on a replay."""
        peer = self.peer_counters.get(kind)
        if peer is None:
            raise _deciphering("no counter for key %s" % kind)
        before = peer.value
        try:
            peer.check_and_update(ic, durable)
        except ReplayError as e:
            raise SecurityError(INVOCATION_COUNTER_ERROR, "invocation counter not above last accepted",
                                (e.last + 1) & 0xFFFFFFFF)
        except CounterUnavailable:
            raise _deciphering("peer counter unavailable")
        return before


def load_security(store, board, urandom=None):
    """The meter's SecurityContext from its store (keys.load_keys: provisioned
    keys, the test keys on a simulator, else None: no ciphered association)."""
    keys = load_keys(store, board)
    if keys is None:
        return None
    raw = store.get(POLICY_RECORD)
    policy = raw[0] if raw and len(raw) == 1 and raw[0] in _POLICIES else POLICY_AUTHENTICATED_ENCRYPTED
    peers = {kind: PeerCounter(store, name) for kind, name in _PEER_COUNTER_RECORDS}
    return SecurityContext(keys, keys["system_title"], OwnCounter(store, _OWN_COUNTER_RECORD), peers,
                           policy, urandom, store)


def _system_title(st, ctx):
    # The client's system title is half of every IV the client uses under the
    # meter's keys: it must be 8 octets and must differ from the meter's own, or a
    # client counter equal to a meter counter would repeat an IV under one key.
    if st is None or len(st) != _SYSTEM_TITLE_LEN:
        raise _deciphering("calling-AP-title is not an 8-octet system title")
    st = bytes(st)
    if st == ctx.system_title:
        raise _deciphering("client system title equals the meter's")
    return st


def general_system_title(apdu):
    """The sender's system title carried by a general-glo/ded-ciphering APDU."""
    start, end = _length_prefixed(apdu, 1, "system-title")
    return bytes(apdu[start:end])


def _length_prefixed(buf, pos, what):
    """(start, end) of the content after the A-XDR length at buf[pos]."""
    try:
        n, pos = decode_length(buf, pos)
    except DecodeError:
        raise _deciphering("bad %s length" % what)
    end = pos + n
    if end > len(buf):
        raise _deciphering("%s truncated" % what)
    return pos, end


@micropython.native
def _head_before(buf, start, tag, system_title, n):
    """Write tag [|| len || system title] || len(n) just before buf[start], where n
    octets of content begin; -> where the head begins (WRAP_HEADROOM is its most)."""
    if n < 0x80:  # the short form, as nearly always, written in place
        start -= 1
        buf[start] = n
    else:
        length = encode_length(n)
        start -= len(length)
        buf[start:start + len(length)] = length
    if system_title is not None:
        start -= len(system_title) + 1
        buf[start] = len(system_title)
        buf[start + 1:start + 1 + len(system_title)] = system_title
    start -= 1
    buf[start] = tag
    return start


def _decipher_initiate(aarq, ctx):
    """(plain InitiateRequest bytes, ic, before) of a ciphered AARQ."""
    st = _system_title(aarq.calling_ap_title, ctx)
    ui = aarq.user_information
    if not ui or ui[0] != _GLO_INITIATE_REQUEST:
        # A plain InitiateRequest would bypass the counter check and carry the
        # dedicated key in clear: refused whenever ciphering is required.
        raise _deciphering("AARQ user-information is not a glo-initiate-request")
    start, end = _length_prefixed(ui, 1, "glo-initiate-request")
    if end != len(ui):
        raise _deciphering("junk after glo-initiate-request")
    sc, ic, plain = unprotect(ctx.cipher(KEY_GLOBAL), ctx.ak, st, memoryview(ui)[start:end])
    if sc & ctx.policy != ctx.policy or sc & _SC_BROADCAST:
        raise _deciphering("AARQ protection below the security policy")
    before = ctx.accept_counter(KEY_GLOBAL, ic)
    if not plain or plain[0] != _INITIATE_REQUEST:
        raise _deciphering("glo-initiate-request does not hold an InitiateRequest")
    return plain, ic, before


def decipher_initiate_request(aarq, ctx):
    """Plain InitiateRequest bytes from the AARQ's glo-initiate-request (IV from
    the calling-AP-title, counter checked and consumed under 'ek'). Prefer
    CipherSession.decipher_initiate_request, which also keeps the dedicated key."""
    return _decipher_initiate(aarq, ctx)[0]


# --- one association --------------------------------------------------------

class CipherSession:
    """Ciphering state of one association: the client's system title, the
    dedicated key, the HLS challenges, the counters seen. Sans-IO, no clock."""

    def __init__(self, ctx, client_system_title, dedicated_key=None):
        self.ctx = ctx
        self.client_system_title = _system_title(client_system_title, ctx)
        self._iv = iv_buffer(self.client_system_title)  # the client's IVs
        self.dedicated_key = None
        self._ded = None
        self._ded_last = -1        # dedicated key: fresh per association, own counter
        self._stoc = None
        self._ctos = None
        self._carrier_ek = False   # last unwrap was under 'ek'
        self._ek_before = 0        # 'ek' peer counter before that unwrap
        if dedicated_key is not None:
            self._set_dedicated_key(dedicated_key)

    def _set_dedicated_key(self, key):
        if len(key) != 16:
            raise _deciphering("dedicated key is not 16 octets")
        self.dedicated_key = bytes(key)
        self._ded = AESGCM(self.dedicated_key)

    # -- AARQ / AARE --

    def decipher_initiate_request(self, aarq):
        """Plain InitiateRequest bytes of the AARQ; keeps its dedicated key."""
        plain, ic, before = _decipher_initiate(aarq, self.ctx)
        self._carrier_ek, self._ek_before = True, before
        try:
            key = acse.decode_initiate_request(plain).dedicated_key
        except DecodeError:
            return plain  # the server's own decode refuses it with an InitiateError
        if key is not None:
            self._set_dedicated_key(key)
        return plain

    def cipher_initiate_response(self, plain):
        """The AARE user-information of a ciphered AARQ: glo-initiate-response
        (0x28) for an InitiateResponse, glo-confirmed-service-error (0x2E) for an
        InitiateError."""
        ctx = self.ctx
        sc = ctx.policy or _SC_AUTHENTICATED_ENCRYPTED
        return self._frame(RESPONSES[plain[0]][0], None,
                           protect(sc, ctx.cipher(KEY_GLOBAL), ctx.ak, ctx.system_title,
                                   ctx.own_counter.next(), plain))

    # -- xDLMS APDUs --

    @micropython.native
    def unwrap(self, apdu):
        """A received APDU -> (plain APDU, reply_form for wrap). SecurityError if
        it is not protected as the policy requires, malformed, not authentic, or
        its counter is not above the last one accepted under its key."""
        ctx = self.ctx
        self._carrier_ek = False
        tag = apdu[0] if apdu else -1
        if tag == GENERAL_GLO_CIPHERING or tag == GENERAL_DED_CIPHERING:
            plain_tag, form = None, _FORM_GENERAL
            kind = KEY_GLOBAL if tag == GENERAL_GLO_CIPHERING else KEY_DEDICATED
            # Lengths in the short form, as nearly always, are read in place;
            # _length_prefixed reads (or refuses) the others.
            n = apdu[1] if len(apdu) > 2 else 0x80
            if n < 0x80 and n + 2 < len(apdu):
                start, pos = 2, 2 + n
            else:
                start, pos = _length_prefixed(apdu, 1, "system-title")
            # An empty system-title means "the one of the association".
            st = self.client_system_title
            if pos != start and (pos - start != _SYSTEM_TITLE_LEN or not apdu.startswith(st, start)):
                raise _deciphering("general ciphering from another system title")
        else:
            entry = REQUESTS.get(tag)
            if entry is not None:
                plain_tag, kind = entry[0], entry[1]
                form, pos = _FORM_SERVICE, 1
            elif ctx.policy == POLICY_NONE:
                return apdu, None
            else:
                raise _deciphering("unprotected APDU 0x%02x under a ciphered association" % (tag & 0xFF))
        n = apdu[pos] if pos < len(apdu) else 0x80
        if n < 0x80:
            start, end = pos + 1, pos + 1 + n
        else:
            start, end = _length_prefixed(apdu, pos, "ciphered content")
        if end != len(apdu):
            raise _deciphering("ciphered content truncated" if end > len(apdu) else "junk after ciphered content")
        if end - start < 5:
            raise _deciphering("security header truncated")
        sc = apdu[start]
        if sc & ctx.policy != ctx.policy:
            raise _deciphering("protection below the security policy")
        if sc & _SC_BROADCAST:
            if kind != KEY_GLOBAL:
                raise _deciphering("broadcast bit on a dedicated-key APDU")
            kind = KEY_BROADCAST
        if kind == KEY_DEDICATED:
            if self._ded is None:
                raise _deciphering("no dedicated key in this association")
            g = self._ded
        else:
            g = ctx.cipher(kind)
        sc, ic, plain = unseal(g, ctx.aad, self._iv, apdu, start, end)
        self.last_kind = kind  # which key it came under (the broadcast client needs BK)
        if kind == KEY_DEDICATED:
            if ic <= self._ded_last:
                raise SecurityError(INVOCATION_COUNTER_ERROR, "dedicated-key counter replayed",
                                    (self._ded_last + 1) & 0xFFFFFFFF)
            self._ded_last = ic
        else:
            # A GET changes nothing: its counter may reach flash lazily.
            before = ctx.accept_counter(kind, ic, not plain or plain[0] != _GET_REQUEST)
            if kind == KEY_GLOBAL:
                self._carrier_ek, self._ek_before = True, before
        if not plain or (plain_tag is not None and plain[0] != plain_tag):
            raise _deciphering("ciphered tag does not match its content")
        reply_kind = KEY_DEDICATED if kind == KEY_DEDICATED else KEY_GLOBAL
        return plain, (form, sc & _SC_PROTECTION, reply_kind)

    def wrap(self, plain, reply_form):
        """The response to send: plain protected in the form the request came in
        (general with general, the meter's system title inside; service-specific
        with service-specific), under a fresh own counter. An exception-response
        and anything answering a plain request (reply_form None) go as they are."""
        n = len(plain)
        buf = bytearray(WRAP_HEADROOM + n + TAG_LEN)
        buf[WRAP_HEADROOM:WRAP_HEADROOM + n] = plain
        return bytes(self.wrap_into(buf, WRAP_HEADROOM, WRAP_HEADROOM + n, reply_form))

    @micropython.native
    def wrap_into(self, buf, start, end, reply_form):
        """wrap() in place, for the server's one response buffer: the plain APDU is
        buf[start:end], with WRAP_HEADROOM free bytes before it and TAG_LEN after;
        -> a memoryview of the APDU to send, inside buf."""
        if reply_form is None or start == end or buf[start] == EXCEPTION_RESPONSE:
            return memoryview(buf)[start:end]
        form, sc, kind = reply_form
        ctx = self.ctx
        if form == _FORM_GENERAL:
            tag = GENERAL_DED_CIPHERING if kind == KEY_DEDICATED else GENERAL_GLO_CIPHERING
            st = ctx.system_title
        else:
            tags = RESPONSES.get(buf[start])
            if tags is None:
                raise ProtocolError("no service-specific ciphered form for 0x%02x" % buf[start])
            tag = tags[1] if kind == KEY_DEDICATED else tags[0]
            st = None
        g = self._ded if kind == KEY_DEDICATED else ctx.cipher(KEY_GLOBAL)
        start, end = protect_into(sc, g, ctx.aad, ctx.iv, ctx.own_counter.next(), buf, start, end)
        return memoryview(buf)[_head_before(buf, start, tag, st, end - start):end]

    @staticmethod
    def _frame(tag, system_title, content):
        n = len(content)
        buf = bytearray(WRAP_HEADROOM + n)
        buf[WRAP_HEADROOM:] = content
        return bytes(memoryview(buf)[_head_before(buf, WRAP_HEADROOM, tag, system_title, n):])

    # -- HLS mechanism 5 (GMAC), Green Book 9.2.7.4 --

    def hls_challenge(self, ctos, length=32):
        """Remember the client's challenge CtoS (AARQ calling-authentication-value)
        and return a fresh StoC for the AARE responding-authentication-value.
        SecurityError if CtoS is not 8..64 octets."""
        if ctos is None or not HLS_CHALLENGE_MIN <= len(ctos) <= HLS_CHALLENGE_MAX:
            raise _deciphering("CtoS must be 8..64 octets")
        if not 16 <= length <= HLS_CHALLENGE_MAX:
            raise ValueError("StoC length 16..64")
        self._ctos = bytes(ctos)
        self._stoc = bytes(self.ctx.urandom(length))
        return self._stoc

    def verify_client_reply(self, client_reply):
        """reply_to_HLS_authentication (pass 3 -> 4). client_reply is the client's
        f(StoC) = SC(0x10) || IC || GMAC(SC || AK || StoC) under IV = client
        system title || IC; returns the meter's f(CtoS) = SC || IC' ||
        GMAC(SC || AK || CtoS) under IV = meter system title || IC' (IC' a fresh
        own counter). One attempt per challenge; SecurityError on any failure
        (the server then refuses the association)."""
        ctx = self.ctx
        stoc, self._stoc = self._stoc, None
        if stoc is None:
            raise _deciphering("no HLS challenge pending")
        if client_reply is None or len(client_reply) != _HLS_F_LEN or client_reply[0] != _HLS_SC:
            raise _deciphering("malformed HLS reply")
        f = bytes(client_reply)
        ic = struct.unpack_from(">I", f, 1)[0]
        g = ctx.cipher(KEY_GLOBAL)
        try:
            g.decrypt(self.client_system_title + f[1:5], f[5:], f[:1] + ctx.ak + stoc)
        except ValueError:
            raise _deciphering("HLS GMAC mismatch")
        # The IC of f() may equal the IC of the APDU that carries it (dlms-cosem) or
        # lie just below it (gurux takes the next counter for f, then the next for
        # the APDU): it must be above every 'ek' counter accepted *before* the
        # carrier; above the carrier's own, it is consumed like any counter.
        peer = ctx.peer_counters.get(KEY_GLOBAL)
        if peer is None:
            raise _deciphering("no counter for key ek")
        floor = self._ek_before if self._carrier_ek else peer.value
        if ic <= floor:
            raise SecurityError(INVOCATION_COUNTER_ERROR, "HLS counter not above last accepted",
                                (peer.value + 1) & 0xFFFFFFFF)
        if ic > peer.value:
            ctx.accept_counter(KEY_GLOBAL, ic)
        return hls_f(g, ctx.ak, ctx.system_title, ctx.own_counter.next(), self._ctos)

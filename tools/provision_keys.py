#!/usr/bin/env python3
"""Provision the security keys of a meter: writes the keys record (system title, EK,
AK, BK, KEK) into a state directory in the firmware's own store format, so that a
device board (BOARD["sim"] False), which refuses every ciphered association until
then, accepts the management client.

  Simulator (unix port):   the state directory is --state of tools/run_meter.sh
      tools/provision_keys.py --state build/state --system-title 4D4D4D0000000042 --random
  Device board: write into a fresh local folder, then copy its keys.* files (one
  slot file, keys.a, on a first provisioning) into the state directory the board's
  main.py uses (config["state"]) with mpremote, and restart the board:
      tools/provision_keys.py --state /tmp/meter42 --system-title 4D4D4D0000000042 --random
      mpremote connect PORT fs mkdir :state
      mpremote connect PORT fs cp /tmp/meter42/keys.a :state/keys.a

Keys are 32 hex digits each; --random draws every key not given from the OS's CSPRNG
and prints them ONCE (store them in the head-end; the meter never shows them).
--test-keys writes the public Green Book test set (boards/UNIX/test_keys.json): for a
simulator only. Replacing existing keys resets the stored invocation counters of
exactly the replaced encryption keys (a counter under a new key starts again; under
an unchanged key it must not). Refuses to overwrite keys without --force.
Run the tool while the meter is stopped."""
import argparse
import json
import os
import secrets
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "firmware"))
# The firmware modules run under CPython with two stand-ins: micropython.const, and a
# cryptolib that key provisioning never calls (keys.py only needs it for key transfer).
sys.modules.setdefault("micropython", types.SimpleNamespace(const=lambda x: x))
sys.modules.setdefault("cryptolib", types.SimpleNamespace())
from adapters.store import Store  # noqa: E402
from dlms import keys as keyset  # noqa: E402

TEST_KEYS_FILE = os.path.join(ROOT, "boards", "UNIX", "test_keys.json")
# Counter records per key (dlms/security.py): reset when that key is replaced.
COUNTER_RECORDS = {"ek": ("ic_own_ek", "ic_peer_ek"), "bk": ("ic_peer_bk",)}


def _hex(n):
    def parse(text):
        b = bytes.fromhex(text)
        if len(b) != n:
            raise argparse.ArgumentTypeError("%d hex digits expected" % (2 * n))
        return b
    return parse


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state", required=True, help="state directory (created if missing)")
    p.add_argument("--system-title", type=_hex(8), help="the meter's system title, 16 hex digits")
    for name in ("ek", "ak", "bk", "kek"):
        p.add_argument("--" + name, type=_hex(16), help="%s key, 32 hex digits" % name.upper())
    p.add_argument("--random", action="store_true", help="draw every key not given at random")
    p.add_argument("--test-keys", action="store_true", help="the public test set (simulator only)")
    p.add_argument("--force", action="store_true", help="replace keys already provisioned")
    return p.parse_args(argv)


def key_set(args):
    if args.test_keys:
        with open(TEST_KEYS_FILE) as f:
            doc = json.load(f)
        return {n: bytes.fromhex(doc[n]) for n in ("system_title", "ek", "ak", "bk", "kek")}
    if args.system_title is None:
        raise SystemExit("--system-title is required (or --test-keys)")
    new = {"system_title": args.system_title}
    for name in ("ek", "ak", "bk", "kek"):
        value = getattr(args, name)
        if value is None:
            if not args.random:
                raise SystemExit("--%s missing (or --random)" % name)
            value = secrets.token_bytes(16)
            print("%-4s %s" % (name.upper(), value.hex().upper()))
        new[name] = value
    return new


def provision(state, new, force=False):
    store = Store(state, fsync=False)
    old = None
    if store.exists(keyset.KEYS_RECORD):
        if not force:
            raise SystemExit("%s already holds keys: --force to replace them" % state)
        try:
            old = keyset.decode_keys(store.get(keyset.KEYS_RECORD))
        except ValueError:
            old = None
    keyset.save_keys(store, new)
    for name in keyset.replaced(old or {}, new):
        for record in COUNTER_RECORDS.get(name, ()):
            for suffix in (".a", ".b"):
                path = store.path(record + suffix)
                if os.path.exists(path):
                    os.remove(path)
    return store


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    new = key_set(args)
    provision(args.state, new, args.force)
    print("keys written to %s (system title %s)%s" % (
        args.state, new["system_title"].hex().upper(), "  -- TEST KEYS" if keyset.is_test_keys(new) else ""))


if __name__ == "__main__":
    main()

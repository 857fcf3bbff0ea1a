#!/usr/bin/env python3
"""Copy the firmware to a board running stock MicroPython (ESP32, RP2040), with
mpremote: the pure-Python modules (the AES-GCM twin stands in for the C module, which
needs a custom firmware build), the board's board.py, and the legal signature.

    build/venv/bin/python tools/deploy.py --board ESP32 --port /dev/ttyUSB0
    build/venv/bin/python tools/deploy.py --board ESP32 --dry-run    # print the commands

NOT TESTED ON HARDWARE: no board is attached where this project is built; --dry-run
is what runs here. Keys are provisioned separately (tools/provision_keys.py --help).
"""
import argparse
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("dlms", "cosem", "metering", "adapters")


def commands(board, port, mpremote):
    base = [mpremote, "connect", port]
    yield base + ["fs", "mkdir", ":lib"]
    for pkg in PACKAGES:
        yield base + ["fs", "mkdir", ":lib/" + pkg]
        for src in sorted((ROOT / "firmware" / pkg).glob("*.py")):
            yield base + ["fs", "cp", str(src), ":lib/%s/%s" % (pkg, src.name)]
    yield base + ["fs", "cp", str(ROOT / "boards" / board / "board.py"), ":board.py"]
    yield base + ["fs", "cp", str(ROOT / "build" / "legal" / "legal.py"), ":lib/legal.py"]
    yield base + ["fs", "cp", str(ROOT / "firmware" / "main.py"), ":main.py"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", required=True, help="a folder of boards/ (ESP32)")
    ap.add_argument("--port", default="auto")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    if not (ROOT / "boards" / args.board / "board.py").exists():
        sys.exit("no boards/%s/board.py" % args.board)
    subprocess.run([sys.executable, str(ROOT / "tools" / "legal_signature.py"), "--module",
                    str(ROOT / "build" / "legal" / "legal.py")], check=True, stdout=subprocess.DEVNULL)
    mpremote = str(pathlib.Path(sys.executable).parent / "mpremote")
    for cmd in commands(args.board, args.port, mpremote):
        print(" ".join(cmd))
        if not args.dry_run:
            subprocess.run(cmd, check=cmd[3:5] != ["fs", "mkdir"])  # mkdir of an existing folder fails


if __name__ == "__main__":
    main()

#!/bin/sh
# Creates build/venv with the pinned host packages; does nothing when they are already in.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/build/venv
REQ=$ROOT/tools/requirements-host.txt
STAMP=$VENV/.requirements
if [ -f "$STAMP" ] && cmp -s "$REQ" "$STAMP"; then exit 0; fi
python3 -m venv "$VENV" 2>/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
}
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
cp "$REQ" "$STAMP"
echo "venv: $VENV ready"

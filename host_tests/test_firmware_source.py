"""Checks on the firmware's source that its own tests cannot make: MicroPython drops
private constants (`_NAME = const(...)`) from a module's globals, so only the source
shows them."""
import pathlib
import re

FIRMWARE = pathlib.Path(__file__).resolve().parent.parent / "firmware"
CONST = re.compile(r"^(_?)([A-Z][A-Z0-9_]*) = const\((\w+)\)", re.M)


def _consts(path):
    return [(m.group(1), m.group(2), int(m.group(3), 0)) for m in CONST.finditer(path.read_text())]


def _axdr_tags():
    return {name: value for private, name, value in _consts(FIRMWARE / "dlms" / "axdr.py") if not private}


def test_private_copies_of_the_axdr_tags_equal_the_originals():
    tags = _axdr_tags()
    copies = 0
    for path in sorted((FIRMWARE / "cosem").glob("*.py")):
        for private, name, value in _consts(path):
            if private and name in tags:
                assert value == tags[name], "%s: _%s = %d, dlms/axdr.py says %d" % (path.name, name, value, tags[name])
                copies += 1
    assert copies >= 20  # the COSEM tables do use them


def test_cosem_modules_take_no_axdr_tag_by_import():
    # An imported tag in an ATTRIBUTES table would build the table in RAM again.
    tags = set(_axdr_tags())
    for path in sorted((FIRMWARE / "cosem").glob("*.py")):
        m = re.search(r"^from dlms\.axdr import \(?([^)]*?)\)?$", path.read_text(), re.M | re.S)
        imported = set(re.findall(r"\w+", m.group(1))) if m else set()
        assert not imported & tags, "%s imports %s" % (path.name, sorted(imported & tags))

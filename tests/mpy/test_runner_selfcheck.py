# Proves the runner reports failures: this module's tests run a tiny failing module in
# a subprocess-free way by calling the helpers directly.
from testutil import raises, unhex


def test_raises_detects_missing_exception():
    e = raises(AssertionError, raises, ValueError, lambda: None)
    if "ValueError" not in str(e):
        raise AssertionError("message should name the exception")


def test_unhex():
    if unhex("7E a0 07") != b"\x7e\xa0\x07":
        raise AssertionError("unhex")

# Test runner for the MicroPython side. Usage (from the repository root):
#   micropython tests/mpy/runner.py test_module [test_name ...]
#   micropython tests/mpy/runner.py --list test_module
# Prints one line per test: "PASS name" or "FAIL name" followed by the traceback,
# then a summary line "N passed, N failed". host_tests/test_mpy.py parses these lines
# so that pytest reports every function as its own test.
import sys
import io

sys.path.insert(0, "tests/mpy")
sys.path.insert(0, "firmware")


def _tests(module):
    return sorted(n for n in dir(module) if n.startswith("test_") and callable(getattr(module, n)))


def _run(module, name):
    buf = io.StringIO()
    try:
        getattr(module, name)()
    except Exception as e:
        sys.print_exception(e, buf)
        return buf.getvalue()
    return None


def main(argv):
    if argv and argv[0] == "--list":
        print("\n".join(_tests(__import__(argv[1]))))
        return 0
    module = __import__(argv[0])
    names = argv[1:] or _tests(module)
    failed = 0
    for name in names:
        trace = _run(module, name)
        if trace is None:
            print("PASS", name)
        else:
            failed += 1
            print("FAIL", name)
            print(trace)
    print("%d passed, %d failed" % (len(names) - failed, failed))
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))

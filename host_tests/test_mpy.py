"""Runs the tests that live inside MicroPython (tests/mpy/test_*.py) and reports every
test function as its own pytest item, so a failure names the function.

Each module runs twice in the unix port (with a microcontroller-sized heap when
MPY_HEAP is set): once with the AES-GCM C module and once forced onto its pure-Python
twin (DLMS_GCM=python), so that everything above GCM is proven on both. Its PASS/FAIL
lines are cached for the items."""
import ast
import os
import subprocess

import pytest

from conftest import MICROPYTHON, ROOT, VECTORS

MPY_TESTS = sorted((ROOT / "tests" / "mpy").glob("test_*.py"))
_results = {}


def _functions(path):
    tree = ast.parse(path.read_text())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


def _run_module(module, gcm):
    if (module, gcm) not in _results:
        cmd = [str(MICROPYTHON)]
        if os.environ.get("MPY_HEAP"):
            cmd += ["-X", "heapsize=" + os.environ["MPY_HEAP"]]
        cmd += ["tests/mpy/runner.py", module]
        env = dict(os.environ, DLMS_VECTORS=str(VECTORS), DLMS_GCM=gcm)
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        results, current = {}, None
        for line in proc.stdout.splitlines():
            if line.startswith(("PASS ", "FAIL ")):
                current = line[5:].strip()
                results[current] = [line[:4], []]
            elif current is not None:
                results[current][1].append(line)
        _results[(module, gcm)] = (results, proc)
    return _results[(module, gcm)]


CASES = [(p.stem, f, gcm) for gcm in ("c", "python") for p in MPY_TESTS for f in _functions(p)]


@pytest.mark.parametrize("module,function,gcm", CASES, ids=["gcm-%s::%s::%s" % (c[2], c[0], c[1]) for c in CASES])
def test_in_micropython(module, function, gcm):
    results, proc = _run_module(module, gcm)
    if function not in results:
        pytest.fail("%s did not report %s (exit %d)\n%s\n%s" % (module, function, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    status, trace = results[function]
    if status != "PASS":
        pytest.fail("\n".join(trace))

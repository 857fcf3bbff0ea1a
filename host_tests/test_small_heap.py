"""The meter on a microcontroller-sized heap over a long session: every attribute each
client's object list shows as readable is read by that client, the public client over
HDLC, the LLS reader and the HLS-GMAC management client over the wrapper, the whole
sweep twice over. The object lists, profiles and event logs come in GET blocks
(ciphered for the management client), which is where a fragmented heap used to run
out of room for a 1 KB block; the meter must answer every read, every time."""
import pytest
from gurux_dlms.enums import AccessMode

from meter import Meter, MeterError
from clients import LLS, LLS_PASSWORD, GuruxClient, obis_dotted
from secure_clients import SecureGuruxClient

PROFILE = 7  # Profile generic: capture_objects (3) before buffer (2), as a client does
READABLE = (AccessMode.READ, AccessMode.READ_WRITE, AccessMode.AUTHENTICATED_READ,
            AccessMode.AUTHENTICATED_READ_WRITE)


def sweep(client):
    """-> (reads done, failures as (LN, attribute, error))."""
    reads, failures = 0, []
    for obj in client.get_object_list():
        attrs = list(range(1, obj.getAttributeCount() + 1))
        if obj.objectType == PROFILE:
            attrs.sort(key=lambda a: a != 3)
        for attr in attrs:
            if obj.getAccess(attr) not in READABLE:
                continue
            try:
                client.read_object(obj, attr)
                reads += 1
            except Exception as e:  # collected: the report names every failed read
                failures.append((obj.logicalName, attr, repr(e)[:120]))
    return reads, failures


def test_every_readable_attribute_by_every_client_twice(meter_small):
    m = meter_small
    for _ in range(2):
        with GuruxClient.tcp(m.hdlc_port) as c:
            c.associate()
            public = sweep(c)
        with GuruxClient.tcp(m.wrapper_port, "wrapper", client=LLS, password=LLS_PASSWORD) as c:
            c.associate()
            reader = sweep(c)
        with SecureGuruxClient.tcp(m.wrapper_port, "wrapper") as c:
            c.associate()
            management = sweep(c)
        for name, (reads, failures) in (("public", public), ("reader", reader), ("management", management)):
            assert reads > 30 and not failures, (name, reads, failures)
    log = m.stdout() + m.stderr()
    assert "out of memory" not in log and "MemoryError" not in log, m.output()


def test_a_heap_too_small_to_start_is_refused_plainly(tmp_path):
    # The firmware's imports fit (about 40 KiB) but not the meter it builds: it says so
    # and exits, rather than failing with a traceback half-way through start-up.
    m = Meter(tmp_path / "state", heap="56k")
    with pytest.raises(MeterError, match="too small for this firmware to start"):
        m.start()
    assert not m.running()


@pytest.mark.parametrize("heap, core", (("64k", True), ("76k", False)))
def test_a_heap_below_the_whole_meter_starts_a_core_meter_that_says_so(tmp_path, heap, core):
    # The simulator's board says "auto": below 70 KiB it leaves out the profiles and the
    # logs but the security log, and takes a 256-octet PDU; it tells both ways.
    m = Meter(tmp_path / "state", heap=heap)
    m.start()
    try:
        assert ("core meter" in m.stdout()) == core
        with GuruxClient.tcp(m.hdlc_port) as c:
            listed = {obj.logicalName for obj in c.get_object_list()}
        with SecureGuruxClient.tcp(m.wrapper_port, "wrapper") as c:
            listed |= {obj.logicalName for obj in c.get_object_list()}
        for name in ("1-0:1.8.0.255", "0-0:1.0.0.255", "0-0:99.98.1.255", "0-0:43.0.0.255"):
            assert obis_dotted(name) in listed, name
        for name in ("1-0:99.1.0.255", "1-0:99.2.0.255", "0-0:99.98.0.255", "0-0:99.97.0.255", "0-0:99.98.4.255"):
            assert (obis_dotted(name) in listed) != core, name
    finally:
        m.stop()

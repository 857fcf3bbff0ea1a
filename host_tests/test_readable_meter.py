"""Black-box: the running meter read by two independent client stacks, gurux-dlms and
dlms-cosem, over HDLC-over-TCP and the IEC 62056-47 wrapper (and a pty for the optical
path). The `meter` fixture runs every test twice: default heap and a 64 KB heap."""
import datetime

import pytest
from gurux_dlms import GXDLMSException

from clients import LLS, LLS_PASSWORD, CosemClient, GuruxClient, SerialLink, TcpLink

INTERFACES = ("hdlc", "wrapper")
LDN = "0-0:42.0.0.255"
CLOCK = "0-0:1.0.0.255"
ENERGY_IMPORT, ENERGY_EXPORT = "1-0:1.8.0.255", "1-0:2.8.0.255"
FIRMWARE_ID = "1-0:0.2.0.255"
UNIT_WH = 30
# Data-access-result (Blue Book): what a refusal must say.
READ_WRITE_DENIED, OBJECT_UNDEFINED, OBJECT_UNAVAILABLE, TYPE_UNMATCHED = 3, 4, 11, 12


def port_of(meter, interface):
    return meter.hdlc_port if interface == "hdlc" else meter.wrapper_port


def cosem_datetime(b):
    """COSEM date-time octets -> naive UTC datetime (deviation = minutes local is ahead... of UTC,
    Blue Book 4.1.6.1: local = UTC + deviation, 0x8000 = not specified)."""
    year = int.from_bytes(b[0:2], "big")
    dev = int.from_bytes(b[9:11], "big", signed=True)
    local = datetime.datetime(year, b[2], b[3], b[5], b[6], b[7])
    return local if dev == -0x8000 else local - datetime.timedelta(minutes=dev)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


@pytest.mark.parametrize("interface", INTERFACES)
def test_gurux_public_client_reads_the_core_objects(meter, interface):
    with GuruxClient.tcp(port_of(meter, interface), interface) as c:
        ldn, _ = c.read(LDN, 1, 2)
        assert len(ldn) == 16 and bytes(ldn[:3]).isalpha(), ldn  # FLAG id first
        names = {o.logicalName for o in c.get_object_list()}
        assert {"0.0.42.0.0.255", "0.0.1.0.0.255", "0.0.40.0.0.255", "1.0.1.8.0.255", "1.0.2.8.0.255"} <= names
        for obis in (ENERGY_IMPORT, ENERGY_EXPORT):
            scaler_unit, _ = c.read(obis, 3, 3)
            assert list(scaler_unit) == [-3, UNIT_WH]
            value, _ = c.read(obis, 3, 2)
            assert isinstance(value, int) and value >= 0
        _, clock = c.read(CLOCK, 8, 2)
        meter_time = clock.time.value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        assert abs((meter_time - utcnow()).total_seconds()) < 120


@pytest.mark.parametrize("interface", INTERFACES)
def test_dlms_cosem_public_client_reads_the_core_objects(meter, interface):
    with CosemClient(port_of(meter, interface), interface) as c:
        ldn = c.get(LDN, 1, 2)
        assert len(ldn) == 16
        assert c.get(ENERGY_IMPORT, 3, 3) == [-3, UNIT_WH]
        assert c.get(ENERGY_EXPORT, 3, 3) == [-3, UNIT_WH]
        assert isinstance(c.get(ENERGY_IMPORT, 3, 2), int)
        raw = c.get_raw(CLOCK, 8, 2)
        assert raw[0] == 0x09 and raw[1] == 12  # date-time as a 12-octet octet-string
        assert abs((cosem_datetime(raw[2:]) - utcnow()).total_seconds()) < 120
        object_list = c.get(ENERGY_IMPORT.replace("1-0:1.8.0", "0-0:40.0.0"), 15, 2)
        assert len(object_list) >= 8


@pytest.mark.parametrize("interface", INTERFACES)
def test_get_with_list_both_clients(meter, interface):
    items = [(LDN, 1, 2), (ENERGY_IMPORT, 3, 3), (ENERGY_EXPORT, 3, 3)]
    with GuruxClient.tcp(port_of(meter, interface), interface) as c:
        values, _ = c.read_list(items)
        assert len(values) == 3 and list(values[1]) == [-3, UNIT_WH]
    with CosemClient(port_of(meter, interface), interface) as c:
        response = c.get_many(items)
        assert len(response.response_data) == 3


def test_block_transfer_and_hdlc_segmentation_at_max_info_128(meter):
    """The object list, asked for with a 256-octet client PDU over 128-octet HDLC info
    fields, comes back in GET data blocks, each in segmented frames."""
    with GuruxClient.tcp(meter.hdlc_port, "hdlc", max_info=128, max_pdu=256) as c:
        objects = c.get_object_list()
        assert len(objects) >= 8
        received = b"".join(c.link.received)
    assert b"\x7e\xa8" in received, "no segmented frame (format type 3 with S bit) seen"
    assert b"\xe6\xe7\x00\xc4\x02" in received, "no GET-response-with-datablock seen"
    assert max(len(f) for f in received.split(b"\x7e") if f) <= 128 + 12


@pytest.mark.parametrize("interface", INTERFACES)
def test_set_refused_for_the_public_client(meter, interface):
    with GuruxClient.tcp(port_of(meter, interface), interface) as c:
        _, clock = c.read(CLOCK, 8, 3)
        with pytest.raises(GXDLMSException) as e:
            c.write_object(clock, 3)
        assert e.value.errorCode == READ_WRITE_DENIED
        assert c.read(LDN, 1, 2)[0]  # association still usable
    with CosemClient(port_of(meter, interface), interface) as c:
        response = c.set(CLOCK, 8, 3, b"\x10\x00\x3c")  # long 60
        assert int(response.result) == READ_WRITE_DENIED


@pytest.mark.parametrize("interface", INTERFACES)
def test_lls_client_with_the_right_and_the_wrong_password(meter, interface):
    with GuruxClient.tcp(port_of(meter, interface), interface, client=LLS, password=LLS_PASSWORD) as c:
        assert c.read(FIRMWARE_ID, 1, 2)[0]
    with CosemClient(port_of(meter, interface), interface, client=LLS, password=LLS_PASSWORD) as c:
        assert c.get(FIRMWARE_ID, 1, 2)
    c = GuruxClient.tcp(port_of(meter, interface), interface, client=LLS, password=b"wrong-pw")
    try:
        with pytest.raises(GXDLMSException) as e:
            c.connect()
        assert e.value.diagnostic == 13  # authentication-failure
    finally:
        c.close()
    with GuruxClient.tcp(port_of(meter, interface), interface) as c:  # the meter goes on serving
        assert c.read(LDN, 1, 2)[0]


@pytest.mark.parametrize("interface", INTERFACES)
def test_undefined_object_and_attribute(meter, interface):
    with GuruxClient.tcp(port_of(meter, interface), interface) as c:
        with pytest.raises(GXDLMSException) as e:
            c.read("0-0:99.99.99.255", 1, 2)
        assert e.value.errorCode == OBJECT_UNDEFINED
        with pytest.raises(GXDLMSException) as e:
            c.read(ENERGY_IMPORT, 3, 9)
        assert e.value.errorCode in (READ_WRITE_DENIED, OBJECT_UNAVAILABLE)
        assert c.read(ENERGY_IMPORT, 3, 3)[0]


def test_set_with_the_wrong_type(meter):
    with CosemClient(meter.wrapper_port, "wrapper", client=LLS, password=LLS_PASSWORD) as c:
        response = c.set(CLOCK, 8, 3, b"\x0a\x02ab")  # time_zone as a visible-string
        assert int(response.result) == TYPE_UNMATCHED
        response = c.set(CLOCK, 8, 3, b"\x10\x00\x3c")  # long 60: accepted
        assert int(response.result) == 0
        assert c.get(CLOCK, 8, 3) == 60
        c.set(CLOCK, 8, 3, b"\x10\x00\x00")


def test_release_then_disconnect(meter):
    c = GuruxClient.tcp(meter.hdlc_port, "hdlc").connect()
    try:
        reply = c.release()
        assert reply is not None
        reply = c.disconnect()  # DISC -> UA
        assert c.link.received[-1][:1] == b"\x7e"
        # After DISC the link is down: an I-frame gets DM (or nothing), not an answer.
        c.link.send(c.request_frames_for_read(LDN, 1, 2))
        late = c.link.recv_quiet(0.5)
        assert b"\xe6\xe7\x00" not in late
    finally:
        c.close()


def test_gurux_reads_the_meter_through_a_serial_device(meter, serial_port):
    c = GuruxClient(SerialLink(serial_port), "hdlc")
    try:
        c.connect()
        assert len(c.read(LDN, 1, 2)[0]) == 16
        assert list(c.read(ENERGY_IMPORT, 3, 3)[0]) == [-3, UNIT_WH]
        c.release()
        c.disconnect()
    finally:
        c.close()


def test_several_clients_at_once(meter):
    first = GuruxClient.tcp(meter.hdlc_port, "hdlc").connect()
    try:
        with CosemClient(meter.wrapper_port, "wrapper") as second:
            assert second.get(LDN, 1, 2) == bytes(first.read(LDN, 1, 2)[0])
    finally:
        first.release()
        first.disconnect()
        first.close()


def test_tcp_link_helper_sees_a_closed_connection(meter):
    link = TcpLink("127.0.0.1", meter.wrapper_port)
    try:
        link.send(b"\x00\x07" + bytes(20))  # wrong wrapper version: framing lost
        assert link.closed_by_peer(2.0)
    finally:
        link.close()


def test_legal_metrology_identification_readable_by_the_public_client(meter):
    """1-0:0.2.0.255 names the firmware; 1-0:0.2.8.255 is the SHA-256 of the legally
    relevant sources, as tools/legal_signature.py computes it from this tree."""
    import sys

    sys.path.insert(0, str(__import__("conftest").ROOT / "tools"))
    from legal_signature import signature

    with CosemClient(meter.wrapper_port, "wrapper") as c:
        assert c.get(FIRMWARE_ID, 1, 2)
        assert c.get("1-0:0.2.8.255", 1, 2) == signature()


def test_hdlc_setup_reflects_the_link(meter):
    """IEC HDLC setup 0-0:22.0.0.255 (reader client): the defaults the link runs with."""
    with CosemClient(meter.wrapper_port, "wrapper", client=LLS, password=LLS_PASSWORD) as c:
        assert c.get("0-0:22.0.0.255", 23, 5) == 128  # max info field length transmit
        assert c.get("0-0:22.0.0.255", 23, 6) == 128  # receive
        assert c.get("0-0:22.0.0.255", 23, 3) == 1    # window size transmit
        assert c.get("0-0:22.0.0.255", 23, 9) == 16   # device (physical) address


def test_physical_address_option(tmp_path):
    from meter import Meter

    m = Meter(tmp_path / "state", extra_args=["--physical-address", "17"])
    m.start()
    try:
        with GuruxClient.tcp(m.hdlc_port, "hdlc", server_physical=17) as c:
            assert len(c.read(LDN, 1, 2)[0]) == 16
        with CosemClient(m.wrapper_port, "wrapper", client=LLS, password=LLS_PASSWORD) as c:
            assert c.get("0-0:22.0.0.255", 23, 9) == 17
        with pytest.raises(Exception):  # the default address is not this meter's any more
            GuruxClient(TcpLink("127.0.0.1", m.hdlc_port, timeout=1.0), "hdlc").connect()
    finally:
        m.stop()

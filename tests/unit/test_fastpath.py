"""The pieces the bring-up fast path relies on, checked without root: the pause program, the veth request, and
reading an echoed link message."""
from __future__ import annotations

import struct

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from emulator.images import pause
from emulator.netlink import msgs
from emulator.netlink.templates import _encoded


def test_pause_program_is_a_minimal_static_elf() -> None:
    elf = pause.elf_x86_64()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1  # 64-bit, little endian
    e_type, e_machine, _v, entry, phoff = struct.unpack_from("<HHIQQ", elf, 16)
    assert (e_type, e_machine, phoff) == (2, 0x3E, 64)  # executable, x86-64, program headers right after
    p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _al = struct.unpack_from("<IIQQQQQQ", elf, 64)
    assert (p_type, p_flags, p_offset) == (1, 5, 0) and p_filesz == p_memsz == len(elf)  # one R+X PT_LOAD
    code = elf[entry - p_vaddr:]
    assert code == bytes.fromhex("b8220000000f05ebf7")  # mov eax, 34 (pause); syscall; jmp back to the mov
    assert len(elf) == 129


def test_veth_request_asks_for_one_queue_each_way_on_both_ends() -> None:
    req = msgs.link_add_veth("vethabc", "eth0", 7, 1450, master=3, peer_mac="0a:58:0a:f4:01:02")
    m = ifinfmsg(_encoded(req))
    m.decode()
    assert m.get_attr("IFLA_NUM_TX_QUEUES") == 1 and m.get_attr("IFLA_NUM_RX_QUEUES") == 1
    peer = m.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_NUM_TX_QUEUES") == 1 and peer.get_attr("IFLA_NUM_RX_QUEUES") == 1
    assert peer.get_attr("IFLA_ADDRESS") == "0a:58:0a:f4:01:02" and peer.get_attr("IFLA_NET_NS_FD") == 7


def test_bridge_port_request_turns_multicast_flooding_off_only_when_asked() -> None:
    def slave_data(req) -> dict:
        m = ifinfmsg(_encoded(req))
        m.decode()
        data = m.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_SLAVE_DATA")
        return {name: value for name, value in data["attrs"]}
    assert slave_data(msgs.link_set_bridge_port_by_name("v", True, mcast_flood=False)) == {
        "IFLA_BRPORT_MODE": 1, "IFLA_BRPORT_MCAST_FLOOD": 0}
    assert slave_data(msgs.link_set_bridge_port_by_name("v", True)) == {"IFLA_BRPORT_MODE": 1}


def test_link_attr_u32_reads_an_attribute_of_a_raw_link_message() -> None:
    m = ifinfmsg()
    m["index"] = 9
    m["attrs"] = [("IFLA_IFNAME", "vethabc"), ("IFLA_MTU", 1450), ("IFLA_LINK", 2)]
    m["header"]["type"] = 16
    m.encode()
    raw = bytes(m.data)
    assert msgs.link_attr_u32(raw, 5) == 2  # IFLA_LINK: the peer's index
    assert msgs.link_attr_u32(raw, 4) == 1450  # IFLA_MTU
    assert msgs.link_attr_u32(raw, 13) is None  # absent
    assert msgs.link_attr_u32(raw[:20], 5) is None  # truncated

"""CPUID leaves: the text form, the device form, and what the hypervisor leaves say.

Leaves are a plain mapping ``(leaf, subleaf) -> (eax, ebx, ecx, edx)``; a leaf that
is not in the mapping reads as zeros, as SPEC says for the text form.  Decoding is
pure: :func:`collect` asks a query function for exactly the leaves the decoder
needs, so the same code serves ``/dev/cpu/N/cpuid``, a text file and tests.
"""

from __future__ import annotations

import re
import struct

from irqagent.records import frozen
from irqagent.textform import number_rows

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Literal, Mapping, Tuple

    Regs = Tuple[int, int, int, int]
    Leaves = Mapping[Tuple[int, int], Regs]

    # The hypervisor interface a CPUID signature names; "none": no hypervisor, "unknown": unrecognised
    Vendor = Literal[
        "kvm",
        "xen",
        "hyperv",
        "vmware",
        "tcg",
        "bhyve",
        "acrn",
        "virtualbox",
        "parallels",
        "jailhouse",
        "none",
        "unknown",
    ]

ZERO: Regs = (0, 0, 0, 0)

HYPERVISOR_FIRST = 0x40000000
HYPERVISOR_LAST = 0x4000FF00
HYPERVISOR_STEP = 0x100

HYPERV_VS_INTERFACE = 0x40000081
HYPERV_VS_PROPERTIES = 0x40000082
HYPERV_VS_SIGNATURE = 0x31235356  # "VS#1"
HYPERV_VS_EXTENDED_IOAPIC_RTE = 1 << 2
KVM_FEATURE_MSI_EXT_DEST_ID = 1 << 15
XEN_HVM_CPUID_EXT_DEST_ID = 1 << 5
BHYVE_FEAT_EXT_DEST_ID = 1 << 0  # arch/x86/kernel/cpu/bhyve.c: CPUID_BHYVE_FEATURES (base + 1) EAX

SIGNATURES: Dict[bytes, Vendor] = {
    b"KVMKVMKVM\0\0\0": "kvm",
    b"XenVMMXenVMM": "xen",
    b"Microsoft Hv": "hyperv",
    b"VMwareVMware": "vmware",
    b"TCGTCGTCGTCG": "tcg",
    b"bhyve bhyve ": "bhyve",
    b"ACRNACRNACRN": "acrn",
    b"VBoxVBoxVBox": "virtualbox",
    b" lrpepyh  vr": "parallels",
    b"Jailhouse\0\0\0": "jailhouse",
}
# When several interfaces are offered (KVM or Xen also answer Hyper-V's leaves
# at 0x40000000 for Windows guests), the native one says who the host is.
VENDOR_PRIORITY: Tuple[Vendor, ...] = ("kvm", "xen", "bhyve", "hyperv")

_NUMBER = r"(0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20})"  # bounded: no 4,300-digit int(); > 32 bits is refused below
_TEXT_LINE = re.compile(r"^\s*" + _NUMBER + (r"\s+" + _NUMBER) * 5 + r"\s*$")


class CpuidFormatError(ValueError):
    """A text-form CPUID file that cannot be parsed."""


def decode_bytes(data: bytes) -> Regs:
    """The 16 bytes the cpuid driver returns: EAX, EBX, ECX, EDX, little-endian."""
    if len(data) != 16:
        raise CpuidFormatError(f"a cpuid read must return 16 bytes, got {len(data)}")
    return struct.unpack("<4I", data)


def device_offset(leaf: int, subleaf: int = 0) -> int:
    """The pread offset of a leaf in ``/dev/cpu/N/cpuid``."""
    return (subleaf << 32) | leaf


def parse_text(text: str) -> Dict[Tuple[int, int], Regs]:
    """Parse ``LEAF SUBLEAF EAX EBX ECX EDX`` lines (``#`` comments allowed)."""
    leaves: Dict[Tuple[int, int], Regs] = {}
    expected = "six numbers LEAF SUBLEAF EAX EBX ECX EDX"
    for number, values in number_rows(text, _TEXT_LINE, expected, CpuidFormatError):
        if any(v > 0xFFFFFFFF for v in values):
            raise CpuidFormatError(f"line {number}: a value does not fit in 32 bits")
        leaves[(values[0], values[1])] = (values[2], values[3], values[4], values[5])
    return leaves


def format_text(leaves: Leaves, header: str = "") -> str:
    """The text form of ``leaves`` (zero leaves are left out: they read as zeros)."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines.append("# LEAF SUBLEAF EAX EBX ECX EDX")
    for (leaf, subleaf), regs in sorted(leaves.items()):
        if regs != ZERO:
            lines.append(" ".join([f"{leaf:#x}", f"{subleaf:#x}"] + [f"{r:#010x}" for r in regs]))
    return "\n".join(lines) + "\n"


def signature(regs: Regs) -> bytes:
    """The 12-byte vendor signature held in EBX, ECX, EDX."""
    return struct.pack("<3I", regs[1], regs[2], regs[3])


def vendor_of(sig: bytes) -> Vendor:
    return SIGNATURES.get(sig, "unknown")


def collect(query: Callable[[int, int], Regs]) -> Dict[Tuple[int, int], Regs]:
    """Ask ``query`` for every leaf :func:`decode` needs, and return them."""
    leaves: Dict[Tuple[int, int], Regs] = {}

    def read(leaf: int) -> Regs:
        regs = leaves[(leaf, 0)] = query(leaf, 0)
        return regs

    read(0x1)
    for base in range(HYPERVISOR_FIRST, HYPERVISOR_LAST + 1, HYPERVISOR_STEP):
        regs = read(base)
        if regs[1:] == (0, 0, 0):
            continue
        for offset in range(1, 6):
            read(base + offset)
        if vendor_of(signature(regs)) == "hyperv":
            read(HYPERV_VS_INTERFACE)
            read(HYPERV_VS_PROPERTIES)
    return leaves


@frozen
class CpuidHypervisor:
    """What the CPUID leaves say about the host."""

    vendor: Vendor
    ext_dest_id: bool  # the host advertises the extended destination ID
    detail: str


def decode(leaves: Leaves) -> CpuidHypervisor:
    """Find the hypervisor interfaces and whether the extended destination ID is offered."""

    def get(leaf: int) -> Regs:
        return leaves.get((leaf, 0), ZERO)

    found: Dict[Vendor, int] = {}
    unknown = []
    for base in range(HYPERVISOR_FIRST, HYPERVISOR_LAST + 1, HYPERVISOR_STEP):
        regs = get(base)
        if regs[1:] == (0, 0, 0):
            continue
        sig = signature(regs)
        vendor = vendor_of(sig)
        if vendor == "unknown":
            unknown.append(sig.rstrip(b"\0").decode("ascii", "replace"))
        found.setdefault(vendor, base)
    hypervisor_bit = bool(get(0x1)[2] & (1 << 31))
    if not found:
        if hypervisor_bit:
            return CpuidHypervisor("unknown", False, "CPUID has the hypervisor bit but no known signature")
        return CpuidHypervisor("none", False, "CPUID reports no hypervisor")
    vendor = next((v for v in VENDOR_PRIORITY if v in found), next(iter(found)))
    base = found[vendor]
    if vendor == "kvm":
        offered = bool(get(base + 1)[0] & KVM_FEATURE_MSI_EXT_DEST_ID)
        where = f"KVM leaf {base + 1:#x} EAX bit 15"
    elif vendor == "xen":
        max_leaf = get(base)[0]
        offered = max_leaf >= base + 4 and bool(get(base + 4)[0] & XEN_HVM_CPUID_EXT_DEST_ID)
        where = f"Xen leaf {base + 4:#x} EAX bit 5"
    elif vendor == "bhyve":
        offered = get(base)[0] >= base + 1 and bool(get(base + 1)[0] & BHYVE_FEAT_EXT_DEST_ID)
        where = f"bhyve leaf {base + 1:#x} EAX bit 0"
    elif vendor == "hyperv":
        offered = get(HYPERV_VS_INTERFACE)[0] == HYPERV_VS_SIGNATURE and bool(
            get(HYPERV_VS_PROPERTIES)[0] & HYPERV_VS_EXTENDED_IOAPIC_RTE
        )
        where = f"Hyper-V leaves {HYPERV_VS_INTERFACE:#x}/{HYPERV_VS_PROPERTIES:#x}"
    else:
        offered = False
        where = "no extended destination ID interface for this vendor"
    others = sorted(v for v in found if v != vendor)
    extra = f"; also offers {', '.join(others)} interfaces" if others else ""
    if unknown:
        extra += f"; unknown signature {unknown[0]!r}"
    state = "offered" if offered else "not offered"
    return CpuidHypervisor(vendor, offered, f"{vendor} at {base:#x}, extended destination ID {state} ({where}){extra}")

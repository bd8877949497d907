"""``irqagent snapshot DIR``: copy every file the agent reads, as it read them.

The copy is made from the very text the reader saw (not a second read), with the
source file's mode (a read-only ``smp_affinity_list`` marks a managed IRQ), plus
the CPUID leaves it used in the text form of ``dev/cpu/N/cpuid``.  So
``irqagent audit --root DIR`` reproduces the live audit on any machine.
"""

from __future__ import annotations

import os
import stat

from irqagent import __version__
from irqagent import cpuid as cpuid_mod
from irqagent import msr as msr_mod
from irqagent.errors import IrqagentError
from irqagent.kernel import SYS_IRQ, KernelTree, describe_oserror

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Dict, Optional, Union


class RecordingTree(KernelTree):
    """A KernelTree that keeps the text of every file it reads."""

    def __init__(self, root: str = "/"):
        super().__init__(root)
        self.texts: Dict[str, Union[str, bytes, None]] = {}

    def record(self, rel: str, text: Optional[str]) -> None:
        super().record(rel, text)
        self.texts[rel] = text

    def record_bytes(self, rel: str, data: bytes) -> None:
        super().record_bytes(rel, data)
        self.texts[rel] = data


def take_snapshot(root: str, dest: str) -> int:
    """Write the snapshot; return how many files it holds."""
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise IrqagentError(f"snapshot: {dest} exists and is not an empty directory")
    tree = RecordingTree(root)
    facts = tree.collect(want_node=True, want_driver=True)
    try:
        os.makedirs(dest, exist_ok=True)
        count = 0
        for rel, text in sorted(tree.texts.items()):
            _copy_one(tree, rel, text, dest)
            count += 1
        # Directories whose presence the reader tests.
        for irq in facts.irqs:
            os.makedirs(os.path.join(dest, "proc/irq", str(irq.irq)), exist_ok=True)
        if os.path.isdir(tree.path(SYS_IRQ)):
            os.makedirs(os.path.join(dest, SYS_IRQ), exist_ok=True)
        for cpu, leaves in tree.cpuid_leaves_read.items():
            rel = f"dev/cpu/{cpu}/cpuid"
            header = f"CPUID leaves read by irqagent {__version__} from {tree.path(rel)}"
            _write(dest, rel, cpuid_mod.format_text(leaves, header), 0o644)
            count += 1
        for cpu, value in tree.apic_base_read.items():
            rel = f"dev/cpu/{cpu}/msr"
            header = f"IA32_APIC_BASE read by irqagent {__version__} from {tree.path(rel)}"
            _write(dest, rel, msr_mod.format_text({msr_mod.IA32_APIC_BASE: value}, header), 0o644)
            count += 1
    except OSError as exc:
        raise IrqagentError(f"snapshot: cannot write into {dest}: {describe_oserror(exc)}") from None
    return count


def _copy_one(tree: KernelTree, rel: str, text: Union[str, bytes, None], dest: str) -> None:
    """One file as the reader saw it: text as read, binary tables (the MADT) byte for byte, a
    directory whose presence counts (sys/bus/vmbus) as a directory, a symlink as a symlink."""
    source = tree.path(rel)
    info = os.lstat(source)
    target = os.path.join(dest, rel)
    if stat.S_ISLNK(info.st_mode):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(source), target)
        return
    if stat.S_ISDIR(info.st_mode):
        os.makedirs(target, exist_ok=True)
        _write(dest, f"{rel}/.present", "", 0o644)  # a directory that survives copies that drop empty ones
        return
    if text is None:  # a file whose presence counted (read without blocking: a FIFO would hang)
        text = tree.read_bytes_optional(rel, 1 << 16)[0] or b""
    _write(dest, rel, text, stat.S_IMODE(info.st_mode))


def _write(dest: str, rel: str, text: Union[str, bytes], mode: int) -> None:
    target = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    with open(target, "wb") as handle:
        handle.write(data)
    os.chmod(target, mode)

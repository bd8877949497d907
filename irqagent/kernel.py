"""The only module that touches kernel files: reads (and writes) under a root.

``KernelTree(root)`` reads ``ROOT/proc/...``, ``ROOT/sys/...`` and ``ROOT/dev/cpu/N/cpuid``
and returns :class:`~irqagent.facts.Facts`.  It remembers every file it read
successfully (``accessed``) so that ``irqagent snapshot`` copies exactly those.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from irqagent import cpuid as cpuid_mod
from irqagent import cpumask
from irqagent import msr as msr_mod
from irqagent.errors import InputError
from irqagent.facts import Facts, IrqFacts, PlatformFiles
from irqagent.interrupts import InterruptsFormatError, parse_interrupts
from irqagent.madt import MAX_TABLE_BYTES, MadtError, parse_madt
from irqagent.records import replace
from irqagent.topology import build_topology

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple

    from irqagent.facts import ChipSource

READ_CHUNK = 1 << 18
WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
# Every file is opened without blocking (a FIFO or a device under --root must not hang
# the agent), without following a symbolic link in its last component (the kernel puts
# none where the agent reads), and is read only when fstat() says it is a regular file
# -- procfs and sysfs files are regular files of size 0 -- or, for dev/cpu/N/cpuid and
# dev/cpu/N/msr only, the character device of that driver.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
CPUID_MAJOR = 203  # the cpuid driver's character devices (Documentation/admin-guide/devices.txt)
MSR_MAJOR = 202  # the msr driver's
CPU_DEVICE_MAJORS = {"cpuid": CPUID_MAJOR, "msr": MSR_MAJOR}
# Reads are bounded before they happen: a mask file needs a few KB even at 32,768 CPUs
# (a hex mask 9 KB, the longest cpulist 96 KB), so one-value files get ATTRIBUTE_LIMIT;
# only the multi-record files that grow with CPUs and IRQs get more.
ATTRIBUTE_LIMIT = 1 << 20

CPUINFO = "proc/cpuinfo"
PROC_IRQ = "proc/irq"
SYS_IRQ = "sys/kernel/irq"
INTERRUPTS = "proc/interrupts"
CPU_DIR = "sys/devices/system/cpu"
NODE_DIR = "sys/devices/system/node"
PCI_DEVICES = "sys/bus/pci/devices"
OSRELEASE = "proc/sys/kernel/osrelease"
CMDLINE = "proc/cmdline"
DEFAULT_AFFINITY = "proc/irq/default_smp_affinity"
BOOT_ID = "proc/sys/kernel/random/boot_id"
ACPI_TABLES = "sys/firmware/acpi/tables"
MADT = f"{ACPI_TABLES}/APIC"
FADT = f"{ACPI_TABLES}/FACP"
IOMMU_TABLES = ("DMAR", "IVRS")  # Intel VT-d, AMD-Vi: presence only
DMI_DIR = "sys/class/dmi/id"
DMI_FIELDS = ("sys_vendor", "product_name", "bios_vendor")
VMBUS = "sys/bus/vmbus"
FADT_FLAGS_OFFSET = 112  # ACPI FADT: Flags (u32) at byte offset 112
BOOT_ID_FORM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TEMP_SUFFIX = ".irqagent-new"  # file trees only: the temp file of a write by rename
LARGE_FILES = {
    CPUINFO: 256 << 20,  # 32,768 CPUs x up to 8 KiB per processor block
    INTERRUPTS: 256 << 20,  # one column per CPU on every line: 8,192 CPUs x 2,000 IRQs = 180 MB
}
SMALL_FILES = {
    CMDLINE: 64 << 10,  # COMMAND_LINE_SIZE is 2,048 on x86; bootconfig may add some
}


def read_limit(rel: str) -> int:
    """The most bytes the agent reads from ``rel``; a longer file is refused (EFBIG)."""
    return LARGE_FILES.get(rel) or SMALL_FILES.get(rel) or ATTRIBUTE_LIMIT


class UnreadableFile(OSError):
    """A file the agent does not read: not a regular file, or larger than its limit.
    Its message is complete (``describe_oserror`` shows it as is)."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a file"


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def describe_oserror(exc: OSError) -> str:
    """``ENOENT (No such file or directory)`` style text for messages."""
    if isinstance(exc, UnreadableFile):
        return str(exc.strerror)
    name = errno.errorcode.get(exc.errno or 0, "E?")
    return f"{name} ({exc.strerror or os.strerror(exc.errno or 0)})"


class KernelTree:
    """Kernel files under ``root``; every read and write of the agent goes through here."""

    def __init__(self, root: str = "/"):
        self.root = root
        self._prefix = root if root.endswith("/") else root + "/"
        self.accessed: Set[str] = set()  # relative paths read successfully
        self.cpuid_leaves_read: Dict[int, Dict[Tuple[int, int], cpuid_mod.Regs]] = {}
        self.apic_base_read: Dict[int, int] = {}
        # Firmware facts: read by the first collect() unless given (the daemon keeps them between
        # passes and drops them when a CPU is hot-plugged).
        self.platform_files: Optional[PlatformFiles] = None

    # -- paths and plain reads -------------------------------------------------

    def path(self, rel: str) -> str:
        return self._prefix + rel

    def read_optional(self, rel: str, attribute: bool = False) -> Optional[str]:
        """The file's text, or None when it is missing or cannot be read."""
        try:
            return self._read(rel, attribute)
        except OSError:
            return None

    def read_required(self, rel: str) -> str:
        try:
            return self._read(rel)
        except OSError as exc:
            raise InputError(f"cannot read {self.path(rel)}: {describe_oserror(exc)}") from None

    def open_file(self, rel: str, device_major: Optional[int] = None) -> Tuple[int, os.stat_result]:
        """Open ``rel`` for reading without blocking: (fd, its fstat).  Raises OSError, and
        :class:`UnreadableFile` for anything but a regular file -- or a character device
        of ``device_major`` (``CPUID_MAJOR``, ``MSR_MAJOR``) when one is asked for.  The
        caller closes the fd."""
        path = self.path(rel)
        try:
            fd = os.open(path, OPEN_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP and os.path.islink(path):
                raise UnreadableFile(errno.ELOOP, "is a symbolic link, not a regular file") from None
            raise
        try:
            info = os.fstat(fd)
            mode = info.st_mode
            if stat.S_ISREG(mode) or (
                device_major is not None and stat.S_ISCHR(mode) and os.major(info.st_rdev) == device_major
            ):
                return fd, info
            code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
            if device_major is not None and stat.S_ISCHR(mode):
                device = f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
                raise UnreadableFile(code, f"is character device {device}, not a text file or device {device_major}:N")
            raise UnreadableFile(code, f"is {_kind(mode)}, not a regular file")
        except BaseException:
            os.close(fd)
            raise

    def _read(self, rel: str, attribute: bool = False) -> str:
        fd, _ = self.open_file(rel)
        try:
            text = self._read_fd(fd, attribute, read_limit(rel))
        finally:
            os.close(fd)
        self.record(rel, text)
        return text

    def record(self, rel: str, text: Optional[str]) -> None:
        """Called for every file used (text None: only its presence or link target counts)."""
        self.accessed.add(rel)

    def record_bytes(self, rel: str, data: bytes) -> None:
        """Called for every binary file used (ACPI tables), with the bytes as read."""
        self.accessed.add(rel)

    def read_bytes_optional(self, rel: str, limit: int = ATTRIBUTE_LIMIT) -> Tuple[Optional[bytes], str]:
        """A binary file (an ACPI table...): (its bytes, "") or (None, why not): missing, not a
        regular file, larger than ``limit`` or unreadable."""
        try:
            fd, _ = self.open_file(rel)
        except OSError as exc:
            return None, describe_oserror(exc)
        try:
            data = self._read_bytes(fd, limit)
        except OSError as exc:
            return None, describe_oserror(exc)
        finally:
            os.close(fd)
        self.record_bytes(rel, data)
        return data, ""

    def exists(self, rel: str) -> bool:
        """Presence of a file or directory (recorded, so that snapshots keep it)."""
        present = os.path.lexists(self.path(rel))
        if present:
            self.record(rel, None)
        return present

    @classmethod
    def _read_fd(cls, fd: int, attribute: bool = False, limit: int = ATTRIBUTE_LIMIT) -> str:
        return _decode(cls._read_bytes(fd, limit, attribute))

    @staticmethod
    def _read_bytes(fd: int, limit: int, attribute: bool = False) -> bytes:
        """Read to the end, at most ``limit`` bytes (more is EFBIG: memory stays bounded
        whatever the file).  ``attribute``: a one-record file (proc/irq/N/*, sysfs), where
        the kernel hands over the whole text at once, so a short read is the end and one
        read() is enough.  Multi-record files such as cpuinfo come in pieces: read until
        read() returns nothing."""
        chunks = []
        size = 0
        while True:
            wanted = min(READ_CHUNK, limit + 1 - size)
            chunk = os.read(fd, wanted)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise UnreadableFile(errno.EFBIG, f"is larger than {limit} bytes: not read")
            if attribute and len(chunks) == 1 and len(chunk) < wanted:
                break
        return b"".join(chunks)

    def listdir(self, rel: str) -> Optional[List[str]]:
        try:
            return os.listdir(self.path(rel))
        except OSError:
            return None

    # -- IRQ files -----------------------------------------------------------

    def irq_numbers(self) -> List[int]:
        try:
            names = os.listdir(self.path(PROC_IRQ))
        except OSError as exc:
            raise InputError(f"cannot list {self.path(PROC_IRQ)}: {describe_oserror(exc)}") from None
        return sorted(int(name) for name in names if cpumask.is_decimal(name) and len(name) < 10)

    def read_affinity(self, irq: int, filename: str = "smp_affinity_list") -> Tuple[str, bool]:
        """(text, writable) of an affinity file; raises OSError."""
        rel = f"{PROC_IRQ}/{irq}/{filename}"
        fd, info = self.open_file(rel)
        mode = info.st_mode
        try:
            text = self._read_fd(fd, attribute=True)
        finally:
            os.close(fd)
        self.record(rel, text)
        return text, bool(mode & WRITE_BITS)

    def read_effective(self, irq: int) -> Optional[str]:
        """The IRQ's ``effective_affinity_list`` (where the kernel programmed its vector),
        stripped; None when the file is missing or unreadable."""
        text = self.read_optional(f"{PROC_IRQ}/{irq}/effective_affinity_list", attribute=True)
        return text.strip() if text is not None else None

    def affinity_texts(self) -> Dict[str, str]:
        """Every IRQ's affinity text and the default mask, read cheaply (no chip names, no
        cpuinfo): the daemon's periodic check compares it with the state after its last
        pass.  A file that cannot be read is left out (the comparison then differs)."""
        texts: Dict[str, str] = {}
        for irq in self.irq_numbers():
            try:
                texts[str(irq)] = self.read_affinity(irq)[0]
            except OSError:
                continue
        texts["default"] = self.read_optional(DEFAULT_AFFINITY, attribute=True) or ""
        return texts

    def write_affinity(self, irq: int, text: str, filename: str = "smp_affinity_list") -> None:
        """Write ``text`` to the IRQ's affinity file, all or nothing; raises OSError."""
        self._write_whole(f"{PROC_IRQ}/{irq}/{filename}", text)

    def write_default_affinity(self, text: str) -> None:
        self._write_whole(DEFAULT_AFFINITY, text)

    def read_default_affinity(self) -> str:
        """``default_smp_affinity`` as read back after a write; raises OSError."""
        return self._read(DEFAULT_AFFINITY, attribute=True)

    def _write_whole(self, rel: str, text: str) -> None:
        """procfs takes one ``write()`` as a whole or refuses it.  A file tree under --root
        (a snapshot, a test tree) gets the same guarantee by temp file + rename, so that
        a crash never leaves a half-written mask there either."""
        path = self.path(rel)
        data = (text + "\n").encode("ascii")
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(errno.EINVAL, f"is {_kind(info.st_mode)}, not a regular file: not written")
        if info.st_size > 0:  # procfs files report size 0
            self._replace_file(path, data, stat.S_IMODE(info.st_mode))
            return
        # Non-blocking and no symlink: a FIFO swapped in meanwhile fails (ENXIO), never hangs.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")
        finally:
            os.close(fd)

    @staticmethod
    def _replace_file(path: str, data: bytes, mode: int) -> None:
        from irqagent.output import replace_path

        try:
            os.unlink(path + TEMP_SUFFIX)  # a stray one from a killed run (unlink never follows a symlink)
        except FileNotFoundError:
            pass
        replace_path(path, data, mode, os.path.basename(path) + TEMP_SUFFIX)

    def remove_stray_temps(self, irqs: List[int]) -> int:
        """Remove the temp files of writes by rename that a killed run left in a file tree
        (only our own names; /proc cannot hold them)."""
        removed = 0
        names = [f"{PROC_IRQ}/{irq}/{filename}" for irq in irqs for filename in ("smp_affinity_list", "smp_affinity")]
        for rel in names + [DEFAULT_AFFINITY]:
            try:
                os.unlink(self.path(rel) + TEMP_SUFFIX)
                removed += 1
            except OSError:
                pass
        return removed

    def boot_id(self) -> Optional[str]:
        """The root's boot ID (a UUID, lower case), or None when it is absent or malformed."""
        text = (self.read_optional(BOOT_ID, attribute=True) or "").strip().lower()
        return text if BOOT_ID_FORM.fullmatch(text) else None

    def _read_irq(self, irq: int, sys_irq: bool, want_node: bool, msi_device: Dict[int, str]) -> IrqFacts:
        base = f"{PROC_IRQ}/{irq}"
        text: Optional[str] = None
        writable = True
        affinity_file = "smp_affinity_list"
        read_error: Optional[str] = None
        vanished = False
        for filename in ("smp_affinity_list", "smp_affinity"):
            try:
                text, writable = self.read_affinity(irq, filename)
                affinity_file = filename
                break
            except FileNotFoundError:
                continue
            except OSError as exc:
                read_error = f"cannot read {base}/{filename}: {describe_oserror(exc)}"
                break
        if text is None and read_error is None:
            if os.path.isdir(self.path(base)):
                read_error = f"{base} has neither smp_affinity_list nor smp_affinity"
            else:
                vanished = True
        chip = name = ""
        if sys_irq:
            chip = (self.read_optional(f"{SYS_IRQ}/{irq}/chip_name", attribute=True) or "").strip()
            name = (self.read_optional(f"{SYS_IRQ}/{irq}/actions", attribute=True) or "").strip()
        effective = self.read_effective(irq)
        node = None
        if want_node:
            node_text = (self.read_optional(f"{base}/node", attribute=True) or "").strip()
            node = int(node_text) if cpumask.is_decimal(node_text) and len(node_text) < 10 else None
        return IrqFacts(
            irq=irq,
            chip=chip,
            name=name,
            device=msi_device.get(irq) or _bdf_from_chip(chip),
            affinity_text=text.strip() if text is not None else None,
            affinity_file=affinity_file,
            read_error=read_error,
            vanished=vanished,
            writable=writable,
            effective_text=effective,
            node=node,
        )

    def _msi_devices(self) -> Dict[int, str]:
        """IRQ -> PCI BDF from ``sys/bus/pci/devices/BDF/msi_irqs/N``."""
        devices = self.listdir(PCI_DEVICES) or []
        result: Dict[int, str] = {}
        for bdf in sorted(devices):
            rel = f"{PCI_DEVICES}/{bdf}/msi_irqs"
            entries = self.listdir(rel)
            if not entries:
                continue
            for entry in entries:
                if cpumask.is_decimal(entry):
                    result[int(entry)] = bdf
                    self.record(f"{rel}/{entry}", None)
        return result

    def driver_of(self, bdf: str) -> Optional[str]:
        try:
            target = os.readlink(self.path(f"{PCI_DEVICES}/{bdf}/driver"))
        except OSError:
            return None
        self.record(f"{PCI_DEVICES}/{bdf}/driver", None)
        return os.path.basename(target)

    # -- CPUID -------------------------------------------------------------------

    def _open_cpu_file(self, cpu: int, name: str) -> Tuple[Optional[str], Optional[int], str]:
        """``dev/cpu/N/NAME`` (the cpuid or msr driver): (text, None, "") for the text form of a
        snapshot or fixture, (None, fd, "") for the character device, (None, None, why) otherwise."""
        rel = f"dev/cpu/{cpu}/{name}"
        try:
            fd, info = self.open_file(rel, device_major=CPU_DEVICE_MAJORS[name])
        except FileNotFoundError:
            return None, None, f"{rel} does not exist (load the {name} module: modprobe {name})"
        except OSError as exc:
            return None, None, f"cannot open {rel}: {describe_oserror(exc)}"
        if not stat.S_ISREG(info.st_mode):
            return None, fd, ""
        try:
            text = self._read_fd(fd, limit=ATTRIBUTE_LIMIT)
        except OSError as exc:
            return None, None, f"cannot read {rel}: {describe_oserror(exc)}"
        finally:
            os.close(fd)
        self.record(rel, text)
        return text, None, ""

    def read_cpuid(self, cpu: int) -> Tuple[Optional[Dict[Tuple[int, int], cpuid_mod.Regs]], str]:
        """The hypervisor leaves of ``cpu`` from ``dev/cpu/N/cpuid`` (device or text file)."""
        rel = f"dev/cpu/{cpu}/cpuid"
        text, fd, note = self._open_cpu_file(cpu, "cpuid")
        if text is not None:
            try:
                table = cpuid_mod.parse_text(text)
            except cpuid_mod.CpuidFormatError as exc:
                raise InputError(f"{self.path(rel)}: {exc}") from None
            leaves = cpuid_mod.collect(lambda leaf, sub: table.get((leaf, sub), cpuid_mod.ZERO))
        elif fd is not None:
            try:
                leaves = cpuid_mod.collect(
                    lambda leaf, sub: cpuid_mod.decode_bytes(os.pread(fd, 16, cpuid_mod.device_offset(leaf, sub)))
                )
            except (OSError, cpuid_mod.CpuidFormatError) as exc:
                detail = describe_oserror(exc) if isinstance(exc, OSError) else str(exc)
                return None, f"cannot read {rel}: {detail}"
            finally:
                os.close(fd)
        else:
            return None, note
        self.cpuid_leaves_read[cpu] = leaves
        return leaves, ""

    def read_apic_base(self, cpu: int) -> Tuple[Optional[int], str]:
        """IA32_APIC_BASE of ``cpu`` from ``dev/cpu/N/msr`` (the msr driver, or the text form)."""
        rel = f"dev/cpu/{cpu}/msr"
        text, fd, note = self._open_cpu_file(cpu, "msr")
        try:
            if text is not None:
                value = msr_mod.parse_text(text).get(msr_mod.IA32_APIC_BASE)
                if value is None:
                    return None, f"{rel} has no line for MSR {msr_mod.IA32_APIC_BASE:#x}"
            elif fd is not None:
                try:
                    value = msr_mod.decode_bytes(os.pread(fd, 8, msr_mod.IA32_APIC_BASE))
                finally:
                    os.close(fd)
            else:
                return None, note
        except OSError as exc:
            return None, f"cannot read {rel}: {describe_oserror(exc)}"
        except msr_mod.MsrFormatError as exc:
            return None, f"{rel}: {exc}"
        self.apic_base_read[cpu] = value
        return value, ""

    def read_platform_files(self) -> PlatformFiles:
        """ACPI tables, DMI and the like: what tells the hypervisor and the firmware's CPUs."""
        data, why = self.read_bytes_optional(MADT, MAX_TABLE_BYTES)
        madt = None
        madt_note = ""
        if data is None:
            madt_note = f"{MADT}: {why}"
        else:
            try:
                madt = parse_madt(data)
            except MadtError as exc:
                madt_note = f"{MADT} is not usable: {exc}"
        fadt, _ = self.read_bytes_optional(FADT, 1 << 16)
        fadt_flags = None
        if fadt is not None and len(fadt) >= FADT_FLAGS_OFFSET + 4:
            fadt_flags = int.from_bytes(fadt[FADT_FLAGS_OFFSET : FADT_FLAGS_OFFSET + 4], "little")
        dmi = {}
        for name in DMI_FIELDS:
            text = self.read_optional(f"{DMI_DIR}/{name}", attribute=True)
            if text is not None and text.strip():
                dmi[name] = text.strip()[:128]
        return PlatformFiles(
            madt=madt,
            madt_note=madt_note,
            fadt_flags=fadt_flags,
            acpi_tables=frozenset(name for name in IOMMU_TABLES if self.exists(f"{ACPI_TABLES}/{name}")),
            dmi=dmi,
            vmbus=self.exists(VMBUS),
            boot_id=self.boot_id(),
        )

    # -- everything --------------------------------------------------------------

    def collect(self, want_node: bool = False, want_driver: bool = False) -> Facts:
        """Read every file the agent uses, once, and return the facts (the firmware facts only
        when ``platform_files`` is not set yet)."""
        cpuinfo = self.read_required(CPUINFO)
        topology = build_topology(
            cpuinfo,
            self.read_optional(f"{CPU_DIR}/online"),
            self.read_optional(f"{CPU_DIR}/possible"),
            self.read_optional(f"{CPU_DIR}/present"),
        )
        first_cpu = min(topology.apic_ids)
        leaves, cpuid_note = self.read_cpuid(first_cpu)
        apic_base, msr_note = self.read_apic_base(first_cpu)
        if self.platform_files is None:
            self.platform_files = self.read_platform_files()
        irq_numbers = self.irq_numbers()
        sys_irq = os.path.isdir(self.path(SYS_IRQ))
        chip_source: ChipSource = "sysfs" if sys_irq else "none"
        from_interrupts: Dict[int, Tuple[str, str]] = {}
        if not sys_irq:
            text = self.read_optional(INTERRUPTS)
            if text is not None:
                try:
                    from_interrupts = parse_interrupts(text)
                    chip_source = "interrupts"
                except InterruptsFormatError as exc:
                    raise InputError(f"{self.path(INTERRUPTS)}: {exc}") from None
        msi_device = self._msi_devices()
        irqs = []
        drivers: Dict[str, Optional[str]] = {}
        for irq in irq_numbers:
            facts = self._read_irq(irq, sys_irq, want_node, msi_device)
            if irq in from_interrupts:
                chip, name = from_interrupts[irq]
                facts = replace(facts, chip=chip, name=name, device=facts.device or _bdf_from_chip(chip))
            if want_driver and facts.device:
                if facts.device not in drivers:
                    drivers[facts.device] = self.driver_of(facts.device)
                facts = replace(facts, driver=drivers[facts.device])
            irqs.append(facts)
        default_affinity = self.read_optional(DEFAULT_AFFINITY)
        return Facts(
            root=self.root,
            topology=topology,
            irqs=tuple(irqs),
            kernel=(self.read_optional(OSRELEASE) or "").strip() or None,
            cmdline=(self.read_optional(CMDLINE) or "").strip(),
            cpuid=leaves,
            cpuid_cpu=first_cpu if leaves is not None else None,
            cpuid_note=cpuid_note,
            apic_base=apic_base,
            apic_base_note=msr_note,
            platform_files=self.platform_files,
            chip_source=chip_source,
            default_affinity_text=default_affinity.strip() if default_affinity is not None else None,
            numa_nodes=self._numa_nodes(topology.nr_cpu_ids) if want_node else {},
        )

    def _numa_nodes(self, nr_cpu_ids: int) -> Dict[int, int]:
        nodes: Dict[int, int] = {}
        for entry in sorted(self.listdir(NODE_DIR) or []):
            if entry.startswith("node") and cpumask.is_decimal(entry[4:]):
                text = self.read_optional(f"{NODE_DIR}/{entry}/cpulist")
                if text is None:
                    continue
                try:
                    nodes[int(entry[4:])] = cpumask.parse_cpulist(text, nr_cpu_ids)
                except cpumask.CpumaskError as exc:
                    raise InputError(f"{self.path(NODE_DIR)}/{entry}/cpulist: {exc}") from None
        return nodes


def _bdf_from_chip(chip: str) -> Optional[str]:
    """``PCI-MSIX-0000:00:05.0`` -> ``0000:00:05.0`` (per-device MSI domains, 6.2+)."""
    for prefix in ("PCI-MSIX-", "PCI-MSI-"):
        index = chip.find(prefix)
        if index >= 0:
            bdf = chip[index + len(prefix) :]
            if len(bdf) >= 7 and bdf.count(":") >= 1:
                return bdf
    return None

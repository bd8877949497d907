"""``python -m irqagent.devtools gen-tree DIR [options]``: write a synthetic kernel tree."""

from __future__ import annotations

import argparse
import os
import sys

from irqagent import cpumask
from irqagent.devtools.gentree import TreeSpec, guest_irqs, write_tree
from irqagent.devtools.profiles import PROFILES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Sequence

    from irqagent.devtools.gentree import Style


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m irqagent.devtools", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("gen-tree", help="write a synthetic --root tree")
    gen.add_argument("dir")
    gen.add_argument("--profile", choices=sorted(PROFILES), help="a named fixture layout (other options ignored)")
    gen.add_argument("--cpus", type=int, default=300)
    gen.add_argument("--irqs", type=int, default=64)
    gen.add_argument("--kernel", default="6.12.118+deb13-amd64")
    gen.add_argument("--hypervisor", choices=("kvm", "tcg", "xen", "hyperv", "bhyve", "none"), default="kvm")
    gen.add_argument(
        "--apic-mode", choices=("x2apic", "xapic", "none"), default="x2apic", help="IA32_APIC_BASE in dev/cpu/N/msr"
    )
    gen.add_argument("--no-madt", action="store_true", help="no sys/firmware/acpi/tables/APIC")
    gen.add_argument("--dmi-vendor", help="sys/class/dmi/id/sys_vendor, e.g. QEMU or 'Cloud Hypervisor'")
    gen.add_argument(
        "--style", choices=("kvm", "remapped", "hyperv", "xen"), help="IRQ chip style (default: by hypervisor)"
    )
    gen.add_argument("--ext-dest-id", action="store_true")
    gen.add_argument("--no-cpuid", action="store_true", help="no dev/cpu/N/cpuid file")
    gen.add_argument("--old-kernel-layout", action="store_true", help="no sys/kernel/irq; write proc/interrupts")
    gen.add_argument("--apic-stride", type=int, default=1, help="APIC ID = CPU * STRIDE")
    gen.add_argument("--offline", default="", help="cpulist of offline CPUs")
    gen.add_argument("--nodes", type=int, default=1)
    gen.add_argument("--managed-every", type=int, default=0, help="every Nth queue vector is kernel-managed")
    gen.add_argument("--minimal-cpuinfo", action="store_true", help="only processor/apicid lines in cpuinfo")
    args = parser.parse_args(argv)
    if os.path.exists(args.dir) and os.listdir(args.dir):
        parser.error(f"{args.dir} exists and is not empty")
    if args.profile:
        spec = PROFILES[args.profile]()
    else:
        host_styles: Dict[str, Style] = {"xen": "xen", "hyperv": "hyperv"}
        style: Style = args.style or host_styles.get(args.hypervisor, "kvm")
        spec = TreeSpec(
            cpus=args.cpus,
            apic_ids=[cpu * args.apic_stride for cpu in range(args.cpus)] if args.apic_stride != 1 else None,
            offline=cpumask.parse_cpulist(args.offline),
            kernel=args.kernel,
            hypervisor=args.hypervisor,
            ext_dest_id=args.ext_dest_id,
            cpuid=not args.no_cpuid,
            sys_kernel_irq=not args.old_kernel_layout,
            irqs=guest_irqs(
                args.cpus, args.irqs, args.kernel, style, managed_every=args.managed_every, nodes=args.nodes
            ),
            nodes=args.nodes,
            cpuinfo_style="minimal" if args.minimal_cpuinfo else "full",
            apic_mode=None if args.apic_mode == "none" else args.apic_mode,
            madt=not args.no_madt,
            dmi={"sys_vendor": args.dmi_vendor} if args.dmi_vendor else {},
        )
    write_tree(spec, args.dir)
    print(f"wrote {args.dir}: {spec.cpus} CPUs, {len(spec.irqs)} IRQs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

import io


from irqagent.cli import Environment
from irqagent.render_text import elide


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_elide_keeps_both_ends():
    assert elide("0-3,5,7,9,11,13,15,17,19,299", 12) == "0-3,5..9,299"
    assert len(elide("x" * 100, 21)) == 21
    assert elide("short", 10) == "short"


def test_colour_only_on_a_tty_without_no_color(tree):
    from irqagent.cli import main

    root = tree("cloud-hypervisor-320")  # IO-APIC IRQs would change
    out = Tty()
    main(
        ["audit", "--root", root, "--state-dir", "/nonexistent"],
        Environment(stdout=out, stderr=io.StringIO(), environ={}),
    )
    assert "\x1b[33mwould-change\x1b[0m" in out.getvalue()
    out = Tty()
    main(
        ["audit", "--root", root, "--state-dir", "/nonexistent"],
        Environment(stdout=out, stderr=io.StringIO(), environ={"NO_COLOR": "1"}),
    )
    assert "\x1b[" not in out.getvalue()


def test_big_sparse_guest_fits_80_columns(tmp_path, cli):
    from dataclasses import replace

    from irqagent.devtools.gentree import guest_irqs, write_tree
    from irqagent.devtools.profiles import cloud_hypervisor_320, qemu_kvm_288_8bit

    kernel = "6.12.118+deb13-amd64"
    every_other = sum(1 << cpu for cpu in range(1, 320, 2))  # an operator offlined every other CPU
    guests = {
        # Cloud Hypervisor: its 8-bit IO-APIC lines would change to the even CPUs 0-254
        "cloud-hypervisor": replace(
            cloud_hypervisor_320(), offline=every_other, irqs=guest_irqs(320, 20, kernel, "kvm")
        ),
        # QEMU/KVM without the extended destination ID: CPUs 256-287 refused as well
        "qemu-8bit": replace(
            qemu_kvm_288_8bit(),
            offline=(every_other & ((1 << 256) - 1)) | (((1 << 32) - 1) << 256),
            irqs=guest_irqs(288, 20, kernel, "kvm"),
        ),
    }
    for name, spec in guests.items():
        root = str(tmp_path / name)
        write_tree(spec, root)
        for flags in ((), ("-v",)):
            result = cli("audit", "--root", root, *flags)
            assert result.code == 1, (name, result.err)
            assert max(len(line) for line in result.out.splitlines()) <= 80, name


def test_refused_fix_keeps_command_line_options_whole(tree, cli):
    # QEMU/KVM, 288 vCPUs, in-kernel irqchip: the fix is QEMU's -machine kernel-irqchip=split
    result = cli("audit", "--root", tree("qemu-kvm-288-8bit"))
    assert result.code == 1
    assert any("kernel-irqchip=split" in line for line in result.out.splitlines())
    assert max(len(line) for line in result.out.splitlines()) <= 80

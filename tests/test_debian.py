"""`make deb`: a Debian package built with Debian's tooling, checked with dpkg-deb and lintian.

Installing it (apt install ./irqagent_*.deb), its service under a real systemd, `apt remove` and
`apt purge` are checked by tools/run-under-systemd.sh and tools/fresh-install.sh (.ci/run).
"""

import os
import shutil
import subprocess

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's python3, not one earlier in PATH


def build_tools_missing():
    if not all(shutil.which(tool) for tool in ("dpkg-buildpackage", "dpkg-checkbuilddeps", "make")):
        return "dpkg-dev or make not installed"
    check = subprocess.run(["dpkg-checkbuilddeps"], cwd=REPO, capture_output=True, text=True)
    return check.stderr.strip() if check.returncode else None


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    missing = build_tools_missing()
    if missing:
        pytest.skip(f"cannot build a Debian package here: {missing}")
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run(
        ["make", "-s", "deb", f"BUILD={out}/build", f"DIST={out}/dist"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PATH": SYSTEM_PATH},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    debs = os.listdir(out / "dist")
    assert debs == ["irqagent_0.1.0_all.deb"]
    return str(out / "dist" / debs[0])


def dpkg_deb(*args):
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout


def test_control_depends_on_debians_python_packages(deb):
    fields = {}
    for line in dpkg_deb("-f", deb).splitlines():
        if not line.startswith(" "):
            key, _, value = line.partition(": ")
            fields[key] = value
    assert fields["Package"] == "irqagent" and fields["Architecture"] == "all"
    depends = [dep.strip() for dep in fields["Depends"].split(",")]
    assert "python3-psutil" in depends and "python3-pyroute2 (>= 0.7)" in depends
    assert "python3-tomli | python3 (>> 3.11)" in depends  # tomllib from 3.11 on


def test_contents_and_conffiles(deb, tmp_path):
    listing = dpkg_deb("-c", deb)
    paths = {line.split()[-1] for line in listing.splitlines()}
    for path in (
        "./usr/sbin/irqagent",
        "./lib/systemd/system/irqagent.service",
        "./lib/systemd/system/irqagent-apply.service",
        "./etc/irqagent/irqagent.toml",
        "./usr/lib/python3/dist-packages/irqagent/cli.py",
        "./usr/lib/python3/dist-packages/irqagent/schema/report-2.json",
        "./usr/share/doc/irqagent/copyright",
    ):
        assert path in paths, path
    assert not any("/usr/local" in path or "__pycache__" in path or ".venv" in path for path in paths)
    assert "./var/lib/irqagent/" not in paths  # made 0700 by postinst, removed by purge
    dpkg_deb("-e", deb, str(tmp_path / "control"))
    with open(tmp_path / "control" / "conffiles") as handle:
        assert handle.read().split() == ["/etc/irqagent/irqagent.toml"]
    dpkg_deb("-x", deb, str(tmp_path / "root"))
    with (
        open(tmp_path / "root/etc/irqagent/irqagent.toml") as packaged,
        open(f"{REPO}/config/irqagent.toml") as shipped,
    ):
        assert packaged.read() == shipped.read()  # the commented example
    with open(tmp_path / "root/lib/systemd/system/irqagent.service") as handle:
        assert "\nExecStart=/usr/sbin/irqagent run\n" in handle.read()
    with open(tmp_path / "root/lib/systemd/system/irqagent-apply.service") as handle:
        assert "\nExecStart=/usr/sbin/irqagent apply --quiet\n" in handle.read()


def test_maintainer_scripts_enable_the_daemon_and_purge_the_state(deb, tmp_path):
    dpkg_deb("-e", deb, str(tmp_path))
    postinst = (tmp_path / "postinst").read_text()
    assert "deb-systemd-helper enable 'irqagent.service'" in postinst
    assert "deb-systemd-invoke $_dh_action 'irqagent.service'" in postinst
    assert "deb-systemd-invoke $_dh_action 'irqagent-apply.service'" not in postinst  # installed, not started
    assert "install -d -m 0700 /var/lib/irqagent" in postinst
    prerm = (tmp_path / "prerm").read_text()
    assert "deb-systemd-invoke stop 'irqagent.service'" in prerm and "stop irqagent-apply.service" in prerm
    postrm = (tmp_path / "postrm").read_text()
    assert "rm -rf /var/lib/irqagent" in postrm and "deb-systemd-helper purge 'irqagent.service'" in postrm


def test_lintian_reports_no_errors(deb):
    if shutil.which("lintian") is None:
        pytest.skip("lintian not installed")
    result = subprocess.run(["lintian", deb], capture_output=True, text=True, timeout=300)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert errors == [] and result.returncode == 0, result.stdout + result.stderr

"""``/etc/irqagent/irqagent.toml`` -> a validated, immutable :class:`Config`.

Unknown keys, wrong types and bad values are errors that name the key; see
``config/irqagent.toml`` in the source tree for every key, documented.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import sys

from irqagent import cpumask, trust
from irqagent.errors import ConfigError
from irqagent.paths import DEFAULT_CONFIG
from irqagent.records import field, frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, TypeVar, Union

    from irqagent.controllers import Destination

    PolicyMode = Literal["restrict", "spread"]  # keep IRQs on the CPUs they have (reachable), or one CPU each
    ApicId255 = Literal["unicast", "broadcast"]  # what APIC ID 255 means to the hypervisor
    _Choice = TypeVar("_Choice", bound=str)

DEFAULT_PATH = DEFAULT_CONFIG
CONFIG_ENV = "IRQAGENT_CONFIG"  # overrides DEFAULT_PATH (tests, containers); --config overrides both
DESTINATIONS: Tuple[Destination, ...] = ("8bit", "15bit", "remapped", "hyperv-ir", "any", "none")
POLICY_MODES: Tuple[PolicyMode, ...] = ("restrict", "spread")
APIC_ID_255_MODES: Tuple[ApicId255, ...] = ("unicast", "broadcast")
RULE_MATCH_KEYS = ("irq", "name", "chip", "device", "driver")
RULE_ACTION_KEYS = ("cpus", "ignore", "mode")
# Hostile or mistaken configs are refused before they cost much:
MAX_CONFIG_BYTES = 1 << 20  # a config file larger than this is not read
MAX_GLOB = 1024  # characters in a chip, name, device or driver glob (names are short)
MAX_PATH = 4095  # bytes in a path (PATH_MAX less the NUL); a component at most NAME_MAX
MAX_NAME = 255
MAX_MASK_BITS = 1 << 27  # every cpulist value of one config together: 16 MiB of masks
QUOTE = 80  # characters of a value that an error line shows at most


def quote(value: object, limit: int = QUOTE) -> str:
    """``repr(value)``, at most ``limit`` characters (a 10 MB string is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


@frozen
class ControllerOverride:
    """A ``[[controller]]`` table: force the destination of chips matching a glob."""

    chip: str
    destination: Destination
    reachable_apic_ids: Optional[int] = None  # APIC ID mask; None: the destination's own

    def matches(self, chip: str) -> bool:
        return fnmatch.fnmatchcase(chip, self.chip)


@frozen
class Rule:
    """A ``[[rule]]`` table: the first whose match keys all match an IRQ applies."""

    index: int
    irq: Optional[int] = None  # mask of IRQ numbers
    name: Optional[str] = None
    chip: Optional[str] = None
    device: Optional[str] = None
    driver: Optional[str] = None
    cpus: Optional[int] = None
    ignore: bool = False
    mode: Optional[PolicyMode] = None

    def describe(self) -> str:
        keys = [f"{key}={getattr(self, key)!r}" for key in ("name", "chip", "device", "driver") if getattr(self, key)]
        if self.irq is not None:
            keys.insert(0, f"irq={cpumask.format_cpulist(self.irq)!r}")
        return f"rule {self.index + 1} ({', '.join(keys)})"


@frozen
class Policy:
    mode: PolicyMode = "restrict"
    exclude_cpus: int = 0
    honour_cmdline: bool = True
    default_smp_affinity: bool = True


@frozen
class DaemonSettings:
    interval: float = 60.0
    debounce: float = 0.5
    max_delay: float = 2.0  # a uevent storm still gets a pass at least this often
    metrics_file: Optional[str] = None


@frozen
class Config:
    path: Optional[str] = None
    apic_id_255: ApicId255 = "unicast"  # broadcast: a hypervisor that keeps KVM's broadcast quirk
    ext_dest_id: Optional[bool] = None  # None: auto
    controllers: Tuple[ControllerOverride, ...] = ()
    policy: Policy = field(default_factory=Policy)
    rules: Tuple[Rule, ...] = ()
    daemon: DaemonSettings = field(default_factory=DaemonSettings)

    def controller_override(self, chip: str) -> Optional[ControllerOverride]:
        for override in self.controllers:
            if override.matches(chip):
                return override
        return None


class _Table:
    """One TOML table being validated: typed getters that name the key on error."""

    def __init__(self, data: object, where: str, allowed: Tuple[str, ...], budget: Optional[List[int]] = None) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a table")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"{where}: unknown key {quote(unknown[0])} (known: {', '.join(allowed)})")
        self.data: Mapping[str, Any] = data
        self.where = where
        self.budget = [MAX_MASK_BITS] if budget is None else budget  # mask bits its lists may still use (shared)

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where != "top level" else name

    def get(self, name: str, kind: Union[type, Tuple[type, ...]], default: Any = None) -> Any:
        """The TOML value (of type ``kind``, one type or a tuple of them), or ``default`` when not given."""
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"{self.key(name)}: expected {_kind_names(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise ConfigError(f"{self.key(name)}: expected {_kind_names(kinds)}, got {type(value).__name__}")
        if isinstance(value, str) and "\0" in value:
            raise ConfigError(f"{self.key(name)}: {quote(value)} contains a NUL character")
        return value

    def cpulist(self, name: str, noun: str = "cpulist", limit: int = cpumask.MAX_CPUS) -> Optional[int]:
        """A cpulist-syntax value (CPUs, APIC IDs or IRQ numbers: ``noun`` names it in errors);
        CPU numbers below ``cpumask.MAX_CPUS``, APIC IDs and IRQ numbers below ``cpumask.MAX_ID``."""
        text: Optional[str] = self.get(name, str)
        if text is None:
            return None
        try:
            mask = cpumask.parse_cpulist(text, limit=limit)
        except cpumask.CpumaskError as exc:
            raise ConfigError(f"{self.key(name)}: {exc}".replace("cpulist", noun)) from None
        self.budget[0] -= mask.bit_length()
        if self.budget[0] < 0:
            raise ConfigError(f"{self.key(name)}: the lists of this config are too large in total")
        return mask

    def choice(self, name: str, choices: Tuple[_Choice, ...], default: _Choice) -> _Choice:
        value = self.optional_choice(name, choices)
        return default if value is None else value

    def optional_choice(self, name: str, choices: Tuple[_Choice, ...]) -> Optional[_Choice]:
        value: Optional[str] = self.get(name, str)
        if value is None:
            return None
        for choice in choices:
            if value == choice:
                return choice
        raise ConfigError(f"{self.key(name)}: {quote(value)} is not one of {', '.join(choices)}")

    def glob(self, name: str) -> Optional[str]:
        value: Optional[str] = self.get(name, str)
        if value is not None and not value:
            raise ConfigError(f"{self.key(name)}: must not be empty")
        if value is not None and len(value) > MAX_GLOB:
            raise ConfigError(f"{self.key(name)}: {quote(value)} is longer than {MAX_GLOB} characters")
        return value

    def path(self, name: str) -> Optional[str]:
        """An absolute file name the OS accepts ("" = none)."""
        value: Optional[str] = self.get(name, str)
        if not value:
            return None
        encoded = value.encode("utf-8", "surrogateescape")
        if not value.startswith("/"):
            raise ConfigError(f"{self.key(name)}: {quote(value)} is not an absolute path")
        if len(encoded) > MAX_PATH or any(len(part) > MAX_NAME for part in encoded.split(b"/")):
            raise ConfigError(
                f"{self.key(name)}: {quote(value)} is too long (at most {MAX_PATH} bytes, {MAX_NAME} per name)"
            )
        if value.endswith("/"):
            raise ConfigError(f"{self.key(name)}: {quote(value)} names a directory, not a file")
        return value


def _kind_names(kinds: Tuple[type, ...]) -> str:
    names: Dict[type, str] = {
        bool: "a boolean",
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_config(text: str, path: Optional[str] = None) -> Config:
    """Validate TOML text; raise ConfigError naming the file, key and reason."""
    label = path or "config"
    if sys.version_info >= (3, 11):  # imported here: a run without a config file never pays for it
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11 only
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None
    except RecursionError:  # 5,000-deep arrays, 2,000-deep inline tables
        raise ConfigError(f"{label}: invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise ConfigError(f"{label}: invalid TOML: {str(exc)[:QUOTE]}") from None
    try:
        return _build(data, path)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None


def _build(data: Dict[str, Any], path: Optional[str]) -> Config:
    budget = [MAX_MASK_BITS]
    top = _Table(data, "top level", ("reachability", "controller", "policy", "rule", "daemon"))
    raw_reach = top.get("reachability", dict, {})
    if isinstance(raw_reach, dict) and "broadcast_apic_id_255" in raw_reach:
        raise ConfigError(
            'reachability.broadcast_apic_id_255: replaced by apic_id_255 = "unicast" | "broadcast" '
            '(true meant "unicast"; APIC ID 255 is a unicast destination in x2APIC mode)'
        )
    reach = _Table(raw_reach, "reachability", ("apic_id_255", "ext_dest_id"))
    ext = reach.get("ext_dest_id", (str, bool), "auto")
    if isinstance(ext, str) and ext != "auto":
        raise ConfigError(f'reachability.ext_dest_id: {quote(ext)} is not one of "auto", true, false')
    controllers = []
    for number, raw in enumerate(top.get("controller", list, []), 1):
        table = _Table(raw, f"controller[{number}]", ("chip", "destination", "reachable_apic_ids"), budget)
        chip = table.glob("chip")
        if chip is None:
            raise ConfigError(f"controller[{number}].chip: required")
        destination = table.optional_choice("destination", DESTINATIONS)
        if destination is None:
            raise ConfigError(f"controller[{number}].destination: required (one of {', '.join(DESTINATIONS)})")
        apic_ids = table.cpulist("reachable_apic_ids", noun="APIC ID list", limit=cpumask.MAX_ID)
        if apic_ids is not None:
            if destination == "none":
                raise ConfigError(f'controller[{number}].reachable_apic_ids: makes no sense with destination "none"')
        controllers.append(ControllerOverride(chip, destination, apic_ids))
    pol = _Table(
        top.get("policy", dict, {}),
        "policy",
        ("mode", "exclude_cpus", "honour_cmdline", "default_smp_affinity"),
        budget,
    )
    policy = Policy(
        mode=pol.choice("mode", POLICY_MODES, "restrict"),
        exclude_cpus=pol.cpulist("exclude_cpus") or 0,
        honour_cmdline=pol.get("honour_cmdline", bool, True),
        default_smp_affinity=pol.get("default_smp_affinity", bool, True),
    )
    rules = [_rule(index, raw, budget) for index, raw in enumerate(top.get("rule", list, []))]
    dae = _Table(top.get("daemon", dict, {}), "daemon", ("interval", "debounce", "max_delay", "metrics_file"))
    interval = _seconds(dae, "interval", 60, 1, 86400)
    debounce = _seconds(dae, "debounce", 0.5, 0, 10)
    max_delay = _seconds(dae, "max_delay", 2, 0.1, 600)
    metrics_file = dae.path("metrics_file")
    return Config(
        path=path,
        apic_id_255=reach.choice("apic_id_255", APIC_ID_255_MODES, "unicast"),
        ext_dest_id=None if ext == "auto" else ext,
        controllers=tuple(controllers),
        policy=policy,
        rules=tuple(rules),
        daemon=DaemonSettings(interval=interval, debounce=debounce, max_delay=max_delay, metrics_file=metrics_file),
    )


def _seconds(table: _Table, name: str, default: float, low: float, high: float) -> float:
    value = table.get(name, (int, float), default)
    if isinstance(value, int) and not low <= value <= high:  # before float(): a 400-digit integer overflows
        raise ConfigError(f"{table.key(name)}: {quote(value, 40)} is outside {low:g}..{high:g} seconds")
    seconds = float(value)
    if not low <= seconds <= high:  # also NaN
        raise ConfigError(f"{table.key(name)}: {seconds:g} is outside {low:g}..{high:g} seconds")
    return seconds


def _rule(index: int, raw: object, budget: List[int]) -> Rule:
    where = f"rule[{index + 1}]"
    table = _Table(raw, where, RULE_MATCH_KEYS + RULE_ACTION_KEYS, budget)
    irq_mask = table.cpulist("irq", noun="list of IRQ numbers", limit=cpumask.MAX_ID)
    matchers = {key: table.glob(key) for key in ("name", "chip", "device", "driver")}
    if irq_mask is None and not any(matchers.values()):
        raise ConfigError(f"{where}: no match key (give at least one of {', '.join(RULE_MATCH_KEYS)})")
    cpus = table.cpulist("cpus")
    ignore = table.get("ignore", bool, False)
    mode = table.optional_choice("mode", POLICY_MODES)
    actions = [
        key for key, given in (("cpus", cpus is not None), ("ignore", ignore), ("mode", mode is not None)) if given
    ]
    if not actions:
        raise ConfigError(f"{where}: no action (give one of cpus, ignore = true, mode)")
    if ignore and len(actions) > 1:
        raise ConfigError(f"{where}.ignore: cannot be combined with {', '.join(a for a in actions if a != 'ignore')}")
    if cpus is not None and cpus == 0:
        raise ConfigError(f"{where}.cpus: empty cpulist")
    return Rule(index=index, irq=irq_mask, cpus=cpus, ignore=ignore, mode=mode, **matchers)


def load_config(path: Optional[str], explicit: bool) -> Config:
    """Read the config file; a missing default file means defaults."""
    target = path or os.environ.get(CONFIG_ENV) or DEFAULT_PATH
    try:
        raw = _read_config_file(target)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{target}: no such config file") from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{target}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, os.path.abspath(target))


def _read_config_file(target: str) -> bytes:
    """The file's bytes: opened without blocking (a FIFO must not hang a start or a reload),
    a regular file or a character device such as /dev/null, at most MAX_CONFIG_BYTES."""
    fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, "is a directory, not a file")
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            raise OSError(errno.EINVAL, "not a regular file")
        if stat.S_ISREG(mode):  # sshd's rule: root acts on it, so only root may be able to change it
            untrusted = trust.problem(info, f"config file {target}") or trust.parents_problem(target)
            if untrusted:
                raise ConfigError(f"{untrusted}: refusing to use it (chown root and chmod go-w to fix)")
        chunks: List[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 16, MAX_CONFIG_BYTES + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:
                raise OSError(errno.EFBIG, f"larger than {MAX_CONFIG_BYTES} bytes: not a config file")
    finally:
        os.close(fd)


def rule_matches(rule: Rule, irq: int, name: str, chip: str, device: Optional[str], driver: Optional[str]) -> bool:
    """True when every match key the rule sets matches this IRQ."""
    if rule.irq is not None and not (rule.irq >> irq) & 1:
        return False
    if rule.name is not None and not any(
        fnmatch.fnmatchcase(action.strip(), rule.name) for action in [name, *name.split(",")] if action
    ):
        return False
    for pattern, value in ((rule.chip, chip), (rule.device, device), (rule.driver, driver)):
        if pattern is not None and not (value and fnmatch.fnmatchcase(value, pattern)):
            return False
    return True


def first_rule(
    rules: Tuple[Rule, ...], irq: int, name: str, chip: str, device: Optional[str], driver: Optional[str]
) -> Optional[Rule]:
    for rule in rules:
        if rule_matches(rule, irq, name, chip, device, driver):
            return rule
    return None


def rules_need_driver(rules: Tuple[Rule, ...]) -> bool:
    return any(rule.driver is not None for rule in rules)

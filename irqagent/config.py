"""``/etc/irqagent/irqagent.toml`` -> a validated, immutable :class:`Config`.

Unknown keys, wrong types and bad values are errors that name the key; see
``config/irqagent.toml`` in the source tree for every key, documented.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from irqagent import cpumask
from irqagent.errors import ConfigError
from irqagent.paths import DEFAULT_CONFIG

DEFAULT_PATH = DEFAULT_CONFIG
DESTINATIONS = ("8bit", "15bit", "remapped", "hyperv-ir", "any", "none")
POLICY_MODES = ("restrict", "spread")
RULE_MATCH_KEYS = ("irq", "name", "chip", "device", "driver")
RULE_ACTION_KEYS = ("cpus", "ignore", "mode")


@dataclass(frozen=True)
class ControllerOverride:
    """A ``[[controller]]`` table: force the destination of chips matching a glob."""

    chip: str
    destination: str
    reachable_apic_ids: Optional[int] = None  # APIC ID mask; None: the destination's own

    def matches(self, chip: str) -> bool:
        return fnmatch.fnmatchcase(chip, self.chip)


@dataclass(frozen=True)
class Rule:
    """A ``[[rule]]`` table: the first whose match keys all match an IRQ applies."""

    index: int
    irq: Optional[int] = None  # mask of IRQ numbers
    name: Optional[str] = None
    chip: Optional[str] = None
    device: Optional[str] = None
    driver: Optional[str] = None
    cpus: Optional[int] = None
    cpus_text: Optional[str] = None
    ignore: bool = False
    mode: Optional[str] = None

    def describe(self) -> str:
        keys = [f"{key}={getattr(self, key)!r}" for key in ("name", "chip", "device", "driver") if getattr(self, key)]
        if self.irq is not None:
            keys.insert(0, f"irq={cpumask.format_cpulist(self.irq)!r}")
        return f"rule {self.index + 1} ({', '.join(keys)})"


@dataclass(frozen=True)
class Policy:
    mode: str = "restrict"
    exclude_cpus: int = 0
    honour_cmdline: bool = True
    default_smp_affinity: bool = True


@dataclass(frozen=True)
class DaemonSettings:
    interval: float = 60.0
    debounce: float = 0.5
    metrics_file: Optional[str] = None


@dataclass(frozen=True)
class Config:
    path: Optional[str] = None
    broadcast_apic_id_255: bool = False
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

    def __init__(self, data: Mapping[str, Any], where: str, allowed: Tuple[str, ...]):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a table")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(allowed)})")
        self.data = data
        self.where = where

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where != "top level" else name

    def get(self, name: str, kind, default=None):
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"{self.key(name)}: expected {_kind_names(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise ConfigError(f"{self.key(name)}: expected {_kind_names(kinds)}, got {type(value).__name__}")
        return value

    def cpulist(self, name: str, noun: str = "cpulist") -> Optional[int]:
        """A cpulist-syntax value (CPUs, APIC IDs or IRQ numbers: ``noun`` names it in errors)."""
        text = self.get(name, str)
        if text is None:
            return None
        try:
            return cpumask.parse_cpulist(text)
        except cpumask.CpumaskError as exc:
            raise ConfigError(f"{self.key(name)}: {exc}".replace("cpulist", noun)) from None

    def choice(self, name: str, choices: Tuple[str, ...], default: Optional[str]) -> Optional[str]:
        value = self.get(name, str, default)
        if value is not None and value not in choices:
            raise ConfigError(f"{self.key(name)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def glob(self, name: str) -> Optional[str]:
        value = self.get(name, str)
        if value is not None and not value:
            raise ConfigError(f"{self.key(name)}: must not be empty")
        return value


def _kind_names(kinds) -> str:
    names = {
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
    try:
        return _build(data, path)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None


def _build(data: Dict[str, Any], path: Optional[str]) -> Config:
    top = _Table(data, "top level", ("reachability", "controller", "policy", "rule", "daemon"))
    reach = _Table(top.get("reachability", dict, {}), "reachability", ("broadcast_apic_id_255", "ext_dest_id"))
    ext = reach.get("ext_dest_id", (str, bool), "auto")
    if isinstance(ext, str) and ext != "auto":
        raise ConfigError(f'reachability.ext_dest_id: {ext!r} is not one of "auto", true, false')
    controllers = []
    for number, raw in enumerate(top.get("controller", list, []), 1):
        table = _Table(raw, f"controller[{number}]", ("chip", "destination", "reachable_apic_ids"))
        chip = table.glob("chip")
        if chip is None:
            raise ConfigError(f"controller[{number}].chip: required")
        destination = table.choice("destination", DESTINATIONS, None)
        if destination is None:
            raise ConfigError(f"controller[{number}].destination: required (one of {', '.join(DESTINATIONS)})")
        apic_ids = table.cpulist("reachable_apic_ids", noun="APIC ID list")
        if apic_ids is not None:
            if destination == "none":
                raise ConfigError(f'controller[{number}].reachable_apic_ids: makes no sense with destination "none"')
        controllers.append(ControllerOverride(chip, destination, apic_ids))
    pol = _Table(
        top.get("policy", dict, {}), "policy", ("mode", "exclude_cpus", "honour_cmdline", "default_smp_affinity")
    )
    policy = Policy(
        mode=pol.choice("mode", POLICY_MODES, "restrict"),
        exclude_cpus=pol.cpulist("exclude_cpus") or 0,
        honour_cmdline=pol.get("honour_cmdline", bool, True),
        default_smp_affinity=pol.get("default_smp_affinity", bool, True),
    )
    rules = [_rule(index, raw) for index, raw in enumerate(top.get("rule", list, []))]
    dae = _Table(top.get("daemon", dict, {}), "daemon", ("interval", "debounce", "metrics_file"))
    interval = float(dae.get("interval", (int, float), 60))
    debounce = float(dae.get("debounce", (int, float), 0.5))
    if not 1 <= interval <= 86400:
        raise ConfigError(f"daemon.interval: {interval:g} is outside 1..86400 seconds")
    if not 0 <= debounce <= 10:
        raise ConfigError(f"daemon.debounce: {debounce:g} is outside 0..10 seconds")
    metrics_file = dae.get("metrics_file", str) or None
    return Config(
        path=path,
        broadcast_apic_id_255=reach.get("broadcast_apic_id_255", bool, False),
        ext_dest_id=None if ext == "auto" else ext,
        controllers=tuple(controllers),
        policy=policy,
        rules=tuple(rules),
        daemon=DaemonSettings(interval=interval, debounce=debounce, metrics_file=metrics_file),
    )


def _rule(index: int, raw: Any) -> Rule:
    where = f"rule[{index + 1}]"
    table = _Table(raw, where, RULE_MATCH_KEYS + RULE_ACTION_KEYS)
    irq_mask = table.cpulist("irq", noun="list of IRQ numbers")
    matchers = {key: table.glob(key) for key in ("name", "chip", "device", "driver")}
    if irq_mask is None and not any(matchers.values()):
        raise ConfigError(f"{where}: no match key (give at least one of {', '.join(RULE_MATCH_KEYS)})")
    cpus = table.cpulist("cpus")
    ignore = table.get("ignore", bool, False)
    mode = table.choice("mode", POLICY_MODES, None)
    actions = [
        key for key, given in (("cpus", cpus is not None), ("ignore", ignore), ("mode", mode is not None)) if given
    ]
    if not actions:
        raise ConfigError(f"{where}: no action (give one of cpus, ignore = true, mode)")
    if ignore and len(actions) > 1:
        raise ConfigError(f"{where}.ignore: cannot be combined with {', '.join(a for a in actions if a != 'ignore')}")
    if cpus is not None and cpus == 0:
        raise ConfigError(f"{where}.cpus: empty cpulist")
    return Rule(
        index=index, irq=irq_mask, cpus=cpus, cpus_text=table.get("cpus", str), ignore=ignore, mode=mode, **matchers
    )


def load_config(path: Optional[str], explicit: bool) -> Config:
    """Read the config file; a missing default file means defaults."""
    target = path or DEFAULT_PATH
    try:
        with open(target, "rb") as handle:
            raw = handle.read()
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


def first_rule(rules: Tuple[Rule, ...], **irq_fields) -> Optional[Rule]:
    for rule in rules:
        if rule_matches(rule, **irq_fields):
            return rule
    return None


def rules_need_driver(rules: Tuple[Rule, ...]) -> bool:
    return any(rule.driver is not None for rule in rules)

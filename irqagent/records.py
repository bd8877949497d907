"""Frozen records: the value types of the model, cheap to define.

An audit loads some 35 record types.  The standard library's ``dataclasses`` writes each
method of each record type as source text and compiles it at import time (and imports
``inspect`` to do so): 20 ms of a 49 ms audit of a 2-CPU guest, where ``python3 -c pass``
takes 8.6 ms (``benchmarks/startup.py``; the target is at most 4x).  ``frozen`` makes the
same kind of record from methods written once, here:

* the fields are the class's annotations, in order, with their defaults (a plain value,
  or ``field(default_factory=...)``); ``field(init=False)`` fields are set by
  ``__post_init__`` (with ``object.__setattr__``), ``field(compare=False)`` ones take no
  part in ``==`` and ``hash``, ``field(repr=False)`` ones are not printed;
* the constructor takes the fields by position or by keyword;
* instances cannot be changed (``FrozenError``), compare equal when they are of the same
  type with equal fields, hash by their fields, and print as ``Name(field=value, ...)``;
* ``replace(record, **changes)`` returns a copy with some fields changed.

What the model does not use (inheritance, ordering, slots, keyword-only fields) is not
offered.  Mutable state (the daemon's counters) stays a plain ``dataclasses`` class.

    @frozen
    class Reach:
        max_apic_id: Optional[int] = None
        memo: Dict[str, int] = field(default_factory=dict, compare=False)
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple, Type, TypeVar

    from typing_extensions import dataclass_transform

    V = TypeVar("V")
else:

    def dataclass_transform(**_options):  # what tells mypy that @frozen makes a record type
        return lambda decorator: decorator


_NO_DEFAULT = object()
_INIT_FIELDS: Dict[type, Tuple[str, ...]] = {}  # record type -> the fields its constructor (and replace) takes


class FrozenError(AttributeError):
    """An attempt to change a field of a frozen record."""


class Field:
    """What ``field()`` says of one field (held by the class until ``@frozen`` reads it)."""

    __slots__ = ("default", "default_factory", "init", "compare", "repr")

    def __init__(
        self, default: Any, default_factory: Optional[Callable[[], Any]], init: bool, compare: bool, repr: bool
    ) -> None:
        if default is not _NO_DEFAULT and default_factory is not None:
            raise TypeError("a field takes a default or a default_factory, not both")
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.compare = compare
        self.repr = repr

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT and self.default_factory is None


def field(
    *,
    default: Any = _NO_DEFAULT,
    default_factory: Optional[Callable[[], Any]] = None,
    init: bool = True,
    compare: bool = True,
    repr: bool = True,
) -> Any:
    """A field with more to say than its default."""
    return Field(default, default_factory, init, compare, repr)


def _fields_of(cls: type) -> Dict[str, Field]:
    """The class's annotated fields, in order; the class keeps plain defaults as attributes."""
    fields: Dict[str, Field] = {}
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        declared = cls.__dict__.get(name, _NO_DEFAULT)
        spec = declared if isinstance(declared, Field) else Field(declared, None, True, True, True)
        if isinstance(spec.default, (list, dict, set)):
            raise ValueError(f"{cls.__qualname__}.{name}: a mutable default is shared: use default_factory")
        if isinstance(declared, Field):
            if spec.default is _NO_DEFAULT:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        fields[name] = spec
    return fields


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: Type[V]) -> Type[V]:
    """Make ``cls`` a frozen record type (see the module's docstring)."""
    fields = _fields_of(cls)
    init_names = tuple(name for name, spec in fields.items() if spec.init)
    seen_default = ""
    for name in init_names:
        if not fields[name].required:
            seen_default = name
        elif seen_default:
            raise TypeError(
                f"{cls.__qualname__}: required field {name!r} follows {seen_default!r}, which has a default"
            )
    defaults = {name: spec.default for name, spec in fields.items() if spec.default is not _NO_DEFAULT}
    factories = {name: spec.default_factory for name, spec in fields.items() if spec.default_factory is not None}
    later = tuple(name for name, spec in fields.items() if not spec.init and not spec.required)
    compared = tuple(name for name, spec in fields.items() if spec.compare)
    key: Callable[[Any], Any] = attrgetter(*compared) if compared else lambda record: ()
    shown = tuple(name for name, spec in fields.items() if spec.repr)
    post_init = cls.__dict__.get("__post_init__")
    title = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(init_names):
            raise TypeError(f"{title}() takes {len(init_names)} positional arguments but {len(args)} were given")
        values = dict(zip(init_names, args))  # in field order: vars() lists the fields as declared
        for name in init_names[len(args) :]:
            if name in kwargs:
                values[name] = kwargs.pop(name)
            elif name in defaults:
                values[name] = defaults[name]
            elif name in factories:
                values[name] = factories[name]()
            else:
                raise TypeError(f"{title}() missing required argument: {name!r}")
        for name in kwargs:
            if name in values:
                raise TypeError(f"{title}() got multiple values for argument {name!r}")
            raise TypeError(f"{title}() got an unexpected keyword argument {name!r}")
        for name in later:
            values[name] = defaults[name] if name in defaults else factories[name]()
        self.__dict__.update(values)
        if post_init is not None:
            post_init(self)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(key(self) == key(other))

    def __hash__(self: Any) -> int:
        return hash(key(self))

    def __repr__(self: Any) -> str:
        return f"{title}({', '.join(f'{name}={getattr(self, name)!r}' for name in shown)})"

    def __setattr__(self: Any, name: str, item: Any) -> None:
        raise FrozenError(f"cannot assign to field {name!r} of {title}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenError(f"cannot delete field {name!r} of {title}")

    for method in (__init__, __eq__, __hash__, __repr__, __setattr__, __delattr__):
        if method.__name__ in cls.__dict__:
            raise TypeError(f"{title} defines {method.__name__}, which @frozen writes")
        method.__qualname__ = f"{title}.{method.__name__}"
        setattr(cls, method.__name__, method)
    _INIT_FIELDS[cls] = init_names
    return cls


def replace(record: V, **changes: Any) -> V:
    """A copy of ``record`` with the given fields changed."""
    cls = type(record)
    names = _INIT_FIELDS.get(cls)
    if names is None:
        raise TypeError(f"{cls.__qualname__} is not a frozen record type")
    unknown = sorted(set(changes) - set(names))
    if unknown:
        raise TypeError(f"{cls.__qualname__} has no field {unknown[0]!r} to replace")
    current = vars(record)
    return cls(**{name: changes[name] if name in changes else current[name] for name in names})

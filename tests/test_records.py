"""irqagent.records: the frozen record types of the model."""

from __future__ import annotations

from typing import ClassVar, Dict, List, Optional

import pytest

from irqagent.records import FrozenError, field, frozen, replace


@frozen
class Point:
    x: int
    y: int = 0
    label: str = field(default="", compare=False)
    tags: List[str] = field(default_factory=list, compare=False, repr=False)
    UNITS: ClassVar[str] = "px"


@frozen
class Square:
    side: int
    area: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "area", self.side * self.side)


@frozen
class Other:
    x: int
    y: int = 0


def test_fields_by_position_or_keyword_with_defaults():
    point = Point(3, y=4)
    assert (point.x, point.y, point.label, point.tags) == (3, 4, "", [])
    assert Point(x=1).y == 0


def test_a_default_factory_gives_each_record_its_own_value():
    first, second = Point(1), Point(2)
    first.tags.append("a")
    assert second.tags == []


def test_a_classvar_is_not_a_field():
    assert Point.UNITS == "px"
    with pytest.raises(TypeError, match="takes 4 positional arguments but 5 were given"):
        Point(1, 2, "", [], "px")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Point(), "Point() missing required argument: 'x'"),
        (lambda: Point(1, z=2), "Point() got an unexpected keyword argument 'z'"),
        (lambda: Point(1, x=2), "Point() got multiple values for argument 'x'"),
        (lambda: Square(2, 4), "Square() takes 1 positional arguments but 2 were given"),
        (lambda: Square(2, area=4), "Square() got an unexpected keyword argument 'area'"),
    ],
)
def test_wrong_arguments_are_type_errors(call, message):
    with pytest.raises(TypeError) as raised:
        call()
    assert str(raised.value) == message


def test_records_cannot_be_changed():
    point = Point(1, 2)
    with pytest.raises(FrozenError, match="cannot assign to field 'x' of Point"):
        point.x = 5
    with pytest.raises(AttributeError):  # FrozenError is an AttributeError, as dataclasses' is
        del point.y
    assert (point.x, point.y) == (1, 2)


def test_equality_and_hash_follow_the_compared_fields():
    assert Point(1, 2, label="a") == Point(1, 2, label="b")
    assert hash(Point(1, 2, label="a")) == hash(Point(1, 2, label="b"))
    assert Point(1, 2) != Point(1, 3)
    assert len({Point(1, 2), Point(1, 2), Point(2, 1)}) == 2


def test_records_of_another_type_are_not_equal_even_with_the_same_fields():
    assert Point(1, 2) != Other(1, 2)
    assert Other(1, 2) != (1, 2)
    assert Other(1, 2) == Other(1, 2)


def test_repr_shows_the_fields_meant_to_be_shown():
    assert repr(Point(1, 2, label="a", tags=["t"])) == "Point(x=1, y=2, label='a')"
    assert repr(Square(3)) == "Square(side=3, area=9)"


def test_post_init_derives_fields_and_replace_derives_them_again():
    square = Square(3)
    assert square.area == 9
    bigger = replace(square, side=4)
    assert (bigger.side, bigger.area) == (4, 16)
    assert square.area == 9


def test_replace_changes_only_what_it_is_told():
    point = Point(1, 2, label="a")
    moved = replace(point, y=5)
    assert (moved.x, moved.y, moved.label) == (1, 5, "a")
    assert point.y == 2


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: replace(Point(1), z=1), "Point has no field 'z' to replace"),
        (lambda: replace(Square(1), area=1), "Square has no field 'area' to replace"),
        (lambda: replace(object()), "object is not a frozen record type"),
    ],
)
def test_replace_refuses_what_is_not_a_field(call, message):
    with pytest.raises(TypeError) as raised:
        call()
    assert str(raised.value) == message


def test_a_mutable_default_is_refused_at_definition():
    with pytest.raises(ValueError, match="Bad.items: a mutable default is shared"):

        @frozen
        class Bad:
            items: Dict[str, int] = {}  # noqa: RUF012 - the mistake under test


def test_a_required_field_after_a_defaulted_one_is_refused_at_definition():
    with pytest.raises(TypeError, match="required field 'b' follows 'a'"):

        @frozen
        class Bad:
            a: int = 0
            b: int


def test_a_field_takes_a_default_or_a_factory_not_both():
    with pytest.raises(TypeError, match="not both"):
        field(default=1, default_factory=int)


def test_a_field_without_a_default_is_required():
    @frozen
    class Holder:
        value: Optional[int] = field(compare=False)

    with pytest.raises(TypeError, match="missing required argument: 'value'"):
        Holder()
    assert Holder(None) == Holder(5)


def test_fields_are_held_in_declaration_order_whatever_the_call_order():
    """vars() of a record lists its fields as declared, as a dataclass's does."""
    assert list(vars(Point(tags=["t"], y=2, x=1))) == ["x", "y", "label", "tags"]
    assert list(vars(Square(2))) == ["side", "area"]


def test_a_method_frozen_writes_may_not_be_defined_by_the_class():
    with pytest.raises(TypeError, match="Bad defines __repr__, which @frozen writes"):

        @frozen
        class Bad:
            a: int

            def __repr__(self) -> str:
                return "bad"

"""Typed answers: validated by their type in the run's process, checked against the
type's JSON schema in any other, both naming the field that is wrong."""

from __future__ import annotations

import enum
from typing import Any, Literal

import attrs
import pydantic
import pytest

from twinklr.core.pipeline._values._answers import (
    answer_schema,
    schema_problem,
    type_name,
    validate_answer,
)


class Mood(enum.Enum):
    CALM = "calm"
    WILD = "wild"


class Effect(pydantic.BaseModel):
    name: Literal["chase", "fade"]
    beats: int


class Plan(pydantic.BaseModel):
    group: str
    mood: Mood
    effects: list[Effect]
    note: str | None = None
    dimmed: bool = False


@attrs.define
class Lights:
    count: int


GOOD = {"group": "roof", "mood": "calm", "effects": [{"name": "fade", "beats": 4}]}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (GOOD, None),
        ({**GOOD, "note": "softly"}, None),
        ({**GOOD, "note": None}, None),
        ({"group": "roof", "mood": "calm"}, "field 'effects' is missing"),
        ({**GOOD, "mood": "sad"}, "field 'mood': must be one of 'calm', 'wild', not 'sad'"),
        (
            {**GOOD, "effects": [{"name": "fade", "beats": "4"}]},
            "field 'effects[0].beats': must be integer, not str '4'",
        ),
        (
            {**GOOD, "effects": [{"name": "spin", "beats": 4}]},
            "field 'effects[0].name': must be one of 'chase', 'fade', not 'spin'",
        ),
        ({**GOOD, "effects": [{"name": "fade"}]}, "field 'effects[0].beats' is missing"),
        ({**GOOD, "note": 3}, "field 'note': 3 matches none of the 2 forms it may take"),
        ({**GOOD, "dimmed": 1}, "field 'dimmed': must be boolean, not int 1"),
        ([GOOD], "must be object, not list"),
    ],
)
def test_a_json_answer_is_checked_against_the_recorded_schema(
    value: Any, problem: str | None
) -> None:
    schema = answer_schema(Plan)
    assert schema is not None
    found = schema_problem(schema, value)
    if problem is None:
        assert found is None
        assert validate_answer("approve", Plan, value).group == "roof"  # the type agrees
    else:
        assert found is not None
        assert found.startswith(problem)
        if "'4'" in problem or "int 1" in problem:
            # In the run's own process pydantic converts what it can ("4" to 4, 1 to
            # True); from another process the JSON types must be right.
            validate_answer("approve", Plan, value)
            return
        with pytest.raises(ValueError, match=r"^the answer to gate 'approve' is not a valid Plan"):
            validate_answer("approve", Plan, value)


def test_a_json_true_is_no_number_for_the_schema() -> None:
    schema = answer_schema(int)
    assert schema is not None
    assert schema_problem(schema, True) == "must be integer, not bool True"  # noqa: FBT003
    assert schema_problem(schema, 3) is None


def test_an_attrs_answer_is_validated_by_cattrs_and_has_no_schema() -> None:
    assert validate_answer("count", Lights, {"count": 3}) == Lights(3)
    with pytest.raises(ValueError, match=r"not a valid Lights: field 'count': invalid value"):
        validate_answer("count", Lights, {"count": "three"})
    assert answer_schema(Lights) is None
    assert validate_answer("any", None, object) is object  # no type: anything goes


def test_types_are_named_as_written() -> None:
    assert type_name(Plan) == "Plan"
    assert type_name(list[int]) == "list[int]"
    assert type_name(int | None) == "int | None"


def test_an_answer_type_that_cannot_be_hashed_still_validates() -> None:
    from typing import Annotated  # noqa: PLC0415

    unhashable = Annotated[int, ["a list, so the type has no hash"]]
    assert validate_answer("count", unhashable, "3") == 3
    with pytest.raises(ValueError, match=r"not a valid Annotated\[int, \['a list"):
        validate_answer("count", unhashable, "three")

# ruff: noqa: UP006, UP007, UP035, UP045 - pydantic evaluates these annotations at run time,
# and Python 3.9 (declared) cannot evaluate "X | None" or "list[...]" inside them.
"""Wire formats 2 and 1 as pydantic models: the request bodies the server accepts, and nothing else.

Format 2 (the library since the machine proof) adds ``machine_key``, the machine's secret key:
the body is accepted only when ``machine_id`` is the key's hash (:func:`derive_id`), so nobody
can send reports or a deletion request for a machine without its key. Format 1 (older
clients, random ids) is still accepted, except for an id of the derived form (version 8): such
an id always needs its key, so stripping the proof from a format-2 body gains nothing.

The models are strict on purpose: unknown fields are refused (``extra="forbid"``), no
coercion happens (``"3"`` is not 3, ``true`` is not 1), and every string has a pattern.
The server's clock-dependent check (how old a day may be) is not here: it lives in
:func:`check_days`, which takes ``today`` as an argument so it can be tested without a clock.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from telemetry_rollup._identity import derive_id, is_derived_id

#: Name of an app or of a counter chosen by the app.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
#: A counter name: an app's own name, or one reserved by the library (``_dropped``, ``_run:tty``).
COUNTER_PATTERN = r"^(?:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}|_[A-Za-z0-9_.:-]{1,63})$"
#: Short tokens: versions, OS, architecture, Python version.
TOKEN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}$"  # noqa: S105 - a pattern, not a secret
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
#: The machine's secret key: 32 bytes as 64 lowercase hex characters (wire format 2).
KEY_PATTERN = r"^[0-9a-f]{64}$"

MAX_REPORTS = 50
#: Not in the client's issue: a bound so one report cannot carry an unbounded number of names.
#: The body cap (64 KiB) already limits a report to about 2,000 short names.
MAX_COUNTERS = 1000
MAX_COUNT = 10**9
#: How far a report's day may lie from the server's UTC date.
MAX_DAYS_OLD = 35
MAX_DAYS_AHEAD = 1

AppName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
CounterName = Annotated[str, StringConstraints(pattern=COUNTER_PATTERN)]
Token = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
#: Canonical lowercase hyphenated form: exactly the strings with str(uuid.UUID(x)) == x.
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
UUIDText = Annotated[
    str,
    StringConstraints(pattern=UUID_PATTERN),
    Field(description="canonical lowercase hyphenated UUID"),
]

MachineKey = Annotated[
    str,
    StringConstraints(pattern=KEY_PATTERN),
    Field(description="the machine's secret key (64 hex); machine_id must be its hash"),
]

_STRICT = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


def _canonical_uuid(value: str) -> str:
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        canonical = ""
    if canonical != value:
        raise ValueError("not a canonical lowercase UUID")
    return value


def _exactly(expected: object, value: object, what: str) -> object:
    # Literal[1] alone would accept True and 1.0 (they compare equal); the wire format does not.
    if type(value) is not type(expected) or value != expected:
        raise ValueError(f"{what} must be {expected!r}".replace("True", "true"))
    return value


def _schema(value: object) -> object:
    if type(value) is not int or value not in (1, 2):
        raise ValueError("schema must be 1 or 2")
    return value


def _legacy_machine(value: str) -> str:
    value = _canonical_uuid(value)
    if is_derived_id(value):
        # A derived id proves nothing without its key: only wire format 2 may use it.
        raise ValueError("this machine id needs its machine_key (wire format 2)")
    return value


def _proven(key: str, info: ValidationInfo) -> str:
    machine_id = info.data.get("machine_id")
    if machine_id is not None and derive_id(key) != machine_id:
        raise ValueError("machine_key does not prove machine_id")
    return key


class Report(BaseModel):
    """One day's counts from one machine, under an id the client keeps across retries."""

    model_config = _STRICT

    id: UUIDText
    day: Annotated[str, StringConstraints(pattern=DAY_PATTERN)]
    counts: Annotated[Dict[CounterName, Count], Field(max_length=MAX_COUNTERS)]

    @field_validator("id")
    @classmethod
    def _id_canonical(cls, value: str) -> str:
        return _canonical_uuid(value)

    @field_validator("day")
    @classmethod
    def _day_real(cls, value: str) -> str:
        date.fromisoformat(value)  # ValueError for 2026-02-30
        return value


class RollupRequest(BaseModel):
    """``POST /v1/rollups``, wire format 1: reports of completed days, from a random machine id."""

    model_config = _STRICT

    schema_: Literal[1] = Field(alias="schema")
    app: AppName
    app_version: Optional[Token]
    lib_version: Token
    machine_id: UUIDText
    os: Token
    arch: Token
    python: Token
    ci: bool
    reports: Annotated[List[Report], Field(min_length=1, max_length=MAX_REPORTS)]

    @property
    def proven(self) -> bool:
        return False

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema_one(cls, value: object) -> object:
        _schema(value)  # 3 or "1": the message names both versions
        return _exactly(1, value, "schema")

    @field_validator("machine_id")
    @classmethod
    def _machine_canonical(cls, value: str) -> str:
        return _legacy_machine(value)


class RollupRequestV2(BaseModel):
    """``POST /v1/rollups``, wire format 2: as format 1, with the machine's key as proof."""

    model_config = _STRICT

    schema_: Literal[2] = Field(alias="schema")
    app: AppName
    app_version: Optional[Token]
    lib_version: Token
    machine_id: UUIDText
    machine_key: MachineKey
    os: Token
    arch: Token
    python: Token
    ci: bool
    reports: Annotated[List[Report], Field(min_length=1, max_length=MAX_REPORTS)]

    @property
    def proven(self) -> bool:
        return True

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema_two(cls, value: object) -> object:
        return _exactly(2, value, "schema")

    @field_validator("machine_id")
    @classmethod
    def _machine_canonical(cls, value: str) -> str:
        return _canonical_uuid(value)

    @field_validator("machine_key")
    @classmethod
    def _key_proves_id(cls, value: str, info: ValidationInfo) -> str:
        return _proven(value, info)


class ForgetRequest(BaseModel):
    """``POST /v1/rollups`` with ``forget: true`` (format 1): delete what is stored for this id."""

    model_config = _STRICT

    schema_: Literal[1] = Field(alias="schema")
    app: AppName
    machine_id: UUIDText
    forget: Literal[True]

    @property
    def proven(self) -> bool:
        return False

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema_one(cls, value: object) -> object:
        _schema(value)  # 3 or "1": the message names both versions
        return _exactly(1, value, "schema")

    @field_validator("forget", mode="before")
    @classmethod
    def _forget_true(cls, value: object) -> object:
        return _exactly(True, value, "forget")

    @field_validator("machine_id")
    @classmethod
    def _machine_canonical(cls, value: str) -> str:
        return _legacy_machine(value)


class ForgetRequestV2(BaseModel):
    """A deletion request of wire format 2: honoured only with the machine's key."""

    model_config = _STRICT

    schema_: Literal[2] = Field(alias="schema")
    app: AppName
    machine_id: UUIDText
    machine_key: MachineKey
    forget: Literal[True]

    @property
    def proven(self) -> bool:
        return True

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema_two(cls, value: object) -> object:
        return _exactly(2, value, "schema")

    @field_validator("forget", mode="before")
    @classmethod
    def _forget_true(cls, value: object) -> object:
        return _exactly(True, value, "forget")

    @field_validator("machine_id")
    @classmethod
    def _machine_canonical(cls, value: str) -> str:
        return _canonical_uuid(value)

    @field_validator("machine_key")
    @classmethod
    def _key_proves_id(cls, value: str, info: ValidationInfo) -> str:
        return _proven(value, info)


AnyRollup = Union[RollupRequest, RollupRequestV2]
AnyForget = Union[ForgetRequest, ForgetRequestV2]
_TAGS = ("rollup", "forget", "rollup2", "forget2")


def _kind(value: Any) -> str:
    kind = "forget" if isinstance(value, dict) and "forget" in value else "rollup"
    two = isinstance(value, dict) and type(value.get("schema")) is int and value.get("schema") == 2
    return kind + ("2" if two else "")


RequestBody = Annotated[
    Union[
        Annotated[RollupRequest, Tag("rollup")],
        Annotated[ForgetRequest, Tag("forget")],
        Annotated[RollupRequestV2, Tag("rollup2")],
        Annotated[ForgetRequestV2, Tag("forget2")],
    ],
    Discriminator(_kind),
]
BODY_ADAPTER: TypeAdapter[Union[RollupRequest, ForgetRequest, RollupRequestV2, ForgetRequestV2]] = TypeAdapter(
    RequestBody
)


class InvalidBody(ValueError):
    """A body that is not wire format v1; ``field`` is the dotted path of the first problem."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _field_path(loc: tuple[int | str, ...]) -> tuple[str, bool]:
    """Dotted path from a pydantic error location; the second item says "a dict key failed"."""
    parts: list[str] = []
    is_key = False
    for i, item in enumerate(loc):
        if i == 0 and item in _TAGS:
            continue  # the discriminator's tag, not a field
        if item == "[key]":
            is_key = True
            continue
        parts.append("schema" if item == "schema_" else str(item))
    # A client-chosen counter name is never echoed as part of the path: it may be anything.
    if "counts" in parts:
        parts = parts[: parts.index("counts") + 1]
    return ".".join(parts), is_key


_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "missing field",
    "string_pattern_mismatch": "value does not match the allowed pattern",
    "too_long": "too many items",
    "too_short": "too few items",
}


def _message(error: Any, is_key: bool, field: str) -> str:
    kind = error.get("type", "")
    if is_key:
        return "invalid counter name"
    if field.endswith(".counts") and kind != "too_long":
        return f"counts must be integers 0..{MAX_COUNT}"
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", "invalid value"))[:100]
    return str(error.get("msg", "invalid value"))[:100]


def parse_body(data: object) -> AnyRollup | AnyForget:
    """Validate decoded JSON as wire format 2 or 1, or raise :class:`InvalidBody`."""
    if not isinstance(data, dict):
        raise InvalidBody("body must be a JSON object", "")
    try:
        return BODY_ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field, is_key = _field_path(tuple(first["loc"]))
        raise InvalidBody(_message(first, is_key, field), field) from None


def check_days(body: AnyRollup, today: date) -> None:
    """Refuse days more than 35 days before or more than 1 day after ``today`` (server UTC)."""
    for i, report in enumerate(body.reports):
        age = (today - date.fromisoformat(report.day)).days
        if age > MAX_DAYS_OLD:
            raise InvalidBody(f"day is more than {MAX_DAYS_OLD} days old", f"reports.{i}.day")
        if -age > MAX_DAYS_AHEAD:
            raise InvalidBody("day is in the future", f"reports.{i}.day")


def body_json_schema(ref_template: str) -> dict[str, Any]:
    """JSON schema of the request body, for the OpenAPI document."""
    return BODY_ADAPTER.json_schema(ref_template=ref_template)

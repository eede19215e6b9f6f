"""Named tuples without ``collections`` (importing it costs a short CLI ~2 ms) or ``operator``.

``record()`` makes what ``collections.namedtuple`` makes, minus the parts nobody here uses: the
fields by name and index, defaults, keyword arguments, ``repr``, ``_replace``, ``_asdict``,
pickling. Modules declare the type as a ``typing.NamedTuple`` under ``TYPE_CHECKING`` for mypy.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _getter(i: int) -> Any:
    def get(self: tuple[Any, ...]) -> Any:
        return self[i]

    return get


def record(
    typename: str, fields: tuple[str, ...], *, module: str, defaults: tuple[Any, ...] = (), doc: str = ""
) -> Any:
    n = len(fields)
    first_default = n - len(defaults)

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        if len(args) > n:
            raise TypeError(f"{typename}() takes at most {n} arguments ({len(args)} given)")
        values = list(args)
        for i in range(len(args), n):
            name = fields[i]
            if name in kwargs:
                values.append(kwargs.pop(name))
            elif i >= first_default:
                values.append(defaults[i - first_default])
            else:
                raise TypeError(f"{typename}() missing argument {name!r}")
        if kwargs:
            raise TypeError(f"{typename}() got unexpected arguments {sorted(kwargs)}")
        return tuple.__new__(cls, values)

    def __repr__(self: tuple[Any, ...]) -> str:
        return f"{typename}(" + ", ".join(f"{f}={v!r}" for f, v in zip(fields, self)) + ")"

    def __getnewargs__(self: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(self)

    def _replace(self: tuple[Any, ...], **changes: Any) -> Any:
        return type(self)(*(changes.pop(f, v) for f, v in zip(fields, self)), **changes)

    def _asdict(self: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(fields, self))

    namespace: dict[str, Any] = {
        "__slots__": (),
        "__doc__": doc or f"{typename}({', '.join(fields)})",
        "__module__": module,
        "_fields": fields,
        "__new__": __new__,
        "__repr__": __repr__,
        "__getnewargs__": __getnewargs__,
        "_replace": _replace,
        "_asdict": _asdict,
    }
    for i, name in enumerate(fields):
        namespace[name] = property(_getter(i), doc=f"Alias for field number {i}")
    return type(typename, (tuple,), namespace)

"""Types of the compiled fold (core/store/native_fold.c); called by
`core.store.rows.Numbers.fold` only."""

from collections.abc import Callable, Sequence
from typing import Any

def fold(
    state: Any,
    rows: Sequence[Any],
    head: Callable[[int, int], bytes],
    devices: dict[int, bytes],
    types: dict[int, bytes],
    recipes: dict[int, tuple[Any, ...] | None],
    recipe_of: Callable[[int], tuple[Any, ...] | None],
    slow: Callable[[Sequence[Any], bytes | None], None],
    check: Any,
    entity_cls: type,
    field_cls: type,
    head_cls: type,
    /,
) -> None: ...

"""Which store errors mean the caller's text cannot be stored at all.

PostgreSQL's text types refuse the NUL character (U+0000), which JSON, protobuf and URLs carry
without complaint; the statement fails with SQLSTATE 22021 (or 22P05 for a character the database
encoding lacks). That is the caller's input, not a bug: the gRPC layer answers INVALID_ARGUMENT /
400 for it instead of INTERNAL / 500, and the failed statement has changed nothing.
"""

from __future__ import annotations

_SQLSTATES = frozenset({"22021", "22P05"})  # character_not_in_repertoire, untranslatable_character


def is_invalid_text(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if getattr(current, "sqlstate", None) in _SQLSTATES:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False

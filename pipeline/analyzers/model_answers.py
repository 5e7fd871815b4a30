"""A model's answer against its contract: safe repair (fences, chatter around the JSON) and validation.

Only wrapping is removed; the JSON itself is never edited, so a repaired answer says exactly what
the model said.  An answer that still does not match is a `ModelError` of kind ``malformed``.
"""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.analyzers.model_failures import FailureKind, ModelError

Contract = TypeVar("Contract", bound=BaseModel)


_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


def first_balanced(text: str, opener: str = "{") -> str | None:
    """The first balanced ``{...}`` (or ``[...]`` with ``opener="["``) in ``text``; brackets
    inside JSON strings do not count.  None when there is none."""
    closer = {"{": "}", "[": "]"}[opener]
    start = text.find(opener)
    while start != -1:
        depth, in_string, escaped = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == opener:
                depth += 1
            elif ch == closer:
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find(opener, start + 1)
    return None


def first_json_object(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text`` (braces inside JSON strings do not count), or None."""
    return first_balanced(text, "{")


def _candidates(content: str) -> list[str]:
    """The answer as given, then safe repairs: inside a ``` fence, then the first balanced object.

    Only wrapping is removed; the JSON itself is never edited, so a repaired answer says exactly
    what the model said."""
    raw = content.strip()
    out = [raw]
    fenced = _FENCE.search(raw)
    if fenced:
        out.append(fenced.group(1).strip())
    for text in list(out):
        obj = first_json_object(text)
        if obj is not None:
            out.append(obj)
    seen: list[str] = []
    for c in out:
        if c and c not in seen:
            seen.append(c)
    return seen


def _describe_validation(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "answer"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def parse_answer(content: str, contract: type[Contract], *, done_reason: str | None = None) -> Contract:
    """Validate a model's answer against ``contract`` after safe repair; `ModelError` (malformed) otherwise."""
    candidates = _candidates(content or "")
    if not candidates:
        raise ModelError(FailureKind.MALFORMED, "the model gave an empty answer")
    last: ValidationError | None = None
    for text in candidates:
        try:
            return contract.model_validate_json(text)
        except ValidationError as err:
            last = err
    snippet = (content or "").strip().replace("\n", " ")[:80]
    cut = " (answer cut at num_predict tokens)" if done_reason == "length" else ""
    why = _describe_validation(last) if last is not None else "no JSON object"
    raise ModelError(FailureKind.MALFORMED, f"answer does not match the contract{cut}: {why}; began {snippet!r}")

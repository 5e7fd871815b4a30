"""Loading settings: YAML file, then `EDGEWATCH_*` overrides, validated into `Settings`; errors name the key and range."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config.base import range_text
from pipeline.config.settings import Settings
from pipeline.errors import ConfigError


def _field_info(loc: tuple[Any, ...]) -> Any:
    """The pydantic FieldInfo at an error location, to state the full allowed range."""
    model: Any = Settings
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or fields is None or part not in fields:
            return info
        info = fields[part]
        model = info.annotation
    return info


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    ctx = err.get("ctx") or {}
    if any(b in ctx for b in ("ge", "gt", "le", "lt")):
        info = _field_info(tuple(err["loc"]))
        allowed = range_text(info).strip(" ()") if info is not None else ""
        if not allowed:
            allowed = ", ".join(f"{sym} {ctx[b]}" for b, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if b in ctx)
        return f"'{key}' must be {allowed.replace(', ', ' and ')} (got {err.get('input')!r})"
    return f"'{key}': {err['msg']} (got {err.get('input')!r})"


def settings_from_dict(data: dict[str, Any] | None) -> Settings:
    try:
        return Settings.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"invalid config: {problems}") from None


ENV_PREFIX = "EDGEWATCH_"


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``EDGEWATCH_SECTION__KEY=value`` variables as a nested mapping (values parsed as YAML scalars).

    ``EDGEWATCH_STUDENT__HOST=http://gpu:11434`` sets ``student.host``;
    ``EDGEWATCH_ESCALATION__MIN_CONFIDENCE=0.6`` sets ``escalation.min_confidence``.  Secrets
    (camera URLs, the MQTT password) belong here rather than in the YAML file.
    ``EDGEWATCH_DEBUG`` is the CLI's own switch and not a setting.
    """
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "EDGEWATCH_DEBUG":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if not all(path):
            raise ConfigError(f"environment variable {name}: empty key part (use EDGEWATCH_SECTION__KEY)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) and path[-1] not in ("cameras", "zones", "safety_triggers", "profiles"):
            value = raw  # a URL with a colon is a string, not a mapping
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another EDGEWATCH_ variable")
        node[path[-1]] = value
    return overrides


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: Path | str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from a YAML file (defaults when ``path`` is None), then apply ``EDGEWATCH_*`` overrides."""
    data: Any = None
    where = ""
    if path is not None:
        p = Path(path)
        where = str(p)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"config file {p} is not valid YAML{at}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {p} is not UTF-8 text") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping of keys, not {type(data).__name__}")
    overrides = env_overrides(os.environ if environ is None else environ)
    if overrides:
        where = f"{where} + EDGEWATCH_* environment" if where else "EDGEWATCH_* environment"
    try:
        return settings_from_dict(_merge(data or {}, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None

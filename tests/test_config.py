"""The one config model: defaults equal the documented values, bad files give one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config.docs import ESSENTIALS, example_yaml, reference_markdown
from pipeline.config.loading import load_settings, settings_from_dict
from pipeline.config.settings import Settings
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_documented_routing_values() -> None:
    s = Settings()
    assert s.escalation.min_confidence == 0.5
    assert s.escalation.safety_triggers == ["fire", "weapon", "fall", "intrusion", "smoke", "blood"]
    assert s.escalation.audit_every == 480
    assert s.teacher.max_keyframes == 3 and s.escalation.flip_limit == 1000  # from docs/EVALUATION.md
    assert s.teacher.max_queue_depth == 15
    assert s.teacher.batch_window_ms == 2000
    assert s.student.max_concurrent == 4
    assert s.student.timeout_ms == 3000
    assert s.capture.sample_fps == 2.0
    assert s.gate.max_skip_s == 10.0
    assert s.window.window_s == 10.0
    assert s.encode.max_side == 896 and s.encode.jpeg_quality == 85
    assert s.student.model == "gemma4:e2b" and s.teacher.model == "gemma4:26b"


def test_example_config_is_generated_from_the_model_and_loads_to_defaults() -> None:
    example = ROOT / "config.example.yaml"
    assert example.read_text(encoding="utf-8") == example_yaml(), "regenerate: edgewatch config example > config.example.yaml"
    assert load_settings(example) == Settings()


def test_the_example_is_the_short_essentials_surface_and_the_reference_has_every_key() -> None:
    import yaml

    example = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    leaves = [k for section, v in example.items() for k in (v if isinstance(v, dict) else [section])]
    assert set(example) == set(ESSENTIALS) and len(leaves) <= 25
    reference = (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    assert reference == reference_markdown(), "regenerate: edgewatch config reference > docs/CONFIG.md"

    def keys(model: type, prefix: str) -> list[str]:
        out = []
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, Settings.__mro__[1]):
                out += keys(annotation, f"{prefix}{name}.")
            else:
                out.append(prefix + name)
        return out

    missing = [k for k in keys(Settings, "") if f"| `{k}` |" not in reference]
    assert not missing, f"keys the reference does not document: {missing}"


def test_every_field_is_described() -> None:
    def walk(model: type) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, Settings.__mro__[1]):
                walk(annotation)
            elif name not in Settings.model_fields:
                assert info.description, f"{model.__name__}.{name} has no description"

    walk(Settings)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"gate": {"treshold": 3}}, "unknown key 'gate.treshold'"),
        ({"escalation": {"min_confidence": 1.5}}, "'escalation.min_confidence' must be >= 0.0 and <= 1.0"),
        ({"capture": {"sample_fps": 0}}, "'capture.sample_fps' must be > 0"),
        ({"escalation": {"persistence_k": 5, "persistence_n": 3}}, "persistence_k (5) must be <= persistence_n (3)"),
        ({"zones": [{"name": "door", "points": [[0, 0], [2, 0], [1, 1]]}]}, "must lie in 0..1"),
        ({"student": {"backend": "magic"}}, "'student.backend'"),
    ],
)
def test_bad_values_name_the_key_and_range(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("gate: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_settings(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(listy)
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_settings(binary)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(empty) == Settings()


def test_environment_overrides_any_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("student:\n  host: http://from-file:11434\n")
    env = {"EDGEWATCH_STUDENT__HOST": "http://gpu-box:11434", "EDGEWATCH_ESCALATION__MIN_CONFIDENCE": "0.6",
           "EDGEWATCH_MQTT__PASSWORD": "s3cret", "EDGEWATCH_DEBUG": "1", "OTHER": "x"}
    s = load_settings(cfg, env)
    assert s.student.host == "http://gpu-box:11434"  # the environment wins over the file
    assert s.escalation.min_confidence == 0.6 and s.mqtt.password == "s3cret"
    with pytest.raises(ConfigError, match="unknown key 'student.hots'"):
        load_settings(None, {"EDGEWATCH_STUDENT__HOTS": "x"})
    with pytest.raises(ConfigError, match="escalation.min_confidence"):
        load_settings(None, {"EDGEWATCH_ESCALATION__MIN_CONFIDENCE": "7"})

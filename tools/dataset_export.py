"""Dataset export: a chat-format dataset (ShareGPT or messages) of the teacher's answers in the
student's contract, split by camera and time with no near-duplicate frame across the split.
"""

from __future__ import annotations
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from pipeline.learning.agreement_store import AgreementRecord, hamming
from pipeline.config.learning import LearningConfig
from pipeline.errors import UsageError
from pipeline.records import StudentAnswer
from tools.readiness import classes_of, good_records


FORMATS = ("sharegpt", "messages")


@dataclass(frozen=True)
class ExportSummary:
    out_dir: Path
    train: int
    validation: int
    dropped_near_duplicates: int
    card: Path


def teacher_answer_json(rec: AgreementRecord) -> str:
    """The teacher's answer in the student's contract (StudentAnswer, by alias)."""
    answer = StudentAnswer(observations=list(rec.teacher_observations)[:20], safety_flags=sorted(rec.teacher_flags)[:10],
                           confidence=round(min(1.0, max(0.0, rec.teacher_confidence)), 3))
    return answer.model_dump_json(by_alias=True)


def split_records(records: Sequence[AgreementRecord], validation_fraction: float, dedupe_distance: int
                  ) -> tuple[list[AgreementRecord], list[AgreementRecord], int]:
    """Per camera, the latest ``validation_fraction`` (by time stored) go to validation; then
    train records whose image is a near-duplicate of any validation image are dropped."""
    by_camera: dict[str, list[AgreementRecord]] = {}
    for rec in records:
        by_camera.setdefault(rec.camera, []).append(rec)
    train, val = [], []
    for cam in sorted(by_camera):
        recs = sorted(by_camera[cam], key=lambda r: (r.stored_at, r.id))
        n_val = int(round(len(recs) * validation_fraction))
        if len(recs) >= 2:
            n_val = min(len(recs) - 1, max(1, n_val))
        cut = len(recs) - n_val
        train += recs[:cut]
        val += recs[cut:]
    val_hashes = [r.newest_keyframe.phash for r in val]
    kept = [r for r in train if all(hamming(r.newest_keyframe.phash, h) > dedupe_distance for h in val_hashes)]
    return kept, val, len(train) - len(kept)


def _sample(rec: AgreementRecord, image: str, system: str, fmt: str) -> dict[str, Any]:
    from pipeline.analyzers.prompts import student_user_text

    answer = teacher_answer_json(rec)
    meta = {"id": f"{rec.camera}:{rec.id}", "camera": rec.camera, "escalation_id": rec.escalation_id,
            "verdict": rec.verdict.value, "skill_version": rec.skill_version, "teacher_model": rec.teacher_model}
    if fmt == "sharegpt":
        return {"conversations": [{"from": "human", "value": "<image>" + student_user_text()},
                                  {"from": "gpt", "value": answer}],
                "system": system, "images": [image], "meta": meta}
    return {"messages": [{"role": "system", "content": [{"type": "text", "text": system}]},
                         {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": student_user_text()}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
            "images": [image], "meta": meta}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_dataset(records: Sequence[AgreementRecord], out_dir: Path, fmt: str, *, system_prompt: str, prompt_version: str,
                   cfg: LearningConfig) -> ExportSummary:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    good = good_records(records)
    if not good:
        raise UsageError("nothing to export: the store holds no good examples")
    train, val, dropped = split_records(good, cfg.validation_fraction, cfg.dedupe_distance)
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("validation", val)):
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for rec in part:
                src = rec.newest_keyframe.path
                rel = f"images/{rec.camera}-{rec.id}{src.suffix or '.jpg'}"
                shutil.copyfile(src, out_dir / rel)
                fh.write(json.dumps(_sample(rec, rel, system_prompt, fmt), ensure_ascii=False) + "\n")
    info_key = "edgewatch_student"
    if fmt == "sharegpt":
        info = {f"{info_key}_{n}": {"file_name": f"{n}.jsonl", "formatting": "sharegpt",
                                   "columns": {"messages": "conversations", "system": "system", "images": "images"}}
                for n in ("train", "validation")}
    else:
        info = {f"{info_key}_{n}": {"file_name": f"{n}.jsonl", "formatting": "openai-messages",
                                   "columns": {"messages": "messages", "images": "images"}} for n in ("train", "validation")}
    (out_dir / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    card = out_dir / "README.md"
    card.write_text(_card(train, val, dropped, fmt, prompt_version), encoding="utf-8")
    return ExportSummary(out_dir, len(train), len(val), dropped, card)


def _card(train: Sequence[AgreementRecord], val: Sequence[AgreementRecord], dropped: int, fmt: str, prompt_version: str) -> str:
    every = [*train, *val]

    def counts(part: Sequence[AgreementRecord]) -> str:
        c = Counter(x for r in part for x in classes_of(r))
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "-"

    start, end = (min(r.stored_at for r in every), max(r.stored_at for r in every)) if every else (0.0, 0.0)
    lines = [
        "# edgewatch student fine-tuning data",
        "",
        f"- format: **{fmt}** (`train.jsonl`, `validation.jsonl`; images in `images/`, paths relative to this folder)",
        f"- examples: train {len(train)}, validation {len(val)}; {dropped} train example(s) dropped as near-duplicates of a validation frame",
        f"- classes (teacher's flags; 'none' = nothing unsafe): train {counts(train)}; validation {counts(val)}",
        f"- verdicts: {', '.join(f'{k} {v}' for k, v in sorted(Counter(r.verdict.value for r in every).items()))}",
        f"- sources: cameras {', '.join(sorted({r.camera for r in every}))}; teacher {', '.join(sorted({r.teacher_model for r in every}))}; "
        f"student {', '.join(sorted({r.student_model for r in every}))}",
        f"- skill (prompt) versions of the reviewed runs: {', '.join(sorted({r.skill_version for r in every}))}; "
        f"system prompt in the data: {prompt_version} (the active skill)",
        f"- date range (stored): {_iso(start)} .. {_iso(end)}",
        "- split: per camera by time (each camera's latest examples are validation); no train frame within the "
        "perceptual-hash distance of a validation frame",
        "- assistant turns are the teacher's answers in the student's contract (StudentAnswer JSON: observations, "
        "safetyFlags, confidence = the teacher's)",
        "",
        "Load: LLaMA-Factory (`dataset_info.json` beside the data), or any chat template taking "
        "system/user/assistant turns with images (e.g. `datasets.load_dataset('json', data_files=...)`).",
    ]
    return "\n".join(lines) + "\n"

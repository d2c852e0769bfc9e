"""`cifarlab runs`: the runs under a folder, one row each — what was trained, how well, and how
it ended (state.json, written by the run folder when a run ends; a live lock means running).
Tuning studies (RUNS/tune/STUDY/) are one row each, their trials with `expand`. A folder that is
not a run is skipped; a run whose files cannot be read is listed as damaged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError
from cifarlab.runs import RunFolder, StudyFolder

COLUMNS = ("name", "dataset", "preset", "model", "epochs", "best_val", "test_top1",
           "train_time", "date", "state")


def run_row(path: Path, name: str | None = None) -> dict[str, Any]:
    """One run folder's row (see COLUMNS), plus `path` and `detail`."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(name=name or path.name, path=str(path), detail="")
    folder = RunFolder(path)
    try:
        settings = folder.settings(missing_ok=True)
        config = settings.to_dict() if settings is not None else {}
        metrics = folder.metrics() or {}
        epochs = folder.rows()
        row["state"], row["detail"] = folder.status()
        started = folder.started()
    except (OSError, CifarlabError) as e:
        row.update(state="damaged", detail=str(e))
        return row
    vals = [r["val_acc"] for r in epochs if r.get("val_acc") is not None]
    row.update(
        dataset=config.get("dataset"), preset=config.get("preset"), model=config.get("model"),
        epochs=f"{len(epochs)}/{config['epochs']}" if "epochs" in config else len(epochs),
        best_val=max(vals) if vals else None,
        test_top1=metrics.get("test_top1"),
        train_time=metrics.get("train_seconds") or (epochs[-1].get("elapsed_seconds")
                                                    if epochs else None),
        date=started.strftime("%Y-%m-%d %H:%M"))
    return row


def study_rows(path: Path, prefix: str, expand: bool) -> list[dict[str, Any]]:
    """A tuning study: one row, its best trial's figures (validation picks it), or with
    `expand` one row per trial too."""
    study = StudyFolder(path)
    trials = [run_row(p, f"{prefix}{path.name}/{p.name}") for p in study.trials()]
    summary = study.summary()
    scored = [t for t in trials if t["best_val"] is not None]
    best = max(scored, key=lambda t: t["best_val"]) if scored else (trials[0] if trials else {})
    row = {**dict.fromkeys(COLUMNS), **{k: best.get(k) for k in COLUMNS}}
    states = [t["state"] for t in trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    row.update(name=f"{prefix}{path.name}", path=str(path), test_top1=summary.get("test_top1"),
               epochs=f"{len(trials)} trials", state="study",
               detail=f"{counts}; best {best.get('name', '-')}")
    return [row] + (trials if expand else [])


def list_runs(root: str | os.PathLike = "runs", expand: bool = False) -> list[dict[str, Any]]:
    """Rows for the runs and studies under `root` (and one level of plain folders below it,
    such as runs/tune/)."""
    root = Path(root)
    rows: list[dict[str, Any]] = []

    def visit(folder: Path, prefix: str, depth: int) -> None:
        # not into symbolic links: they may lead out of the folder, or round in a loop
        for p in sorted(q for q in folder.iterdir() if q.is_dir() and not q.is_symlink()):
            if RunFolder.holds_run(p):
                rows.append(run_row(p, prefix + p.name))
            elif StudyFolder.holds_study(p):
                rows.extend(study_rows(p, prefix, expand))
            elif depth < 2:
                visit(p, f"{prefix}{p.name}/", depth + 1)

    if root.is_dir():
        visit(root, "", 1)
    return rows


def sort_rows(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    """By `column`: numbers high to low, text A to Z, empty cells last."""
    numeric = column in ("best_val", "test_top1", "train_time")
    filled = [r for r in rows if r.get(column) is not None]
    empty = [r for r in rows if r.get(column) is None]
    key = (lambda r: r[column]) if numeric else (lambda r: str(r[column]))  # mixed types
    return sorted(filled, key=key, reverse=numeric) + empty


def format_table(rows: list[dict[str, Any]]) -> str:
    def cell(key: str, value: Any) -> str:
        if value is None:
            return "-"
        if key in ("best_val", "test_top1"):
            return f"{value:.2f}%"
        if key == "train_time":
            return f"{value / 60:.1f} min"
        return str(value)

    table = [list(COLUMNS)] + [[cell(k, r.get(k)) for k in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
             for line in table]
    notes = [f"  {r['name']}: {r['detail']}" for r in rows
             if r.get("detail") and r["state"] in ("stopped", "stopped or failed", "failed",
                                                   "damaged")]
    return "\n".join(lines + (["", *notes] if notes else []))

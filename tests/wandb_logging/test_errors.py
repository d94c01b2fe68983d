"""The error analysis's W&B layout (bar charts, per-class table, scalars, captions), read back from an offline run.

These are layout tests: the ``ErrorAnalysis`` is built by hand, and what the run stored is compared with it
value by value. The end-to-end tests, where W&B's record is compared with a real ``CocoMetric``'s
``result.errors``, are in ``test_errors_end_to_end.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb

from ignite_det.error_analysis.analysis import MAIN_ERRORS, SPECIAL_ERRORS, ClassErrors, ErrorAnalysis
from ignite_det.wandb_logging.errors import ERROR_CLASS_COLUMNS, error_payload, fp_caption
from tests import wandb_records as wr

MAIN = {"Cls": 0.125, "Loc": 0.0625, "Both": 0.0, "Dupe": 0.001953125, "Bkg": 0.25, "Miss": 0.03125}
SPECIAL = {"FalsePos": 0.375, "FalseNeg": 0.1875}
COUNTS = {"Cls": 4, "Loc": 3, "Both": 0, "Dupe": 1, "Bkg": 7, "Miss": 2}


def _class(category_id: int, name: str, ap: float, scale: float) -> ClassErrors:
    return ClassErrors(
        category_id=category_id,
        name=name,
        ap=ap,
        main={k: v * scale for k, v in MAIN.items()},
        special={k: v * scale for k, v in SPECIAL.items()},
        counts={k: v + category_id for k, v in COUNTS.items()},
    )


ERRORS = ErrorAnalysis(
    mode="coco",
    iou_threshold=0.5,
    background_threshold=0.1,
    ap=0.5,
    main=MAIN,
    special=SPECIAL,
    counts=COUNTS,
    per_class=(_class(1, "cat", 0.75, 0.5), _class(3, "dog", -1.0, float("nan"))),
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("wandb_errors")
    run = wandb.init(project="ignite-det-tests", mode="offline", dir=str(tmp_path), settings={"silent": True})
    run.log(error_payload(wandb, ERRORS, "val"), step=3)
    run.finish()
    return wr.find_run_dir(tmp_path)


@pytest.mark.parametrize(
    ("which", "names", "values"), [("main", MAIN_ERRORS, MAIN), ("special", SPECIAL_ERRORS, SPECIAL)]
)
def test_bar_charts_hold_each_bins_dap_in_tides_order(run_dir: Path, which: str, names: tuple, values: dict) -> None:
    chart = wr.charts(run_dir)[f"val/errors/{which}"]
    assert chart["panel_config"]["panelDefId"] == "wandb/bar/v0"
    assert chart["panel_config"]["fieldSettings"] == {"label": "error", "value": "dAP"}
    assert "AP 0.5000" in chart["panel_config"]["stringSettings"]["title"]
    (row,) = wr.history_rows(run_dir)
    columns, rows = wr.load_table(run_dir, row[wr.chart_table_key(chart)])
    assert columns == ["error", "dAP"]
    assert rows == [[name, values[name]] for name in names]


def test_per_class_table_has_every_bin_per_class(run_dir: Path) -> None:
    (row,) = wr.history_rows(run_dir)
    columns, rows = wr.load_table(run_dir, row["val/errors/per_class"])
    assert columns == list(ERROR_CLASS_COLUMNS)
    assert len(rows) == len(ERRORS.per_class)
    for got, c in zip(rows, ERRORS.per_class):
        record = dict(zip(columns, got))
        assert (record["category_id"], record["class"]) == (c.category_id, c.name)
        assert record["AP"] == (c.ap if c.ap >= 0 else None)
        defined = {k: (v if v == v else None) for k, v in (*c.main.items(), *c.special.items())}  # NaN: empty
        assert {name: record[f"dAP {name}"] for name in (*MAIN_ERRORS, *SPECIAL_ERRORS)} == defined
        assert {name: record[f"count {name}"] for name in MAIN_ERRORS} == c.counts


def test_scalars_per_bin(run_dir: Path) -> None:
    (row,) = wr.history_rows(run_dir)
    assert row["_step"] == 3
    assert row["val/errors/AP"] == ERRORS.ap
    assert {name: row[f"val/errors/dAP/{name}"] for name in MAIN_ERRORS} == MAIN
    assert {name: row[f"val/errors/dAP/{name}"] for name in SPECIAL_ERRORS} == SPECIAL
    assert {name: row[f"val/errors/count/{name}"] for name in MAIN_ERRORS} == COUNTS


def test_false_positive_captions_name_the_bin() -> None:
    cls, loc, both, dupe, bkg = range(5)
    assert [fp_caption(e, "dog") for e in (cls, loc, both, dupe, bkg)] == [
        "FP cls: dog",
        "FP loc",
        "FP both",
        "FP dupe",
        "FP bkg",
    ]


def test_an_undefined_dap_is_left_out_of_the_scalars() -> None:
    from dataclasses import replace

    from ignite_det.wandb_logging.errors import error_scalars

    scalars = error_scalars(replace(ERRORS, main={**MAIN, "Loc": float("nan")}), "val")
    assert "val/errors/dAP/Loc" not in scalars
    assert scalars["val/errors/dAP/Cls"] == MAIN["Cls"] and scalars["val/errors/count/Loc"] == COUNTS["Loc"]

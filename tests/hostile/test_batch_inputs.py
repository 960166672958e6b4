"""lmk-batch refuses bad input with one ``error:`` line, before Ray starts and before any
file is written: a user's folder as --out, a dataset of another model, a missing source, a
list without a ``path`` column, GPU flags without a GPU EP, a batch of no crops."""

from __future__ import annotations

import json

import pytest

from tests.hostile.conftest import Case, check_case


def _users_folder(work, _assets):
    (work / "mine").mkdir()
    (work / "mine" / "photo-notes.txt").write_text("keep me\n")


def _other_models_dataset(work, _assets):
    (work / "ds").mkdir()
    marker = {"format": "lmk-batch/1", "model": "0123456789abcdef", "model_file": "old.onnx"}
    (work / "ds" / "lmk-batch.json").write_text(json.dumps(marker))


CASES = [
    Case(
        "batch-out-is-a-users-folder",
        "lmk-batch",
        ["{assets}/images", "--out", "{work}/mine"],
        setup=_users_folder,
        match="is not an lmk-batch dataset",
    ),
    Case(
        "batch-out-is-a-users-folder-subprocess",
        "lmk-batch",
        ["{assets}/images", "--out", "{work}/mine"],
        setup=_users_folder,
        match="is not an lmk-batch dataset",
        subprocess=True,
    ),
    Case(
        "batch-out-is-a-file",
        "lmk-batch",
        ["{assets}/images", "--out", "{work}/taken"],
        setup=lambda work, _a: (work / "taken").write_text("mine\n"),
        match="not a folder",
    ),
    Case(
        "batch-dataset-of-another-model",
        "lmk-batch",
        ["{assets}/images", "--out", "{work}/ds"],
        setup=_other_models_dataset,
        match="holds results of model 0123456789abcdef",
    ),
    Case(
        "batch-source-missing",
        "lmk-batch",
        ["{work}/nowhere", "--out", "{work}/ds"],
        match="input not found",
    ),
    Case(
        "batch-csv-without-path-column",
        "lmk-batch",
        ["{work}/list.csv", "--out", "{work}/ds"],
        setup=lambda work, _a: (work / "list.csv").write_text("file\na.png\n"),
        match="no 'path' column",
    ),
    Case(
        "batch-folder-without-media",
        "lmk-batch",
        ["{work}/empty", "--out", "{work}/ds"],
        setup=lambda work, _a: (work / "empty").mkdir(),
        match="no image or video in folder",
    ),
    Case(
        "batch-gpus-with-cpu-ep",
        "lmk-batch",
        ["{assets}/images", "--out", "{work}/ds", "--ep", "cpu", "--gpus-per-worker", "1"],
        match="--gpus-per-worker goes with --ep cuda or tensorrt",
    ),
    Case(
        "batch-ep-this-machine-lacks",  # the workers run here: said before Ray starts
        "lmk-batch",
        ["{assets}/images", "--out", "{work}/ds", "--ep", "cuda"],
        match="--ep cuda is not available here",
    ),
    Case(
        "batch-size-zero",
        "lmk-batch",
        ["{assets}/images", "--out", "{work}/ds", "--batch-size", "0"],
        match="--batch-size",
    ),
    Case(
        "batch-model-not-lmk",
        "lmk-batch",
        ["{assets}/images", "--out", "{work}/ds", "--model", "{assets}/notes.txt"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_batch_inputs(case, work, assets):
    check_case(case, work, assets)

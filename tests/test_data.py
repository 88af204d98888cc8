"""Dataset cache (built once, damage reported), windows and the resume-exact sampler."""

import pytest
import torch
from datasets import Dataset

from toyrepro.core.data import DamagedCacheError, RandomWindows, StepOffsetSampler, cached_dataset
from toyrepro.core.stage import cached_stage


def test_dataset_is_built_once_and_reused(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return Dataset.from_dict({"x": [1, 2, 3]})

    a = cached_dataset(tmp_path, "toy", {"n": 3}, build)
    b = cached_dataset(tmp_path, "toy", {"n": 3}, build)
    assert a["x"] == b["x"] == [1, 2, 3] and len(calls) == 1
    cached_dataset(tmp_path, "toy", {"n": 4}, build)  # other params, other entry
    assert len(calls) == 2


def test_damaged_dataset_cache_names_the_path_and_the_fix(tmp_path):
    cached_dataset(tmp_path, "toy", {"n": 1}, lambda: Dataset.from_dict({"x": [1]}))
    (entry,) = [p for p in (tmp_path / "datasets").iterdir() if p.is_dir()]
    for f in entry.glob("*.arrow"):
        f.write_bytes(b"garbage")
    with pytest.raises(DamagedCacheError, match=r"is damaged.*rm -r"):
        cached_dataset(tmp_path, "toy", {"n": 1}, lambda: Dataset.from_dict({"x": [1]}))


def test_failed_stage_build_leaves_nothing_and_success_is_cached(tmp_path):
    def bad(d):
        (d / "half.pt").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached_stage(tmp_path, "sft", {"a": 1}, bad)
    left = sorted(p.name for p in (tmp_path / "stages").iterdir())
    assert len(left) == 1 and left[0].startswith("sft-") and left[0].endswith(".lock"), (
        f"only the lock may remain, no half-built artefact (its temp dir is .sft-*.tmp): {left}")
    built = []
    p1 = cached_stage(tmp_path, "sft", {"a": 1}, lambda d: (built.append(1), (d / "m.pt").write_text("ok")))
    p2 = cached_stage(tmp_path, "sft", {"a": 1}, lambda d: built.append(1))
    assert p1 == p2 and (p1 / "m.pt").read_text() == "ok" and built == [1]


def test_windows_depend_on_seed_and_index_only():
    tokens = torch.arange(1000)
    a, b = RandomWindows(tokens, 16, 100, seed=1), RandomWindows(tokens, 16, 100, seed=1)
    assert torch.equal(a[7], b[7]) and a[7].shape == (17,)
    assert torch.equal(a[7][1:], a[7][:-1] + 1), "a window is contiguous"
    assert not torch.equal(a[7], RandomWindows(tokens, 16, 100, seed=2)[7])
    with pytest.raises(ValueError, match="shorter than block_size"):
        RandomWindows(torch.arange(10), 16, 1, seed=0)


def test_sampler_starts_at_the_global_step():
    step = {"v": 0}
    s = StepOffsetSampler(20, batch_size=4, offset=lambda: step["v"])
    assert list(s)[:3] == [0, 1, 2]
    step["v"] = 3
    assert list(s) == list(range(12, 20))

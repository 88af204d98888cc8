"""Reading back the dashboards of the Slurm sweep (test_slurm.py): what W&B wrote (its own
transaction log, parsed with W&B's protobuf schema), TensorBoard's HPARAMS tab and the
`toyrepro report` HTML page, the last two in headless Chromium (Debian's, driven by Playwright).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_slurm import cluster, slurm_sweep  # noqa: F401  (cluster: the autouse check that it is up)

from conftest import claim_values, run_dirs, scorecard

pytestmark = pytest.mark.slurm

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def sweep(tmp_path_factory, cache_dir) -> Path:
    return slurm_sweep(tmp_path_factory.getbasetemp() / "slurm_sweep", cache_dir)[0]


@contextlib.contextmanager
def browser_page(user_data_dir: Path):
    """A page of a fresh headless Chromium (never a downloaded browser: Debian's binary)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is missing: `make test-slurm` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(user_data_dir), executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000})
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


# ---- W&B: its transaction log (.wandb, a LevelDB-style record log of wandb_internal_pb2.Record)

def wandb_records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_wandb_run(path: Path) -> dict:
    run: dict = {"summary": {}, "history": []}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.update(group=r.run.run_group, job_type=r.run.job_type, name=r.run.display_name,
                       config={item_key(i): json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "history":
            run["history"].append({item_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            run["summary"].update({item_key(i): json.loads(i.value_json) for i in r.summary.update})
    return run


def test_wandb_has_one_run_per_job_and_stage_with_config_metrics_and_claims(sweep):
    runs = run_dirs(sweep)
    assert len(runs) == 4
    for run_dir in runs:
        (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")  # gpt has one stage: one W&B run per job
        wb = read_wandb_run(log)
        card = scorecard(run_dir)
        assert (wb["group"], wb["job_type"], wb["name"]) == ("gpt", "train", f"{run_dir.name}-train")
        assert wb["config"]["seed"] == card["seed"]
        assert wb["config"]["optim"] == card["config"]["optim"], "the resolved config is the run config"
        losses = [h["train/loss"] for h in wb["history"] if "train/loss" in h]
        assert len(losses) >= 3 and losses[-1] < losses[0], "the training curve reached W&B"
        assert {k[len("claim/"):]: v for k, v in wb["summary"].items()
                if k.startswith("claim/") and not k.endswith("/passed")} == claim_values(card)
        assert wb["summary"]["scorecard/passed"] is card["passed"]


# ---- TensorBoard: a real server on 127.0.0.1 over the sweep dir

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tensorboard(sweep, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--host", "127.0.0.1",
                             "--port", str(port), "--reload_interval", "0"],
                            stdout=open(tmp_path / "tensorboard.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                runs = json.loads(urllib.request.urlopen(f"{url}/data/runs", timeout=5).read())
                if sum(r.endswith("/scorecard") for r in runs) == 4:
                    break
            except OSError:
                pass
            assert time.time() < deadline and proc.poll() is None, (tmp_path / "tensorboard.log").read_text()
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tensorboard_hparams_lists_every_job_with_its_claims(sweep, tensorboard, tmp_path):
    runs = run_dirs(sweep)
    request = json.dumps({"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
                          "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
    groups = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"{tensorboard}/data/plugin/hparams/session_groups", data=request.encode(),
        headers={"Content-Type": "application/json"}), timeout=60).read())["sessionGroups"]
    by_run = {g["name"].split("/")[0]: g for g in groups}
    assert sorted(by_run) == sorted(r.name for r in runs), "one HPARAMS row per job"
    for r in runs:
        card, g = scorecard(r), by_run[r.name]
        assert g["hparams"]["seed"] == card["seed"]
        assert g["hparams"]["optim.lr"] == pytest.approx(card["config"]["optim"]["lr"])
        metrics = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
        for cid, v in claim_values(card).items():
            assert metrics[f"claim/{cid}"] == pytest.approx(v, rel=1e-6)  # TensorBoard stores float32

    with browser_page(tmp_path / "chromium") as page:
        page.goto(f"{tensorboard}/#hparams")
        for r in runs:  # the table view's "Trial ID" column
            page.get_by_text(f"{r.name}/tensorboard/scorecard", exact=True).wait_for(timeout=60_000)
        assert page.get_by_text("claim/beats_unigram").count() >= 1
        page.screenshot(path=str(tmp_path / "tensorboard_hparams.png"), full_page=True)
    assert (tmp_path / "tensorboard_hparams.png").stat().st_size > 10_000


def test_report_html_shows_every_job_in_the_browser(sweep, tmp_path):
    out = tmp_path / "report" / "report.md"
    proc = subprocess.run([sys.executable, "-m", "toyrepro", "report", str(sweep), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = run_dirs(sweep)
    assert "2 settings (config keys that differ: `optim.lr`)" in out.read_text()

    with browser_page(tmp_path / "chromium") as page:
        page.goto(out.with_suffix(".html").as_uri())
        assert sorted(page.locator("tr.run").evaluate_all("rows => rows.map(r => r.dataset.label)")) == \
            sorted(r.name for r in runs)
        assert page.locator("tr.setting").evaluate_all("rows => rows.map(r => r.dataset.label)") == \
            ["optim.lr=0.001", "optim.lr=0.003"]
        widths = page.locator("img").evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 2 and all(w > 100 for w in widths), "both plots render"
        for r in runs:
            seed = scorecard(r)["seed"]
            row = page.locator(f'tr.run[data-label="{r.name}"]')
            assert row.locator("td").nth(2).inner_text() == str(seed)
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000

"""Multi-process training goes through Lightning DDP: 2 CPU ranks stay in sync."""

import os
import subprocess
import sys
from pathlib import Path

import torch


def test_ddp_two_cpu_processes_agree(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PL_DISABLE_FORK="1")
    worker = Path(__file__).with_name("ddp_worker.py")
    proc = subprocess.run([sys.executable, str(worker), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert not torch.equal(r0["before"], r0["after"]), "training changed the parameters"
    torch.testing.assert_close(r0["after"], r1["after"], atol=0, rtol=0)

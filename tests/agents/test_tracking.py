"""Experiment tracking: an offline wandb run never touches the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import REPO

# Records every host name resolved in the process, wandb's threads and exit hooks included.
OFFLINE_RUN = """
import json, socket, sys
from pathlib import Path
hosts = []
_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    if host not in ("localhost", "127.0.0.1", "::1", None):
        hosts.append(host)
        raise socket.gaierror("network disabled by the test")
    return _getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
import atexit
# registered first, so it runs last: after wandb's own exit hooks have flushed
atexit.register(lambda: print(json.dumps({"hosts": hosts})))
from agents.config import LoggerConfig, WandbMode
from agents.tracking import start_tracker
run_dir = Path(sys.argv[1])
tracker = start_tracker(LoggerConfig(mode=WandbMode.auto), run_dir, {"a": 1}, "t", "train")
assert tracker.active
for step in range(3):
    tracker.log({"x": float(step)}, step=step)
(run_dir / "f.txt").write_text("x")
from agents.report import _figure
figure = _figure()
figure.subplots().plot([0, 1], [1, 2])
tracker.log_figure("val/equity_curve", figure, step=3)
tracker.log_table("metrics", ["a"], [["1"]])
(run_dir / "r.html").write_text("<p>x</p>")
tracker.log_html("report", run_dir / "r.html")
tracker.summary({"best": 1.0})
tracker.log_artifact("model-t", "model", [run_dir / "f.txt"], {"k": 1})
tracker.finish()
"""


def test_an_offline_wandb_run_resolves_no_host(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_RUN, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["hosts"] == []

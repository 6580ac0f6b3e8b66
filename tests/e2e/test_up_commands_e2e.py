"""What `looking-glass up --embedded STATE` tells the user to run in another terminal works there
(issue 12 of the seventh session: it printed `submit AOI.geojson --wait`, which without
``--embedded STATE`` answered "no embedded run"); a second `up` on the same state file names
``--embedded`` for a state file of its own."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

LG = [sys.executable, "-m", "looking_glass.cli.main"]


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LG_EMBEDDED_STATE"}  # another terminal: no variable
    return {**env, "HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _wait_for_line(proc, prefix: str, timeout: float = 120.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"`up` printed no {prefix!r} line (exit {proc.poll()}): {proc.stderr.read()}")


def test_the_commands_up_prints_reach_its_run_from_another_terminal(tmp_path):
    state = tmp_path / "my state.json"  # a space: the printed path must be quoted
    env = _env(tmp_path / "home")
    up = subprocess.Popen([*LG, "up", "--embedded", str(state), "--workers", "1"], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = _wait_for_line(up, "in another terminal: ")
        commands = [shlex.split(c.strip()) for c in line.removeprefix("in another terminal: ").split(";")]
        assert commands[0][:3] == ["looking-glass", "submit", "AOI.geojson"] and str(state) in commands[0]
        jobs = commands[1]
        assert jobs[:2] == ["looking-glass", "jobs"]
        done = subprocess.run([*LG, *jobs[1:]], env=env, text=True, capture_output=True, timeout=120)
        assert done.returncode == 0 and "(no jobs on" in done.stdout, done.stderr

        second = subprocess.run([*LG, "up", "--embedded", str(state)], env=env, text=True, capture_output=True,
                                timeout=120)
        assert second.returncode != 0 and "an embedded run is already up" in second.stderr
        assert "looking-glass up --embedded /path/other.json" in second.stderr
        assert "LG_EMBEDDED_STATE" not in second.stderr
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)

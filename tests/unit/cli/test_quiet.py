"""Quiet by default: no TensorFlow/absl/oneDNN start-up lines on standard error; ``-v`` shows them."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

CLI = [sys.executable, "-m", "looking_glass.cli.main"]


def _env() -> dict:
    env = dict(os.environ)
    for key in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"):
        env.pop(key, None)  # the library's own defaults, as a user has them
    return env


def test_evaluate_prints_nothing_on_stderr_by_default():
    proc = subprocess.run([*CLI, "evaluate", "--synthetic", "4"], capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert '"iou"' in proc.stdout
    assert proc.stderr == "", proc.stderr


@pytest.mark.skipif(platform.machine() != "x86_64", reason="oneDNN's start-up line is printed by x86 builds")
def test_verbose_shows_the_start_up_lines_again():
    proc = subprocess.run([*CLI, "-v", "evaluate", "--synthetic", "4"], capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "oneDNN" in proc.stderr


def test_help_is_quiet_and_names_verbose():
    proc = subprocess.run([*CLI, "demo", "--help"], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    top = subprocess.run([*CLI, "--help"], capture_output=True, text=True, env=_env(), timeout=60)
    assert "--verbose" in top.stdout


NOISY_MODULE = """
import os
os.write(2, b"noise from C at import\\n")
VALUE = 42
"""

BROKEN_MODULE = """
import os
os.write(2, b"noise before failing\\n")
raise ImportError("broken on purpose")
"""


def _run(tmp_path, script: str) -> subprocess.CompletedProcess:
    (tmp_path / "lg_noisy.py").write_text(NOISY_MODULE)
    (tmp_path / "lg_broken.py").write_text(BROKEN_MODULE)
    env = {**_env(), "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env,
                          timeout=60)


def test_the_first_import_is_silenced_and_stderr_comes_back(tmp_path):
    proc = _run(tmp_path, """
        import os, sys
        from looking_glass.cli.quiet import quiet_start_up
        quiet_start_up(modules=("lg_noisy",))
        assert "logging" not in sys.modules  # the loggers are quieted when lg_noisy loads
        import lg_noisy
        assert lg_noisy.VALUE == 42
        import logging
        assert logging.getLogger("absl").level == logging.getLogger("tensorflow").level == logging.ERROR
        assert type(lg_noisy.__loader__).__name__ == "SourceFileLoader", lg_noisy.__loader__
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
        assert not any(type(f).__name__ == "_QuietImportFinder" for f in sys.meta_path)
        os.write(2, b"after the import\\n")
        print("an error line", file=sys.stderr)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "after the import\nan error line\n"


def test_verbose_changes_nothing(tmp_path):
    proc = _run(tmp_path, """
        import os
        from looking_glass.cli.quiet import quiet_start_up
        quiet_start_up(verbose=True, modules=("lg_noisy",))
        import lg_noisy
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "noise from C at import\n"


def test_a_failing_import_still_raises_and_stderr_comes_back(tmp_path):
    proc = _run(tmp_path, """
        import os
        from looking_glass.cli.quiet import quiet_start_up
        quiet_start_up(modules=("lg_broken",))
        try:
            import lg_broken
        except ImportError as exc:
            os.write(2, f"caught: {exc}\\n".encode())
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "caught: broken on purpose\n"

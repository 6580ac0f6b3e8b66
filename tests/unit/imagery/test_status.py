"""Tile statuses live in the imagery vocabulary; the store counts exactly these."""

from looking_glass.imagery import status


def test_statuses_and_their_counters():
    from looking_glass.pipeline.store import COUNTER_OF_STATUS

    assert status.TILE_STATUSES == ("done", "failed", "no_imagery", "skipped")
    assert set(COUNTER_OF_STATUS) == set(status.TILE_STATUSES)
    assert COUNTER_OF_STATUS[status.TILE_NO_IMAGERY] == "tiles_no_imagery"


def test_imagery_does_not_import_the_pipeline():
    import subprocess
    import sys

    code = (
        "import sys; import looking_glass.imagery.xyz, looking_glass.imagery.geotiff, looking_glass.imagery.raster;"
        "bad = [m for m in sys.modules if m.startswith(('looking_glass.pipeline', 'looking_glass.datasets'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""`up --attribution NAME=TEXT` on a live embedded run: the `up` command line as the CLI parses
it, the run started with what `up` passes on, a job on a named GeoTIFF source and one on the
default source, each mapped: map.html credits the attribution given for the job's source, and
an export of the first job names its source and credit (and, as ``.osm``, the model's accuracy)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import embedded_thread, run_cli

from looking_glass.cli.main import build_parser
from looking_glass.grid import tile_bounds
from looking_glass.local.inputs import validated_inputs
from looking_glass.model.registry import real_imagery_figure, shipped_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "imagery"))
from test_mosaic import TILE_SIZE, X, Y, write_tif  # noqa: E402

pytestmark = pytest.mark.e2e


def credit_on_map(capsys, job: str, out: Path) -> str:
    code, _, err = run_cli(capsys, "map", job, "--out", str(out))
    assert code == 0, err
    page = (out / "map.html").read_text()
    return json.loads(re.search(r"const options = (\{.*?\});\n", page).group(1))["imagery"]["attribution"]


def test_the_map_of_a_job_credits_the_attribution_given_to_up_for_its_source(tmp_path, capsys):
    scene = write_tif(tmp_path / "scene.tif", 100, 0, TILE_SIZE)
    args = build_parser("up").parse_args(["up", "--imagery", f"city={scene}", "--attribution", "city=\u00a9 City survey 2024",
                                          "--attribution", "default=Synthetic & friends"])
    inputs = validated_inputs(args)
    with embedded_thread(tmp_path, **inputs.embedded_options()):  # as `up` starts it
        code, out, err = run_cli(capsys, "submit", "--imagery", "city", "--wait", "--timeout", "300")
        assert code == 0 and "COMPLETE" in err, err
        assert credit_on_map(capsys, out.strip(), tmp_path / "city-map") == "\u00a9 City survey 2024"
        # The export says the same: the job, its source, the credit; .osm ends with the accuracy note.
        city = out.strip()
        code, _, err = run_cli(capsys, "export", city, "--out", str(tmp_path / "city.geojson"), "--no-progress")
        assert code == 0, err
        meta = json.loads((tmp_path / "city.geojson").read_text())["looking_glass"]
        assert (meta["imagery"], meta["attribution"], meta["job_model"]) == ("city", "\u00a9 City survey 2024", shipped_record().name)
        assert meta["job_id"].startswith(city)
        code, _, err = run_cli(capsys, "export", city, "--out", str(tmp_path / "city.osm"), "--no-progress")
        assert code == 0 and (tmp_path / "city.osm").is_file(), err
        assert f"recorded {real_imagery_figure(shipped_record().sidecar)}" in err  # the shipped sidecar's figure
        assert "on the SpaceNet Atlanta sample" in err
        assert "review every outline against the imagery before uploading any to OpenStreetMap" in err

        west, south, east, north = tile_bounds(X, Y, 18)
        inset = [[west + 1e-6, south + 1e-6], [east - 1e-6, south + 1e-6], [east - 1e-6, north - 1e-6],
                 [west + 1e-6, north - 1e-6], [west + 1e-6, south + 1e-6]]
        aoi = tmp_path / "one-tile.geojson"
        aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [inset]}))
        code, out, err = run_cli(capsys, "submit", str(aoi), "--wait", "--timeout", "300")
        assert code == 0 and "(1 zoom-18 tiles)" in err, err
        assert credit_on_map(capsys, out.strip(), tmp_path / "default-map") == "Synthetic &amp; friends"  # HTML-escaped

"""Reference footprints per tile (looking_glass.results.truth): read as prepare reads them,
rasterised on the tile grid, areas with the model's pixel areas, pixel scores as evaluate's."""

import io
import json

import mercantile
import numpy as np
import pytest
import shapely
from conftest import SPACENET_SAMPLE
from pyproj import Transformer

from looking_glass.results.masks import read_mask_png
from looking_glass.results.truth import TruthError, accuracy, load_truth, tile_truth_areas

Z = 18


def equal_area_m2(geom_lonlat, lon0: float, lat0: float) -> float:
    """Area of a lon/lat geometry in a Lambert azimuthal equal-area projection at (lon0, lat0)."""
    to_laea = Transformer.from_crs("EPSG:4326", f"+proj=laea +lat_0={lat0} +lon_0={lon0} +datum=WGS84", always_xy=True)
    return shapely.transform(geom_lonlat.segmentize(1e-5), lambda c: np.column_stack(to_laea.transform(c[:, 0], c[:, 1]))).area


def write(tmp_path, doc, name="fp.geojson"):
    p = tmp_path / name
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(p)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("not json at all", "not GeoJSON"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}}]},
         "no usable building polygon in it"),
        ({"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:999999"}}, "features": []},
         "unknown CRS"),
    ],
)
def test_bad_footprints_are_refused_with_the_reason(tmp_path, content, message):
    path = str(tmp_path / "missing.geojson") if content is None else write(tmp_path, content)
    with pytest.raises(TruthError, match=message) as info:
        load_truth(path)
    assert path in str(info.value) and "\n" not in str(info.value)


def test_truth_area_of_a_lonlat_square_matches_its_equal_area_area(tmp_path):
    # A 60 m x 40 m-ish building in the middle of one zoom-18 tile in Atlanta.
    t = mercantile.tile(-84.4790, 33.6385, Z)
    b = mercantile.bounds(t)
    w, s, e, n = (b.west + 0.3 * (b.east - b.west), b.south + 0.3 * (b.north - b.south),
                  b.west + 0.7 * (b.east - b.west), b.south + 0.55 * (b.north - b.south))
    square = shapely.box(w, s, e, n)
    truth = load_truth(write(tmp_path, {"type": "Feature", "geometry": shapely.geometry.mapping(square)}))
    masks = truth.tile_masks([(t.x, t.y, Z)])
    area = tile_truth_areas(masks)[(t.x, t.y, Z)]
    expected = equal_area_m2(square, (w + e) / 2, (s + n) / 2)
    assert area == pytest.approx(expected, rel=0.01)
    assert masks[(t.x, t.y, Z)].dtype == bool and masks[(t.x, t.y, Z)].shape == (256, 256)


def test_footprints_in_utm_give_each_tile_its_share_of_the_buildings():
    """The SpaceNet footprints (EPSG:32616): per tile within 3% (or 3 m2) of the exact
    intersection area, and all of them together within 0.5%."""
    truth = load_truth(str(SPACENET_SAMPLE / "buildings.geojson"))
    assert truth.count == 43
    doc = json.loads((SPACENET_SAMPLE / "buildings.geojson").read_text())
    to_lonlat = Transformer.from_crs("EPSG:32616", "EPSG:4326", always_xy=True)
    polys = shapely.union_all([
        shapely.transform(shapely.geometry.shape(f["geometry"]), lambda c: np.column_stack(to_lonlat.transform(c[:, 0], c[:, 1])))
        for f in doc["features"]
    ])
    w, s, e, n = polys.bounds
    tiles = [(t.x, t.y, Z) for t in mercantile.tiles(w, s, e, n, Z)]
    areas = tile_truth_areas(truth.tile_masks(tiles))
    lon0, lat0 = (w + e) / 2, (s + n) / 2
    for x, y, z in tiles:
        b = mercantile.bounds(x, y, z)
        exact = equal_area_m2(polys.intersection(shapely.box(b.west, b.south, b.east, b.north)), lon0, lat0)
        assert areas[(x, y, z)] == pytest.approx(exact, rel=0.03, abs=3.0), (x, y)
    assert sum(areas.values()) == pytest.approx(equal_area_m2(polys, lon0, lat0), rel=0.005)


def test_a_tile_without_footprints_has_an_empty_mask_and_zero_area():
    truth = load_truth(str(SPACENET_SAMPLE / "buildings.geojson"))
    far = mercantile.tile(30.06, -1.95, Z)
    masks = truth.tile_masks([(far.x, far.y, Z)])
    assert not masks[(far.x, far.y, Z)].any()
    assert tile_truth_areas(masks)[(far.x, far.y, Z)] == 0.0


def test_accuracy_pools_counts_with_the_metrics_module_definitions():
    from looking_glass.model.metrics import confusion_counts, scores_from_counts

    rng = np.random.default_rng(3)
    pred = {(i, 0, Z): rng.random((256, 256)) < 0.3 for i in range(3)}
    ref = {(i, 0, Z): rng.random((256, 256)) < 0.2 for i in range(3)}
    got = accuracy(pred, ref)
    counts = confusion_counts(np.stack(list(pred.values())), np.stack([ref[t] for t in pred]))
    assert (got["tp"], got["fp"], got["fn"]) == tuple(counts)
    for key, value in scores_from_counts(*counts).items():
        assert got[key] == pytest.approx(value)


@pytest.mark.parametrize("pred_any, ref_any, expected", [(False, False, 1.0), (True, False, 0.0), (False, True, 0.0)])
def test_accuracy_of_empty_masks_follows_the_metrics_rule(pred_any, ref_any, expected):
    from looking_glass.model.metrics import scores_from_counts

    pred = np.zeros((256, 256), bool)
    ref = np.zeros((256, 256), bool)
    pred[:4, :4] = pred_any
    ref[10:12, 10:12] = ref_any
    got = accuracy({(0, 0, Z): pred}, {(0, 0, Z): ref})
    tp, fp, fn = got["tp"], got["fp"], got["fn"]
    assert got["iou"] == expected == scores_from_counts(tp, fp, fn)["iou"]
    assert got["precision"] == scores_from_counts(tp, fp, fn)["precision"]
    assert got["recall"] == scores_from_counts(tp, fp, fn)["recall"]


def test_mask_png_as_the_worker_stores_it_reads_back():
    from PIL import Image

    mask = np.zeros((256, 256), bool)
    mask[5:50, 100:200] = True
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    assert np.array_equal(read_mask_png(buf.getvalue()), mask)


def test_synthetic_truth_is_the_rendered_mask_area_in_parallel_too():
    from looking_glass.datasets.synthetic import render_tile
    from looking_glass.model.segmenter import building_area_m2
    from looking_glass.results.truth import synthetic_truth_areas

    tiles = [(150000 + i % 8, 130000 + i // 8, Z) for i in range(32)]
    parallel = synthetic_truth_areas(tiles, processes=2)
    assert len(parallel) == 32
    for i in (0, 13, 31):
        x, y, z = tiles[i]
        assert parallel[i] == building_area_m2(render_tile(z, x, y)[1], x, y, z)
    assert synthetic_truth_areas(tiles[:3], processes=2) == [parallel[0], parallel[1], parallel[2]]  # serial


def test_results_geojson_and_map_carry_the_reference_where_given(tmp_path):
    from PIL import Image

    from looking_glass.results.figures import draw_map, results_geojson

    t = mercantile.tile(-84.4790, 33.6385, Z)
    items = [
        {"quadkey": mercantile.quadkey(t.x + i, t.y, Z), "x": t.x + i, "y": t.y, "z": Z,
         "status": "done" if i < 2 else "failed", "building_area_m2": 100.0 * i}
        for i in range(3)
    ]
    truth = {items[0]["quadkey"]: 12.3456, items[1]["quadkey"]: 0.0}
    props = [f["properties"] for f in results_geojson(items, truth_m2=truth)["features"]]
    assert [p.get("truth_area_m2") for p in props] == [12.346, 0.0, None]
    assert all("truth_area_m2" not in f["properties"] for f in results_geojson(items)["features"])
    nowhere = "http://127.0.0.1:9/{z}/{x}/{y}.png"  # no imagery: grey squares under the tiles
    draw_map(items, nowhere, tmp_path / "one.png", "one panel")
    draw_map(items, nowhere, tmp_path / "two.png", "two panels", truth_m2=truth)
    with Image.open(tmp_path / "one.png") as one, Image.open(tmp_path / "two.png") as two:
        assert two.size[0] > 1.5 * one.size[0]

"""``prepare`` from many inputs: globs, S3 prefixes read in place, image/label pairing by id,
parallel jobs with progress, overlapping chips (stride), and every bad input of these paths."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import looking_glass.datasets.prepare as prepare_module
from looking_glass.cli.main import main as cli_main
from looking_glass.datasets.chips import load_split
from looking_glass.datasets.errors import PrepareError
from looking_glass.datasets.inputs import pair_inputs
from looking_glass.datasets.prepare import PrepareConfig, prepare

ORIGIN = (1000.0, 2000.0)  # EPSG:3857 metres, 0.5 m pixels


def write_image(path: Path, seed: int, bands: int = 3, size: int = 128, crs: str = "EPSG:3857", x0: float = ORIGIN[0]) -> Path:
    data = np.random.default_rng(seed).integers(1, 256, (bands, size, size), dtype=np.uint8)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": bands, "dtype": "uint8", "crs": crs,
               "transform": Affine(0.5, 0.0, x0, 0.0, -0.5, ORIGIN[1]), "tiled": True, "blockxsize": 64,
               "blockysize": 64, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def write_labels(path: Path, x0: float, y0: float, size: float = 12.0, crs: str = "EPSG:3857") -> Path:
    ring = [[x0, y0], [x0 + size, y0], [x0 + size, y0 - size], [x0, y0 - size], [x0, y0]]
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": crs}},
                                "features": [{"type": "Feature", "properties": {},
                                              "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return path


@pytest.fixture
def spacenet_layout(tmp_path) -> Path:
    """Two images and their label files named as SpaceNet names them, one building each (at a
    different place, so a wrong pairing shows in the masks)."""
    d = tmp_path / "sn"
    (d / "images").mkdir(parents=True)
    (d / "labels").mkdir()
    for i, dx in ((1, 5.0), (2, 40.0)):
        write_image(d / "images" / f"RGB-PanSharpen_AOI_9_Test_img{i}.tif", seed=i)
        write_labels(d / "labels" / f"buildings_AOI_9_Test_img{i}.geojson", ORIGIN[0] + dx, ORIGIN[1] - 5.0)
    return d


def chips_by_id(out: Path) -> dict[str, tuple]:
    found = {}
    for split in ("train", "validation"):
        a = load_split(out, split)
        for i, cid in enumerate(a["chip_ids"]):
            found[str(cid)] = (a["image"][i], a["mask"][i], a["sdt"][i])
    return found


def building_columns(mask: np.ndarray) -> tuple[int, int]:
    cols = np.flatnonzero(mask.any(0))
    return int(cols[0]), int(cols[-1])


def test_spacenet_pairs_from_globs_parallel_equal_serial(spacenet_layout, tmp_path):
    cfg = PrepareConfig(chip_size=128, max_nodata_fraction=1.0)
    ticks: list[tuple[int, int]] = []
    serial = prepare([str(spacenet_layout / "images" / "*.tif")], [str(spacenet_layout / "labels" / "*.geojson")],
                     tmp_path / "serial", cfg, progress=lambda done, total: ticks.append((done, total)))
    parallel = prepare([str(spacenet_layout / "images" / "*.tif")], [str(spacenet_layout / "labels" / "*.geojson")],
                       tmp_path / "parallel", cfg, jobs=2)
    assert ticks[-1] == (2, 2) and [d for d, _ in ticks] == [1, 2]
    images = {Path(s["path"]).name: [Path(p).name for p in s["labels"]] for s in serial["sources"]["images"]}
    assert images == {f"RGB-PanSharpen_AOI_9_Test_img{i}.tif": [f"buildings_AOI_9_Test_img{i}.geojson"] for i in (1, 2)}
    strip = ("created",)
    assert {k: v for k, v in serial.items() if k not in strip} == {k: v for k, v in parallel.items() if k not in strip}
    a, b = chips_by_id(tmp_path / "serial"), chips_by_id(tmp_path / "parallel")
    assert sorted(a) == ["RGB-PanSharpen_AOI_9_Test_img1_r000_c000", "RGB-PanSharpen_AOI_9_Test_img2_r000_c000"]
    for cid in a:
        for x, y in zip(a[cid], b[cid]):
            np.testing.assert_array_equal(x, y)
    # Each image got its own building: 12 m squares at x + 5 m and x + 40 m = columns 10..33 and 80..103.
    assert building_columns(a["RGB-PanSharpen_AOI_9_Test_img1_r000_c000"][1]) == (10, 33)
    assert building_columns(a["RGB-PanSharpen_AOI_9_Test_img2_r000_c000"][1]) == (80, 103)
    assert {c["source"] for c in serial["chips"]} == {str(p) for p in sorted((spacenet_layout / "images").glob("*.tif"))}


def test_s3_prefixes_are_paired_and_images_read_in_place(moto_endpoint, spacenet_layout, tmp_path, monkeypatch):
    import boto3

    bucket = f"sn-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    for kind in ("images", "labels"):
        for f in sorted((spacenet_layout / kind).iterdir()):
            s3.upload_file(str(f), bucket, f"AOI_9/{kind}/{f.name}")
    s3.put_object(Bucket=bucket, Key="AOI_9/images/README.txt", Body=b"not an image")
    fetched = []
    real = prepare_module.localize
    monkeypatch.setattr(prepare_module, "localize", lambda p, d: fetched.append(p) or real(p, d))
    cfg = PrepareConfig(chip_size=128, max_nodata_fraction=1.0)
    manifest = prepare([f"s3://{bucket}/AOI_9/images/"], [f"s3://{bucket}/AOI_9/labels/*.geojson"], tmp_path / "out", cfg)
    assert all(p.endswith(".geojson") for p in fetched) and len(fetched) == 2  # the images were not downloaded
    assert {c["source"] for c in manifest["chips"]} == {
        f"s3://{bucket}/AOI_9/images/RGB-PanSharpen_AOI_9_Test_img{i}.tif" for i in (1, 2)}
    local = prepare([str(spacenet_layout / "images" / "*.tif")], [str(spacenet_layout / "labels" / "*")], tmp_path / "local", cfg)
    a, b = chips_by_id(tmp_path / "out"), chips_by_id(tmp_path / "local")
    assert sorted(a) == sorted(b) and len(local["chips"]) == 2
    for cid in a:
        for x, y in zip(a[cid], b[cid]):
            np.testing.assert_array_equal(x, y)


def test_stride_cuts_overlapping_chips_with_unique_ids(tmp_path):
    image = write_image(tmp_path / "one.tif", seed=4)
    labels = write_labels(tmp_path / "one.geojson", ORIGIN[0] + 10.0, ORIGIN[1] - 10.0)
    cfg = PrepareConfig(chip_size=64, stride=32, max_nodata_fraction=1.0)
    manifest = prepare([str(image)], [str(labels)], tmp_path / "out", cfg)
    assert manifest["counts"]["written"] == 9 and manifest["parameters"]["stride"] == 32
    chips = chips_by_id(tmp_path / "out")
    entries = {c["id"]: c for c in manifest["chips"]}
    assert entries["one_r001_c002"]["offset_px"] == [32, 64]
    left, right = chips["one_r000_c000"][0], chips["one_r000_c001"][0]
    np.testing.assert_array_equal(left[:, 32:], right[:, :32])  # the overlap is the same pixels
    np.testing.assert_array_equal(chips["one_r000_c000"][1][:, 32:], chips["one_r000_c001"][1][:, :32])
    # Chips of one 64 px split block (offsets 0 and 32) share their split.
    assert entries["one_r000_c000"]["split"] == entries["one_r000_c001"]["split"] == entries["one_r001_c001"]["split"]


def test_an_image_failing_midway_is_skipped_and_named(spacenet_layout, tmp_path):
    broken = spacenet_layout / "images" / "RGB-PanSharpen_AOI_9_Test_img2.tif"
    raw = bytearray(broken.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 2000] = bytes(2000)  # a block's compressed bytes, not the header
    broken.write_bytes(bytes(raw))
    manifest = prepare([str(spacenet_layout / "images" / "*.tif")], [str(spacenet_layout / "labels" / "*.geojson")],
                       tmp_path / "out", PrepareConfig(chip_size=128, max_nodata_fraction=1.0))
    assert [Path(s["path"]).name for s in manifest["sources"]["images"]] == ["RGB-PanSharpen_AOI_9_Test_img1.tif"]
    assert any(w.startswith("skipped: ") and "img2.tif" in w for w in manifest["warnings"])
    assert {c["id"] for c in manifest["chips"]} == {"RGB-PanSharpen_AOI_9_Test_img1_r000_c000"}


def test_labels_that_miss_their_image_are_named_in_a_warning(tmp_path):
    image = write_image(tmp_path / "here.tif", seed=5)
    elsewhere = write_labels(tmp_path / "here.geojson", ORIGIN[0] + 5000.0, ORIGIN[1])  # 5 km east
    manifest = prepare([str(image)], [str(elsewhere)], tmp_path / "out", PrepareConfig(chip_size=128, max_nodata_fraction=1.0))
    assert manifest["counts"]["written"] == 1
    assert any("here.tif: no building of" in w and "here.geojson" in w for w in manifest["warnings"])
    # Labels on the image: no such warning.
    on = write_labels(tmp_path / "on.geojson", ORIGIN[0] + 5.0, ORIGIN[1] - 5.0)
    manifest = prepare([str(image)], [str(on)], tmp_path / "out2", PrepareConfig(chip_size=128, max_nodata_fraction=1.0))
    assert not any("no building of" in w for w in manifest["warnings"])


def test_an_unreadable_image_among_several_is_skipped_and_named(spacenet_layout, tmp_path):
    (spacenet_layout / "images" / "RGB-PanSharpen_AOI_9_Test_img3.tif").write_text("not a GeoTIFF")
    write_labels(spacenet_layout / "labels" / "buildings_AOI_9_Test_img3.geojson", ORIGIN[0] + 5.0, ORIGIN[1] - 5.0)
    manifest = prepare([str(spacenet_layout / "images" / "*.tif")], [str(spacenet_layout / "labels" / "*.geojson")],
                       tmp_path / "out", PrepareConfig(chip_size=128, max_nodata_fraction=1.0), jobs=2)
    assert len(manifest["sources"]["images"]) == 2 and manifest["counts"]["written"] == 2
    assert any(w.startswith("skipped: ") and "img3.tif: not a GeoTIFF" in w for w in manifest["warnings"])
    for i in (1, 2):  # and none readable: one error
        (spacenet_layout / "images" / f"RGB-PanSharpen_AOI_9_Test_img{i}.tif").write_text("not a GeoTIFF")
    with pytest.raises(PrepareError, match="none of the 3 images can be read; the first: .*img1.tif: not a GeoTIFF"):
        prepare([str(spacenet_layout / "images" / "*.tif")], [str(spacenet_layout / "labels" / "*.geojson")],
                tmp_path / "out2", PrepareConfig(chip_size=128))
    assert not (tmp_path / "out2").exists()


def test_pairing_rule():
    # SpaceNet 2 as published (s3://spacenet-dataset/spacenet/SN2_buildings/train/AOI_2_Vegas/).
    sn2 = [f"PS-RGB/SN2_buildings_train_AOI_2_Vegas_PS-RGB_img{i}.tif" for i in (1, 10, 100)]
    sn2_labels = [f"geojson_buildings/SN2_buildings_train_AOI_2_Vegas_geojson_buildings_img{i}.geojson" for i in (100, 1, 10)]
    assert [(i, f[0].rsplit("_", 1)[1]) for i, f in pair_inputs(sn2, sn2_labels)] == [
        (sn2[0], "img1.geojson"), (sn2[1], "img10.geojson"), (sn2[2], "img100.geojson")]
    # SpaceNet 4: several looks (nadir angles) at one tile share its label file.
    sn4 = [f"Pan-Sharpen_Atlanta_nadir{n}_catid_{c}_{x}_3720689.tif"
           for n, c in ((7, "1030010003D22F00"), (10, "10300100023BC100")) for x in (732701, 733601)]
    sn4_labels = ["spacenet-buildings_732701_3720689.geojson", "spacenet-buildings_733601_3720689.geojson"]
    assert [f[0] for _, f in pair_inputs(sn4, sn4_labels)] == [sn4_labels[0], sn4_labels[1], sn4_labels[0], sn4_labels[1]]
    assert pair_inputs(["a/img_7.tif", "a/img_10.tif"], ["l/img_10.geojson", "l/img_7.geojson"]) == [
        ("a/img_7.tif", ("l/img_7.geojson",)), ("a/img_10.tif", ("l/img_10.geojson",))]
    assert pair_inputs(["x/one.tif", "x/two.tif"], ["osm.geojson"]) == [
        ("x/one.tif", ("osm.geojson",)), ("x/two.tif", ("osm.geojson",))]
    assert pair_inputs(["x/one.tif"], ["a.geojson", "b.geojson"]) == [("x/one.tif", ("a.geojson", "b.geojson"))]


def _bad(tmp_path: Path, name: str):
    sn = tmp_path / "in"
    sn.mkdir()
    img = [write_image(sn / f"img_{i}.tif", seed=i) for i in (1, 2)]
    lab = [write_labels(sn / f"img_{i}.geojson", 1005.0, 1995.0) for i in (1, 2, 3)]
    cases = {
        "no files match a glob": ([str(sn / "*.jp2")], [str(lab[0])], {}, "no images files match"),
        "a label file without its image": ([str(p) for p in img], [str(p) for p in lab], {},
                                           r"img_3.geojson: a label file without its image"),
        "an image without its label file": ([str(p) for p in img], [str(lab[0]), str(lab[2])], {},
                                            r"img_2.tif: no label file with its id"),
        "mixed band counts": ([str(img[0]), str(write_image(sn / "grey.tif", seed=3, bands=1))], [str(lab[0])], {},
                              "the images mix band counts"),
        "mixed CRSs in native mode": ([str(img[0]), str(write_image(sn / "utm.tif", seed=3, crs="EPSG:32616", x0=740000.0))],
                                      [str(lab[0])], {}, "the images mix CRSs.*use --mode tiles"),
        "stride 0": ([str(img[0])], [str(lab[0])], {"stride": 0}, "stride must be an integer from 1 to the chip size"),
        "stride over the chip size": ([str(img[0])], [str(lab[0])], {"stride": 129}, r"chip size \(128\)"),
        "stride in tiles mode": ([str(img[0])], [str(lab[0])], {"stride": 128, "mode": "tiles", "chip_size": 256},
                                 "stride applies to native mode only"),
    }
    return cases[name]


@pytest.mark.parametrize("name", ["no files match a glob", "a label file without its image", "an image without its label file",
                                  "mixed band counts", "mixed CRSs in native mode", "stride 0", "stride over the chip size",
                                  "stride in tiles mode"])
def test_bad_inputs_are_one_clear_error_and_write_nothing(tmp_path, name):
    images, footprints, overrides, message = _bad(tmp_path, name)
    cfg = PrepareConfig(**{"chip_size": 128, "max_nodata_fraction": 1.0, **overrides})
    with pytest.raises(PrepareError, match=message):
        prepare(images, footprints, tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()


def test_mixed_crss_are_fine_in_tiles_mode(tmp_path):
    a = write_image(tmp_path / "merc.tif", seed=1)
    b = write_image(tmp_path / "utm.tif", seed=2, crs="EPSG:32616", x0=740000.0)
    labels = write_labels(tmp_path / "l.geojson", 1005.0, 1995.0)
    manifest = prepare([str(a), str(b)], [str(labels)], tmp_path / "out", PrepareConfig(mode="tiles", max_nodata_fraction=1.0))
    assert {Path(s["path"]).name for s in manifest["sources"]["images"]} == {"merc.tif", "utm.tif"}


def test_s3_prefixes_that_cannot_be_read(moto_endpoint, tmp_path, monkeypatch):
    labels = write_labels(tmp_path / "l.geojson", 1005.0, 1995.0)
    with pytest.raises(PrepareError, match="no-such-bucket-lg/imagery/: no such S3 bucket"):
        prepare(["s3://no-such-bucket-lg/imagery/"], [str(labels)], tmp_path / "out")
    import boto3

    bucket = f"empty-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    with pytest.raises(PrepareError, match=r"no \.tif/\.tiff object under the prefix"):
        prepare([f"s3://{bucket}/imagery/"], [str(labels)], tmp_path / "out")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(PrepareError, match="cannot reach S3"):
        prepare([f"s3://{bucket}/imagery/"], [str(labels)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_stride_jobs_and_progress(spacenet_layout, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(["prepare", "--images", str(spacenet_layout / "images" / "*.tif"), "--footprints",
                   str(spacenet_layout / "labels" / "*.geojson"), "--out", str(out), "--chip-size", "64",
                   "--stride", "32", "--jobs", "2", "--max-nodata", "1"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "chips 18/18" in captured.err  # 3 x 3 chips of 64 px every 32 px, in each of 2 images
    assert "wrote" in captured.out
    with pytest.raises(SystemExit):
        cli_main(["prepare", "--images", "x.tif", "--footprints", "y.geojson", "--out", str(out), "--stride", "0"])
    assert "--stride" in capsys.readouterr().err

"""An AOI that does not meet a GeoTIFF source's footprint is refused before a run starts (it would
end COMPLETE with every tile 'no imagery'), with a hint when its lon/lat are swapped."""

import json

import pytest
import shapely
from test_crs_tag import write_tif

from looking_glass.cli.main import main
from looking_glass.cli.serve import source_footprint
from looking_glass.imagery.overlap import AoiOutsideImagery, check_aoi_meets_footprint


@pytest.fixture
def scene(tmp_path):
    """A UTM 33N GeoTIFF near (15.0 E, 45.15 N) and AOIs inside it, swapped, and far away."""
    tif = write_tif(tmp_path / "scene.tif", "EPSG:32633", 500000.0, 5000000.0)
    footprint = source_footprint(tif)
    inside = footprint.buffer(-footprint.length / 40)
    aois = {"inside": inside, "swapped": shapely.transform(inside, lambda xy: xy[:, ::-1]),
            "far": shapely.affinity.translate(inside, 1.0, 1.0)}
    paths = {}
    for name, geom in aois.items():
        paths[name] = tmp_path / f"{name}.geojson"
        paths[name].write_text(json.dumps(shapely.geometry.mapping(geom)))
    return {"tif": tif, "footprint": footprint, "aois": aois, "paths": paths}


def test_the_check_names_the_source_both_bboxes_and_the_swap(scene):
    fp, aois = scene["footprint"], scene["aois"]
    check_aoi_meets_footprint(aois["inside"], fp, "scene.tif")  # meets: nothing raised
    with pytest.raises(AoiOutsideImagery) as err:
        check_aoi_meets_footprint(aois["swapped"], fp, "scene.tif")
    w, s, e, n = fp.bounds
    assert f"footprint of imagery scene.tif (bbox ({w:.6f}, {s:.6f}, {e:.6f}, {n:.6f}))" in str(err.value)
    aw, as_, ae, an = aois["swapped"].bounds
    assert f"the AOI (bbox ({aw:.6f}, {as_:.6f}, {ae:.6f}, {an:.6f}))" in str(err.value)
    assert "with its coordinates swapped it would" in str(err.value) and err.value.exit_code == 2
    with pytest.raises(AoiOutsideImagery) as err:
        check_aoi_meets_footprint(aois["far"], fp, "scene.tif")
    assert "swapped" not in str(err.value)


def test_validate_with_imagery_refuses_an_aoi_off_the_image(scene, capsys):
    assert main(["validate", str(scene["paths"]["inside"]), "--imagery", scene["tif"]]) == 0
    assert "meets the footprint of" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        main(["validate", str(scene["paths"]["swapped"]), "--imagery", scene["tif"]])
    assert err.value.code == 2 and "swapped.geojson: the AOI" in str(err.value)
    assert "with its coordinates swapped it would" in str(err.value)


def test_demo_refuses_an_aoi_off_the_image_before_starting(scene, capsys):
    with pytest.raises(SystemExit) as err:
        main(["demo", "--imagery", scene["tif"], "--aoi", str(scene["paths"]["far"])])
    assert err.value.code == 2
    assert "far.geojson: the AOI" in capsys.readouterr().err

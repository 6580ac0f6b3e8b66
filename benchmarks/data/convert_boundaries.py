"""How benchmarks/data/*.geojson were made (run once; not needed to run the benchmarks).

Sources, both shipped inside the geopandas 0.14.4 wheel from PyPI (``geopandas/datasets/``):
- ``nybb_16a.zip``: New York City borough boundaries, NYC Department of City Planning (NYC Open
  Data), shoreline-clipped, in EPSG:2263 (NY State Plane, feet);
- ``naturalearth_lowres``: Natural Earth 1:110m admin-0 countries (public domain).

    pip download geopandas==0.14.4 --no-deps -d /tmp/gpd && (cd /tmp/gpd && unzip -q *.whl)
    pip install pyshp
    python benchmarks/data/convert_boundaries.py /tmp/gpd/geopandas/datasets

Coordinates are reprojected to WGS84 with rasterio and rounded to 1e-7 degrees (about 1 cm).
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import shapefile  # pyshp: only this script needs it
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape

OUT = Path(__file__).resolve().parent
COUNTRIES = ("Sierra Leone", "Mali")


def rounded(geometry: dict) -> dict:
    return json.loads(json.dumps(mapping(shape(geometry))), parse_float=lambda v: round(float(v), 7))


def feature_collection(features: list[dict], source: str) -> dict:
    return {"type": "FeatureCollection", "source": source, "features": features}


def main(datasets: Path) -> None:
    with zipfile.ZipFile(datasets / "nybb_16a.zip") as archive:
        archive.extractall(OUT / ".nybb")
    nybb = next((OUT / ".nybb").rglob("nybb.shp"))
    crs = CRS.from_wkt(nybb.with_suffix(".prj").read_text())
    boroughs = [
        {
            "type": "Feature",
            "properties": {"name": rec.record["BoroName"]},
            "geometry": rounded(transform_geom(crs, "EPSG:4326", rec.shape.__geo_interface__)),
        }
        for rec in shapefile.Reader(str(nybb)).shapeRecords()
    ]
    (OUT / "new_york_city.geojson").write_text(json.dumps(feature_collection(
        boroughs, "NYC borough boundaries (NYC Department of City Planning, NYC Open Data), via geopandas 0.14.4 nybb_16a")))

    countries = shapefile.Reader(str(datasets / "naturalearth_lowres" / "naturalearth_lowres.shp"))
    for rec in countries.shapeRecords():
        if rec.record["name"] in COUNTRIES:
            feature = {"type": "Feature", "properties": {"name": rec.record["name"]},
                       "geometry": rounded(rec.shape.__geo_interface__)}
            name = rec.record["name"].lower().replace(" ", "_")
            (OUT / f"{name}.geojson").write_text(json.dumps(feature_collection(
                [feature], "Natural Earth 1:110m admin-0 countries (public domain), via geopandas 0.14.4")))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

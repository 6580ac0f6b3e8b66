"""What the embedded run copies from the user's S3 for a GeoTIFF or mosaic source (the document
and images of an S3 mosaic are covered end to end in tests/e2e/test_s3_mosaic_e2e.py)."""

from __future__ import annotations

from looking_glass.local.embedded import s3_objects


def test_the_s3_objects_of_a_list_each_once_and_no_local_file():
    spec = "s3://b/a.tif, /data/local.tif,s3://c/k/b.tif,s3://b/a.tif"
    assert s3_objects(spec, session=None) == ["s3://b/a.tif", "s3://c/k/b.tif"]
    assert s3_objects("s3://b/one.tif", session=None) == ["s3://b/one.tif"]
    assert s3_objects("/data/a.tif,/data/b.tif", session=None) == []

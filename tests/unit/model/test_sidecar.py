"""The model sidecar naming rule."""

from pathlib import Path

from looking_glass.model.sidecar import sidecar_key, sidecar_path


def test_sidecar_sits_next_to_the_model():
    assert sidecar_path("models/seg.keras") == Path("models/seg.json")
    assert sidecar_path(Path("/m/deeplab.v2.keras")) == Path("/m/deeplab.v2.json")
    assert sidecar_key("looking-glass/v3/seg.keras") == "looking-glass/v3/seg.json"


def test_the_shipped_model_has_its_sidecar():
    from looking_glass.model.segmenter import SHIPPED_MODEL, load_metadata

    assert sidecar_path(SHIPPED_MODEL).is_file()
    assert "model_id" in load_metadata(SHIPPED_MODEL)

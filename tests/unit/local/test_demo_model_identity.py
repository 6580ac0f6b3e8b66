"""`demo --model FILE` names its model in the job's identity (issue 12 of the seventh session:
two demos with different model files both made job 23f87cba4fef6490c776b405)."""

from conftest import model_copy

from looking_glass.local.demo import _with_model, sample_aoi_bytes
from looking_glass.model.identity import file_identity, shipped_identity
from looking_glass.model.registry import model_label, shipped_record
from looking_glass.pipeline.enumerator import job_id_for_aoi
from looking_glass.tiling.aoi import parse_aoi


def _copy(folder, version: str, extra: bytes = b"") -> str:
    return str(model_copy(folder, version, extra))


def test_demos_of_other_models_are_other_jobs_and_name_their_model(tmp_path):
    a, b = _copy(tmp_path / "a", "1"), _copy(tmp_path / "b", "1", b"retrained")  # same sidecar, other weights
    c = _copy(tmp_path / "c", "2")
    bodies = {m: _with_model(sample_aoi_bytes(), m) for m in ("", a, b, c)}
    ids = {m: job_id_for_aoi("bucket", "aois/sample.geojson", body) for m, body in bodies.items()}
    assert len(set(ids.values())) == 4
    assert job_id_for_aoi("bucket", "aois/sample.geojson", _with_model(sample_aoi_bytes(), a)) == ids[a]
    recorded = {m: parse_aoi(body).model for m, body in bodies.items()}  # what the enumerator records
    assert recorded[""] == shipped_identity() and model_label(recorded[""]) == shipped_record().name
    assert recorded[a] == file_identity(a) and model_label(recorded[a]) == model_label(recorded[b]) == "trial/1"
    assert model_label(recorded[c]) == "trial/2" and a in recorded[a]

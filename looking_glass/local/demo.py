"""``looking-glass demo``: the whole pipeline on one machine, from upload to a map.

By default on the synthetic world (whose exact building masks are the truth); with ``--imagery``
on an XYZ/TMS template or a GeoTIFF/COG, optionally against reference footprints (``--truth``,
see :mod:`looking_glass.results.truth`). The options are read and checked by
:mod:`looking_glass.local.inputs`.
"""

from __future__ import annotations

import importlib.resources
import sys
import time
from pathlib import Path

from looking_glass.errors import LookingGlassError
from looking_glass.local.embedded import EmbeddedStack
from looking_glass.model.registry import run_label
from looking_glass.pipeline.store import COMPLETE, FAILED, ResultsStore
from looking_glass.results.figures import draw_map, results_geojson, summary_table, tile_counts, write_json
from looking_glass.tiling.aoi import parse_aoi

SAMPLE_AOI = "sample_aoi.geojson"


class DemoError(LookingGlassError, RuntimeError):
    """The demo's job did not finish or failed (enumerator error, workers gone, timeout, totals)."""


def sample_aoi_bytes() -> bytes:
    """The GeoJSON of the demo's sample AOI (``looking_glass/data/sample_aoi.geojson``)."""
    return importlib.resources.files("looking_glass").joinpath("data", SAMPLE_AOI).read_bytes()


def wait_for_job(stack: EmbeddedStack, store: ResultsStore, job_id: str, timeout_s: float, progress=True) -> dict:
    """Follow a job until it is final, with a progress bar of tiles with a final status whose
    figures (done, failed, ...) add up to its count, and which says that workers are starting
    before the first tile is final (:class:`looking_glass.pipeline.progress.JobProgress`)."""
    from looking_glass.pipeline.progress import JobProgress

    deadline = time.monotonic() + timeout_s
    bar = JobProgress("tiles", enabled=progress)
    last_final, last_change = -1, time.monotonic()
    try:
        while True:
            job = store.get_job(job_id)
            now = time.monotonic()
            bar.update(job, workers=stack.launcher.running())
            if job and job["status"] in (COMPLETE, FAILED):
                return job
            final = int(job.get("tiles_final", 0)) if job else 0
            if final != last_final:
                last_final, last_change = final, now
            if stack.handler_errors:
                raise DemoError(f"tile enumerator failed: {stack.handler_errors[-1]}")
            if job and job["status"] != "ENQUEUEING" and stack.launcher.running() == 0 and now - last_change > 10:
                raise DemoError(
                    f"workers exited with job {job_id} at {final}/{job['tiles_total']} tiles; "
                    f"see {stack.launcher.log_dir}"
                )
            if now > deadline:
                raise DemoError(f"job {job_id} not finished after {timeout_s:.0f} s")
            time.sleep(0.5)
    finally:
        bar.close()


def _say(line: str) -> None:
    """A step after the job is done (the progress bar has ended), so the wait is not silent."""
    print(line, file=sys.stderr, flush=True)


def truth_area_m2(items: list[dict]) -> float:
    """Exact building area of the synthetic world over the tiles that were processed (rendered
    in parallel: the workers have finished by now)."""
    from looking_glass.results.truth import synthetic_truth_areas

    done = [(int(i["x"]), int(i["y"]), int(i["z"])) for i in items if i["status"] == "done"]
    return float(sum(synthetic_truth_areas(done)))


def run_demo(
    out_dir: Path,
    aoi_bytes: bytes | None = None,
    aoi_filename: str = SAMPLE_AOI,
    workers: int = 2,
    model_path: str = "",
    timeout_s: float = 280.0,
    progress: bool = True,
    imagery=None,
    truth=None,
) -> dict:
    """Run one job on an embedded stack and write ``summary.json``, ``results.geojson`` and
    ``map.png`` into ``out_dir``; returns the summary.

    Without ``imagery`` the job runs on the synthetic world and its truth is the world's exact
    mask (``truth_area_m2``/``area_error_pct`` over the done tiles). With ``imagery`` (a validated
    :class:`looking_glass.local.inputs.Imagery`) the workers read that source; with ``truth``
    (:class:`looking_glass.results.truth.TruthFootprints`) each tile gets ``truth_area_m2`` in
    results.geojson, the map a reference panel, and the summary ``truth_area_m2``,
    ``area_error_pct`` and ``pixel_iou``/``pixel_precision``/``pixel_recall`` over the done tiles
    (the model's stored masks against the rasterised footprints), and
    ``object_precision``/``object_recall``/``object_f1`` with ``object_counts`` (buildings
    outlined from both and matched by the SpaceNet rule at IoU >= 0.5). ``model_path`` "" is the
    shipped model. Raises DemoError when the job does not finish or fails."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = aoi_bytes if aoi_bytes is not None else sample_aoi_bytes()
    aoi = parse_aoi(data, default_name=Path(aoi_filename).stem)  # refuse a bad AOI before upload

    worker_env = {"LG_MODEL_PATH": model_path} if model_path else {}
    if truth is not None:
        worker_env["LG_WRITE_MASKS"] = "true"  # the pixel scores read the stored masks back
    reference = None
    with EmbeddedStack(out_dir, workers=workers, worker_env=worker_env, imagery=imagery) as stack:
        job_id = stack.upload_aoi(aoi_filename, _with_model(data, model_path))
        store = ResultsStore(stack.session.client("dynamodb"), stack.resources.results_table)
        job = wait_for_job(stack, store, job_id, timeout_s, progress)
        if job["status"] == FAILED:
            raise DemoError(f"job {job_id} failed: {job.get('reason')}")
        items = store.tile_items(job_id)
        counts = tile_counts(items)
        model = demo_model(items, model_path)
        if truth is not None:
            _say(f"scoring {counts.get('done', 0):,} done tiles against {truth.source} ...")
            reference = _compare_with_truth(stack, items, truth)
        truth_m2 = reference["areas"] if reference else None
        _say(f"drawing {out_dir / 'map.png'} ...")
        write_json(out_dir / "results.geojson", results_geojson(items, truth_m2=truth_m2))
        draw_map(
            items,
            stack.tile_url_template,
            out_dir / "map.png",
            title=f"{aoi.name}: building area per zoom-18 tile ({model['label'] or 'model not recorded'})",
            aoi=aoi.geometry,
            truth_m2=truth_m2,
        )
        if imagery is None:
            # renders each done tile's exact mask again: about a minute for the 314 demo tiles
            _say(f"measuring the synthetic world's true building area on {counts.get('done', 0):,} done tiles ...")
            truth_total = truth_area_m2(items)
        elif reference is not None:
            truth_total = reference["done_area_m2"]
        else:
            truth_total = None

    area = float(job["building_area_m2"])
    summary = {
        "job_id": job_id,
        "aoi": aoi.name,
        "status": job["status"],
        "tiles_total": int(job["tiles_total"]),
        "tiles_done": int(job["tiles_done"]),
        "tiles_failed": int(job["tiles_failed"]),
        "tiles_no_imagery": int(job["tiles_no_imagery"]),
        "tiles_skipped": int(job["tiles_skipped"]),
        "result_items": len(items),
        "building_area_m2": round(area, 3),
        "truth_area_m2": round(truth_total, 3) if truth_total is not None else None,
        "area_error_pct": round(100 * (area - truth_total) / truth_total, 2) if truth_total else None,
    }
    outputs = ["summary.json", "results.geojson", "map.png"]
    if imagery is not None:
        summary = {"imagery": imagery.describe(), **summary}
        (out_dir / "aoi.geojson").write_bytes(data)  # the AOI the job ran on (e.g. the image's footprint)
        outputs.append("aoi.geojson")
        if reference is not None:
            summary["truth"] = str(truth.source)
            scores = reference["scores"]
            summary.update({f"pixel_{k}": round(scores[k], 4) for k in ("iou", "precision", "recall")})
            summary["pixel_counts"] = {k: scores[k] for k in ("tp", "fp", "fn")}
            objects = reference["objects"]
            summary.update({f"object_{k}": round(objects[k], 4) for k in ("precision", "recall", "f1")})
            summary["object_counts"] = {k: objects[k] for k in ("tp", "fp", "fn", "predicted", "truth")}
    summary.update(
        {
            "elapsed_s": round(time.monotonic() - started, 1),
            "model": model,
            "model_trained": model.get("trained"),
            "outputs": outputs,
        }
    )
    if counts["done"] != summary["tiles_done"] or len(items) != summary["tiles_total"]:
        raise DemoError(f"job totals disagree with its tile items: {counts} vs {summary}")
    write_json(out_dir / "summary.json", summary)
    return summary


def _compare_with_truth(stack: EmbeddedStack, items: list[dict], truth) -> dict:
    """Reference areas of every tile (quadkey -> m2), their sum over the done tiles, pixel scores
    of the stored masks of the done tiles against the rasterised footprints, and object scores
    (SpaceNet rule, IoU >= 0.5) of the buildings outlined from both."""
    from looking_glass.outlines.evaluate import evaluate_tiles
    from looking_glass.results.truth import TruthError, accuracy, fetch_predicted_masks, tile_truth_areas

    keys = {(int(i["x"]), int(i["y"]), int(i["z"])): i["quadkey"] for i in items}
    try:
        masks = truth.tile_masks(keys)
        predicted = fetch_predicted_masks(stack.session.client("s3"), stack.resources.masks_bucket, items)
    except TruthError as exc:
        raise DemoError(str(exc)) from None
    areas = {keys[t]: a for t, a in tile_truth_areas(masks).items()}
    return {
        "areas": areas,
        "done_area_m2": sum(areas[keys[t]] for t in predicted),
        "scores": accuracy(predicted, masks),
        # Buildings, outlined and stitched as the export does, matched by the SpaceNet rule.
        "objects": evaluate_tiles(((z, x, y), mask, masks[(x, y, z)]) for (x, y, z), mask in predicted.items()),
    }


def _with_model(data: bytes, model_path: str) -> bytes:
    """The AOI GeoJSON ``data`` naming the model the demo runs in its ``looking_glass`` member
    (``model_path``'s :func:`~looking_glass.model.identity.file_identity`, the shipped model's
    identity for ""), as ``submit`` names it: the job's id and record cover the model, so two
    demos of other models are two job ids."""
    import json

    from looking_glass.model.identity import file_identity, shipped_identity
    from looking_glass.tiling.aoi import INPUTS_MEMBER

    doc = json.loads(data.decode("utf-8-sig"))
    doc[INPUTS_MEMBER] = {"model": file_identity(model_path) if model_path else shipped_identity()}
    return json.dumps(doc).encode()


def demo_model(items: list[dict], model_path: str) -> dict:
    """summary.json's ``model``: the ``model_id`` and ``model_version`` the workers recorded on
    the first of ``items`` (tile items), ``label`` (``ID/VERSION``: the name ``results``, ``jobs``
    and exports give the same model, :func:`~looking_glass.model.registry.run_label`; "" when
    none is recorded) and what the model file's sidecar says (``trained``, ``description``)."""
    model = {k: items[0].get(k) for k in ("model_id", "model_version")} if items else {}
    model["label"] = run_label(model.get("model_id"), model.get("model_version"))
    return {**model, **_model_info(model_path)}


def _model_info(model_path: str) -> dict:
    """What the demo says about its model, without loading TensorFlow in this process."""
    import json

    from looking_glass.model.segmenter import SHIPPED_MODEL

    path = Path(model_path) if model_path else SHIPPED_MODEL
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        meta = json.loads(sidecar.read_text())
        return {"trained": bool(meta.get("trained", True)), "description": meta.get("description", "")}
    return {"trained": False, "description": "untrained DeepLab V3+ (random weights): areas are not meaningful"}


def print_summary(summary: dict) -> None:
    """Print the demo's summary table (pixel scores to 3 decimals) and a line about its model."""
    shown = {**summary, "model": summary["model"].get("label") or summary["model"].get("model_id")}
    for key in ("pixel_iou", "pixel_precision", "pixel_recall", "object_precision", "object_recall", "object_f1"):
        if shown.get(key) is not None:
            shown[key] = f"{shown[key]:.3f}"  # the table's one decimal would hide them
    print(summary_table(shown))
    if not summary.get("model_trained"):
        print("NOTE: the model is untrained (no trained model in the repo yet); building areas are not meaningful.")
    else:
        print(f"model: {summary['model'].get('description')}")

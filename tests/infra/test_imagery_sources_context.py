"""The deployment context's named imagery sources (``imagery_sources``, ``default_imagery``):
checked at synth as the workers check them, passed to the workers and the enumerator, and the
worker role may read exactly the registered S3 objects (a mosaic document: its folder)."""

from __future__ import annotations

import json

import pytest

aws_cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is not installed (pip install -e '.[cdk]')")

from aws_cdk.assertions import Template  # noqa: E402
from test_cdk_synth import _statements, only_resource  # noqa: E402

from looking_glass.runtime.imagery_sources import parse_sources  # noqa: E402
from looking_glass.runtime.settings import EnumeratorSettings, WorkerSettings  # noqa: E402
from stacks import ConfigError, DeploymentConfig, build_app, cdk_json_context  # noqa: E402
from stacks.environment import enumerator_environment, worker_environment  # noqa: E402

SOURCES = {
    "kigali2024": {"source": "s3://my-imagery/kigali/2024/a.tif,s3://my-imagery/kigali/2024/b.tif", "date": "2024-03-01"},
    "stac": "s3://my-imagery/stac/items.json",
    "esri": "https://tiles.example.com/{z}/{y}/{x}.jpg@2023-01-01",
}


def test_registered_sources_reach_workers_and_enumerator():
    config = DeploymentConfig.from_context({**cdk_json_context(), "imagery_sources": json.dumps(SOURCES),
                                            "default_imagery": "osm"})
    worker = WorkerSettings.from_env(worker_environment(config))
    assert worker.imagery_sources == parse_sources(SOURCES) and worker.default_imagery == "osm"
    enumerator = EnumeratorSettings.from_env(enumerator_environment(config, job_queue_arn="q", job_definition_arn="d"))
    assert enumerator.imagery_names == {"kigali2024", "stac", "esri", "osm"}
    assert config.imagery_objects() == [
        "my-imagery/kigali/2024/a.tif", "my-imagery/kigali/2024/b.tif", "my-imagery/stac/*"]


def test_the_imagery_sources_output_is_the_registry_the_enumerator_reads():
    """`submit --stack` reads the ImagerySources output: the same names, definitions and digests
    (the default's among them) as the enumerator, so both compute one job id."""
    from looking_glass.runtime.imagery_sources import ImageryRegistry
    from looking_glass.runtime.resources import OUTPUT_IMAGERY_SOURCES

    lg = build_app(context={"imagery_sources": SOURCES, "default_imagery": "osm"})
    tmpl = lg.app.synth().get_stack_by_name(lg.inference.stack_name).template
    output = ImageryRegistry.from_json(tmpl["Outputs"][OUTPUT_IMAGERY_SOURCES]["Value"], "output")
    config = DeploymentConfig.from_context({**cdk_json_context(), "imagery_sources": json.dumps(SOURCES),
                                            "default_imagery": "osm"})
    enumerator = EnumeratorSettings.from_env(enumerator_environment(config, job_queue_arn="q", job_definition_arn="d"))
    assert output == enumerator.imagery and output.default == "osm"
    assert output.sources["osm"].source == cdk_json_context()["tile_url_template"]
    assert all(output.digest(name) for name in output.names)  # every definition known: every id covers it


def test_the_default_sources_attribution_reaches_the_registry_and_is_checked():
    from stacks.environment import StackEnvironmentError, imagery_registry

    config = DeploymentConfig.from_context({**cdk_json_context(), "imagery_attribution": "\u00a9 Esri, Maxar"})
    assert imagery_registry(config).sources["default"].attribution == "\u00a9 Esri, Maxar"
    enumerator = EnumeratorSettings.from_env(enumerator_environment(config, job_queue_arn="q", job_definition_arn="d"))
    assert enumerator.imagery.sources["default"].attribution == "\u00a9 Esri, Maxar"
    assert cdk_json_context()["imagery_attribution"] == ""  # listed in cdk.json; none: the map credits the name
    bad = DeploymentConfig.from_context({**cdk_json_context(), "imagery_attribution": "two\nlines"})
    with pytest.raises(StackEnvironmentError, match="imagery_attribution: imagery source 'default': attribution must be text"):
        enumerator_environment(bad, job_queue_arn="q", job_definition_arn="d")


def test_the_worker_role_reads_the_registered_objects_only():
    lg = build_app(context={"imagery_sources": SOURCES})
    tmpl = Template.from_json(lg.app.synth().get_stack_by_name(lg.inference.stack_name).template)
    container = only_resource(tmpl, "AWS::Batch::JobDefinition")["Properties"]["ContainerProperties"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert parse_sources(env["LG_IMAGERY_SOURCES"]) == parse_sources(SOURCES)
    reads = json.dumps([s["Resource"] for lid, s in _statements(tmpl)
                        if lid.startswith("WorkerJobRole") and "s3:GetObject" in json.dumps(s["Action"])])
    for obj in ("my-imagery/kigali/2024/a.tif", "my-imagery/kigali/2024/b.tif", "my-imagery/stac/*"):
        assert obj in reads
    assert "my-imagery/*" not in reads


@pytest.mark.parametrize(("context", "message"), [
    ({"imagery_sources": "{nope"}, "imagery_sources: not JSON"),
    ({"imagery_sources": {"x y": "s3://b/a.tif"}}, "'x y': use 1-64 letters"),
    ({"imagery_sources": {"local": "/data/a.tif"}}, "'local': deployed workers read GeoTIFFs from s3:// only"),
    ({"imagery_sources": {"k": "https://t.example/{z}/{x}/{y}.png?key={token}"}}, "has {token} but imagery_secret_name is not set"),
    ({"imagery_sources": {"d": "s3://b/a.tif@someday"}}, "does not end in .tif or .tiff"),
    ({"imagery_sources": {"d": {"source": "s3://b/a.tif", "date": "someday"}}}, "capture date 'someday' does not parse"),
    # cdk.json's SOURCE@DATE is read as `up --imagery NAME=SOURCE@DATE` is (issue 18)
    ({"imagery_sources": {"d": "s3://b/a.tif@2024/01/01"}}, "'d': capture date '2024/01/01' does not parse (use YYYY-MM-DD"),
    ({"imagery_sources": {"t": "https://t.example/{z}/{x}/{y}.png@2024-1-5"}}, "'t': capture date '2024-1-5' does not parse"),
    ({"imagery_sources": {"default": "s3://b/a.tif"}}, "default_imagery='default' is also a name in imagery_sources"),
    ({"default_imagery": "no good"}, "default_imagery 'no good': use 1-64 letters"),
    ({"tile_url_template": "", "imagery_geotiff": "s3://bkt/a.tif,/data/b.tif"}, "every image of a list must be an s3:// URI"),
])
def test_bad_imagery_sources_are_refused_at_synth(context, message):
    with pytest.raises(ConfigError) as err:
        DeploymentConfig.from_context({**cdk_json_context(), **context})
    assert message in str(err.value)


@pytest.mark.parametrize("single", [{}, {"tile_url_template": "", "imagery_geotiff": "s3://my-imagery/scene.tif", "imagery_bands": "3,2,1",
                                         "imagery_attribution": "(c) Provider"}])
def test_the_workers_definitions_have_the_enumerators_digests(single):
    """Work units carry the digest the enumerator computed; the workers compare it with their own
    definition of the name (imagery.catalog): for a deployment as synthesized, every name agrees,
    so no tile is failed as 'redefined' when nothing was."""
    from looking_glass.imagery.catalog import ImageryCatalog

    config = DeploymentConfig.from_context({**cdk_json_context(), "imagery_sources": json.dumps(SOURCES), **single})
    catalog = ImageryCatalog(WorkerSettings.from_env(worker_environment(config)))
    enumerator = EnumeratorSettings.from_env(enumerator_environment(config, job_queue_arn="q", job_definition_arn="d"))
    for name in enumerator.imagery_names:
        assert catalog.definition(name).digest == enumerator.imagery.digest(name) != ""

"""Hostile input: bad bytes and absurd JSON get 400, never 500; every route survives schemathesis."""

from __future__ import annotations

import atexit
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import msgspec
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from access import make_api_key
from gpufleet.hub.app import create_app
from gpufleet.hub.auth.options import AccessOptions
from gpufleet.hub.extensions import load_extensions
from gpufleet.hub.service import Hub, HubOptions, IngestError
from gpufleet.promtext import ParseError, parse
from gpufleet.snapshot import NodeSnapshot, to_json
from sample_snapshot import sample_snapshot

DEEP = b"[" * 200_000 + b"]" * 200_000
DEEP_SMALL = b"[" * 30_000 + b"]" * 30_000  # under register's 64 KB body limit
BAD_UTF8 = [b'\xff\xfe{"node":"x"}', b'{"node":"\xff"}', b'{"snapshots":[{"node":"\xc3\x28","timestamp":1}]}']


@pytest.fixture(scope="module")
def hub():  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as d:
        h = Hub(HubOptions(data=Path(d)))
        yield h
        h.close()


@pytest.fixture(scope="module")
def cred(hub: Hub) -> str:
    return hub.register(hub.state.create_token(), "n1", {}, None)


@pytest.fixture(scope="module")
def client(hub: Hub):  # type: ignore[no-untyped-def]
    with TestClient(create_app(hub, load_extensions(hub), background=False), raise_server_exceptions=False,
                    base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize("body", [DEEP, b'{"snapshots":' + DEEP + b"}", b'{"node":' + DEEP + b"}", DEEP_SMALL,
                                  b'{"node":' + DEEP_SMALL + b"}", *BAD_UTF8],
                         ids=["deep-array", "deep-snapshots", "deep-node", "deep-30k", "deep-30k-node",
                              "utf8-bom", "utf8-value", "utf8-snapshot"])
@pytest.mark.parametrize("route", ["push", "register"])
def test_deep_json_and_invalid_utf8_are_400(client: TestClient, hub: Hub, cred: str, route: str, body: bytes) -> None:
    secret = hub.state.create_token() if route == "register" else cred
    r = client.post(f"/api/v1/{route}", content=body,
                    headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
    # Registration bodies are at most 64 KB: a 200k-deep one is refused for its size first.
    expected = 413 if route == "register" and len(body) > 64 * 1024 else 400
    assert r.status_code == expected, r.text
    assert r.json()["detail"]


def test_push_and_register_have_full_schemas(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    push = doc["paths"]["/api/v1/push"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    reg = doc["paths"]["/api/v1/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert push == {"$ref": "#/components/schemas/PushRequest"}
    assert schemas["PushRequest"]["required"] == ["snapshots"]
    assert {"node", "timestamp", "gpus", "host"} <= set(schemas["NodeSnapshot"]["properties"])
    assert reg["properties"]["node"]["pattern"] and "labels" in reg["properties"]


# ---- schemathesis: every route, no 5xx ------------------------------------------------------------

def _api_schema():  # type: ignore[no-untyped-def]
    d = tempfile.mkdtemp(prefix="gpufleet-schemathesis-")
    atexit.register(shutil.rmtree, d, True)
    hub = Hub(HubOptions(data=Path(d)))
    # Its ASGI client says Host: testserver; no rate limit, so every case reaches its route.
    access = AccessOptions(allowed_hosts=["testserver"], request_rate=0)
    app = create_app(hub, load_extensions(hub), background=False, access=access)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return hub, schema


_HUB, _SCHEMA = _api_schema()
_TOKEN = _HUB.state.create_token()
_CRED = _HUB.register(_HUB.state.create_token(), "n1", {}, None)
_KEY = make_api_key(_HUB.opts.data, "admin")  # people's routes with an admin's key: every check passes
AGENT_ROUTES = ("/api/v1/push", "/api/v1/commands/next", "/api/v1/commands/{run_id}/result")


# Left out: the live event stream never ends, and commands/next long-polls up to `wait` seconds.
@_SCHEMA.exclude(path=["/api/v1/events", "/api/v1/commands/next"]).parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx(case) -> None:  # type: ignore[no-untyped-def]
    # Real secrets (agents' and an admin's), so the fuzzed requests reach the code behind the auth.
    secret = _TOKEN if case.path == "/api/v1/register" else _CRED if case.path in AGENT_ROUTES else _KEY
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {secret}"}
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"


# ---- hypothesis on the parsers --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                 json_values.map(lambda v: json.dumps({"snapshots": [v]}).encode())))
def test_push_parser_raises_only_400s(hub: Hub, body: bytes) -> None:
    try:
        hub.decode_push(body, "n1")
    except IngestError as e:
        assert e.status in (400, 413) and str(e)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                 st.fixed_dictionaries({"node": st.text(max_size=30)}, optional={
                     "labels": json_values, "agent_url": json_values}).map(lambda v: json.dumps(v).encode())))
def test_register_answers_4xx_to_any_body(client: TestClient, hub: Hub, body: bytes) -> None:
    token = hub.state.create_token()
    r = client.post("/api/v1/register", content=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code < 500, r.text


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(st.text(min_size=1, max_size=12), finite, max_size=6),
       labels=st.dictionaries(st.from_regex(r"l_[a-z0-9_]{0,6}", fullmatch=True), st.text(max_size=12), max_size=3),
       offset=st.floats(min_value=-3600, max_value=200))
def test_push_parser_round_trips_what_an_agent_sends(hub: Hub, values: dict[str, float],
                                                    labels: dict[str, str], offset: float) -> None:
    s = sample_snapshot("n1")
    s.timestamp = time.time() + offset
    s.values = values
    s.labels = labels
    body = b'{"snapshots":[' + to_json(s) + b"]}"
    [(got, raw)] = hub.decode_push(body, "n1")
    assert raw == to_json(s)
    assert msgspec.structs.asdict(got) == msgspec.structs.asdict(msgspec.json.decode(to_json(s), type=NodeSnapshot))
    assert all(math.isfinite(v) for v in got.values.values())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_prometheus_text_parser_takes_any_bytes(data: bytes) -> None:
    try:
        parse(data)
    except ParseError as e:
        assert e.line >= 1

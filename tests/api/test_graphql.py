"""GraphQL protocol behaviour: typed errors, limits, introspection, no stack traces."""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest
from graphql import GraphQLError, parse

from mediagate.api.context import authenticate
from mediagate.api.graphql.errors import RequestError, format_error
from mediagate.api.graphql.executor import GraphQLExecutor
from mediagate.api.graphql.limits import DocumentMeter
from mediagate.api.graphql.schema import load_schema
from mediagate.api.resolvers import RESOLVERS, SUBSCRIPTIONS
from mediagate.config import GraphQLSettings
from mediagate.errors import Forbidden
from tests.support.api import Tenant, error_codes, graphql
from tests.support.flow import GET_UPLOAD_URL, MEDIA


async def test_invalid_uuid_variable_is_bad_user_input(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await graphql(api, MEDIA, {"id": "not-a-uuid"}, tenant.token)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert "not a valid UUID" in body["errors"][0]["message"]


async def test_validation_errors_of_getupload_url_name_the_field(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    variables = {
        "sessionId": str(tenant.session_id),
        "filename": "../x.jpg",
        "contentType": "image/jpeg",
    }
    body = await graphql(api, GET_UPLOAD_URL, variables, tenant.token)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "filename"
    assert body["errors"][0]["path"] == ["getUploadUrl"]
    bad_type = {**variables, "filename": "x.svg", "contentType": "image/svg+xml"}
    body = await graphql(api, GET_UPLOAD_URL, bad_type, tenant.token)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "contentType"}


async def test_parse_errors_are_typed_and_http_400(api: httpx.AsyncClient) -> None:
    response = await api.post("/graphql", json={"query": "mutation {"})
    assert response.status_code == 400
    assert error_codes(response.json()) == ["GRAPHQL_PARSE_FAILED"]


async def test_unknown_fields_fail_validation(api: httpx.AsyncClient) -> None:
    response = await api.post("/graphql", json={"query": "{ secrets }"})
    assert response.status_code == 400
    assert error_codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_non_json_and_malformed_bodies_are_bad_requests(api: httpx.AsyncClient) -> None:
    for content in (b"{nope", b"[]", b'{"query": 1}', b'{"query": "{a}", "variables": []}'):
        response = await api.post(
            "/graphql", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert error_codes(response.json()) == ["BAD_REQUEST"]


@pytest.mark.parametrize("levels", [17, 1_000, 20_000])
async def test_deeply_nested_variables_are_bad_requests(
    api: httpx.AsyncClient, tenant: Tenant, levels: int
) -> None:
    nested = "[" * levels + "]" * levels
    body = f'{{"query": {json.dumps(MEDIA)}, "variables": {{"id": {nested}}}}}'
    response = await api.post(
        "/graphql",
        content=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code == 400
    assert error_codes(response.json()) == ["BAD_REQUEST"]
    assert "nest" in response.json()["errors"][0]["message"]


async def test_oversized_bodies_and_other_methods_are_refused(api: httpx.AsyncClient) -> None:
    huge = await api.post("/graphql", content=b"{" + b" " * 70_000 + b"}")
    assert huge.status_code == 413 and error_codes(huge.json()) == ["BAD_REQUEST"]
    get = await api.get("/graphql")
    assert get.status_code == 405


async def test_introspection_is_off_by_default(api: httpx.AsyncClient) -> None:
    response = await api.post("/graphql", json={"query": "{ __schema { types { name } } }"})
    assert response.status_code == 400
    assert set(error_codes(response.json())) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "introspection" in response.json()["errors"][0]["message"]


LIMITS = GraphQLSettings(
    introspection=True, max_depth=8, max_aliases=10, max_selections=200, max_spreads=30
)


def _executor(max_depth: int = LIMITS.max_depth) -> GraphQLExecutor:
    schema = load_schema(RESOLVERS, authenticate, SUBSCRIPTIONS)
    return GraphQLExecutor(schema, replace(LIMITS, max_depth=max_depth))


def test_depth_limit_counts_through_fragments() -> None:
    deep = "{ __schema { types { fields { type { ofType { ofType { name } } } } } } }"
    executor = _executor(max_depth=5)
    with pytest.raises(RequestError) as caught:
        executor.document(deep)
    assert caught.value.errors[0]["message"] == "query depth 7 exceeds the limit of 5"
    via_fragments = (
        "{ __schema { ...T } } fragment T on __Schema { types { ...F } } "
        "fragment F on __Type { fields { type { ofType { ofType { name } } } } }"
    )
    with pytest.raises(RequestError):
        executor.document(via_fragments)
    assert executor.document("{ __schema { types { name } } }") is not None


def test_fragment_cycles_do_not_hang_the_limits() -> None:
    cyclic = "{ __schema { ...A } } fragment A on __Schema { ...B } fragment B on __Schema { ...A }"
    with pytest.raises(RequestError) as caught:
        _executor().document(cyclic)
    assert {e["extensions"]["code"] for e in caught.value.errors} == {"GRAPHQL_VALIDATION_FAILED"}


def _fan_out(fragments: int) -> str:
    """Each fragment spreads the next one twice: 2**fragments fields once expanded."""
    chain = " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} a{i}: __typename ...F{i + 1} }}"
        for i in range(fragments)
    )
    return f"{{ ...F0 }} {chain} fragment F{fragments} on Query {{ __typename }}"


def _work(query: str, limits: GraphQLSettings) -> int:
    meter = DocumentMeter(limits)
    meter.check(parse(query))
    return meter.nodes_visited


def test_the_cost_check_is_linear_in_the_document_under_fragment_fan_out() -> None:
    generous = replace(LIMITS, max_selections=10**12, max_aliases=10**12, max_spreads=10**6)
    work = {n: _work(_fan_out(n), generous) for n in (10, 20, 40, 80)}
    # Expanded, these documents ask for 2**10 .. 2**80 fields; the check visits each
    # node and each fragment a bounded number of times.
    for small, large in ((10, 20), (20, 40), (40, 80)):
        assert work[large] <= 2.2 * work[small], work
    assert work[80] < 20 * 80


def test_fragment_fan_out_is_refused_as_over_budget() -> None:
    executor = _executor()
    with pytest.raises(RequestError) as caught:
        executor.document(_fan_out(25))
    assert caught.value.errors[0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert caught.value.errors[0]["message"] == "more than 30 fragment spreads"
    with pytest.raises(RequestError) as caught:
        executor.document(_fan_out(12))  # 24 spreads: within that limit, not the fields'
    assert "selects more than 200 fields" in caught.value.errors[0]["message"]


async def test_fan_out_without_a_token_leaves_the_server_answering(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/graphql", json={"query": _fan_out(28)})
    assert response.status_code == 400
    assert error_codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]
    assert (await api.get("/healthz")).status_code == 200


def test_documents_are_parsed_and_validated_once() -> None:
    executor = _executor()
    first = executor.document("{ __typename }")
    assert executor.document("{ __typename }") is first


async def test_alias_limit(api: httpx.AsyncClient, tenant: Tenant) -> None:
    fields = " ".join(f'a{i}: media(id: "{tenant.session_id}") {{ id }}' for i in range(11))
    response = await api.post("/graphql", json={"query": "{ " + fields + " }"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "more than 10 aliases"


async def test_huge_documents_are_refused_before_parsing_everything(api: httpx.AsyncClient) -> None:
    query = "{ " + " ".join("__typename" for _ in range(5000)) + " }"
    response = await api.post("/graphql", json={"query": query})
    assert response.status_code == 400
    assert error_codes(response.json()) == ["GRAPHQL_PARSE_FAILED"]


def test_unexpected_errors_are_masked_without_a_trace() -> None:
    error = GraphQLError("boom", original_error=RuntimeError("password=hunter2 at line 3"))
    formatted = format_error(error)
    assert formatted == {
        "message": "Internal server error",
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }


def test_client_errors_keep_their_code_and_message() -> None:
    error = GraphQLError("x", original_error=Forbidden("access denied"))
    assert format_error(error)["extensions"] == {"code": "FORBIDDEN"}
    assert format_error(error)["message"] == "access denied"


async def test_health_endpoints(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"database": "ok", "broker": "ok"}


async def test_metrics_for_prometheus(api: httpx.AsyncClient, tenant: Tenant) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.support.flow import request_upload
    from tests.support.worker_process import wait_until

    def samples(text: str) -> dict[tuple[str, str], float]:
        return {
            (sample.name, ",".join(sample.labels.values())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    pending = ("mediagate_media", "PENDING_UPLOAD")
    before = await api.get("/metrics")
    old = samples(before.text)
    await request_upload(api, tenant)

    async def counted() -> bool:  # within METRICS_CACHE_SECONDS
        after = await api.get("/metrics")
        assert after.status_code == 200
        assert after.headers["content-type"].startswith("text/plain")
        return samples(after.text)[pending] == old[pending] + 1

    await wait_until(counted, "the new upload was never counted", timeout=30)
    new = samples((await api.get("/metrics")).text)
    assert {status for name, status in new if name == "mediagate_media"} >= {
        "PENDING_UPLOAD",
        "UPLOADED",
        "SCANNING",
        "PROCESSING",
        "COMPLETED",
        "REJECTED",
        "SCAN_FAILED",
    }
    assert ("mediagate_viruses_found", "") in new
    assert any(
        name == "mediagate_queue_messages" and queue.endswith(".dead") for name, queue in new
    )

"""The OpenAPI schema and docs are served without a CDN and describe the token scheme."""


def test_schema_describes_predict_and_token_auth(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/projects/{slug}/predict" in schema["paths"]
    assert schema["components"]["securitySchemes"]["ProjectToken"]["in"] == "header"


def test_docs_page_loads_assets_locally(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"/static/drf_spectacular_sidecar/" in response.content
    assert b"cdn" not in response.content.lower()


def test_every_operation_has_request_and_response_examples(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operations = [(path, method, op) for path, ops in schema["paths"].items()
                  for method, op in ops.items()]
    assert {path for path, _m, _op in operations} >= {
        "/api/v1/projects/{slug}/predict", "/api/v1/projects/{slug}/models",
        "/api/v1/projects/{slug}/models/{number}", "/api/v1/projects/{slug}/models/{number}/promote"}
    for path, method, op in operations:
        for media_type, content in op.get("requestBody", {}).get("content", {}).items():
            assert content.get("examples"), f"{method} {path} {media_type}: no request example"
        for status, response in op["responses"].items():
            examples = [c.get("examples") for c in response.get("content", {}).values()]
            assert any(examples), f"{method} {path} {status}: no response example"
        assert {"ProjectToken": []} in op["security"], f"{method} {path}"
        assert {"401", "403", "404", "429"} <= set(op["responses"]), f"{method} {path}"

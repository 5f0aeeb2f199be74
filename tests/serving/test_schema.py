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

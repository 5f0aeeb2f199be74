"""Django's own 404s: JSON under /api/, where every answer is JSON; HTML pages elsewhere."""
import pytest


@pytest.mark.parametrize("path", ["/api/v1/projects/x/models/null,null", "/api/v1/nothing",
                                  "/api/v2/projects/x/predict"])
def test_a_path_under_api_that_matches_no_route_gets_a_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found" and response.json()["detail"] == {"path": path}


def test_a_page_that_does_not_exist_is_still_an_html_404(client):
    response = client.get("/no/such/page/")
    assert response.status_code == 404 and "text/html" in response["Content-Type"]

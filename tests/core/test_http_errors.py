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


def test_favicon_ico_points_at_the_icon_every_page_links(client):
    from django.contrib.staticfiles import finders

    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"] == "/static/img/favicon.svg"
    assert finders.find("img/favicon.svg")  # the file is shipped
    login = client.get("/login/").content.decode()
    assert '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">' in login

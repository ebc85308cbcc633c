"""The service serves the built page at `/`, its API routes still answer beside it, and
without a build `/` says how to make one."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serving.service import api


class _Runtime:
    """Just enough of ServiceRuntime for routes that do not trade."""

    def status(self) -> dict:
        return {"state": "starting", "mode": "paper"}


def _client(monkeypatch, page_dir) -> TestClient:
    monkeypatch.setattr(api, "PAGE_DIR", page_dir)
    app = api.create_app(lambda: _Runtime(), max_body_bytes=1024, manage_runtime=False)
    return TestClient(app)


def test_the_page_is_served_at_the_root_beside_the_api(monkeypatch, tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>monitor</title>")
    (tmp_path / "assets" / "app.js").write_text("console.log('page')")
    with _client(monkeypatch, tmp_path) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<title>monitor</title>" in page.text
        assert page.headers["content-type"].startswith("text/html")
        assert client.get("/assets/app.js").text == "console.log('page')"
        assert client.get("/status").json() == {"state": "starting", "mode": "paper"}
        assert client.get("/assets/missing.js").status_code == 404
        assert client.get("/../pyproject.toml").status_code == 404
        # the page is no catch-all: the API's own answers stay (wrong method: 405)
        assert client.get("/act").status_code == 405
        assert client.get("/index.html").status_code == 404


def test_without_a_build_the_root_says_how_to_make_one(monkeypatch, tmp_path):
    with _client(monkeypatch, tmp_path / "dist") as client:
        response = client.get("/")
        assert response.status_code == 404
        assert "make setup" in response.json()["detail"]
        assert client.get("/status").status_code == 200

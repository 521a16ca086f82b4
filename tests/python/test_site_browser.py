"""The package's website (pkgdown, `make site`) as a reader sees it in Debian's Chromium: its reference grouped
by task, the article, and no link between its pages that leads nowhere."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import BROWSER_LOOK, needs_browser
from conftest import REPO as ROOT

pytestmark = needs_browser


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> list[dict]:
    """The site built as `make site` builds it (into a temporary folder), every page crawled from its home."""
    where = tmp_path_factory.mktemp("site")
    subprocess.run(["Rscript", "-e", f"pkgdown::build_site(preview = FALSE, install = FALSE, new_process = FALSE, "
                                     f"override = list(destination = '{where}'))"],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    done = subprocess.run(["node", str(BROWSER_LOOK), "site", str(where), str(where / "index.html")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def page(site: list[dict], file: str) -> dict:
    found = [p for p in site if p["file"] == file]
    assert found, f"{file} is not reachable from the home page"
    return found[0]


def test_the_reference_is_grouped_by_what_a_user_does(site):
    reference = page(site, "reference/index.html")
    assert reference["headings"][:1] == ["Function reference"]
    groups = ["Install", "Build a flow", "Run a flow", "Read results", "Production", "Try production offline"]
    assert [h for h in reference["headings"] if h in groups] == groups
    namespace = (ROOT / "NAMESPACE").read_text()
    exported = set(re.findall(r"^export\(\"?([^\")]+)\"?\)$", namespace, re.M))
    for name in exported - {"%>%"}:  # functions as name(), the client classes as name
        assert re.search(rf"\b{re.escape(name)}\b", reference["text"]), f"{name} is not in the reference index"


def test_the_article_renders(site):
    article = page(site, "articles/scheduling-flows.html")
    assert article["title"].startswith("Scheduling flows")
    assert "Pushing a flow to production" in article["headings"]
    assert 'metaflow("ParameterFlow")' in article["text"]


def test_no_page_links_to_a_page_that_is_not_there(site):
    assert len(site) > 20, "the crawl did not reach the site's pages"
    assert [(p["file"], p["broken"]) for p in site if p["broken"]] == []
    # What the site holds itself loads (pkgdown's template takes some scripts from CDNs, out of reach here).
    assert [(p["file"], [u for u in p["failed"] if not u.startswith("https://")]) for p in site
            if any(not u.startswith("https://") for u in p["failed"])] == []

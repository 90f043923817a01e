"""`kedro viz` as a user sees it: the static site of `kedro viz build`, served on loopback and
opened in headless Chromium.

The site's data (``api/main``) must hold every registered pipeline, every node, one collapsible
namespace per backend, and datasets placed in layers. Then the browser must draw the DAG (kedro-viz
lays nodes out client-side in JavaScript, so only a real browser proves it renders) and expand a
backend's namespace on click. A screenshot stays in tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from bench_pipeline.backends import runnable
from bench_pipeline.pipeline_registry import register_pipelines
from conftest import PROJECT_ROOT, copy_project, kedro
from ui_helpers import LOOPBACK, background_server, free_port

pytestmark = [pytest.mark.slow, pytest.mark.ui]  # kedro viz in a headless browser

SCREENSHOT = PROJECT_ROOT / "tests" / "artifacts" / "kedro_viz_flowchart.png"
RENDER_TIMEOUT_S = 120
# Loopback only: every host name but 127.0.0.1 fails to resolve (kedro-viz asks Google Fonts).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--window-size=1920,1600",
]
# The nodes drawn in the flowchart (SVG), not the sidebar's list: label, box and opacity of each
# laid-out node, so a wait can tell when kedro-viz's entry animation (fade in, zoom to fit) is over.
DRAWN_NODES_JS = """
return Array.from(document.querySelectorAll('g.pipeline-node'))
  .map(node => [node.querySelector('.pipeline-node__text').textContent, node.getBoundingClientRect(), node])
  .filter(([label, box, node]) => box.width > 0)
  .map(([label, box, node]) => [label, Math.round(box.x), Math.round(box.y), Math.round(box.width),
                                getComputedStyle(node).opacity]);
"""
# kedro-viz's new-feature tour pops up over the DAG a few seconds after load, whatever localStorage
# says; hiding it keeps the screenshot readable and changes nothing else on the page.
HIDE_FEATURE_HINTS_JS = """
const style = document.createElement('style');
style.textContent = '.feature-hints, .feature-hints__highlightDot { display: none !important; }';
document.head.appendChild(style);
"""
NAMESPACE_NODE_JS = """
return Array.from(document.querySelectorAll('g.pipeline-node--modularPipeline'))
  .find(node => node.querySelector('.pipeline-node__text').textContent === arguments[0]);
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("project"))
    result = kedro(project, "viz", "build")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project / "build"


@pytest.fixture(scope="module")
def viz_main(site) -> dict:
    """What the page renders: kedro-viz's own JSON for the default pipeline."""
    return json.loads((site / "api" / "main").read_text())


@pytest.fixture(scope="module")
def site_url(site, tmp_path_factory) -> str:
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [sys.executable, "-m", "http.server", str(port), "--bind", LOOPBACK, "--directory", str(site)]
    log = tmp_path_factory.mktemp("http-server") / "server.log"
    with background_server(command, site, f"{url}/api/main", log, timeout_s=60):
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("needs Debian's browser: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    # Both paths given, so Selenium Manager never looks for (or downloads) a browser or driver.
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(RENDER_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def full_name(node: dict) -> str:
    """A task's Kedro name: kedro-viz shows the short name and keeps the namespace apart."""
    namespaces = node.get("modular_pipelines") or []
    return f"{max(namespaces, key=len)}.{node['name']}" if namespaces else node["name"]


def default_nodes(viz_main: dict, node_type: str) -> list[dict]:
    return [n for n in viz_main["nodes"] if n["type"] == node_type and "__default__" in n["pipelines"]]


def children_names(viz_main: dict, namespace: str) -> set[str]:
    """Names of what the flowchart draws inside ``namespace`` (``__root__``: the collapsed top level).
    Parameters are left out: kedro-viz hides them by default (a child record may call one "data")."""
    drawn = {n["id"]: n["name"] for n in viz_main["nodes"] if n["type"] != "parameters"}
    children = viz_main["modular_pipelines"][namespace]["children"]
    return {drawn[child["id"]] for child in children if child["id"] in drawn}


def open_flowchart(browser, url: str) -> None:
    browser.get(url)
    browser.execute_script(HIDE_FEATURE_HINTS_JS)


def wait_for_drawn(browser, expected: set[str]) -> set[str]:
    """The drawn labels once all ``expected`` are drawn and the layout stood still for one poll,
    or whatever is drawn at the deadline."""
    previous: list = []

    def settled(driver) -> bool:
        nonlocal previous
        current = driver.execute_script(DRAWN_NODES_JS)
        done = expected <= {label for label, *_ in current} and current == previous
        previous = current
        return done

    try:
        WebDriverWait(browser, RENDER_TIMEOUT_S, poll_frequency=0.5).until(settled)
    except TimeoutException:
        pass
    return {label for label, *_ in browser.execute_script(DRAWN_NODES_JS)}


def test_site_has_every_registered_pipeline(viz_main):
    assert {p["id"] for p in viz_main["pipelines"]} == set(register_pipelines())


def test_site_has_every_node_and_one_namespace_per_backend(viz_main):
    pipeline = register_pipelines()["__default__"]
    tasks = {full_name(n) for n in default_nodes(viz_main, "task")}
    assert tasks == {node.name for node in pipeline.nodes}
    assert {"resolve_model_node", "aggregate_results_node", "render_report_node", "eager.plan_node",
            "measure_node"} <= tasks
    namespaces = {n["name"] for n in default_nodes(viz_main, "modularPipeline")}
    assert set(runnable()) <= namespaces
    for backend in runnable():
        assert "plan_node" in children_names(viz_main, backend)


def test_every_dataset_sits_in_a_layer(viz_main):
    datasets = default_nodes(viz_main, "data")
    missing = sorted(n["name"] for n in datasets if not n.get("layer"))
    assert not missing, f"datasets without `metadata: kedro-viz: layer:` in the catalog: {missing}"
    # kedro-viz silently drops all layers when they form a cycle along the DAG.
    assert set(viz_main["layers"]) == {n["layer"] for n in datasets}, "layers dropped: a cycle among layers?"


def test_browser_draws_the_dag_collapsed_per_backend(browser, site_url, viz_main):
    expected = children_names(viz_main, "__root__")
    assert {"resolve_model_node", "aggregate_results_node", *runnable()} <= expected
    open_flowchart(browser, site_url)
    drawn = wait_for_drawn(browser, expected)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert expected <= drawn, f"not drawn: {sorted(expected - drawn)}; drawn: {sorted(drawn)}"


def test_clicking_a_backend_namespace_expands_it(browser, site_url, viz_main):
    open_flowchart(browser, site_url)
    assert "eager" in wait_for_drawn(browser, {"eager"})
    browser.execute_script(NAMESPACE_NODE_JS, "eager").click()
    inside = children_names(viz_main, "eager")
    drawn = wait_for_drawn(browser, inside)
    assert inside <= drawn, f"not drawn after expanding eager: {sorted(inside - drawn)}"

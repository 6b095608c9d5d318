"""Real JupyterLab in headless Chromium: run 01-quickstart.ipynb, then use the dashboard as a person would.

JupyterLab runs on a free loopback port with its own config, runtime, settings and workspace folders
and a token; Chromium is Debian's (/usr/bin/chromium, installed by scripts/ci-browser-deps.sh), driven
by the playwright package without any browser download. Screenshots go to ``test-output/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = REPO / "test-output"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    settings = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
        # every cell stays rendered, so outputs far down the notebook can be found and clicked
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _open_example(page, dashboard, button, caption: str):
    """Click an example's ``button`` (title ``"#123: ..."``) and wait until the gallery's detail shows that
    example, its text starting ``#123`` + ``caption``; returns the detail."""
    index = button.get_attribute("title").split(":")[0]
    button.click()
    detail = dashboard.locator(".cscore-gallery-detail")
    page.wait_for_function("([el, i, c]) => el.textContent.startsWith(i + c)",
                           arg=[detail.element_handle(), index, caption], timeout=15_000)
    return detail


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on loopback serving a copy of 01-quickstart.ipynb; yields (url, token, root)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install it with `bash scripts/ci-browser-deps.sh` (Debian chromium)")
    pytest.importorskip("jupyterlab", reason="the browser test needs jupyterlab (pip install 'cscore-lab[test]')")
    pytest.importorskip("playwright", reason="the browser test needs the playwright package (pip install 'cscore-lab[test]')")
    root, home = tmp_path / "lab", tmp_path / "home"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "01-quickstart.ipynb", root)
    dirs = {name: home / name for name in ("config", "runtime", "ipython", "settings", "workspaces")}
    for d in dirs.values():
        d.mkdir(parents=True)
    _write_settings(dirs["settings"])
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
               IPYTHONDIR=str(dirs["ipython"]), JUPYTER_PLATFORM_DIRS="1")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={dirs['settings']}",
           f"--LabApp.workspaces_dir={dirs['workspaces']}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(tmp_path / "jupyterlab.log", "wb")
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start; log:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url, token, root
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_quickstart_dashboard_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    url, token, root = lab
    OUTPUT.mkdir(exist_ok=True)
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{url}/lab/tree/01-quickstart.ipynb?reset&token={token}")
            page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=60_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

            # the last cell's asserts pass: every cell ran, in the kernel JupyterLab started
            page.wait_for_selector(f"{PANEL} .jp-OutputArea-output:has-text('all checks passed')",
                                   state="attached", timeout=240_000)
            ran = time.monotonic() - t0
            assert page.locator(f"{PANEL} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                                ":has-text('Error')").count() == 0
            config = page.locator("#jupyter-config-data").text_content() or ""
            assert "@jupyter-widgets/jupyterlab-manager" in config, "the widget front end is not installed"
            assert page.get_by_text("Error displaying widget").count() == 0

            # the live run monitor finished
            monitor = page.locator(f"{PANEL} .cscore-run-monitor").first
            status = monitor.locator(".cscore-status").text_content()
            assert "48/48 [" in status and "finished" in status  # tqdm's own meter

            dashboard = page.locator(f"{PANEL} .cscore-dashboard").first
            dashboard.scroll_into_view_if_needed()
            tabs = dashboard.locator(".lm-TabBar-tab")
            assert [t.strip() for t in tabs.all_text_contents()] == ["Distribution", "Agreement", "Ratios",
                                                                     "Memorization", "Gallery", "Uses"]

            # Agreement: the correlation table with the proxies, and its figures
            tabs.filter(has_text="Agreement").click()
            table = dashboard.locator(".cscore-correlations table").first
            table.wait_for(state="visible", timeout=15_000)
            assert table.locator("tbody tr").count() >= 20
            assert "cum_label_prob" in table.text_content()
            agreement_images = dashboard.locator(".widget-image:visible")
            assert agreement_images.count() >= 3
            dashboard.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(OUTPUT / "jupyterlab-quickstart-agreement.png"))

            # Memorization: the summary, the scatter and the 16 most memorized examples, rendered
            tabs.filter(has_text="Memorization").click()
            memorized = dashboard.locator(".cscore-memorized-grid")
            memorized.locator("img").first.wait_for(state="visible", timeout=15_000)
            assert memorized.locator("img").count() == 16
            assert "mean memorization" in dashboard.locator(".cscore-memorization-summary").text_content()
            scatter = dashboard.locator(".cscore-memorization > .widget-hbox > .widget-image")
            assert scatter.count() == 1 and scatter.evaluate("e => e.complete && e.naturalWidth > 0")
            assert page.evaluate("els => els.every(e => e.complete && e.naturalWidth > 0)",
                                 memorized.locator("img").element_handles())
            dashboard.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(OUTPUT / "jupyterlab-quickstart-memorization.png"))
            # a click on the most memorized opens it in the gallery, with its memorization
            detail = _open_example(page, dashboard, memorized.locator("button").first, " label")
            assert "memorization" in detail.text_content()
            assert dashboard.locator(".lm-TabBar-tab.lm-mod-current").text_content().strip() == "Gallery"

            # Gallery: 24 rendered images; another class gives other images and captions
            grid = dashboard.locator(".cscore-gallery-grid")
            grid.locator("img").first.wait_for(state="visible", timeout=15_000)
            assert grid.locator("img").count() == 24
            assert page.evaluate("els => els.every(e => e.complete && e.naturalWidth > 0)",
                                 grid.locator("img").element_handles())
            before_src = grid.locator("img").evaluate_all("els => els.map(e => e.src)")
            before_caps = grid.locator("button").all_text_contents()
            assert len({c.split(" · ")[0] for c in before_caps}) > 1  # all classes: several labels

            dashboard.locator(".cscore-gallery .widget-dropdown select").select_option(label="3")
            page.wait_for_function(
                "el => [...el.querySelectorAll('button')].length > 0 && "
                "[...el.querySelectorAll('button')].every(b => b.textContent.startsWith('3 ·'))",
                arg=grid.element_handle(), timeout=15_000)
            after_src = grid.locator("img").evaluate_all("els => els.map(e => e.src)")
            assert not set(after_src) & set(before_src)
            assert page.evaluate("els => els.every(e => e.complete && e.naturalWidth > 0)",
                                 grid.locator("img").element_handles())

            # choosing an image shows its details: per-ratio scores and neighbours
            detail = _open_example(page, dashboard, grid.locator("button").nth(1), " label 3,")
            assert "nearest neighbours share its label" in detail.text_content()
            assert detail.locator("img").count() == 8  # the example, its per-ratio profile, 6 neighbours
            assert page.get_by_text("Error displaying widget").count() == 0

            dashboard.evaluate("e => e.scrollIntoView({block: 'start'})")
            shot = OUTPUT / "jupyterlab-quickstart-gallery.png"
            page.screenshot(path=str(shot))
            print(f"\nscreenshot: {shot}\nnotebook ran in {ran:.0f} s; test took {time.monotonic() - t0:.0f} s")
        finally:
            browser.close()

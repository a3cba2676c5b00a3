"""``gem demo`` as users meet it: the real command serving on loopback, called through gradio_client (the
``/segment`` API contract, bad inputs) and driven by a real headless Chromium (selenium + Debian's chromedriver).

One server for the module (started once, stopped at the end); the bundled ``gem-lite-synth`` model.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gemseg
from gemseg.cli.main import main

pytest.importorskip("gradio", reason="the demo needs the optional extra .[demo] (gradio)")
gradio_client = pytest.importorskip("gradio_client", reason="the API tests need gradio_client (installed with gradio)")

EXAMPLE = Path(gemseg.__file__).resolve().parent / "assets" / "examples" / "glass_room.jpg"
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``gem demo`` in a subprocess on a free loopback port: yields its URL; SIGTERM at the end must stop it."""
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", TMPDIR=str(tmp_path_factory.mktemp("server-tmp")),
               PYTHONPATH=os.pathsep.join([str(Path(gemseg.__file__).resolve().parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    env.pop("GRADIO_SERVER_PORT", None)
    log = tmp_path_factory.mktemp("server-log") / "gem-demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gemseg.cli.main", "demo", "--host", "127.0.0.1",
                                 "--port", str(port), "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    try:
        while not _answers(url):
            if proc.poll() is not None or time.perf_counter() - t0 > START_TIMEOUT_S:
                pytest.fail(f"gem demo did not start (exit {proc.poll()}):\n{log.read_text()}")
            time.sleep(0.2)
        startup_s = time.perf_counter() - t0
        yield {"url": url, "startup_s": startup_s, "log": log, "tmp": Path(env["TMPDIR"])}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("gem demo did not stop on SIGTERM")
    assert code == 0, log.read_text()
    assert not list(Path(env["TMPDIR"]).glob("gemseg-demo-*")), "the download folder was not cleaned up"


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server["url"], verbose=False, download_files=str(server["tmp"] / "client"))


def _call(client, path):
    """/segment on ``path`` → (outputs or None, error message or None, warning messages)."""
    job = client.submit(gradio_client.handle_file(str(path)) if path is not None else None, api_name="/segment")
    try:
        outputs, error = job.result(timeout=60), None
    except Exception as e:  # noqa: BLE001 - the client raises AppError with the server's message
        outputs, error = None, str(e)
    warnings = []
    while not job.communicator.updates.empty():  # status updates carry the gr.Warning messages ("log")
        log = getattr(job.communicator.updates.get_nowait(), "log", None)
        if log:
            warnings.append(log[0])
    return outputs, error, warnings


def test_upload_payloads_become_files(tmp_path):
    import base64
    import io

    from gemseg.demo.app import upload_path
    from gemseg.demo.handlers import DemoInputError, OutputStore, read_upload

    store = OutputStore(tmp_path / "store")
    assert upload_path(None, store) is None and upload_path({"path": None, "url": None}, store) is None
    assert upload_path({"path": "/x/a.png", "url": "http://h/a.png"}, store) == "/x/a.png"
    buf = io.BytesIO()
    Image.fromarray(np.full((5, 7, 3), 9, np.uint8)).save(buf, format="PNG")
    pasted = upload_path({"path": None, "url": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()},
                         store)
    assert read_upload(pasted).rgb.shape == (5, 7, 3)
    with pytest.raises(DemoInputError, match="pasted data"):
        upload_path({"url": "data:image/png;base64,@@@"}, store)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_api_contract_one_image_in_mask_then_probability_out(server, client):
    print(f"\ngem demo answered after {server['startup_s']:.1f} s")
    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/segment"]
    assert [p["component"] for p in endpoint["parameters"]] == ["Image"]
    assert [r["label"] for r in endpoint["returns"]] == ["mask", "probability"]


def test_segment_mask_equals_gem_predict(client, tmp_path, capsys):
    t0 = time.perf_counter()
    outputs, error, _ = _call(client, EXAMPLE)
    request_s = time.perf_counter() - t0
    assert error is None
    mask = np.asarray(Image.open(outputs[0]))
    prob = np.asarray(Image.open(outputs[1]))

    assert main(["predict", str(EXAMPLE), "--output", str(tmp_path / "out"), "--prob", "--quiet"]) == 0
    capsys.readouterr()
    expected = np.asarray(Image.open(tmp_path / "out" / "glass_room.png"))
    expected_prob = np.asarray(Image.open(tmp_path / "out" / "glass_room_prob.png"))
    assert mask.shape == expected.shape == (416, 640) and set(np.unique(mask)) == {0, 255}
    iou = _iou(mask, expected)
    assert iou >= 0.99
    assert 0.2 < (mask > 0).mean() < 0.8  # the bundled model finds the windows, not all or nothing
    # second output: the 8-bit probability map (graded, not binary), as gem predict --prob writes it
    assert prob.shape == mask.shape and len(np.unique(prob)) > 50
    assert np.abs(prob.astype(int) - expected_prob.astype(int)).max() <= 1
    print(f"\n/segment: IoU {iou:.4f} with gem predict; {request_s * 1000:.0f} ms for the example (first request)")


def test_concurrent_requests_queue_and_all_succeed(client):
    jobs = [client.submit(gradio_client.handle_file(str(EXAMPLE)), api_name="/segment") for _ in range(3)]
    masks = [np.asarray(Image.open(job.result(timeout=60)[0])) for job in jobs]
    assert all(np.array_equal(m, masks[0]) for m in masks)


def _bad_inputs(folder: Path):
    """name → (path or None, phrase of the expected message)."""
    (folder / "notes.png").write_text("just text, no pixels")
    (folder / "empty.jpg").write_bytes(b"")
    good = EXAMPLE.read_bytes()
    (folder / "cut.jpg").write_bytes(good[: len(good) // 2])
    Image.new("1", (9000, 6000)).save(folder / "huge.png")  # 54 megapixels, a few kB on disk
    return {
        "not an image": (folder / "notes.png", "is not an image this demo can read"),
        "empty file": (folder / "empty.jpg", "empty (0 bytes)"),
        "truncated": (folder / "cut.jpg", "Cannot read 'cut.jpg'"),
        "huge": (folder / "huge.png", "9000×6000 px (54.0 megapixels), beyond this demo's limit"),
        "no upload": (None, "No image"),
    }


def test_bad_inputs_get_a_message_and_the_server_keeps_serving(client, tmp_path):
    for case, (path, phrase) in _bad_inputs(tmp_path).items():
        outputs, error, _ = _call(client, path)
        assert outputs is None and error is not None, case
        assert phrase in error and "Traceback" not in error, (case, error)
        outputs, error, _ = _call(client, EXAMPLE)  # the next good request still works
        assert error is None and np.asarray(Image.open(outputs[0])).shape == (416, 640), case


def test_gray_rgba_16bit_are_segmented_with_a_warning(client, tmp_path):
    rgb = np.asarray(Image.open(EXAMPLE).resize((160, 104)))
    Image.fromarray(rgb[:, :, 1]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb[:, :, 1].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    expected_notes = {"gray.png": "grayscale", "rgba.png": "transparent", "deep.png": "16-bit"}
    for name, note in expected_notes.items():
        outputs, error, warnings = _call(client, tmp_path / name)
        assert error is None, (name, error)
        mask = np.asarray(Image.open(outputs[0]))
        assert mask.shape == (104, 160) and set(np.unique(mask)) <= {0, 255}, name
        assert any(note in w for w in warnings), (name, warnings)
    # opaque RGBA composites to the same pixels as the plain photo: the same mask
    plain, _, plain_warnings = _call(client, tmp_path / "plain.png")
    rgba, _, _ = _call(client, tmp_path / "rgba.png")
    assert plain_warnings == []
    assert np.array_equal(np.asarray(Image.open(plain[0])), np.asarray(Image.open(rgba[0])))


# -- a real browser -------------------------------------------------------------------------------------------------
def _chrome():
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium")
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("the browser test needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver); not found on PATH")
    os.environ["SE_OFFLINE"] = "true"  # never let selenium-manager download a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # to list every request the page makes
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1100", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def test_browser_uploads_the_example_and_shows_the_overlay(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome()
    try:
        driver.get(server["url"])
        wait = WebDriverWait(driver, 60)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#gemseg-input input[type=file]"))
        assert "40 megapixels" in driver.find_element(By.TAG_NAME, "body").text  # the limit is stated
        upload.send_keys(str(EXAMPLE))
        overlay = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#gemseg-overlay img"))
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay))
        size = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", overlay)
        assert size == [640, 416]  # the overlay at the photo's own resolution
        info = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#gemseg-info").text)
        assert "glass_room.jpg: glass" in info and "gem-lite-synth" in info
        requested = set()
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                requested.add(message["params"]["request"]["url"])
        assert any(u.startswith(server["url"]) for u in requested)  # the log does see the page's requests
        outside = sorted(u for u in requested if not u.startswith((server["url"], "data:", "blob:")))
        assert not outside, f"the page reached beyond the demo server: {outside[:5]}"
        shot = tmp_path / "gem-demo.png"
        driver.save_screenshot(str(shot))
        assert Image.open(shot).size[0] >= 1000
        print(f"\nscreenshot: {shot}")
    finally:
        driver.quit()

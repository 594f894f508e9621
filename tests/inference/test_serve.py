"""`polyfuse serve` (issue #15): a real server process on 127.0.0.1, spoken to over HTTP, must
answer exactly as `Predictor.predict` does and refuse what the contract refuses with a 422."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from polyfuse.config import load_config
from polyfuse.data.contract import CONTRACT_FILE
from polyfuse.inference.predictor import Predictor
from polyfuse.training.experiment import run_fit

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

EXAMPLE = Path(__file__).parents[2] / "examples" / "own_data"
TRAINING = {"epochs": 2, "batch_size": 16, "progress": False, "val_fraction": 0.25}
HOST = "127.0.0.1"
START_SECONDS = 90  # a cold start imports torch; the loop below is bounded by this and by count


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """The own-data example (clinical with a categorical column, PNG scans) plus a long lab
    table (sequence modality), fitted once for the module: (data folder, run directory)."""
    site = tmp_path_factory.mktemp("serve") / "site"
    shutil.copytree(EXAMPLE, site)
    ids = pd.read_csv(site / "patients.csv", dtype={"patient_id": str}).patient_id
    rng = np.random.default_rng(0)
    rows = [(p, float(t), rng.normal()) for p in ids for t in range(rng.integers(0, 4))]
    pd.DataFrame(rows, columns=["patient_id", "time", "crp"]).to_csv(site / "labs.csv", index=False)
    config = yaml.safe_load((site / "experiment.yaml").read_text())
    config["data"]["modalities"]["labs"] = {
        "kind": "sequence",
        "table": "labs.csv",
        "columns": ["crp"],
        "time_column": "time",
    }
    config |= {"training": TRAINING, "output": "runs"}
    (site / "experiment.yaml").write_text(yaml.safe_dump(config))
    run, _ = run_fit(load_config(site / "experiment.yaml"))
    return site, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`python -m polyfuse serve ...` in its own process; `url` once /health answers."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "polyfuse", "serve", *args, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        for _ in range(int(START_SECONDS / 0.05)):
            if self.process.poll() is not None:
                pytest.fail(
                    f"the server exited ({self.process.returncode}): {self.log.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        pytest.fail(
            f"the server did not answer /health in {START_SECONDS} s: {self.log.read_text()}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class ThreadServer:
    """uvicorn serving `create_app(...)` in a thread of this process (torch is imported here
    already, so it starts at once): a real HTTP server on 127.0.0.1 for a second set-up."""

    def __init__(self, app) -> None:
        import uvicorn

        port = free_port()
        self.url = f"http://{HOST}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def wait_ready(self) -> None:
        for _ in range(int(START_SECONDS / 0.05)):
            if self.server.started:
                return
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        pytest.fail("the in-process server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def servers(trained, tmp_path_factory):
    """The run served with the data folder as data root (`python -m polyfuse serve`, its own
    process) and without a data root (`create_app` under uvicorn in a thread)."""
    from polyfuse.inference.serve import create_app

    site, run = trained
    logs = tmp_path_factory.mktemp("logs")
    started = []
    try:
        started.append(Server([str(run), "--data-root", str(site)], logs / "root.log"))
        started.append(ThreadServer(create_app(Predictor.load(run))))
        for server in started:
            server.wait_ready()
        yield {"root": started[0].url, "rootless": started[1].url}
    finally:
        for server in started:
            server.stop()


def table(site: Path) -> pd.DataFrame:
    return pd.read_csv(site / "patients.csv", dtype={"patient_id": str})


def body(site: Path, ids: list[str], **override) -> dict:
    """A /predict body for `ids` (in that order), the way a client would write it."""
    frame = table(site).set_index("patient_id").loc[ids].reset_index().drop(columns="response")
    patients = json.loads(frame.to_json(orient="records"))
    for record in patients:
        record.update(override)
    labs = pd.read_csv(site / "labs.csv", dtype={"patient_id": str})
    rows = json.loads(labs[labs.patient_id.isin(ids)].to_json(orient="records"))
    return {"patients": patients, "tables": {"labs": rows}}


def expected(site: Path, run: Path, ids: list[str], folder: Path, **override) -> pd.DataFrame:
    """`Predictor.predict` on exactly these rows (and their lab rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    labs = pd.read_csv(site / "labs.csv", dtype={"patient_id": str})
    labs[labs.patient_id.isin(ids)].to_csv(folder / "labs.csv", index=False)
    rows = table(site).set_index("patient_id").loc[ids].reset_index().assign(**override)
    return Predictor.load(run).predict(rows, root=site, tables={"labs": folder / "labs.csv"})


def as_frame(answer: dict) -> pd.DataFrame:
    return pd.DataFrame(answer["predictions"]).set_index("patient_id")


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The same columns; the numbers within 1e-6, the prediction sets identical."""
    assert list(got.columns) == list(want.columns)
    numbers = [c for c in want.columns if c != "response.set"]
    np.testing.assert_allclose(got[numbers].to_numpy(), want[numbers].to_numpy(), rtol=0, atol=1e-6)
    assert got["response.set"].fillna("").tolist() == want["response.set"].fillna("").tolist()


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=30, trust_env=False)  # no proxy: 127.0.0.1 only


def post(url: str, payload) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=payload, timeout=30, trust_env=False)


# ------------------------------------------------------------------------- health, metadata


def test_health_and_metadata_give_the_model_and_its_saved_contract(trained, servers):
    _, run = trained
    assert get(f"{servers['root']}/health").json() == {"status": "ok", "model": "early"}
    meta = get(f"{servers['root']}/metadata").json()
    assert meta["model"] == "early"
    assert meta["contract"] == json.loads((run / CONTRACT_FILE).read_text())
    request = meta["request"]
    assert request["id_column"] == "patient_id" and request["file_columns"] == ["scan"]
    assert request["tables"] == {"labs": ["patient_id", "time", "crp"]}
    assert request["files_accepted"] is True
    assert get(f"{servers['rootless']}/metadata").json()["request"]["files_accepted"] is False


# ------------------------------------------------------------------------- predictions


def test_one_patient_equals_the_predictor(trained, servers, tmp_path):
    site, run = trained
    answer = post(servers["root"], body(site, ["P004"]))
    assert answer.status_code == 200, answer.text
    content = answer.json()
    assert content["model"] == "early" and content["warnings"] == []
    got, want = as_frame(content), expected(site, run, ["P004"], tmp_path)
    assert list(got.columns) == ["response.prob", "response.set"]
    assert_same(got, want)


def test_several_patients_keep_their_order_and_equal_the_predictor(trained, servers, tmp_path):
    site, run = trained
    ids = ["P017", "P004", "P003", "P001", "P030"]  # P003 has no scan; not in file order
    answer = post(servers["root"], body(site, ids))
    assert answer.status_code == 200, answer.text
    got, want = as_frame(answer.json()), expected(site, run, ids, tmp_path)
    assert list(got.index) == ids == list(want.index)
    assert_same(got, want)


def test_without_a_data_root_files_are_refused_and_null_scans_predicted(trained, servers, tmp_path):
    site, run = trained
    refused = post(servers["rootless"], body(site, ["P001", "P004"], scan=None))
    assert refused.status_code == 200  # no file named: nothing to refuse
    payload = body(site, ["P001", "P004"], scan=None)
    payload["patients"][1]["scan"] = "scans/P004.png"
    refused = post(servers["rootless"], payload)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "patients[1]" in detail and "P004" in detail and "'scan'" in detail
    assert "this server has no data root" in detail and "--data-root" in detail
    answer = post(servers["rootless"], body(site, ["P004", "P001"], scan=None))
    assert answer.status_code == 200, answer.text
    want = expected(site, run, ["P004", "P001"], tmp_path, scan=None)
    assert_same(as_frame(answer.json()), want)


def test_concurrent_requests_each_get_their_own_answer(trained, servers):
    site, run = trained
    every = table(site).patient_id.tolist()
    want = Predictor.load(run).predict(table(site), root=site, tables={"labs": site / "labs.csv"})
    requests = [[every[k % 40], every[(k + 13) % 40]][: 1 + k % 2] for k in range(24)]
    start = threading.Barrier(len(requests), timeout=30)

    def ask(ids: list[str]) -> tuple[list[str], httpx.Response]:
        with httpx.Client(timeout=60, trust_env=False) as client:
            start.wait()
            return ids, client.post(f"{servers['root']}/predict", json=body(site, ids))

    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(ask, requests, timeout=120))
    assert len(answers) == 24
    for ids, answer in answers:
        assert answer.status_code == 200, answer.text
        got = as_frame(answer.json())
        assert list(got.index) == ids
        assert_same(got, want.loc[ids])


# ------------------------------------------------------------------------- refusals


def test_a_missing_column_is_a_422_naming_it_and_the_patient(trained, servers):
    site, _ = trained
    payload = body(site, ["P001", "P004"])
    del payload["patients"][1]["lab_crp"]
    answer = post(servers["root"], payload)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "'lab_crp'" in detail and "P004" in detail and "patients[1]" in detail


def test_an_unseen_category_is_a_422_naming_sample_and_column(trained, servers):
    site, _ = trained
    payload = body(site, ["P001", "P004"])
    payload["patients"][1]["sex"] = "unknown"
    answer = post(servers["root"], payload)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "column 'sex'" in detail and "P004=unknown" in detail


@pytest.mark.parametrize("where", ["../outside.png", "absolute", "link.png"])
def test_a_path_leaving_the_data_root_is_a_422(trained, servers, where):
    site, _ = trained
    outside = site.parent / "outside.png"  # a real, readable image, just not under the root
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(outside)
    if where == "link.png" and not (site / "link.png").exists():
        (site / "link.png").symlink_to(outside)
    path = str(outside) if where == "absolute" else where
    answer = post(servers["root"], body(site, ["P004"], scan=path))
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "P004" in detail and "outside the data root" in detail
    assert str(site) not in detail  # the server's folders are not told


def test_a_missing_long_table_is_a_422_and_others_patients_rows_a_warning(trained, servers):
    site, _ = trained
    payload = body(site, ["P004"])
    del payload["tables"]
    answer = post(servers["root"], payload)
    assert answer.status_code == 422 and "tables.labs" in answer.json()["detail"]
    payload = body(site, ["P004"])
    payload["tables"]["labs"].append({"patient_id": "X9", "time": 1.0, "crp": 0.5})
    answer = post(servers["root"], payload)
    assert answer.status_code == 200
    assert "tables.labs" in answer.json()["warnings"][0] and "X9" in answer.json()["warnings"][0]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"patients": "P001"}',
        b'{"patients": []}',
        b'{"patients": [{"patient_id": "P001", "age": {"years": 61}}]}',
        b'{"patients": [{"patient_id": "P001"}], "extra": 1}',
        b"[1, 2]",
    ],
)
def test_a_malformed_body_is_a_422_naming_the_field(servers, content):
    answer = httpx.post(
        f"{servers['root']}/predict",
        content=content,
        headers={"content-type": "application/json"},
        timeout=30,
        trust_env=False,
    )
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert isinstance(detail, list) and detail and all("loc" in e and "msg" in e for e in detail)


def test_too_many_patients_in_one_request_is_a_413(servers):
    from polyfuse.inference.serve import MAX_PATIENTS

    payload = {"patients": [{"patient_id": f"x{i}"} for i in range(MAX_PATIENTS + 1)]}
    answer = post(servers["root"], payload)
    assert answer.status_code == 413 and str(MAX_PATIENTS) in answer.json()["detail"]


# ------------------------------------------------------------------------- start-up


def test_a_bad_run_dir_fails_before_listening_with_exit_code_2(tmp_path, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from polyfuse.cli import app

    def listen(*args, **kwargs):
        raise AssertionError("the server started listening")

    monkeypatch.setattr(uvicorn, "run", listen)
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nope"), "--port", "1"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "model.json is missing" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_polyfuse_help_does_not_import_fastapi():
    code = "import sys, polyfuse.cli; sys.exit('fastapi' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_a_missing_fastapi_names_the_extra(trained, monkeypatch):
    from typer.testing import CliRunner

    from polyfuse.cli import app

    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi → ImportError
    monkeypatch.delitem(sys.modules, "polyfuse.inference.serve", raising=False)
    result = CliRunner().invoke(app, ["serve", str(trained[1])])
    assert result.exit_code == 2 and "polyfuse[serve]" in result.output


def test_non_finite_predictions_are_null():
    from polyfuse.inference.serve import _json_value

    assert [_json_value(v) for v in (np.float32(np.nan), np.inf, np.float32(0.5), "a")] == [
        None,
        None,
        0.5,
        "a",
    ]

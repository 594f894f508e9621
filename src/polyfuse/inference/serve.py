"""`polyfuse serve`: a fitted run behind a small REST service (FastAPI + uvicorn, extra `[serve]`).

    GET  /health     {"status": "ok", "model": ...}
    GET  /metadata   the model name, the input contract (`contract.json`) and the request form
    POST /predict    {"patients": [{<id column>: ..., <column>: ...}, ...],
                      "tables": {<sequence modality>: [{<id column>: ..., <time>: ..., ...}]}}
                     → {"model": ..., "predictions": [{<id column>: ..., "<task>.<score>": ...}],
                        "warnings": [...]}

A request is read exactly as `Predictor.predict` reads a table of the same rows (the run's input
contract: training category levels, shapes, features); predictions come back in input order with
`Predictor.predict`'s column names, NaN as null. Any input the contract refuses is a 422 whose
`detail` names the sample and column. File modalities are given by reference, as paths relative
to the server's data root (`--data-root`); without one, a request naming a file is refused, and
paths that leave the root are refused by `polyfuse.data.readers.resolve_path`.

The model is loaded once, when the app is created. Requests are handled in uvicorn's thread
pool; reading and predicting run under one lock per process (`Service._locked_predict`), because
the DataWarnings returned with each request are collected with `warnings.catch_warnings`, which
is process-global state (two requests inside it at once would swap or lose each other's
warnings). It costs no measurable throughput (benchmarks/README.md): the reading is Python that
holds the GIL anyway, and the forward pass (eval mode, no_grad) is short. Parsing, validation and
serialising the answer stay outside the lock; more processes (`workers`) add parallelism.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import polyfuse
from polyfuse.errors import ConfigError, MissingDependencyError, PolyfuseError, require

require("fastapi", "serve")

from fastapi import FastAPI, HTTPException  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from polyfuse.inference.predictor import Predictor  # noqa: E402

log = logging.getLogger("polyfuse.serve")

MAX_PATIENTS = 10_000
"""Patients per request: one request holds the lock for its whole batch, so huge ones would
stall every other client (split them; 413 beyond this)."""
MAX_TABLE_ROWS = 1_000_000
"""Long-table rows per request (all sequence modalities together)."""
ENVIRONMENT = "POLYFUSE_SERVE"
"""Where `serve_run` hands its settings to worker processes (`app_from_environment`)."""

Scalar = str | int | float | bool | None
Record = dict[str, Scalar]


class PredictRequest(BaseModel):
    """The body of POST /predict (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    patients: list[Record] = Field(
        min_length=1, description="one record per patient: the id column and the model's columns"
    )
    tables: dict[str, list[Record]] = Field(
        default_factory=dict,
        description="per long-table (sequence) modality: its rows (id, time, channels)",
    )


class RequestError(PolyfuseError):
    """A request the service refuses before handing it to the predictor (a 422)."""


class Service:
    """A loaded predictor and what the endpoints need from it; `predict` is thread-safe."""

    def __init__(self, predictor: Predictor, data_root: str | Path | None = None) -> None:
        contract = predictor.contract
        contract.require_table()  # the service takes patients as manifest records
        self.predictor = predictor
        self.model = predictor.fitted.model_name
        layout = contract.layout()
        self.id_column = layout.id_column
        self.columns = layout.columns
        self.file_columns = layout.files
        self.tables = layout.tables
        if data_root is not None:
            root = Path(data_root).expanduser().resolve()
            if not root.is_dir():
                raise ConfigError(f"--data-root {data_root}: not a folder")
            self.data_root: Path | None = root
        else:
            self.data_root = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- views

    def metadata(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "contract": _finite(self.predictor.contract.to_dict()),
            "request": {
                "id_column": self.id_column,
                "columns": list(self.columns),
                "file_columns": list(self.file_columns),
                "tables": self.tables,
                "files_accepted": self.data_root is not None,
                "max_patients": MAX_PATIENTS,
            },
        }

    # ------------------------------------------------------------------------- predicting

    def predict(self, request: PredictRequest) -> dict[str, Any]:
        """Predictions for a request's patients (see the module docstring); a RequestError or
        another PolyfuseError for input the service or the contract refuses."""
        import pandas as pd

        self._check(request)
        frame = pd.DataFrame({c: [r[c] for r in request.patients] for c in self.columns})
        with tempfile.TemporaryDirectory(prefix="polyfuse-serve-") as tmp:
            empty = Path(tmp) / "no-data-root"  # no file can be found here: nothing is read
            empty.mkdir()
            root = self.data_root or empty
            tables = {}
            for m, rows in request.tables.items():
                tables[m] = Path(tmp) / f"tables.{m}.csv"
                columns = self.tables[m]
                pd.DataFrame({c: [r[c] for r in rows] for c in columns}, columns=columns).to_csv(
                    tables[m], index=False
                )
            try:
                predictions, seen = self._locked_predict(frame, root, tables)
            except PolyfuseError as exc:
                exc.args = (self._public(str(exc), tmp),)
                raise
        ids = [r[self.id_column] for r in request.patients]
        if len(predictions) != len(ids):  # read_new keeps every row, in order
            raise RuntimeError(f"{len(ids)} patients in, {len(predictions)} predictions out")
        records = []
        for given, row in zip(ids, predictions.to_dict("records"), strict=True):
            records.append({self.id_column: given} | {k: _json_value(v) for k, v in row.items()})
        return {
            "model": self.model,
            "predictions": records,
            "warnings": [self._public(w, tmp) for w in seen],
        }

    def _locked_predict(
        self, frame: Any, root: Path, tables: dict[str, Path]
    ) -> tuple[Any, list[str]]:
        from polyfuse.errors import DataWarning

        with self._lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            dataset = self.predictor.contract.read_new(
                frame, root=root, where="patients", tables=tables
            )
            predictions = self.predictor.predict(dataset)
        seen = []
        for w in caught:
            if issubclass(w.category, DataWarning):
                seen.append(str(w.message))
            else:
                log.warning("%s: %s", w.category.__name__, w.message)
        return predictions, seen

    def _check(self, request: PredictRequest) -> None:
        """Refuse, naming the record and key, what the contract cannot be asked about."""
        if len(request.patients) > MAX_PATIENTS:
            raise HTTPException(
                413, f"{len(request.patients)} patients in one request; at most {MAX_PATIENTS}"
            )
        rows = sum(len(v) for v in request.tables.values())
        if rows > MAX_TABLE_ROWS:
            raise HTTPException(
                413, f"{rows} long-table rows in one request; at most {MAX_TABLE_ROWS}"
            )
        for i, record in enumerate(request.patients):
            self._check_patient(i, record)
        self._check_tables(request.tables)

    def _check_patient(self, i: int, record: Record) -> None:
        """Every column the model reads is present; no file is named without a data root."""
        where = f"patients[{i}]"
        if self.id_column in record:
            where += f" ({self.id_column} {record[self.id_column]!r})"
        lacking = [c for c in self.columns if c not in record]
        if lacking:
            raise RequestError(
                f"{where} lacks "
                + ", ".join(f"'{c}' ({self.columns[c]})" for c in lacking[:5])
                + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
                + "; send null for a missing value"
            )
        if self.data_root is not None:
            return
        for c, m in self.file_columns.items():
            value = record[c]
            if value is not None and not (isinstance(value, str) and not value.strip()):
                raise RequestError(
                    f"{where}, column '{c}' (modality '{m}'): names a file ({value!r}), "
                    "but this server has no data root, so it reads no files (start it "
                    "with --data-root DIR); send null for no file"
                )

    def _check_tables(self, tables: dict[str, list[Record]]) -> None:
        """Exactly the model's long-table modalities, each record with every column."""
        unknown = sorted(set(tables) - set(self.tables))
        if unknown:
            raise RequestError(
                f"tables: {unknown} are not long-table modalities of this model (those are: "
                f"{sorted(self.tables) or 'none'})"
            )
        for m, columns in self.tables.items():
            if m not in tables:
                raise RequestError(
                    f"tables.{m} is missing: modality '{m}' is read from a long table; give its "
                    f"rows as records of {columns} (an empty list when no patient has any)"
                )
            for i, record in enumerate(tables[m]):
                lacking = [c for c in columns if c not in record]
                if lacking:
                    raise RequestError(
                        f"tables.{m}[{i}] lacks {lacking}; send null for a missing value"
                    )

    def _public(self, message: str, tmp: str) -> str:
        """A message without the server's folders (the data root, the request's temporary
        files): a client needs the sample and column, not the server's layout."""
        message = message.replace(str(Path(tmp) / "no-data-root"), "<no data root>")
        message = message.replace(str(Path(tmp)) + os.sep, "")
        for m in self.tables:
            message = message.replace(f"tables.{m}.csv", f"tables.{m}")
        if self.data_root is not None:
            message = message.replace(str(self.data_root), "<data root>")
        if "leads outside the data root" in message:  # not where: the server's layout
            message = re.sub(r" \(to [^)]*\)", "", message)
        return message


def create_app(predictor: Predictor, data_root: str | Path | None = None) -> FastAPI:
    """The REST app around a loaded predictor (see the module docstring). `data_root`: the
    folder file paths in requests are relative to; None refuses requests that name a file."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.requests import Request

    service = Service(predictor, data_root)
    app = FastAPI(
        title="polyfuse",
        summary=f"predictions of a fitted polyfuse run ({service.model})",
        version=polyfuse.__version__,
    )
    app.state.service = service

    @app.exception_handler(MissingDependencyError)
    async def missing(_: Request, exc: MissingDependencyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=500)  # the server's set-up

    @app.exception_handler(PolyfuseError)
    async def refused(_: Request, exc: PolyfuseError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": service.model}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return service.metadata()

    @app.post("/predict")
    def predict(request: PredictRequest) -> Response:  # sync: runs in the thread pool
        content = json.dumps(service.predict(request), allow_nan=False)
        return Response(content, media_type="application/json")

    return app


def serve_run(
    run_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    data_root: str | Path | None = None,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """`polyfuse serve`: load `run_dir` (a bad run fails here, before anything listens) and
    serve it until interrupted. `workers` > 1 starts that many processes, each loading the
    model once and using its share of the cores."""
    uvicorn = require("uvicorn", "serve")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: give at least 1")
    app = create_app(Predictor.load(run_dir), data_root)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    os.environ[ENVIRONMENT] = json.dumps(
        {
            "run_dir": str(Path(run_dir).resolve()),
            "data_root": None if data_root is None else str(Path(data_root).resolve()),
            "threads": max(1, len(os.sched_getaffinity(0)) // workers),
        }
    )
    uvicorn.run(
        f"{__name__}:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


def app_from_environment() -> FastAPI:
    """The app of one worker process of `serve_run(workers=N)`."""
    import torch

    settings = json.loads(os.environ[ENVIRONMENT])
    torch.set_num_threads(settings["threads"])
    return create_app(Predictor.load(settings["run_dir"]), settings["data_root"])


# ------------------------------------------------------------------------------ helpers


def _json_value(value: Any) -> Any:
    """A prediction cell as JSON: NaN and ±inf → null, numpy scalars → Python."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite(value: Any) -> Any:
    """`value` with every non-finite float as null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

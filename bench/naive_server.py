"""The naive baseline: the same REST path, answered the simple way, for the side-by-side benchmark.

`GET /api/advanced/predict/failure-risk/{miner_id}` on a stdlib ThreadingHTTPServer (one thread per
connection, HTTP/1.1 keep-alive). Each request reads the miner's recent series from DuckDB (its own copy
of the store file), prepares the window and runs a batch-of-one forward pass with the active LSTM from
the same model registry (`FailureRiskPredictor`). No cache, no batching, no gRPC, no Envoy.

`python -m bench.naive_server --db FILE --models DIR` prints {"port": N} once listening.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import torch

from server.errors import DomainError
from server.models.inference import FailureRiskPredictor
from server.models.registry import ModelRegistry
from server.records import RiskLevel
from server.store import Store

PREFIX = "/api/advanced/predict/failure-risk/"


def make_handler(store: Store, predictor: FailureRiskPredictor, version: str) -> type[BaseHTTPRequestHandler]:
    history = predictor.window.sequence_length + predictor.window.share_reference_samples

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if not self.path.startswith(PREFIX):
                self._reply(404, {"message": "unknown path"})
                return
            miner_id = unquote(self.path[len(PREFIX) :].split("?", 1)[0])
            try:
                miner = store.get_miner(miner_id)
                if miner is None:
                    self._reply(404, {"message": f"no miner {miner_id!r}"})
                    return
                series = store.recent_series(miner.miner_id, history)
                batch = predictor.prepare_latest(series, miner)
                risk = float(np.clip(predictor.predict(batch.x[-1:])[-1], 0.0, 1.0))  # batch of one
            except DomainError as exc:
                self._reply(400, {"message": exc.message})
                return
            end = batch.window_ends[-1].astype("datetime64[s]")
            self._reply(
                200,
                {
                    "miner_id": miner.miner_id,
                    "risk_score": risk,
                    "risk_level": RiskLevel.from_score(risk, (0.25, 0.5, 0.75)).name,
                    "model_version": version,
                    "window_end": f"{end}Z",
                    "features_used": list(predictor.feature_columns),
                },
            )

        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class QuietServer(ThreadingHTTPServer):
    """A load generator closing its connections at the end of a run is not an error worth a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, required=True, help="a copy of the server's DuckDB file")
    parser.add_argument("--models", type=Path, required=True, help="the server's model registry folder")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = Store.open(args.db)
    registry = ModelRegistry(args.models)
    from server.models.registry import ModelKind

    version = registry.active_version(ModelKind.LSTM)
    assert version is not None, "train an LSTM first"
    predictor = FailureRiskPredictor.from_registry(registry, version)
    server = QuietServer(("127.0.0.1", args.port), make_handler(store, predictor, version))
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""The documented REST API through real Envoy: exact paths, snake_case names, errors as JSON."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

from server.records import FEATURE_COLUMNS
from tests.harness import SMALL_FLEET, Stack


def test_status_has_the_documented_fields(stack: Stack) -> None:
    reply = stack.rest("GET", "/api/advanced/status")
    assert reply.status == 200
    body = reply.json()
    # Documented fields, printed even when false/zero.
    assert body["lstm_model"] is False
    assert body["autoencoder"] is False
    assert body["anomaly_threshold"] == 0
    assert body["feature_columns"] == list(FEATURE_COLUMNS)
    assert body["sequence_length"] == 24
    assert body["miners"] == SMALL_FLEET["demo_miners"]
    assert int(body["samples"]) > 0  # int64 prints as a JSON string
    assert body["lstm_model_info"] == {
        "loaded": False,
        "version": "",
        "not_activated_version": "",
        "not_activated_reason": "",
    }


def test_miner_id_with_dots_binds_from_the_path(stack: Stack) -> None:
    reply = stack.rest("GET", "/api/advanced/miners/192.168.1.100")
    assert reply.status == 200
    assert reply.json()["miner_id"] == "192.168.1.100"


def test_predict_before_training_is_400_with_reason(stack: Stack) -> None:
    reply = stack.rest("GET", "/api/advanced/predict/failure-risk/192.168.1.100")
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["code"] == 9  # FAILED_PRECONDITION
    assert "POST /api/advanced/train/lstm" in body["message"]
    assert body["details"][0]["reason"] == "MODEL_NOT_TRAINED"


def test_unknown_miner_is_404(stack: Stack) -> None:
    reply = stack.rest("GET", "/api/advanced/detect/anomalies/10.1.2.3")
    assert reply.status == 404
    assert reply.json()["details"][0]["reason"] == "MINER_NOT_FOUND"
    # The next step names the REST route to a REST caller (a gRPC caller reads FleetService.ListMiners).
    assert reply.json()["message"].endswith("list miners with GET /api/advanced/miners")


def test_train_with_epochs_zero_is_400_naming_the_field(stack: Stack) -> None:
    reply = stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 0, "batch_size": 32})
    assert reply.status == 400
    body = reply.json()
    assert body["code"] == 3
    assert body["message"].startswith("epochs")
    violations = [d for d in body["details"] if d["@type"].endswith("BadRequest")][0]["field_violations"]
    assert violations[0]["field"] == "epochs"


def test_unknown_model_kind_in_path_is_400_json(stack: Stack) -> None:
    reply = stack.rest("POST", "/api/advanced/train/random-forest", {})
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/json"
    assert "model_kind" in reply.json()["message"]


@pytest.mark.parametrize("path", ["/api/advanced/nope", "/nope", "/console/nope.js", "/api/v2/status"])
def test_unknown_path_is_404_json_not_a_hang(stack: Stack, path: str) -> None:
    reply = stack.rest("GET", path, timeout=30)
    assert reply.status == 404
    body = reply.json()
    assert body["code"] == 5
    assert body["details"][0]["reason"] == "UNKNOWN_PATH"


def test_wrong_verb_is_404_json(stack: Stack) -> None:
    reply = stack.rest("DELETE", "/api/advanced/status")
    assert reply.status == 404
    assert reply.json()["code"] == 5


def test_malformed_json_is_400_json(stack: Stack) -> None:
    reply = stack.rest("POST", "/api/advanced/train/lstm", raw=b'{"epochs": ')
    assert reply.status == 400
    body = reply.json()
    assert body["code"] == 3
    assert body["details"][0]["reason"] == "BAD_REQUEST"


def test_unknown_query_parameter_is_400(stack: Stack) -> None:
    reply = stack.rest("GET", "/api/advanced/status?verbose=1")
    assert reply.status == 400
    assert "verbose" in reply.json()["message"]


def test_oversized_body_is_413_json(stack: Stack) -> None:
    body = b'{"batch_id": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    head = (
        "POST /api/advanced/metrics HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", stack.envoy.http_port), timeout=60) as sock:
        sock.sendall(head.encode())

        def send_body() -> None:
            with contextlib.suppress(OSError):  # Envoy answers and closes before the body is all sent
                sock.sendall(body)

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        reply = b""
        with contextlib.suppress(OSError):
            while b"}" not in reply.partition(b"\r\n\r\n")[2]:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        sender.join(60)
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 413 " in status_line, reply[:300]
    payload = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert payload["details"][0]["reason"] == "BODY_TOO_LARGE"


def test_list_miners_over_rest_is_sorted_and_paged(stack: Stack) -> None:
    reply = stack.rest("GET", "/api/advanced/miners?page_size=2")
    assert reply.status == 200
    body = reply.json()
    assert len(body["miners"]) == 2
    assert body["next_page_token"]
    assert body["total"] == SMALL_FLEET["demo_miners"]


def test_backend_down_is_503_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from server.envoy import start_envoy
    from tests.harness import start_server

    server = start_server(tmp_path)
    port = server.port
    server.stop()  # nothing listens on the backend port any more
    envoy = start_envoy(grpc_port=port, http_port=0, admin_port=0)
    try:
        request = f"http://127.0.0.1:{envoy.http_port}/api/advanced/status"
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                status, body = reply.status, reply.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
    finally:
        envoy.stop()
    assert status == 503
    payload = json.loads(body)
    assert payload["code"] == 14
    assert payload["details"][0]["reason"] == "BACKEND_UNAVAILABLE"

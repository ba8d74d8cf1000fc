"""A MONAI Label server: its command line, and a process with the few requests the bundles need."""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"


class MonaiLabelServerError(RuntimeError):
    """The MONAI Label server did not start or a request failed; the message holds the server log's tail."""


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on ``host`` now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def server_command(
    python: str | os.PathLike,
    app_dir: str | os.PathLike,
    studies_dir: str | os.PathLike,
    bundles: Sequence[str],
    host: str = DEFAULT_HOST,
    port: int = 8000,
    conf: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``start_server`` command line (see the module docstring for the ``--conf`` choices)."""
    settings = {"models": ",".join(bundles), "zoo_source": "github", "sam2": "false", "preload": "false"}
    settings.update({str(key): str(value) for key, value in (conf or {}).items()})
    command = [str(python), "-m", "monailabel.main", "start_server", "--app", str(app_dir)]
    command += ["--studies", str(studies_dir), "--host", host, "--port", str(int(port))]
    for key, value in settings.items():
        command += ["--conf", key, value]
    return command


class MonaiLabelServer:
    """A MONAI Label server in its own process group, with the few requests the bundles need.

    Use it as a context manager: ``__enter__`` starts the server and waits until ``/info/`` answers, ``__exit__``
    stops the whole process group (also when the block raises). The server's output goes to ``log_path``; every
    error raised here ends with its tail.

    Args:
        python: the MONAI Label environment's python (:func:`setup_environment`).
        app_dir: the app folder (:func:`assemble_app`).
        studies_dir: the studies folder (:func:`demo_studies` or the user's images).
        bundles: the bundles to serve (their folders must be in ``app_dir/model``).
        host: the address to bind (loopback by default).
        port: the port; ``None`` picks a free one.
        log_path: where the server's output goes (default: ``server.log`` in the app folder).
        conf: further ``--conf key value`` settings.
        start_timeout: seconds to wait for ``/info/``.
    """

    def __init__(
        self,
        python: str | os.PathLike,
        app_dir: str | os.PathLike,
        studies_dir: str | os.PathLike,
        bundles: Sequence[str],
        host: str = DEFAULT_HOST,
        port: int | None = None,
        log_path: str | os.PathLike | None = None,
        conf: Mapping[str, str] | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        missing = [name for name in bundles if not (Path(app_dir) / "model" / name / "configs").is_dir()]
        if missing or not bundles:
            raise ValueError(f"bundles {missing or list(bundles)} are not in {Path(app_dir) / 'model'}.")
        self.host = host
        self.port = int(port) if port else free_port(host)
        self.log_path = Path(log_path) if log_path else Path(app_dir) / "server.log"
        self.command = server_command(python, app_dir, studies_dir, bundles, host, self.port, conf)
        self.start_timeout = float(start_timeout)
        self.process: subprocess.Popen | None = None
        # the server is local: an http_proxy of the environment must not see these requests
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, lines: int = 80) -> str:
        """The last ``lines`` lines of the server's output."""
        if not self.log_path.is_file():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_for_log(self, quiet: float = 0.5, timeout: float = 5.0) -> None:
        """Waits until the log has not grown for ``quiet`` seconds: the server logs a request's traceback after
        it has sent the error response."""
        deadline, last_size, last_change = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline:
            size = self.log_path.stat().st_size if self.log_path.is_file() else 0
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change >= quiet:
                return
            time.sleep(0.1)

    def _error(self, message: str) -> MonaiLabelServerError:
        self._wait_for_log()
        return MonaiLabelServerError(f"{message}\n--- server log ({self.log_path}), last lines ---\n{self.log_tail()}")

    def start(self) -> MonaiLabelServer:
        """Starts the server and waits until ``/info/`` answers (``start_timeout``)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # own session: stop() ends the server and every process it started, and nothing else
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._error(f"the MONAI Label server exited with status {self.process.returncode} at start-up")
            try:
                self.info()
                return self
            except (urllib.error.URLError, ConnectionError, MonaiLabelServerError):
                time.sleep(1.0)
        self.stop()
        raise self._error(f"the MONAI Label server did not answer {self.url}/info/ within {self.start_timeout:.0f} s")

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the server's process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def __enter__(self) -> MonaiLabelServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float = 600.0,
    ) -> tuple[bytes, str]:
        """One HTTP request; returns ``(body, content type)``. A status other than 2xx raises with the log's tail."""
        url = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(url, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise self._error(f"{method} {url} answered {error.code}: {detail}") from error

    def info(self) -> dict[str, Any]:
        """``GET /info/``: the app's models (labels, dimension), trainers and datastore."""
        return json.loads(self.request("GET", "/info/", timeout=10.0)[0])

    def datastore(self) -> dict[str, Any]:
        """``GET /datastore/?output=all``: the studies' images and labels as MONAI Label lists them."""
        return json.loads(self.request("GET", "/datastore/", {"output": "all"})[0])

    def infer(self, model: str, image: str, params: Mapping[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
        """``POST /infer/<model>?image=<id>&output=all``: ``(label file bytes, result JSON)``.

        ``params`` reach the inference task, e.g. ``{"result_extension": ".png"}`` for the label's file format
        (default: the image's own extension).
        """
        body = urllib.parse.urlencode({"params": json.dumps(dict(params or {}))}).encode()
        content, content_type = self.request(
            "POST", f"/infer/{model}", {"image": image, "output": "all"}, body, "application/x-www-form-urlencoded"
        )
        if not content_type.startswith("multipart/"):
            raise self._error(f"/infer/{model} returned no label file (content type {content_type!r})")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + content
        )
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        if "image" not in parts or "params" not in parts:
            raise self._error(f"/infer/{model} answered the parts {sorted(parts)}, expected params and image")
        return parts["image"].get_payload(decode=True), json.loads(parts["params"].get_payload(decode=True))

    def train(self, model: str, params: Mapping[str, Any] | None = None, timeout: float = 1800.0) -> Any:
        """``POST /train/<model>?run_sync=true``: trains in the server process and returns when done.

        ``params`` override the trainer's options, e.g. ``{"max_epochs": 1, "val_split": 0.5}``.
        """
        body = json.dumps(dict(params or {})).encode()
        query = {"run_sync": "true"}
        content, _ = self.request("POST", f"/train/{model}", query, body, "application/json", timeout=timeout)
        return json.loads(content) if content else None

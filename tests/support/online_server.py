"""`sparkml serve` in a process of its own, and its HTTP calls: what the online tests share."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from conftest import cli_env
from support.servers import LOOPBACK, free_port, wait_for


class Served:
    """`sparkml serve` in a process of its own, stopped with SIGTERM (its log flushed)."""

    def __init__(self, conf: Path, ref: str, store: str | None = None, *args: str):
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        env = cli_env(**({"SPARKML_ONLINE_STORE": store} if store else {}))
        self.log = open(conf.parent / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "sparkml"), "--conf", str(conf), "--env", "test", "serve", ref,
             "--port", str(self.port), *args], stdout=self.log, stderr=subprocess.STDOUT, env=env,
            cwd=conf.parent)
        wait_for(lambda: get(self.url + "/ready")[0] == 200, "sparkml serve", procs=[self.proc], timeout=180)

    def predict(self, body) -> tuple[int, dict]:
        return post(self.url + "/predict", body)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def post(url: str, body, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")

"""The CPU sampling server with the tiny test model, on a free loopback port.

``TinyServer`` runs the real app under uvicorn on a thread of the test process, so
clients reach it over a real socket exactly as they would reach SGLang.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.tiny_models import tiny_checkpoint, tiny_model, tiny_tokenizer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TinyServer:
    """``with TinyServer() as server:`` serves the tiny checkpoint at ``server.url``."""

    def __init__(self, batch_window_s: float = 0.002) -> None:
        import uvicorn

        from pivotgym.server.launch import eos_token_ids, torch_app

        self.checkpoint = tiny_checkpoint()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.eos_token_ids = eos_token_ids(tiny_model(), tiny_tokenizer())
        app = torch_app(str(self.checkpoint), dtype="float32", batch_window_s=batch_window_s)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="tiny-server", daemon=True)

    def weight_version(self) -> str:
        return httpx.get(f"{self.url}/get_weight_version").json()["weight_version"]

    def __enter__(self) -> TinyServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the tiny server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def in_process_engine() -> Any:
    """A torch engine over a fresh copy of the tiny model, as the server holds it."""
    from pivotgym.policy.engines.torch import TorchEngine

    return TorchEngine(tiny_model(), tiny_tokenizer(), version="default")


def perturbed_checkpoint(path: Path, scale: float = 0.05, seed: int = 1) -> Path:
    """The tiny checkpoint with noise added to every weight, saved at ``path``."""
    import torch

    model = tiny_model()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path

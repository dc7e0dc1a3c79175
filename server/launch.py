"""Start a server: a sampling server (the torch engine behind the SGLang-compatible app,
or real SGLang), or the environment server.

``serve_torch`` and ``serve_envs`` run in the foreground under uvicorn, which stops
cleanly on SIGINT and SIGTERM (the engine, or every session, is closed on the way out).
``run_sglang`` starts ``python -m sglang.launch_server`` in its own process group, waits
until ``/health`` answers, then waits on it; SIGINT or SIGTERM stop the whole group and
reap it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from pivotgym.errors import DataError, InfraError

DEFAULT_PORT = 30000  # SGLang's default port
DEFAULT_ENV_PORT = 30100
LOOPBACK = ("127.0.0.1", "::1", "localhost")
TOKENS_VAR = "PIVOTGYM_ENV_TOKENS"


def eos_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """Every id that ends generation for SGLang: config, generation config and tokenizer EOS."""
    ids: set[int] = set()
    for source in (model.config, getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Iterable):
            ids.update(int(v) for v in value if v is not None)
    return tuple(sorted(ids))


def load_model(name_or_path: str, dtype: str = "auto") -> tuple[Any, Any, str]:
    """``(model, tokenizer, resolved path)`` of a bundled name or a local checkpoint."""
    import torch

    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    try:
        from pivotgym.policy import models
    except ImportError:
        models = None
    if models is not None:
        model, tokenizer = models.load(name_or_path, dtype=torch_dtype)
        return model, tokenizer, str(models.resolve(name_or_path))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise DataError(f"no model checkpoint at {path} (config.json missing)", file=path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, dtype=torch_dtype or "auto"
    )
    return model.eval(), tokenizer, str(path)


def torch_app(name_or_path: str, *, dtype: str = "auto", batch_window_s: float = 0.002) -> Any:
    """The SGLang-compatible app over a :class:`TorchEngine` holding the given model."""
    import torch

    from pivotgym.policy.engines.torch import TorchEngine
    from pivotgym.server.app import ServedModel, build_app

    model, tokenizer, path = load_model(name_or_path, dtype)
    served = ServedModel(path, path, eos_token_ids(model, tokenizer))
    engine_dtype = torch.float32 if dtype == "auto" else getattr(torch, dtype)
    # SGLang names the weights it starts with "default" (ServerArgs.weight_version).
    engine = TorchEngine(model, tokenizer, dtype=engine_dtype, version="default")
    return build_app(engine, served, batch_window_s=batch_window_s)


def serve_torch(
    name_or_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    dtype: str = "auto",
    log_level: str = "warning",
) -> None:
    """Serve the model on ``host:port`` until SIGINT or SIGTERM."""
    app = torch_app(name_or_path, dtype=dtype)
    print(f"pivotgym: serving {name_or_path} (torch engine) on http://{host}:{port}", flush=True)
    _run_uvicorn(app, host=host, port=port, log_level=log_level)
    print("pivotgym: server stopped", flush=True)


def serve_envs(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_ENV_PORT,
    tokens: Sequence[str] = (),
    limits: Any = None,
    sandbox: str | None = None,
    log_level: str = "warning",
) -> None:
    """Serve pivotgym's environments on ``host:port`` until SIGINT or SIGTERM, after
    reaping what a server killed before it left behind."""
    from pivotgym.sandbox import BACKENDS, backend_class
    from pivotgym.server.env_app import build_env_app
    from pivotgym.server.env_sessions import EnvService, ServiceLimits

    if host not in LOOPBACK and not tokens:
        raise DataError(f"serving on {host} needs tokens (--tokens FILE or "
                        f"{TOKENS_VAR}): anyone who reaches it runs code in its sandboxes",
                        field="host")  # fmt: skip
    for name in BACKENDS:
        cls = backend_class(name)
        if cls.available() is None:
            cls().reap()
    service = EnvService(limits or ServiceLimits(), sandbox=sandbox)
    app = build_env_app(service, tokens=tokens)
    auth = f"{len(tokens)} token(s)" if tokens else "no token"
    print(f"pivotgym: serving environments on http://{host}:{port} ({auth})", flush=True)
    # The steps in flight finish, for as long as the service's grace allows.
    grace = service.limits.shutdown_grace_s
    _run_uvicorn(app, host=host, port=port, log_level=log_level, graceful_s=grace)
    print("pivotgym: environment server stopped", flush=True)


def read_tokens(path: str | Path | None) -> list[str]:
    """Tokens from a file (one a line, the whole line; blank lines and lines starting
    with ``#`` skipped) and from ``$PIVOTGYM_ENV_TOKENS`` (comma-separated)."""
    tokens = [t for t in os.environ.get(TOKENS_VAR, "").split(",") if t.strip()]
    if path is not None:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise DataError(f"cannot read the tokens: {exc.strerror}", file=path) from None
        tokens += [t for t in (line.strip() for line in lines) if t and not t.startswith("#")]
    for token in tokens:
        if len(token.strip()) < 16:
            raise DataError("a token must have at least 16 characters", file=path,
                            field="tokens")  # fmt: skip
    return [t.strip() for t in tokens]


def _run_uvicorn(
    app: Any, *, host: str, port: int, log_level: str, graceful_s: float | None = None
) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        # uvicorn re-raises a captured SIGTERM once shut down, so the process would die
        # of it; a requested stop that shut down cleanly should exit with status 0.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=graceful_s)  # fmt: skip
    Server(config).run()


def sglang_command(
    model_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    dtype: str = "auto",
    mem_fraction_static: float | None = None,
    weight_version: str | None = None,
    deterministic: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``sglang.launch_server`` command line for serving ``model_path``."""
    command = [
        sys.executable,
        "-m",
        "sglang.launch_server",
        "--model-path",
        model_path,
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        dtype,
    ]
    if mem_fraction_static is not None:
        command += ["--mem-fraction-static", str(mem_fraction_static)]
    if weight_version is not None:
        command += ["--weight-version", weight_version]
    if deterministic:
        # Batch-invariant kernels: per-request sampling_seed then makes samples repeatable.
        command.append("--enable-deterministic-inference")
    return command + list(extra)


def wait_healthy(url: str, process: subprocess.Popen[Any] | None, timeout: float) -> None:
    """Poll ``url/health`` until 200; raise :class:`InfraError` on timeout or early exit."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise InfraError(f"server exited with status {process.returncode} before ready")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise InfraError(f"server at {url} not healthy after {timeout:.0f} s")


def stop_group(process: subprocess.Popen[Any], grace: float = 30.0) -> int:
    """SIGTERM the process group of ``process``, SIGKILL it after ``grace`` s; reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def run_sglang(command: Sequence[str], *, url: str, startup_timeout: float = 1800.0) -> int:
    """Run an SGLang server until it exits or SIGINT/SIGTERM arrives; its exit status."""
    try:
        import sglang  # noqa: F401
    except ImportError as exc:
        raise InfraError("sglang is not installed: pip install 'pivotgym[sglang]'") from exc
    process = subprocess.Popen(list(command), start_new_session=True)
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        wait_healthy(url, process, startup_timeout)
        print(f"pivotgym: SGLang is serving on {url} (pid {process.pid})", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        return 0 if stopping else 130
    finally:
        stop_group(process)
        for s, handler in previous.items():
            signal.signal(s, handler)

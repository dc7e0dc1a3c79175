"""What SWE sandboxes run Python and pytest with.

bwrap sandboxes see the host's read-only userland: Debian's ``python3`` with
``python3-pytest`` (and ``python-is-python3``, so ``python`` works), which
``scripts/install.sh`` installs. Docker sandboxes run an image made offline from the
local base image (``docker/build-base.sh``) by copying in the same pytest the host has
(its packages and its ``pytest`` command) and the sandboxes' Python start-up hook
(:data:`pivotgym.sandbox.PYTHON_STARTUP`), as bwrap installs it:
:func:`dockerfile` writes its build folder (a Dockerfile and the host's pytest packages)
and the docker backend builds it on first use, tagged by a hash of that folder, so both
backends test with the same Python and pytest and nothing is pulled.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from pivotgym.errors import InfraError
from pivotgym.sandbox import PYTHON_STARTUP

DOCKERFILE = """\
FROM pivotgym/base:bookworm
COPY site/ /usr/lib/python3/dist-packages/
COPY bin/ /usr/bin/
COPY sitecustomize.py /tmp/sitecustomize.py
RUN ln -sf python3 /usr/bin/python && ln -sf pytest /usr/bin/pytest-3 \
 && stdlib="$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
 && rm -f "$stdlib/sitecustomize.py" && mv /tmp/sitecustomize.py "$stdlib/"
WORKDIR /testbed
"""
# The commands the host's packages give (``pytest``, as agents call it).
COMMANDS = (Path("/usr/bin/pytest"),)
SITE = Path("/usr/lib/python3/dist-packages")
# The top-level modules importing pytest loads from the host's site packages.
_CLOSURE = (
    "import sys, pytest, _pytest.main, _pytest.junitxml, _pytest.python;"
    f"print('\\n'.join(sorted({{m.split('.')[0] for m, v in sys.modules.items()"
    f" if (getattr(v, '__file__', None) or '').startswith('{SITE}/')}})))"
)


@functools.cache
def dockerfile() -> Path:
    """The Dockerfile of the SWE image, its build folder written if need be."""
    root = Path(os.environ.get("PIVOTGYM_CACHE") or Path.home() / ".cache" / "pivotgym")
    folder = root / "swe" / "image"
    try:
        names = subprocess.run(["/usr/bin/python3", "-c", _CLOSURE], capture_output=True,
                               text=True, check=True).stdout.split()  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        raise InfraError(
            f"the host's python3 cannot import pytest ({exc}): apt-get install python3-pytest"
        ) from None
    site = folder / "site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    for name in names:
        for path in (SITE / name, SITE / f"{name}.py"):
            if path.is_dir():
                shutil.copytree(path, site / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif path.is_file():
                shutil.copyfile(path, site / path.name)
    bin_folder = folder / "bin"
    shutil.rmtree(bin_folder, ignore_errors=True)
    bin_folder.mkdir()
    for command in COMMANDS:
        shutil.copy2(command, bin_folder / command.name)
    shutil.copyfile(PYTHON_STARTUP / "sitecustomize.py", folder / "sitecustomize.py")
    (folder / "Dockerfile").write_text(DOCKERFILE)
    return folder / "Dockerfile"

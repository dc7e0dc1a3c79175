"""Images of Docker sandboxes: the local base image and per-task images built on it.

A task that ships a Dockerfile gets an image tagged by a hash of everything its build
can see (the Dockerfile, the ids of the images it starts FROM, every file of its
folder), so an unchanged task reuses its image and any change builds a new one. Builds
never pull: every FROM must name an image already present, which keeps the whole
backend working where no registry is reachable. Task images are a cache and are kept.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import docker.errors

from pivotgym.errors import DataError, InfraError

BASE_IMAGE = "pivotgym/base:bookworm"
TASK_REPOSITORY = "pivotgym/task"


def require_image(api: docker.APIClient, image: str) -> str:
    """The id of the local ``image``; :class:`InfraError` when it is absent."""
    try:
        return api.inspect_image(image)["Id"]
    except docker.errors.ImageNotFound:
        hint = ": run docker/build-base.sh" if image == BASE_IMAGE else ""
        raise InfraError(f"image {image} missing{hint}") from None


def task_image_tag(api: docker.APIClient, dockerfile: Path) -> str:
    """The tag the image of ``dockerfile`` (context: its folder) has, or will have."""
    context = dockerfile.parent
    text = dockerfile.read_text(encoding="utf-8", errors="replace")
    from_ids = []
    for line, image in _from_images(dockerfile, text):
        try:
            from_ids.append(require_image(api, image))
        except InfraError:
            raise DataError(
                f"FROM {image}: no such local image, and pivotgym never pulls "
                f"(docker/build-base.sh builds {BASE_IMAGE})",
                file=dockerfile,
                line=line,
            ) from None
    return f"{TASK_REPOSITORY}:{_context_digest(context, dockerfile, from_ids)[:24]}"


def build_task_image(api: docker.APIClient, dockerfile: Path, tag: str) -> None:
    """Build ``tag`` from ``dockerfile`` unless it exists (maybe built by another process)."""
    try:
        api.inspect_image(tag)
        return
    except docker.errors.ImageNotFound:
        pass
    log: list[str] = []
    for chunk in api.build(
        path=str(dockerfile.parent),
        dockerfile=dockerfile.name,
        tag=tag,
        pull=False,
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "error" in chunk:
            tail = "".join(log[-20:])
            raise DataError(f"docker build failed: {chunk['error']}\n{tail}", file=dockerfile)
        log.append(chunk.get("stream", ""))


def context_signature(context: Path) -> tuple[tuple[str, int, int, int], ...]:
    """Cheap fingerprint (path, mode, size, mtime) of every entry, to skip re-hashing."""
    entries = []
    for root, dirs, files in os.walk(context):
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(root, name)
            st = p.lstat()
            entries.append((str(p.relative_to(context)), st.st_mode, st.st_size, st.st_mtime_ns))
    return tuple(entries)


def _from_images(dockerfile: Path, text: str) -> list[tuple[int, str]]:
    """(line, image) of every ``FROM`` that names an image rather than an earlier stage."""
    stages: set[str] = set()
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if len(words) < 2 or words[0].upper() != "FROM":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if not args:
            raise DataError("FROM without an image", file=dockerfile, line=number)
        image = args[0]
        if len(args) >= 3 and args[1].upper() == "AS":
            stages.add(args[2].lower())
        if image.lower() in stages or image == "scratch" or "$" in image:
            continue
        found.append((number, image))
    return found


def _context_digest(context: Path, dockerfile: Path, from_ids: Sequence[str]) -> str:
    """Hash of everything a build can see: the Dockerfile, its base images and every file
    of the context (any of them can be COPY'd or ADD'ed)."""
    h = hashlib.sha256(b"pivotgym-task-image-1\0")
    h.update(str(dockerfile.relative_to(context)).encode() + b"\0")
    for image_id in from_ids:
        h.update(image_id.encode() + b"\0")
    for root, dirs, files in os.walk(context):
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(root, name)
            rel = str(p.relative_to(context)).encode()
            if p.is_symlink():
                h.update(b"L" + rel + b"\0" + os.readlink(p).encode() + b"\0")
            elif p.is_dir():
                h.update(b"D" + rel + b"\0")
            elif p.is_file():
                h.update(b"F%s\0%o\0" % (rel, p.stat().st_mode & 0o777))
                with open(p, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                h.update(b"\0")
    return h.hexdigest()

"""The SWE env's repositories: real, pure-Python projects at pinned releases.

Each is the source distribution of one release on the package index, pinned by exact
file name and SHA-256. It is fetched only when the suite is built
(:func:`fetch`, from the index's JSON API), never at run time: what ships is a git
bundle of its source, tests and configuration (``data/repos/NAME.bundle``, one commit
with a fixed author and date) with its licence beside it (``data/repos/NAME.LICENSE``).
A task's tree is cloned from the bundle on the host (:func:`clone`).

Every project here runs its own test suite with the standard library and pytest alone,
in seconds, on the Python and pytest that sandboxes see (Debian's ``python3`` and
``python3-pytest``). ``held_out`` projects give only the out-of-repository test tasks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pivotgym.errors import DataError, InfraError
from pivotgym.sandbox.base import DETERMINISTIC_ENV

DATA = Path(__file__).parent / "data"
BUNDLES = DATA / "repos"
INDEX = "https://pypi.org/simple"
# What of a source distribution becomes the repository, beside the package and tests:
# the files that configure how its tests run, and its licence and readme.
KEPT_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "pytest.ini", "README",
              "README.md", "README.rst")  # fmt: skip


@dataclass(frozen=True)
class Repo:
    """One project at one release (module docstring).

    ``package`` is where its import package lies in the repository (``src/cachetools``,
    ``toolz``; a single module is a ``.py`` path); ``tests`` the test files or folders
    its suite is; ``licence`` the SPDX identifier of the licence file ``licence_file``.
    """

    name: str
    version: str
    sdist: str
    sha256: str
    package: str
    tests: tuple[str, ...]
    licence: str
    licence_file: str = "LICENSE"
    held_out: bool = False
    also: tuple[str, ...] = ()  # other top-level entries the tests import
    # Tests that assert on wall-clock time (a parse "under 1 s", a running time that
    # grows "near-linearly"): their verdict is the machine's load, not the code's, so a
    # task's tests would pass or fail, and a recorded test run print, differently from
    # run to run. Every pytest run of the repository deselects them (node id prefixes),
    # as SWE-bench drops the flaky tests it finds from its lists.
    timed: tuple[str, ...] = ()

    @property
    def python_path(self) -> str:
        """The folder that puts the package on ``sys.path``: ``src`` or the top."""
        return "src" if self.package.startswith("src/") else "."

    @property
    def pytest_addopts(self) -> str:
        """``PYTEST_ADDOPTS`` for every pytest run of the repository: :attr:`timed`
        deselected."""
        return " ".join(f"--deselect {test}" for test in self.timed)

    @property
    def bundle(self) -> Path:
        return BUNDLES / f"{self.name}.bundle"

    @property
    def kept(self) -> tuple[str, ...]:
        top = {self.package.split("/")[0], *(t.split("/")[0] for t in self.tests), *self.also}
        return (*sorted(top), self.licence_file, *KEPT_FILES)


def _tests(holder: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{holder}::{name}" for name in names)


MISTUNE_TIMED = (
    *_tests("tests/test_inline_limits.py",
            "test_unclosed_inline_html_recovers_without_rescanning_the_document",
            "test_links_inside_many_pending_images_do_not_rescan_image_openers",
            "test_unclosed_destinations_recover_in_linear_time"),
    *_tests("tests/test_misc.py::TestMiscCases",
            "test_deeply_indented_list_does_not_scale_quadratically"),
    *_tests("tests/test_security_edge_cases.py::TestEdgeCaseSecurity",
            "test_blank_list_continuations_are_near_linear",
            "test_dense_emphasis_is_near_linear",
            "test_mixed_emphasis_delimiters_are_near_linear",
            "test_malformed_images_are_near_linear",
            "test_unclosed_link_destinations_are_near_linear"),
    *_tests("tests/test_security_formatting.py::TestFormattingSecurity",
            "test_repeated_formatting_pairs_return_quickly",
            "test_repeated_unclosed_formatting_markers_are_near_linear"),
    *_tests("tests/test_security_inline.py::TestInlineParserSecurity",
            "test_link_title_redos_payload_returns_quickly",
            "test_nested_bracket_link_input_does_not_recurse_forever",
            "test_failed_reference_after_nested_brackets_returns_quickly",
            "test_unmatched_bracket_input_returns_quickly",
            "test_deep_link_input_does_not_recurse_forever",
            "test_repeated_link_suffixes_are_near_linear",
            "test_repeated_unclosed_inline_spoilers_are_near_linear",
            "test_adjacent_ruby_tokens_do_not_recurse_forever"),
    *_tests("tests/test_security_math.py::TestMathSecurity",
            "test_repeated_inline_math_openers_are_near_linear"),
    *_tests("tests/test_security_ref_links.py::TestRefLinkSecurity",
            "test_many_reference_links_return_quickly"),
)  # fmt: skip
SQLPARSE_TIMED = (
    *_tests("tests/test_dos_prevention.py::TestDoSPrevention",
            "test_nested_paren_within_cap_under_1s", "test_nested_case_within_cap_under_1s"),
    "tests/test_dos_prevention.py::test_unterminated_quotes_format_under_1s",
)  # fmt: skip


REPOS: dict[str, Repo] = {
    r.name: r
    for r in (
        Repo("boltons", "26.2.0", "boltons-26.2.0.tar.gz",
             "d39cfd15c1a1c3bd4d705c82252fa9edb8e4f5e8cc039f8e39afac7b1b47e92c",
             "boltons", ("tests",), "BSD-3-Clause"),
        Repo("cachetools", "8.0.3", "cachetools-8.0.3.tar.gz",
             "79245d0d90464e29355f13658cd769e57d98ed06242d3c6fbd71796ca0938ef9",
             "src/cachetools", ("tests",), "MIT"),
        Repo("inflection", "0.5.1", "inflection-0.5.1.tar.gz",
             "1a29730d366e996aaacffb2f1f1cb9593dc38e2ddd30c91250c6dde09ea9b417",
             "inflection", ("test_inflection.py",), "MIT"),
        Repo("isodate", "0.7.2", "isodate-0.7.2.tar.gz",
             "4cd1aa0f43ca76f4a6c6c0292a85f40b35ec2e43e315b59f06e6d32171a953e6",
             "src/isodate", ("tests",), "BSD-3-Clause"),
        Repo("mistune", "3.4.0", "mistune-3.4.0.tar.gz",
             "2eaf7952af928ca8d33b779762effc1da517b62c6ad85ec8ca957e3b07b9782a",
             "src/mistune", ("tests",), "BSD-3-Clause",
             timed=MISTUNE_TIMED),
        Repo("sqlparse", "0.6.1", "sqlparse-0.6.1.tar.gz",
             "ca722573f848ff2d30e40ea30f53a104b7dea7635ea9285891263eb2c58fb6e7",
             "sqlparse", ("tests",), "BSD-3-Clause",
             timed=SQLPARSE_TIMED),
        Repo("tabulate", "0.10.0", "tabulate-0.10.0.tar.gz",
             "e2cfde8f79420f6deeffdeda9aaec3b6bc5abce947655d17ac662b126e48a60d",
             "tabulate", ("test",), "MIT"),
        Repo("toolz", "1.2.0", "toolz-1.2.0.tar.gz",
             "9667a038e9d6ecba37995e26cb2f59ec6420b6ad8dd9677de59db9b956b08490",
             "toolz", ("toolz/tests",), "BSD-3-Clause", licence_file="LICENSE.txt",
             also=("tlz",)),
        Repo("tinydb", "4.9.0", "tinydb-4.9.0.tar.gz",
             "6928b1fa785186bda7952a0ba05aaeedc883ede565ca9c7d608de44e5e75de70",
             "tinydb", ("tests",), "MIT", held_out=True),
        Repo("webcolors", "25.10.0", "webcolors-25.10.0.tar.gz",
             "62abae86504f66d0f6364c2a8520de4a0c47b80c03fc3a5f1815fedbef7c19bf",
             "src/webcolors", ("tests",), "BSD-3-Clause", held_out=True),
    )
}  # fmt: skip


def get_repo(name: str) -> Repo:
    if name not in REPOS:
        raise DataError(f"unknown SWE repository {name!r} (repositories: {', '.join(REPOS)})",
                        field="repo")  # fmt: skip
    return REPOS[name]


# ----------------------------------------------------------------------- build time


def fetch(repo: Repo, cache: Path) -> bytes:
    """The release's source distribution from the package index, checked against its
    pinned SHA-256 (kept in ``cache``, so a rebuild downloads nothing)."""
    path = cache / repo.sdist
    if not path.exists():
        request = urllib.request.Request(
            f"{INDEX}/{repo.name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                files = json.load(response)["files"]
            (entry,) = [f for f in files if f["filename"] == repo.sdist]
            with urllib.request.urlopen(entry["url"], timeout=120) as response:
                data = response.read()
        except (OSError, ValueError, KeyError) as exc:
            raise InfraError(f"cannot fetch {repo.sdist} from {INDEX}: {exc}") from exc
        cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != repo.sha256:
        raise DataError(f"sha256 {digest}, pinned {repo.sha256}", file=path)
    return data


def unpack(repo: Repo, sdist: bytes, dest: Path) -> None:
    """The repository's files of a source distribution (:attr:`Repo.kept`), in ``dest``."""
    with tarfile.open(fileobj=io.BytesIO(sdist)) as tar:
        top = f"{repo.sdist.removesuffix('.tar.gz')}/"
        members = []
        for member in tar.getmembers():
            rel = member.name.removeprefix(top)
            if member.name.startswith(top) and rel.split("/")[0] in repo.kept:
                member.name = rel
                members.append(member)
        tar.extractall(dest, members=members, filter="data")
    for junk in dest.rglob("__pycache__"):
        shutil.rmtree(junk)


def git(*args: str, cwd: Path) -> str:
    """Run git with the sandboxes' fixed identity and dates, for reproducible commits."""
    env = {**os.environ, **DETERMINISTIC_ENV, "GIT_CONFIG_GLOBAL": "/dev/null"}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, check=True)  # fmt: skip
    except subprocess.CalledProcessError as exc:
        raise InfraError(f"git {' '.join(args)} failed: {exc.stderr.strip()}") from None
    return done.stdout


def make_bundle(repo: Repo, tree: Path, bundle: Path) -> str:
    """Commit ``tree`` as the release and write it as ``bundle``; return the commit id."""
    git("init", "-q", "-b", "main", cwd=tree)
    git("add", "-A", cwd=tree)
    git("commit", "-q", "-m", f"{repo.name} {repo.version}", cwd=tree)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    git("bundle", "create", "-q", str(bundle.resolve()), "HEAD", "main", cwd=tree)
    return git("rev-parse", "HEAD", cwd=tree).strip()


# ------------------------------------------------------------------------ run time


def clone(repo: Repo, dest: Path) -> None:
    """The release's repository, cloned from its bundle into ``dest``."""
    if not repo.bundle.is_file():
        raise DataError("the repository's bundle is missing: build the suite "
                        "(python -m pivotgym.envs.swe.build)", file=repo.bundle)  # fmt: skip
    git("clone", "-q", "--branch", "main", str(repo.bundle), str(dest), cwd=dest.parent)
    # Sample hooks are files the sandbox would copy for nothing.
    shutil.rmtree(dest / ".git" / "hooks", ignore_errors=True)

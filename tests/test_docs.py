"""The documentation in ``docs/`` matches the code.

* every signature heading (``### `xarray_om.x.y(a, *, b=1)` ``) names an object
  that exists, with those parameters and those defaults;
* every option in ``docs/cli.md`` exists in the command line parser, and the exit
  code table matches ``xarray_om.cli``;
* relative links in the docs and the README draft point to files that exist;
* the README draft keeps the two commands of ``README.md`` verbatim.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# The README text is drafted in docs/ until the lead merges it into README.md.
README_TEXT = (
    DOCS / "README-draft.md" if (DOCS / "README-draft.md").exists() else ROOT / "README.md"
)
HEADING = re.compile(r"^#{2,4} `(xarray_om(?:\.\w+)+)\((.*)\)`\s*$", re.MULTILINE)


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def _split_params(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _signatures() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        for m in HEADING.finditer(page.read_text()):
            found.append((page.relative_to(ROOT).as_posix(), m.group(1), m.group(2)))
    return found


def test_docs_exist() -> None:
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"api.md", "cli.md", "api/format.md", "api/xarray.md", "api/zarr.md"} <= names
    assert len(_signatures()) >= 15


@pytest.mark.parametrize("page,dotted,params", _signatures(), ids=lambda v: str(v)[:60])
def test_signature_headings_match_the_code(page: str, dotted: str, params: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = _resolve(dotted)
    sig = inspect.signature(obj)
    actual = {n: p for n, p in sig.parameters.items() if n != "self"}
    keyword_only = False
    for item in _split_params(params):
        if item == "*":
            keyword_only = True
            continue
        if item.startswith("**"):
            assert any(p.kind is p.VAR_KEYWORD for p in actual.values()), (page, dotted, item)
            continue
        name, _, default = item.partition("=")
        assert name in actual, f"{page}: {dotted} has no parameter {name!r}"
        p = actual[name]
        if keyword_only:
            assert p.kind is p.KEYWORD_ONLY, f"{page}: {dotted}({name}) is not keyword-only"
        if default:
            want = ast.literal_eval(default)
            assert p.default == want, f"{page}: {dotted}({name}) defaults to {p.default!r}"
        else:
            assert p.default is p.empty, f"{page}: {dotted}({name}) has a default {p.default!r}"


def test_cli_page_matches_the_parser() -> None:
    from xarray_om import cli

    text = (DOCS / "cli.md").read_text()
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    known = {"--traceback", "--version", "--help"}
    for command in sub.choices.values():
        for action in command._actions:
            known.update(action.option_strings)
    documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))
    assert documented <= known, documented - known
    for flag in ("--compression", "--scale-factor", "--chunks", "--progress", "--json"):
        assert flag in documented
    for code, name in ((0, "EXIT_OK"), (1, "EXIT_BAD_DATA"), (2, "EXIT_USAGE")):
        assert getattr(cli, name) == code
        assert re.search(rf"^\| {code} \| ", text, re.MULTILINE)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_exist(page: Path) -> None:
    # The README draft is written for the repository root, like README.md.
    base = ROOT if page.name == "README-draft.md" else page.parent
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (base / target).resolve().exists(), f"{page.name}: broken link {target}"


def test_readme_draft_keeps_the_two_commands() -> None:
    def commands(text: str) -> str:
        block = re.search(r"## Two commands.*?```bash\n(.*?)```", text, re.DOTALL)
        assert block is not None
        return block.group(1)

    draft = README_TEXT.read_text()
    assert commands(draft) == commands((ROOT / "README.md").read_text())
    for must in (
        'engine="xarray_om"',
        "round((value + add_offset) * scale_factor)",
        "om_scale_factor",
    ):
        assert must in draft


def test_readme_draft_example_runs(tmp_path: Path) -> None:
    draft = README_TEXT.read_text()
    code = re.search(r"## In ten lines.*?```python\n(.*?)```", draft, re.DOTALL).group(1)
    assert len(code.strip().splitlines()) <= 10
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], cwd=tmp_path, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert abs(float(proc.stdout) - 10) < 1  # mean of N(10, 5) over 240 hours
    assert (tmp_path / "t2m.om").exists()

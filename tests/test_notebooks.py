"""Every notebook in ``notebooks/`` runs top to bottom without error.

Notebooks execute with nbclient in a fresh temporary working directory, on an
IPython kernel started with this interpreter (a kernel spec written on the fly,
so a stale or missing global ``python3`` spec cannot pick another Python). The
committed files must carry no outputs and must be what
``notebooks/make_notebooks.py`` generates.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Generous: the notebooks take 10-40 s each, but CI machines may be loaded.
CELL_TIMEOUT = 600


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_notebooks", NOTEBOOK_DIR / "make_notebooks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_notebooks() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01_quickstart.ipynb", "02_scale_out.ipynb", "03_interop.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_up_to_date(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {cell.id} has outputs"
            assert cell.execution_count is None, f"{path.name}: cell {cell.id} was executed"
    assert path.read_text() == _generator().render(path.name), (
        f"{path.name} differs from notebooks/make_notebooks.py: run python notebooks/make_notebooks.py"
    )


@pytest.fixture(scope="module")
def kernel_spec_dir(tmp_path_factory) -> Path:
    """A kernel spec running ``sys.executable -m ipykernel_launcher``."""
    from ipykernel.kernelspec import write_kernel_spec

    base = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(path=base / "python3")
    return base


def _kernel_manager(kernel_spec_dir: Path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    ksm = KernelSpecManager(kernel_dirs=[str(kernel_spec_dir)], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, kernel_spec_dir: Path, monkeypatch) -> None:
    nb = nbformat.read(path, as_version=4)
    # Headless: plots render to PNG outputs through the Agg-based inline backend.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.chdir(tmp_path)
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(kernel_spec_dir),
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:  # the cell and the traceback
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)
    images = sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )
    assert images >= 2, f"{path.name}: expected plots, got {images}"
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors

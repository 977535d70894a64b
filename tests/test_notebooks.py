"""The notebooks: executed headless in smoke mode, resumable, jupytext pairs in sync, stripped, badges right.

Execution uses nbclient with the kernel ``python3``; jupyter_client starts that kernel with the
interpreter running these tests (its kernel.json says ``python``, which jupyter_client maps to
``sys.executable``), and the setup cell's printout is checked to prove it.
"""
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = ["train", "prepare_faces", "convert"]
SETUP_URL = re.search(r'^URL = "([^"]+)"', (ROOT / "setup.py").read_text(), re.M).group(1)


def _load_script():
    spec = importlib.util.spec_from_file_location("set_repo_url", ROOT / "scripts" / "set_repo_url.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _read(name):
    return nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


# ---- executing them -------------------------------------------------------------------------------
def _execute(name, monkeypatch, run_dir, **env):
    """Run a notebook like CI does; returns (executed notebook, all its text output)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("GANLIB_SMOKE", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("GANLIB_RUN_DIR", str(run_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the CI box has 2 cores shared with other jobs
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = _read(name)
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NB_DIR)}}).execute()
    parts = []
    for cell in _code(nb):
        for out in cell.outputs:
            assert out.output_type != "error", f"{name}: {out.ename}: {out.evalue}"
            if out.output_type == "stream":
                parts.append(out.text)
            elif "text/plain" in out.get("data", {}):
                parts.append(out.data["text/plain"])
    return nb, "\n".join(parts)


def _iters(text):
    return [int(n) for n in re.findall(r"\[iter (\d+)\]", text)]


def test_train_notebook_runs_and_resumes_on_the_same_run_folder(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    nb, first = _execute("train", monkeypatch, run_dir)
    assert f"at {sys.executable}" in first  # the kernel runs this very interpreter
    assert "smoke mode" in first
    assert _iters(first) == [2, 4]  # smoke preset: display_iters 2, TOTAL_ITERS 4
    for step in (2, 4):
        for stem in ("train_preprocessed", "train_masked", "train_reconstruction"):
            assert (run_dir / f"{stem}_{step}.png").is_file()
    assert "Transformed (masked) results:" in first and "Reconstruction results:" in first
    # the results cell listed the checkpoints and showed the newest grids
    assert "steps with previews: [2, 4]" in first
    images = [o for c in _code(nb) for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6  # three live grids in the train cell + three in the results cell

    # Second session on the same folder, next chunk target: resumes at 4, trains 5..6 only.
    _, second = _execute("train", monkeypatch, run_dir, GANLIB_OVERRIDES="train.TOTAL_ITERS=6")
    assert re.search(r"[Rr]esum\w* from iteration 4\b", second), second[-2000:]
    assert _iters(second) == [6]
    assert (run_dir / "train_reconstruction_6.png").is_file()


def test_prepare_faces_notebook_runs(tmp_path, monkeypatch):
    _, text = _execute("prepare_faces", monkeypatch, tmp_path / "work")
    assert "faces saved:" in text and "frames with no face:" in text
    faces = list((tmp_path / "work" / "faces").glob("*/faces/*.png"))
    masks = list((tmp_path / "work" / "faces").glob("*/masks/*.png"))
    assert faces and {p.name for p in faces} == {p.name for p in masks}


def test_convert_notebook_runs(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _, text = _execute("convert", monkeypatch, run_dir)
    assert "converting A -> B" in text
    outputs = list((run_dir / "converted").glob("person_A_AtoB*.mp4"))
    assert len(outputs) == 1
    from ganlib.video import SYNTHETIC_LABEL, read_metadata

    assert SYNTHETIC_LABEL in read_metadata(outputs[0]).values()


# ---- the files as committed -----------------------------------------------------------------------
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_jupytext_pair_in_sync(name):
    nb = _read(name)
    twin = jupytext.reads((NB_DIR / f"{name}.py").read_text(encoding="utf-8"), fmt="py:percent")
    assert [(c.cell_type, c.source) for c in twin.cells] == [(c.cell_type, c.source) for c in nb.cells]
    for key in ("accelerator", "colab"):
        assert twin.metadata.get(key) == nb.metadata.get(key)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs_and_with_colab_metadata(name):
    nb = _read(name)
    for cell in _code(nb):
        assert cell.outputs == [] and cell.execution_count is None
        assert not {"executionInfo", "outputId"} & set(cell.metadata)  # Colab's per-user noise
    assert "widgets" not in nb.metadata
    assert nb.metadata["accelerator"] == "GPU"
    assert nb.metadata["colab"]["gpuType"] == "T4"
    assert nb.metadata["colab"]["include_colab_link"] is True
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_badge_points_at_own_path_and_install_uses_setup_url(name):
    nb = _read(name)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.metadata.get("id") == "view-in-github"
    owner_repo = SETUP_URL.removeprefix("https://github.com/")
    link = f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name}.ipynb"
    assert re.findall(r"https://colab\.research\.google\.com/github/[^\s\"'()<>]+", first.source) == [link]
    setup = next(c.source for c in _code(nb) if "@title Setup" in c.source)
    assert re.findall(r'^REPO_URL = "([^"]+)"', setup, re.M) == [SETUP_URL]
    assert 'f"git+{REPO_URL}"' in setup and '"--no-deps", "facenet-pytorch"' in setup
    assert "-e" not in re.findall(r'"(-\w+)"', setup)  # never editable: the running kernel could not import it


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_content_rules(name):
    nb = _read(name)
    intro = nb.cells[1].source
    for words in ("consent", "Colab's terms", "local Jupyter runtime", "Kaggle", "synthetic, made with ganlib"):
        assert words in intro, words
    for cell in _code(nb):
        src = cell.source
        assert "input(" not in src and "on_click" not in src  # nothing waits for a person
        assert not re.search(r"^\s*(def|class) ", src, re.M)  # logic lives in ganlib, not here
        assert "# @title" in src and cell.metadata.get("cellView") == "form"


def test_urls_agree_everywhere_per_the_script():
    changes, _ = _load_script().plan(ROOT)
    assert not changes, f"out of date (run python scripts/set_repo_url.py): {sorted(map(str, changes))}"


def test_set_repo_url_rewrites_setup_badges_install_cells_and_marked_blocks(tmp_path):
    script = _load_script()
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    for name in NOTEBOOKS:
        for ext in (".ipynb", ".py"):
            shutil.copy(NB_DIR / f"{name}{ext}", tmp_path / "notebooks" / f"{name}{ext}")
    # a badge pointing at the wrong notebook gets fixed too
    wrong = (tmp_path / "notebooks" / "convert.ipynb").read_text().replace(
        "notebooks/convert.ipynb", "notebooks/train.ipynb")
    (tmp_path / "notebooks" / "convert.ipynb").write_text(wrong)
    readme = "# title\n\nbefore\n<!-- badges:start -->\nold\n<!-- badges:end -->\nafter\n"
    (tmp_path / "README.md").write_text(readme)

    new = "https://github.com/someone/ganlib-fork"
    assert script.main([new, "--root", str(tmp_path)]) == 0
    assert f'URL = "{new}"' in (tmp_path / "setup.py").read_text()
    for name in NOTEBOOKS:
        nb = nbformat.read(tmp_path / "notebooks" / f"{name}.ipynb", as_version=4)  # still valid JSON
        assert f"github/someone/ganlib-fork/blob/main/notebooks/{name}.ipynb" in nb.cells[0].source
        assert f'REPO_URL = "{new}"' in next(c.source for c in nb.cells if "@title Setup" in c.source)
        twin = (tmp_path / "notebooks" / f"{name}.py").read_text()
        assert f"github/someone/ganlib-fork/blob/main/notebooks/{name}.ipynb" in twin
        assert f'REPO_URL = "{new}"' in twin
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# title\n\nbefore\n<!-- badges:start -->\n") and text.endswith("<!-- badges:end -->\nafter\n")
    assert "old" not in text and text.count("colab-badge.svg") == 3
    assert script.main(["--check", "--root", str(tmp_path)]) == 0
    with pytest.raises(SystemExit, match="GitHub"):
        script.main(["https://gitlab.com/x/y", "--root", str(tmp_path)])


def test_set_repo_url_without_markers_prints_what_to_add(tmp_path, capsys):
    script = _load_script()
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    (tmp_path / "README.md").write_text("# no markers here\n")
    assert script.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no badge markers" in out and "<!-- badges:start -->" in out
    assert (tmp_path / "README.md").read_text() == "# no markers here\n"

# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     include_colab_link: true
#     provenance: []
#   kernelspec:
#     display_name: Python 3
#     name: python3
#   language_info:
#     name: python
# ---

# %% [markdown] id="view-in-github" colab_type="text"
# <a href="https://colab.research.google.com/github/ganlib/ganlib/blob/main/notebooks/train.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

# %% [markdown]
# # ganlib: train faceswap-GAN v2.2
#
# Trains the faceswap-GAN v2.2 model (shared encoder, one decoder and one discriminator per person) on
# two face sets, in resumable chunks. Checkpoints, logs and the three preview grids
# (`train_preprocessed_N.png`, `train_masked_N.png`, `train_reconstruction_N.png`) go to the run folder
# on Google Drive. When the runtime dies, reopen the notebook, run all cells again: training resumes
# from the newest valid checkpoint at the exact step, on to the next `TOTAL_ITERS`.
#
# Run the cells in order. The flags are set in the panel of the Config cell and read when the Train
# cell starts (change them between chunks, not during one).
#
# **Responsible use.** Use only faces of people who gave their consent. Colab's terms list creating
# deepfakes among disallowed uses (see the current Colab FAQ), so this notebook also runs unchanged on a
# local Jupyter runtime (Colab can connect to one), on Kaggle or on any GPU machine. The built-in demo
# faces are synthetic (no real person), and converted outputs carry a machine-readable
# "synthetic, made with ganlib" label.

# %% cellView="form"
# @title Setup { display-mode: "form" }
# @markdown In Colab this installs ganlib from the repository (not editable, so no restart is needed),
# @markdown or from a wheel / source folder: give its full path, e.g. `/content/drive/MyDrive/ganlib`
# @markdown (Drive is mounted for it) or `/content/ganlib-0.1.0-py3-none-any.whl` (uploaded).
# @markdown Elsewhere nothing is installed: `pip install ganlib` (or `pip install -e .`) beforehand.
install_from = "git"  # @param ["git", "wheel or folder"]
wheel_or_folder = ""  # @param {type:"string"}
# The repository; scripts/set_repo_url.py keeps this equal to URL in setup.py.
REPO_URL = "https://github.com/ganlib/ganlib"

import os
import subprocess
import sys

IN_COLAB = "google.colab" in sys.modules
if IN_COLAB and os.environ.get("GANLIB_SMOKE") != "1":
    source = f"git+{REPO_URL}" if install_from == "git" else wheel_or_folder
    if source.startswith("/content/drive/"):
        from google.colab import drive

        drive.mount("/content/drive")
    # pip install -q "git+<REPO_URL>"; facenet-pytorch without its old torch/numpy pins (MTCNN only)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "facenet-pytorch"], check=True)

from ganlib import colab

print(colab.describe_environment())

# %% cellView="form"
# @title Storage: Drive, run folder and faces { display-mode: "form" }
# @markdown The run lives in `My Drive/<drive_folder>/<run_name>`: re-use the same name to resume.
# @markdown Faces: the built-in synthetic demo faces, or folders / zips of aligned faces on Drive
# @markdown (made by `prepare_faces.ipynb`); paths are relative to My Drive. They are copied once
# @markdown to the runtime's local disk, which is much faster than reading Drive while training.
drive_folder = "ganlib_runs"  # @param {type:"string"}
run_name = "run1"  # @param {type:"string"}
data_source = "synthetic"  # @param ["synthetic", "drive folders", "zip on Drive"]
faces_a = "ganlib_runs/faces/A"  # @param {type:"string"}
faces_b = "ganlib_runs/faces/B"  # @param {type:"string"}

storage = colab.prepare_storage(drive_folder, run_name, data_source, faces_a, faces_b)

# %% cellView="form"
# @title Config { display-mode: "form" }
# @markdown Pick a preset and the chunk target, then adjust the flags in the panel below. The
# @markdown architecture (resolution, capacity, norm) is fixed once a run has a checkpoint.
# @markdown `chunk_minutes` = 0 trains until `TOTAL_ITERS` or the end of the session budget.
preset_name = "v22_colab"  # @param ["v22_colab", "v22_train", "cpu_demo", "smoke"]
TOTAL_ITERS = 1500  # @param [1500, 2400, 2700, 3000, 3600, 4500, 5400] {type:"raw"}
chunk_minutes = 0  # @param {type:"number"}

from ganlib.widgets import ConfigPanel

panel = ConfigPanel(colab.notebook_config(preset_name, TOTAL_ITERS, storage))
display(panel.widget)

# %% cellView="form"
# @title Train (re-run to continue from the newest checkpoint) { display-mode: "form" }
# @markdown Every `display_iters`: the loss block of the original and the three grids, updated in place.
# @markdown Colab's stop button saves a checkpoint before stopping.
from ganlib.trainer import Trainer
from ganlib.viz import NotebookView

cfg = panel.value
view = NotebookView()
trainer = Trainer.resume_or_start(storage.run_dir, cfg, publish_to=storage.publish_to)
result = trainer.train(until=cfg.train.TOTAL_ITERS, seconds=colab.chunk_seconds(chunk_minutes),
                       callback=view.update)

# %% cellView="form"
# @title Loss curves, checkpoints and previews { display-mode: "form" }
# @markdown `show_step` = 0 shows the newest preview grids; any step listed below shows that one.
show_step = 0  # @param {type:"integer"}

colab.show_history(trainer.history)
print(colab.describe_checkpoints(storage.results_dir))
print("steps with previews:", colab.preview_steps(storage.results_dir))
grids = colab.show_grids(storage.results_dir, show_step)

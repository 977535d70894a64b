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
# <a href="https://colab.research.google.com/github/ganlib/ganlib/blob/main/notebooks/prepare_faces.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

# %% [markdown]
# # ganlib: prepare faces
#
# Turns videos and photos of two people into aligned face sets for training: MTCNN finds the faces and
# their five landmarks, each face is aligned to the faceswap-GAN template (256 px) and saved with its
# eye mask as `faces/` + `masks/` folders on Google Drive. The report counts frames read, faces found,
# frames without a face and frames with several. A file that cannot be read is named in the report and
# skipped; the run never stops on it, and an interrupted run resumes where it stopped.
#
# Use the resulting folders `<out_folder>/A` and `<out_folder>/B` as `faces_a` / `faces_b` in
# `train.ipynb` (data source "drive folders").
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
# @title Inputs and output folder { display-mode: "form" }
# @markdown Videos, photos or folders of each person, separated by commas, relative to My Drive
# @markdown (in Colab) or to this notebook's folder. Faces go to `<out_folder>/A` and `<out_folder>/B`.
inputs_a = "ganlib_runs/videos/person_A.mp4"  # @param {type:"string"}
inputs_b = "ganlib_runs/videos/person_B.mp4"  # @param {type:"string"}
out_folder = "ganlib_runs/faces"  # @param {type:"string"}

jobs = colab.extract_jobs(inputs_a, inputs_b, out_folder)

# %% cellView="form"
# @title Extract faces and eye masks { display-mode: "form" }
# @markdown `every`: use every k-th video frame (the original's Colab demo used 5). `size`: aligned
# @markdown face size in pixels (256 as in the original). Re-running skips what is already done.
every = 5  # @param {type:"integer"}
size = 256  # @param {type:"integer"}
min_face = 40  # @param {type:"integer"}

from ganlib.faces import extract

reports = {side: extract(inputs, out_dir, every=every, size=size, min_face=min_face, device=colab.torch_device())
           for side, (inputs, out_dir) in jobs.items()}

# %% cellView="form"
# @title A look at the faces found { display-mode: "form" }
for side, (_, out_dir) in jobs.items():
    print(f"person {side}: {out_dir}")
    colab.show_faces(out_dir, n=8)

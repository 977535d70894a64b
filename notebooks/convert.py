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
# <a href="https://colab.research.google.com/github/ganlib/ganlib/blob/main/notebooks/convert.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

# %% [markdown]
# # ganlib: convert photos and videos
#
# Applies a model trained with `train.ipynb` to a photo, a folder of photos or a video: every face is
# found (MTCNN), aligned, rendered by the other person's decoder (A -> B or B -> A), colour-corrected,
# blended with the model's mask and pasted back. In videos the face boxes are smoothed over time and the
# audio track is kept. The message says in plain words which way it converts, and how many faces were
# swapped. Outputs never replace an existing file.
#
# **Responsible use.** Use only faces of people who gave their consent. Colab's terms list creating
# deepfakes among disallowed uses (see the current Colab FAQ), so this notebook also runs unchanged on a
# local Jupyter runtime (Colab can connect to one), on Kaggle or on any GPU machine. The built-in demo
# faces are synthetic (no real person). Every converted image and video carries a machine-readable
# "synthetic, made with ganlib" label in its metadata.

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
# @title Model, input and output folder { display-mode: "form" }
# @markdown The run folder you trained into (`My Drive/<drive_folder>/<run_name>`), the photo, folder
# @markdown or video to convert, and where to write the result (paths relative to My Drive in Colab).
drive_folder = "ganlib_runs"  # @param {type:"string"}
run_name = "run1"  # @param {type:"string"}
source = "ganlib_runs/videos/person_A.mp4"  # @param {type:"string"}
out_folder = "ganlib_runs/converted"  # @param {type:"string"}

job = colab.convert_job(drive_folder, run_name, source, out_folder)

# %% cellView="form"
# @title Convert { display-mode: "form" }
# @markdown `direction`: AtoB renders the faces of person A as person B (decoder B); BtoA the reverse.
# @markdown `output_type`: 1 = result, 2 = source | result, 3 = source | result | mask.
direction = "AtoB"  # @param ["AtoB", "BtoA"]
color_correction = "hist_match"  # @param ["hist_match", "adain", "adain_xyz", "none"]
output_type = 1  # @param [1, 2, 3] {type:"raw"}
smoothing = "kalman"  # @param ["kalman", "moving_average", "none"]

report, output = colab.run_convert(job, direction, color_correction=color_correction,
                                   output_type=output_type, smoothing=smoothing)

# %% cellView="form"
# @title Look at the result { display-mode: "form" }
colab.show_output(output)

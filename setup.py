"""ganlib: the faceswap-GAN v2.2 model rebuilt in PyTorch.

Lower bounds only: Colab preinstalls torch, torchvision, numpy, matplotlib and
ipywidgets 7.7.1, and an upper pin would force a reinstall and a runtime restart.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "ganlib" / "__init__.py").read_text()).group(1)

# The repository's public home, kept in this ONE place. scripts/set_repo_url.py rewrites
# the notebooks' badges and install cells from it, and a test checks that they agree.
URL = "https://github.com/ganlib/ganlib"

setup(
    name="ganlib",
    version=VERSION,
    description="faceswap-GAN v2.2 in PyTorch: Colab-first trainer that never loses progress",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    url=URL,
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["ganlib", "ganlib.*"]),
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.23",
        "pillow>=9.0",
        "matplotlib>=3.5",
        "ipywidgets>=7.7",
        "gdown>=4.7",
        "tqdm>=4.64",
    ],
    extras_require={
        # Video decoding/encoding with the audio track and container metadata (convert, extract).
        "video": ["av>=11"],
        "dev": [
            "pytest>=7",
            "av>=11",
            "scikit-image>=0.20",
            "nbclient>=0.8",
            "nbformat>=5",
            "ipykernel>=6",
            "jupytext>=1.15",
        ],
    },
    entry_points={"console_scripts": ["ganlib=ganlib.cli:main"]},
)

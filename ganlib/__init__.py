"""ganlib: the faceswap-GAN v2.2 model rebuilt in PyTorch.

Importing ganlib needs neither IPython, Colab nor a GPU, and downloads nothing.
"""
__version__ = "0.1.0"

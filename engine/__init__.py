"""The application layer: resume, the training loop, validation, the inference API and export, built on models/,
data/, options/ and util/.

The Python API is what this package exports, and only that (docs/interop.md; tests/test_structure.py pins the
names): `from engine import load_translator`. Importing it loads no options, reporting or page code."""

from engine.checkpoint import CheckpointError
from engine.inference import ImageTranslator, load_translator
from models import WeightsMismatch

__all__ = ["CheckpointError", "ImageTranslator", "WeightsMismatch", "load_translator"]

"""The application layer: resume, the training loop, validation, the inference API and export, built on models/,
data/, options/ and util/. The Python API: `from engine import load_translator`."""

from engine.inference import ImageTranslator, load_translator

__all__ = ["ImageTranslator", "load_translator"]

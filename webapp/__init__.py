"""The browser app (python app.py): the runs of a checkpoints folder, a translation service over the Python API
(engine.load_translator), and the Gradio page in front of them."""

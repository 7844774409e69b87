"""Helpers with no project imports above them: the typed config field and structured flag values (config.py),
files written atomically and without following links (util.py), torchrun (distributed.py)."""

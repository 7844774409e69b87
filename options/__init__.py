"""The four scripts' flags: each script's options composed of its consumers' configs (options.py), the option
groups of the scripts themselves (groups.py), the rules across configs (rules.py) and the presets (presets.py)."""

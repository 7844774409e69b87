#!/usr/bin/env bash
# Install visdom (optional live plots) into the current Python environment.
# visdom 0.2.4 ships only as a source package whose setup.py imports pkg_resources, which pip's isolated
# build environment (a current setuptools) no longer has. So: an older setuptools, and no build isolation.
set -euo pipefail
PYTHON=${PYTHON:-python}
"$PYTHON" -m pip install "setuptools<81" wheel
"$PYTHON" -m pip install --no-build-isolation "visdom>=0.2.4"
"$PYTHON" -c "import visdom; print('visdom', visdom.__version__ if hasattr(visdom, '__version__') else 'installed')"

#!/usr/bin/env bash
# Install visdom (optional live plots) into a Python environment: $PYTHON if set (for example a venv's
# bin/python), else the python (or python3) on PATH.
# visdom 0.2.4 ships only as a source package whose setup.py imports pkg_resources, which pip's isolated
# build environment (a current setuptools) no longer has. So: an older setuptools, and no build isolation.
set -euo pipefail
PYTHON=${PYTHON:-$(command -v python || command -v python3 || true)}
if [ -z "$PYTHON" ] || ! "$PYTHON" -c "" 2>/dev/null; then
    echo "install_visdom.sh: no usable Python (${PYTHON:-none on PATH}); set PYTHON=/path/to/python" >&2
    exit 1
fi
echo "installing visdom into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
"$PYTHON" -m pip install -q "setuptools<81" wheel
"$PYTHON" -m pip install -q --no-build-isolation "visdom>=0.2.4"
"$PYTHON" -c "import visdom; print('visdom', getattr(visdom, '__version__', 'installed'))"

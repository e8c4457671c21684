"""Which `ema` the tests import.

From the source tree (ctest python_binding, or by hand): python/ema of this
checkout, with the library from EMA_LIBRARY or the build tree. With
EMA_EXPECT_INSTALLED=<prefix> (tests/python/venv_install.sh): the installed
package only, and it must come from <prefix>.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INSTALLED = os.environ.get("EMA_EXPECT_INSTALLED")
if not INSTALLED:
    sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..", "python")))
else:
    import ema
    if not os.path.abspath(ema.__file__).startswith(os.path.abspath(INSTALLED)):
        raise RuntimeError(f"ema was imported from {ema.__file__}, not from the install in {INSTALLED}")

"""tests/python/test_packaging.py: where `import ema` finds libema.

The packaged copy (ema/libema.so) comes first; a build tree is looked at only
when the package is python/ema of a source checkout, never beside an
installed copy; a missing library is a clear ImportError; `import ema.torch`
works as the first import.
"""
import os
import shutil
import subprocess
import sys

import pytest

import ema

PKG = os.path.dirname(os.path.abspath(ema.__file__))


def _copy_package(dst):
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__", "libema.so"))


def _run(code, pythonpath, cwd, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("EMA_LIBRARY", "PYTHONPATH")}
    e.update(PYTHONPATH=pythonpath, PYTHONDONTWRITEBYTECODE="1", **env)
    return subprocess.run([sys.executable, "-c", code], env=e, cwd=cwd, capture_output=True, text=True)


def test_packaged_copy_is_found_first(tmp_path):
    site = tmp_path / "site"
    _copy_package(site / "ema")
    shutil.copyfile(ema.library_path if os.path.isabs(ema.library_path) else PKG + "/libema.so",
                    site / "ema" / "libema.so")
    r = _run("import ema; print(ema.library_path)", str(site), str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(site / "ema" / "libema.so")


def test_installed_copy_never_looks_beside_site_packages(tmp_path):
    # <prefix>/site/ema without its library, and a libema.so at <prefix>/build:
    # the 0.1 lookup took that one; now it is refused with a clear error
    site = tmp_path / "site"
    _copy_package(site / "ema")
    (tmp_path / "build").mkdir()
    if os.path.isabs(ema.library_path):
        shutil.copyfile(ema.library_path, tmp_path / "build" / "libema.so")
    r = _run("import ema", str(site), str(tmp_path))
    assert r.returncode != 0
    assert "libema.so was not found" in r.stderr and "pip install" in r.stderr
    assert str(site / "ema" / "libema.so") in r.stderr
    assert str(tmp_path / "build") not in r.stderr


def test_import_ema_torch_first(tmp_path):
    pytest.importorskip("torch")
    code = ("import ema.torch, torch, sys\n"
            "m = torch.nn.Linear(3, 2)\n"
            "e = ema.torch.EMA(m, 0.5).register()\n"
            "with torch.no_grad(): m.weight.add_(2.0)\n"
            "e.update()\n"
            "print(float((e.average('weight') - m.weight.detach()).abs().max()))\n")
    pythonpath = os.path.dirname(PKG)
    env = {}
    if not os.path.isfile(os.path.join(PKG, "libema.so")) and os.path.isabs(ema.library_path):
        env["EMA_LIBRARY"] = ema.library_path   # a source tree whose library lives elsewhere
    r = _run(code, pythonpath, str(tmp_path), **env)
    assert r.returncode == 0, r.stderr
    assert abs(float(r.stdout) - 1.0) < 1e-6

"""Build hooks of the `ema` package (metadata is in pyproject.toml).

build_py also compiles the C library with CMake (only the shared library:
no tests, no tools) in the build's temporary directory and copies it into
the package as ema/libema.so, where ema/_lib.py looks first. The wheel is
therefore platform-specific (BinaryDistribution).

Environment: CMAKE (the cmake to run, default "cmake"), EMA_CMAKE_ARGS
(extra configure arguments, split on spaces), EMA_BUILD_JOBS (parallel jobs,
default the CPU count).
"""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = os.path.dirname(os.path.abspath(__file__))


class BinaryDistribution(Distribution):
    """The package ships a shared library: not a pure-Python wheel."""

    def has_ext_modules(self):
        return True


def build_library(build_temp):
    """Configure and build libema's shared library in build_temp/cmake;
    return the path of the built file (symlinks resolved)."""
    cmake = os.environ.get("CMAKE", "cmake")
    if shutil.which(cmake) is None:
        raise RuntimeError(f"building the ema package needs CMake ({cmake!r} was not found; "
                           f"apt-get install cmake)")
    if not os.path.isfile(os.path.join(ROOT, "CMakeLists.txt")):
        raise RuntimeError(f"the C sources of libema are not beside setup.py in {ROOT}")
    bdir = os.path.join(os.path.abspath(build_temp), "cmake")
    jobs = os.environ.get("EMA_BUILD_JOBS") or str(os.cpu_count() or 2)
    extra = os.environ.get("EMA_CMAKE_ARGS", "").split()
    subprocess.check_call([cmake, "-S", ROOT, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release",
                           "-DEMA_BUILD_TESTS=OFF", "-DEMA_BUILD_TOOLS=OFF", "-DEMA_SANITIZE=OFF",
                           *extra], stdout=subprocess.DEVNULL)
    subprocess.check_call([cmake, "--build", bdir, "--target", "ema_shared", "-j", jobs],
                          stdout=subprocess.DEVNULL)
    path = os.path.realpath(os.path.join(bdir, "libema.so"))
    if not os.path.isfile(path):
        raise RuntimeError(f"CMake did not produce {path}")
    return path


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        build_temp = self.get_finalized_command("build").build_temp
        src = build_library(build_temp)
        dst = os.path.join(self.build_lib, "ema", "libema.so")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, "ema", "libema.so")]


setup(distclass=BinaryDistribution, cmdclass={"build_py": BuildPyWithLibrary},
      options={"build": {"build_base": "build-python"}})

# tests/python/tests.cmake: the Python binding (python/ema) under Debian's
# /usr/bin/python3 with python3-pytest, python3-numpy and python3-torch
# (scripts/deps.sh installs them). Included by tests/CMakeLists.txt.
#
# One ctest test, python_binding, runs every tests/python/test_*.py with
# EMA_LIBRARY pointing at this build's shared library. It is skipped (77)
# when python3, pytest or numpy is missing; the torch tests skip themselves
# without torch.
#
# In a sanitizer build (EMA_SANITIZE=ON) the library needs the ASan/UBSan
# runtimes loaded before anything else, which a stock python3 does not do:
# the test preloads them (LD_PRELOAD) and turns leak detection off (CPython
# and torch keep memory until exit by design), so the binding's ctypes calls
# run under ASan too. When the runtimes cannot be found it is labelled
# no-sanitize (make test runs the sanitizer suite with -LE no-sanitize).

set(EMA_PYBIND_PYTHON /usr/bin/python3)
set(EMA_PYBIND_ENV "EMA_LIBRARY=$<TARGET_FILE:ema_shared>" "PYTHONDONTWRITEBYTECODE=1")
set(EMA_PYBIND_LABELS python)
if(EMA_SANITIZE)
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE EMA_PYBIND_ASAN OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libubsan.so
                  OUTPUT_VARIABLE EMA_PYBIND_UBSAN OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(IS_ABSOLUTE "${EMA_PYBIND_ASAN}" AND EXISTS "${EMA_PYBIND_ASAN}"
     AND IS_ABSOLUTE "${EMA_PYBIND_UBSAN}" AND EXISTS "${EMA_PYBIND_UBSAN}")
    list(APPEND EMA_PYBIND_ENV "LD_PRELOAD=${EMA_PYBIND_ASAN}:${EMA_PYBIND_UBSAN}"
                               "ASAN_OPTIONS=detect_leaks=0")
  else()
    list(APPEND EMA_PYBIND_LABELS no-sanitize)
  endif()
endif()

add_test(NAME python_binding
  COMMAND sh -c "if ! ${EMA_PYBIND_PYTHON} -c 'import pytest, numpy' 2>/dev/null; then echo 'SKIP: ${EMA_PYBIND_PYTHON} with pytest and numpy is needed (apt-get install python3-pytest python3-numpy)'; exit 77; fi; exec ${EMA_PYBIND_PYTHON} -m pytest -q -p no:cacheprovider tests/python"
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(python_binding PROPERTIES
  ENVIRONMENT "${EMA_PYBIND_ENV}"
  SKIP_RETURN_CODE 77
  TIMEOUT 900
  LABELS "${EMA_PYBIND_LABELS}")

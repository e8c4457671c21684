# The README's two commands:
#   make demo   build and run the main job
#   make test   build and pass every test (also under ASan+UBSan)
# Both install what they need from Debian with apt-get when it is missing.

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMA_WERROR=ON

.PHONY: all demo test format-check test-python-install fuzz build build-asan build-tsan test-tsan deps-build deps-test clean install

all: build

deps-build:
	@sh scripts/deps.sh build

deps-test:
	@sh scripts/deps.sh test

build: deps-build
	cmake -S . -B build $(CMAKE_FLAGS) >/dev/null
	cmake --build build -j $(JOBS)

demo: build
	./build/ema demo --out build/demo

build-asan: deps-test
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEMA_WERROR=ON -DEMA_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)

# ThreadSanitizer: the threaded and asynchronous tests (worker pool,
# dynamic claiming, async updates), with their smaller matrices
# (EMA_TEST_QUICK); about two minutes on two cores.
TSAN_TESTS = test_async test_threads test_bank test_dist_async

build-tsan: deps-test
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMA_WERROR=ON -DEMA_TSAN=ON -DEMA_BUILD_TOOLS=OFF >/dev/null
	cmake --build build-tsan -j $(JOBS) --target $(TSAN_TESTS)

test-tsan: build-tsan
	EMA_TEST_QUICK=1 TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
	  ctest --test-dir build-tsan --output-on-failure -j $(JOBS) -R '^($(subst $(eval) ,|,$(TSAN_TESTS)))$$'

# The format check, ThreadSanitizer, the fuzz targets for FUZZ_SECONDS in all,
# the valgrind runs, every test under ASan+UBSan, the Python package installed
# into a fresh venv, then every test in the plain build (its summary is last).
FUZZ_SECONDS ?= 60

test: deps-test format-check build build-asan test-tsan
	@sh tests/fuzz/run_bounded.sh $(FUZZ_SECONDS) > build/fuzz.log 2>&1 \
	  || { tail -n 40 build/fuzz.log; echo "fuzzing failed: see build/fuzz.log"; exit 1; }
	@grep -E "^stat::number_of_executed_units|^Done" build/fuzz.log || tail -n 5 build/fuzz.log
	ctest --test-dir build --output-on-failure -j $(JOBS) -L valgrind
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS) -LE no-sanitize
	@sh tests/python/venv_install.sh > build/python-install.log 2>&1 \
	  || { tail -n 40 build/python-install.log; echo "the installed Python package failed: see build/python-install.log"; exit 1; }
	@grep -E "^installed:|passed|^wheel:" build/python-install.log
	ctest --test-dir build --output-on-failure -j $(JOBS) -LE valgrind

# The Python package installed with pip into a fresh venv from a clean copy of
# the checkout, its tests run against the installed copy, and a wheel built.
test-python-install: deps-test
	sh tests/python/venv_install.sh

# Every tracked C source as .clang-format says (`sh scripts/check_format.sh --fix` mends).
format-check: deps-test
	@sh scripts/check_format.sh

fuzz: deps-test
	sh tests/fuzz/run_bounded.sh $(FUZZ_SECONDS)

install: build
	cmake --install build

clean:
	rm -rf build build-asan build-tsan build-fuzz

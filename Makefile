# The README's two commands:
#   make demo   build and run the main job
#   make test   build and pass every test (also under ASan+UBSan)
# Both install what they need from Debian with apt-get when it is missing.

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMA_WERROR=ON

.PHONY: all demo test build build-asan deps-build deps-test clean install

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

test: deps-test build build-asan
	ctest --test-dir build --output-on-failure -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS) -LE no-sanitize
	ctest --test-dir build --output-on-failure -L valgrind

install: build
	cmake --install build

clean:
	rm -rf build build-asan

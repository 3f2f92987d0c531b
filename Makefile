# Thin wrapper over CMake. `make` builds build/dfa and libdfa; `make test` runs the CPU tests.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all test test-gpu test-asan fuzz-smoke clean

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

test: all
	cd $(BUILD) && ctest --output-on-failure -L cpu -j $(JOBS)

# On a machine with a GPU: the CUDA tests (ctest label gpu).
test-gpu: all
	cd $(BUILD) && ctest --output-on-failure -L gpu

# The CPU tests again under AddressSanitizer + UBSan (no CUDA, to keep the sanitizers honest).
test-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDFA_SANITIZE=ON -DDFA_CUDA=OFF
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -L cpu -j $(JOBS)

# A bounded libFuzzer run of each parser fuzz target (clang).
fuzz-smoke:
	sh tests/fuzz/run.sh 30

clean:
	rm -rf $(BUILD) build-asan build-fuzz

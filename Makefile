# The two commands a newcomer needs: `make run` and `make test`. See README.md.
JOBS      ?= $(shell nproc)
BUILD     ?= build
BUILD_CPU ?= build-cpu
SANITIZE  ?=
CONFIG    ?= config/default.yaml
export PATH := /usr/local/cuda/bin:$(PATH)

CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo
ifneq ($(SANITIZE),)
CMAKE_FLAGS += -DZEROINFER_SANITIZE=$(SANITIZE)
endif

.PHONY: deps build build-cpu test test-cpu run bundle install clean

deps:
	@tools/install_deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# CPU-only build (no CUDA), with ASan + UBSan: what a user without the toolkit gets, checked for memory errors.
build-cpu: deps
	@cmake -S . -B $(BUILD_CPU) -DCMAKE_BUILD_TYPE=Debug -DZEROINFER_CUDA=OFF -DZEROINFER_SANITIZE=address,undefined >/dev/null
	@cmake --build $(BUILD_CPU) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest -LE 'gpu|fuzz-live' --output-on-failure -j $(JOBS)

test-cpu: build-cpu
	@cd $(BUILD_CPU) && ctest -L 'unit|integration' -LE 'gpu|slow' --output-on-failure -j $(JOBS)

run: build
	@$(BUILD)/zeroinfer serve --config $(CONFIG)

clean:
	rm -rf $(BUILD) $(BUILD_CPU)

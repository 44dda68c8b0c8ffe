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

.PHONY: deps build build-cpu test test-cpu test-tsan run bundle install clean fuzz

deps:
	@tools/install_deps.sh

build: deps
	@JOBS=$(JOBS) docker/build.sh $(BUILD) $(CMAKE_FLAGS)

# CPU-only build (no CUDA), with ASan + UBSan: what a user without the toolkit gets, checked for memory errors.
build-cpu: deps
	@BUILD_TYPE=RelWithDebInfo JOBS=$(JOBS) docker/build.sh $(BUILD_CPU) -DZEROINFER_CUDA=OFF -DZEROINFER_SANITIZE=address,undefined

# Every CPU test, in the CPU-only build with ASan + UBSan: what a user without the toolkit gets, checked for memory
# errors. (The CUDA build is checked by `make build`; its gpu-labelled tests run on a GPU machine: tools/gpu/.)
test: build-cpu
	@tools/install_deps.sh --test
	@cd $(BUILD_CPU) && ctest -LE 'gpu|fuzz-live' --output-on-failure -j $(JOBS)

test-cpu: test

# ThreadSanitizer over the threaded parts: scheduler, continuous batching, worker pool and ZeRO-3 ranks (own build
# dir). Debian's gRPC and absl are not instrumented, so tests that start `serve` report races inside them; these run
# clean (docs/RELIABILITY.md).
TSAN_TESTS ?= scheduler_test batching_test multirank_test zero3_executor_test communicator_test \
              scheduler_kv_test host_decode_attention_test bench_workload_test scheduler_ranks_test \
              scheduler_logits_test multirank_placement_test
test-tsan: deps
	@cmake -S . -B build-tsan -DZEROINFER_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZEROINFER_SANITIZE=thread
	@cmake --build build-tsan -j $(JOBS) --target $(TSAN_TESTS)
	@set -e; for t in $(TSAN_TESTS); do echo "== $$t"; TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/$$t; done

# libFuzzer runs of tests/fuzz (needs clang; own build dir): every target for FUZZ_SECONDS, one after another.
# `make test` only replays the checked-in corpora (tests/fuzz/README.md).
FUZZ_SECONDS ?= 60
fuzz:
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DZEROINFER_CUDA=OFF \
	  -DZEROINFER_FUZZ=ON -DZEROINFER_SANITIZE=address,undefined -DZEROINFER_FUZZ_SECONDS=$(FUZZ_SECONDS)
	@cmake --build build-fuzz -j $(JOBS) --target zi_fuzzers
	@cd build-fuzz && ctest -L fuzz --output-on-failure

# `make build`'s binary (CUDA backend when the toolkit exists; it starts without a GPU driver and then serves on
# the CPU), so `build/zeroinfer client` works in another terminal.
run: build
	@exec $(BUILD)/zeroinfer serve --config $(CONFIG)

# A tarball of the binary and the non-system libraries it needs (run it through its `zeroinfer` wrapper).
bundle: build
	@rm -rf .bundle/zeroinfer && tools/bundle.sh $(BUILD)/zeroinfer .bundle/zeroinfer
	@tar -C .bundle -czf zeroinfer-bundle.tar.gz zeroinfer && echo "wrote zeroinfer-bundle.tar.gz"

PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
DATADIR    ?= $(PREFIX)/share/zeroinfer
# The example config serves the demo model, installed beside it under DATADIR (its relative path is rewritten).
install: build
	install -D -m 0755 $(BUILD)/zeroinfer $(DESTDIR)$(PREFIX)/bin/zeroinfer
	install -D -m 0644 deploy/systemd/zeroinfer.service $(DESTDIR)$(UNITDIR)/zeroinfer.service
	install -d $(DESTDIR)$(DATADIR)/models/kjv-llama
	install -m 0644 tools/demo_model/kjv-llama/*.json tools/demo_model/kjv-llama/*.safetensors \
	  $(DESTDIR)$(DATADIR)/models/kjv-llama/
	[ -e $(DESTDIR)$(SYSCONFDIR)/zeroinfer/config.yaml ] || { install -d $(DESTDIR)$(SYSCONFDIR)/zeroinfer && \
	  sed 's|path: ../../tools/demo_model/kjv-llama|path: $(DATADIR)/models/kjv-llama|' config/examples/cpu-demo.yaml \
	    > $(DESTDIR)$(SYSCONFDIR)/zeroinfer/config.yaml; }
	[ -e $(DESTDIR)$(SYSCONFDIR)/default/zeroinfer ] || \
	  install -D -m 0644 deploy/systemd/zeroinfer.env $(DESTDIR)$(SYSCONFDIR)/default/zeroinfer

clean:
	rm -rf $(BUILD) $(BUILD_CPU) .bundle zeroinfer-bundle.tar.gz

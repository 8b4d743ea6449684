# The front door. Everything real happens in CMake and CTest; this file
# only installs what a fresh Debian 12 machine lacks and picks the build
# directories.
#
#   make run    build, then run redis-server, signalrd and nginx on
#               http://127.0.0.1:$(PORT) in the foreground (Ctrl-C stops)
#   make test   build with sanitizers and run every test through CTest
#   make fuzz   the long fuzz campaigns (docs/fuzzing.md)
#   make package  deb (and rpm, where rpmbuild exists) packages in build/
#   make bench  the benchmark matrix against nchan, a Node.js ws server and
#               the floor; rewrites docs/performance.md (at most 15 minutes)

PORT      ?= 8080
REDIS_URL ?=
JOBS      ?= $(shell nproc)

BUILD_DIR      := build
TEST_BUILD_DIR := build-test

.PHONY: all deps build build-test run test fuzz package bench clean

all: build

deps:
	@packaging/dev/install-deps

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

build-test: deps
	@cmake -S . -B $(TEST_BUILD_DIR) -DCMAKE_BUILD_TYPE=Debug \
	    -DSIGNALR_WERROR=ON -DSIGNALR_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD_DIR) -j $(JOBS)

run: build
	@conf/dev/run-stack --build $(BUILD_DIR) --port $(PORT) \
	    $(if $(REDIS_URL),--redis-url $(REDIS_URL))

test: build-test
	@cd $(TEST_BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

fuzz: build-test
	@cd $(TEST_BUILD_DIR) && ctest -C FuzzLong -L fuzz-long --output-on-failure

package: build
	@cmake --build $(BUILD_DIR) --target package

# the benchmark's own packages (bench/packages.txt, the ws peer) are not
# needed by the tests, hence not in deps
bench: build
	@bench/install-deps
	@bench/run --no-build --build $(BUILD_DIR) --matrix \
	    --docs docs/performance.md

clean:
	rm -rf $(BUILD_DIR) $(TEST_BUILD_DIR)

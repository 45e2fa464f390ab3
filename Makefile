# SecureExec: `make demo` runs the dev-server example, `make test` the tests.
# Both install what they need first (Debian packages, as root). busybox-static
# is the .standard root's shell and tools; zlib1g-dev, node's headers and cc
# are for the native-addon tests, which compile an addon.

SWIFT ?= swift
PREFIX ?= /usr/local
DEBIAN_PACKAGES_NEEDED = $(shell \
	[ -f /usr/include/seccomp.h ] || echo libseccomp-dev; \
	[ -f /usr/include/sys/capability.h ] || echo libcap-dev; \
	[ -f /usr/include/libnftnl/table.h ] || echo libnftnl-dev; \
	[ -f /usr/include/libmnl/libmnl.h ] || echo libmnl-dev; \
	[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || echo busybox-static; \
	command -v node >/dev/null 2>&1 || echo nodejs; \
	[ -f /usr/include/zlib.h ] || echo zlib1g-dev; \
	[ -f /usr/include/node/node_api.h ] || echo libnode-dev; \
	command -v cc >/dev/null 2>&1 || echo gcc)

.PHONY: deps build demo probes test bench bench-smoke install clean

deps:
ifneq ($(strip $(DEBIAN_PACKAGES_NEEDED)),)
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES_NEEDED)
endif

build: deps
	$(SWIFT) build

demo: build
	.build/debug/dev-server-example

# The escape suite's native probe: static, so it runs in the sandbox's
# minimal root from a read-only mount.
probes:
	mkdir -p .build/probes
	cc -static -O2 -Wall -Wextra -Werror -o .build/probes/secure-exec-probe Tests/Probes/probe.c

# The leak tests count the whole process's fds and threads, so they run in a
# process of their own, after everything else.
# SECURE_EXEC_TEST_SECRET is a host variable the isolation tests look for in guests.
# The benchmarks get one smoke iteration each first, so they cannot rot.
test: deps probes bench-smoke
	$(SWIFT) build --build-tests
	SECURE_EXEC_TEST_SECRET=host-only $(SWIFT) test --skip SecureExecLeakTests
	$(SWIFT) test --filter SecureExecLeakTests

# One iteration of every benchmark workload (debug build, no file written).
bench-smoke: deps
	$(SWIFT) build --package-path Benchmarks --product secure-exec-init
	$(SWIFT) build --package-path Benchmarks
	Benchmarks/.build/debug/secure-exec-compare --smoke
	SECURE_EXEC_BENCH_SMOKE=1 Benchmarks/.build/debug/SecureExecBenchmarks

# The CLI finds init in ../libexec/secure-exec and the skeleton in ../share/secure-exec.
install: deps
	$(SWIFT) build -c release --product secure-exec
	$(SWIFT) build -c release --product secure-exec-init
	install -d $(PREFIX)/bin $(PREFIX)/libexec/secure-exec $(PREFIX)/share/secure-exec
	install -m 0755 .build/release/secure-exec $(PREFIX)/bin/secure-exec
	install -m 0755 .build/release/secure-exec-init $(PREFIX)/libexec/secure-exec/secure-exec-init
	rm -rf $(PREFIX)/share/secure-exec/rootfs
	cp -R rootfs/skeleton $(PREFIX)/share/secure-exec/rootfs

# What only the benchmarks need: bubblewrap (the comparison's sandbox) and wrk (load).
BENCH_DEBIAN_PACKAGES_NEEDED = $(shell \
	command -v bwrap >/dev/null 2>&1 || echo bubblewrap; \
	command -v wrk >/dev/null 2>&1 || echo wrk)

.PHONY: bench-deps
bench-deps: deps
ifneq ($(strip $(BENCH_DEBIAN_PACKAGES_NEEDED)),)
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_DEBIAN_PACKAGES_NEEDED)
endif

# The benchmarks are a package of their own (Benchmarks/), built for release
# into Benchmarks/.build with init beside them. First bare node vs bwrap vs
# SecureExec side by side (writes BENCHMARKS.md), then package-benchmark's
# suite. Every run is bounded; the whole takes a few minutes once built.
bench: bench-deps
	$(SWIFT) build -c release --package-path Benchmarks
	$(SWIFT) build -c release --package-path Benchmarks --product secure-exec-init
	timeout 900 Benchmarks/.build/release/secure-exec-compare
	timeout 600 $(SWIFT) package --package-path Benchmarks benchmark --no-progress

clean:
	rm -rf .build

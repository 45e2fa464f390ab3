# SecureExec: `make demo` runs the dev-server example, `make test` the tests.
# Both install what they need first (Debian packages, as root).

SWIFT ?= swift
PREFIX ?= /usr/local
DEBIAN_PACKAGES_NEEDED = $(shell \
	[ -f /usr/include/seccomp.h ] || echo libseccomp-dev; \
	[ -f /usr/include/sys/capability.h ] || echo libcap-dev; \
	command -v node >/dev/null 2>&1 || echo nodejs)

.PHONY: deps build demo probes test bench install clean

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
test: deps probes
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip SecureExecLeakTests
	$(SWIFT) test --filter SecureExecLeakTests

# The CLI finds init in ../libexec/secure-exec and the skeleton in ../share/secure-exec.
install: deps
	$(SWIFT) build -c release --product secure-exec
	$(SWIFT) build -c release --product secure-exec-init
	install -d $(PREFIX)/bin $(PREFIX)/libexec/secure-exec $(PREFIX)/share/secure-exec
	install -m 0755 .build/release/secure-exec $(PREFIX)/bin/secure-exec
	install -m 0755 .build/release/secure-exec-init $(PREFIX)/libexec/secure-exec/secure-exec-init
	rm -rf $(PREFIX)/share/secure-exec/rootfs
	cp -R rootfs/skeleton $(PREFIX)/share/secure-exec/rootfs

clean:
	rm -rf .build

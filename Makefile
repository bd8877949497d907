# irqagent: install from this checkout, or build the Debian package.
#   make install     = ./install.sh (venv in /opt/irqagent; README "Install and run")
#   make uninstall   = ./install.sh --uninstall
#   make deb         dist/irqagent_VERSION_all.deb, built by dpkg-buildpackage (BUILD=, DIST= move
#                    the build tree and the result)
#                    (build deps: apt-get install debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools)
#   make clean

VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' irqagent/__init__.py)
BUILD := build/deb
DIST := dist

.PHONY: install uninstall deb clean

install:
	./install.sh

uninstall:
	./install.sh --uninstall

# The build runs on a copy of the checkout (dpkg-buildpackage writes next to the source tree),
# with Debian's own python3 (not one earlier in PATH, e.g. pyenv).
deb:
	@dpkg-checkbuilddeps || { echo "make deb: install the build dependencies above (apt-get install ...)" >&2; exit 2; }
	rm -rf $(BUILD) && mkdir -p $(BUILD)/irqagent-$(VERSION) $(DIST)
	tar --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.egg-info' \
	    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -C $(BUILD)/irqagent-$(VERSION) -xf -
	cd $(BUILD)/irqagent-$(VERSION) && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage --build=binary --no-sign > ../build.log 2>&1 \
	    || { tail -30 ../build.log; exit 1; }
	cp $(BUILD)/irqagent_$(VERSION)_all.deb $(DIST)/
	@echo "make deb: $(DIST)/irqagent_$(VERSION)_all.deb (log: $(BUILD)/build.log)"

clean:
	rm -rf build dist *.egg-info

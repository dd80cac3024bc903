VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.yfcore-installed
CSRC := $(wildcard csrc/*.c csrc/*.h csrc/*.S csrc/*.inc csrc/lab/*.c csrc/lab/*.h csrc/lab/*.S csrc/hook/*.c csrc/hook/*.h)

.PHONY: report test build reference clean

$(STAMP): pyproject.toml setup.py yfcore/_sources.py yfcore/_build.py yfcore/_hookbuild.py $(CSRC)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -U pip setuptools wheel cffi
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@

report: $(STAMP)
	$(VENV)/bin/yfcore report $(ARGS)

test: export YF_QUICK = 1
test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Recompiles the extension in place without reinstalling; needs the venv.
build: | $(STAMP)
	$(VENV)/bin/python setup.py build_ext --inplace

reference: $(STAMP)
	$(VENV)/bin/yfcore report --reference

clean:
	rm -rf build dist *.egg-info yfcore/*.egg-info
	rm -f yfcore/_yfcore*.so yfcore/_yfcore.c yfcore/_yfcore.o

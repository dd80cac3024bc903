VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.yfcore-installed
CSRC := $(wildcard csrc/*.c csrc/*.h csrc/*.S csrc/*.inc csrc/lab/*.c csrc/lab/*.h csrc/lab/*.S csrc/hook/*.c csrc/hook/*.h csrc/py/*.c)

.PHONY: report test sanitize fuzz build reference clean

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

# The C tests under ASan+UBSan, TSan and valgrind memcheck, the runtime's
# Python tests against an ASan build of the module (in build/sanitize/, the
# in-place module untouched), then a short fuzz run (tests/sanitize.py;
# needs valgrind and clang from Debian; installs atheris from PyPI in the venv).
SANITIZE_STAMP := $(VENV)/.yfcore-sanitize
$(SANITIZE_STAMP): $(STAMP)
	$(VENV)/bin/pip install -e '.[dev,sanitize]'
	touch $@

sanitize: export YF_QUICK = 1
sanitize: $(SANITIZE_STAMP)
	$(VENV)/bin/python tests/sanitize.py $(ARGS)

# A longer fuzz run at low priority: make fuzz FUZZ_SECONDS=900
FUZZ_SECONDS ?= 600
fuzz: $(SANITIZE_STAMP)
	nice -n 19 $(VENV)/bin/python tests/sanitize.py --only fuzz --fuzz-seconds $(FUZZ_SECONDS)

# Recompiles the extension in place without reinstalling; needs the venv.
build: | $(STAMP)
	$(VENV)/bin/python setup.py build_ext --inplace

reference: $(STAMP)
	$(VENV)/bin/yfcore report --reference

clean:
	rm -rf build dist *.egg-info yfcore/*.egg-info
	rm -f yfcore/_yfcore*.so yfcore/_yfcore.c yfcore/_yfcore.o

# The two set-up commands of the README:
#   make main   installs everything and runs the main job on Fashion-MNIST
#   make test   installs everything (with the test extra) and runs lint + the test suite
.PHONY: main test lint bench clean notebooks

PY := .venv/bin/python
MAIN_OUT ?= runs/main
# The main job's target: mcu (a robust model inside a microcontroller's budget, docs/mcu.md) or
# default (the larger phone-sized int8 model of docs/pipeline.md).
TARGET ?= mcu

main:
	scripts/bootstrap.sh
	TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/tfrobust pipeline --target=$(TARGET) --out=$(MAIN_OUT) --resume $(PIPELINE_ARGS)

test:
	scripts/bootstrap.sh test
	$(PY) -m ruff check tfrobust tests benchmarks
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -n 2 --dist=loadfile $(PYTEST_ARGS)

# Re-execute colab/*.ipynb at their CI size and save them with their outputs and figures.
notebooks:
	scripts/bootstrap.sh test
	nice -n 10 $(PY) scripts/run_notebooks.py

clean:
	rm -rf .venv runs .pytest_cache

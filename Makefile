# streamvid: every entry point runs through the repository's own virtual environment (.venv).
# Targets that need the environment install it first when it is missing or older than the package files.

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
STAMP       := $(VENV)/.streamvid-installed
PACKAGES    := $(patsubst %/pyproject.toml,%,$(wildcard packages/*/pyproject.toml))
LOCK        := requirements-lock.txt
PKG_FILES   := pyproject.toml $(addsuffix /pyproject.toml,$(PACKAGES)) Makefile $(LOCK)
TORCH_SPEC  := torch==2.13.0
DS_SPEC     := deepspeed==0.19.8
export DS_ACCELERATOR ?= cpu
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# `make generate` streams the shipped trained student; CONFIG=configs/generate/tiny_random.yaml is the random-weight
# smoke run. `make eval` evaluates the shipped Stream-R1 student (EVAL_CONFIG=configs/eval/tiny_random_smoke.yaml: smoke).
CONFIG ?= configs/generate/shapes_student.yaml
PROMPT ?= a red circle moving left
OUT    ?= outputs/generate/out.mp4
EVAL_CONFIG ?= configs/eval/shapes_student.yaml

.DEFAULT_GOAL := help
.PHONY: help install lock test test-fast lint generate eval shapes-reward shapes-reward-data bench gpu-check clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} \
		{name[NR] = $$1; text[NR] = $$2; if (length($$1) > width) width = length($$1)} \
		END {for (i = 1; i <= NR; i++) printf "  %-" width "s  %s\n", name[i], text[i]}'

# Every third-party package is installed at the version $(LOCK) pins (made by pip-tools: `make lock`); the
# packages under packages/ are installed editable on top, constrained by the same pins, and `pip check` closes.
$(STAMP): $(PKG_FILES)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "$$(grep -m1 '^pip==' $(LOCK))" "$$(grep -m1 '^setuptools==' $(LOCK))" "$$(grep -m1 '^wheel==' $(LOCK))"
	# torch first, pinned: the pinned CPU build lies on local disk; anything looser pulls a CUDA build.
	$(PIP) install --quiet $(TORCH_SPEC)
	# DeepSpeed (in the lock) builds from source against the installed torch: no build isolation, no compiled ops.
	DS_BUILD_OPS=0 $(PIP) install --quiet --no-build-isolation -r $(LOCK)
	$(PIP) install --quiet -c $(LOCK) $(addprefix -e ,$(PACKAGES)) --group dev
	$(PIP) check
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the lock's pins (torch CPU build, DeepSpeed, dev tools) and packages/* editable

# The lock's input is made from the declarations themselves: each packages/*/pyproject.toml (editable, so their
# dependencies are resolved together), the dev group of pyproject.toml, torch and DeepSpeed. Pins already in
# $(LOCK) are kept; `make lock LOCK_ARGS=--upgrade` moves every package to its newest allowed version.
LOCK_IN := requirements-lock.in
lock: $(STAMP) ## regenerate requirements-lock.txt (pip-compile) after changing a dependency or adding a package under packages/
	$(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["dependency-groups"]["dev"], sep="\n")' > $(LOCK_IN)
	printf '%s\n' $(foreach p,$(PACKAGES),"-e ./$(p)") $(TORCH_SPEC) $(DS_SPEC) >> $(LOCK_IN)
	if [ -f $(LOCK) ]; then cp $(LOCK) $(LOCK).new; fi
	DS_BUILD_OPS=0 CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --no-build-isolation $(LOCK_ARGS) -o $(LOCK).new $(LOCK_IN)
	# the editable packages are installed from packages/ (their absolute paths would tie the lock to one checkout);
	# torch is pinned without its build label (+cpu): a CUDA build of the same version already in .venv stays
	awk '/^-e /{skip = 1; next} skip && /^ +#/{next} /^torch==/{sub(/\+[^ ]*/, "")} {skip = 0; print}' $(LOCK).new > $(LOCK)
	rm $(LOCK).new $(LOCK_IN)

# pytest-xdist workers (one test file per worker: module fixtures are built once); 0 runs in this process.
# Most tests are single-threaded subprocesses, so 2 workers on 2 cores take 9 min where one takes 16.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP) ## run the whole test suite except `gpu` tests [TEST_WORKERS=2]
	$(PYTEST)

test-fast: $(STAMP) ## run the suite without the slow end-to-end tests [TEST_WORKERS=2]
	$(PYTEST) -m "not gpu and not slow"

lint: $(STAMP) ## ruff over packages, tests and bench
	$(VENV)/bin/ruff check packages tests bench

generate: $(STAMP) ## stream one video with the shipped student: make generate [CONFIG=... PROMPT="..." OUT=...]
	$(VENV)/bin/streamvid-generate --config $(CONFIG) --prompt "$(PROMPT)" --out $(OUT)

shapes-reward: $(STAMP) ## train the learned shapes reward (after make shapes-reward-data; ~16 min on one core) into its shipped checkpoint folder
	OMP_NUM_THREADS=1 $(VENV)/bin/streamvid-train shapes-reward --config configs/train/shapes_reward.yaml

# Generated videos labelled by the oracle, for the reward trained on what generators make (shapes_reward.yaml):
# the teacher at CFG 1-3 / 4-8 Euler steps, the ODE-init student, the shipped DMD student and step 500 of the long
# DMD run (experiments/shapes_student/dmd_long.yaml) on train prompts; the shipped Stream-R1 student on held-out ones.
GEN := OMP_NUM_THREADS=1 $(PY) -m streamvid.distill.shapes_generated
shapes-reward-data: $(STAMP) ## make the generated-video sets of the reward retrained on generated videos (outputs/reward_data)
	$(GEN) --split heldout --prompts 32 --seeds 8 --generators student:assets/shapes/stream_r1_student --out outputs/reward_data/heldout_r1.safetensors
	$(GEN) --split train --prompts 64 --seeds 6 --generators student:assets/shapes/student teacher:cfg1:s4 teacher:cfg2:s4 teacher:cfg3:s8 teacher:cfg1:s8 --out outputs/reward_data/train_a.safetensors
	$(GEN) --split train --prompts 64 --seeds 6 --first-prompt 96 --generators student:assets/shapes/dmd_student student:outputs/experiments/shapes/dmd_long/snapshots/step_000500 --out outputs/reward_data/train_c.safetensors

eval: $(STAMP) ## evaluate the shipped Stream-R1 student on a small shapes-world suite (outputs/eval/shapes_student; resumable)
	$(VENV)/bin/streamvid-eval --config $(EVAL_CONFIG)

bench: $(STAMP) ## run the benchmarks in bench/ (JSON under outputs/bench/)
	$(PY) bench/streaming.py --out outputs/bench/streaming.json
	$(PY) bench/eval_throughput.py --out outputs/bench/eval_throughput.json
	$(PY) bench/shapes_rewards.py --out outputs/bench/shapes_rewards.json
	$(PY) bench/tts.py --out outputs/bench/tts.json

# One command for a GPU (bench/gpu_check.py): CUDA at Wan2.1-1.3B sizes; ARGS=--tiny runs the same code on the CPU.
ARGS ?=
GPU_CHECK_OUT := outputs/bench/gpu_check$(if $(findstring --tiny,$(ARGS)),_tiny,).json
gpu-check: $(STAMP) ## streaming fps/latency, KV memory, DMD steps, T1 batching on one GPU (ARGS=--tiny: CPU, tiny sizes)
	DS_ACCELERATOR=$(if $(findstring --tiny,$(ARGS)),cpu,cuda) $(PY) bench/gpu_check.py --out $(GPU_CHECK_OUT) $(ARGS)

clean: ## remove outputs and caches (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache

# Shapes-world teacher and ODE-init student (streamvid-train; configs/train/). Both resume from their last
# checkpoint when interrupted; the exported models are diffusers directories shipped under assets/shapes/.
.PHONY: shapes-teacher shapes-student shapes-student-ode
SHAPES_ASSETS := assets/shapes

shapes-teacher: $(STAMP) ## train the shapes-world conv flow teacher (1850 steps, ~15 min on an idle core) into assets/shapes/teacher
	OMP_NUM_THREADS=1 $(VENV)/bin/streamvid-train teacher --config configs/train/shapes_teacher.yaml \
		--set output_dir=$(SHAPES_ASSETS)/teacher --set run_dir=outputs/train/shapes_teacher

shapes-student: $(STAMP) ## the causal Wan student by flow distillation from assets/shapes/teacher (4000 steps, ~80 min) into assets/shapes/student
	OMP_NUM_THREADS=1 $(VENV)/bin/streamvid-train student --config configs/train/shapes_student.yaml \
		--set teacher=$(SHAPES_ASSETS)/teacher --set output_dir=$(SHAPES_ASSETS)/student \
		--set run_dir=outputs/train/shapes_student

shapes-student-ode: $(STAMP) ## ODE pairs from assets/shapes/teacher, then the ODE-init student (outputs/train/shapes_student_ode)
	OMP_NUM_THREADS=1 $(VENV)/bin/streamvid-train ode-pairs --config configs/train/shapes_ode_pairs.yaml \
		--set teacher=$(SHAPES_ASSETS)/teacher --set output_dir=outputs/train/shapes_ode_pairs
	OMP_NUM_THREADS=1 $(VENV)/bin/streamvid-train student --config configs/train/shapes_student.yaml \
		--set objective=ode --set pairs=outputs/train/shapes_ode_pairs --set output_dir=outputs/train/shapes_student_ode \
		--set run_dir=outputs/train/shapes_student_ode/run

# DMD / Stream-R1 (streamvid-train r1): the shapes world by default, or any experiment row.
#   make train-r1                                        configs/train/shapes_r1.yaml
#   make train-r1 CONFIG=experiments/shapes/dmd.yaml     a row of experiments/ (paper rows need local weights)
.PHONY: train-r1
R1_CONFIG := $(if $(filter command line environment,$(origin CONFIG)),$(CONFIG),configs/train/shapes_r1.yaml)

train-r1: $(STAMP) ## Stream-R1 of the shapes student with the learned reward (make train-r1 [CONFIG=experiments/...])
	OMP_NUM_THREADS=1 $(VENV)/bin/streamvid-train r1 --config $(R1_CONFIG)

# Stream-T1 (streamvid-infer-t1): chunk-level search with the shipped Stream-R1 shapes student.
.PHONY: infer-t1
T1_CONFIG := $(if $(filter command line environment,$(origin CONFIG)),$(CONFIG),configs/infer/shapes_t1.yaml)
T1_PROMPT := $(if $(filter command line environment,$(origin PROMPT)),$(PROMPT),a red circle moving left, then up)
T1_OUT    := $(if $(filter command line environment,$(origin OUT)),$(OUT),outputs/infer_t1/red_left_up.mp4)

infer-t1: $(STAMP) ## Stream-T1 search with the shipped Stream-R1 shapes student (make infer-t1 [PROMPT=... OUT=... CONFIG=...])
	OMP_NUM_THREADS=1 $(VENV)/bin/streamvid-infer-t1 --config $(T1_CONFIG) --prompt "$(T1_PROMPT)" --out $(T1_OUT)

# The live studio (streamvid-studio, docs/studio.md): the shipped shapes student in the browser.
.PHONY: studio
STUDIO_CONFIG := $(if $(filter command line environment,$(origin CONFIG)),$(CONFIG),configs/studio/shapes.yaml)
STUDIO_HOST := $(if $(filter command line,$(origin HOST)),$(HOST),127.0.0.1)
STUDIO_PORT := $(if $(filter command line,$(origin PORT)),$(PORT),8765)

studio: $(STAMP) ## serve the live studio page for the shipped student (make studio [HOST=... PORT=... CONFIG=...]); open the printed address
	OMP_NUM_THREADS=1 $(VENV)/bin/streamvid-studio --config $(STUDIO_CONFIG) --host $(STUDIO_HOST) --port $(STUDIO_PORT)

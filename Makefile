# Sparrow's two everyday commands, plus the OpenBLAS build.
GO ?= go

.PHONY: run test build build-openblas bench

# OpenBLAS is used when Debian's libopenblas-dev is installed (about 5× faster training steps here); without
# it the pure-Go gonum BLAS runs the same code.
OPENBLAS := $(shell ldconfig -p 2>/dev/null | grep -q 'libopenblas.so ' && echo yes)
ifeq ($(OPENBLAS),yes)
RUNFLAGS := -tags openblas
RUNENV := CGO_LDFLAGS=-lopenblas
endif

# The main job: the math recipe on embedded defaults (local run directory under runs/).
run:
	$(RUNENV) $(GO) run $(RUNFLAGS) ./cmd/trainer run configs/math.yaml

# The whole test suite (finishes within 10 minutes on 2 cores).
test:
	$(GO) test ./...

build:
	$(GO) build -o bin/trainer ./cmd/trainer

# OpenBLAS kernels: needs Debian's libopenblas-dev.
build-openblas:
	CGO_LDFLAGS=-lopenblas $(GO) build -tags openblas -o bin/trainer-openblas ./cmd/trainer

bench: build
	./bin/trainer bench train-step

# Convenience targets; each is a plain command you can also type.
IMAGE ?= tierlimit:dev
# The Compose plugin if the machine has it, else the standalone docker-compose.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: build test image up down chaos chaos-compose bench bench-go

# loadgen and the other benchmark tools are a module of their own (bench/go.mod),
# so the library's go.mod needs none of their dependencies; they build from bench/.
build:
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/node ./cmd/node
	cd bench && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o ../bin/loadgen ./loadgen

test:
	go test -race ./...
	cd bench && go test -race ./...

# The image is FROM scratch and copies bin/node, so build the binary first.
image: build
	docker build -t $(IMAGE) .

up: image
	$(COMPOSE) up -d --scale node=3

down:
	$(COMPOSE) down -v

# Chaos runs (README "Chaos runs"): plain processes, as CI runs them, and the
# compose cluster (needs a Docker engine). Each builds what it needs.
chaos:
	chaos/processes.sh

chaos-compose:
	chaos/compose.sh

# The cluster against a central Redis and no limiter (README "Benchmark"),
# and the Go benchmarks behind the README's Performance table.
bench:
	bench/run.sh

bench-go:
	go test -run '^$$' -bench . -benchmem ./bucket/ ./api/ ./health/ ./ownership/ ./ring/ ./forward/ ./peer/

# The pictures in docs/img from real runs (bench/plot/plots.sh; `bench/plot/plots.sh draw` only redraws).
plots: ; bench/plot/plots.sh

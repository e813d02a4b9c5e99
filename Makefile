# Convenience targets; each is a plain command you can also type.
IMAGE ?= tierlimit:dev

.PHONY: build test image up down chaos bench

build:
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/node ./cmd/node
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/loadgen ./cmd/loadgen

test:
	go test -race ./...

# The image is FROM scratch and copies bin/node, so build the binary first.
image: build
	docker build -t $(IMAGE) .

up: image
	docker-compose up -d --scale node=3

down:
	docker-compose down -v

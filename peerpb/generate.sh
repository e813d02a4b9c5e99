#!/bin/sh
# generate.sh regenerates peer.pb.go and peer_grpc.pb.go from peer.proto.
# Run it from anywhere; the generated files are committed, so builds and CI
# never need protoc.
#
# Tools (the versions the committed files were made with):
#   protoc              libprotoc 3.21.12   apt-get install -y protobuf-compiler (Debian 12)
#   protoc-gen-go       v1.36.12            go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   protoc-gen-go-grpc  v1.6.2              go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
set -eu
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH"
protoc --proto_path=. \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	peer.proto

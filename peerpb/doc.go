// Package peerpb holds the gRPC protocol that tierlimit nodes speak to each
// other: a non-owner sends a batch of checks to the node that owns the keys
// (service Peer) and gets one result per check, in order: as one message
// each way on a stream it keeps open (method CheckStream), or as a unary
// call (method Check).
//
// The Go code is generated from peer.proto by generate.sh and committed;
// package peer implements the server and the client. The package, and its
// directory, are named peerpb, not proto, so that it never clashes with
// google.golang.org/protobuf/proto.
package peerpb

//go:generate ./generate.sh

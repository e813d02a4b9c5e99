// Package peerpb holds the gRPC protocol that tierlimit nodes speak to each
// other: a non-owner sends a batch of checks to the node that owns the keys
// (service Peer, method Check) and gets one result per check, in order.
//
// The Go code is generated from peer.proto by generate.sh and committed;
// package ownership implements the server and the client. The package is
// named peerpb, not proto, so that it never clashes with
// google.golang.org/protobuf/proto; import it as
//
//	peerpb "github.com/tierlimit/tierlimit/proto"
package peerpb

//go:generate ./generate.sh

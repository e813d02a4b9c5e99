// Package peer is the wire between nodes: how a check for a key travels to
// the key's owner and back over gRPC. It satisfies package forward's Peer
// and PeerSource interfaces, so package ownership decides where a check
// goes and this package only carries it.
//
// A Client is one peer's connection, with one long-lived CheckStream on it
// that carries every batch as one message each way, matched to its answer
// by id. A Book holds the Client of every peer by member name, at the
// address membership reports. An Endpoint is a node's own peer port: a
// Server over its store of owned counts, on a gRPC server that asks the
// peers to end their streams when it stops. Credentials secures both ends
// with mutual TLS derived from the cluster key.
//
// The wire is a trust boundary: a Server checks every item it is sent (the
// key by config.CheckKey, hits, limit, and that the window is its own)
// before it counts anything.
package peer

// Package tierlimit is a distributed, tier-based, load-aware rate limiter
// for paid APIs, as net/http middleware that every API instance embeds.
// There is no central store: the instances find each other by gossip, each
// API key's count lives on one owner instance, and a cluster-wide
// NORMAL/DEGRADED switch picks each tier's limit on every instance.
//
// Each API key belongs to a tier, and each tier has a limit per window for
// each state of the system:
//
//	NORMAL    Burst     (use the GPUs fully)
//	DEGRADED  Degraded  (shed load: free tiers get little, paid tiers keep their SLA, Limit)
//
// New builds a Limiter from one Config and starts everything it needs;
// Close stops it. In between:
//
//	mux.Handle("/v1/transcribe", lim.Middleware(transcribe)) // 401 / 429 / your handler
//	mux.Handle("/system/", lim.AdminHandler())               // health switch and members, bearer token
//	mux.Handle("/readyz", lim.ReadyHandler())
//	lim.Reload()                                              // on SIGHUP: keys and tiers, counts kept
//
// # One node or a cluster
//
// Without Config.GossipAddr a Limiter counts every key in memory, about a
// microsecond per request. With it, the Limiter joins a hashicorp/memberlist
// cluster of its peers (Config.Join lists seeds): a consistent-hash ring
// gives each key one owner; a request for a key this instance owns is
// counted here, and one for another key is sent to its owner over gRPC,
// batched with others, under a short deadline (Config.ForwardTimeout).
// When the owner cannot answer in time, the request is decided here
// against this instance's share of the limit, so a request never waits
// long and a partition still serves. The health state, set on any instance
// (POST /system/health or SetHealth), reaches every other by gossip.
//
// # The switch, by hand or by load
//
// A person or an alert sets the state (POST /system/health, SetHealth),
// which pins it. With a load signal (Config.Capacity: the requests in
// flight over the jobs the instance's GPUs run at once; Config.LoadSignal:
// your own, such as a GPU queue's depth over its limit) the cluster also
// switches by itself: each instance gossips its signal and the demand that
// DEGRADED refuses, and the cluster goes DEGRADED when the mean stays at or
// above Config.AutoHigh for Config.AutoUpHold, and back when it stays at
// or below Config.AutoLow for Config.AutoDownHold, one write by one
// member. ResumeAuto hands a pinned state back.
//
// With Config.QueueWait as well as Config.Capacity, the Middleware runs at
// most Capacity requests at once and holds the others, the paid tiers
// first; when the cluster goes DEGRADED, the free requests still waiting
// get a 503, so work admitted before the switch does not run ahead of the
// paid tiers'.
//
// Several Limiters can live in one process: there is no package-level
// state, and each logs to its Config.Logger and registers its metrics on
// its Config.Registerer.
package tierlimit

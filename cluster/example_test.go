package cluster_test

import (
	"fmt"
	"time"

	"github.com/tierlimit/tierlimit/cluster"
	"github.com/tierlimit/tierlimit/health"
)

func Example() {
	h := health.NewHolder("node-a")
	node, err := cluster.New(cluster.Config{
		Name:       "node-a",
		BindAddr:   "127.0.0.1",
		BindPort:   0, // pick a free port; GossipAddr tells which
		GRPCAddr:   "127.0.0.1:9090",
		ConfigHash: "tiers-v1",
		SecretKey:  "shared cluster secret",
		Health:     h,
		// Join: []string{"seed.example:7946"},
		OnMembers: func(ms []cluster.Member) { /* update the ownership ring */ },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	defer node.Leave(time.Second)

	h.Set(health.Degraded, time.Now()) // gossiped to every peer
	for _, m := range node.Alive() {
		fmt.Println(m.Name, m.State, m.GRPCAddr, m.Self)
	}
	fmt.Println("joined:", node.Joined())
	// Output:
	// node-a alive 127.0.0.1:9090 true
	// joined: true
}

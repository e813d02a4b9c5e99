package config_test

import (
	"fmt"

	"github.com/tierlimit/tierlimit/config"
)

func Example() {
	tiers, err := config.Parse([]byte(`{
		"window_seconds": 60,
		"tiers": {
			"free": {"limit": 10, "burst": 20, "degraded": 2},
			"pro":  {"limit": 100, "burst": 150}
		},
		"api_keys": {"free-demo-1": "free", "pro-demo-1": "pro"}
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tiers.Window, tiers.Names(), tiers.KeyCount())

	for _, key := range []string{"free-demo-1", "pro-demo-1", "stolen-key"} {
		tier, ok := tiers.Lookup(key)
		if !ok {
			fmt.Printf("%s: unknown key\n", key)
			continue
		}
		fmt.Printf("%s: tier %s, NORMAL %d, DEGRADED %d\n",
			key, tier.Name, tier.LimitFor(false), tier.LimitFor(true))
	}

	_, err = config.Parse([]byte(`{"window_seconds": 60, "tiers": {"free": {"limit": 10, "burst": 5}}}`))
	fmt.Println(err)
	// Output:
	// 1m0s [free pro] 2
	// free-demo-1: tier free, NORMAL 20, DEGRADED 2
	// pro-demo-1: tier pro, NORMAL 150, DEGRADED 100
	// stolen-key: unknown key
	// tiers.free.burst: 5 is less than limit 10
}

package bucket_test

import (
	"fmt"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
)

func Example() {
	s := bucket.New(bucket.Config{Window: time.Minute})
	now := time.Unix(1_700_000_000, 0)

	// A free key in NORMAL: burst 20. It uses 15.
	d := s.Take(now, "free-key", 15, 20)
	fmt.Println(d.Allowed, d.Remaining)

	// The system turns DEGRADED: the same key is now held to 2.
	d = s.Take(now.Add(time.Second), "free-key", 1, 2)
	fmt.Println(d.Allowed, d.Remaining)

	// NORMAL again within the window: the last 5 are still there.
	d = s.Take(now.Add(2*time.Second), "free-key", 5, 20)
	fmt.Println(d.Allowed, d.Remaining)
	// Output:
	// true 5
	// false 0
	// true 0
}

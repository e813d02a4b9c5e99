package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/internal/loadrun"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

// postStatus sets status on target and records the request, offsets from start.
func postStatus(ctx context.Context, a loadrun.Admin, target, status string, start time.Time) timeline.Post {
	p := timeline.Post{Target: target, Sent: timeline.Offset(time.Since(start))}
	h, err := a.SetStatus(ctx, target, status)
	p.Answered = timeline.Offset(time.Since(start))
	if err != nil {
		p.Error = err.Error()
		var se *loadrun.StatusError
		if errors.As(err, &se) {
			p.HTTPStatus = se.Code
		}
		return p
	}
	p.HTTPStatus = http.StatusOK
	p.Node = h.Node
	p.Version = fmt.Sprint(h.Version)
	return p
}

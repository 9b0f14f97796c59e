package aws

import (
	"context"
	"fmt"
	"time"
)

// createVerified creates one logical resource with a deterministic ClientToken and returns
// its id once Describe sees it alive.
//
// Two things make a fresh id look dead. EC2 is eventually consistent: right after a create,
// Describe may answer NotFound for a while, so the id is polled with backoff for up to
// ConsistencyWait before anything else is believed. And EC2 replays a token's first answer
// even after that resource was deleted (remove or cleanup, then provision): when the id stays
// dead, the resource is looked up by its tags (find) and, if there is none, created again with
// a salted token.
func (e *env) createVerified(ctx context.Context, what string, create func(token string) (string, error),
	exists func(id string) (bool, error), find func(ctx context.Context) (string, error), parts ...string) (string, error) {
	for attempt := range 3 {
		id, err := create(e.clientToken(attempt, parts...))
		if err != nil {
			return "", err
		}
		ok, err := e.waitVisible(ctx, id, exists)
		if err != nil {
			return "", fmt.Errorf("look up new %s %s: %w", what, id, err)
		}
		if ok {
			return id, nil
		}
		if find != nil {
			found, err := find(ctx)
			if err != nil {
				return "", fmt.Errorf("look up %s by tag: %w", what, err)
			}
			if found != "" {
				return found, nil
			}
		}
		e.log.Info("client token replayed a deleted resource, retrying with a fresh token", "what", what, "id", id)
	}
	return "", fmt.Errorf("create %s: every client token replayed a deleted resource", what)
}

// waitVisible polls exists with doubling waits until it says yes or ConsistencyWait passes.
func (e *env) waitVisible(ctx context.Context, id string, exists func(id string) (bool, error)) (bool, error) {
	deadline := time.Now().Add(e.cfg.ConsistencyWait)
	wait := max(e.cfg.ConsistencyWait/32, time.Millisecond)
	for {
		ok, err := exists(id)
		if err != nil || ok {
			return ok, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		wait = min(wait, left)
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

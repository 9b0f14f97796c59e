package grpclab

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor for UseCompressor
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Drive makes calls calls to lab.Orders at addr over conns connections, concurrently
// (workers calls in flight per connection): a mix of unary calls (some answered
// NOT_FOUND, every fifth compressed with gzip), server-streaming and client-streaming
// calls. It returns the first error.
func Drive(ctx context.Context, addr string, conns, workers, calls int, seed uint64) error {
	var wg sync.WaitGroup
	errs := make(chan error, conns*workers)
	per := calls / (conns * workers)
	for c := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("grpc client: %w", err)
		}
		defer cc.Close()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(c*1000+w)))
				for i := range per {
					if err := call(ctx, cc, r, fmt.Sprintf("%d-%d-%d", c, w, i)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// DriveJoin makes early calls on one long-lived connection, creates the file ready, waits
// for the file start to appear (the capture has started: it joins the connection
// mid-way), then makes late calls on the same connection. Late calls are unary or client
// streaming and carry "late-" in their request messages, so ground truth can tell them.
func DriveJoin(ctx context.Context, addr string, early, late int, ready, start string, seed uint64) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("grpc client: %w", err)
	}
	defer cc.Close()
	r := rand.New(rand.NewPCG(seed, 99))
	for i := range early {
		if err := call(ctx, cc, r, fmt.Sprintf("early-%d", i)); err != nil {
			return err
		}
	}
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		return err
	}
	for {
		if _, err := os.Stat(start); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	for i := range late {
		k := []int{0, 1, 1, 1, 9}[i%5] // unary (a fifth gzip-compressed), client streaming
		if err := callKind(ctx, cc, r, fmt.Sprintf("late-%d", i), k); err != nil {
			return err
		}
	}
	return nil
}

func call(ctx context.Context, cc *grpc.ClientConn, r *rand.Rand, id string) error {
	return callKind(ctx, cc, r, id, r.IntN(10))
}

// callKind makes one call: kind 0-6 unary Get (0: gzip), 7-8 List, 9 Upload.
func callKind(ctx context.Context, cc *grpc.ClientConn, r *rand.Rand, id string, kind int) error {
	switch n := kind; {
	case n < 7:
		var opts []grpc.CallOption
		if n == 0 {
			opts = append(opts, grpc.UseCompressor("gzip"))
		}
		v := fmt.Sprintf("ord-%s-%d", id, r.IntN(10))
		err := cc.Invoke(ctx, "/"+Service+"/Get", wrapperspb.String(v), &wrapperspb.StringValue{}, opts...)
		if err != nil && !strings.HasSuffix(v, "0") {
			return fmt.Errorf("call Get %s: %w", v, err)
		}
		return nil
	case n < 9:
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/"+Service+"/List")
		if err != nil {
			return err
		}
		if err := s.SendMsg(wrapperspb.Int64(int64(r.IntN(6)))); err != nil {
			return err
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		for {
			if err := s.RecvMsg(&wrapperspb.StringValue{}); err == io.EOF {
				return nil
			} else if err != nil {
				return fmt.Errorf("call List: %w", err)
			}
		}
	default:
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, "/"+Service+"/Upload")
		if err != nil {
			return err
		}
		for k := range 1 + r.IntN(4) {
			if err := s.SendMsg(wrapperspb.String(fmt.Sprintf("chunk %s/%d %s", id, k, strings.Repeat("x", r.IntN(900))))); err != nil {
				return err
			}
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		return s.RecvMsg(&wrapperspb.Int64Value{})
	}
}

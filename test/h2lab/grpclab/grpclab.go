// Package grpclab is the HTTP/2 lab's gRPC service, written without protoc: a hand-made
// service descriptor whose messages are protobuf's well-known wrapper types, a server
// that logs every call as ground truth, and the client that drives it.
//
// Service lab.Orders:
//
//	Get(StringValue) -> StringValue           unary; ids ending in 0 answer NOT_FOUND
//	List(Int64Value) -> stream StringValue    server streaming: n orders
//	Upload(stream StringValue) -> Int64Value  client streaming: how many bytes arrived
//
// The ground truth states each body the way the collector renders gRPC messages (JSON
// keyed by field number; see reassembly/http2/wire.go), computed from the values here.
package grpclab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

// Service is the gRPC service name.
const Service = "lab.Orders"

// Recorder receives one ground-truth line per finished call.
type Recorder interface{ Record(*groundtruth.Exchange) }

// Register adds lab.Orders, logging to rec, to s.
func Register(s *grpc.Server, rec Recorder) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: Service,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Get", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req := &wrapperspb.StringValue{}
			if err := dec(req); err != nil {
				return nil, err
			}
			e := callTruth(ctx, "Get")
			e.SetReqBody([]byte(renderString(req.Value)))
			if strings.HasSuffix(req.Value, "0") {
				e.Status = HTTPStatus(codes.NotFound)
				rec.Record(e)
				return nil, status.Errorf(codes.NotFound, "order %s not found", req.Value)
			}
			resp := wrapperspb.String(fmt.Sprintf(`{"id":%q,"total":%d}`, req.Value, len(req.Value)*7))
			e.SetRespBody([]byte(renderString(resp.Value)))
			rec.Record(e)
			return resp, nil
		}}},
		Streams: []grpc.StreamDesc{
			{StreamName: "List", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				req := &wrapperspb.Int64Value{}
				if err := ss.RecvMsg(req); err != nil {
					return err
				}
				e := callTruth(ss.Context(), "List")
				e.SetReqBody([]byte(renderInt(req.Value)))
				var out []string
				for i := range req.Value {
					v := fmt.Sprintf("order-%d", i)
					if err := ss.SendMsg(wrapperspb.String(v)); err != nil {
						return err
					}
					out = append(out, renderString(v))
				}
				e.SetRespBody([]byte(renderMany(out)))
				rec.Record(e)
				return nil
			}},
			{StreamName: "Upload", ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				var in []string
				total := int64(0)
				for {
					m := &wrapperspb.StringValue{}
					if err := ss.RecvMsg(m); err == io.EOF {
						break
					} else if err != nil {
						return err
					}
					in = append(in, renderString(m.Value))
					total += int64(len(m.Value))
				}
				e := callTruth(ss.Context(), "Upload")
				e.SetReqBody([]byte(renderMany(in)))
				e.SetRespBody([]byte(renderInt(total)))
				rec.Record(e)
				return ss.SendMsg(wrapperspb.Int64(total))
			}},
		},
	}, nil)
}

// callTruth starts the ground-truth line of a call: POST to /lab.Orders/<method>.
func callTruth(ctx context.Context, method string) *groundtruth.Exchange {
	e := &groundtruth.Exchange{Method: "POST", Target: "/" + Service + "/" + method, Status: 200, Case: "grpc-" + strings.ToLower(method)}
	e.Path = e.Target
	if p, ok := peer.FromContext(ctx); ok {
		e.Client = p.Addr.String()
	}
	e.SetRespBody(nil)
	return e
}

// HTTPStatus is the HTTP status the collector reports for a gRPC code (google.rpc.Code's
// documented mapping).
func HTTPStatus(c codes.Code) int {
	m := map[codes.Code]int{codes.OK: 200, codes.Canceled: 499, codes.Unknown: 500, codes.InvalidArgument: 400,
		codes.DeadlineExceeded: 504, codes.NotFound: 404, codes.AlreadyExists: 409, codes.PermissionDenied: 403,
		codes.ResourceExhausted: 429, codes.FailedPrecondition: 400, codes.Aborted: 409, codes.OutOfRange: 400,
		codes.Unimplemented: 501, codes.Internal: 500, codes.Unavailable: 503, codes.DataLoss: 500, codes.Unauthenticated: 401}
	if s, ok := m[c]; ok {
		return s
	}
	return 500
}

// renderString is how the collector shows a StringValue (field 1, a string; proto3 omits
// the empty string, leaving an empty message).
func renderString(v string) string {
	if v == "" {
		return "{}"
	}
	b, _ := json.Marshal(v)
	return `{"1":` + string(b) + `}`
}

// renderInt shows an Int64Value (field 1, a varint; negative values are 64-bit).
func renderInt(v int64) string {
	if v == 0 {
		return "{}"
	}
	return `{"1":` + strconv.FormatInt(v, 10) + `}`
}

// renderMany shows a body of several messages: a JSON array (one message stands alone).
func renderMany(msgs []string) string {
	switch len(msgs) {
	case 0:
		return ""
	case 1:
		return msgs[0]
	}
	return "[" + strings.Join(msgs, ",") + "]"
}

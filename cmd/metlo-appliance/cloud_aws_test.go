package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/provision/aws/awsemu"
)

// syncBuffer is a bytes.Buffer safe to read while the command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type awsWorld struct {
	emu          *awsemu.Emulator
	api, imdsURL string
}

func newAWSWorld(t *testing.T) *awsWorld {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEMULATOR")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "emulator-secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	emu := awsemu.New("eu-west-1")
	eni := emu.AddInstance(awsemu.Instance{ID: "i-0appliance0000001"})
	api := emu.Start()
	t.Cleanup(api.Close)
	md := (&awsemu.IMDS{InstanceID: "i-0appliance0000001", Region: "eu-west-1", MAC: "0a:00:00:00:00:01", ENI: eni, VPCID: "vpc-0emu", SubnetID: "subnet-0emu"}).Start()
	t.Cleanup(md.Close)
	return &awsWorld{emu: emu, api: api.URL, imdsURL: md.URL}
}

// run executes the real root command against the emulators.
func (w *awsWorld) run(ctx context.Context, out *syncBuffer, args ...string) error {
	root := newRootCmd()
	root.SetArgs(append(args, "--cloud", "aws", "--aws-endpoint", w.api, "--aws-imds-endpoint", w.imdsURL))
	root.SetOut(out)
	root.SetErr(out)
	root.SetIn(strings.NewReader(""))
	return root.ExecuteContext(ctx)
}

func (w *awsWorld) sessionENIs() map[string]bool {
	m := map[string]bool{}
	for _, s := range w.emu.Sessions() {
		m[s.ENI] = true
	}
	return m
}

func TestAWSCommandsEndToEnd(t *testing.T) {
	w := newAWSWorld(t)
	ctx := context.Background()
	web := w.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001", Tags: map[string]string{"Name": "web"}})
	var out syncBuffer
	if err := w.run(ctx, &out, "provision"); err == nil || !strings.Contains(err.Error(), "--source") {
		t.Fatalf("provision without sources off a terminal: %v", err)
	}
	if err := w.run(ctx, &out, "provision", "--dry-run", "--source", "instance:i-0web000000000001"); err != nil {
		t.Fatal(err)
	}
	if w.emu.Mutations() != 0 || !strings.Contains(out.String(), "would create traffic mirror session") {
		t.Fatalf("dry run: %d mutations\n%s", w.emu.Mutations(), out.String())
	}
	args := []string{"provision", "--target", "nlb", "--health-port", "9999", "--aws-vni", "4242",
		"--aws-filter-rule", "action=reject,dst-port=22", "--source", "instance:i-0web000000000001"}
	if err := w.run(ctx, &out, args...); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := w.emu.Snapshot()
	if len(s.Sessions) != 1 || s.Sessions[0].ENI != web || s.Sessions[0].VNI != 4242 || len(s.TGs) != 1 || s.TGs[0].HealthPort != "9999" ||
		len(s.Filters) != 1 || len(s.Filters[0].Rules) != 8 {
		t.Fatalf("state after provision: %+v\n%s", s, out.String())
	}
	before := w.emu.Mutations()
	if err := w.run(ctx, &out, args...); err != nil || w.emu.Mutations() != before {
		t.Fatalf("re-run: %v, %d mutations", err, w.emu.Mutations()-before)
	}
	out = syncBuffer{}
	if err := w.run(ctx, &out, "list"); err != nil || !strings.Contains(out.String(), "i-0web000000000001 (web)") || !strings.Contains(out.String(), "4242") {
		t.Fatalf("list: %v\n%s", err, out.String())
	}
	if err := w.run(ctx, &out, "remove", s.Sessions[0].ID); err != nil || len(w.emu.Sessions()) != 0 {
		t.Fatalf("remove: %v", err)
	}
	if err := w.run(ctx, &out, "cleanup"); err == nil {
		t.Fatal("cleanup without --yes off a terminal succeeded")
	}
	if err := w.run(ctx, &out, "cleanup", "--yes"); err != nil {
		t.Fatal(err)
	}
	if n := w.emu.TaggedFor("i-0appliance0000001"); n != 0 {
		t.Fatalf("%d resources left after cleanup", n)
	}
}

// TestAWSWatchFollowsECSTasks runs provision --watch and churns the service under it.
func TestAWSWatchFollowsECSTasks(t *testing.T) {
	w := newAWSWorld(t)
	t1 := w.emu.AddTask("prod", "web", "EC2")
	w.emu.AddTask("prod", "web", "EC2")
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- w.run(ctx, &out, "provision", "--watch", "30ms", "--source", "ecs:prod/web") }()
	waitFor(t, &out, func() bool { return len(w.sessionENIs()) == 2 })
	old := w.emu.TaskENI(t1)
	w.emu.StopTask(t1)
	t3 := w.emu.AddTask("prod", "web", "EC2")
	waitFor(t, &out, func() bool { e := w.sessionENIs(); return len(e) == 2 && !e[old] && e[w.emu.TaskENI(t3)] })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, out *syncBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached; output:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package aws

import (
	"slices"
	"testing"

	"github.com/metlo-labs/metlo-appliance/provision/aws/awsemu"
)

// shape is the provisioned state without generated ids, to compare runs across emulators.
type shape struct {
	targets, filters, rules, lbs, tgs, listeners, registered int
	sessionENIs                                              []string
}

func shapeOf(f *fixture) shape {
	s := f.emu.Snapshot()
	sh := shape{targets: len(s.Targets), filters: len(s.Filters), lbs: len(s.LBs), tgs: len(s.TGs), listeners: len(s.Listeners)}
	for _, fl := range s.Filters {
		sh.rules += len(fl.Rules)
	}
	for _, tg := range s.TGs {
		sh.registered += len(tg.Targets)
	}
	for _, x := range s.Sessions {
		sh.sessionENIs = append(sh.sessionENIs, x.ENI)
	}
	slices.Sort(sh.sessionENIs)
	return sh
}

func crashFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.opts.Target = "nlb"
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000002"})
	f.emu.AddTask("prod", "web", "EC2")
	return f
}

var crashSources = []string{"instance:i-0web000000000001", "instance:i-0web000000000002", "ecs:prod/web"}

// TestCrashAfterEveryStep kills the run right after each mutating call in turn; the next run
// must finish the job with the same result as an uninterrupted run and no duplicates.
func TestCrashAfterEveryStep(t *testing.T) {
	ref := crashFixture(t)
	ref.mustReconcile(crashSources...)
	want, steps := shapeOf(ref), ref.emu.Mutations()
	if steps < 12 {
		t.Fatalf("reference run made only %d mutations", steps)
	}
	for k := 1; k < steps; k++ {
		f := crashFixture(t)
		f.emu.CrashAfter(k)
		out, _ := f.reconcile(crashSources...)
		if got := f.emu.Mutations(); got != k {
			t.Fatalf("crash after %d: %d mutations applied\n%s", k, got, out)
		}
		f.emu.Recover()
		out = f.mustReconcile(crashSources...)
		if got := shapeOf(f); !equalShape(got, want) {
			t.Fatalf("crash after step %d: state %+v, want %+v\n%s", k, got, want, out)
		}
		if f.emu.Mutations() > steps {
			t.Fatalf("crash after step %d: %d mutations in total, an uninterrupted run needs %d", k, f.emu.Mutations(), steps)
		}
		f.assertNoop(crashSources...)
	}
}

func equalShape(a, b shape) bool {
	return a.targets == b.targets && a.filters == b.filters && a.rules == b.rules && a.lbs == b.lbs && a.tgs == b.tgs &&
		a.listeners == b.listeners && a.registered == b.registered && slices.Equal(a.sessionENIs, b.sessionENIs)
}

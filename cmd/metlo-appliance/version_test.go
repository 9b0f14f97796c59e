package main

import (
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/exporter"
)

func TestVersionFrom(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	vcs := func(modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: sha}, {Key: "vcs.modified", Value: modified}}}
	}
	cases := []struct {
		name        string
		ldV, ldR    string
		bi          *debug.BuildInfo
		want        exporter.Build
		versionLine string
	}{
		{"go build in a checkout", "dev", "", vcs("false"), exporter.Build{Version: "dev+0123456789ab", Revision: sha}, "dev+0123456789ab"},
		{"local changes", "dev", "", vcs("true"), exporter.Build{Version: "dev+0123456789ab-dirty", Revision: sha + "-dirty"}, "dev+0123456789ab-dirty"},
		{"make build", "v1.4.0", sha, vcs("true"), exporter.Build{Version: "v1.4.0", Revision: sha}, "v1.4.0 (revision 0123456789ab)"},
		{"go install module@version", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, exporter.Build{Version: "v1.4.0"}, "v1.4.0"},
		{"go build of a checkout, Go >= 1.24", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261202015319-0123456789ab"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: sha}, {Key: "vcs.modified", Value: "false"}}},
			exporter.Build{Version: "v0.0.0-20261202015319-0123456789ab", Revision: sha}, "v0.0.0-20261202015319-0123456789ab"},
		{"nothing known", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, exporter.Build{Version: "dev"}, "dev"},
		{"no build info", "dev", sha, nil, exporter.Build{Version: "dev+0123456789ab", Revision: sha}, "dev+0123456789ab"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := versionFrom(c.ldV, c.ldR, c.bi)
			if got != c.want {
				t.Errorf("versionFrom = %+v, want %+v", got, c.want)
			}
			if l := versionLine(got); l != c.versionLine {
				t.Errorf("versionLine = %q, want %q", l, c.versionLine)
			}
		})
	}
}

// TestVersionOfAPlainGoBuild builds the committed tree with a plain `go build` (no
// ldflags) in a fresh clone, as a user would, and checks --version names its revision
// instead of "dev". A clone, because Go records no VCS stamp in a git
// worktree (golang/go#58218).
func TestVersionOfAPlainGoBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: clones the repository and builds the binary")
	}
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); len(st) > 0 {
		t.Skip("uncommitted changes: this test builds the committed tree, which lacks them")
	}
	dir := t.TempDir()
	clone := filepath.Join(dir, "src")
	if out, err := exec.Command("git", "clone", "--quiet", "--shared", strings.TrimSpace(string(root)), clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "metlo-appliance")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/metlo-appliance")
	build.Dir = clone
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Go records the checkout as a pseudo-version (v0.0.0-<time>-<revision>) or, on a
	// tag, the tag; either names the commit, never "dev".
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), string(head[:12])) || strings.Contains(string(out), "version dev\n") {
		t.Fatalf("--version: %q (%v), want one naming revision %s", out, err, head[:12])
	}
}

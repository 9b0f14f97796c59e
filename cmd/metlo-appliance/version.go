package main

import (
	"runtime/debug"
	"strings"

	"github.com/metlo-labs/metlo-appliance/exporter"
)

// revision is set at build time with -ldflags "-X main.revision=…" (make build does, so a
// build in a git worktree, where Go records no VCS stamp, still has one).
var revision = ""

// buildVersion is this binary's version and revision: the version from -ldflags (make
// build), else the module version Go records — `go install …@v1.2.3` gives v1.2.3, and
// since Go 1.24 a `go build` in a git checkout gives its tag or a pseudo-version
// (v0.0.0-<time>-<revision>) — else "dev"; the revision from -ldflags, else the VCS stamp
// `go build` records in a git checkout ("-dirty" when it had local changes). A version
// still "dev" gains the short revision when one is known: dev+0123456789ab.
func buildVersion() exporter.Build {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(version, revision, bi)
}

func versionFrom(ldVersion, ldRevision string, bi *debug.BuildInfo) exporter.Build {
	b := exporter.Build{Version: ldVersion, Revision: ldRevision}
	if bi == nil {
		return withDevRevision(b)
	}
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	if b.Revision == "" {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if b.Revision != "" && dirty {
			b.Revision += "-dirty"
		}
	}
	return withDevRevision(b)
}

// withDevRevision names a development build by its revision: dev+0123456789ab.
func withDevRevision(b exporter.Build) exporter.Build {
	if b.Version == "dev" && b.Revision != "" {
		b.Version = "dev+" + shortRevision(b.Revision)
	}
	return b
}

func shortRevision(r string) string {
	base, dirty := strings.CutSuffix(r, "-dirty")
	if len(base) > 12 {
		base = base[:12]
	}
	if dirty {
		base += "-dirty"
	}
	return base
}

// versionLine is what --version prints: the version, and the revision when the version
// does not already carry it.
func versionLine(b exporter.Build) string {
	if b.Revision == "" || strings.Contains(b.Version, shortRevision(b.Revision)) {
		return b.Version
	}
	return b.Version + " (revision " + shortRevision(b.Revision) + ")"
}

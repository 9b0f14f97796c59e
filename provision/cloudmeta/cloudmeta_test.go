package cloudmeta

import (
	"fmt"
	"testing"
)

func TestParseSettings(t *testing.T) {
	got := ParseSettings("#!/bin/bash\nexport METLO_HOST=\"http://m:8081\"\n  METLO_KEY='k=v'\nOTHER=1\nMETLO_BAD KEY=1\necho METLO_X=1\nMETLO_SOURCES=instance:i-1,ecs:prod/web\n")
	want := map[string]string{"METLO_HOST": "http://m:8081", "METLO_KEY": "k=v", "METLO_SOURCES": "instance:i-1,ecs:prod/web"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

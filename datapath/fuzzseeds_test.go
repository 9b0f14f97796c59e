package datapath

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"
)

var writeFuzzSeeds = flag.Bool("write-fuzz-seeds", false, "rewrite testdata/fuzz/FuzzDecode/formats-* from the captures in testdata/formats")

// TestWriteFuzzSeeds, with -write-fuzz-seeds, turns two frames of every real capture in
// testdata/formats (the first, and the first longer than 200 bytes among the next 50)
// into FuzzDecode seeds, so fuzzing starts from every link type and encapsulation seen in
// the wild.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeFuzzSeeds {
		t.Skip("run with -write-fuzz-seeds to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	old, _ := filepath.Glob(filepath.Join(dir, "formats-*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "formats", "*.pcap"))
	for _, path := range files {
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapgo.NewReader(fh)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		link, _ := LinkFromPcap(uint32(r.LinkType()))
		var picked [][]byte
		for i := 0; i < 51 && len(picked) < 2; i++ {
			data, _, err := r.ReadPacketData()
			if err != nil {
				break
			}
			if i == 0 || len(data) > 200 {
				picked = append(picked, append([]byte(nil), data...))
			}
		}
		for i, data := range picked {
			name := fmt.Sprintf("formats-%s-%d", strings.TrimSuffix(filepath.Base(path), ".pcap"), i)
			seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\nbyte(%q)\n", data, rune(link), rune(0))
			if err := os.WriteFile(filepath.Join(dir, name), []byte(seed), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		fh.Close()
	}
}

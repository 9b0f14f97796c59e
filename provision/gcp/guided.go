package gcp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// prompter asks questions on a terminal.
type prompter struct {
	in  *bufio.Reader
	out io.Writer
}

func newPrompter(in io.Reader, out io.Writer) *prompter {
	return &prompter{in: bufio.NewReader(in), out: out}
}

// ask prints "question [default]: " and returns the answer, or the default for an empty line.
func (pr *prompter) ask(question, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(pr.out, "%s [%s]: ", question, def)
	} else {
		fmt.Fprintf(pr.out, "%s: ", question)
	}
	line, err := pr.in.ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		return "", fmt.Errorf("read answer: %w", err)
	}
	if line = strings.TrimSpace(line); line == "" {
		return def, nil
	}
	return line, nil
}

// pick asks for numbers out of 1..n (commas or spaces), asking again on bad input.
func (pr *prompter) pick(question string, n int, multi bool) ([]int, error) {
	for range 3 {
		a, err := pr.ask(question, "")
		if err != nil {
			return nil, err
		}
		var picks []int
		ok := a != ""
		for _, f := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' }) {
			i, err := strconv.Atoi(f)
			if err != nil || i < 1 || i > n {
				ok = false
				break
			}
			picks = append(picks, i-1)
		}
		if ok && (multi || len(picks) == 1) {
			return picks, nil
		}
		fmt.Fprintf(pr.out, "  please answer with numbers from 1 to %d\n", n)
	}
	return nil, fmt.Errorf("no valid choice")
}

// guided asks which project, region and sources to mirror, offering what exists; it returns
// the sources and the environment they apply to.
func (p *Provider) guided(ctx context.Context, pr *prompter, e *env, opts provision.Options) ([]string, *env, error) {
	fmt.Fprintf(pr.out, "Set up GCP Packet Mirroring to this appliance (resources named metlo-appliance-%s-…)\n", e.id)
	project, err := pr.ask("Project", e.project)
	if err != nil {
		return nil, nil, err
	}
	region, err := pr.ask("Region", e.region)
	if err != nil {
		return nil, nil, err
	}
	if project != e.project || region != e.region {
		p.cfg.Project, opts.Region = project, region
		if e, err = p.resolve(ctx, opts); err != nil {
			return nil, nil, err
		}
	}
	fmt.Fprintf(pr.out, "What should be mirrored (network %s, region %s)?\n  1) instances\n  2) subnets\n  3) network tags\n", lastSegment(e.network), e.region)
	k, err := pr.pick("Choice", 3, false)
	if err != nil {
		return nil, nil, err
	}
	type choice struct{ label, source string }
	var choices []choice
	switch k[0] {
	case 0, 2:
		inv, err := p.instancesInRegion(ctx, e)
		if err != nil {
			return nil, nil, err
		}
		paths := make([]string, 0, len(inv))
		for path, in := range inv {
			if path != e.instance && instanceNetwork(e.project, in) == e.network {
				paths = append(paths, path)
			}
		}
		sort.Strings(paths)
		if k[0] == 0 {
			for _, path := range paths {
				in := inv[path]
				ip := ""
				if nics := in.GetNetworkInterfaces(); len(nics) > 0 {
					ip = nics[0].GetNetworkIP()
				}
				label := fmt.Sprintf("%s/%s  %s  %s", segment(path, "zones"), lastSegment(path), ip, strings.Join(in.GetTags().GetItems(), ","))
				choices = append(choices, choice{label, "instance:" + segment(path, "zones") + "/" + lastSegment(path)})
			}
			break
		}
		count := map[string]int{}
		for _, path := range paths {
			for _, t := range inv[path].GetTags().GetItems() {
				count[t]++
			}
		}
		tags := make([]string, 0, len(count))
		for t := range count {
			tags = append(tags, t)
		}
		sort.Strings(tags)
		for _, t := range tags {
			choices = append(choices, choice{fmt.Sprintf("%s  (%s)", t, plural(count[t], "instance", "instances")), "tag:" + t})
		}
	case 1:
		it := p.api.subnets.List(ctx, &computepb.ListSubnetworksRequest{Project: e.project, Region: e.region})
		for {
			s, err := it.Next()
			if err == iterator.Done {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("list subnets: %w", err)
			}
			if relPath(e.project, s.GetNetwork()) == e.network {
				choices = append(choices, choice{fmt.Sprintf("%s  %s", s.GetName(), s.GetIpCidrRange()), "subnet:" + s.GetName()})
			}
		}
	}
	if len(choices) == 0 {
		return nil, nil, fmt.Errorf("nothing of that kind to mirror in network %s, region %s", lastSegment(e.network), e.region)
	}
	for i, c := range choices {
		fmt.Fprintf(pr.out, "  %d) %s\n", i+1, c.label)
	}
	picks, err := pr.pick("Pick (e.g. 1,3)", len(choices), true)
	if err != nil {
		return nil, nil, err
	}
	sources := make([]string, 0, len(picks))
	for _, i := range picks {
		sources = append(sources, choices[i].source)
	}
	return sources, e, nil
}

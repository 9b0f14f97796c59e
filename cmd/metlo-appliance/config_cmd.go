package main

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/metlo-labs/metlo-appliance/exporter"
)

// newConfigCmd returns `metlo-appliance config`, which prints the effective configuration.
func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration (flags > env > config file > credentials > defaults) as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			source := c.resolveMemory() // the derived budgets are part of what takes effect
			out, err := configYAML(c)
			if err == nil {
				out = append(out, "# memory-limit from "+source+"\n"...)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	addConfigFlags(cmd.Flags())
	return cmd
}

// configYAML renders c in Config field order with the API key and URL credentials masked,
// each key set somewhere other than the defaults followed by where.
func configYAML(c *Config) ([]byte, error) {
	masked := *c
	masked.MetloKey = maskKey(c.MetloKey)
	masked.MetloHost = exporter.MaskURL(c.MetloHost)
	if !strings.Contains(c.MetloHost, "://") {
		masked.MetloHost = strings.TrimPrefix(exporter.MaskURL("http://"+c.MetloHost), "http://")
	}
	masked.Sinks = nil
	for _, s := range c.Sinks {
		masked.Sinks = append(masked.Sinks, exporter.MaskURL(s))
	}
	doc := &yaml.Node{Kind: yaml.MappingNode}
	v := reflect.ValueOf(masked)
	for i := range v.NumField() {
		key := v.Type().Field(i).Tag.Get("mapstructure")
		if key == "" {
			continue
		}
		val, err := yamlValue(v.Field(i).Interface())
		if err != nil {
			return nil, fmt.Errorf("render config %s: %w", key, err)
		}
		if o := c.from(key); o.kind != "default" {
			val.LineComment = "from " + o.String()
		}
		doc.Content = append(doc.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, val)
	}
	return yaml.Marshal(doc)
}

func yamlValue(x any) (*yaml.Node, error) {
	switch x := x.(type) {
	case time.Duration:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: x.String()}, nil
	case float64:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatFloat(x, 'g', -1, 64)}, nil
	}
	n := &yaml.Node{}
	if err := n.Encode(x); err != nil {
		return nil, err
	}
	if n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle
	}
	return n, nil
}

// maskKey keeps a key's "metlo." prefix and last four characters: metlo.****abcd.
func maskKey(key string) string {
	if key == "" {
		return ""
	}
	prefix := ""
	if len(key) > len("metlo.") && key[:len("metlo.")] == "metlo." {
		prefix, key = "metlo.", key[len("metlo."):]
	}
	if len(key) <= 4 {
		return prefix + "****"
	}
	return prefix + "****" + key[len(key)-4:]
}

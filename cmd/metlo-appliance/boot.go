package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/metlo-labs/metlo-appliance/provision"
	"github.com/metlo-labs/metlo-appliance/provision/cloudmeta"
)

// bootOptions are the flags of `metlo-appliance boot` and its subcommands.
type bootOptions struct {
	cloud         string        // auto|aws|gcp|none
	configDir     string        // where config.yaml and provision.yaml are written
	baseConfig    string        // image defaults, merged under the cloud settings
	imdsEndpoint  string        // AWS instance metadata service
	gcpMetaHost   string        // GCE metadata server host[:port]
	detectTimeout time.Duration // per metadata request
	routeFile     string        // /proc/net/route, for the default capture interface
	maxTime       time.Duration // provisioning retries stop after this long
	retryMin      time.Duration // first wait between provisioning attempts
	retryMax      time.Duration // longest wait between provisioning attempts
	once          bool          // one provisioning attempt (the reconcile timer)
}

// bootSettings is what the cloud told us, split into collector keys and provision flags.
type bootSettings struct {
	Cloud     string              `yaml:"cloud"`
	Provision map[string][]string `yaml:"provision"` // provision flag name → values
	config    map[string]any      // collector key → typed value; rendered to config.yaml
}

// provisionBlocked are provision flags the boot flow sets itself.
var provisionBlocked = []string{"cloud", "yes", "dry-run", "watch", "help"}

func newBootCmd() *cobra.Command {
	o := &bootOptions{}
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "Configure from the cloud, provision mirroring, then collect (what the image runs at start)",
		Long: `boot reads the appliance's settings from the cloud (AWS user data and instance tags,
or GCE instance/project metadata attributes: METLO_HOST, METLO_KEY, METLO_SOURCES,
METLO_TARGET, any METLO_<CONFIG KEY>, METLO_AWS_*/METLO_GCP_* provision flags), writes
/etc/metlo-appliance/config.yaml, provisions the mirroring with bounded retries and runs the
collector. The systemd units run the steps separately: boot render-config, boot provision,
collect.`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.cloud, "cloud", "auto", "cloud to read settings from: auto|aws|gcp|none")
	pf.StringVar(&o.configDir, "config-dir", "/etc/metlo-appliance", "directory of the rendered config.yaml and provision.yaml")
	pf.StringVar(&o.baseConfig, "base-config", "/usr/share/metlo-appliance/config.yaml", "image defaults merged under the cloud settings")
	pf.StringVar(&o.imdsEndpoint, "aws-imds-endpoint", "http://169.254.169.254", "aws: instance metadata endpoint")
	pf.StringVar(&o.gcpMetaHost, "gcp-metadata-host", "", "gcp: metadata server host[:port] (default GCE_METADATA_HOST or 169.254.169.254)")
	pf.DurationVar(&o.detectTimeout, "detect-timeout", 2*time.Second, "timeout of each metadata request")
	pf.StringVar(&o.routeFile, "route-file", "/proc/self/net/route", "routing table used to pick the default capture interface")
	pf.DurationVar(&o.maxTime, "max-time", 8*time.Minute, "stop retrying provisioning after this long (capture starts regardless)")
	pf.DurationVar(&o.retryMin, "retry-min", 5*time.Second, "first wait between provisioning attempts")
	pf.DurationVar(&o.retryMax, "retry-max", 2*time.Minute, "longest wait between provisioning attempts")
	_ = pf.MarkHidden("route-file")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log := newLogger("info", cmd.ErrOrStderr())
		if _, err := o.render(cmd.Context(), log); err != nil {
			if _, statErr := os.Stat(o.configPath()); statErr != nil {
				return err
			}
			log.Warn("rendering the configuration failed; keeping the existing one", "err", err)
		}
		if err := o.provision(cmd.Context(), log, cmd.ErrOrStderr()); err != nil {
			log.Warn("provisioning failed; capturing anyway (the reconcile timer retries)", "err", err)
		}
		args := []string{"collect"}
		if _, err := os.Stat(o.configPath()); err == nil {
			args = append(args, "--config", o.configPath())
		}
		root := newRootCmd()
		root.SetArgs(args)
		root.SetOut(cmd.OutOrStdout())
		root.SetErr(cmd.ErrOrStderr())
		return root.ExecuteContext(cmd.Context())
	}

	render := &cobra.Command{
		Use:   "render-config",
		Short: "Detect the cloud and write config.yaml and provision.yaml from its metadata",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := o.render(cmd.Context(), newLogger("info", cmd.ErrOrStderr()))
			return err
		},
	}
	prov := &cobra.Command{
		Use:   "provision",
		Short: "Provision the mirroring described by provision.yaml, retrying with backoff for at most --max-time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.provision(cmd.Context(), newLogger("info", cmd.ErrOrStderr()), cmd.ErrOrStderr())
		},
	}
	prov.Flags().BoolVar(&o.once, "once", false, "one attempt, no retries (for the reconcile timer)")
	cmd.AddCommand(render, prov)
	return cmd
}

func (o *bootOptions) configPath() string    { return filepath.Join(o.configDir, "config.yaml") }
func (o *bootOptions) provisionPath() string { return filepath.Join(o.configDir, "provision.yaml") }

// render detects the cloud, reads its settings and writes both files (nil settings: no
// cloud and an existing config.yaml, left alone).
func (o *bootOptions) render(ctx context.Context, log *slog.Logger) (*bootSettings, error) {
	md := &cloudmeta.Client{HTTP: &http.Client{Timeout: o.detectTimeout}, IMDS: strings.TrimSuffix(o.imdsEndpoint, "/"), GCPHost: o.gcpHost()}
	cloud := o.cloud
	if cloud == "auto" {
		cloud = md.Detect(ctx)
	}
	raw := map[string]string{}
	var err error
	switch cloud {
	case "none", "":
		// Outside a cloud a hand-written config.yaml stays; without one, render the image
		// defaults and config.local.yaml so the collector still starts.
		if _, err := os.Stat(o.configPath()); err == nil {
			log.Info("no cloud metadata found; configuration left as it is", "config", o.configPath())
			return nil, nil
		}
		cloud = "none"
	case "aws":
		raw, err = md.AWSSettings(ctx, log)
	case "gcp":
		raw, err = md.GCPSettings(ctx)
	default:
		return nil, fmt.Errorf("--cloud must be auto, aws, gcp or none, got %q", cloud)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s metadata: %w", cloud, err)
	}
	st, err := o.settings(cloud, raw, log)
	if err != nil {
		return nil, err
	}
	if cloud == "aws" {
		o.awsTunnelDefaults(ctx, st, log)
	}
	if err := o.write(ctx, st); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	log.Info("configuration rendered", "cloud", cloud, "config", o.configPath(), "settings", strings.Join(keys, ","),
		"sources", len(st.Provision["source"]))
	return st, nil
}

func (o *bootOptions) gcpHost() string {
	if o.gcpMetaHost != "" {
		return o.gcpMetaHost
	}
	if h := os.Getenv("GCE_METADATA_HOST"); h != "" {
		return h
	}
	return "169.254.169.254"
}

// settings turns raw METLO_* values into typed collector keys and provision flags; a bad or
// unknown setting is logged by name (never by value) and skipped.
func (o *bootOptions) settings(cloud string, raw map[string]string, log *slog.Logger) (*bootSettings, error) {
	st := &bootSettings{Cloud: cloud, Provision: map[string][]string{}, config: map[string]any{}}
	if err := o.mergeYAML(st.config, o.baseConfig, log); err != nil {
		return nil, err
	}
	provFlags := newRootCmd()
	provCmd, _, _ := provFlags.Find([]string{"provision"})
	for _, name := range sortedMapKeys(raw) {
		val := raw[name]
		key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "METLO_"), "_", "-"))
		switch {
		case name == "METLO_SOURCES" || name == "METLO_SOURCE":
			st.Provision["source"] = append(st.Provision["source"], strings.FieldsFunc(val, func(r rune) bool {
				return r == ',' || r == ';' || r == ' ' || r == '\n' || r == '\t'
			})...)
		case configKeyFor(name) != "":
			k := configKeyFor(name)
			v, err := typedValue(k, val)
			if err != nil {
				// The parse error would quote the value, which may be a secret: name the type only.
				log.Warn("boot setting ignored: bad value", "setting", name, "want", reflect.TypeOf(defaultFieldValue(k)).String())
				continue
			}
			st.config[k] = v
		case provCmd.Flags().Lookup(key) != nil && !slices.Contains(provisionBlocked, key):
			if (strings.HasPrefix(key, "aws-") && cloud != "aws") || (strings.HasPrefix(key, "gcp-") && cloud != "gcp") {
				log.Warn("boot setting ignored: for another cloud", "setting", name)
				continue
			}
			vals := []string{strings.TrimSpace(val)}
			if provCmd.Flags().Lookup(key).Value.Type() == "stringArray" {
				vals = strings.FieldsFunc(val, func(r rune) bool { return r == ';' || r == '\n' })
			}
			st.Provision[key] = append(st.Provision[key], vals...)
		default:
			log.Warn("boot setting ignored: unknown", "setting", name)
		}
	}
	if err := o.mergeYAML(st.config, filepath.Join(o.configDir, "config.local.yaml"), log); err != nil {
		return nil, err
	}
	if _, ok := st.config["interface"]; !ok {
		if ifc := defaultRouteInterface(o.routeFile); ifc != "" {
			st.config["interface"] = ifc
		}
	}
	if _, ok := st.Provision["health-port"]; !ok {
		addr, _ := st.config["metrics-addr"].(string)
		if addr == "" {
			addr = defaultConfig().MetricsAddr
		}
		if _, port, err := net.SplitHostPort(addr); err == nil && port != "0" {
			st.Provision["health-port"] = []string{port}
		}
	}
	return st, nil
}

// configKeyFor maps a setting name (METLO_HOST, METLO_CAPTURE, a renamed key's old
// METLO_BODY_CAP, Metlo's METLO_ADDR …) to its config key.
func configKeyFor(name string) string {
	for _, k := range configKeys() {
		if slices.Contains(envNames(k), name) {
			return k
		}
	}
	return ""
}

// defaultFieldValue is the zero value of the Config field behind key.
func defaultFieldValue(key string) any {
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("mapstructure") == key {
			return reflect.New(t.Field(i).Type).Elem().Interface()
		}
	}
	return ""
}

// typedValue converts a metadata string into the Go type of the config key, so the
// rendered YAML has lists and numbers where the loader expects them.
func typedValue(key, s string) (any, error) {
	if _, ok := configField(key); !ok {
		return nil, fmt.Errorf("no config key %q", key)
	}
	v, err := convert(key, strings.TrimSpace(s))
	if d, ok := v.(time.Duration); ok {
		return d.String(), err // YAML would write a duration as nanoseconds
	}
	return v, err
}

// mergeYAML overlays the config keys of a YAML file (if it exists) onto dst.
func (o *bootOptions) mergeYAML(dst map[string]any, path string, log *slog.Logger) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	for k, v := range m {
		if newKey, ok := keyAliases[k]; ok {
			k = newKey
		}
		if !slices.Contains(configKeys(), k) {
			log.Warn("config key ignored: unknown", "file", path, "key", k)
			continue
		}
		dst[k] = v
	}
	return nil
}

// write renders config.yaml (checked with the real loader before it replaces the old one)
// and provision.yaml, each atomically with mode 0600.
func (o *bootOptions) write(ctx context.Context, st *bootSettings) error {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range configKeys() {
		v, ok := st.config[k]
		if !ok {
			continue
		}
		n, err := yamlValue(v)
		if err != nil {
			return fmt.Errorf("render config %s: %w", k, err)
		}
		doc.Content = append(doc.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, n)
	}
	cfg, err := yaml.Marshal(doc)
	if err != nil {
		return fmt.Errorf("render config: %w", err)
	}
	cfg = append([]byte("# Rendered by `metlo-appliance boot render-config` from cloud metadata at every boot.\n"+
		"# Local changes belong in config.local.yaml next to this file.\n"), cfg...)
	prov, err := yaml.Marshal(st)
	if err != nil {
		return fmt.Errorf("render provision settings: %w", err)
	}
	if err := os.MkdirAll(o.configDir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", o.configDir, err)
	}
	return writeFileAtomic(o.configPath(), cfg, func(tmp string) error {
		check := newConfigCmd()
		check.SetArgs([]string{"--config", tmp})
		check.SetOut(io.Discard)
		check.SetErr(io.Discard)
		if err := check.ExecuteContext(ctx); err != nil {
			return fmt.Errorf("rendered configuration is invalid: %w", err)
		}
		return writeFileAtomic(o.provisionPath(), prov, nil)
	})
}

// writeFileAtomic writes data to a temporary file in path's directory, runs check on it,
// and renames it over path; readers see the old file or the new one, never a half.
func writeFileAtomic(path string, data []byte, check func(tmp string) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	// One err for the three steps: a failure in any of them must stop the rename, or a
	// half-written file would replace a good one.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if check != nil {
		if err := check(f.Name()); err != nil {
			return err
		}
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// provision runs `provision` for the rendered settings, retrying with capped exponential
// backoff until it succeeds or maxTime passes; no sources means nothing to do.
func (o *bootOptions) provision(ctx context.Context, log *slog.Logger, out io.Writer) error {
	b, err := os.ReadFile(o.provisionPath())
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("no provision settings rendered (no cloud detected); skipping provisioning", "file", o.provisionPath())
		return nil
	}
	if err != nil {
		return fmt.Errorf("read provision settings: %w", err)
	}
	var st bootSettings
	if err := yaml.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("parse %s: %w", o.provisionPath(), err)
	}
	if st.Cloud == "none" || len(st.Provision["source"]) == 0 {
		log.Info("no METLO_SOURCES in the instance settings; skipping provisioning (existing mirroring keeps working)")
		return nil
	}
	args := []string{"provision", "--cloud", st.Cloud, "--yes"}
	for _, flag := range sortedMapKeys(st.Provision) {
		if slices.Contains(provisionBlocked, flag) {
			continue
		}
		for _, v := range st.Provision[flag] {
			args = append(args, "--"+flag+"="+v)
		}
	}
	switch {
	case st.Cloud == "aws" && st.Provision["aws-imds-endpoint"] == nil:
		args = append(args, "--aws-imds-endpoint="+o.imdsEndpoint)
	case st.Cloud == "gcp" && st.Provision["gcp-metadata-host"] == nil:
		args = append(args, "--gcp-metadata-host="+o.gcpHost())
	}
	ctx, cancel := context.WithTimeout(ctx, o.maxTime)
	defer cancel()
	wait := o.retryMin
	for attempt := 1; ; attempt++ {
		root := newRootCmd()
		root.SetArgs(args)
		root.SetOut(out)
		root.SetErr(out)
		root.SetIn(strings.NewReader(""))
		err := root.ExecuteContext(ctx)
		if err == nil {
			log.Info("provisioning done", "cloud", st.Cloud, "attempt", attempt)
			return nil
		}
		var inc *provision.IncompleteError
		if errors.As(err, &inc) && inc.Permanent() {
			// Retrying cannot make the cloud mirror these; the reconcile timer looks again later.
			log.Warn("provisioning incomplete: some sources cannot be mirrored; not retrying", "cloud", st.Cloud, "missing", len(inc.Missing), "err", err)
			return fmt.Errorf("provision: %w", err)
		}
		if o.once {
			return fmt.Errorf("provision: %w", err)
		}
		// Jitter spreads a fleet's retries so a throttled API is not hit in lockstep.
		sleep := wait/2 + rand.N(wait/2+1)
		log.Warn("provisioning failed; retrying", "attempt", attempt, "in", sleep.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("provision: gave up after %d attempts in %s: %w", attempt, o.maxTime, err)
		case <-time.After(sleep):
		}
		wait = min(2*wait, o.retryMax)
	}
}

// defaultRouteInterface is the interface of the IPv4 default route, "" if none.
func defaultRouteInterface(routeFile string) string {
	f, err := os.Open(routeFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 2 && fields[1] == "00000000" && fields[0] != "Iface" {
			return fields[0]
		}
	}
	return ""
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
